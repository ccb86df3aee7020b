"""Test identities and an in-memory audit sink: what a governed session needs to run without a
real identity provider (the policy case runner, the test kit, users' tests).

:class:`IdentityIssuer` and :class:`SpiffeIssuer` mint identity tokens with in-memory keys;
:class:`InMemoryAuditSink` keeps every audit event. Re-exported by :mod:`mcpgov.testing`.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from joserfc import jws
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from joserfc.registry import JWS_HEADER_REGISTRY, HeaderParameter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typing_extensions import Unpack

from mcpgov._audit import AuditEvent
from mcpgov._harness._http import serve_http
from mcpgov._principal import Principal
from mcpgov._types import Clock
from mcpgov.identity import IdentityVerifier, OIDCTrust, SpiffeTrustDomain, StaticKeys
from mcpgov.identity._keys import OneAlgorithm

__all__ = ["IdentityIssuer", "InMemoryAuditSink", "MintOptions", "SpiffeIssuer"]


class InMemoryAuditSink:
    """An audit sink that keeps every event in memory, in order.

    Example::

        sink = InMemoryAuditSink()
        govern(server, hooks, audit=sink)
        ...
        assert [e.effect for e in sink.decisions()] == ["allow", "deny"]
    """

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def __call__(self, event: AuditEvent) -> None:
        self.events.append(event)

    def of_type(self, event_type: str) -> list[AuditEvent]:
        """The events of one type (``decision``, ``outcome``, ``list.filtered``)."""
        return [e for e in self.events if e.type == event_type]

    def decisions(self) -> list[AuditEvent]:
        """The decision events."""
        return self.of_type("decision")

    def outcomes(self) -> list[AuditEvent]:
        """The outcome events."""
        return self.of_type("outcome")

    def for_target(self, target: str) -> list[AuditEvent]:
        """The events about one tool, prompt or resource."""
        return [e for e in self.events if e.target == target]

    def clear(self) -> None:
        """Forget every event."""
        self.events.clear()


# --- test identities -------------------------------------------------------------------------

_GENERATE: dict[str, tuple[str, str | int]] = {
    "RS256": ("RSA", 2048),
    "RS384": ("RSA", 2048),
    "RS512": ("RSA", 2048),
    "PS256": ("RSA", 2048),
    "PS384": ("RSA", 2048),
    "PS512": ("RSA", 2048),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
    "Ed25519": ("OKP", "Ed25519"),
}


class MintOptions(TypedDict, total=False):
    """What every test issuer takes (keywords; defaults in ``_Minter``): ``audience``, ``alg``,
    ``ttl``, ``clock``."""

    audience: str
    alg: str
    ttl: float
    clock: Clock


class _Minter:
    """Shared by the test issuers: in-memory signing keys, a public JWKS, and a local HTTP server."""

    _use = "sig"

    def __init__(
        self, *, audience: str = "mcp://test-server", alg: str = "ES256", ttl: float = 300.0, clock: Clock = time.time
    ) -> None:
        if alg not in _GENERATE and alg not in ("HS256", "HS384", "HS512"):
            raise ValueError(f"unsupported test algorithm {alg!r}")
        self.audience = audience
        self.alg = alg
        self.ttl = ttl
        self.clock = clock
        self.secret: bytes | None = secrets.token_bytes(32) if alg.startswith("HS") else None
        self._keys: list[tuple[str, Any]] = []
        self._counter = itertools.count(1)
        if self.secret is not None:
            self._keys.append((self._next_kid(), OctKey.import_key(self.secret)))
        else:
            self.rotate()
        self.requests: list[str] = []
        """Paths requested from :meth:`serve`, in order."""
        self.available = True
        """While ``False``, the served endpoints answer 503 (a key server that is down)."""
        self.base_url: str | None = None

    def _next_kid(self) -> str:
        return f"test-{self.alg.lower()}-{next(self._counter)}"

    def rotate(self) -> str:
        """Sign with a new key from now on (the old keys stay published); returns its ``kid``."""
        if self.secret is not None:
            raise ValueError("a shared-secret issuer has one key")
        kty, size = _GENERATE[self.alg]
        key: Any
        if kty == "RSA":
            key = RSAKey.generate_key(int(size))
        elif kty == "EC":
            key = ECKey.generate_key(str(size))
        else:
            key = OKPKey.generate_key("Ed25519")
        kid = self._next_kid()
        self._keys.append((kid, key))
        return kid

    def drop_old_keys(self) -> None:
        """Stop publishing every key but the current one (a revocation of the old keys)."""
        del self._keys[:-1]

    @property
    def kid(self) -> str:
        """The ``kid`` of the current signing key."""
        return self._keys[-1][0]

    def jwks(self) -> dict[str, Any]:
        """The public key set (never any private part); empty for a shared-secret issuer."""
        if self.secret is not None:
            return {"keys": []}
        keys = []
        for kid, key in self._keys:
            jwk = key.as_dict(private=False)
            jwk.update({"kid": kid, "use": self._use})
            if self._use == "sig":
                jwk["alg"] = self.alg
            keys.append(jwk)
        return {"keys": keys}

    def private_jwks(self) -> dict[str, Any]:
        """The key set *with* private parts (to check that verifiers refuse it)."""
        return {"keys": [dict(key.as_dict(private=True), kid=kid) for kid, key in self._keys]}

    def public_key_bytes(self) -> bytes:
        """The current public key in PEM (for algorithm-confusion tests)."""
        key = self._keys[-1][1]
        return bytes(key.as_pem(private=False))

    def sign(self, header: dict[str, Any], claims: dict[str, Any], *, key: Any = None) -> str:
        """Sign ``claims`` with exactly ``header`` (which must name ``alg``): for hostile tokens."""

        alg = header["alg"]
        if key is None:
            key = self._keys[-1][1]
        elif isinstance(key, bytes):
            key = OctKey.import_key(key)
        payload = json.dumps(claims, separators=(",", ":"))
        # Hostile tokens may carry any header: let the signing side accept every name given.
        extra = {name: HeaderParameter("test", lambda _v: None) for name in header if name not in JWS_HEADER_REGISTRY}
        return jws.serialize_compact(header, payload, key, registry=OneAlgorithm(alg, extra))

    def _claims(
        self, subject: str, audience: str | list[str] | None, ttl: float | None, claims: dict[str, Any] | None
    ) -> dict[str, Any]:
        now = int(self.clock())
        exp = now + int(self.ttl if ttl is None else ttl)
        body: dict[str, Any] = {
            "sub": subject,
            "aud": self.audience if audience is None else audience,
            # an already expired token was issued a minute before it expired, never after
            "iat": now if exp > now else exp - 60,
            "exp": exp,
            "jti": secrets.token_hex(8),
        }
        body.update(claims or {})
        return {k: v for k, v in body.items() if v is not None}

    def _header(self, header: dict[str, Any] | None) -> dict[str, Any]:
        base: dict[str, Any] = {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        base.update(header or {})
        return {k: v for k, v in base.items() if v is not None}

    def _routes(self) -> list[Route]:
        return [Route("/jwks.json", self._serve_jwks)]

    async def _serve_jwks(self, request: Request) -> JSONResponse:
        self.requests.append(request.url.path)
        if not self.available:
            return JSONResponse({"error": "unavailable"}, status_code=503)
        return JSONResponse(self.jwks())

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve the public keys over HTTP on 127.0.0.1 (``/jwks.json``) and yield the base URL."""
        async with serve_http(Starlette(routes=self._routes())) as base:
            self.base_url = base
            try:
                yield base
            finally:
                self.base_url = None


