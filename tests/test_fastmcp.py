"""FastMCP 4 servers governed by ``govern()``: in-process, over Streamable HTTP and over stdio, in both
protocol modes; ``Hooks.guard`` and ``@gov.tool`` next to FastMCP's decorators; unsupported versions."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

fastmcp = pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")

from fastmcp import Context, FastMCP  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from mcp import Client, MCPError, StdioServerParameters  # noqa: E402
from mcp_types import RequestParamsMeta  # noqa: E402

from mcpgov import ConfigurationError, Decision, GovContext, Hooks, govern  # noqa: E402
from mcpgov._context import META_IDENTITY  # noqa: E402
from mcpgov._fastmcp import sdk_server  # noqa: E402
from mcpgov.policy import Policy, PolicyDecorators, PolicyMiddleware  # noqa: E402
from mcpgov.testing import InMemoryAuditSink, serve_http  # noqa: E402

from .policies.support import LookupIdentity, as_  # noqa: E402

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastmcp_server.py"


@dataclass
class Governed:
    server: FastMCP[Any]
    hooks: Hooks
    sink: InMemoryAuditSink
    ran: list[str] = field(default_factory=list)
    seen_meta: list[dict[str, Any]] = field(default_factory=list)


def build() -> Governed:
    server: FastMCP[Any] = FastMCP("fast")
    hooks = Hooks(deadline=0.5)
    g = Governed(server, hooks, InMemoryAuditSink())

    @hooks.tool("read_*")
    @hooks.resource("docs://*")
    @hooks.prompt("summar*")
    def readers(ctx: GovContext) -> Decision:
        return Decision.allow("readers")

    @server.tool
    def read_file(path: str, ctx: Context) -> str:
        g.ran.append("read_file")
        meta = ctx.request_context.meta if ctx.request_context is not None else None
        g.seen_meta.append(dict(meta or {}))
        return f"contents of {path}"

    @hooks.guard(lambda ctx: Decision.deny("no-deploys", "deploys are frozen", "frozen"))
    @server.tool
    def deploy(version: str) -> str:
        g.ran.append("deploy")
        return f"deployed {version}"

    @server.tool(name="wipe_all")
    def wipe() -> str:  # no hook: default deny, hidden
        g.ran.append("wipe_all")
        return "wiped"

    @server.resource("docs://readme")
    def readme() -> str:
        g.ran.append("readme")
        return "README"

    @server.resource("secret://keys")
    def keys() -> str:
        g.ran.append("keys")
        return "KEYS"

    @server.prompt
    def summarise(text: str) -> str:
        return f"Summarise: {text}"

    govern(server, hooks, audit=g.sink)
    return g


async def _exercise(client: Client, g: Governed) -> None:
    """The same checks on every transport."""
    assert [t.name for t in (await client.list_tools()).tools] == ["read_file"]
    assert [str(r.uri) for r in (await client.list_resources()).resources] == ["docs://readme"]
    result = await client.call_tool(
        "read_file", {"path": "/a"}, meta=cast("RequestParamsMeta", {META_IDENTITY: "secret-token"})
    )
    assert result.content[0].text == "contents of /a"  # type: ignore[union-attr]
    for tool, args in (("deploy", {"version": "1"}), ("wipe_all", {})):
        with pytest.raises(MCPError) as caught:
            await client.call_tool(tool, args)
        assert caught.value.code == -32003
        assert "frozen" not in caught.value.error.message
    with pytest.raises(MCPError) as caught:
        await client.read_resource("secret://keys")
    assert caught.value.code == -32003
    assert (await client.read_resource("docs://readme")).contents[0].text == "README"  # type: ignore[union-attr]
    assert (await client.get_prompt("summarise", {"text": "x"})).messages
    with pytest.raises(MCPError) as caught:
        await client.get_prompt("summary", {})  # allowed, but there is no such prompt
    assert caught.value.code == -32602
    with pytest.raises(MCPError) as caught:
        await client.get_prompt("no-such-prompt", {})  # not allowed: nothing is revealed
    assert caught.value.code == -32003


def _check_trail(g: Governed) -> None:
    assert g.ran.count("deploy") == 0
    assert "wipe_all" not in g.ran
    assert "keys" not in g.ran
    # the identity token in _meta never reaches tool code
    assert g.seen_meta
    assert all(META_IDENTITY not in meta for meta in g.seen_meta)
    rules = {(e.method, e.target, e.effect, e.rule) for e in g.sink.decisions()}
    assert ("tools/call", "deploy", "deny", "no-deploys") in rules
    assert ("tools/call", "wipe_all", "deny", "mcpgov:default-deny") in rules
    assert ("tools/call", "read_file", "allow", "readers") in rules


async def test_in_process(mode: str) -> None:
    g = build()
    async with Client(sdk_server(g.server), mode=mode) as client:
        await _exercise(client, g)
    _check_trail(g)


async def test_over_streamable_http(mode: str) -> None:
    g = build()
    async with serve_http(g.server.http_app()) as base, Client(f"{base}/mcp", mode=mode) as client:
        await _exercise(client, g)
    _check_trail(g)


async def test_fastmcps_own_client_is_governed_too() -> None:
    g = build()
    async with fastmcp.Client(g.server) as client:
        assert [t.name for t in await client.list_tools()] == ["read_file"]
        with pytest.raises(Exception, match="denied"):
            await client.call_tool("deploy", {"version": "1"})
    assert "deploy" not in g.ran


async def test_fastmcp_middleware_runs_inside_governance(mode: str) -> None:
    """FastMCP's own middleware sees only what governance allowed."""
    from fastmcp.server.middleware import Middleware, MiddlewareContext

    seen: list[str] = []

    class Record(Middleware):
        async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
            seen.append(context.message.name)
            return await call_next(context)

    g = build()
    g.server.add_middleware(Record())
    async with Client(sdk_server(g.server), mode=mode) as client:
        await client.call_tool("read_file", {"path": "/b"})
        with pytest.raises(MCPError):
            await client.call_tool("deploy", {"version": "2"})
    assert seen == ["read_file"]


