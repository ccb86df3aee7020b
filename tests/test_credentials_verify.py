"""Server side: CredentialMiddleware refuses every credential that is not good for the request."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any, cast

import pytest
from joserfc import jws, jwt
from joserfc.jwk import OKPKey
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import (
    META_CREDENTIAL,
    ConfigurationError,
    Decision,
    GovContext,
    Hooks,
    InMemoryStateStore,
    StateStoreError,
    arguments_hash,
    govern,
)
from mcpgov.credentials import (
    CredentialMiddleware,
    CredentialRefused,
    CredentialVerifier,
    RevocationList,
    SigningKeySet,
)
from mcpgov.credentials._claims import CREDENTIAL_TYP
from mcpgov.credentials._verify import EMPTY_ARGS_HASH
from mcpgov.testing import InMemoryAuditSink

from .test_credentials_support import (
    AUDIENCE,
    ISSUER,
    FrozenClock,
    build_governed,
    call,
    identity_from_meta,
    make_issuer,
    principal,
    refusals,
)

pytestmark = pytest.mark.anyio

AGENT = principal("agent-1", "acme")


def _refusal(sink: Any) -> Any:
    """The one refusal the server recorded."""
    denies = refusals(sink)
    assert len(denies) == 1, [e.model_dump() for e in sink.events]
    return denies[0]


async def _refused(governed: Any, mode: str, tool: str, args: dict[str, Any], token: Any, *, who: Any = AGENT) -> Any:
    async with Client(governed.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await call(client, tool, args, token, who)
    assert caught.value.code == -32002
    assert caught.value.message == "Invalid credential"
    assert governed.ran == []
    return _refusal(governed.sink)


async def test_valid_credential_runs_the_tool_and_feeds_task_and_purpose_to_policy(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="release-42", purpose="deploy")
    async with Client(governed.server, mode=mode) as client:
        result = await call(client, "deploy", {"version": "1.4.2"}, cred.token, AGENT)
    assert result.is_error is False
    assert governed.ran == ["deploy 1.4.2"]
    assert governed.seen == [("deploy", "acme", "release-42", "deploy", cred.id)]
    (allow,) = [e for e in governed.sink.decisions() if e.effect == "allow"]
    assert (allow.credential_id, allow.task_id, allow.purpose) == (cred.id, "release-42", "deploy")
    (verified,) = governed.sink.of_type("credential.verified")
    assert verified.credential_id == cred.id


async def test_credential_verified_is_emitted_once_per_credential_not_per_request(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    async with Client(governed.server, mode=mode) as client:
        for _ in range(3):
            await call(client, "status", {}, cred.token, AGENT)
    assert governed.ran == ["status"] * 3
    assert len(governed.sink.of_type("credential.verified")) == 1


async def test_missing_credential_is_refused(mode: str) -> None:
    governed = build_governed(make_issuer())
    event = await _refused(governed, mode, "status", {}, None)
    assert (event.reason, event.error_code, event.credential_id) == ("missing", "mcpgov.credential", None)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-jwt", "malformed"),
        ("a.b.c", "malformed"),
        ("x" * 10_000, "oversized"),
        ("é.é.é", "malformed"),
    ],
)
async def test_malformed_credentials_are_refused_cleanly(mode: str, token: str, reason: str) -> None:
    governed = build_governed(make_issuer())
    event = await _refused(governed, mode, "status", {}, token)
    assert event.reason == reason


async def test_non_string_credential_in_meta_is_refused(mode: str) -> None:
    governed = build_governed(make_issuer())
    async with Client(governed.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("status", {}, meta=cast(Any, {META_CREDENTIAL: {"token": 1}}))
    assert caught.value.code == -32002
    assert _refusal(governed.sink).reason == "missing"


async def test_credential_for_another_tool_is_refused(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    event = await _refused(governed, mode, "deploy", {"version": "9"}, cred.token)
    assert (event.reason, event.credential_id, event.target) == ("wrong_tool", cred.id, "deploy")


async def test_credential_for_another_audience_is_refused(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience="https://billing.example", tools=["deploy"])
    event = await _refused(governed, mode, "deploy", {"version": "1"}, cred.token)
    assert (event.reason, event.credential_id) == ("wrong_audience", cred.id)


async def test_credential_for_tenant_a_is_refused_in_tenant_b(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(principal("agent-1", "tenant-a"), audience=AUDIENCE, tools=["deploy"])
    # The same workload subject, verified in tenant B, presents tenant A's credential.
    event = await _refused(governed, mode, "deploy", {"version": "1"}, cred.token, who=principal("agent-1", "tenant-b"))
    assert (event.reason, event.tenant) == ("wrong_tenant", "tenant-b")


async def test_credential_of_another_principal_is_refused(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(principal("agent-1"), audience=AUDIENCE, tools=["deploy"])
    event = await _refused(governed, mode, "deploy", {"version": "1"}, cred.token, who=principal("agent-2"))
    assert event.reason == "wrong_principal"


async def test_without_identity_the_tenant_comes_from_the_signed_credential(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer, with_identity=False)
    cred = await issuer.mint(principal("agent-1", "tenant-a"), audience=AUDIENCE, tools=["status"])
    async with Client(governed.server, mode=mode) as client:
        await call(client, "status", {}, cred.token)
    assert governed.seen == [("status", "tenant-a", None, None, cred.id)]


async def test_expired_and_not_yet_valid_credentials_are_refused_with_bounded_leeway(mode: str) -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    governed = build_governed(issuer, leeway=5)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], ttl=60)
    clock.advance(64)  # within leeway: still accepted
    async with Client(governed.server, mode=mode) as client:
        await call(client, "status", {}, cred.token, AGENT)
    clock.advance(2)
    governed.sink.clear()
    event = await _refused_after_run(governed, mode, cred.token)
    assert (event.reason, event.credential_id) == ("expired", cred.id)
    clock.now -= 1000  # the verifier's clock is now well before nbf/iat
    governed.sink.clear()
    event = await _refused_after_run(governed, mode, cred.token)
    assert event.reason == "not_yet_valid"


async def _refused_after_run(governed: Any, mode: str, token: str) -> Any:
    ran = list(governed.ran)
    async with Client(governed.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await call(client, "status", {}, token, AGENT)
    assert caught.value.code == -32002
    assert governed.ran == ran
    return _refusal(governed.sink)


def test_leeway_is_bounded_at_configuration_time() -> None:
    issuer = make_issuer()
    with pytest.raises(ConfigurationError):
        issuer.verifier(AUDIENCE, leeway=3600)
    with pytest.raises(ConfigurationError):
        CredentialMiddleware(issuer._own)  # a server verifier must name its audience


def _tamper(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


async def test_tampered_credential_is_refused_and_audited_without_the_token(mode: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    forged = _tamper(cred.token, tools=["status", "deploy"])
    event = await _refused(governed, mode, "deploy", {"version": "1"}, forged)
    # The id it claims is not verified: a lead in the unverified attribute, never the credential id.
    assert (event.reason, event.credential_id) == ("bad_signature", None)
    assert event.attributes["unverified"] == {"jti": cred.id}
    dumped = json.dumps([e.model_dump(mode="json") for e in governed.sink.events])
    for secret in (cred.token, forged, cred.token.split(".")[2]):
        assert secret not in dumped
        assert secret not in caplog.text


async def test_foreign_issuer_keys_are_refused(mode: str) -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    impostor = make_issuer(clock)  # same issuer name, different keys
    governed = build_governed(issuer)
    cred = await impostor.mint(AGENT, audience=AUDIENCE, tools=["status"])
    event = await _refused(governed, mode, "status", {}, cred.token)
    assert event.reason == "unknown_key"


async def test_credential_from_another_issuer_name_is_refused(mode: str) -> None:
    clock = FrozenClock()
    keys = SigningKeySet.generate(clock=clock)
    issuer = make_issuer(clock, keys=keys)
    other = make_issuer(clock, keys=keys)
    other.issuer = "https://other-issuer.example"
    governed = build_governed(issuer)
    cred = await other.mint(AGENT, audience=AUDIENCE, tools=["status"])
    event = await _refused(governed, mode, "status", {}, cred.token)
    assert event.reason == "wrong_issuer"


async def test_identity_token_signed_with_the_same_key_is_not_a_credential(mode: str) -> None:
    """Token kinds are kept apart by typ: an identity-style JWT is refused even when validly signed."""
    clock = FrozenClock()
    issuer = make_issuer(clock)
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    kid, alg, key = issuer.keys.current
    identity = jwt.encode({"alg": alg, "kid": kid, "typ": "JWT"}, dict(cred.claims.to_payload()), key, algorithms=[alg])
    event = await _refused(governed, mode, "status", {}, identity)
    assert event.reason == "bad_typ"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_unsigned_credentials_are_refused_in_every_casing(mode: str, alg: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "typ": CREDENTIAL_TYP}).encode()).rstrip(b"=").decode()
    _, payload, _ = cred.token.split(".")
    event = await _refused(governed, mode, "status", {}, f"{header}.{payload}.")
    assert event.reason in {"bad_alg", "malformed"}


async def test_hmac_token_keyed_with_the_public_key_is_refused(mode: str) -> None:
    """Algorithm confusion: HS256 over the issuer's public key bytes."""
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    kid, _, _ = issuer.keys.current
    public = issuer.jwks()["keys"][0]["x"].encode()
    from joserfc.jwk import OctKey

    forged = jws.serialize_compact(
        {"alg": "HS256", "typ": CREDENTIAL_TYP, "kid": kid},
        json.dumps(cred.claims.to_payload()),
        OctKey.import_key(public),
        algorithms=["HS256"],
    )
    event = await _refused(governed, mode, "status", {}, forged)
    assert event.reason == "bad_alg"


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "https://attacker.example/jwks"},
        {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}},
        {"x5u": "https://attacker.example/cert"},
        {"crit": ["exp"], "exp": 1},
    ],
)
async def test_headers_that_point_elsewhere_are_never_followed(mode: str, extra: dict[str, Any]) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    kid, alg, key = issuer.keys.current
    header = {"alg": alg, "typ": CREDENTIAL_TYP, "kid": kid, **extra}
    forged = (
        jws.serialize_compact(
            header,
            json.dumps(cred.claims.to_payload()),
            key,
            algorithms=[alg],
            registry=jws.JWSRegistry(algorithms=[alg], strict_check_header=False),
        )
        if "crit" not in extra
        else _raw_header(cred.token, header)
    )
    event = await _refused(governed, mode, "status", {}, forged)
    assert event.reason in {"bad_header", "bad_signature"}


