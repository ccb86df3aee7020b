"""Hostile identity tokens and credentials through real SDK sessions: every refusal is clean,
audited with its reason, leaks no token, and fails closed."""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import subprocess
import sys
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jws import JWSRegistry
from mcp import Client, MCPError

from mcpgov import ConfigurationError, GovernedClient, IdentityError
from mcpgov.credentials import CredentialRefused, CredentialVerifier, VerificationKeys
from mcpgov.credentials._claims import CREDENTIAL_TYP
from mcpgov.credentials._logs import REDACTED, redact
from mcpgov.identity import IdentityVerifier, RemoteKeys, StaticKeys
from mcpgov.testing import IdentityIssuer

from .test_credentials_support import AUDIENCE, FrozenClock, build_governed, call, make_issuer, principal, refusals
from .test_credentials_support import ISSUER as ISSUER_URL
from .test_identity_http import RESOURCE, _post, served
from .test_identity_session import build, refused

pytestmark = pytest.mark.anyio

AGENT = principal("agent-1", "acme")
ISSUER = IdentityIssuer(alg="ES256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign_raw(header: bytes, payload: bytes, alg: str, key: Any) -> str:
    """A compact JWS over exactly these header and payload bytes (duplicate members and all)."""
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    signature = JWSRegistry(algorithms=[alg]).get_alg(alg).sign(signing_input.encode(), key)
    return f"{signing_input}.{_b64(signature)}"


def _identity_claims(**extra: Any) -> dict[str, Any]:
    now = int(ISSUER.clock())
    claims: dict[str, Any] = {
        "iss": ISSUER.issuer,
        "sub": "agent",
        "aud": ISSUER.audience,
        "iat": now,
        "exp": now + 300,
        "tenant": "acme",
    }
    claims.update(extra)
    return claims


def _identity_header() -> bytes:
    return json.dumps({"alg": "ES256", "typ": "JWT", "kid": ISSUER.kid}).encode()


def _signed_identity(header: bytes, payload: bytes) -> str:
    return _sign_raw(header, payload, "ES256", ISSUER._keys[-1][1])


def _with_member(document: bytes, member: str) -> bytes:
    """``document`` (a JSON object) with one more member written at its end."""
    return document[:-1] + b"," + member.encode() + b"}"


# --- strict JSON: one reading of every token ---------------------------------------------------

IDENTITY_JSON: dict[str, Any] = {
    "payload-duplicate-tenant": lambda: _signed_identity(
        _identity_header(), _with_member(json.dumps(_identity_claims()).encode(), '"tenant":"beta"')
    ),
    "payload-duplicate-sub": lambda: _signed_identity(
        _identity_header(), _with_member(json.dumps(_identity_claims()).encode(), '"sub":"admin"')
    ),
    "payload-duplicate-nested": lambda: _signed_identity(
        _identity_header(), json.dumps(_identity_claims(act=None)).encode()[:-1] + b',"act":{"sub":"a","sub":"b"}}'
    ),
    "header-duplicate-typ": lambda: _signed_identity(
        _with_member(_identity_header(), '"typ":"at+jwt"'), json.dumps(_identity_claims()).encode()
    ),
    "header-duplicate-kid": lambda: _signed_identity(
        _with_member(_identity_header(), f'"kid":"{ISSUER.kid}"'), json.dumps(_identity_claims()).encode()
    ),
    "payload-deeply-nested": lambda: f"{_b64(_identity_header())}.{_b64(b'[' * 2500 + b']' * 2500)}.c2ln",
    "payload-infinity": lambda: _signed_identity(
        _identity_header(), json.dumps(_identity_claims()).encode()[:-1] + b',"x":Infinity}'
    ),
}


@pytest.mark.parametrize("case", sorted(IDENTITY_JSON))
async def test_identity_token_json_with_two_readings_is_refused(case: str, mode: str) -> None:
    token = IDENTITY_JSON[case]()
    setup = build(IdentityVerifier(ISSUER.config()))
    await refused(setup, token, mode)
    assert setup.sink.events[0].reason == "malformed"


async def test_identity_strict_json_still_accepts_a_plain_token(mode: str) -> None:
    setup = build(IdentityVerifier(ISSUER.config()))
    token = _signed_identity(_identity_header(), json.dumps(_identity_claims()).encode())
    async with GovernedClient(setup.server, identity=token, mode=mode) as client:
        result = await client.call_tool("work", {})
    assert result.is_error is False
    assert setup.ran == ["work"]


async def _credential_refused(governed: Any, mode: str, token: str, caplog: Any) -> Any:
    with caplog.at_level(logging.DEBUG):
        async with Client(governed.server, mode=mode) as client:
            with pytest.raises(MCPError) as caught:
                await call(client, "status", {}, token, AGENT)
    assert (caught.value.code, caught.value.message) == (-32002, "Invalid credential")
    assert governed.ran == []
    (event,) = refusals(governed.sink)
    assert token not in caplog.text
    assert token not in event.model_dump_json()
    return event


@pytest.mark.parametrize("case", ["deep-payload", "duplicate-tenant", "duplicate-header-typ", "nan"])
async def test_credential_json_with_two_readings_is_refused(case: str, mode: str, caplog: Any) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    kid, alg, key = issuer.keys.current
    header = json.dumps({"alg": alg, "typ": CREDENTIAL_TYP, "kid": kid}).encode()
    payload = json.dumps(cred.claims.to_payload()).encode()
    if case == "deep-payload":  # no signature needed: refused before any cryptography
        token = f"{cred.token.split('.')[0]}.{_b64(b'[' * 2500 + b']' * 2500)}.{cred.token.split('.')[2]}"
    elif case == "duplicate-tenant":
        token = _sign_raw(header, _with_member(payload, '"tenant":"beta"'), alg, key)
    elif case == "duplicate-header-typ":
        token = _sign_raw(_with_member(header, f'"typ":"{CREDENTIAL_TYP}"'), payload, alg, key)
    else:
        token = _sign_raw(header, payload[:-1] + b',"x":NaN}', alg, key)
    event = await _credential_refused(governed, mode, token, caplog)
    assert event.reason == "malformed"


# --- numeric dates that are not numbers a clock can be compared with ---------------------------

HUGE = 10**400  # a JSON integer no float can hold


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [HUGE, -HUGE])
async def test_identity_numeric_date_out_of_float_range_is_refused(claim: str, value: int, mode: str) -> None:
    setup = build(IdentityVerifier(ISSUER.config()))
    await refused(setup, ISSUER.token(claims={claim: value}), mode)
    assert (setup.sink.events[0].reason, setup.sink.events[0].detail) == (
        "invalid_claim",
        f"identity token claim {claim!r} is not a finite number",
    )


