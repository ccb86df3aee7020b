"""A credential minted for a workload acting for one party serves only calls made for that party."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import META_CREDENTIAL, Actor, CallNext, Decision, GovContext, GovernedClient, Hooks, Principal, govern
from mcpgov.credentials import ClientCredentials, CredentialMiddleware, IssuerTokenSource
from mcpgov.credentials._jose import sign_credential
from mcpgov.testing import InMemoryAuditSink

from .test_credentials_support import AUDIENCE, make_issuer, refusals

pytestmark = pytest.mark.anyio

SSO = "https://sso.example"
META_ACTORS = "io.example/test-actors"


def agent(*acting_for: str, tenant: str = "acme") -> Principal:
    """The agent workload, acting for the users named (nearest first)."""
    return Principal(
        issuer="https://id.example",
        subject="agent-1",
        tenant=tenant,
        claims=MappingProxyType({}),
        actors=tuple(Actor(user, SSO) for user in acting_for),
        auth_method="jwt",
    )


def user(name: str) -> Principal:
    return Principal(issuer=SSO, subject=name, tenant="acme")


Built = tuple[MCPServer, Any, InMemoryAuditSink, list[str]]


def build(caller: Callable[[list[str]], Principal] | None = None) -> Built:
    who = caller if caller is not None else (lambda acting_for: agent(*acting_for))
    issuer = make_issuer()
    server = MCPServer("deployer")
    sink = InMemoryAuditSink()
    ran: list[str] = []

    @server.tool()
    async def deploy(version: str) -> str:
        ran.append(version)
        return "deployed"

    async def identity(ctx: GovContext, call_next: CallNext) -> Any:
        # Stands in for identity binding: the agent, acting for the users named in _meta.
        p = who(list(ctx.meta.get(META_ACTORS, ())))
        return await call_next(ctx.replace(principal=p, tenant=p.tenant))

    hooks = Hooks()

    @hooks.tool("*")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("allow-all")

    govern(server, identity, CredentialMiddleware(issuer.verifier(AUDIENCE)), hooks, audit=sink)
    return server, issuer, sink, ran


def _meta(token: str, acting_for: list[str]) -> Any:
    return {META_CREDENTIAL: token, META_ACTORS: acting_for}


async def _call(server: MCPServer, token: str, acting_for: list[str], mode: str = "auto") -> Any:
    async with Client(server, mode=mode) as client:
        return await client.call_tool("deploy", {"version": "1"}, meta=_meta(token, acting_for))


async def _refused(server: MCPServer, token: str, acting_for: list[str], mode: str = "auto") -> MCPError:
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"}, meta=_meta(token, acting_for))
    return caught.value


@pytest.mark.parametrize(
    ("minted_for", "presented_for"),
    [
        (["bob"], ["alice"]),
        ([], ["alice"]),
        (["bob"], []),
        (["bob", "alice"], ["alice"]),
        (["alice"], ["alice", "bob"]),
        (["bob", "carol"], ["carol", "bob"]),
    ],
)
async def test_a_credential_serves_no_other_actor_chain_than_it_was_minted_for(
    minted_for: list[str], presented_for: list[str], mode: str
) -> None:
    server, issuer, sink, ran = build()
    credential = await issuer.mint(agent(*minted_for), audience=AUDIENCE, tools=["deploy"])
    error = await _refused(server, credential.token, presented_for, mode)
    assert (error.code, error.message) == (-32002, "Invalid credential")
    assert ran == []
    (refusal,) = refusals(sink)
    assert (refusal.reason, refusal.credential_id) == ("wrong_principal", credential.id)


async def test_a_credential_serves_the_actor_chain_it_was_minted_for() -> None:
    server, issuer, _sink, ran = build()
    for acting_for in ([], ["alice"], ["alice", "bob"]):
        credential = await issuer.mint(agent(*acting_for), audience=AUDIENCE, tools=["deploy"])
        result = await _call(server, credential.token, acting_for)
        assert result.is_error is False
    assert ran == ["1", "1", "1"]


async def test_revoking_a_user_stops_the_agent_acting_for_them_whatever_credential_it_presents() -> None:
    server, issuer, sink, ran = build()
    for_bob = await issuer.mint(agent("bob"), audience=AUDIENCE, tools=["deploy"])
    await issuer.revoke_principal(user("alice"))
    error = await _refused(server, for_bob.token, ["alice"])
    assert error.code == -32002
    assert ran == []
    assert [e.reason for e in refusals(sink)] == ["wrong_principal"]
    result = await _call(server, for_bob.token, ["bob"])
    assert result.is_error is False
    assert ran == ["1"]


@pytest.mark.parametrize("narrowings", [1, 2])
async def test_a_credential_narrowed_by_its_holder_keeps_the_actor_chain_it_was_minted_for(
    narrowings: int, mode: str
) -> None:
    server, issuer, sink, ran = build()
    credential = await issuer.mint(agent("bob"), audience=AUDIENCE, tools=["deploy"], task_id="t")
    for _ in range(narrowings):
        credential = await issuer.delegate(credential.token, subject=agent("bob"), tools=["deploy"])
    assert credential.claims.chain
    error = await _refused(server, credential.token, ["alice"], mode)
    assert error.code == -32002
    assert ran == []
    assert [e.reason for e in refusals(sink)] == ["wrong_principal"]
    result = await _call(server, credential.token, ["bob"], mode)
    assert result.is_error is False
    assert ran == ["1"]


def sub_agent(*acting_for: str) -> Principal:
    """A sub-agent the agent's credentials may be delegated to, acting for the users named."""
    return Principal(
        issuer="https://id.example",
        subject="sub-agent",
        tenant="acme",
        actors=tuple(Actor(user, SSO) for user in acting_for),
        auth_method="jwt",
    )