def _raw_header(token: str, header: dict[str, Any]) -> str:
    _, payload, signature = token.split(".")
    raw = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{raw}.{payload}.{signature}"


async def test_hostile_kid_is_refused(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    _, alg, _ = issuer.keys.current
    for kid in ("../../etc/passwd", "k" * 500):
        governed.sink.clear()
        event = await _refused(
            governed, mode, "status", {}, _raw_header(cred.token, {"alg": alg, "typ": CREDENTIAL_TYP, "kid": kid})
        )
        assert event.reason in {"unknown_key", "malformed"}  # a huge header is refused before decoding


@pytest.mark.parametrize("size", [0, 60_000], ids=["short", "long"])
async def test_argument_bound_credential_only_runs_with_its_arguments(mode: str, size: int) -> None:
    # Long arguments are hashed off the call path for audit, never for a credential bound to them.
    version, other = "1.4.2" + "0" * size, "1.4.2" + "0" * (size - 1) + "1" if size else "6.6.6"
    issuer = make_issuer()
    governed = build_governed(issuer, bind_arguments={"deploy"})
    bound = await issuer.mint(
        AGENT, audience=AUDIENCE, tools=["deploy"], args_hash=arguments_hash({"version": version})
    )
    async with Client(governed.server, mode=mode) as client:
        await call(client, "deploy", {"version": version}, bound.token, AGENT)
    assert governed.ran == [f"deploy {version}"]
    governed.ran.clear()
    event = await _refused(governed, mode, "deploy", {"version": other}, bound.token)
    assert (event.reason, event.credential_id) == ("args_mismatch", bound.id)
    assert governed.ran == []


async def test_server_demanding_argument_binding_refuses_an_unbound_credential(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer, bind_arguments={"deploy"})
    unbound = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy", "status"])
    async with Client(governed.server, mode=mode) as client:
        await call(client, "status", {}, unbound.token, AGENT)  # not demanded for status
    governed.ran.clear()
    governed.sink.clear()
    event = await _refused(governed, mode, "deploy", {"version": "1"}, unbound.token)
    assert event.reason == "args_unbound"


async def test_single_use_credential_cannot_be_replayed(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    once = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], single_use=True)
    async with Client(governed.server, mode=mode) as client:
        await call(client, "status", {}, once.token, AGENT)
        with pytest.raises(MCPError) as caught:
            await call(client, "status", {}, once.token, AGENT)
    assert caught.value.code == -32002
    assert governed.ran == ["status"]
    assert _refusal(governed.sink).reason == "replayed"


