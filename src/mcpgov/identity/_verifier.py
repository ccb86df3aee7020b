"""Identity token verification: OIDC/JWT issuers and SPIFFE JWT-SVID trust domains.

Every check that can be made before cryptography is made first (size, structure, header
rules); then the signature with the one key the token may use; then the claims. Verified
tokens are remembered by a hash of the token (never by subject), for no longer than their
``exp`` and only while the key that verified them is still current, so a repeated token costs
no second signature check.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from joserfc.errors import JoseError
from joserfc.jws import CompactSignature, extract_compact, validate_compact
from joserfc.jwt import JWTClaimsRegistry

from mcpgov._errors import ConfigurationError, IdentityError
from mcpgov._lru import LRU
from mcpgov._principal import Actor, Principal
from mcpgov._shared import shared_claims, shared_text
from mcpgov._tokenjson import TokenJSONError, decode_object, decode_segment
from mcpgov._types import Clock
from mcpgov._validate import is_number, is_positive_number
from mcpgov.identity._keys import MAX_KID_CHARS, BoundKey, KeySource, StaticKeys, canonical_alg
from mcpgov.identity._spiffe import JWT_SVID_ALGORITHMS, SpiffeId, SpiffeIdError, SpiffeIdPattern

__all__ = [
    "AUTH_JWT",
    "AUTH_SHARED_SECRET",
    "AUTH_SPIFFE",
    "IdentityVerifier",
    "OIDCTrust",
    "SpiffeTrustDomain",
    "VerifiedIdentity",
]

AUTH_JWT = "jwt"
"""Authentication method of a JWT from an OIDC/JWT issuer signed with an asymmetric key."""
AUTH_SPIFFE = "spiffe-jwt-svid"
"""Authentication method of a SPIFFE JWT-SVID."""
AUTH_SHARED_SECRET = "shared-secret"  # noqa: S105 - the name of a method, not a secret
"""Authentication method of a JWT signed with an HMAC shared secret."""

MAX_LEEWAY = 300.0
DEFAULT_MAX_TTL = 86400.0
"""The longest identity token lifetime an issuer accepts unless configured otherwise (24 hours)."""
MAX_ACTOR_DEPTH = 8
DEFAULT_MAX_TOKEN_BYTES = 8192
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "b64")
_ACCEPTED_HEADERS = frozenset({"alg", "kid", "typ", "x5t", "x5t#S256"})
_HMAC = frozenset({"HS256", "HS384", "HS512"})
_DEFAULT_TYP = ("JWT",)
_CREDENTIAL_TYP = "mcpgov-credential+jwt"
"""The ``typ`` of mcpgov's per-task credentials: a token of this type is never an identity."""
_NUMERIC_DATES = ("exp", "nbf", "iat")


def _normalise_typ(value: str) -> str:
    value = value.lower()
    return value[len("application/") :] if value.startswith("application/") else value


def _check_leeway(leeway: float) -> float:
    if not isinstance(leeway, int | float) or not 0 <= leeway <= MAX_LEEWAY:
        raise ConfigurationError(f"leeway must be between 0 and {MAX_LEEWAY:.0f} seconds")
    return float(leeway)


def _check_max_ttl(max_ttl: float) -> float:
    if not is_positive_number(max_ttl) or max_ttl < 1:
        raise ConfigurationError(f"max_ttl must be a finite number of seconds of at least 1, got {max_ttl!r}")
    return float(max_ttl)


def _check_audience(audience: str) -> str:
    if not isinstance(audience, str) or not audience or audience != audience.strip():
        raise ConfigurationError("audience must be a non-empty string without surrounding spaces")
    return audience


def _check_tenant(tenant_claim: str | None, tenant: str | None) -> None:
    if tenant_claim is not None and tenant is not None:
        raise ConfigurationError("give tenant_claim= or a fixed tenant=, not both")
    if tenant is not None and _TENANT.fullmatch(tenant) is None:
        raise ConfigurationError(f"tenant {tenant!r} is not a valid tenant name")