class IdentityIssuer(_Minter):
    """An OIDC-style issuer that mints workload identity tokens for tests.

    Keys live in memory; :meth:`serve` publishes the JWKS (``/jwks.json``) and a discovery
    document (``/.well-known/openid-configuration``) on 127.0.0.1. A principal in any tenant
    is one line::

        issuer = IdentityIssuer()
        token = issuer.token("agent-7", tenant="beta")

    Args:
        issuer: the issuer URL; ``None``: the base URL :meth:`serve` yields (for discovery).
        tenant_claim: the claim carrying the tenant.
        options: ``audience`` (the audience tokens are minted for by default,
            ``mcp://test-server``), ``alg`` (RS/PS/ES, ``EdDSA``/``Ed25519``, or ``HS256`` for a
            shared secret; ``ES256``), ``ttl`` (default token lifetime in seconds, 300),
            ``clock`` (the time source).
    """

    def __init__(
        self,
        issuer: str | None = "https://issuer.test",
        *,
        tenant_claim: str = "tenant",
        **options: Unpack[MintOptions],
    ) -> None:
        super().__init__(**options)
        self._issuer = issuer
        self.tenant_claim = tenant_claim

    def __repr__(self) -> str:
        return f"IdentityIssuer({self._issuer!r}, alg={self.alg!r})"

    @property
    def issuer(self) -> str:
        """The issuer URL (``iss``)."""
        issuer = self._issuer if self._issuer is not None else self.base_url
        if issuer is None:
            raise RuntimeError("this issuer takes its URL from serve(): mint tokens inside `async with issuer.serve()`")
        return issuer

    def token(
        self,
        subject: str = "agent",
        *,
        tenant: str | None = "acme",
        audience: str | list[str] | None = None,
        ttl: float | None = None,
        act: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        """Mint an identity token.

        Args:
            subject: ``sub``.
            tenant: the tenant claim (``None``: no tenant claim).
            audience: ``aud`` (default: the issuer's audience).
            ttl: lifetime in seconds (negative: already expired).
            act: an RFC 8693 ``act`` claim (who the workload acts for).
            claims: further claims, overriding the defaults (a ``None`` value removes one).
            header: header overrides (a ``None`` value removes one).
        """
        body = {"iss": self.issuer, **self._claims(subject, audience, ttl, None)}
        if tenant is not None:
            body[self.tenant_claim] = tenant
        if act is not None:
            body["act"] = act
        body.update(claims or {})
        return self.sign(self._header(header), {k: v for k, v in body.items() if v is not None})

    def principal(self, subject: str = "agent", *, tenant: str = "acme") -> Principal:
        """The principal a token of :meth:`token` verifies as (claims aside)."""
        method = "shared-secret" if self.secret is not None else "jwt"
        return Principal(issuer=self.issuer, subject=subject, tenant=tenant, auth_method=method)

    def keys(self) -> StaticKeys:
        """The issuer's keys as inline configuration (``StaticKeys``)."""
        if self.secret is not None:
            return StaticKeys.shared_secret(self.secret, alg=self.alg, kid=self.kid)
        return StaticKeys(self.jwks())

    def config(self, **overrides: Any) -> OIDCTrust:
        """An ``OIDCTrust`` accepting this issuer's tokens (inline keys unless ``keys=`` is given)."""
        options: dict[str, Any] = {
            "audience": self.audience,
            "algorithms": (self.alg,),
            "tenant_claim": self.tenant_claim,
        }
        options.update(overrides)
        if "keys" not in options:
            options["keys"] = self.keys()
        return OIDCTrust(self.issuer, **options)

    def verifier(self, **overrides: Any) -> IdentityVerifier:
        """An ``IdentityVerifier`` for this issuer alone (``config`` overrides as keywords)."""
        clock = overrides.pop("clock", self.clock)
        return IdentityVerifier(self.config(**overrides), clock=clock)

    def _routes(self) -> list[Route]:
        return [*super()._routes(), Route("/.well-known/openid-configuration", self._serve_discovery)]

    async def _serve_discovery(self, request: Request) -> JSONResponse:
        self.requests.append(request.url.path)
        if not self.available:
            return JSONResponse({"error": "unavailable"}, status_code=503)
        return JSONResponse({"issuer": self.issuer, "jwks_uri": f"{self.base_url}/jwks.json"})


class SpiffeIssuer(_Minter):
    """A SPIFFE trust domain authority that mints JWT-SVIDs for tests.

    :meth:`serve` publishes the trust domain's JWT bundle (a JWKS, keys with
    ``use: jwt-svid``) at ``/jwks.json`` on 127.0.0.1::

        spire = SpiffeIssuer("example.org")
        svid = spire.svid("/tenant/acme/agent")

    Args:
        trust_domain: the trust domain name.
        options: as for :class:`IdentityIssuer` (``alg``: an RS/ES/PS algorithm).
    """

    _use = "jwt-svid"

    def __init__(self, trust_domain: str = "example.org", **options: Unpack[MintOptions]) -> None:
        super().__init__(**options)
        self.trust_domain = trust_domain

    def __repr__(self) -> str:
        return f"SpiffeIssuer({self.trust_domain!r}, alg={self.alg!r})"

    def spiffe_id(self, path: str) -> str:
        """The SPIFFE ID of ``path`` in this trust domain (a full ID is returned as is)."""
        return path if path.startswith("spiffe://") else f"spiffe://{self.trust_domain}/{path.lstrip('/')}"

    def svid(
        self,
        path: str = "/workload",
        *,
        audience: str | list[str] | None = None,
        ttl: float | None = None,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        """Mint a JWT-SVID for ``path`` (or a full SPIFFE ID)."""
        body = self._claims(self.spiffe_id(path), audience, ttl, claims)
        return self.sign(self._header(header), body)

    def bundle(self) -> dict[str, Any]:
        """The trust domain's JWT bundle (public keys, ``use: jwt-svid``)."""
        return self.jwks()

    def keys(self) -> StaticKeys:
        """The bundle as inline configuration (``StaticKeys``)."""
        return StaticKeys(self.bundle())

    def config(self, **overrides: Any) -> SpiffeTrustDomain:
        """A ``SpiffeTrustDomain`` accepting this authority's SVIDs (inline bundle unless ``bundle=``)."""
        options: dict[str, Any] = {"audience": self.audience, "algorithms": (self.alg,)}
        options.update(overrides)
        if "bundle" not in options:
            options["bundle"] = self.keys()
        return SpiffeTrustDomain(self.trust_domain, **options)