async def test_verifier_configured_single_use_makes_every_credential_single_use(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer, single_use=True)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    async with Client(governed.server, mode=mode) as client:
        await call(client, "status", {}, cred.token, AGENT)
        with pytest.raises(MCPError):
            await call(client, "status", {}, cred.token, AGENT)
    assert governed.ran == ["status"]


async def test_use_after_revocation_is_refused_at_once(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="t1")
    async with Client(governed.server, mode=mode) as client:
        await call(client, "status", {}, cred.token, AGENT)
        await issuer.revoke(cred)
        with pytest.raises(MCPError) as caught:
            await call(client, "status", {}, cred.token, AGENT)
    assert caught.value.code == -32002
    assert governed.ran == ["status"]
    event = _refusal(governed.sink)
    assert (event.reason, event.credential_id) == ("revoked", cred.id)


async def test_revocation_by_task_and_by_principal(mode: str) -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    governed = build_governed(issuer)
    a = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="release-42")
    b = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="release-43")
    other = principal("agent-2")
    c = await issuer.mint(other, audience=AUDIENCE, tools=["status"], task_id="release-43")
    await issuer.revoke_tenant_task("acme", "release-42")
    await issuer.revoke_principal(other)
    async with Client(governed.server, mode=mode) as client:
        await call(client, "status", {}, b.token, AGENT)
        for token, who in ((a.token, AGENT), (c.token, other)):
            with pytest.raises(MCPError):
                await call(client, "status", {}, token, who)
    assert governed.ran == ["status"]
    assert [e.reason for e in refusals(governed.sink)] == ["revoked", "revoked"]
    # A credential minted for the task after its revocation is good again.
    clock.advance(1)
    fresh = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="release-42")
    async with Client(governed.server, mode=mode) as client:
        await call(client, "status", {}, fresh.token, AGENT)
    assert governed.ran == ["status", "status"]