@given(
    claim=st.sampled_from(["exp", "nbf", "iat"]),
    value=st.one_of(
        st.booleans(),
        st.text(max_size=12),
        st.integers(min_value=10**309, max_value=10**600),
        st.integers(max_value=-(10**309), min_value=-(10**600)),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
    ),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_identity_numeric_dates_that_are_not_finite_numbers_never_verify(claim: str, value: Any) -> None:
    verifier = IdentityVerifier(ISSUER.config(), cache_size=0)
    token = ISSUER.token(claims={claim: value})
    with pytest.raises(IdentityError) as caught:
        verifier.verify_cached(token)
    assert caught.value.reason in {"invalid_claim", "token_too_large"}


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_credential_numeric_date_out_of_float_range_is_refused(claim: str, mode: str, caplog: Any) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    kid, alg, key = issuer.keys.current
    header = json.dumps({"alg": alg, "typ": CREDENTIAL_TYP, "kid": kid}).encode()
    token = _sign_raw(header, json.dumps(dict(cred.claims.to_payload(), **{claim: HUGE})).encode(), alg, key)
    event = await _credential_refused(governed, mode, token, caplog)
    assert event.reason == "malformed"


# --- keys that are not for verifying signatures ------------------------------------------------


def _jwks_with(**members: Any) -> dict[str, Any]:
    jwks = ISSUER.jwks()
    for jwk in jwks["keys"]:
        jwk.update(members)
    return jwks


@pytest.mark.parametrize("key_ops", [["encrypt"], ["sign"], ["wrapKey", "unwrapKey"], []])
async def test_identity_key_whose_operations_exclude_verify_verifies_nothing(key_ops: list[str], mode: str) -> None:
    setup = build(IdentityVerifier(ISSUER.config(keys=StaticKeys(_jwks_with(key_ops=key_ops)))))
    await refused(setup, ISSUER.token(), mode)
    assert setup.sink.events[0].reason == "unknown_kid"


@pytest.mark.parametrize("use", ["enc", None, "SIG", ["sig"], ""])
async def test_identity_key_for_encryption_verifies_nothing(use: Any, mode: str) -> None:
    setup = build(IdentityVerifier(ISSUER.config(keys=StaticKeys(_jwks_with(use=use)))))
    await refused(setup, ISSUER.token(), mode)
    assert setup.sink.events[0].reason == "unknown_kid"


async def test_identity_key_with_verify_among_its_operations_verifies(mode: str) -> None:
    setup = build(IdentityVerifier(ISSUER.config(keys=StaticKeys(_jwks_with(key_ops=["verify"])))))
    async with GovernedClient(setup.server, identity=ISSUER.token(), mode=mode) as client:
        assert (await client.call_tool("work", {})).is_error is False


@pytest.mark.parametrize("key_ops", ["verify", [1], {"verify": True}])
def test_identity_key_ops_that_is_not_a_list_of_names_is_refused(key_ops: Any) -> None:
    with pytest.raises(ConfigurationError, match="key_ops is a list of strings"):
        ISSUER.config(keys=StaticKeys(_jwks_with(key_ops=key_ops)))


# --- header parameters an identity token never carries -----------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        {"cty": "JWT"},  # a nested token: its payload would be another JWT, not claims
        {"cty": "json"},
        {"zip": "DEF"},
        {"enc": "A256GCM"},
        {"nonce": "abc"},
        {"x5t#S256\u0000": "a"},
    ],
)
async def test_identity_header_parameters_outside_the_accepted_set_are_refused_by_name(
    header: dict[str, Any], mode: str
) -> None:
    verifier = IdentityVerifier(ISSUER.config())
    setup = build(verifier)
    await refused(setup, ISSUER.token(header=header), mode)
    event = setup.sink.events[0]
    assert event.reason == "forbidden_header"
    assert verifier.signature_checks == 0


