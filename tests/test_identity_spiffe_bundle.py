"""SPIFFE trust bundles: only keys marked ``use: jwt-svid`` verify JWT-SVIDs. A key for X.509-SVIDs,
for generic signatures, or one that does not say what it is for, verifies nothing, whether the
bundle is inline or fetched; and one key source never serves an OIDC issuer and a trust domain
at once."""

from __future__ import annotations

from typing import Any

import pytest

from mcpgov import ConfigurationError, GovernedClient
from mcpgov.identity import IdentityVerifier, OIDCTrust, RemoteKeys, StaticKeys
from mcpgov.testing import IdentityIssuer, SpiffeIssuer

from .test_identity_session import build, refused

pytestmark = pytest.mark.anyio

SPIRE = SpiffeIssuer("example.org", alg="ES256")
WORKLOAD = "/tenant/acme/agent"


def _bundle(use: Any) -> dict[str, Any]:
    """The authority's bundle with every key's ``use`` replaced (``...``: removed)."""
    keys = []
    for published in SPIRE.bundle()["keys"]:
        jwk = {k: v for k, v in published.items() if k != "use"}
        if use is not ...:
            jwk["use"] = use
        keys.append(jwk)
    return {"keys": keys}


@pytest.mark.parametrize("use", ["x509-svid", "sig", "enc", "JWT-SVID", ..., None])
async def test_spiffe_bundle_key_not_marked_for_jwt_svids_verifies_nothing(use: Any, mode: str) -> None:
    setup = build(IdentityVerifier(SPIRE.config(bundle=StaticKeys(_bundle(use)), tenant="acme")))
    await refused(setup, SPIRE.svid(WORKLOAD), mode)
    assert setup.sink.events[0].reason in ("unknown_kid", "kid_required")


async def test_spiffe_bundle_key_marked_for_jwt_svids_verifies(mode: str) -> None:
    setup = build(IdentityVerifier(SPIRE.config(bundle=StaticKeys(_bundle("jwt-svid")), tenant="acme")))
    async with GovernedClient(setup.server, identity=SPIRE.svid(WORKLOAD), mode=mode) as client:
        assert (await client.call_tool("work", {})).is_error is False
    assert setup.ran == ["work"]


class _X509Authority(SpiffeIssuer):
    """An authority whose served bundle marks its keys for X.509-SVIDs only."""

    _use = "x509-svid"


class _UnmarkedAuthority(SpiffeIssuer):
    """An authority whose served bundle does not say what its keys are for."""

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{k: v for k, v in jwk.items() if k != "use"} for jwk in super().jwks()["keys"]]}


@pytest.mark.parametrize("authority", [_X509Authority, _UnmarkedAuthority])
async def test_fetched_spiffe_bundle_key_not_marked_for_jwt_svids_verifies_nothing(
    authority: type[SpiffeIssuer], mode: str
) -> None:
    spire = authority("example.org", alg="ES256")
    async with spire.serve() as base:
        setup = build(IdentityVerifier(spire.config(bundle=RemoteKeys(f"{base}/jwks.json"), tenant="acme")))
        await refused(setup, spire.svid(WORKLOAD), mode)
    assert setup.sink.events[0].reason in ("unknown_kid", "kid_required")


def test_oidc_issuer_still_accepts_keys_without_use() -> None:
    issuer = IdentityIssuer(alg="ES256")
    jwks = {"keys": [{k: v for k, v in jwk.items() if k != "use"} for jwk in issuer.jwks()["keys"]]}
    verifier = IdentityVerifier(issuer.config(keys=StaticKeys(jwks)))
    assert verifier.verify_cached(issuer.token()).principal.subject == "agent"


@pytest.mark.parametrize("source", ["static", "remote"])
def test_one_key_source_never_serves_an_issuer_and_a_trust_domain(source: str) -> None:
    keys = StaticKeys(SPIRE.bundle()) if source == "static" else RemoteKeys("https://keys.example/jwks.json")
    SPIRE.config(bundle=keys)
    with pytest.raises(ConfigurationError, match="other key rules"):
        OIDCTrust("https://issuer.test", audience="mcp://test-server", keys=keys)
    keys = StaticKeys(SPIRE.bundle()) if source == "static" else RemoteKeys("https://keys.example/jwks.json")
    OIDCTrust("https://issuer.test", audience="mcp://test-server", keys=keys, algorithms=("ES256",))
    with pytest.raises(ConfigurationError, match="other key rules"):
        SPIRE.config(bundle=keys)


def test_one_key_source_may_serve_two_issuers_with_the_same_key_rules() -> None:
    keys = RemoteKeys("https://keys.example/jwks.json")
    IdentityVerifier(
        OIDCTrust("https://a.test", audience="mcp://test-server", keys=keys),
        OIDCTrust("https://b.test", audience="mcp://test-server", keys=keys),
    )