class _BrokenStore:
    def __init__(self, hang: bool = False) -> None:
        self.hang = hang

    async def _fail(self, *args: Any, **kwargs: Any) -> Any:
        if self.hang:
            import anyio

            await anyio.sleep(10)
        raise StateStoreError("backend down", reason="unavailable")

    add = put = get = get_many = delete = incr = _fail


@pytest.mark.parametrize("hang", [False, True])
async def test_failing_or_slow_revocation_store_counts_as_revoked(mode: str, hang: bool) -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    revocations = RevocationList(_BrokenStore(hang), max_ttl=300, timeout=0.05, clock=clock)
    governed = build_governed(issuer, revocations=revocations)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    event = await _refused(governed, mode, "status", {}, cred.token)
    assert (event.reason, event.credential_id) == ("revocation_unavailable", cred.id)


async def test_lifetime_longer_than_the_verifier_accepts_is_refused(mode: str) -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock, max_ttl=3600)
    governed = build_governed(issuer, max_ttl=60)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], ttl=600)
    event = await _refused(governed, mode, "status", {}, cred.token)
    assert event.reason == "lifetime_too_long"


async def test_tokens_never_reach_results_reprs_or_audit(mode: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status", "deploy"])
    async with Client(governed.server, mode=mode) as client:
        result = await call(client, "status", {}, cred.token, AGENT)
        with pytest.raises(MCPError) as caught:
            await call(client, "rollback", {"version": "1"}, cred.token, AGENT)
    texts = [
        result.model_dump_json(),
        repr(cred),
        str(cred),
        repr(cred.claims),
        repr(issuer),
        repr(governed.verifier),
        repr(issuer.keys),
        repr(caught.value),
        json.dumps(caught.value.data),
        json.dumps([e.model_dump(mode="json") for e in governed.sink.events]),
        caplog.text,
    ]
    signature = cred.token.split(".")[2]
    for text in texts:
        assert cred.token not in text
        assert signature not in text


async def test_verify_directly_reports_reason_and_id() -> None:
    issuer = make_issuer()
    verifier = issuer.verifier(AUDIENCE)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    claims = await verifier.verify(cred.token, tool="status", tenant="acme", principal=AGENT)
    assert claims.jti == cred.id
    with pytest.raises(CredentialRefused) as caught:
        await verifier.verify(cred.token, tool="deploy")
    assert (caught.value.reason, caught.value.credential_id) == ("wrong_tool", cred.id)


def test_verifier_requires_a_revocation_list() -> None:
    keys = SigningKeySet.generate()
    with pytest.raises(ConfigurationError):
        CredentialVerifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, revocations=None)  # type: ignore[arg-type]


class _SwappableKeys:
    """A key resolver (the KeyResolver protocol) whose key for one id can be replaced."""

    def __init__(self, key: Any) -> None:
        self.key = key

    @property
    def algorithms(self) -> frozenset[str]:
        return frozenset({"Ed25519"})

    def find(self, kid: str, alg: str) -> Any:
        return self.key if (kid, alg) == ("k1", "Ed25519") else None