async def test_gov_tool_declarations_next_to_fastmcp(mode: str) -> None:
    server: FastMCP[Any] = FastMCP("declared")
    gov = PolicyDecorators(server)
    ran: list[str] = []

    @gov.tool(scopes=["files:write"], risk="high", description="Write a file.")
    def write_file(path: str) -> str:
        ran.append(path)
        return "written"

    policy = Policy.from_yaml("rules:\n  - {id: acme, effect: allow, tenants: [acme], tools: ['*']}\n", source="p.yaml")
    sink = InMemoryAuditSink()
    govern(server, LookupIdentity(), PolicyMiddleware(policy, declarations=gov), audit=sink)
    async with Client(sdk_server(server), mode=mode) as client:
        tools = (await client.list_tools(meta=as_("alice"))).tools
        assert [t.name for t in tools] == ["write_file"]
        assert tools[0].meta is not None
        assert tools[0].meta["io.mcpgov/policy"]["scopes"] == ["files:write"]
        await client.call_tool("write_file", {"path": "/x"}, meta=as_("alice"))
        with pytest.raises(MCPError) as caught:  # reader lacks files:write
            await client.call_tool("write_file", {"path": "/y"}, meta=as_("reader"))
        assert caught.value.code == -32003
    assert ran == ["/x"]