@dataclass(frozen=True)
class OIDCTrust:
    """An OIDC/JWT issuer whose tokens identify workloads.

    Args:
        issuer: the issuer URL, compared exactly with the ``iss`` claim.
        audience: this server's audience; a token's ``aud`` must be exactly it (one audience,
            unless ``allow_multiple_audiences``).
        keys: where the issuer's keys come from: :class:`~mcpgov.identity.RemoteKeys` (a JWKS
            URL or discovery), :class:`~mcpgov.identity.StaticKeys` (inline JWKS, or
            ``StaticKeys.shared_secret(...)`` for HMAC).
        algorithms: the algorithms this issuer may use (each key is bound to one of them).
        leeway: clock skew tolerated on ``exp``/``nbf``/``iat``, at most 300 seconds.
        required_claims: claims that must be present (beyond ``iss``, ``sub``, ``aud``, ``exp``).
        typ: accepted ``typ`` header values (an absent ``typ`` is accepted only if ``None`` is
            listed); compared case-insensitively, ``application/`` prefix ignored.
        tenant_claim: the claim naming the caller's tenant (missing or malformed: refused).
        tenant: a fixed tenant for every principal of this issuer (instead of a claim).
        allow_multiple_audiences: accept tokens whose ``aud`` lists other audiences too.
        default_rsa_alg: the algorithm an RSA key without ``alg`` is bound to (``None``: skip
            such keys).
        max_ttl: the longest lifetime a token may have, in seconds (24 hours): ``exp - iat``,
            or, for a token without ``iat``, what is left of it (``exp - now``) beyond the
            leeway. A leaked token stays usable no longer than this.

    Raises:
        ConfigurationError: invalid settings (``none`` or HMAC with asymmetric keys, no
            algorithms, excessive leeway...).
    """

    issuer: str
    audience: str
    keys: KeySource
    algorithms: Sequence[str] = ("RS256", "ES256", "PS256", "EdDSA", "Ed25519")
    leeway: float = 30.0
    required_claims: Sequence[str] = ()
    typ: Sequence[str | None] = (None, "JWT")
    tenant_claim: str | None = None
    tenant: str | None = None
    allow_multiple_audiences: bool = False
    default_rsa_alg: str | None = "RS256"
    max_ttl: float = DEFAULT_MAX_TTL

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ConfigurationError("issuer must be a non-empty string")
        if self.issuer.startswith("spiffe://"):
            raise ConfigurationError("a SPIFFE trust domain is configured with SpiffeTrustDomain")
        _check_audience(self.audience)
        _check_leeway(self.leeway)
        object.__setattr__(self, "max_ttl", _check_max_ttl(self.max_ttl))
        _check_tenant(self.tenant_claim, self.tenant)
        if not isinstance(self.keys, KeySource):
            raise ConfigurationError("keys must be a StaticKeys or RemoteKeys")
        algorithms = tuple(self.algorithms)
        if not algorithms:
            raise ConfigurationError("an issuer needs at least one algorithm")
        if any(not isinstance(a, str) or a.lower() == "none" for a in algorithms):
            raise ConfigurationError("algorithm 'none' is never accepted")
        if _HMAC.intersection(algorithms) and not isinstance(self.keys, StaticKeys):
            raise ConfigurationError("HMAC algorithms need a shared secret (StaticKeys.shared_secret), never a JWKS")
        if _HMAC.intersection(algorithms) and not _HMAC.issuperset(algorithms):
            # A token's auth_method (what an AcceptPolicy judges) is the issuer's: one issuer
            # verifying both shared-secret and signed tokens could not tell them apart.
            raise ConfigurationError(
                "an issuer takes either HMAC (shared secret) or public-key algorithms, not both: configure two issuers"
            )
        object.__setattr__(self, "algorithms", algorithms)
        typ = tuple(self.typ)
        if any(t is not None and (not isinstance(t, str) or _normalise_typ(t) == _CREDENTIAL_TYP) for t in typ):
            raise ConfigurationError(
                f"typ lists strings and None only, never {_CREDENTIAL_TYP!r}: a credential is not an identity"
            )
        object.__setattr__(self, "typ", typ)
        object.__setattr__(self, "required_claims", tuple(self.required_claims))
        self.keys.configure(uses=("sig",), default_rsa_alg=self.default_rsa_alg)