async def test_a_remembered_credential_is_verified_again_once_its_key_id_names_another_key() -> None:
    clock = FrozenClock()
    old, new = (OKPKey.generate_key("Ed25519", parameters={"kid": "k1"}) for _ in range(2))
    issuer = make_issuer(clock, keys=SigningKeySet(old, clock=clock))
    resolver = _SwappableKeys(OKPKey.import_key(old.as_dict(private=False)))
    verifier = CredentialVerifier(
        issuer=ISSUER, audience=AUDIENCE, keys=resolver, revocations=issuer.revocations, clock=clock
    )
    credential = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    assert (await verifier.verify(credential.token, tool="status")).jti == credential.id  # remembered
    resolver.key = OKPKey.import_key(new.as_dict(private=False))  # the id now names another key
    with pytest.raises(CredentialRefused) as caught:
        await verifier.verify(credential.token, tool="status")
    assert caught.value.reason == "bad_signature"


def _binding_server(issuer: Any) -> tuple[Any, InMemoryAuditSink, list[str]]:
    """A server whose policy obliges every call to carry a credential bound to its arguments."""
    server = MCPServer("binding")
    sink = InMemoryAuditSink()
    ran: list[str] = []

    @server.tool()
    async def status() -> str:
        ran.append("status")
        return "green"

    hooks = Hooks()

    @hooks.tool("*")
    def oblige(ctx: GovContext) -> Decision:
        return Decision.allow("bound-only", bind_arguments=True)

    govern(server, identity_from_meta, CredentialMiddleware(issuer.verifier(AUDIENCE)), hooks, audit=sink)
    return server, sink, ran


@pytest.mark.parametrize("arguments", [None, {}])
async def test_a_call_without_arguments_runs_on_a_credential_bound_to_no_arguments(
    mode: str, arguments: dict[str, Any] | None
) -> None:
    issuer = make_issuer()
    server, sink, ran = _binding_server(issuer)
    bound = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], args_hash=EMPTY_ARGS_HASH)
    other = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], args_hash=arguments_hash({"x": 1}))
    async with Client(server, mode=mode) as client:
        result = await call(client, "status", arguments, bound.token, AGENT)
        assert result.is_error is False
        with pytest.raises(MCPError) as caught:
            await call(client, "status", arguments, other.token, AGENT)
    assert caught.value.code == -32002
    assert ran == ["status"]
    assert [e.reason for e in refusals(sink)] == ["args_mismatch"]


class _StoreRaising(InMemoryStateStore):
    """A store whose lookups (``get_many``) or single-use records (``add``) raise ``exc``."""

    def __init__(self, exc: BaseException, operation: str) -> None:
        super().__init__()
        self.exc = exc
        self.operation = operation

    async def get_many(self, keys: list[str]) -> list[str | None]:
        if self.operation == "get_many":
            raise self.exc
        return await super().get_many(keys)

    async def add(self, key: str, value: str, ttl: float) -> bool:
        if self.operation == "add":
            raise self.exc
        return await super().add(key, value, ttl)


class _StoreFailure(BaseException):
    """Not an ``Exception``: what a store (or a library under it) may raise all the same."""


@pytest.mark.parametrize("operation", ["get_many", "add"])
@pytest.mark.parametrize("exc", [_StoreFailure("down"), asyncio.CancelledError()], ids=["base", "stray-cancel"])
@pytest.mark.parametrize("check_early", [False, True])
async def test_a_store_raising_what_is_not_an_exception_refuses_as_unavailable_and_the_session_serves_on(
    mode: str, operation: str, exc: BaseException, check_early: bool
) -> None:
    issuer = make_issuer()
    revocations = RevocationList(_StoreRaising(exc, operation), max_ttl=300, clock=issuer._clock)
    verifier = CredentialVerifier(
        issuer=ISSUER, audience=AUDIENCE, keys=issuer.keys, revocations=revocations, clock=issuer._clock
    )
    server, sink, ran = MCPServer("s"), InMemoryAuditSink(), []

    @server.tool()
    async def status() -> str:
        ran.append("status")
        return "green"

    hooks = Hooks()

    @hooks.tool("*")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("allow-all")

    middleware = CredentialMiddleware(verifier, check_early=check_early)
    govern(server, identity_from_meta, middleware, hooks, audit=sink)
    once = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], single_use=True)
    async with Client(server, mode=mode) as client:
        for _ in range(2):
            with pytest.raises(MCPError) as caught:
                await call(client, "status", {}, once.token, AGENT)
            assert (caught.value.code, caught.value.message) == (-32002, "Invalid credential")
    assert ran == []
    # A lookup that failed after the use was recorded at the gate leaves the credential used (fail
    # closed); an early lookup fails before anything is recorded.
    second = "replayed" if operation == "get_many" and not check_early else "revocation_unavailable"
    assert [(e.reason, e.credential_id) for e in refusals(sink)] == [
        ("revocation_unavailable", once.id),
        (second, once.id),
    ]
