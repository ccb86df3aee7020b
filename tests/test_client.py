"""GovernedClient: a drop-in mcp.Client whose own chain refuses before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import Implementation

from mcpgov import (
    HTTP_AUTHORIZATION,
    META_CREDENTIAL,
    META_IDENTITY,
    Decision,
    Denied,
    GovContext,
    GovernedClient,
    Hooks,
    Principal,
    govern,
)
from mcpgov.testing import InMemoryAuditSink, serve_http

from .conftest import Demo

pytestmark = pytest.mark.anyio


def _client_hooks() -> Hooks:
    hooks = Hooks()

    @hooks.tool("read_*")
    def reads(ctx: GovContext) -> Decision:
        return Decision.allow("agent-may-read")

    @hooks.resource("*")
    @hooks.prompt("*")
    def everything_else(ctx: GovContext) -> Decision:
        return Decision.allow("agent-other")

    return hooks


async def test_client_denial_raises_before_anything_is_sent(demo: Demo, mode: str) -> None:
    client_sink = InMemoryAuditSink()
    async with GovernedClient(demo.server, _client_hooks(), audit=client_sink, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("explode", {})
    assert caught.value.code == -32003
    assert isinstance(caught.value.__cause__, Denied)
    assert caught.value.__cause__.decision.rule == "mcpgov:default-deny"
    # The server saw nothing of it: no event, no run.
    assert demo.sink.for_target("explode") == []
    assert demo.ran == []
    (event,) = client_sink.decisions()
    assert (event.side, event.effect, event.target) == ("client", "deny", "explode")


async def test_client_and_server_chains_both_apply(demo: Demo, mode: str) -> None:
    client_sink = InMemoryAuditSink()
    async with GovernedClient(demo.server, _client_hooks(), audit=client_sink, mode=mode) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        assert tools == ["read_file"]  # the server hides deploy, the client hides explode
        result = await client.call_tool("read_file", {"path": "x"})
        assert result.is_error is False
        assert (await client.read_resource("docs://readme")).contents
    assert demo.ran == ["read_file", "readme"]
    sides = {(e.side, e.type) for e in client_sink.events}
    assert ("client", "outcome") in sides


async def test_client_without_middleware_leaves_deciding_to_the_server(demo: Demo, mode: str) -> None:
    async with GovernedClient(demo.server, mode=mode) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"read_file", "explode"}
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.data["code"] == "mcpgov.denied"


async def test_drop_in_for_mcp_client(mode: str) -> None:
    server = MCPServer("plain")

    @server.tool()
    def add(a: int, b: int) -> int:
        return a + b

    client = GovernedClient(server, mode=mode, client_info=Implementation(name="agent", version="1"))
    assert isinstance(client, Client)
    async with client:
        assert (await client.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}


async def test_client_context_carries_principal_purpose_and_task(mode: str) -> None:
    server = MCPServer("s")

    @server.tool()
    def work() -> str:
        return "ok"

    seen: list[tuple[Any, ...]] = []
    hooks = Hooks()

    @hooks.tool("work")
    def record(ctx: GovContext) -> Decision:
        if ctx.action == "execute":
            seen.append((ctx.side, ctx.principal, ctx.tenant, ctx.purpose, ctx.task_id))
        return Decision.allow("record")

    me = Principal(issuer="https://id.example", subject="agent-7", tenant="acme")
    async with GovernedClient(server, hooks, principal=me, purpose="triage", task_id="t-1", mode=mode) as client:
        await client.call_tool("work", {})
    assert seen == [("client", me, "acme", "triage", "t-1")]


async def test_client_refuses_oversized_arguments_locally(demo: Demo, mode: str) -> None:
    async with GovernedClient(demo.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("read_file", {"path": {"a": {"b": {"c": {}}}} if False else "x" * 2_000_000})
    assert caught.value.code == -32602
    assert demo.ran == []


async def test_server_listing_is_marked_private(mode: str) -> None:
    server = MCPServer("s")

    @server.tool()
    def visible() -> str:
        return "v"

    govern(server, Hooks())
    async with Client(server, mode=mode) as client:
        page = await client.list_tools()
    assert page.tools == []
    if mode == "auto":
        assert page.cache_scope == "private"


async def _attach(ctx: GovContext, call_next: Any) -> Any:
    """A client middleware attaching a value to ``_meta`` and to the HTTP Authorization header."""
    ctx = ctx.replace(meta={**ctx.meta, "io.example/tag": f"tag-for-{ctx.target}"})
    return await call_next(ctx.with_extension(HTTP_AUTHORIZATION, f"Bearer token-for-{ctx.target}"))


def _recording_server(seen: list[tuple[Any, ...]]) -> MCPServer:
    server = MCPServer("s")

    @server.tool()
    def work() -> str:
        return "ok"

    hooks = Hooks()

    @hooks.tool("work")
    def record(ctx: GovContext) -> Decision:
        if ctx.action == "execute":
            seen.append((ctx.meta.get("io.example/tag"), ctx.meta.get("io.example/user")))
        return Decision.allow("record")

    govern(server, hooks)
    return server


async def test_client_middleware_attaches_meta_in_process(mode: str) -> None:
    seen: list[tuple[Any, ...]] = []
    async with GovernedClient(_recording_server(seen), _attach, mode=mode) as client:
        user_meta: Any = {"io.example/user": "kept"}
        await client.call_tool("work", {}, meta=user_meta)
    assert seen == [("tag-for-work", "kept")]


async def test_client_middleware_attaches_the_http_authorization_header(mode: str) -> None:
    seen: list[tuple[Any, ...]] = []
    headers: list[str | None] = []
    server = _recording_server(seen)
    app = server.streamable_http_app()

    async def recording_app(scope: Any, receive: Any, send: Any) -> None:
        # What arrives on the wire, before the SDK: the header the client middleware attached.
        if scope["type"] == "http" and scope["method"] == "POST":
            raw = dict(scope["headers"]).get(b"authorization")
            headers.append(raw.decode() if raw is not None else None)
        await app(scope, receive, send)

    async with (
        serve_http(recording_app) as base,
        GovernedClient(f"{base}/mcp", _attach, mode=mode) as client,
    ):
        await client.call_tool("work", {})
    assert seen == [("tag-for-work", None)]
    assert "Bearer token-for-work" in headers


async def test_a_failed_connect_leaves_no_open_http_client() -> None:
    """A server that refuses the connection (here: 401 on everything) must not leak the client's sockets."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def refuse(request: Any) -> JSONResponse:
        return JSONResponse({"error": "unauthorized"}, status_code=401)

    app = Starlette(routes=[Route("/mcp", refuse, methods=["GET", "POST", "DELETE"])])
    async with serve_http(app) as base:
        client = GovernedClient(f"{base}/mcp")
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the SDK raises for a refused connect
            await client.__aenter__()
        assert client._http_client is not None and client._http_client.is_closed