@pytest.mark.parametrize("header", [{"x5t": "dGh1bWI"}, {"x5t#S256": "dGh1bWI"}, {"typ": None}])
async def test_identity_header_hints_that_point_nowhere_are_accepted(header: dict[str, Any], mode: str) -> None:
    setup = build(IdentityVerifier(ISSUER.config(typ=(None, "JWT"))))
    async with GovernedClient(setup.server, identity=ISSUER.token(header=header), mode=mode) as client:
        assert (await client.call_tool("work", {})).is_error is False


# --- subjects that print as someone else -------------------------------------------------------

BAD_NAMES = [
    " agent",
    "agent ",
    "agent\u0000",
    "age\nnt",
    "agent\t",
    "agent\u200b",  # zero-width space
    "\u202eagent",  # right-to-left override
    "agent\u00a0one",  # no-break space
    "agent\u2028",  # line separator
    "agent\ufeff",
    "   ",
]


@pytest.mark.parametrize("subject", BAD_NAMES)
async def test_identity_subject_that_prints_as_another_is_refused(subject: str, mode: str) -> None:
    setup = build(IdentityVerifier(ISSUER.config()))
    await refused(setup, ISSUER.token(subject), mode)
    assert setup.sink.events[0].reason == "invalid_claim"


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("member", ["sub", "iss"])
async def test_identity_actor_that_prints_as_another_is_refused(name: str, member: str, mode: str) -> None:
    setup = build(IdentityVerifier(ISSUER.config()))
    act = {"sub": "orchestrator", "iss": "https://issuer.test", member: name}
    await refused(setup, ISSUER.token(act=act), mode)
    assert setup.sink.events[0].reason == "actor_invalid"


@pytest.mark.parametrize("subject", ["agent one", "агент-7", "user@example.com", "repo:org/app:ref:refs/heads/main"])
async def test_identity_subjects_in_any_script_with_inner_spaces_are_accepted(subject: str, mode: str) -> None:
    setup = build(IdentityVerifier(ISSUER.config()))
    async with GovernedClient(setup.server, identity=ISSUER.token(subject, act={"sub": subject}), mode=mode) as client:
        assert (await client.call_tool("work", {})).is_error is False
    assert [p.subject for p, _ in setup.seen if p is not None] == [subject]


# --- properties: no mutation of a valid token verifies, and nothing but a refusal is raised -----

_MUTATION_ISSUER = IdentityIssuer(alg="ES256")
_MUTATION_VERIFIER = IdentityVerifier(_MUTATION_ISSUER.config(), cache_size=0)
_MUTATION_TOKEN = _MUTATION_ISSUER.token(ttl=86_400)  # the longest lifetime accepted
_TOKEN_ALPHABET = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ é\u0000")


