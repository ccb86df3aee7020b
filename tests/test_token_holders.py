"""Tokens that change hands and the identity behind them: a derived credential goes only to a
party in the parent's tenant, never outlives that party's identity, the downstream route is the
server's and not the holder's, a sealed ``requestState`` resumes only in its tenant, and an
issuer's tokens carry one authentication method."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, InputRequiredResult

from mcpgov import META_IDENTITY, ConfigurationError, CredentialError, Decision, GovContext, Hooks, govern
from mcpgov.identity import IdentityMiddleware, OIDCTrust, StaticKeys
from mcpgov.identity._sdk import request_state_security
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

from .test_credentials_support import AUDIENCE, make_issuer, principal

pytestmark = pytest.mark.anyio


# --- a sealed requestState resumes only for its issuer, subject and tenant -----------------------


async def test_request_state_minted_in_one_tenant_is_refused_in_another() -> None:
    issuer = IdentityIssuer()
    identity = IdentityMiddleware(issuer.verifier())
    server = MCPServer("stateful", request_state_security=request_state_security(identity))
    seen: list[Any] = []

    @server.tool()
    def ask(ctx: Context) -> CallToolResult | InputRequiredResult:
        if ctx.request_state is None:
            return InputRequiredResult(request_state="acme-secret-step")
        return CallToolResult(content=[], structured_content={"resumed": ctx.request_state})

    hooks = Hooks()

    @hooks.tool("ask")
    def allow(ctx: GovContext) -> Decision:
        seen.append(ctx.tenant)
        return Decision.allow("ask")

    govern(server, identity, hooks, audit=InMemoryAuditSink())
    in_acme: Any = {META_IDENTITY: issuer.token("alice", tenant="acme")}
    in_globex: Any = {META_IDENTITY: issuer.token("alice", tenant="globex")}
    async with Client(server, mode="auto") as client:
        await client.list_tools(meta=in_acme)  # the client validates results against the listing
        first = await client.session.call_tool("ask", {}, meta=in_acme, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)
        state = first.request_state
        # The same subject, but a token for another tenant, echoes tenant acme's state.
        try:
            resumed: Any = await client.session.call_tool(
                "ask", {}, request_state=state, meta=in_globex, allow_input_required=True
            )
        except MCPError as exc:
            resumed = exc
    assert isinstance(resumed, MCPError), (
        f"tenant globex resumed acme's state: {resumed.structured_content} (tenants seen {seen})"
    )
    assert resumed.code == -32602  # the requestState boundary's refusal, not another error


# --- delegation / exchange: the new holder's identity ------------------------------------------------


async def test_delegation_to_a_tenantless_actor_is_refused() -> None:
    issuer = make_issuer()
    sub_agent = principal("sub-agent", tenant=None)  # an identity naming no tenant
    parent = await issuer.mint(
        principal(), audience=AUDIENCE, tools=["deploy"], ttl=120, may_act=[principal("sub-agent")]
    )
    with pytest.raises(CredentialError):
        await issuer.delegate(parent.token, subject=sub_agent)


async def test_downstream_exchange_for_a_tenantless_server_is_refused() -> None:
    issuer = make_issuer(downstream={AUDIENCE: ["https://registry.example"]})
    server = principal("deploy-server", tenant=None)
    parent = await issuer.mint(
        principal(), audience=AUDIENCE, tools=["deploy"], ttl=120, may_act=[principal("deploy-server")]
    )
    with pytest.raises(CredentialError):
        await issuer.exchange(parent.token, audience="https://registry.example", tools=["tag"], actor=server)


async def test_delegated_credential_never_outlives_the_sub_agents_identity() -> None:
    issuer = make_issuer()
    now = issuer._clock()
    sub_agent = principal("sub-agent", exp=now + 10)  # its identity token expires in 10 s
    parent = await issuer.mint(
        principal(), audience=AUDIENCE, tools=["deploy"], ttl=120, may_act=[principal("sub-agent")]
    )
    # Minting for this identity is clamped to its expiry ...
    minted = await issuer.mint(sub_agent, audience=AUDIENCE, tools=["deploy"], ttl=120)
    assert minted.expires_at <= now + 10
    # ... a credential derived into its name must be too.
    child = await issuer.delegate(parent.token, subject=sub_agent, ttl=100)
    assert child.expires_at <= now + 10, f"child lives {child.expires_at - now:.0f}s past an identity of 10s"


async def test_downstream_credential_never_outlives_the_servers_identity() -> None:
    issuer = make_issuer(downstream={AUDIENCE: ["https://registry.example"]})
    now = issuer._clock()
    server = principal("deploy-server", exp=now + 10)
    parent = await issuer.mint(
        principal(), audience=AUDIENCE, tools=["deploy"], ttl=120, may_act=[principal("deploy-server")]
    )
    child = await issuer.exchange(
        parent.token, audience="https://registry.example", tools=["tag"], actor=server, ttl=100
    )
    assert child.expires_at <= now + 10, f"child lives {child.expires_at - now:.0f}s past an identity of 10s"


# --- identity: one authentication method per issuer ------------------------------------------------


@pytest.mark.parametrize("algorithms", [("HS256", "RS256"), ("ES256", "HS384"), ("HS256", "HS512", "EdDSA")])
def test_an_issuer_mixing_shared_secret_and_public_key_algorithms_is_refused(algorithms: tuple[str, ...]) -> None:
    """A token's authentication method (what an AcceptPolicy judges: ``jwt`` or
    ``shared-secret``) is its issuer's; an issuer taking both kinds would label shared-secret
    tokens ``jwt``. Such a configuration is refused: two issuers instead."""
    with pytest.raises(ConfigurationError, match="HMAC"):
        OIDCTrust(
            "https://mixed.example",
            audience="mcp://srv",
            keys=StaticKeys.shared_secret(b"s" * 32, kid="k1"),
            algorithms=algorithms,
            tenant_claim="tenant",
        )


# --- downstream exchange by the caller itself: the "server's" downstream route, without the server --


async def test_the_agent_itself_cannot_use_the_servers_downstream_route() -> None:
    """``downstream`` says which audiences a *server* may reach on its callers' behalf. The agent
    holding the inbound credential is not that server; with ``audiences=`` limiting minting to the
    deploy server, it must not obtain a registry credential (with tools of its choosing) by
    exchanging its own credential."""
    registry = "https://registry.example"
    issuer = make_issuer(audiences=[AUDIENCE], downstream={AUDIENCE: [registry]})
    agent = principal()
    with pytest.raises(CredentialError):
        await issuer.mint(agent, audience=registry, tools=["delete_repo"])  # minting it directly: refused
    parent = await issuer.mint(agent, audience=AUDIENCE, tools=["status"], ttl=120)
    with pytest.raises(CredentialError):
        await issuer.exchange(parent.token, audience=registry, tools=["delete_repo"], actor=agent)


async def test_the_agent_itself_cannot_use_the_servers_downstream_route_over_http() -> None:
    """The same, end to end: the RFC 8693 endpoint, then a real session with the registry server."""
    import httpx2

    from mcpgov import META_CREDENTIAL
    from mcpgov.credentials import token_exchange_app
    from mcpgov.credentials._claims import CREDENTIAL_TOKEN_TYPE
    from mcpgov.credentials._exchange import GRANT_TYPE
    from mcpgov.testing import serve_http

    from .test_credentials_support import as_principal, build_governed

    registry = "https://registry.example"
    issuer = make_issuer(audiences=[AUDIENCE], downstream={AUDIENCE: [registry]})
    registry_server = build_governed(issuer, audience=registry)

    async def verify_identity(token: str) -> Any:
        kind, _, rest = token.partition(":")
        subject, _, tenant = rest.partition(":")
        if kind != "id" or not subject or not tenant:
            raise ValueError("bad")
        return principal(subject, tenant)

    parent = await issuer.mint(principal(), audience=AUDIENCE, tools=["status"], ttl=120)
    async with serve_http(token_exchange_app(issuer, verify_identity)) as base, httpx2.AsyncClient() as http:
        response = await http.post(
            f"{base}/token",
            data={
                "grant_type": GRANT_TYPE,
                "subject_token": parent.token,
                "subject_token_type": CREDENTIAL_TOKEN_TYPE,
                "actor_token": "id:agent-1:acme",  # the agent's own identity, not the deploy server's
                "actor_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "audience": registry,
                "tool": "rollback",
            },
        )
    if response.status_code != 200:
        return  # refused: held
    token = response.json()["access_token"]
    async with Client(registry_server.server) as client:
        meta: Any = {**as_principal(principal()), META_CREDENTIAL: token}
        result = await client.call_tool("rollback", {"version": "0.0.1"}, meta=meta)
    pytest.fail(f"agent-1 ran {registry_server.ran} on the registry (result error={result.is_error})")