async def test_a_server_refusing_a_listing_reaches_the_client_unchanged(mode: str) -> None:
    from mcpgov import IdentityError

    server = MCPServer("s")

    async def refuse_listings(ctx: GovContext, call_next: Any) -> Any:
        if ctx.method == "tools/list":
            raise IdentityError("no identity", reason="missing")
        return await call_next(ctx)

    govern(server, refuse_listings, Hooks())
    async with GovernedClient(server, _client_hooks(), mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.list_tools()
    assert caught.value.code == -32001  # the server's own refusal, not a client-side internal error


async def test_tools_never_see_the_identity_or_credential_tokens(mode: str) -> None:
    server = MCPServer("s")
    seen: list[Any] = []

    @server.tool()
    def peek(ctx: Context) -> str:
        meta = ctx.request_context.meta or {}
        seen.append((META_IDENTITY in meta, META_CREDENTIAL in meta, meta.get("io.example/kept")))
        return "ok"

    hooks = Hooks()
    hooks.register("peek", lambda ctx: Decision.allow("peek"))
    govern(server, hooks)

    async def attach(ctx: GovContext, call_next: Any) -> Any:
        tokens = {META_IDENTITY: "identity-token", META_CREDENTIAL: "credential-token", "io.example/kept": "yes"}
        return await call_next(ctx.replace(meta={**ctx.meta, **tokens}))

    async with GovernedClient(server, attach, mode=mode) as client:
        await client.call_tool("peek", {})
    assert seen == [(False, False, "yes")]


async def test_completions_are_governed_on_the_client_like_on_the_server(demo: Demo, mode: str) -> None:
    from mcp_types import PromptReference

    client_sink = InMemoryAuditSink()
    hooks = Hooks()
    hooks.register("summarise", lambda ctx: Decision.allow("completions-ok"), kind="prompt")
    async with GovernedClient(demo.server, hooks, audit=client_sink, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.complete(PromptReference(type="ref/prompt", name="jailbreak"), {"name": "text", "value": "x"})
        assert caught.value.code == -32003
    (event,) = client_sink.decisions()
    assert (event.method, event.kind, event.target, event.effect) == (
        "completion/complete",
        "prompt",
        "jailbreak",
        "deny",
    )
    assert demo.sink.events == []  # refused before anything was sent


async def test_the_sdks_own_listing_after_a_call_goes_through_the_chain(mode: str) -> None:
    """After a tool's first call the SDK lists tools by itself; that listing must carry what the
    chain attaches (here a required tag), or a call that already ran would end in an error."""
    server = MCPServer("s")
    ran: list[str] = []

    @server.tool()
    def op() -> str:
        ran.append("op")
        return "done"

    async def require_tag(ctx: GovContext, call_next: Any) -> Any:
        if ctx.meta.get("io.example/tag") is None:
            from mcpgov import IdentityError

            raise IdentityError("untagged request", reason="missing")
        return await call_next(ctx)

    hooks = Hooks()
    # Callable but never listed: the SDK's post-call listing will not find the tool.
    hooks.register("op", lambda ctx: Decision.deny("hidden") if ctx.action == "discover" else Decision.allow("op"))
    sink = InMemoryAuditSink()
    govern(server, require_tag, hooks, audit=sink)
    async with GovernedClient(server, _attach, mode=mode) as client:
        result = await client.call_tool("op", {})
    assert result.is_error is False
    assert ran == ["op"]
    refused = [e for e in sink.decisions() if e.effect == "deny"]
    assert refused == []  # every listing carried the tag
