"""An auditor can trust an event's ``principal``, ``tenant`` and ``credential_id``: they come from
a verified token. A token refused before (or without) verification leaves them empty, and
nothing it says reaches the event except, for a credential, the id it claims, under the
``unverified`` attribute. Every refusal reason, identity tokens and credentials, both protocol
modes, through real sessions."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import OKPKey
from mcp import Client, MCPError

from mcpgov import IdentityError
from mcpgov.credentials import SigningKeySet
from mcpgov.credentials._claims import CREDENTIAL_TYP
from mcpgov.credentials._jose import _registry, sign_credential
from mcpgov.identity import IdentityVerifier
from mcpgov.testing import IdentityIssuer

from .test_credentials_support import AUDIENCE, FrozenClock, build_governed, call, make_issuer, principal, refusals
from .test_identity_http import RESOURCE, _post, served
from .test_identity_session import build, refused, unsigned

pytestmark = pytest.mark.anyio

MARK = "mallory7f3a"
"""Planted in every value an attacker chooses; must never appear in a refusal event."""

ISSUER = IdentityIssuer(alg="ES256")
FORGER = IdentityIssuer(alg="ES256")  # same issuer URL and key id, another key
ELSEWHERE = IdentityIssuer("https://elsewhere.test", alg="ES256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _marked(**extra: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"jti": f"{MARK}-jti", "act": {"sub": f"{MARK}-actor"}}
    claims.update(extra)
    return claims


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(ISSUER.clock())
    body: dict[str, Any] = {
        "iss": ISSUER.issuer,
        "sub": f"{MARK}-sub",
        "aud": ISSUER.audience,
        "iat": now,
        "exp": now + 300,
        "tenant": f"{MARK}-tenant",
        **_marked(),
    }
    body.update(extra)
    return body


def _tampered() -> str:
    header, _payload, signature = ISSUER.token(f"{MARK}-sub", tenant=f"{MARK}-tenant", claims=_marked()).split(".")
    return f"{header}.{_b64(json.dumps(_claims(sub=f'{MARK}-admin')).encode())}.{signature}"


IDENTITY: dict[str, tuple[Any, str]] = {
    "forged": (lambda: FORGER.token(f"{MARK}-sub", tenant=f"{MARK}-tenant", claims=_marked()), "bad_signature"),
    "tampered": (_tampered, "bad_signature"),
    "unknown-issuer": (
        lambda: ELSEWHERE.token(f"{MARK}-sub", tenant=f"{MARK}-tenant", claims=_marked()),
        "unknown_issuer",
    ),
    "unknown-kid": (
        lambda: ISSUER.token(f"{MARK}-sub", tenant=f"{MARK}-tenant", claims=_marked(), header={"kid": MARK}),
        "unknown_kid",
    ),
    "alg-not-allowed": (
        lambda: unsigned({"alg": f"{MARK}256", "kid": ISSUER.kid}, _claims(), "c2ln"),
        "alg_not_allowed",
    ),
    "typ": (
        lambda: ISSUER.token(f"{MARK}-sub", tenant=f"{MARK}-tenant", claims=_marked(), header={"typ": MARK}),
        "wrong_typ",
    ),
    "malformed": (lambda: f"{_b64(b'{}')}.{_b64(MARK.encode())}.c2ln", "malformed"),
    "expired": (
        lambda: ISSUER.token(f"{MARK}-sub", tenant=f"{MARK}-tenant", claims=_marked(), ttl=-3600),
        "expired",
    ),
    "wrong-audience": (
        lambda: ISSUER.token(f"{MARK}-sub", tenant=f"{MARK}-tenant", claims=_marked(), audience=f"mcp://{MARK}"),
        "wrong_audience",
    ),
    "lifetime": (
        lambda: ISSUER.token(f"{MARK}-sub", tenant=f"{MARK}-tenant", claims=_marked(), ttl=10 * 365 * 86400),
        "lifetime_too_long",
    ),
    "tenant-invalid": (
        lambda: ISSUER.token(f"{MARK}-sub", tenant=f"{MARK} tenant!", claims=_marked()),
        "tenant_invalid",
    ),
}


def _assert_nothing_unverified(event: Any) -> None:
    assert (event.principal, event.tenant, event.credential_id) == (None, None, None)
    assert not event.actors
    assert MARK not in event.model_dump_json()


@pytest.mark.parametrize("case", sorted(IDENTITY))
async def test_refused_identity_token_puts_none_of_its_claims_in_the_event(case: str, mode: str) -> None:
    make, reason = IDENTITY[case]
    setup = build(IdentityVerifier(ISSUER.config()))
    await refused(setup, make(), mode)
    (event,) = setup.sink.events
    assert event.reason == reason
    _assert_nothing_unverified(event)


@pytest.mark.parametrize("case", ["forged", "alg-not-allowed", "typ", "expired", "tenant-invalid"])
async def test_refused_bearer_puts_none_of_its_claims_in_the_event(case: str) -> None:
    issuer = IdentityIssuer(issuer=None, audience=RESOURCE)
    async with served(issuer) as s:
        base = {"iss": issuer.issuer, "aud": RESOURCE, "sub": f"{MARK}-sub", "tenant": f"{MARK}-tenant", **_marked()}
        tokens = {
            "forged": lambda: IdentityIssuer(issuer.issuer, audience=RESOURCE).token(
                f"{MARK}-sub", tenant=f"{MARK}-tenant", claims=_marked()
            ),
            "alg-not-allowed": lambda: unsigned({"alg": f"{MARK}256", "kid": issuer.kid}, base, "c2ln"),
            "typ": lambda: issuer.token(f"{MARK}-sub", tenant=f"{MARK}-tenant", claims=_marked(), header={"typ": MARK}),
            "expired": lambda: issuer.token(f"{MARK}-sub", tenant=f"{MARK}-tenant", claims=_marked(), ttl=-3600),
            "tenant-invalid": lambda: issuer.token(f"{MARK}-sub", tenant=f"{MARK} tenant!", claims=_marked()),
        }
        response = await _post(s.url, {"Authorization": f"Bearer {tokens[case]()}"})
    assert response.status_code == 401
    (event,) = [e for e in s.sink.events if e.type == "identity.refused"]
    _assert_nothing_unverified(event)


# --- credentials ---------------------------------------------------------------------------------

AGENT = principal("agent-1", "acme")
CLAIMED = f"{MARK}-jti"


async def _credential_event(governed: Any, token: str, mode: str) -> Any:
    async with Client(governed.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await call(client, "status", {}, token, AGENT)
    assert (caught.value.code, caught.value.message) == (-32002, "Invalid credential")
    assert governed.ran == []
    (event,) = refusals(governed.sink)
    return event


async def _payload(governed: Any) -> dict[str, Any]:
    """The claims of a credential this issuer would mint, claiming the id :data:`CLAIMED`."""
    cred = await governed.issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    payload: dict[str, Any] = cred.claims.to_payload()
    payload["jti"] = CLAIMED
    return payload


async def _foreign_key(governed: Any) -> str:
    kid, alg, _key = governed.issuer.keys.current
    return sign_credential(await _payload(governed), kid, alg, OKPKey.generate_key("Ed25519"))


async def _foreign_kid(governed: Any) -> str:
    other = SigningKeySet.generate("Ed25519", clock=governed.issuer._clock)
    kid, alg, key = other.current
    return sign_credential(await _payload(governed), f"{MARK}-{kid}", alg, key)


async def _tampered_credential(governed: Any) -> str:
    cred = await governed.issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"])
    header, _payload, signature = cred.token.split(".")
    claims = cred.claims.to_payload()
    claims.update(tools=["status"], jti=CLAIMED)
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


async def _identity_as_credential(governed: Any) -> str:
    # Signed with the credential issuer's own key, but typed as a plain JWT (an identity token).
    kid, alg, key = governed.issuer.keys.current
    payload = json.dumps(await _payload(governed)).encode()
    return jws.serialize_compact({"alg": alg, "typ": "JWT", "kid": kid}, payload, key, registry=_registry(alg))


async def _unsigned(governed: Any) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": CREDENTIAL_TYP, "kid": "k"}).encode())
    return f"{header}.{_b64(json.dumps(await _payload(governed)).encode())}.c2ln"


CREDENTIALS: dict[str, tuple[Any, str]] = {
    "foreign-key": (_foreign_key, "bad_signature"),
    "unknown-kid": (_foreign_kid, "unknown_key"),
    "tampered": (_tampered_credential, "bad_signature"),
    "identity-token-as-credential": (_identity_as_credential, "bad_typ"),
    "unsigned": (_unsigned, "bad_alg"),
}


@pytest.mark.parametrize("case", sorted(CREDENTIALS))
async def test_unverified_credential_id_is_never_the_event_credential_id(case: str, mode: str) -> None:
    issuer = make_issuer(FrozenClock())
    governed = build_governed(issuer)
    make, reason = CREDENTIALS[case]
    token = await make(governed)
    governed.sink.clear()  # the minting of the genuine credential the token was made from
    event = await _credential_event(governed, token, mode)
    assert event.reason == reason
    assert event.credential_id is None
    assert event.attributes["unverified"] == {"jti": CLAIMED}
    outside = event.model_dump(mode="json")
    outside["attributes"].pop("unverified")
    assert MARK not in json.dumps(outside)
    assert token not in event.model_dump_json()


async def test_malformed_credential_claims_no_id(mode: str) -> None:
    governed = build_governed(make_issuer(FrozenClock()))
    token = f"{_b64(json.dumps({'alg': 'EdDSA', 'typ': CREDENTIAL_TYP}).encode())}.{_b64(MARK.encode())}.c2ln"
    event = await _credential_event(governed, token, mode)
    assert event.reason == "malformed"
    assert event.credential_id is None
    assert "unverified" not in event.attributes
    assert MARK not in event.model_dump_json()


@pytest.mark.parametrize("reason", ["expired", "wrong_tool"])
async def test_verified_credential_refused_later_keeps_its_credential_id(reason: str, mode: str) -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status" if reason == "expired" else "deploy"])
    if reason == "expired":
        clock.advance(3600)
    event = await _credential_event(governed, cred.token, mode)
    assert event.reason == reason
    assert event.credential_id == cred.claims.jti
    assert "unverified" not in event.attributes


_PLANT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=12).map(lambda s: f"zq{s}")
_HEADER_SPOTS = ("typ", "alg", "kid")
_CLAIM_SPOTS = ("sub", "tenant", "jti", "iss", "aud")


@given(
    plant=_PLANT,
    header_spots=st.sets(st.sampled_from(_HEADER_SPOTS)),
    claim_spots=st.sets(st.sampled_from(_CLAIM_SPOTS)),
    signer=st.sampled_from(["forger", "none", "tampered"]),
)
@settings(max_examples=150, deadline=None)
def test_no_refusal_of_an_identity_token_repeats_what_it_claims(
    plant: str, header_spots: set[str], claim_spots: set[str], signer: str
) -> None:
    header: dict[str, Any] = {"alg": "ES256", "typ": "JWT", "kid": ISSUER.kid}
    header.update(dict.fromkeys(header_spots, plant))
    claims = _claims(**dict.fromkeys(claim_spots, plant))
    if signer == "none" or "alg" in header_spots:
        token = unsigned(header, claims, "c2ln")
    elif signer == "forger":
        token = FORGER.sign(header, claims)
    else:  # a genuine signature over other claims, with the planted ones swapped in
        genuine = ISSUER.sign(header, _claims()).split(".")
        token = f"{genuine[0]}.{_b64(json.dumps({**claims, 'note': plant}).encode())}.{genuine[2]}"
    with pytest.raises(IdentityError) as caught:
        _VERIFIER.verify_cached(token)
    assert plant not in caught.value.detail
    assert caught.value.context is None
    assert caught.value.unverified is None


_VERIFIER = IdentityVerifier(ISSUER.config(), cache_size=0)