@dataclass(frozen=True)
class SpiffeTrustDomain:
    """A SPIFFE trust domain whose JWT-SVIDs identify workloads.

    The JWT-SVID rules apply: RS/ES/PS algorithms only, ``aud`` and ``exp`` required, ``sub`` a
    SPIFFE ID in this trust domain, ``typ`` absent, ``JWT`` or ``JOSE``. Only bundle keys with
    ``use: jwt-svid`` verify SVIDs: an ``x509-svid`` key, or one without ``use`` (which the
    SPIFFE bundle format requires), verifies nothing.

    Args:
        trust_domain: the trust domain name (``example.org``).
        audience: this server's audience (exact match, one audience unless
            ``allow_multiple_audiences``).
        bundle: the trust domain's JWT bundle: :class:`~mcpgov.identity.StaticKeys` or
            :class:`~mcpgov.identity.RemoteKeys` (a bundle endpoint serving a JWKS).
        algorithms: allowed algorithms, a subset of the JWT-SVID ones.
        leeway: clock skew tolerated, at most 300 seconds.
        workloads: SPIFFE ID patterns a workload must match (any); empty: every ID of the
            trust domain.
        tenant_pattern: a pattern with a ``{tenant}`` capture: the tenant is taken from the path
            (an ID it does not match is refused).
        tenant_claim: a claim naming the tenant (instead of the path).
        tenant: a fixed tenant for every workload of this trust domain.
        allow_multiple_audiences: accept ``aud`` listing other audiences too.
        max_ttl: the longest lifetime an SVID may have, in seconds (24 hours): ``exp - iat``,
            or, for an SVID without ``iat``, what is left of it (``exp - now``) beyond the leeway.

    Raises:
        ConfigurationError: invalid settings.
    """

    trust_domain: str
    audience: str
    bundle: KeySource
    algorithms: Sequence[str] = ("ES256", "RS256", "PS256", "ES384", "RS384", "PS384")
    leeway: float = 30.0
    workloads: Sequence[str | SpiffeIdPattern] = ()
    tenant_pattern: str | SpiffeIdPattern | None = None
    tenant_claim: str | None = None
    tenant: str | None = None
    allow_multiple_audiences: bool = False
    max_ttl: float = DEFAULT_MAX_TTL
    _patterns: tuple[SpiffeIdPattern, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            parsed = SpiffeId.parse(f"spiffe://{self.trust_domain}")
        except SpiffeIdError as exc:
            raise ConfigurationError(f"trust domain {self.trust_domain!r}: {exc}") from None
        if parsed.path:
            raise ConfigurationError("a trust domain has no path")
        _check_audience(self.audience)
        _check_leeway(self.leeway)
        object.__setattr__(self, "max_ttl", _check_max_ttl(self.max_ttl))
        if not isinstance(self.bundle, KeySource):
            raise ConfigurationError("bundle must be a StaticKeys or RemoteKeys")
        algorithms = tuple(self.algorithms)
        bad = [a for a in algorithms if a not in JWT_SVID_ALGORITHMS]
        if not algorithms or bad:
            raise ConfigurationError(f"JWT-SVIDs use RS/ES/PS algorithms only, got {bad or 'none'}")
        object.__setattr__(self, "algorithms", algorithms)
        patterns = tuple(p if isinstance(p, SpiffeIdPattern) else SpiffeIdPattern(p) for p in self.workloads)
        tenant_pattern = self.tenant_pattern
        if isinstance(tenant_pattern, str):
            tenant_pattern = SpiffeIdPattern(tenant_pattern)
        sources = sum(x is not None for x in (tenant_pattern, self.tenant_claim, self.tenant))
        if sources > 1:
            raise ConfigurationError("give one of tenant_pattern=, tenant_claim= or tenant=")
        if self.tenant is not None and _TENANT.fullmatch(self.tenant) is None:
            raise ConfigurationError(f"tenant {self.tenant!r} is not a valid tenant name")
        for p in (*patterns, *([tenant_pattern] if tenant_pattern is not None else [])):
            if p.trust_domain != self.trust_domain:
                raise ConfigurationError(f"pattern {p.pattern!r} is outside trust domain {self.trust_domain!r}")
        if tenant_pattern is not None and "tenant" not in tenant_pattern.names:
            raise ConfigurationError("tenant_pattern needs a {tenant} segment")
        object.__setattr__(self, "tenant_pattern", tenant_pattern)
        object.__setattr__(self, "_patterns", patterns)
        # SPIFFE bundle keys must say what they are for: only "jwt-svid" keys verify JWT-SVIDs.
        self.bundle.configure(uses=("jwt-svid",), default_rsa_alg="RS256", require_use=True)

    @property
    def issuer(self) -> str:
        """The principal issuer of this trust domain's workloads: ``spiffe://<trust-domain>``."""
        return f"spiffe://{self.trust_domain}"


@dataclass(slots=True)
class VerifiedIdentity:
    """The result of verifying one identity token (what the verified-token cache holds).

    Attributes:
        principal: the verified principal.
        expires_at: the token's ``exp``.
        key: the key that verified it.
        source: where that key came from.
        token_id: the token's ``jti``, when it has one (recorded in audit instead of the token).
        announced: whether the identity middleware has already recorded this token.
        leeway: the clock skew its issuer tolerates on ``exp`` (seconds).
    """

    principal: Principal
    expires_at: float
    key: BoundKey = field(repr=False)
    source: KeySource = field(repr=False)
    token_id: str | None = None
    announced: bool = False
    leeway: float = field(default=0.0, repr=False)

    def expired(self, now: float) -> bool:
        """Whether the token is no longer accepted at ``now`` (its ``exp`` plus the leeway has passed)."""
        return self.expires_at + self.leeway <= now

    @property
    def static_key(self) -> bool:
        """Whether a static key (inline JWKS or shared secret) verified the token."""
        return self.key.static


class _Issuer:
    """Compiled per-issuer verification state."""

    __slots__ = ("algorithms", "auth_method", "claims", "config", "issuer", "keys", "spiffe", "typ")

    def __init__(self, config: OIDCTrust | SpiffeTrustDomain, clock: Clock) -> None:
        self.config = config
        self.spiffe = isinstance(config, SpiffeTrustDomain)
        self.issuer = config.issuer
        self.algorithms = frozenset(config.algorithms)
        self.keys: KeySource = config.bundle if isinstance(config, SpiffeTrustDomain) else config.keys
        options: dict[str, Any] = {"sub": {"essential": True}, "exp": {"essential": True}}
        if isinstance(config, OIDCTrust):
            options["iss"] = {"essential": True, "value": config.issuer}
            for name in config.required_claims:
                options.setdefault(name, {"essential": True})
            self.typ: frozenset[str | None] = frozenset(
                _normalise_typ(t) if t is not None else None for t in config.typ
            )
            self.auth_method = AUTH_SHARED_SECRET if _HMAC.issuperset(self.algorithms) else AUTH_JWT
        else:
            self.typ = frozenset({None, "jwt", "jose"})
            self.auth_method = AUTH_SPIFFE
        leeway = math.ceil(config.leeway)
        self.claims = JWTClaimsRegistry(now=lambda: int(clock()), leeway=leeway, **options)


class IdentityVerifier:
    """Verifies workload identity tokens from configured OIDC issuers and SPIFFE trust domains.

    Example::

        verifier = IdentityVerifier(
            OIDCTrust("https://login.example.com", audience="https://mcp.example.com",
                       keys=RemoteKeys(discovery="https://login.example.com"), tenant_claim="tenant"),
            SpiffeTrustDomain("prod.example.com", audience="https://mcp.example.com",
                              bundle=RemoteKeys("https://spire.example.com/bundle"),
                              tenant_pattern="spiffe://prod.example.com/tenant/{tenant}/**"),
        )
        principal = await verifier.verify(token)

    A token is routed by its (unverified) ``iss`` to a configured OIDC issuer or, when ``sub`` is a
    SPIFFE ID of a configured trust domain, to that trust domain; then verified only with that
    issuer's keys and rules.

    Args:
        issuers: the accepted issuers and trust domains.
        max_token_bytes: longer tokens are refused before any decoding.
        cache_size: how many verified tokens to remember (0: none).
        cache_ttl: the longest a verified token is remembered (never past its ``exp``).
        clock: the time source (seconds since the epoch).

    Raises:
        ConfigurationError: no issuers, or two configurations for one issuer.
    """

    def __init__(
        self,
        *issuers: OIDCTrust | SpiffeTrustDomain,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        cache_size: int = 10_000,
        cache_ttl: float = 300.0,
        clock: Clock = time.time,
    ) -> None:
        if not issuers:
            raise ConfigurationError("an IdentityVerifier needs at least one issuer or trust domain")
        if not isinstance(max_token_bytes, int) or not 256 <= max_token_bytes <= 65536:
            raise ConfigurationError("max_token_bytes must be between 256 and 65536")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigurationError("cache_size must be a non-negative integer")
        if not isinstance(cache_ttl, int | float) or not cache_ttl > 0:
            raise ConfigurationError("cache_ttl must be positive")
        self._clock = clock
        self._oidc: dict[str, _Issuer] = {}
        self._spiffe: dict[str, _Issuer] = {}
        for config in issuers:
            if not isinstance(config, OIDCTrust | SpiffeTrustDomain):
                raise ConfigurationError(f"unsupported issuer configuration {type(config).__name__}")
            compiled = _Issuer(config, clock)
            table = self._spiffe if compiled.spiffe else self._oidc
            name = config.trust_domain if isinstance(config, SpiffeTrustDomain) else config.issuer
            if name in table:
                raise ConfigurationError(f"{name!r} is configured twice")
            table[name] = compiled
        self.max_token_bytes = max_token_bytes
        self.cache_ttl = float(cache_ttl)
        # token digest -> (remembered until, verified): a plain dict in recency order, each
        # entry valid while the clock is before its time (the token's exp, at most cache_ttl).
        self._cache: LRU[bytes, tuple[float, VerifiedIdentity]] | None = LRU(cache_size) if cache_size else None
        self.signature_checks = 0
        """How many signatures were checked (a repeated token adds none)."""

    def __repr__(self) -> str:
        return f"IdentityVerifier(issuers={self.issuers!r})"

    @property
    def issuers(self) -> tuple[str, ...]:
        """The principal issuers this verifier accepts (OIDC issuer URLs, ``spiffe://`` trust domains)."""
        return (*self._oidc, *(i.issuer for i in self._spiffe.values()))

    def _remembered(self, digest: bytes) -> VerifiedIdentity | None:
        """The verified identity of the token with ``digest``, while it may still be remembered."""
        cache = self._cache
        if cache is None:
            return None
        hit = cache.get(digest)
        if hit is None:
            return None
        if self._clock() < hit[0]:
            return hit[1]
        cache.pop(digest)
        return None

    def now(self) -> float:
        """The verifier's clock: seconds since the epoch."""
        return self._clock()

    def forget(self) -> None:
        """Forget every remembered verified token (e.g. after revoking a key)."""
        if self._cache is not None:
            self._cache.clear()

    async def verify(self, token: str) -> Principal:
        """Verify ``token`` and return its principal.

        Raises:
            IdentityError: the token is missing, malformed, oversized, hostile, expired, for
                another audience or issuer, or cannot be verified; ``reason`` says which.
        """
        return (await self.verify_identity(token)).principal

    async def verify_identity(self, token: str) -> VerifiedIdentity:
        """Like :meth:`verify`, returning the full :class:`VerifiedIdentity`."""
        digest = self._precheck(token)
        hit = self._remembered(digest)
        if hit is not None:
            if await hit.source.holds(hit.key):
                return hit
            if self._cache is not None:
                self._cache.pop(digest)
        obj, header, claims, issuer = self._decode(token)
        key = await issuer.keys.key(header.get("kid"), header["alg"])
        return self._finish(digest, obj, claims, issuer, key)

    def verify_cached(self, token: str) -> VerifiedIdentity:
        """Verify synchronously with already-fetched keys only (no network).

        For synchronous callers such as the SDK's ``requestState`` principal binding.

        Raises:
            IdentityError: as :meth:`verify`, or the keys are not fetched yet.
        """
        digest = self._precheck(token)
        hit = self._remembered(digest)
        if hit is not None:
            if hit.source.holds_cached(hit.key):
                return hit
            if self._cache is not None:
                self._cache.pop(digest)  # its key was rotated out or has gone stale: verified again
        obj, header, claims, issuer = self._decode(token)
        key = issuer.keys.key_cached(header.get("kid"), header["alg"])
        return self._finish(digest, obj, claims, issuer, key)

    def _precheck(self, token: str) -> bytes:
        if not isinstance(token, str) or not token:
            raise IdentityError("no identity token", reason="identity_missing")
        if len(token) > self.max_token_bytes:
            raise IdentityError(f"identity token longer than {self.max_token_bytes} bytes", reason="token_too_large")
        if not token.isascii() or token.count(".") != 2:
            raise IdentityError("identity token is not a compact JWS", reason="malformed")
        return hashlib.sha256(token.encode("ascii")).digest()

    def _decode(self, token: str) -> tuple[CompactSignature, Mapping[str, Any], dict[str, Any], _Issuer]:
        try:
            obj = extract_compact(token.encode("ascii"))
        except JoseError:
            raise IdentityError("identity token cannot be decoded", reason="malformed") from None
        except (ValueError, TypeError, RecursionError):
            raise IdentityError("identity token cannot be decoded", reason="malformed") from None
        try:
            decode_segment(obj.segments["header"])
        except TokenJSONError as exc:
            raise IdentityError(f"identity token header is refused: {exc}", reason="malformed") from None
        header = obj.protected
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.strip().lower() == "none":
            raise IdentityError("unsigned identity token (alg none)", reason="alg_none")
        for name in _FORBIDDEN_HEADERS:
            if name in header:
                raise IdentityError(f"identity token carries a {name!r} header", reason="forbidden_header")
        if "crit" in header:
            raise IdentityError("identity token has critical header extensions", reason="crit_unsupported")
        if not _ACCEPTED_HEADERS.issuperset(header):
            # "cty" announces a nested token (its payload is another JWT, not claims), "zip" a
            # compressed one; neither is an identity token, and nothing else is known to be safe.
            raise IdentityError(
                "identity token carries a header parameter that is not accepted "
                f"(accepted: {', '.join(sorted(_ACCEPTED_HEADERS))})",
                reason="forbidden_header",
            )
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > MAX_KID_CHARS):
            raise IdentityError("identity token has an invalid key id", reason="kid_invalid")
        if not obj.segments["signature"]:
            raise IdentityError("identity token has an empty signature", reason="alg_none")
        try:
            claims = decode_object(obj.payload)
        except TokenJSONError as exc:
            raise IdentityError(f"identity token payload is refused: {exc}", reason="malformed") from None
        issuer = self._route(claims)
        if alg not in issuer.algorithms:
            # The token's own values are not echoed: nothing in an unverified token reaches audit.
            raise IdentityError(f"the token's algorithm is not allowed for {issuer.issuer}", reason="alg_not_allowed")
        typ = header.get("typ")
        if typ is not None and not isinstance(typ, str):
            raise IdentityError("identity token has an invalid typ", reason="wrong_typ")
        typ = _normalise_typ(typ) if typ is not None else None
        if typ == _CREDENTIAL_TYP:
            raise IdentityError("a credential was presented as an identity token", reason="wrong_typ")
        if typ not in issuer.typ:
            raise IdentityError("identity token typ is not accepted", reason="wrong_typ")
        return obj, header, claims, issuer

    def _route(self, claims: Mapping[str, Any]) -> _Issuer:
        iss = claims.get("iss")
        if isinstance(iss, str):
            found = self._oidc.get(iss)
            if found is not None:
                return found
        sub = claims.get("sub")
        if isinstance(sub, str) and sub.startswith("spiffe://"):
            trust_domain = sub[len("spiffe://") :].partition("/")[0]
            found = self._spiffe.get(trust_domain)
            if found is not None:
                return found
        raise IdentityError("identity token from an unknown issuer", reason="unknown_issuer")

    def _finish(
        self,
        digest: bytes,
        obj: CompactSignature,
        claims: dict[str, Any],
        issuer: _Issuer,
        key: BoundKey,
    ) -> VerifiedIdentity:
        self.signature_checks += 1
        try:
            valid = validate_compact(obj, key.key, registry=key.registry)
        except JoseError:
            valid = False
        if not valid:
            raise IdentityError("identity token signature does not verify", reason="bad_signature")
        for name in _NUMERIC_DATES:
            if name in claims and not is_number(claims[name]):
                # A JSON integer beyond the float range passes joserfc's int check, then cannot
                # be compared with the clock: refused here, whatever its sign.
                raise IdentityError(f"identity token claim {name!r} is not a finite number", reason="invalid_claim")
        try:
            issuer.claims.validate(claims)
        except JoseError as exc:
            raise IdentityError(
                f"identity token claims refused ({exc.error})", reason=_claims_reason(exc, claims)
            ) from None
        config = issuer.config
        exp = claims["exp"]
        now = self._clock()
        if float(exp) + config.leeway <= now:  # VerifiedIdentity.expired: the same comparison
            # RFC 7519: accepted only before exp. The claims registry compares whole seconds (and
            # some releases accept the second of exp itself): the clock's own reading decides.
            raise IdentityError("identity token claims refused (expired_token)", reason="expired")
        # The registry also rounds the leeway up to whole seconds for nbf and iat: the exact
        # comparisons, on the same clock reading.
        if "nbf" in claims and float(claims["nbf"]) > now + config.leeway:
            raise IdentityError("identity token is not valid yet", reason="not_yet_valid")
        if "iat" in claims and float(claims["iat"]) > now + config.leeway:
            raise IdentityError("identity token was issued in the future", reason="issued_in_future")
        _check_lifetime(claims, now, config.leeway, config.max_ttl)
        _check_aud(claims.get("aud"), config.audience, config.allow_multiple_audiences)
        principal = self._principal(claims, issuer, config)
        token_id = claims.get("jti")
        verified = VerifiedIdentity(
            principal,
            float(exp),
            key,
            issuer.keys,
            token_id if isinstance(token_id, str) else None,
            leeway=float(config.leeway),
        )
        if self._cache is not None and exp > now:
            self._cache[digest] = (min(float(exp), now + self.cache_ttl), verified)
        return verified

    def _principal(self, claims: dict[str, Any], issuer: _Issuer, config: OIDCTrust | SpiffeTrustDomain) -> Principal:
        claims = shared_claims(claims)  # the principal is cached per token: recurring names and values shared
        sub: str = claims["sub"]
        if not _clean_name(sub):
            raise IdentityError(
                "identity token subject is empty, padded with spaces, or holds control, format or separator characters",
                reason="invalid_claim",
            )
        spiffe_id: SpiffeId | None = None
        if isinstance(config, SpiffeTrustDomain):
            try:
                spiffe_id = SpiffeId.parse(sub)
            except SpiffeIdError as exc:
                raise IdentityError(f"JWT-SVID subject is not a SPIFFE ID: {exc}", reason="invalid_spiffe_id") from None
            if spiffe_id.trust_domain != config.trust_domain or not spiffe_id.path:
                raise IdentityError("JWT-SVID subject is outside the trust domain", reason="invalid_spiffe_id")
            if config._patterns and not any(p.matches(spiffe_id) for p in config._patterns):
                raise IdentityError(f"workload {sub} is not accepted", reason="workload_not_accepted")
        tenant = self._tenant(claims, config, spiffe_id)
        return Principal(
            issuer=issuer.issuer,
            subject=sub,
            tenant=tenant,
            claims=MappingProxyType(claims),
            spiffe_id=shared_text(str(spiffe_id)) if spiffe_id is not None else None,
            actors=_actors(claims.get("act")),
            auth_method=issuer.auth_method,
        )

    @staticmethod
    def _tenant(
        claims: Mapping[str, Any], config: OIDCTrust | SpiffeTrustDomain, spiffe_id: SpiffeId | None
    ) -> str | None:
        if config.tenant is not None:
            return config.tenant
        value: Any = None
        if config.tenant_claim is not None:
            value = claims.get(config.tenant_claim)
        elif isinstance(config, SpiffeTrustDomain) and isinstance(config.tenant_pattern, SpiffeIdPattern):
            assert spiffe_id is not None  # noqa: S101 - a SPIFFE principal always has one here
            captured = config.tenant_pattern.match(spiffe_id)
            if captured is None:
                raise IdentityError("the workload's SPIFFE ID names no tenant", reason="tenant_missing")
            value = captured["tenant"]
        else:
            return None
        if value is None:
            raise IdentityError("the identity names no tenant", reason="tenant_missing")
        if not isinstance(value, str) or _TENANT.fullmatch(value) is None:
            raise IdentityError("the identity's tenant is malformed", reason="tenant_invalid")
        return value


