"""Downstream: a tool calling another service exchanges the inbound credential, never passes it on."""

from __future__ import annotations

from typing import Any, cast

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import META_CREDENTIAL, ConfigurationError, CredentialError, Decision, GovContext, Hooks, govern
from mcpgov.credentials import (
    CredentialIssuer,
    CredentialMiddleware,
    Downstream,
    ExchangeTokenSource,
    current_credential,
    token_exchange_app,
)
from mcpgov.testing import InMemoryAuditSink, serve_http

from .test_credentials_exchange import verify_identity
from .test_credentials_support import AUDIENCE, call, make_issuer, principal

pytestmark = pytest.mark.anyio

REGISTRY = "https://registry.example"
AGENT = principal("agent-1", "acme")
DEPLOYER = principal("deployer", "acme")


def _registry(issuer: CredentialIssuer, seen: list[dict[str, Any]], sink: InMemoryAuditSink) -> MCPServer:
    registry = MCPServer("registry")

    @registry.tool()
    async def tag(version: str) -> str:
        return f"tagged {version}"

    hooks = Hooks()

    @hooks.tool("tag")
    def allow(ctx: GovContext) -> Decision:
        assert ctx.credential is not None
        seen.append({**ctx.credential, "token": ctx.meta[META_CREDENTIAL]})
        return Decision.allow("registry-allow")

    govern(registry, CredentialMiddleware(issuer.verifier(REGISTRY)), hooks, audit=sink)
    return registry


def _deployer(issuer: CredentialIssuer, downstream: Downstream, registry: MCPServer, mode: str) -> MCPServer:
    server = MCPServer("deployer")

    @server.tool()
    async def deploy(version: str) -> str:
        credential = await downstream.credential(audience=REGISTRY, tools=["tag"])
        async with Client(registry, mode=mode) as client:
            result = await client.call_tool(
                "tag", {"version": version}, meta=cast(Any, {META_CREDENTIAL: credential.token})
            )
        return str(result.structured_content)

    hooks = Hooks()

    @hooks.tool("deploy")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("deployer-allow")

    govern(server, CredentialMiddleware(issuer.verifier(AUDIENCE)), hooks)
    return server


async def test_a_tool_exchanges_the_inbound_credential_for_a_downstream_one(mode: str) -> None:
    issuer = make_issuer(downstream={AUDIENCE: [REGISTRY]})
    seen: list[dict[str, Any]] = []
    sink = InMemoryAuditSink()
    registry = _registry(issuer, seen, sink)
    server = _deployer(issuer, Downstream(issuer, actor=DEPLOYER), registry, mode)
    inbound = await issuer.mint(
        AGENT, audience=AUDIENCE, tools=["deploy"], task_id="release-42", purpose="deploy", may_act=[DEPLOYER]
    )
    async with Client(server, mode=mode) as client:
        result = await call(client, "deploy", {"version": "1.0"}, inbound.token)
    assert result.is_error is False, result
    (claims,) = seen
    assert claims["token"] != inbound.token
    assert (claims["aud"], claims["sub"], claims["tenant"], claims["task"], claims["purpose"]) == (
        REGISTRY,
        "deployer",
        "acme",
        "release-42",
        "deploy",
    )
    assert claims["act"] == {"sub": "agent-1", "iss": "https://id.example"}
    assert claims["chain"] == [inbound.id]
    assert claims["exp"] <= inbound.expires_at
    # And the inbound token itself is refused by the downstream service.
    async with Client(registry, mode=mode) as client:
        refused = await _refused_reason(client, inbound.token, sink)
    assert refused == "wrong_audience"


async def _refused_reason(client: Client, token: str, sink: InMemoryAuditSink) -> str:
    from mcp import MCPError

    sink.clear()
    with pytest.raises(MCPError):
        await client.call_tool("tag", {"version": "x"}, meta=cast(Any, {META_CREDENTIAL: token}))
    (event,) = [e for e in sink.decisions() if e.effect == "deny"]
    assert event.reason is not None
    return event.reason


async def test_audiences_the_issuer_does_not_allow_are_refused(mode: str) -> None:
    issuer = make_issuer()  # no downstream audiences allowed
    seen: list[dict[str, Any]] = []
    registry = _registry(issuer, seen, InMemoryAuditSink())
    server = _deployer(issuer, Downstream(issuer, actor=DEPLOYER), registry, mode)
    inbound = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], may_act=[DEPLOYER])
    async with Client(server, mode=mode) as client:
        result = await call(client, "deploy", {"version": "1.0"}, inbound.token)
    assert result.is_error is True
    assert seen == []
    assert inbound.token not in result.model_dump_json()


async def test_downstream_through_the_token_exchange_endpoint(mode: str) -> None:
    issuer = make_issuer(downstream={AUDIENCE: [REGISTRY]})
    seen: list[dict[str, Any]] = []
    registry = _registry(issuer, seen, InMemoryAuditSink())
    async with serve_http(token_exchange_app(issuer, verify_identity)) as base:
        source = ExchangeTokenSource(f"{base}/token", "id:deployer:acme")
        server = _deployer(issuer, Downstream(source), registry, mode)
        inbound = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], may_act=[DEPLOYER])
        async with Client(server, mode=mode) as client:
            result = await call(client, "deploy", {"version": "2.0"}, inbound.token)
    assert result.is_error is False, result
    (claims,) = seen
    assert (claims["aud"], claims["sub"], claims["act"]["sub"]) == (REGISTRY, "deployer", "agent-1")


async def test_outside_a_governed_request_there_is_nothing_to_exchange() -> None:
    issuer = make_issuer(downstream={AUDIENCE: [REGISTRY]})
    assert current_credential() is None
    with pytest.raises(CredentialError) as caught:
        await Downstream(issuer, actor=DEPLOYER).credential(audience=REGISTRY, tools=["tag"])
    assert caught.value.reason == "no_inbound_credential"


def test_downstream_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        Downstream(make_issuer())  # an in-process issuer needs the server's own identity
    with pytest.raises(ConfigurationError):
        Downstream(object())  # type: ignore[arg-type]
