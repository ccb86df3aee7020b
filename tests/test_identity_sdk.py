"""The SDK seams: ``requestState`` sealed to our principal, the TokenVerifier adapter, server_auth."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, InputRequiredResult

from mcpgov import META_IDENTITY, ConfigurationError, Decision, GovContext, Hooks, govern
from mcpgov.identity import IdentityMiddleware, server_auth
from mcpgov.identity._sdk import IdentityTokenVerifier, bind_request_state, request_state_security
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

pytestmark = pytest.mark.anyio


def _stateful_server(identity: IdentityMiddleware, *, bind_later: bool = False) -> MCPServer:
    if bind_later:
        server = MCPServer("stateful")
        bind_request_state(server, identity)
    else:
        server = MCPServer("stateful", request_state_security=request_state_security(identity))

    @server.tool()
    def ask(ctx: Context) -> CallToolResult | InputRequiredResult:
        if ctx.request_state is None:
            return InputRequiredResult(request_state="step-1")
        return CallToolResult(content=[], structured_content={"resumed": ctx.request_state})

    hooks = Hooks()

    @hooks.tool("ask")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("ask")

    govern(server, identity, hooks, audit=InMemoryAuditSink())
    return server


@pytest.mark.parametrize("bind_later", [False, True])
async def test_request_state_is_sealed_to_the_principal(bind_later: bool) -> None:
    """2026-07-28 only: legacy sessions have no requestState."""
    issuer = IdentityIssuer()
    identity = IdentityMiddleware(issuer.verifier())
    server = _stateful_server(identity, bind_later=bind_later)
    alice: Any = {META_IDENTITY: issuer.token("alice")}
    mallory: Any = {META_IDENTITY: issuer.token("mallory")}
    alice_again: Any = {META_IDENTITY: issuer.token("alice")}  # a fresh token of the same principal
    async with Client(server, mode="auto") as client:
        await client.list_tools(meta=alice)
        first = await client.session.call_tool("ask", {}, meta=alice, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)
        state = first.request_state
        assert state is not None and state != "step-1"  # sealed by the SDK
        with pytest.raises(MCPError) as caught:
            await client.session.call_tool("ask", {}, request_state=state, meta=mallory, allow_input_required=True)
        assert caught.value.code == -32602
        with pytest.raises(MCPError):
            await client.session.call_tool("ask", {}, request_state=state, allow_input_required=True)
        resumed = await client.session.call_tool(
            "ask",
            {},
            request_state=state,
            meta=alice_again,
            allow_input_required=True,
        )
        assert isinstance(resumed, CallToolResult)
        assert resumed.structured_content == {"resumed": "step-1"}


def test_bind_principal_binds_nothing_outside_an_sdk_request() -> None:
    issuer = IdentityIssuer()
    identity = IdentityMiddleware(issuer.verifier())
    assert identity.bind_principal(object()) is None


def test_bind_request_state_needs_a_boundary() -> None:
    issuer = IdentityIssuer()
    identity = IdentityMiddleware(issuer.verifier())
    server = MCPServer("s")
    server._lowlevel_server.middleware.clear()
    with pytest.raises(ConfigurationError, match="requestState"):
        bind_request_state(server, identity)


async def test_token_verifier_adapter_maps_principal_to_access_token() -> None:
    issuer = IdentityIssuer(audience="https://mcp.test/mcp")
    identity = IdentityMiddleware(issuer.verifier())
    sink = InMemoryAuditSink()
    adapter = IdentityTokenVerifier(identity, audit=sink)
    token = issuer.token("agent-3", claims={"scope": "files:read files:write"})
    access = await adapter.verify_token(token)
    assert access is not None
    assert (access.subject, access.client_id, access.claims) == (
        "agent-3",
        f"{issuer.issuer}#agent-3",
        {"iss": issuer.issuer},
    )
    assert access.scopes == ["files:read", "files:write"]
    assert access.resource == "https://mcp.test/mcp"
    assert await adapter.verify_token(issuer.token(ttl=-100)) is None
    (event,) = sink.events
    assert (event.type, event.reason) == ("identity.refused", "expired")
    assert token not in repr(adapter)


def test_server_auth_builds_sdk_settings() -> None:
    issuer = IdentityIssuer("https://login.example.com")
    identity = IdentityMiddleware(issuer.verifier())
    settings: Any = server_auth(identity, resource_server_url="https://mcp.example.com/mcp")
    assert str(settings["auth"].issuer_url).rstrip("/") == "https://login.example.com"
    assert settings["auth"].validate_token_resource is False
    assert settings["request_state_security"].bind_principal == identity.bind_principal
    server = MCPServer("s", **settings)
    assert server.settings.auth is not None
    local = IdentityIssuer("http://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="authorization_server"):
        server_auth(IdentityMiddleware(local.verifier()), resource_server_url="https://mcp.example.com/mcp")