@pytest.mark.slow
async def test_over_stdio_in_both_modes() -> None:
    """The example server, spawned over stdio: listing filtered, guarded tool refused."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    params = StdioServerParameters(command=sys.executable, args=[str(EXAMPLE), "--stdio"], env=env)
    for mode in ("auto", "legacy"):
        async with Client(params, mode=mode) as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["read_note"]
            result = await client.call_tool("read_note", {"name": "welcome"})
            assert "governed FastMCP" in result.content[0].text  # type: ignore[union-attr]
            with pytest.raises(MCPError) as caught:
                await client.call_tool("delete_note", {"name": "welcome"})
            assert caught.value.code == -32003


# -- configuration ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    version=st.one_of(
        st.from_regex(r"(0|[1-35-9]|[1-9][0-9])\.[0-9]{1,2}\.[0-9]{1,2}", fullmatch=True),
        st.sampled_from(["3.4.11", "5.0.0", "5.0.0rc1", "not-a-version", ""]),
    )
)
def test_an_unsupported_fastmcp_version_is_one_clear_error(version: str) -> None:
    server: FastMCP[Any] = FastMCP("old")
    original = fastmcp.__version__
    fastmcp.__version__ = version
    try:
        with pytest.raises(ConfigurationError, match=r"FastMCP 4\.x") as caught:
            govern(server, Hooks())
    finally:
        fastmcp.__version__ = original
    assert "pip install 'mcpgov[fastmcp]'" in str(caught.value)
    assert not any(type(mw).__name__ == "ServerGovernance" for mw in sdk_server(server).middleware)


@pytest.mark.parametrize("version", ["4.0.0", "4.2.3", "4.9.1.post1"])
def test_every_fastmcp_4_version_is_accepted(version: str) -> None:
    server: FastMCP[Any] = FastMCP("ok")
    original = fastmcp.__version__
    fastmcp.__version__ = version
    try:
        installed = govern(server, Hooks())
    finally:
        fastmcp.__version__ = original
    assert installed in sdk_server(server).middleware


def test_a_fastmcp_server_of_another_layout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    server: FastMCP[Any] = FastMCP("odd")
    monkeypatch.setattr(server, "_mcp_server", object())
    with pytest.raises(ConfigurationError, match=r"FastMCP 4\.x"):
        govern(server, Hooks())


def test_governing_a_fastmcp_server_twice_is_refused() -> None:
    server: FastMCP[Any] = FastMCP("twice")
    govern(server, Hooks())
    with pytest.raises(ConfigurationError, match="already governed"):
        govern(server, Hooks())


def test_the_server_must_be_a_server() -> None:
    with pytest.raises(ConfigurationError, match="FastMCP 4 server"):
        govern(object(), Hooks())  # type: ignore[arg-type]


async def test_methods_a_fastmcp_server_does_not_serve_answer_as_without_governance() -> None:
    """Removed (2026-07-28) and unknown methods get FastMCP's and the SDK's own answer, governed or not."""
    import httpx2
    from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

    requests: list[tuple[str, Any]] = [
        ("resources/subscribe", {"uri": "docs://readme"}),
        ("resources/unsubscribe", {"uri": 7}),
        ("logging/setLevel", {"level": "debug"}),
        ("x/unknown", {"name": "read_file"}),
        ("tasks/list", None),
    ]

    async def answers(server: FastMCP[Any]) -> list[tuple[int, int, Any]]:
        out: list[tuple[int, int, Any]] = []
        async with serve_http(server.http_app()) as base, httpx2.AsyncClient() as http:
            for index, (method, params) in enumerate(requests):
                body = dict(params or {})
                body["_meta"] = {PROTOCOL_VERSION_META_KEY: "2026-07-28", CLIENT_CAPABILITIES_META_KEY: {}}
                response = await http.post(
                    f"{base}/mcp",
                    json={"jsonrpc": "2.0", "id": index + 1, "method": method, "params": body},
                    headers={
                        "Accept": "application/json, text/event-stream",
                        "MCP-Protocol-Version": "2026-07-28",
                        "Mcp-Method": method,
                    },
                )
                error = response.json()["error"]
                out.append((response.status_code, error["code"], error.get("data")))
        return out

    bare: FastMCP[Any] = FastMCP("fast")
    g = build()
    governed_answers = await answers(g.server)
    assert governed_answers == await answers(bare)
    assert {code for _, code, _ in governed_answers} == {-32601}
    assert g.sink.decisions() == []


async def test_a_governed_fastmcp_server_mounted_into_another_keeps_its_governance() -> None:
    """`govern(sub, ...)` then `main.mount(sub)`: FastMCP calls the mounted server's tools in
    process, past the SDK server govern() installed the chain on. They run only as the handler of
    a request `sub`'s own chain allowed: through the mount (governed or not) and in process they
    are refused (-32003), while `sub` served directly keeps working."""
    from fastmcp import Client as FastClient

    ran: list[str] = []
    sub = FastMCP("notes")
    hooks = Hooks()

    @hooks.tool("read_*")
    def readers(ctx: GovContext) -> Decision:
        return Decision.allow("readers")

    @sub.tool
    def delete_note(name: str) -> str:
        ran.append(f"delete {name}")
        return "deleted"

    @sub.tool
    def read_note(name: str) -> str:
        ran.append(f"read {name}")
        return "a note"

    govern(sub, hooks)
    async with FastClient(sub) as client:
        with pytest.raises(Exception, match="denied"):
            await client.call_tool("delete_note", {"name": "direct"})
        assert (await client.call_tool("read_note", {"name": "direct"})).is_error is False
    assert ran == ["read direct"]

    main = FastMCP("gateway")
    main.mount(sub, namespace="notes")
    async with FastClient(main) as client:
        for tool in ("notes_delete_note", "notes_read_note"):
            with pytest.raises(Exception, match="governed"):
                await client.call_tool(tool, {"name": "via-mount"})
    governed_main = FastMCP("governed-gateway")
    governed_main.mount(sub, namespace="notes")
    everyone = Hooks()
    everyone.register("*", lambda ctx: Decision.allow("everyone"))
    govern(governed_main, everyone)
    async with FastClient(governed_main) as client:
        with pytest.raises(Exception, match="governed"):
            await client.call_tool("notes_delete_note", {"name": "via-governed-mount"})
    with pytest.raises(MCPError, match="governed"):
        await sub.call_tool("delete_note", {"name": "in-process"})
    assert ran == ["read direct"]
