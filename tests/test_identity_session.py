"""Identity through real SDK sessions (in-process, both protocol modes): every hostile token is
refused with a clean -32001, nothing runs, exactly one audit event records why, and no token
reaches audit. Also the helpers other identity test modules share."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import META_IDENTITY, Decision, GovContext, GovernedClient, Hooks, Principal, govern
from mcpgov.identity import AcceptPolicy, IdentityMiddleware, IdentityVerifier, KeySource, StaticKeys
from mcpgov.identity._keys import BoundKey
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, SpiffeIssuer

pytestmark = pytest.mark.anyio


@dataclass
class Setup:
    """A governed server whose chain starts with identity, and what it saw."""

    server: MCPServer
    identity: IdentityMiddleware
    sink: InMemoryAuditSink
    ran: list[str] = field(default_factory=list)
    seen: list[tuple[Principal | None, str | None]] = field(default_factory=list)


def build(verifier: IdentityVerifier, *, accept: AcceptPolicy | None = None, **identity_kwargs: Any) -> Setup:
    """A server with one tool ``work`` that every verified caller may use."""
    server = MCPServer("ids", **identity_kwargs.pop("server_kwargs", {}))
    identity = IdentityMiddleware(verifier, accept=accept, **identity_kwargs)
    sink = InMemoryAuditSink()
    setup = Setup(server, identity, sink)

    @server.tool()
    def work() -> str:
        setup.ran.append("work")
        return "done"

    hooks = Hooks()

    @hooks.tool("*")
    def allow(ctx: GovContext) -> Decision:
        if ctx.action == "execute":
            setup.seen.append((ctx.principal, ctx.tenant))
        return Decision.allow("verified-callers")

    govern(server, identity, hooks, audit=sink)
    return setup


def b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{b64(header)}.{b64(claims)}.{signature}"


def events_text(sink: InMemoryAuditSink) -> str:
    return "\n".join(e.model_dump_json() for e in sink.events)


async def refused(setup: Setup, token: str | None, mode: str) -> MCPError:
    """Call ``work`` presenting ``token``; expect a clean identity refusal."""
    meta: Any = {META_IDENTITY: token} if token is not None else None
    async with Client(setup.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("work", {}, meta=meta)
    error = caught.value
    assert (error.code, error.message) == (-32001, "Unauthenticated")
    assert set(error.data) == {"code", "event"}
    assert setup.ran == []
    (event,) = setup.sink.events
    assert (event.type, event.effect, event.error_code) == ("decision", "deny", "mcpgov.identity")
    assert event.id == error.data["event"]
    if token:
        assert token not in events_text(setup.sink)
        assert token not in repr(error.error)
    return error


# --- hostile tokens, one per threat -------------------------------------------------------------

ISSUER = IdentityIssuer(alg="RS256")
OTHER = IdentityIssuer(alg="RS256")  # same issuer URL, different keys: a forger
ELSEWHERE = IdentityIssuer("https://elsewhere.test", alg="RS256")


def _claims(**overrides: Any) -> dict[str, Any]:
    base = json.loads(base64.urlsafe_b64decode(ISSUER.token().split(".")[1] + "=="))
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def _hs_with_public_key() -> str:
    # joserfc itself refuses to use a public key as an HMAC secret, so the attacker's token is
    # put together with the standard library, as an attacker would.
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': ISSUER.kid})}.{b64(_claims())}"
    mac = hmac.new(ISSUER.public_key_bytes(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def _ps_with_rs_key() -> str:
    return ISSUER.sign({"alg": "PS256", "typ": "JWT", "kid": ISSUER.kid}, _claims())


HOSTILE: dict[str, tuple[Any, str]] = {
    "alg-none": (lambda: unsigned({"alg": "none"}, _claims()), "alg_none"),
    "alg-None": (lambda: unsigned({"alg": "None", "typ": "JWT"}, _claims()), "alg_none"),
    "alg-NONE": (lambda: unsigned({"alg": "NONE"}, _claims()), "alg_none"),
    "alg-nOnE": (lambda: unsigned({"alg": "nOnE", "kid": ISSUER.kid}, _claims()), "alg_none"),
    "empty-signature": (lambda: ISSUER.token().rsplit(".", 1)[0] + ".", "alg_none"),
    "hmac-keyed-with-public-key": (_hs_with_public_key, "alg_not_allowed"),
    "key-bound-to-other-alg": (_ps_with_rs_key, "alg_mismatch"),
    "kid-path-like": (lambda: ISSUER.token(header={"kid": "../../../etc/passwd"}), "unknown_kid"),
    "kid-unknown": (lambda: ISSUER.token(header={"kid": "nope"}), "unknown_kid"),
    "kid-huge": (lambda: ISSUER.token(header={"kid": "k" * 300}), "kid_invalid"),
    "kid-enormous": (lambda: ISSUER.token(header={"kid": "k" * 4000}), "malformed"),
    "kid-not-string": (lambda: unsigned({"alg": "RS256", "kid": 7}, _claims(), "c2ln"), "kid_invalid"),
    "jwk-header": (lambda: ISSUER.token(header={"jwk": {"kty": "oct", "k": "AAAA"}}), "forbidden_header"),
    "jku-header": (lambda: ISSUER.token(header={"jku": "https://attacker.test/jwks"}), "forbidden_header"),
    "x5u-header": (lambda: ISSUER.token(header={"x5u": "https://attacker.test/cert"}), "forbidden_header"),
    "x5c-header": (lambda: ISSUER.token(header={"x5c": ["MIIB"]}), "forbidden_header"),
    "crit-unknown": (lambda: ISSUER.token(header={"crit": ["exp-check"], "exp-check": 1}), "crit_unsupported"),
    "expired": (lambda: ISSUER.token(ttl=-60), "expired"),
    "not-yet-valid": (lambda: ISSUER.token(claims={"nbf": int(ISSUER.clock()) + 600}), "not_yet_valid"),
    "issued-in-future": (lambda: ISSUER.token(claims={"iat": int(ISSUER.clock()) + 600}), "issued_in_future"),
    "wrong-audience": (lambda: ISSUER.token(audience="mcp://another-server"), "wrong_audience"),
    "several-audiences": (lambda: ISSUER.token(audience=["mcp://test-server", "mcp://b"]), "wrong_audience"),
    "no-audience": (lambda: ISSUER.token(claims={"aud": None}), "missing_claim"),
    "unknown-issuer": (ELSEWHERE.token, "unknown_issuer"),
    "forged-by-other-key": (lambda: OTHER.token(header={"kid": ISSUER.kid}), "bad_signature"),
    "no-subject": (lambda: ISSUER.token(claims={"sub": None}), "missing_claim"),
    "no-exp": (lambda: ISSUER.token(claims={"exp": None}), "missing_claim"),
    "credential-typ": (lambda: ISSUER.token(header={"typ": "mcpgov-credential+jwt"}), "wrong_typ"),
    "oversized": (lambda: ISSUER.token(claims={"pad": "x" * 9000}), "token_too_large"),
    "not-a-jwt": (lambda: "definitely not a token", "malformed"),
    "bad-segments": (lambda: "e30.e30.e30.e30", "malformed"),
    "payload-not-json": (lambda: f"{b64({'alg': 'RS256', 'kid': ISSUER.kid})}.{b64(b'[1,')}.c2ln", "malformed"),
    "nan-exp": (
        lambda: ISSUER.token().split(".")[0] + "." + b64(b'{"exp": NaN, "sub": "a"}') + ".c2ln",
        "malformed",
    ),
    "tenant-missing": (lambda: ISSUER.token(tenant=None), "tenant_missing"),
    "tenant-malformed": (lambda: ISSUER.token(tenant="../other tenant"), "tenant_invalid"),
    "tenant-not-string": (lambda: ISSUER.token(claims={"tenant": ["a", "b"]}), "tenant_invalid"),
    "actor-chain-too-deep": (
        lambda: ISSUER.token(act=json.loads('{"sub":"a","act":' * 9 + '{"sub":"z"}' + "}" * 9)),
        "actor_chain_too_deep",
    ),
    "actor-malformed": (lambda: ISSUER.token(act={"iss": "x"}), "actor_invalid"),
}


def _verifier() -> IdentityVerifier:
    return IdentityVerifier(ISSUER.config(algorithms=("RS256", "PS256")))


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_identity_token_is_refused_once_cleanly(case: str, mode: str) -> None:
    make, reason = HOSTILE[case]
    token = make()
    setup = build(_verifier())
    await refused(setup, token, mode)
    assert setup.sink.events[0].reason == reason


async def test_oversized_token_is_refused_before_any_cryptography(mode: str) -> None:
    verifier = _verifier()
    setup = build(verifier)
    await refused(setup, ISSUER.token(claims={"pad": "x" * 9000}), mode)
    assert verifier.signature_checks == 0


async def test_missing_identity_is_refused_never_anonymous(mode: str) -> None:
    setup = build(_verifier())
    await refused(setup, None, mode)
    assert setup.sink.events[0].reason == "identity_missing"


async def test_non_string_identity_meta_is_refused(mode: str) -> None:
    setup = build(_verifier())
    async with Client(setup.server, mode=mode) as client:
        bad: Any = {META_IDENTITY: {"token": "x"}}
        with pytest.raises(MCPError) as caught:
            await client.call_tool("work", {}, meta=bad)
    assert caught.value.code == -32001
    assert setup.sink.events[0].reason == "malformed"


async def test_listing_without_identity_is_refused(mode: str) -> None:
    setup = build(_verifier())
    async with Client(setup.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.list_tools()
    assert caught.value.code == -32001
    (event,) = setup.sink.events
    assert (event.method, event.reason) == ("tools/list", "identity_missing")


# --- accepted identities ----------------------------------------------------------------------


async def test_verified_caller_gets_principal_tenant_and_actor_chain(mode: str) -> None:
    setup = build(_verifier())
    token = ISSUER.token("agent-7", tenant="beta", act={"sub": "alice", "iss": "https://idp", "act": {"sub": "bot"}})
    async with GovernedClient(setup.server, identity=token, mode=mode) as client:
        assert (await client.call_tool("work", {})).is_error is False
        assert [t.name for t in (await client.list_tools()).tools] == ["work"]
    assert setup.ran == ["work"]
    ((principal, tenant),) = setup.seen
    assert principal is not None
    assert (principal.issuer, principal.subject, principal.tenant, tenant) == (ISSUER.issuer, "agent-7", "beta", "beta")
    assert [(a.subject, a.issuer) for a in principal.actors] == [("alice", "https://idp"), ("bot", None)]
    assert principal.auth_method == "jwt"
    decision = setup.sink.decisions()[0]
    assert (decision.principal, decision.tenant, decision.actors) == (principal.id, "beta", ("alice", "bot"))
    assert decision.auth_method == "jwt"
    assert token not in events_text(setup.sink)


async def test_token_within_leeway_is_accepted(mode: str) -> None:
    setup = build(_verifier())
    async with GovernedClient(setup.server, identity=ISSUER.token(ttl=-10), mode=mode) as client:
        assert (await client.call_tool("work", {})).is_error is False


async def test_principals_are_issuer_and_subject_never_subject_alone(mode: str) -> None:
    a = IdentityIssuer("https://a.test")
    b = IdentityIssuer("https://b.test")
    setup = build(IdentityVerifier(a.config(), b.config()))
    for issuer in (a, b):
        async with GovernedClient(setup.server, identity=issuer.token("agent-1"), mode=mode) as client:
            await client.call_tool("work", {})
    first, second = (p for p, _ in setup.seen)
    assert first is not None and second is not None
    assert first.subject == second.subject == "agent-1"
    assert first.key != second.key
    assert first != second


async def test_spiffe_workload_with_tenant_from_path(mode: str) -> None:
    spire = SpiffeIssuer("example.org")
    verifier = IdentityVerifier(spire.config(tenant_pattern="spiffe://example.org/tenant/{tenant}/**"))
    setup = build(verifier)
    async with GovernedClient(setup.server, identity=spire.svid("/tenant/acme/agent/7"), mode=mode) as client:
        await client.call_tool("work", {})
    ((principal, tenant),) = setup.seen
    assert principal is not None
    assert principal.spiffe_id == "spiffe://example.org/tenant/acme/agent/7"
    assert (principal.issuer, principal.auth_method, tenant) == ("spiffe://example.org", "spiffe-jwt-svid", "acme")


SVIDS: dict[str, tuple[Any, str]] = {
    "outside-tenant-pattern": (lambda s: s.svid("/agents/7"), "tenant_missing"),
    "other-trust-domain-sub": (lambda s: s.svid("spiffe://evil.org/tenant/acme/x"), "unknown_issuer"),
    "bad-spiffe-id": (lambda s: s.svid("spiffe://example.org/tenant/acme//x"), "invalid_spiffe_id"),
    "no-path": (lambda s: s.svid("spiffe://example.org"), "invalid_spiffe_id"),
    "svid-no-audience": (lambda s: s.svid("/tenant/acme/x", claims={"aud": None}), "missing_claim"),
    "svid-no-exp": (lambda s: s.svid("/tenant/acme/x", claims={"exp": None}), "missing_claim"),
    "svid-typ-wrong": (lambda s: s.svid("/tenant/acme/x", header={"typ": "at+jwt"}), "wrong_typ"),
    "svid-hmac": (
        lambda s: s.sign({"alg": "HS256", "kid": s.kid}, {"sub": "spiffe://example.org/tenant/acme/x"}, key=b"k" * 32),
        "alg_not_allowed",
    ),
    "workload-not-accepted": (lambda s: s.svid("/tenant/acme/intruder"), "workload_not_accepted"),
}


@pytest.mark.parametrize("case", sorted(SVIDS))
async def test_jwt_svid_rules_are_enforced(case: str, mode: str) -> None:
    spire = SpiffeIssuer("example.org")
    verifier = IdentityVerifier(
        spire.config(
            tenant_pattern="spiffe://example.org/tenant/{tenant}/**",
            workloads=[
                "spiffe://example.org/tenant/*/agent",
                "spiffe://example.org/tenant/*/x",
                "spiffe://example.org/agents/*",
            ],
        )
    )
    make, reason = SVIDS[case]
    setup = build(verifier)
    await refused(setup, make(spire), mode)
    assert setup.sink.events[0].reason == reason


# --- accept policy ------------------------------------------------------------------------------


async def test_accept_policy_refuses_other_methods_before_any_tool_call(mode: str) -> None:
    spire = SpiffeIssuer("example.org")
    oidc = IdentityIssuer()
    verifier = IdentityVerifier(spire.config(tenant="acme"), oidc.config())
    setup = build(verifier, accept=AcceptPolicy(methods={"spiffe-jwt-svid"}))
    async with Client(setup.server, mode=mode) as client:
        meta: Any = {META_IDENTITY: oidc.token()}
        with pytest.raises(MCPError) as caught:
            await client.list_tools(meta=meta)
    assert caught.value.code == -32001
    (event,) = setup.sink.events
    assert (event.reason, event.principal) == ("method_not_accepted", f"{oidc.issuer}#agent")
    setup.sink.clear()
    async with GovernedClient(setup.server, identity=spire.svid("/agent"), mode=mode) as client:
        await client.call_tool("work", {})
    assert setup.ran == ["work"]


async def test_accept_policy_can_refuse_static_keys_and_issuers(mode: str) -> None:
    shared = IdentityIssuer("https://shared.test", alg="HS256")
    oidc = IdentityIssuer()
    verifier = IdentityVerifier(shared.config(), oidc.config())
    assert shared.principal().auth_method == "shared-secret"
    setup = build(verifier, accept=AcceptPolicy(static_keys=False))
    await refused(setup, shared.token(), mode)
    assert setup.sink.events[0].reason == "static_key_not_accepted"
    setup = build(verifier, accept=AcceptPolicy(issuers={"https://shared.test"}))
    await refused(setup, oidc.token(), mode)
    assert setup.sink.events[0].reason == "issuer_not_accepted"


# --- sessions -----------------------------------------------------------------------------------


async def test_legacy_session_binds_first_principal_and_refuses_another() -> None:
    a = IdentityIssuer("https://a.test")
    b = IdentityIssuer("https://b.test")
    setup = build(IdentityVerifier(a.config(), b.config()))
    current = {"token": a.token("agent-1")}
    async with GovernedClient(setup.server, identity=lambda: current["token"], mode="legacy") as client:
        await client.call_tool("work", {})
        current["token"] = a.token("agent-1")  # a fresh token, same principal
        await client.call_tool("work", {})
        for intruder in (a.token("agent-2"), b.token("agent-1")):  # another subject; same subject, other issuer
            current["token"] = intruder
            with pytest.raises(MCPError) as caught:
                await client.call_tool("work", {})
            assert caught.value.code == -32001
    assert setup.ran == ["work", "work"]
    bound = setup.sink.of_type("session.bound")
    assert len(bound) == 1
    assert bound[0].principal == "https://a.test#agent-1"
    refusals = [e for e in setup.sink.decisions() if e.effect == "deny"]
    assert [(e.reason, e.principal) for e in refusals] == [
        ("principal_changed", "https://a.test#agent-2"),
        ("principal_changed", "https://b.test#agent-1"),
    ]
    assert len({e.session_id for e in setup.sink.events}) == 1


async def test_requests_without_a_session_are_verified_each_on_its_own() -> None:
    a = IdentityIssuer("https://a.test")
    setup = build(IdentityVerifier(a.config()))
    current = {"token": ""}
    async with GovernedClient(setup.server, identity=lambda: current["token"], mode="auto") as client:
        for subject in ("agent-1", "agent-2", "agent-1"):
            current["token"] = a.token(subject)
            await client.call_tool("work", {})
    assert [p.subject for p, _ in setup.seen if p is not None] == ["agent-1", "agent-2", "agent-1"]
    assert setup.sink.of_type("session.bound") == []
    assert len(setup.sink.of_type("identity.verified")) == 3  # three distinct tokens


async def test_repeated_token_costs_no_second_signature_check(mode: str) -> None:
    verifier = _verifier()
    setup = build(verifier)
    token = ISSUER.token()
    async with GovernedClient(setup.server, identity=token, mode=mode) as client:
        for _ in range(5):
            await client.call_tool("work", {})
    assert setup.ran == ["work"] * 5
    assert verifier.signature_checks == 1
    announced = setup.sink.of_type("session.bound" if mode == "legacy" else "identity.verified")
    assert len(announced) == 1


class _Exploding(KeySource):
    async def key(self, kid: str | None, alg: str) -> BoundKey:
        raise RuntimeError("secret internal detail")

    def describe(self) -> str:
        return "exploding"


async def test_verifier_raising_unexpectedly_is_an_identity_error_never_an_allow(mode: str) -> None:
    issuer = IdentityIssuer()
    verifier = IdentityVerifier(issuer.config(keys=_Exploding()))
    setup = build(verifier)
    error = await refused(setup, issuer.token(), mode)
    assert setup.sink.events[0].reason == "verifier_error"
    assert "secret internal detail" not in repr(error.error)


async def test_stdio_style_identity_from_the_process_environment(mode: str) -> None:
    issuer = IdentityIssuer()
    environ = {"WORKLOAD_TOKEN": issuer.token("env-agent")}
    setup = build(issuer.verifier(), env="WORKLOAD_TOKEN", environ=environ)
    async with Client(setup.server, mode=mode) as client:
        await client.call_tool("work", {})
    assert [p.subject for p, _ in setup.seen if p is not None] == ["env-agent"]
    empty = build(issuer.verifier(), env="WORKLOAD_TOKEN", environ={})
    await refused(empty, None, mode)
    assert empty.sink.events[0].reason == "identity_missing"


def test_identity_middleware_refuses_client_side_use_and_bad_config() -> None:
    issuer = IdentityIssuer()
    with pytest.raises(Exception, match="does not know"):
        IdentityMiddleware(issuer.verifier(), accept=AcceptPolicy(issuers={"https://nobody.test"}))
    with pytest.raises(Exception, match="unknown authentication methods"):
        AcceptPolicy(methods={"password"})
    with pytest.raises(Exception, match="IdentityVerifier"):
        IdentityMiddleware(object())  # type: ignore[arg-type]


async def test_identity_middleware_on_a_client_chain_refuses() -> None:
    issuer = IdentityIssuer()
    setup = build(issuer.verifier())
    wrong = IdentityMiddleware(issuer.verifier())
    async with GovernedClient(setup.server, wrong, identity=issuer.token()) as client:
        with pytest.raises(MCPError):
            await client.call_tool("work", {})
    assert setup.ran == []


def test_reprs_never_show_tokens_or_keys() -> None:
    issuer = IdentityIssuer(alg="HS256")
    verifier = issuer.verifier()
    token = issuer.token()
    texts = [repr(verifier), repr(IdentityMiddleware(verifier)), repr(issuer.keys()), repr(StaticKeys(ISSUER.jwks()))]
    from mcpgov.identity import StaticToken

    texts.append(repr(StaticToken(token)))
    joined = " ".join(texts)
    assert token not in joined
    assert issuer.secret is not None and issuer.secret.hex() not in joined
    assert "[secure]" in repr(StaticToken(token))


async def test_governed_client_with_refused_identity_leaves_one_server_event(mode: str) -> None:
    stranger = IdentityIssuer("https://stranger.test")
    setup = build(_verifier())
    async with GovernedClient(setup.server, identity=stranger.token(), mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("work", {})
    assert caught.value.code == -32001
    assert setup.ran == []
    assert [(e.type, e.effect, e.reason) for e in setup.sink.events] == [("decision", "deny", "unknown_issuer")]