def _mutate(token: str, edits: list[tuple[str, int, str]]) -> str:
    for kind, offset, text in edits:
        at = offset % (len(token) + 1)
        if kind == "insert":
            token = token[:at] + text + token[at:]
        elif kind == "delete":
            token = token[:at] + token[at + len(text) :]
        else:
            token = token[:at] + text + token[at + len(text) :]
    return token


_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "replace"]),
        st.integers(min_value=0, max_value=4096),
        st.text(_TOKEN_ALPHABET, min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=3,
)


@given(edits=_EDITS)
@settings(max_examples=300, deadline=None)
def test_no_mutation_of_a_valid_identity_token_verifies(edits: list[tuple[str, int, str]]) -> None:
    mutated = _mutate(_MUTATION_TOKEN, edits)
    if mutated == _MUTATION_TOKEN:
        return
    with pytest.raises(IdentityError):
        _MUTATION_VERIFIER.verify_cached(mutated)


def test_the_unmutated_identity_token_verifies() -> None:
    assert _MUTATION_VERIFIER.verify_cached(_MUTATION_TOKEN).principal.subject == "agent"


_CREDENTIAL_CLOCK = FrozenClock()
_CREDENTIAL_ISSUER = make_issuer(_CREDENTIAL_CLOCK)
_CREDENTIAL = anyio.run(functools.partial(_CREDENTIAL_ISSUER.mint, AGENT, audience=AUDIENCE, tools=["status"]))
_CREDENTIAL_VERIFIER = CredentialVerifier(
    issuer=ISSUER_URL,
    audience=AUDIENCE,
    keys=_CREDENTIAL_ISSUER.keys,
    revocations=_CREDENTIAL_ISSUER.revocations,
    clock=_CREDENTIAL_CLOCK,
)


@given(edits=_EDITS)
@settings(max_examples=300, deadline=None)
def test_no_mutation_of_a_valid_credential_verifies(edits: list[tuple[str, int, str]]) -> None:
    mutated = _mutate(_CREDENTIAL.token, edits)
    if mutated == _CREDENTIAL.token:
        return
    with pytest.raises(CredentialRefused):
        _CREDENTIAL_VERIFIER.check_token(mutated)


def test_the_unmutated_credential_verifies() -> None:
    assert _CREDENTIAL_VERIFIER.check_token(_CREDENTIAL.token).jti == _CREDENTIAL.id


# --- clock skew boundaries, on the verifier's own clock reading --------------------------------


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("claim", "offset", "accepted", "reason"),
    [
        ("nbf", 0.5, True, None),  # exactly now + leeway: valid
        ("nbf", 0.75, False, "not_yet_valid"),  # past the leeway by a quarter second
        ("nbf", 1.0, False, "not_yet_valid"),
        ("iat", 0.5, True, None),
        ("iat", 0.75, False, "issued_in_future"),
        ("iat", 1.0, False, "issued_in_future"),
    ],
)
def test_identity_nbf_and_iat_honour_a_fractional_leeway_exactly(
    claim: str, offset: float, accepted: bool, reason: str | None
) -> None:
    clock = _Clock(2_000_000_000.0)
    issuer = IdentityIssuer(alg="ES256", clock=clock)
    verifier = IdentityVerifier(issuer.config(leeway=0.5), clock=clock)
    token = issuer.token(claims={claim: clock.now + offset})
    if accepted:
        assert verifier.verify_cached(token).principal.subject == "agent"
    else:
        with pytest.raises(IdentityError) as caught:
            verifier.verify_cached(token)
        assert caught.value.reason == reason


@pytest.mark.parametrize(("offset", "accepted"), [(-0.5, False), (-0.49, True), (-0.51, False)])
def test_identity_exp_boundary_is_exp_plus_leeway(offset: float, accepted: bool) -> None:
    clock = _Clock(2_000_000_000.0)
    issuer = IdentityIssuer(alg="ES256", clock=clock)
    verifier = IdentityVerifier(issuer.config(leeway=0.5), clock=clock)
    token = issuer.token(claims={"iat": clock.now - 60, "exp": clock.now + offset})
    if accepted:
        assert verifier.verify_cached(token).principal.subject == "agent"
    else:
        with pytest.raises(IdentityError) as caught:
            verifier.verify_cached(token)
        assert caught.value.reason == "expired"


# --- over Streamable HTTP: a 401, one audit event, no token in any log at any level -----------