def build_for(holder: Principal) -> Built:
    """The server of :func:`build`, whose callers are ``holder`` acting for the users named in ``_meta``."""
    return build(lambda acting_for: replace(holder, actors=tuple(Actor(u, SSO) for u in acting_for)))


@pytest.mark.parametrize(
    ("received_for", "presented_for"),
    [(["bob"], ["alice"]), ([], ["alice"]), (["bob"], []), (["alice"], ["alice", "bob"])],
)
async def test_a_delegated_credential_serves_no_other_actor_chain_than_its_holder_received_it_for(
    received_for: list[str], presented_for: list[str], mode: str
) -> None:
    server, issuer, sink, ran = build_for(sub_agent())
    parent = await issuer.mint(agent(), audience=AUDIENCE, tools=["deploy"], may_act=[sub_agent().key])
    child = await issuer.delegate(parent.token, subject=sub_agent(*received_for))
    narrowed = await issuer.delegate(child.token, subject=sub_agent(*received_for), tools=["deploy"])
    for credential in (child, narrowed):
        error = await _refused(server, credential.token, presented_for, mode)
        assert error.code == -32002
        result = await _call(server, credential.token, received_for, mode)
        assert result.is_error is False
    assert ran == ["1", "1"]
    assert [e.reason for e in refusals(sink)] == ["wrong_principal"] * 2


async def test_revoking_a_user_stops_a_sub_agent_acting_for_them_with_a_credential_received_for_another() -> None:
    server, issuer, _sink, ran = build_for(sub_agent())
    parent = await issuer.mint(agent(), audience=AUDIENCE, tools=["deploy"], may_act=[sub_agent().key])
    for_bob = await issuer.delegate(parent.token, subject=sub_agent("bob"))
    await issuer.revoke_principal(user("alice"))
    await _refused(server, for_bob.token, ["alice"])
    assert ran == []


async def test_revoking_the_user_a_sub_agent_received_a_credential_for_revokes_it(mode: str) -> None:
    server, issuer, sink, ran = build_for(sub_agent())
    parent = await issuer.mint(agent(), audience=AUDIENCE, tools=["deploy"], may_act=[sub_agent().key])
    for_alice = await issuer.delegate(parent.token, subject=sub_agent("alice"))
    assert (await _call(server, for_alice.token, ["alice"], mode)).is_error is False
    await issuer.revoke_principal(user("alice"))
    await _refused(server, for_alice.token, ["alice"], mode)
    assert ran == ["1"]
    assert [e.reason for e in refusals(sink)] == ["revoked"]


async def test_a_credential_derived_without_its_holders_actors_serves_only_a_holder_acting_for_nobody(
    mode: str,
) -> None:
    # What an issuer that does not record ``holder_act`` derived: nothing says whom its holder acts for.
    server, issuer, sink, ran = build_for(sub_agent())
    parent = await issuer.mint(agent(), audience=AUDIENCE, tools=["deploy"], may_act=[sub_agent().key])
    child = await issuer.delegate(parent.token, subject=sub_agent())
    claims = replace(child.claims, holder_actors=None)
    assert "holder_act" not in claims.to_payload()
    kid, alg, key = issuer.keys.current
    token = sign_credential(claims.to_payload(), kid, alg, key)
    await _refused(server, token, ["alice"], mode)
    assert (await _call(server, token, [], mode)).is_error is False
    assert ran == ["1"]
    assert [e.reason for e in refusals(sink)] == ["wrong_principal"]


@pytest.mark.parametrize(
    "holder_act",
    [{}, "alice", [{"iss": SSO}], [{"sub": ""}], [{"sub": 1}], [{"sub": "a", "iss": 2}], [None], [{"sub": "a"}] * 17],
)
async def test_a_malformed_holder_act_claim_is_refused(holder_act: Any, mode: str) -> None:
    server, issuer, sink, ran = build_for(sub_agent())
    parent = await issuer.mint(agent(), audience=AUDIENCE, tools=["deploy"], may_act=[sub_agent().key])
    child = await issuer.delegate(parent.token, subject=sub_agent())
    payload = child.claims.to_payload()
    assert payload["holder_act"] == []
    kid, alg, key = issuer.keys.current
    token = sign_credential({**payload, "holder_act": holder_act}, kid, alg, key)
    await _refused(server, token, [], mode)
    assert ran == []
    assert [e.reason for e in refusals(sink)] == ["malformed"]


async def test_a_client_acting_for_one_user_never_reuses_a_credential_it_obtained_for_another(mode: str) -> None:
    server, issuer, sink, ran = build()
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)

    async def name_actors(ctx: GovContext, call_next: CallNext) -> Any:
        # Stands in for the identity token: the server learns whom the caller acts for.
        actors = [a.subject for a in ctx.principal.actors] if ctx.principal is not None else []
        return await call_next(ctx.replace(meta={**ctx.meta, META_ACTORS: actors}))

    for acting_for in (["bob"], ["alice"], [], ["alice", "bob"], ["bob"]):
        who = agent(*acting_for)
        async with GovernedClient(server, name_actors, creds, principal=who, mode=mode) as client:
            result = await client.call_tool("deploy", {"version": "1"})
        assert result.is_error is False
    assert ran == ["1"] * 5
    assert refusals(sink) == []
    assert creds.minted == 4
