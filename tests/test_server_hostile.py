"""A hostile client against a governed server: nothing reaches a tool, a resource or a prompt,
or tells that it exists, before the chain allowed exactly that request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, cast

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.server.mcpserver import MCPServer
from mcp_types import CLIENT_CAPABILITIES_META_KEY, HEADER_MISMATCH, PROTOCOL_VERSION_META_KEY, RequestParamsMeta
from pydantic import Field

from mcpgov import Decision, Hooks, govern
from mcpgov.testing import InMemoryAuditSink, serve_http

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
Region = Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]


def _header_server(kind: str) -> tuple[Any, InMemoryAuditSink, list[str]]:
    """An ASGI app serving ``deploy`` and ``route``, which both mirror their ``region`` argument
    into an ``Mcp-Param-Region`` header; only ``route`` is allowed."""
    ran: list[str] = []

    def deploy(region: Region) -> str:
        ran.append(f"deploy {region}")
        return "deployed"

    def route(region: Region) -> str:
        ran.append(f"route {region}")
        return "routed"

    hooks = Hooks()
    hooks.tool("route")(lambda ctx: Decision.allow("routers"))
    sink = InMemoryAuditSink()
    if kind == "lowlevel":  # no get_tool_input_schema: the SDK reads the schema from the governed listing
        import mcp_types as types
        from mcp.server import ServerRequestContext
        from mcp.server.lowlevel import Server

        schema = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}

        async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
            return types.ListToolsResult(tools=[types.Tool(name=n, input_schema=schema) for n in ("deploy", "route")])

        async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
            ran.append(f"{params.name} {(params.arguments or {}).get('region')}")
            return types.CallToolResult(content=[types.TextContent(type="text", text=f"{params.name}d")])

        low = Server("regions", on_list_tools=list_tools, on_call_tool=call_tool)
        govern(low, hooks, audit=sink)
        return low.streamable_http_app(), sink, ran
    if kind == "mcpserver":
        server = MCPServer("regions")
        server.add_tool(deploy)
        server.add_tool(route)
        govern(server, hooks, audit=sink)
        return server.streamable_http_app(), sink, ran
    pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")
    from fastmcp import FastMCP

    fast = FastMCP("regions")
    fast.tool(deploy)
    fast.tool(route)
    govern(fast, hooks, audit=sink)
    return fast.http_app(), sink, ran


SERVER_KINDS = ["mcpserver", "fastmcp", "lowlevel"]


async def _post_call(
    http: httpx2.AsyncClient, url: str, name: str, arguments: Mapping[str, Any], headers: Mapping[str, str]
) -> tuple[int, dict[str, Any]]:
    """A 2026-07-28 ``tools/call`` POSTed as given: (HTTP status, JSON-RPC error or result)."""
    meta = {PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}}
    response = await http.post(
        url,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": dict(arguments), "_meta": meta},
        },
        headers={
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": "tools/call",
            "Mcp-Name": name,
            **headers,
        },
    )
    body = response.json()
    return response.status_code, body.get("error") or body["result"]


HEADER_SPELLINGS: list[dict[str, str]] = [
    {},  # the argument is in the body, its header is missing
    {"Mcp-Param-Region": "eu"},  # the header disagrees with the body
    {"Mcp-Param-Region": "us"},  # the header agrees with the body
    {"Mcp-Param-Region": "=?base64?!!!?="},  # a malformed sentinel
]


@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("headers", HEADER_SPELLINGS)
async def test_param_headers_tell_nothing_about_a_tool_the_caller_may_not_use(
    kind: str, headers: dict[str, str]
) -> None:
    """The SDK checks ``Mcp-Param-*`` headers against the called tool's input schema before any
    middleware runs: its answer told a caller with no right to the tool that it exists and which
    of its arguments are mirrored into headers. A refused tool now answers exactly like a tool
    that does not exist, and the refusal is audited."""
    app, sink, ran = _header_server(kind)
    async with serve_http(app) as base, httpx2.AsyncClient() as http:
        url = f"{base}/mcp"
        hidden = await _post_call(http, url, "deploy", {"region": "us"}, headers)
        missing = await _post_call(http, url, "no_such_tool", {"region": "us"}, headers)
    assert hidden[0] == missing[0] == 200
    assert hidden[1]["code"] == missing[1]["code"] == -32003
    assert hidden[1]["message"] == missing[1]["message"] == "Request denied"
    assert "region" not in str(hidden[1]).lower()
    assert ran == []
    assert [(e.target, e.effect) for e in sink.decisions()] == [("deploy", "deny"), ("no_such_tool", "deny")]


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_param_headers_are_still_checked_for_an_allowed_tool(kind: str) -> None:
    """Where the caller may use the tool, the SDK's header check applies as without governance:
    a header that disagrees with the body is a 400 ``HEADER_MISMATCH`` and the tool does not run."""
    app, _, ran = _header_server(kind)
    async with serve_http(app) as base, httpx2.AsyncClient() as http:
        url = f"{base}/mcp"
        answers = [await _post_call(http, url, "route", {"region": "us"}, headers) for headers in HEADER_SPELLINGS]
    for status, error in (answers[0], answers[1], answers[3]):
        assert status == 400
        assert error["code"] == HEADER_MISMATCH
    assert answers[2][0] == 200
    assert answers[2][1]["content"][0]["text"] == "routed"
    assert ran == ["route us"]


def _governed_notes() -> tuple[Any, list[str]]:
    """A governed FastMCP server whose chain allows only the ``read_*`` tools, ``notes://`` and
    the ``summary`` prompt."""
    pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")
    from fastmcp import FastMCP

    ran: list[str] = []
    sub = FastMCP("notes")

    @sub.tool
    def delete_note(name: str) -> str:
        ran.append("delete_note")
        return "deleted"

    @sub.tool
    def read_note(name: str) -> str:
        ran.append("read_note")
        return "a note"

    @sub.resource("notes://index")
    def index() -> str:
        return "index"

    @sub.resource("secret://keys")
    def keys() -> str:
        return "keys"

    @sub.resource("secret://vault/{item}")
    def vault(item: str) -> str:
        return item

    @sub.prompt
    def summary(text: str) -> str:
        return text

    @sub.prompt
    def exfiltrate(text: str) -> str:
        return text

    hooks = Hooks()
    hooks.tool("read_*")(lambda ctx: Decision.allow("readers"))
    hooks.resource("notes://*")(lambda ctx: Decision.allow("notes"))
    hooks.prompt("summary")(lambda ctx: Decision.allow("summaries"))
    govern(sub, hooks)
    return sub, ran


async def _listed(client: Any) -> dict[str, set[str]]:
    return {
        "tools": {t.name for t in await client.list_tools()},
        "resources": {str(r.uri) for r in await client.list_resources()},
        "templates": {t.uriTemplate for t in await client.list_resource_templates()},
        "prompts": {p.name for p in await client.list_prompts()},
    }


async def test_a_mounted_governed_fastmcp_server_lists_nothing_past_its_chain() -> None:
    """Mounted into another FastMCP server, a governed server's tools could not be called past its
    chain, but the other server listed every one of them (and its resources, templates and
    prompts) to anyone: what the chain hides from a caller was told to every caller of the mount.
    Past its own chain (a mount, in process) a governed server now lists nothing."""
    pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")
    from fastmcp import Client as FastClient
    from fastmcp import FastMCP

    sub, ran = _governed_notes()
    async with FastClient(sub) as client:
        direct = await _listed(client)
    expected = {"tools": {"read_note"}, "resources": {"notes://index"}, "templates": set(), "prompts": {"summary"}}
    assert direct == expected

    main = FastMCP("gateway")
    main.mount(sub, namespace="n")

    @main.tool
    def own() -> str:
        return "own"

    async with FastClient(main) as client:
        assert await _listed(client) == {"tools": {"own"}, "resources": set(), "templates": set(), "prompts": set()}
        with pytest.raises(Exception, match="governed"):
            await client.call_tool("n_read_note", {"name": "x"})
    assert list(await sub.list_tools()) == []
    assert list(await sub.list_resources()) == []
    assert list(await sub.list_resource_templates()) == []
    assert list(await sub.list_prompts()) == []
    assert ran == []
    async with FastClient(sub) as client:  # served directly, it lists as its chain decides, as before
        assert await _listed(client) == direct


async def test_a_fastmcp_tool_is_not_reached_by_its_identity_hash(mode: str) -> None:
    """FastMCP resolves a tool name ``__<hash>_<name>`` to the app-visible tool whose identity
    hash it names (the hash is derived from public names). The chain decided on that spelling,
    not on the tool that ran: ``allow *`` beside ``deny delete_note`` ran ``delete_note``. Such a
    name is now refused whatever the chain decides, and hidden from listings."""
    pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")
    from fastmcp import FastMCP
    from mcp import Client, MCPError

    ran: list[str] = []
    server = FastMCP("notes")
    app_visible = {"ui": {"visibility": ["model", "app"]}, "fastmcp": {"tool_hash": "0123456789ab"}}

    @server.tool(meta=app_visible)
    def delete_note(name: str) -> str:
        ran.append("delete_note")
        return "deleted"

    @server.tool(name="__0123456789ab_read_note")
    def read_note(name: str) -> str:
        ran.append("read_note")
        return "a note"

    hooks = Hooks()
    hooks.tool("delete_note")(lambda ctx: Decision.deny("no-deletes", "deleting needs a person", "no_deletes"))
    hooks.tool("*")(lambda ctx: Decision.allow("everyone"))
    sink = InMemoryAuditSink()
    pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")
    from mcpgov._fastmcp import sdk_server

    govern(server, hooks, audit=sink)
    async with Client(sdk_server(server), mode=mode) as client:
        assert [t.name for t in (await client.list_tools()).tools] == []
        for name in ("__0123456789ab_delete_note", "__0123456789ab_read_note", "__ffffffffffff_delete_note"):
            with pytest.raises(MCPError) as caught:
                await client.call_tool(name, {"name": "x"})
            assert caught.value.code == -32602
        with pytest.raises(MCPError) as caught:
            await client.call_tool("delete_note", {"name": "x"})
        assert caught.value.code == -32003
    assert ran == []
    refused = [(e.target, e.reason) for e in sink.decisions() if e.effect == "deny"]
    assert ("__0123456789ab_delete_note", "name_refused") in refused
    assert ("delete_note", "no_deletes") in refused


@pytest.mark.parametrize("kind", ["lowlevel", "fastmcp"])
async def test_arguments_are_validated_against_the_declared_schema_of_any_server(kind: str, mode: str) -> None:
    """A server that declares its tools' input schemas (``get_tool_input_schema``: a lowlevel
    ``Server`` given one, every FastMCP server) gets its calls validated strictly before the
    decision: a ``count`` of ``"5"`` or an unknown argument never reaches the tool."""
    from mcp import Client, MCPError

    ran: list[Any] = []
    schema = {
        "type": "object",
        "properties": {"count": {"type": "integer"}},
        "required": ["count"],
        "additionalProperties": False,
    }
    hooks = Hooks()
    hooks.tool("*")(lambda ctx: Decision.allow("everyone"))
    target: Any
    if kind == "lowlevel":
        import mcp_types as types
        from mcp.server import ServerRequestContext
        from mcp.server.lowlevel import Server

        async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
            return types.ListToolsResult(tools=[types.Tool(name="repeat", input_schema=schema)])

        async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
            ran.append(params.arguments)
            return types.CallToolResult(content=[types.TextContent(type="text", text="ran")])

        target = Server(
            "low",
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            get_tool_input_schema=lambda name: schema if name == "repeat" else None,
        )
        govern(target, hooks)
    else:
        pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")
        from fastmcp import FastMCP

        from mcpgov._fastmcp import sdk_server

        fast = FastMCP("fast")

        @fast.tool
        def repeat(count: int) -> str:
            ran.append({"count": count})
            return "ran"

        govern(fast, hooks)
        target = sdk_server(fast)
    async with Client(target, mode=mode) as client:
        for arguments in ({"count": "5"}, {"count": 5, "extra": 1}, {"count": 5.5}, {}):
            with pytest.raises(MCPError) as caught:
                await client.call_tool("repeat", arguments)
            assert caught.value.code == -32602, arguments
        assert (await client.call_tool("repeat", {"count": 5})).is_error is False
    assert ran == [{"count": 5}]


async def test_an_allowed_fastmcp_component_does_not_reach_another_in_process(mode: str) -> None:
    """A tool the chain allowed ran as "the handler of an allowed request", and everything it
    reached in process counted as allowed too: FastMCP's search transform (its ``call_tool``
    proxy), ``ResourcesAsTools`` and any tool calling ``ctx.fastmcp.call_tool`` ran a denied tool,
    read a denied resource and listed hidden tools. Only exactly what the chain decided runs, once."""
    pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")
    from fastmcp import FastMCP
    from fastmcp.server.dependencies import get_context
    from fastmcp.server.transforms.resources_as_tools import ResourcesAsTools
    from fastmcp.server.transforms.search import RegexSearchTransform
    from mcp import Client

    from mcpgov._fastmcp import sdk_server

    ran: list[str] = []
    server = FastMCP("notes")

    @server.tool
    def delete_note(name: str) -> str:
        ran.append("delete_note")
        return "deleted"

    @server.tool
    async def relay(name: str) -> str:
        ran.append("relay")
        result = await get_context().fastmcp.call_tool(name, {"name": "x"})
        return str(result.content)

    @server.resource("secret://keys")
    def keys() -> str:
        ran.append("keys")
        return "KEYS"

    server.add_transform(RegexSearchTransform(always_visible=["relay"]))
    server.add_transform(ResourcesAsTools(server))
    hooks = Hooks()
    hooks.tool("delete_note")(lambda ctx: Decision.deny("no-deletes", "deleting needs a person", "no_deletes"))
    for proxy in ("call_tool", "search_tools", "read_resource", "relay"):
        hooks.tool(proxy)(lambda ctx: Decision.allow("proxies"))
    govern(server, hooks)
    async with Client(sdk_server(server), mode=mode) as client:
        found = await client.call_tool("search_tools", {"pattern": ".*"})
        assert "delete_note" not in str(found.content)
        for name, arguments in (
            ("call_tool", {"name": "delete_note", "arguments": {"name": "x"}}),
            ("relay", {"name": "delete_note"}),
            ("relay", {"name": "relay"}),
            ("read_resource", {"uri": "secret://keys"}),
        ):
            result = await client.call_tool(name, arguments)  # FastMCP reports a failed tool as a result
            assert result.is_error is True, (name, arguments)
            text = str(result.content)
            assert "this server is governed" in text or "Unknown tool: 'delete_note'" in text, text
            assert "KEYS" not in text
    assert "delete_note" not in ran
    assert "keys" not in ran


class _Caller:
    """Identity stand-in: every request comes from alice, in tenant t1."""

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        from mcpgov import Principal

        return await call_next(ctx.replace(principal=Principal("https://idp.test", "alice", tenant="t1"), tenant="t1"))


def _typed_server() -> tuple[MCPServer, InMemoryAuditSink, list[str]]:
    """Typed tools, prompts and resource templates; those named ``secret``/``deploy``/``leak``
    are not allowed."""
    server = MCPServer("typed")
    ran: list[str] = []

    @server.tool()
    def deploy(version: int, force: bool = False) -> str:
        ran.append("deploy")
        return "deployed"

    @server.tool()
    def build(version: int, force: bool = False) -> str:
        ran.append("build")
        return "built"

    @server.prompt()
    def leak(n: int) -> str:
        ran.append("leak")
        return "leaked"

    @server.prompt()
    def count(n: int) -> str:
        ran.append("count")
        return "counted"

    @server.resource("secret://items/{n}")
    def secret_item(n: int) -> str:
        ran.append("secret_item")
        return "secret"

    @server.resource("docs://items/{n}")
    def doc_item(n: int) -> str:
        ran.append("doc_item")
        return "doc"

    hooks = Hooks()
    hooks.tool("build")(lambda ctx: Decision.allow("builders"))
    hooks.prompt("count")(lambda ctx: Decision.allow("counters"))
    hooks.resource("docs://*")(lambda ctx: Decision.allow("docs"))
    sink = InMemoryAuditSink()
    govern(server, _Caller(), hooks, audit=sink)
    return server, sink, ran


async def _answer(client: Any, method: str, params: dict[str, Any]) -> tuple[int, str] | str:
    from mcp import MCPError
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    from .conftest import raw_request

    if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
        # A 2026-07-28 request carries its version and the client's capabilities, as the SDK sends it.
        stamp = {PROTOCOL_VERSION_META_KEY: client.protocol_version, CLIENT_CAPABILITIES_META_KEY: {}}
        params = {**params, "_meta": {**params.get("_meta", {}), **stamp}}
    try:
        await raw_request(client, method, params)
    except MCPError as exc:
        return exc.code, exc.error.message
    return "ran"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.sampled_from(["1", "01", " 1", "x", ""]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(["a", "version"]), inner, max_size=2),
    max_leaves=4,
)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    arguments=st.dictionaries(st.sampled_from(["version", "force", "n", "extra"]), json_values, max_size=3),
    text=st.sampled_from(["1", "01", "+1", " 1", "1_0", "x", "1.0"]),
)
async def test_invalid_requests_tell_nothing_about_a_target_the_caller_may_not_use(
    mode: str, arguments: dict[str, Any], text: str
) -> None:
    """Arguments were validated against the target before the decision and a failure was
    answered at once: a caller with no right to a tool, prompt or resource template told
    existing ones (``-32602``, with which arguments they take) from absent ones (``-32003``).
    A denied target now answers exactly like an absent one, whatever is sent, and only a caller
    the chain allows learns that its request is invalid."""
    from mcp import Client, MCPError

    server, sink, ran = _typed_server()
    async with Client(server, mode=mode) as client:
        for method, hidden, absent in (
            ("tools/call", {"name": "deploy", "arguments": arguments}, {"name": "nothing", "arguments": arguments}),
            ("prompts/get", {"name": "leak", "arguments": {"n": text}}, {"name": "nothing", "arguments": {"n": text}}),
            ("resources/read", {"uri": f"secret://items/{text}"}, {"uri": f"secret://none/{text}"}),
        ):
            assert (
                await _answer(client, method, hidden)
                == await _answer(client, method, absent)
                == (
                    -32003,
                    "Request denied",
                )
            )
        allowed = await _answer(client, "tools/call", {"name": "build", "arguments": arguments})
        valid = set(arguments) <= {"version", "force"} and type(arguments.get("version")) is int
        valid = valid and type(arguments.get("force", False)) is bool
        assert allowed == ("ran" if valid else (-32602, "Invalid request parameters"))
        if text == "1":
            assert (await client.get_prompt("count", {"n": text})).messages
        else:
            with pytest.raises(MCPError) as caught:
                await client.get_prompt("count", {"n": text})
            assert caught.value.code == -32602
    assert not {"deploy", "leak", "secret_item"} & set(ran)
    refused = {(e.target, e.reason) for e in sink.decisions() if e.effect == "deny"}
    assert ("deploy", "default_deny") in refused
    assert ("leak", "default_deny") in refused
    assert not {reason for target, reason in refused if target in ("deploy", "leak")} - {"default_deny"}


@pytest.mark.parametrize("spelling", ["01", "+1", "1_0", " 1", "1 ", "\uff11", "0x1", "1.0"])
async def test_fastmcp_prompt_and_template_arguments_are_decided_as_they_are_converted(
    mode: str, spelling: str
) -> None:
    """FastMCP converts the text of a resource template's parameters and of a prompt's
    arguments to the function's types after the decision: ``deny notes://1`` was walked around
    with ``notes://01`` or ``notes://+1`` (both read note 1), a prompt denied for ``n == "1"`` ran
    with ``"01"``. Such text must now be the canonical form of its value, as on an SDK server."""
    pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")
    from fastmcp import FastMCP
    from mcp import Client, MCPError

    from mcpgov._fastmcp import sdk_server

    ran: list[Any] = []
    server = FastMCP("notes")

    @server.resource("notes://{note}")
    def note(note: int) -> str:
        ran.append(("note", note))
        return f"note {note}"

    @server.prompt
    def recall(n: int, tags: list[int]) -> str:
        ran.append(("recall", n, tags))
        return "recalled"

    hooks = Hooks()
    hooks.resource("notes://1")(lambda ctx: Decision.deny("secret-note", "note 1 is secret", "secret"))
    hooks.resource("notes://*")(lambda ctx: Decision.allow("notes"))

    @hooks.prompt("recall")
    def no_note_one(ctx: Any) -> Decision:
        if ctx.arguments is not None and ctx.arguments.get("n") == "1":
            return Decision.deny("secret-note", "note 1 is secret", "secret")
        return Decision.allow("recall")

    govern(server, hooks)
    async with Client(sdk_server(server), mode=mode) as client:
        with pytest.raises(MCPError) as read:
            await client.read_resource(f"notes://{spelling}")
        with pytest.raises(MCPError) as got:
            await client.get_prompt("recall", {"n": spelling, "tags": "[1]"})
        for honest in ("notes://1",):
            with pytest.raises(MCPError) as denied:
                await client.read_resource(honest)
            assert denied.value.code == -32003
        assert (await client.read_resource("notes://7")).contents
        assert (await client.get_prompt("recall", {"n": "7", "tags": "[1,2]"})).messages
        with pytest.raises(MCPError) as spaced:
            await client.get_prompt("recall", {"n": "7", "tags": "[1, 2]"})
    assert read.value.code in (-32602, -32003)
    assert got.value.code == -32602
    assert spaced.value.code == -32602
    assert ran == [("note", 7), ("recall", 7, [1, 2])]


@pytest.mark.parametrize("version", ["1", "2", 1, None, {"eq": "1"}])
async def test_a_fastmcp_component_version_is_not_chosen_by_the_caller(mode: str, version: Any) -> None:
    """FastMCP runs the version of a tool that ``_meta.fastmcp.version`` names: the chain
    decided on ``deploy`` (its arguments checked against the newest version's schema) and the
    caller ran ``deploy`` version 1, which ignores ``dry_run``. A request that selects a version
    is now refused, at once (the same for every name); without one, the version listed runs."""
    pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")
    from fastmcp import FastMCP
    from mcp import Client, MCPError

    from mcpgov._fastmcp import sdk_server

    ran: list[Any] = []
    server = FastMCP("versions")

    @server.tool(name="deploy", version="1")
    def deploy_v1(env: str) -> str:
        ran.append(("v1", env))
        return "deployed"

    @server.tool(name="deploy", version="2")
    def deploy_v2(env: str, dry_run: bool = True) -> str:
        ran.append(("v2", env, dry_run))
        return "planned"

    hooks = Hooks()
    hooks.tool("deploy")(lambda ctx: Decision.allow("deployers"))
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(sdk_server(server), mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool(
                "deploy", {"env": "prod"}, meta=cast("RequestParamsMeta", {"fastmcp": {"version": version}})
            )
        assert (await client.call_tool("deploy", {"env": "prod"})).is_error is False
    assert caught.value.code == -32602
    assert ran == [("v2", "prod", True)]
    assert ("deploy", "version_selected") in {(e.target, e.reason) for e in sink.decisions() if e.effect == "deny"}


async def test_an_invalid_request_is_audited_with_its_caller_and_arguments(mode: str) -> None:
    """Told only after a discovery decision, an invalid request is still recorded as sent: the
    refusal names the caller the chain established, the arguments' hash and the request's action."""
    from mcp import Client

    server, sink, ran = _typed_server()
    async with Client(server, mode=mode) as client:
        assert await _answer(client, "tools/call", {"name": "build", "arguments": {"version": "7"}}) == (
            -32602,
            "Invalid request parameters",
        )
    (refusal,) = [e for e in sink.decisions() if e.target == "build"]
    assert (refusal.effect, refusal.reason, refusal.principal) == (
        "deny",
        "arguments_invalid",
        "https://idp.test#alice",
    )
    assert refusal.tenant == "t1"
    assert refusal.args_hash is not None
    assert ran == []