HTTP_HOSTILE: dict[str, tuple[Any, str]] = {
    "duplicate-tenant": (
        lambda i: _sign_raw(
            json.dumps({"alg": "ES256", "typ": "JWT", "kid": i.kid}).encode(),
            _with_member(_b64decode(i.token().split(".")[1]), '"tenant":"beta"'),
            "ES256",
            i._keys[-1][1],
        ),
        "malformed",
    ),
    "exp-beyond-float": (lambda i: i.token(claims={"exp": HUGE}), "invalid_claim"),
    "subject-zero-width": (lambda i: i.token("agent\u200b"), "invalid_claim"),
    "nested-token": (lambda i: i.token(header={"cty": "JWT"}), "forbidden_header"),
    "deep-payload": (lambda i: f"{i.token().split('.')[0]}.{_b64(b'[' * 2000 + b']' * 2000)}.c2ln", "malformed"),
}


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@pytest.mark.parametrize("case", sorted(HTTP_HOSTILE))
async def test_hostile_bearer_over_http_is_a_clean_401_and_never_logged(case: str, caplog: Any) -> None:
    issuer = IdentityIssuer(issuer=None, audience=RESOURCE)
    make, reason = HTTP_HOSTILE[case]
    with caplog.at_level(logging.DEBUG):
        async with served(issuer) as s:
            token = make(issuer)
            response = await _post(s.url, {"Authorization": f"Bearer {token}"})
            valid = issuer.token()
            async with GovernedClient(s.url, identity=valid, mode="auto") as client:
                assert (await client.call_tool("work", {})).is_error is False
    assert response.status_code == 401
    assert token not in response.text and "Traceback" not in response.text
    assert s.ran == ["work"]
    (event,) = [e for e in s.sink.events if e.type == "identity.refused"]
    assert event.reason == reason
    assert token not in event.model_dump_json()
    for secret in (token, valid, token.split(".")[2], valid.split(".")[2]):
        assert secret not in caplog.text


# --- credential verification keys ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"use": "enc"}, "for signatures"),
        ({"use": None}, "for signatures"),
        ({"use": "SIG"}, "for signatures"),
        ({"key_ops": ["encrypt"]}, "for signatures"),
        ({"key_ops": ["sign"]}, "for signatures"),
        ({"key_ops": "verify"}, "for signatures"),
    ],
)
def test_credential_verification_key_not_for_signatures_is_refused(members: dict[str, Any], match: str) -> None:
    jwks = make_issuer().keys.jwks()
    jwks["keys"][0].update(members)
    with pytest.raises(ConfigurationError, match=match):
        VerificationKeys(jwks)


def test_credential_verification_key_id_appearing_twice_is_refused() -> None:
    jwks = make_issuer().keys.jwks()
    other = make_issuer().keys.jwks()["keys"][0]
    other["kid"] = jwks["keys"][0]["kid"]
    jwks["keys"].append(other)
    with pytest.raises(ConfigurationError, match="appears twice"):
        VerificationKeys(jwks)


async def test_credential_verification_keys_with_verify_among_key_ops_verify() -> None:
    issuer = make_issuer(_CREDENTIAL_CLOCK)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    jwks = issuer.keys.jwks()
    jwks["keys"][0]["key_ops"] = ["verify"]
    verifier = CredentialVerifier(
        issuer=ISSUER_URL,
        audience=AUDIENCE,
        keys=VerificationKeys(jwks),
        revocations=issuer.revocations,
        clock=_CREDENTIAL_CLOCK,
    )
    assert verifier.check_token(cred.token).jti == cred.id


# --- identity tokens never reach the SDK's logs, in a process that handles no credential -------

_LOG_PROBE = """
import io, logging, sys
stream = io.StringIO()
logging.basicConfig(level=logging.DEBUG, stream=stream, force=True)
from mcpgov.testing import IdentityIssuer
issuer = IdentityIssuer()
token = issuer.token()
{setup}
# What the SDK's SSE transport and frame reader log at DEBUG: whole JSON-RPC messages.
body = '{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"_meta":{{"io.mcpgov/identity":"%s"}}}}}}' % token
logging.getLogger("mcp.server.sse").debug("Received JSON: %s", body)
logging.getLogger("mcp.server.runner").debug("dropped a frame received before the first request: %r", body)
print("LEAK" if token in stream.getvalue() or token.split(".")[2] in stream.getvalue() else "CLEAN")
"""


@pytest.mark.parametrize(
    "setup",
    [
        "from mcpgov.identity import IdentityMiddleware, IdentityVerifier\n"
        "IdentityMiddleware(IdentityVerifier(issuer.config()))",
        "from mcpgov import GovernedClient\nfrom mcp.server.mcpserver import MCPServer\n"
        "GovernedClient(MCPServer('s'), identity=token)",
    ],
    ids=["server", "client"],
)
def test_identity_tokens_are_redacted_from_sdk_logs_without_any_credential(setup: str) -> None:
    script = _LOG_PROBE.format(setup=setup)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "CLEAN"


