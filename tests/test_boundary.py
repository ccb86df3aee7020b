"""The SDK boundary, chain order and name hygiene, through real sessions.

* tool code never sees a token: not in ``_meta``, not in the HTTP request's headers or body, not
  from the SDK's ``get_access_token()``;
* a chain whose stages rely on a later stage is refused at construction, with a working order;
* a governed server does not serve names a client-side pin would refuse;
* prompts and resource templates decide on the canonical spelling of what the SDK converts;
* every private SDK attribute mcpgov relies on still exists (fails loudly on an SDK change).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context, MCPServer

from mcpgov import ConfigurationError, Decision, GovContext, GovernedClient, Hooks, Middleware, NamePolicy, govern
from mcpgov._sdk import compat
from mcpgov.credentials import CredentialIssuer, CredentialMiddleware, SigningKeySet
from mcpgov.identity import IdentityMiddleware, server_auth
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, serve_http

pytestmark = pytest.mark.anyio

RESOURCE = "http://127.0.0.1/mcp"


def _allow_all() -> Hooks:
    hooks = Hooks()
    for register in (hooks.tool, hooks.resource, hooks.prompt):
        register("*")(lambda ctx: Decision.allow("all"))
    return hooks


# -- tokens never reach tool code -------------------------------------------------------------------


async def test_tool_code_sees_no_token_over_http(mode: str) -> None:
    issuer = IdentityIssuer(audience=RESOURCE)
    identity = IdentityMiddleware(issuer.verifier(tenant_claim="tenant"))
    server = MCPServer(
        "s", **server_auth(identity, resource_server_url=RESOURCE, authorization_server="https://issuer.test")
    )
    seen: dict[str, Any] = {}

    @server.tool()
    async def peek(ctx: Context) -> str:
        request = ctx.request_context.request
        assert request is not None
        seen["headers"] = {k.lower(): v for k, v in request.headers.items()}
        seen["body"] = await request.body()
        seen["meta"] = dict(ctx.request_context.meta or {})
        token = get_access_token()
        seen["access_token"] = token.token if token is not None else None
        seen["user_token"] = getattr(getattr(request.scope.get("user"), "access_token", None), "token", None)
        return "ok"

    govern(server, identity, _allow_all())
    token = issuer.token("agent-1", tenant="acme")
    async with (
        serve_http(server.streamable_http_app()) as base,
        GovernedClient(f"{base}/mcp", identity=token, mode=mode) as client,
    ):
        assert (await client.call_tool("peek", {})).is_error is False
    assert "authorization" not in seen["headers"]
    assert seen["body"] == b""
    assert seen["access_token"] is not None  # the tool still knows it was authenticated...
    assert token not in repr(seen)  # ...but never sees the token


# -- chain order ------------------------------------------------------------------------------------


def _identity() -> IdentityMiddleware:
    return IdentityMiddleware(IdentityIssuer(audience="urn:s").verifier())


def _credentials() -> CredentialMiddleware:
    issuer = CredentialIssuer("https://issuer.example", SigningKeySet.generate())
    return CredentialMiddleware(issuer.verifier("urn:s"))


@pytest.mark.parametrize(
    "order",
    [
        ("credentials", "identity", "hooks"),
        ("hooks", "identity"),
        ("policy", "identity", "credentials"),
        ("identity", "hooks", "credentials"),
        ("identity", "policy", "credentials", "hooks"),
    ],
)
def test_an_impossible_chain_order_is_refused_with_the_right_one(order: tuple[str, ...]) -> None:
    stages: dict[str, Callable[[], Middleware]] = {
        "identity": _identity,
        "credentials": _credentials,
        "hooks": _allow_all,
        "policy": lambda: PolicyMiddleware(Policy.from_yaml("version: 1\nrules: []\n")),
    }
    server = MCPServer("s")
    with pytest.raises(ConfigurationError) as caught:
        govern(server, *(stages[name]() for name in order))
    message = str(caught.value)
    assert "put the stages in this order" in message
    suggested = message.rsplit(": ", 1)[1].split(", ")
    assert suggested.index("IdentityMiddleware") < min(
        i for i, name in enumerate(suggested) if name not in ("IdentityMiddleware",)
    )
    # The order suggested is accepted.
    ranked = sorted(order, key=["identity", "credentials", "policy", "hooks"].index)
    govern(MCPServer("ok"), *(stages[name]() for name in ranked))


def test_a_possible_chain_order_is_accepted() -> None:
    govern(MCPServer("s"), _identity(), _credentials(), _allow_all())
    govern(MCPServer("t"), _allow_all())  # nothing provides a principal: nothing to order


# -- name hygiene -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ("deploy_prod", "d\u0435ploy_prod"),  # Cyrillic e
        ("read_file", "read-file"),
        ("read_file", "READ_FILE"),
        ("read_file", "read_fi1e"),
        ("deploy", "deploy prod"),
        ("deploy", "deploy\u200b"),
        ("refund", "\uff52efund"),  # fullwidth r
    ],
)
def test_govern_refuses_a_server_with_unsafe_names(names: tuple[str, ...]) -> None:
    server = MCPServer("s")
    for name in names:
        server.add_tool(lambda: "x", name=name)
    with pytest.raises(ConfigurationError) as caught:
        govern(server, _allow_all())
    assert "NamePolicy" in str(caught.value)
    # A server that must keep a legacy name says so explicitly.
    kept = MCPServer("k")
    for name in names:
        kept.add_tool(lambda: "x", name=name)
    govern(kept, _allow_all(), names=NamePolicy(allow=frozenset(names)))


async def test_names_registered_later_are_hidden_and_refused(mode: str) -> None:
    server = MCPServer("s")
    ran: list[str] = []

    @server.tool()
    def deploy_prod() -> str:
        ran.append("deploy_prod")
        return "x"

    hooks = Hooks()
    hooks.tool("*")(lambda ctx: Decision.allow("all"))
    hooks.tool("deploy*")(lambda ctx: Decision.deny("no-deploys"))
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)

    def impostor() -> str:
        ran.append("impostor")
        return "pwned"

    server.add_tool(impostor, name="d\u0435ploy_prod")
    server.add_tool(impostor, name="Deploy_Prod")
    async with Client(server, mode=mode) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        for name in ("d\u0435ploy_prod", "Deploy_Prod", "deploy_prod"):
            with pytest.raises(MCPError):
                await client.call_tool(name, {})
    assert listed == set()  # the three collide with one another: none is served
    assert ran == []
    reasons = {e.reason for e in sink.events if e.effect == "deny"}
    assert "name_refused" in reasons


async def test_a_name_check_remembered_between_calls_follows_the_registry(mode: str) -> None:
    """The served names are worked out once and kept while the registry is unchanged: a tool
    registered between two calls that collides with a served one gets both refused at once, and
    removing it serves the first one again."""
    server = MCPServer("s")
    ran: list[str] = []

    @server.tool()
    def report() -> str:
        ran.append("report")
        return "x"

    hooks = Hooks()
    hooks.tool("*")(lambda ctx: Decision.allow("all"))
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        assert (await client.call_tool("report", {})).is_error is False
        assert (await client.call_tool("report", {})).is_error is False
        server.add_tool(lambda: "pwned", name="Report")
        for name in ("report", "Report"):
            with pytest.raises(MCPError):
                await client.call_tool(name, {})
        server.remove_tool("Report")
        assert (await client.call_tool("report", {})).is_error is False
    assert ran == ["report", "report", "report"]
    refused = [e.target for e in sink.events if e.effect == "deny" and e.reason == "name_refused"]
    assert refused == ["report", "Report"]


# -- prompts and resource templates decide on the canonical spelling --------------------------------


def _converting_server(ran: list[Any]) -> MCPServer:
    server = MCPServer("conv")

    @server.prompt()
    def order_prompt(order: int) -> str:
        ran.append(("prompt", order))
        return f"order {order}"

    @server.resource("orders://{order}")
    def order_resource(order: int) -> str:
        ran.append(("resource", order))
        return f"order {order}"

    hooks = Hooks()
    hooks.prompt("*")(
        lambda ctx: (
            Decision.deny("zero") if ctx.arguments and ctx.arguments.get("order") == "0" else Decision.allow("p")
        )
    )
    hooks.resource("*")(lambda ctx: Decision.deny("zero") if ctx.target == "orders://0" else Decision.allow("r"))
    govern(server, hooks)
    return server


@pytest.mark.parametrize("spelling", ["00", " 0", "0.0", "+0", "-0", "0\n", "\uff10"])
async def test_prompt_and_template_arguments_must_be_canonical(mode: str, spelling: str) -> None:
    ran: list[Any] = []
    server = _converting_server(ran)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as prompt_error:
            await client.get_prompt("order_prompt", {"order": spelling})
        with pytest.raises(MCPError):
            await client.read_resource(f"orders://{spelling}")
        with pytest.raises(MCPError) as denied:
            await client.get_prompt("order_prompt", {"order": "0"})
        assert (await client.get_prompt("order_prompt", {"order": "7"})).messages
        assert (await client.read_resource("orders://7")).contents
    assert prompt_error.value.code == -32602
    assert denied.value.code == -32003
    assert ran == [("prompt", 7), ("resource", 7)]


@pytest.mark.parametrize(
    "uri",
    [
        "orders://%30",  # percent-encoded digit
        "orders://0%2F..%2F1",
        "orders://%2e%2e",
        "orders://1%00",
        "orders://1%25",
        "orders://\uff11",
        "orders://1\u2025",
    ],
)
async def test_resource_uris_must_be_canonical(mode: str, uri: str) -> None:
    ran: list[Any] = []
    server = _converting_server(ran)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.read_resource(uri)
    assert caught.value.code == -32602
    assert ran == []


# -- the private SDK attributes mcpgov relies on ----------------------------------------------------


def test_every_private_sdk_access_still_works() -> None:
    server = MCPServer("s")

    @server.tool()
    def t(a: int) -> int:
        return a

    @server.prompt()
    def p(x: str) -> str:
        return x

    @server.resource("r://{x}")
    def r(x: str) -> str:
        return x

    assert isinstance(compat.lowlevel_of(server), Server)
    tool = compat.tool_of(server, "t")
    assert tool is not None and tool.fn_metadata.arg_model.model_fields.keys() == {"a"}
    assert callable(tool.fn_metadata.pre_parse_json)
    assert compat.tool_of(server, "missing") is None
    assert compat.prompt_of(server, "p") is not None
    assert compat.tool_names(server) == ["t"] and compat.prompt_names(server) == ["p"]
    (template,) = compat.resource_templates_of(server)
    assert template.matches("r://1") == {"x": "1"}
    assert callable(template.fn)
    assert hasattr(compat.lowlevel_of(server), "get_tool_input_schema")
    assert hasattr(compat.in_memory_transport(server), "__aenter__")


async def test_the_session_connection_anchor_still_exists() -> None:
    server = MCPServer("s")
    anchors: list[Any] = []

    async def look(ctx: GovContext, call_next: Any) -> Any:
        anchors.append(ctx.transport.session if ctx.transport is not None else None)
        return await call_next(ctx)

    govern(server, look, _allow_all())
    server.add_tool(lambda: "x", name="x")
    async with Client(server, mode="legacy") as client:
        await client.call_tool("x", {})
        await client.call_tool("x", {})
    assert anchors[0] is not None and anchors[0] is anchors[-1]


async def test_a_session_connection_still_runs_its_exit_stack_when_the_session_ends() -> None:
    """The gateway releases what a session holds from its connection's exit stack."""
    from contextlib import AsyncExitStack

    server = MCPServer("s")
    ended: list[str] = []

    @server.tool()
    def x(ctx: Context) -> str:
        connection = compat.connection_of(ctx.request_context.session)
        assert isinstance(connection.exit_stack, AsyncExitStack)
        connection.exit_stack.push_async_callback(_append, ended, "ended")
        return "x"

    async with Client(server, mode="legacy") as client:
        await client.call_tool("x", {})
        assert ended == []
    assert ended == ["ended"]