_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp", "Zs"})
"""Control, format (zero-width, bidirectional), surrogate, private-use and separator characters."""


def _clean_name(value: str) -> bool:
    """Whether ``value`` can name a principal or actor: not empty, no leading or trailing space,
    and no character that is invisible, reorders text, or breaks a line (the only separator
    allowed is the ASCII space between words). Such a name would print as another one, or
    escape a glob that was meant to match it exactly."""
    if not value or value != value.strip():
        return False
    if value.isascii():
        return value.isprintable()
    return not any(c != " " and unicodedata.category(c) in _UNSAFE_CATEGORIES for c in value)


def _check_lifetime(claims: Mapping[str, Any], now: float, leeway: float, max_ttl: float) -> None:
    """Refuse a token that would be accepted for longer than ``max_ttl``, or whose dates contradict
    each other. Without ``iat`` its lifetime is unknown: what is left of it counts."""
    exp = float(claims["exp"])
    if "iat" in claims:
        iat = float(claims["iat"])
        if exp <= iat:
            raise IdentityError("identity token expires before it was issued", reason="invalid_claim")
        if exp - iat > max_ttl:
            raise IdentityError(f"identity token lifetime is longer than {max_ttl:g} s", reason="lifetime_too_long")
    if exp - now > max_ttl + leeway:
        raise IdentityError(f"identity token lifetime is longer than {max_ttl:g} s", reason="lifetime_too_long")
    if "nbf" in claims and float(claims["nbf"]) >= exp:
        raise IdentityError("identity token is valid only after it expires", reason="invalid_claim")