# --- the synchronous path (requestState binding) honours key rotation and staleness too ---------


async def test_remembered_token_of_a_rotated_out_key_is_refused_on_the_synchronous_path() -> None:
    clock = _Clock(1_900_000_000.0)
    issuer = IdentityIssuer(clock=clock, ttl=10_000)
    async with issuer.serve() as base:
        keys = RemoteKeys(f"{base}/jwks.json", clock=clock, refresh_interval=60, min_refresh_interval=1)
        verifier = IdentityVerifier(issuer.config(keys=keys), clock=clock)
        old_token = issuer.token()
        await verifier.verify(old_token)  # remembered
        assert verifier.verify_cached(old_token).principal.subject == "agent"
        issuer.rotate()
        issuer.drop_old_keys()  # the old key is revoked at the issuer
        clock.now += 61
        await verifier.verify(issuer.token("fresh"))  # a refresh: the old kid is gone
        with pytest.raises(IdentityError) as caught:
            verifier.verify_cached(old_token)
        assert caught.value.reason == "unknown_kid"


async def test_remembered_token_is_refused_on_the_synchronous_path_once_keys_are_too_stale() -> None:
    clock = _Clock(1_900_000_000.0)
    issuer = IdentityIssuer(clock=clock, ttl=10_000)
    async with issuer.serve() as base:
        keys = RemoteKeys(f"{base}/jwks.json", clock=clock, refresh_interval=60, max_staleness=600)
        verifier = IdentityVerifier(issuer.config(keys=keys), clock=clock, cache_ttl=5000)
        token = issuer.token()
        await verifier.verify(token)
        issuer.available = False
        clock.now += 700  # past max staleness, the token still remembered
        with pytest.raises(IdentityError) as caught:
            verifier.verify_cached(token)
        assert caught.value.reason == "keys_stale"


# --- redaction is judged by planting generated tokens, in every header spelling -----------------

_JSON_SPACE = st.text(" \t\r\n", max_size=3)


@given(
    before=_JSON_SPACE,
    inner=_JSON_SPACE,
    alg=st.sampled_from(["ES256", "RS256", "EdDSA", "HS256", "PS512"]),
    extra=st.dictionaries(st.sampled_from(["kid", "typ", "x5t"]), st.text(min_size=1, max_size=12), max_size=3),
    payload=st.binary(min_size=1, max_size=64),
    signature=st.binary(min_size=32, max_size=96),
    prefix=st.sampled_from(["", "Bearer ", '{"io.mcpgov/identity": "', "token=", "'"]),
)
@settings(max_examples=200, deadline=None)
def test_every_compact_jws_planted_in_a_log_record_is_redacted(
    *, before: str, inner: str, alg: str, extra: dict[str, str], payload: bytes, signature: bytes, prefix: str
) -> None:
    header = (before + "{" + inner + json.dumps({"alg": alg, **extra})[1:]).encode()
    token = f"{_b64(header)}.{_b64(payload)}.{_b64(signature)}"
    record = logging.LogRecord(
        "mcp.server.sse", logging.DEBUG, __file__, 1, "Received JSON: %s", (prefix + token,), None
    )
    redact(record)
    message = record.getMessage()
    assert token not in message and _b64(signature) not in message
    assert message.startswith("Received JSON: ") and REDACTED in message


@pytest.mark.parametrize(
    "text",
    ["example.co.uk", "GET /mcp HTTP/1.1", "mcp.server.sse v1.2.3", "a.b.c", "session 3f2a.91bc.77de", "eyJ.x.y"],
)
def test_log_text_without_a_token_is_left_alone(text: str) -> None:
    record = logging.LogRecord("mcp.server", logging.DEBUG, __file__, 1, "%s", (text,), None)
    redact(record)
    assert record.getMessage() == text


@pytest.mark.parametrize("glue", ["%22", "token%3D", "22", "x", "Bearer%20"])
def test_a_token_glued_to_text_before_it_is_redacted(glue: str) -> None:
    token = ISSUER.token()
    record = logging.LogRecord("httpx", logging.DEBUG, __file__, 1, "GET /cb?q=%s", (glue + token,), None)
    redact(record)
    assert token.split(".")[2] not in record.getMessage()
    assert REDACTED in record.getMessage()