async def _append(items: list[str], item: str) -> None:
    items.append(item)


async def test_the_client_request_stamp_and_input_driver_still_exist() -> None:
    """The gateway narrows a connected session's request stamp and overrides the input driver."""
    import inspect

    server = MCPServer("s")
    server.add_tool(lambda: "x", name="x")
    seen: list[dict[str, Any]] = []

    def wrap(stamp: Any) -> Any:
        def stamped(data: dict[str, Any], opts: Any) -> None:
            stamp(data, opts)
            seen.append(data)

        return stamped

    async with Client(server, mode="auto") as client:
        compat.wrap_request_stamp(client.session, wrap)
        await client.call_tool("x", {})
    assert "tools/call" in [data["method"] for data in seen]
    with pytest.raises(TypeError, match="_stamp"):
        compat.wrap_request_stamp(object(), wrap)
    driver = getattr(Client, compat.INPUT_REQUIRED_DRIVER)
    assert inspect.iscoroutinefunction(driver)
    assert list(inspect.signature(driver).parameters) == ["self", "first", "retry"]


def _private_names(tree: ast.AST) -> set[str]:
    """The private (single-underscore) attribute and method names a module's classes define."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _sources(package: Any) -> dict[Path, ast.AST]:
    root = Path(package.__file__).parent
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(root.rglob("*.py"))}


def test_private_sdk_attributes_are_reached_only_from_the_compat_module() -> None:
    """Outside ``mcpgov/_sdk/``, no attribute access (``x._name``, ``getattr(x, "_name")``) names a
    private attribute the SDK defines and mcpgov does not define itself."""
    import mcp

    import mcpgov

    sdk: set[str] = set()
    for tree in _sources(mcp).values():
        sdk |= _private_names(tree)
    ours = _sources(mcpgov)
    own: set[str] = set()
    for path, tree in ours.items():
        if "_sdk" not in path.parts:
            own |= _private_names(tree)
    # Names the SDK keeps private that mcpgov needs: whoever else defines the same name, these
    # are reached only through the compat module.
    needed = {
        "_connect",
        "_connect_transport",
        "_connection",
        "_drive_input_required",
        "_lowlevel_server",
        "_mcp_server",
        "_prompt_manager",
        "_resource_manager",
        "_stamp",
        "_tool_manager",
    }
    assert needed - {"_mcp_server"} <= sdk
    suspect = (sdk - own) | needed
    found: list[str] = []
    for path, tree in ours.items():
        if "_sdk" in path.parts:
            continue
        for node in ast.walk(tree):
            name: str | None = None
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = node.name  # an override of an SDK private method
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"getattr", "setattr", "hasattr", "delattr"}
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                name = node.args[1].value
            if name in suspect:
                found.append(f"{path.name}:{getattr(node, 'lineno', 0)} {name}")
    assert found == [], "\n".join(found)


def test_the_input_driver_hook_reaches_the_sdk_driver() -> None:
    """``InputDrivenClient`` overrides exactly the SDK's private driver, and its hook calls it."""
    assert compat.INPUT_REQUIRED_DRIVER in vars(compat.InputDrivenClient)
    assert getattr(Client, compat.INPUT_REQUIRED_DRIVER) is not getattr(
        compat.InputDrivenClient, compat.INPUT_REQUIRED_DRIVER
    )


async def test_listing_code_sees_no_token_over_http(mode: str) -> None:
    """A server's own listing code (here an ``MCPServer`` subclass) runs without the token too."""
    issuer = IdentityIssuer(audience=RESOURCE)
    identity = IdentityMiddleware(issuer.verifier(tenant_claim="tenant"))
    seen: list[str | None] = []

    class Peeking(MCPServer):
        async def list_tools(self) -> Any:
            access = get_access_token()
            seen.append(access.token if access is not None else None)
            return await super().list_tools()

    server = Peeking(
        "s", **server_auth(identity, resource_server_url=RESOURCE, authorization_server="https://issuer.test")
    )

    @server.tool()
    async def ping() -> str:
        return "pong"

    govern(server, identity, _allow_all())
    token = issuer.token("agent-1", tenant="acme")
    async with (
        serve_http(server.streamable_http_app()) as base,
        GovernedClient(f"{base}/mcp", identity=token, mode=mode) as client,
    ):
        assert [t.name for t in (await client.list_tools()).tools] == ["ping"]
    assert seen and all(value is not None for value in seen)  # still authenticated...
    assert token not in repr(seen)  # ...without the token
