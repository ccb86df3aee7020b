"""Key sets: inline and remote (a real local JWKS server), refresh on unknown kid (rate-limited),
maximum staleness (fail closed), revocation reaching the verified-token cache, private keys refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from mcpgov import ConfigurationError, IdentityError
from mcpgov.identity import IdentityVerifier, OIDCTrust, RemoteKeys, SpiffeTrustDomain, StaticKeys
from mcpgov.testing import IdentityIssuer, SpiffeIssuer

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _remote(issuer: IdentityIssuer, base: str, clock: Clock, **kwargs: Any) -> IdentityVerifier:
    keys = RemoteKeys(f"{base}/jwks.json", clock=clock, **kwargs)
    return IdentityVerifier(issuer.config(keys=keys), clock=clock)


async def reason_of(verifier: IdentityVerifier, token: str) -> str:
    with pytest.raises(IdentityError) as caught:
        await verifier.verify(token)
    return caught.value.reason


async def test_unknown_kid_refreshes_at_most_once_per_interval() -> None:
    clock = Clock()
    issuer = IdentityIssuer(clock=clock)
    async with issuer.serve() as base:
        verifier = _remote(issuer, base, clock, min_refresh_interval=30)
        await verifier.verify(issuer.token())
        assert issuer.requests == ["/jwks.json"]
        for i in range(20):  # a flood of hostile kids
            assert await reason_of(verifier, issuer.token(header={"kid": f"hostile-{i}"})) == "unknown_kid"
        assert issuer.requests == ["/jwks.json"]  # the first fetch was less than 30 s ago
        clock.now += 31
        issuer.rotate()
        assert (await verifier.verify(issuer.token("rotated"))).subject == "rotated"  # one refresh finds it
        for i in range(20):
            await reason_of(verifier, issuer.token(header={"kid": f"again-{i}"}))
        assert issuer.requests == ["/jwks.json", "/jwks.json"]


async def test_stale_keys_are_used_until_max_staleness_then_fail_closed() -> None:
    clock = Clock()
    issuer = IdentityIssuer(clock=clock, ttl=10_000)
    async with issuer.serve() as base:
        verifier = _remote(issuer, base, clock, refresh_interval=60, max_staleness=600, min_refresh_interval=5)
        verifier_no_cache = IdentityVerifier(
            issuer.config(keys=RemoteKeys(f"{base}/jwks.json", clock=clock, refresh_interval=60, max_staleness=600)),
            clock=clock,
            cache_size=0,
        )
        token = issuer.token()
        await verifier.verify(token)
        await verifier_no_cache.verify(token)
        issuer.available = False  # the key server goes down
        clock.now += 300  # past freshness, within staleness
        assert (await verifier.verify(issuer.token("b"))).subject == "b"
        assert (await verifier_no_cache.verify(token)).subject == "agent"
        clock.now += 400  # past max staleness
        assert await reason_of(verifier, issuer.token("c")) == "keys_stale"
        assert await reason_of(verifier, token) == "keys_stale"  # the cache does not outlive the keys
        assert await reason_of(verifier_no_cache, token) == "keys_stale"
        issuer.available = True
        clock.now += 10
        assert (await verifier.verify(token)).subject == "agent"  # back once a fetch succeeds


async def test_unreachable_key_server_fails_closed() -> None:
    clock = Clock()
    issuer = IdentityIssuer(clock=clock)
    async with issuer.serve() as base:
        pass  # the server is gone again: connections are refused
    verifier = _remote(issuer, base, clock, timeout=2)
    assert await reason_of(verifier, issuer.token()) == "keys_unavailable"


async def test_removed_key_invalidates_remembered_tokens_after_refresh() -> None:
    clock = Clock()
    issuer = IdentityIssuer(clock=clock, ttl=10_000)
    async with issuer.serve() as base:
        verifier = _remote(issuer, base, clock, refresh_interval=60, min_refresh_interval=1)
        old_token = issuer.token()
        await verifier.verify(old_token)
        await verifier.verify(old_token)
        assert verifier.signature_checks == 1
        issuer.rotate()
        issuer.drop_old_keys()  # the old key is revoked at the issuer
        clock.now += 61
        assert await reason_of(verifier, old_token) == "unknown_kid"


async def test_discovery_must_name_the_same_issuer() -> None:
    clock = Clock()
    issuer = IdentityIssuer("https://claimed.test", clock=clock)
    async with issuer.serve() as base:
        verifier = IdentityVerifier(issuer.config(keys=RemoteKeys(discovery=base, clock=clock)), clock=clock)
        assert await reason_of(verifier, issuer.token()) == "keys_unavailable"
        keys = verifier_keys(verifier)
        assert keys.last_error == "the discovery document names another issuer"


def verifier_keys(verifier: IdentityVerifier) -> RemoteKeys:
    (compiled,) = verifier._oidc.values()
    keys = compiled.keys
    assert isinstance(keys, RemoteKeys)
    return keys


async def test_fetched_key_set_with_private_material_is_refused() -> None:
    clock = Clock()
    issuer = IdentityIssuer(clock=clock)
    issuer.jwks = issuer.private_jwks  # type: ignore[method-assign]  # a misconfigured key server
    async with issuer.serve() as base:
        verifier = _remote(issuer, base, clock)
        assert await reason_of(verifier, issuer.token()) == "keys_unavailable"
        assert "private" in (verifier_keys(verifier).last_error or "")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_inline_key_set_with_private_material_is_refused_at_configuration(alg: str) -> None:
    issuer = IdentityIssuer(alg=alg)
    with pytest.raises(ConfigurationError, match="private"):
        StaticKeys(issuer.private_jwks())
    spire = SpiffeIssuer()
    with pytest.raises(ConfigurationError, match="private"):
        spire.config(bundle=StaticKeys(spire.private_jwks()))


def test_symmetric_key_in_a_jwks_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="secret"):
        StaticKeys({"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "alg": "HS256"}]})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"algorithms": ("none",)}, "none"),
        ({"algorithms": ("NoNe", "RS256")}, "none"),
        ({"algorithms": ()}, "at least one"),
        ({"leeway": 3600}, "leeway"),
        ({"audience": ""}, "audience"),
        ({"tenant_claim": "t", "tenant": "acme"}, "not both"),
        ({"keys": "https://x"}, "StaticKeys or RemoteKeys"),
    ],
)
def test_issuer_configuration_is_validated(kwargs: dict[str, Any], match: str) -> None:
    issuer = IdentityIssuer()
    options: dict[str, Any] = {"audience": "a", "keys": issuer.keys()}
    options.update(kwargs)
    with pytest.raises(ConfigurationError, match=match):
        OIDCTrust("https://issuer.test", **options)


def test_hmac_needs_an_explicit_shared_secret_never_a_jwks() -> None:
    issuer = IdentityIssuer()
    with pytest.raises(ConfigurationError, match="shared secret"):
        OIDCTrust("https://i.test", audience="a", keys=RemoteKeys("https://i.test/jwks"), algorithms=("HS256",))
    with pytest.raises(ConfigurationError, match="32 bytes"):
        StaticKeys.shared_secret(b"short")
    with pytest.raises(ConfigurationError, match="HS256"):
        StaticKeys.shared_secret(b"k" * 32, alg="RS256")
    assert issuer.keys() is not None


def test_spiffe_configuration_keeps_to_jwt_svid_rules() -> None:
    spire = SpiffeIssuer()
    with pytest.raises(ConfigurationError, match="RS/ES/PS"):
        spire.config(algorithms=("HS256",))
    with pytest.raises(ConfigurationError, match="RS/ES/PS"):
        spire.config(algorithms=("EdDSA",))
    with pytest.raises(ConfigurationError, match="outside trust domain"):
        spire.config(workloads=["spiffe://other.org/x"])
    with pytest.raises(ConfigurationError, match="tenant"):
        spire.config(tenant_pattern="spiffe://example.org/x/*")
    with pytest.raises(ConfigurationError, match="trust domain"):
        SpiffeTrustDomain("Example.ORG", audience="a", bundle=spire.keys())


@pytest.mark.parametrize(
    "url", ["http://keys.example.com/jwks", "ftp://127.0.0.1/jwks", "https:///jwks", "file:///etc/jwks"]
)
def test_key_urls_must_be_https_or_loopback(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RemoteKeys(url)


def test_remote_keys_intervals_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        RemoteKeys()
    with pytest.raises(ConfigurationError, match="max_staleness"):
        RemoteKeys("https://k.test/jwks", refresh_interval=600, max_staleness=60)
    with pytest.raises(ConfigurationError, match="positive"):
        RemoteKeys("https://k.test/jwks", timeout=float("nan"))


async def test_keys_without_alg_are_bound_by_curve_and_each_key_to_one_algorithm() -> None:
    spire = SpiffeIssuer()
    bundle = spire.bundle()
    assert all("alg" not in k for k in bundle["keys"])  # SPIFFE bundles name no alg
    verifier = IdentityVerifier(spire.config(tenant="acme"))
    assert (await verifier.verify(spire.svid("/w"))).spiffe_id == "spiffe://example.org/w"
    # The same P-256 key presented as ES384: the key is bound to ES256, so no ES384 check is tried.
    _, payload, signature = spire.svid("/w").split(".")
    header = base64.urlsafe_b64encode(json.dumps({"alg": "ES384", "kid": spire.kid}).encode()).decode().rstrip("=")
    verifier384 = IdentityVerifier(spire.config(tenant="acme", algorithms=("ES256", "ES384")))
    assert await reason_of(verifier384, f"{header}.{payload}.{signature}") == "alg_mismatch"


async def test_verified_token_cache_never_outlives_the_token() -> None:
    clock = Clock()
    issuer = IdentityIssuer(clock=clock)
    verifier = issuer.verifier(clock=clock, leeway=0)
    token = issuer.token(ttl=60)
    await verifier.verify(token)
    clock.now += 59
    await verifier.verify(token)
    assert verifier.signature_checks == 1
    clock.now += 2
    assert await reason_of(verifier, token) == "expired"


async def test_a_remembered_token_is_verified_again_after_cache_ttl_and_refused_after_exp() -> None:
    """The verified-token memory holds a token no longer than ``cache_ttl`` and never past its
    ``exp``: then the signature is checked again, and an expired token is refused."""
    clock = Clock()
    issuer = IdentityIssuer(clock=clock)
    verifier = IdentityVerifier(issuer.config(leeway=0), clock=clock, cache_ttl=30)
    token = issuer.token(ttl=100)
    for _ in range(3):
        assert (await verifier.verify(token)).subject == "agent"
    assert verifier.signature_checks == 1
    clock.now += 29.5
    await verifier.verify(token)
    assert verifier.signature_checks == 1
    clock.now += 1  # past cache_ttl: verified afresh, then remembered again
    await verifier.verify(token)
    await verifier.verify(token)
    assert verifier.signature_checks == 2
    clock.now += 70  # past exp (remembered until then at most)
    assert await reason_of(verifier, token) == "expired"
    assert verifier.signature_checks == 3
    with pytest.raises(IdentityError):
        verifier.verify_cached(token)


@pytest.mark.parametrize("after", [0.0, 0.001, 0.5, 0.999, 1.0])
async def test_a_token_is_refused_from_the_instant_of_its_exp_not_the_next_whole_second(after: float) -> None:
    """Accepted only before ``exp`` (RFC 7519), judged by the verifier's own clock reading, not
    by whole seconds: the claims library in some releases still accepts the second of ``exp``."""
    clock = Clock()
    issuer = IdentityIssuer(clock=clock)
    verifier = IdentityVerifier(issuer.config(leeway=0), clock=clock, cache_size=0)
    token = issuer.token(ttl=100)
    clock.now += 100 - 0.001
    assert (await verifier.verify(token)).subject == "agent"
    clock.now += 0.001 + after
    assert await reason_of(verifier, token) == "expired"
