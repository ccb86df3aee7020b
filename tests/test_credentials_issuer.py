"""CredentialIssuer: minting, TTL clamping, delegation that only narrows, revocation events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws

from mcpgov import Actor, ConfigurationError, CredentialError, Principal, arguments_hash
from mcpgov.credentials import CredentialIssuer, CredentialRefused, RevocationList, SigningKeySet
from mcpgov.credentials._claims import CREDENTIAL_TYP
from mcpgov.testing import InMemoryAuditSink

from .test_credentials_support import AUDIENCE, ISSUER, FrozenClock, make_issuer, principal

pytestmark = pytest.mark.anyio

AGENT = principal("agent-1", "acme")


async def test_minted_credential_carries_every_claim_and_the_credential_typ() -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    who = Principal(
        issuer="https://id.example", subject="agent-1", tenant="acme", actors=(Actor("alice", "https://sso.example"),)
    )
    cred = await issuer.mint(
        who,
        audience=AUDIENCE,
        tools=["deploy", "status"],
        scope=["deploy:write"],
        task_id="release-42",
        purpose="deploy",
        args_hash=arguments_hash({"version": "1"}),
        ttl=120,
    )
    header = jws.extract_compact(cred.token.encode()).headers()
    assert header["typ"] == CREDENTIAL_TYP
    assert header["alg"] == "Ed25519"
    payload = cred.claims.to_payload()
    assert payload["iss"] == ISSUER
    assert (payload["sub"], payload["idp"], payload["aud"], payload["tenant"]) == (
        "agent-1",
        "https://id.example",
        AUDIENCE,
        "acme",
    )
    assert payload["tools"] == ["deploy", "status"]
    assert payload["scope"] == "deploy:write"
    assert (payload["task"], payload["purpose"]) == ("release-42", "deploy")
    assert payload["args_hash"] == arguments_hash({"version": "1"})
    assert payload["act"] == {"sub": "alice", "iss": "https://sso.example"}
    assert payload["iat"] == payload["nbf"] == clock.now
    assert payload["exp"] == clock.now + 120
    verified = await issuer.verifier(AUDIENCE).verify(
        cred.token, tool="deploy", args_hash=arguments_hash({"version": "1"})
    )
    assert verified == cred.claims


async def test_every_credential_has_a_unique_id() -> None:
    issuer = make_issuer()
    ids = {(await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])).id for _ in range(500)}
    assert len(ids) == 500


@pytest.mark.parametrize("algorithm", ["Ed25519", "ES256"])
async def test_both_default_algorithms_mint_verifiable_credentials(algorithm: str) -> None:
    issuer = make_issuer(algorithm=algorithm)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    assert jws.extract_compact(cred.token.encode()).headers()["alg"] == algorithm
    assert (await issuer.verifier(AUDIENCE).verify(cred.token, tool="status")).jti == cred.id


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    requested=st.one_of(st.none(), st.floats(min_value=0.001, max_value=1e9, allow_nan=False)),
    parent_left=st.one_of(st.none(), st.floats(min_value=0.5, max_value=1e6, allow_nan=False)),
    max_ttl=st.floats(min_value=1, max_value=3600),
)
def test_ttl_is_clamped_and_never_outlives_the_parent_identity(
    requested: float | None, parent_left: float | None, max_ttl: float
) -> None:
    import anyio

    clock = FrozenClock()
    issuer = make_issuer(clock, max_ttl=max_ttl, default_ttl=min(60, max_ttl))
    claims: dict[str, Any] = {} if parent_left is None else {"exp": clock.now + parent_left}
    who = principal("agent-1", "acme", **claims)
    cred = anyio.run(lambda: issuer.mint(who, audience=AUDIENCE, tools=["status"], ttl=requested))
    lifetime = cred.claims.expires_at - cred.claims.issued_at
    assert 0 < lifetime <= max_ttl + 1e-6
    if requested is not None:
        assert lifetime <= requested + 1e-3
    if parent_left is not None:
        assert cred.claims.expires_at <= clock.now + parent_left


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), "60", True])
async def test_invalid_requested_ttl_is_refused(ttl: Any) -> None:
    issuer = make_issuer()
    with pytest.raises(CredentialError) as caught:
        await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], ttl=ttl)
    assert caught.value.reason == "bad_request"


async def test_expired_parent_identity_gets_no_credential() -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    with pytest.raises(CredentialError) as caught:
        await issuer.mint(principal(exp=clock.now - 1), audience=AUDIENCE, tools=["status"])
    assert caught.value.reason == "parent_expired"


@pytest.mark.parametrize(
    ("who", "kwargs", "reason"),
    [
        (principal(tenant=None), {}, "no_tenant"),
        (AGENT, {"tools": []}, "bad_request"),
        (AGENT, {"tools": "status"}, "bad_request"),
        (AGENT, {"tools": ["bad name"]}, "bad_request"),
        (AGENT, {"audience": ""}, "bad_request"),
        (AGENT, {"args_hash": "md5:abc"}, "bad_request"),
        # the length of a hash but not its spelling: every verifier would refuse the credential
        (AGENT, {"args_hash": "sha256:" + "AB" * 32}, "bad_request"),
        (AGENT, {"args_hash": "sha256:" + "g" * 64}, "bad_request"),
        (AGENT, {"args_hash": "sha256:" + "\uff41" * 64}, "bad_request"),
        (AGENT, {"args_hash": "sha256:" + "a" * 63 + "\n"}, "bad_request"),
    ],
)
async def test_bad_mint_requests_are_refused(who: Principal, kwargs: dict[str, Any], reason: str) -> None:
    issuer = make_issuer()
    request: dict[str, Any] = {"audience": AUDIENCE, "tools": ["status"], **kwargs}
    with pytest.raises(CredentialError) as caught:
        await issuer.mint(who, **request)
    assert caught.value.reason == reason


async def test_audiences_allowlist() -> None:
    issuer = make_issuer(audiences=[AUDIENCE])
    with pytest.raises(CredentialError) as caught:
        await issuer.mint(AGENT, audience="https://elsewhere.example", tools=["status"])
    assert caught.value.reason == "audience_not_allowed"


def test_issuer_configuration_is_validated() -> None:
    keys = SigningKeySet.generate(overlap=60)
    with pytest.raises(ConfigurationError):
        CredentialIssuer(ISSUER, keys, max_ttl=300)  # keys would retire before credentials expire
    with pytest.raises(ConfigurationError):
        CredentialIssuer(ISSUER, SigningKeySet.generate(), max_ttl=300, default_ttl=600)
    with pytest.raises(ConfigurationError):
        CredentialIssuer(ISSUER, SigningKeySet.generate(), max_delegation_depth=-1)
    with pytest.raises(ConfigurationError):
        CredentialIssuer(ISSUER, SigningKeySet.generate(), max_ttl=600, revocations=RevocationList(max_ttl=60))


async def test_minted_and_revoked_events_name_the_id_never_the_token() -> None:
    sink = InMemoryAuditSink()
    issuer = make_issuer(audit=sink)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="t1", purpose="triage")
    await issuer.revoke(cred)
    await issuer.revoke_task(AGENT, "t1")
    await issuer.revoke_principal(AGENT)
    minted, *revoked = sink.events
    assert minted.type == "credential.minted"
    assert (minted.credential_id, minted.principal, minted.tenant, minted.task_id, minted.purpose) == (
        cred.id,
        AGENT.id,
        "acme",
        "t1",
        "triage",
    )
    assert minted.attributes["audience"] == AUDIENCE
    assert [e.type for e in revoked] == ["credential.revoked"] * 3
    assert [e.attributes["scope"] for e in revoked] == ["credential", "task", "principal"]
    assert revoked[0].credential_id == cred.id
    dumped = json.dumps([e.model_dump(mode="json") for e in sink.events])
    assert cred.token not in dumped
    assert cred.token.split(".")[2] not in dumped


# -- delegation ----------------------------------------------------------------------------

SUB_AGENT = principal("sub-agent", "acme")


async def test_delegation_narrows_and_keeps_the_actor_chain() -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    parent = await issuer.mint(
        AGENT,
        audience=AUDIENCE,
        tools=["deploy", "status"],
        scope=["a", "b"],
        task_id="t",
        purpose="p",
        ttl=120,
        may_act=[SUB_AGENT],
    )
    child = await issuer.delegate(
        parent.token, subject=SUB_AGENT, tools=["status"], scope=["a"], ttl=30, may_act=[principal("leaf", "acme")]
    )
    c = child.claims
    assert (c.subject, c.audience, c.tenant, c.task_id, c.purpose) == ("sub-agent", AUDIENCE, "acme", "t", "p")
    assert (c.tools, c.scopes) == (("status",), ("a",))
    assert c.expires_at == clock.now + 30
    assert c.actors == (("agent-1", "https://id.example"),)
    assert c.chain == (parent.id,)
    grandchild = await issuer.delegate(child.token, subject=principal("leaf", "acme"))
    assert grandchild.claims.actors == (("sub-agent", "https://id.example"), ("agent-1", "https://id.example"))
    assert grandchild.claims.chain == (child.id, parent.id)
    with pytest.raises(CredentialError) as caught:
        await issuer.delegate(grandchild.token)
    assert caught.value.reason == "depth_exceeded"


async def test_revoking_a_parent_revokes_what_was_delegated_from_it() -> None:
    issuer = make_issuer()
    parent = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], may_act=[SUB_AGENT])
    child = await issuer.delegate(parent.token, subject=SUB_AGENT)
    verifier = issuer.verifier(AUDIENCE)
    await verifier.verify(child.token, tool="status")
    await issuer.revoke(parent)
    with pytest.raises(CredentialRefused) as caught:
        await verifier.verify(child.token, tool="status")
    assert caught.value.reason == "revoked"
    with pytest.raises(CredentialRefused):
        await issuer.delegate(parent.token)


_TOOLS = ["deploy", "status", "rollback", "logs"]
_SCOPES = ["read", "write", "admin"]


@settings(max_examples=150, deadline=None)
@given(
    parent_tools=st.lists(st.sampled_from(_TOOLS), min_size=1, unique=True),
    parent_scopes=st.lists(st.sampled_from(_SCOPES), unique=True),
    child_tools=st.one_of(st.none(), st.lists(st.sampled_from(_TOOLS), min_size=1, unique=True)),
    child_scopes=st.one_of(st.none(), st.lists(st.sampled_from(_SCOPES), unique=True)),
    child_ttl=st.one_of(st.none(), st.floats(min_value=1, max_value=600)),
)
def test_delegation_only_narrows(
    parent_tools: list[str],
    parent_scopes: list[str],
    child_tools: list[str] | None,
    child_scopes: list[str] | None,
    child_ttl: float | None,
) -> None:
    import anyio

    clock = FrozenClock()
    issuer = make_issuer(clock)

    async def scenario() -> None:
        parent = await issuer.mint(
            AGENT, audience=AUDIENCE, tools=parent_tools, scope=parent_scopes, ttl=120, may_act=[SUB_AGENT]
        )
        widens = (
            (child_tools is not None and not set(child_tools) <= set(parent_tools))
            or (child_scopes is not None and not set(child_scopes) <= set(parent_scopes))
            or (child_ttl is not None and child_ttl > 120)
        )
        request: dict[str, Any] = {"subject": SUB_AGENT, "tools": child_tools, "scope": child_scopes, "ttl": child_ttl}
        if widens:
            with pytest.raises(CredentialError) as caught:
                await issuer.delegate(parent.token, **request)
            assert caught.value.reason == "widening"
            return
        child = await issuer.delegate(parent.token, **request)
        c, p = child.claims, parent.claims
        assert set(c.tools) <= set(p.tools)
        assert set(c.scopes) <= set(p.scopes)
        assert c.expires_at <= p.expires_at
        assert (c.audience, c.tenant, c.task_id, c.purpose) == (p.audience, p.tenant, p.task_id, p.purpose)

    anyio.run(scenario)


async def test_delegation_cannot_change_audience_tenant_or_argument_binding() -> None:
    issuer = make_issuer(downstream={AUDIENCE: ["https://registry.example"]})
    bound = arguments_hash({"version": "1"})
    parent = await issuer.mint(
        AGENT,
        audience=AUDIENCE,
        tools=["deploy"],
        args_hash=bound,
        may_act=[principal("x", "acme"), principal("deployer")],
    )
    with pytest.raises(CredentialError) as caught:
        await issuer.delegate(parent.token, subject=principal("x", "other-tenant"))
    assert caught.value.reason == "wrong_tenant"
    with pytest.raises(CredentialError) as caught:
        await issuer.delegate(parent.token, args_hash=arguments_hash({"version": "2"}))
    assert caught.value.reason == "widening"
    child = await issuer.delegate(parent.token)
    assert child.claims.args_hash == bound
    with pytest.raises(CredentialError) as caught:
        await issuer.exchange(
            parent.token, audience="https://not-allowed.example", tools=["tag"], actor=principal("deployer")
        )
    assert caught.value.reason == "audience_not_allowed"


async def test_single_use_credentials_cannot_be_delegated() -> None:
    issuer = make_issuer()
    once = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], single_use=True)
    with pytest.raises(CredentialRefused) as caught:
        await issuer.delegate(once.token)
    assert caught.value.reason == "single_use"


async def test_delegating_a_forged_or_expired_parent_is_refused() -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    stranger = make_issuer(clock)
    forged = await stranger.mint(AGENT, audience=AUDIENCE, tools=["status"])
    with pytest.raises(CredentialRefused) as caught:
        await issuer.delegate(forged.token)
    assert caught.value.reason == "unknown_key"
    parent = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], ttl=10)
    clock.advance(100)
    with pytest.raises(CredentialRefused) as caught:
        await issuer.delegate(parent.token)
    assert caught.value.reason == "expired"
