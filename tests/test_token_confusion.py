"""A credential is never an identity, and an identity token never a credential: even when one
issuer URL and one key set sign both, each verifier refuses the other's tokens by their ``typ``,
and no identity issuer can be configured to accept credentials."""

from __future__ import annotations

import json

import pytest
from joserfc import jws
from mcp import Client, MCPError

from mcpgov import ConfigurationError
from mcpgov.credentials._claims import CREDENTIAL_TYP
from mcpgov.credentials._jose import _registry
from mcpgov.identity import IdentityVerifier, OIDCTrust, StaticKeys
from mcpgov.identity._verifier import _CREDENTIAL_TYP

from .test_credentials_support import AUDIENCE, FrozenClock, build_governed, call, make_issuer, principal, refusals
from .test_credentials_support import ISSUER as CREDENTIAL_ISSUER
from .test_identity_session import build, refused

pytestmark = pytest.mark.anyio

AGENT = principal("agent-1", "acme")


@pytest.mark.parametrize("algorithm", ["Ed25519", "ES256"])
async def test_credential_presented_as_identity_is_refused(algorithm: str, mode: str) -> None:
    issuer = make_issuer(FrozenClock(), algorithm=algorithm)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["work"])
    trust = OIDCTrust(
        CREDENTIAL_ISSUER,
        audience=AUDIENCE,
        keys=StaticKeys(issuer.keys.jwks()),
        algorithms=(issuer.keys.current[1],),
        tenant_claim="tenant",
    )
    setup = build(IdentityVerifier(trust, clock=issuer._clock))
    await refused(setup, cred.token, mode)
    assert setup.sink.events[0].reason == "wrong_typ"


def test_the_identity_verifier_knows_the_credential_typ() -> None:
    assert CREDENTIAL_TYP.lower() == _CREDENTIAL_TYP


@pytest.mark.parametrize(
    "typ", [CREDENTIAL_TYP, CREDENTIAL_TYP.upper(), f"application/{CREDENTIAL_TYP}", f"Application/{CREDENTIAL_TYP}"]
)
def test_no_identity_issuer_accepts_the_credential_typ(typ: str) -> None:
    with pytest.raises(ConfigurationError, match="credential is not an identity"):
        OIDCTrust("https://issuer.test", audience=AUDIENCE, keys=StaticKeys({"keys": []}), typ=(None, "JWT", typ))


@pytest.mark.parametrize("typ", [3, b"JWT"])
def test_identity_typ_configuration_lists_strings_only(typ: object) -> None:
    with pytest.raises(ConfigurationError, match="typ"):
        OIDCTrust("https://issuer.test", audience=AUDIENCE, keys=StaticKeys({"keys": []}), typ=(typ,))  # type: ignore[arg-type]


async def test_identity_token_presented_as_credential_is_refused(mode: str) -> None:
    issuer = make_issuer(FrozenClock())
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    governed.sink.clear()
    kid, alg, key = issuer.keys.current
    for typ in ("JWT", None):
        header = {"alg": alg, "kid": kid, **({"typ": typ} if typ else {})}
        payload = json.dumps(cred.claims.to_payload()).encode()
        token = jws.serialize_compact(header, payload, key, registry=_registry(alg))
        async with Client(governed.server, mode=mode) as client:
            with pytest.raises(MCPError):
                await call(client, "status", {}, token, AGENT)
    assert [e.reason for e in refusals(governed.sink)] == ["bad_typ", "bad_typ"]
    assert governed.ran == []