def _check_aud(aud: Any, audience: str, allow_multiple: bool) -> None:
    if isinstance(aud, str):
        if aud == audience:
            return
    elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        if audience in aud and (allow_multiple or len(aud) == 1):
            return
        if audience in aud:
            raise IdentityError("identity token is for several audiences", reason="wrong_audience")
    elif aud is None:
        raise IdentityError("identity token has no audience", reason="missing_claim")
    raise IdentityError("identity token is for another audience", reason="wrong_audience")


def _claims_reason(exc: JoseError, claims: Mapping[str, Any]) -> str:
    error = exc.error
    text = str(exc)
    if error == "missing_claim":
        return "missing_claim"
    if error == "expired_token":
        return "expired"
    if "'nbf'" in text or "not yet valid" in text:
        return "not_yet_valid"
    if "'iat'" in text or "in the future" in text:
        return "issued_in_future"
    if "'iss'" in text:
        return "wrong_issuer"
    return "invalid_claim"


def _actors(act: Any) -> tuple[Actor, ...]:
    """The RFC 8693 ``act`` chain, nearest first; malformed or too deep: refused."""
    actors: list[Actor] = []
    while act is not None:
        if len(actors) >= MAX_ACTOR_DEPTH:
            raise IdentityError(f"actor chain deeper than {MAX_ACTOR_DEPTH}", reason="actor_chain_too_deep")
        if not isinstance(act, Mapping) or not isinstance(act.get("sub"), str) or not _clean_name(act["sub"]):
            raise IdentityError("malformed act claim", reason="actor_invalid")
        iss = act.get("iss")
        if iss is not None and (not isinstance(iss, str) or not _clean_name(iss)):
            raise IdentityError("malformed act claim", reason="actor_invalid")
        actors.append(Actor(act["sub"], iss))
        act = act.get("act")
    return tuple(actors)


def accepted_algorithms(issuers: Collection[OIDCTrust | SpiffeTrustDomain]) -> frozenset[str]:
    """Every canonical algorithm the given issuers allow."""
    return frozenset(canonical_alg(a) for i in issuers for a in i.algorithms)
