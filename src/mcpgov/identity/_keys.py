"""Verification keys: each bound to one algorithm, from an inline JWKS, a JWKS URL or OIDC discovery.

Remote key sets are fetched with an async HTTP client (the event loop is never blocked), kept
fresh for ``refresh_interval`` (a cachetools ``TTLCache`` on the injected clock), refreshed at
most once per ``min_refresh_interval`` when a token names an unknown ``kid``, and used past
their freshness only up to ``max_staleness``: after that, verification fails closed. Only the
configured URLs are ever fetched; nothing in a token (``jku``, ``x5u``, ``jwk``) can trigger a
fetch. Key sets holding private key material are refused.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
from cachetools import TTLCache
from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderRegistryDict

from mcpgov._errors import ConfigurationError, IdentityError
from mcpgov._types import Clock
from mcpgov._validate import positive_seconds

__all__ = ["JWKS_MAX_BYTES", "BoundKey", "KeySource", "RemoteKeys", "StaticKeys", "is_loopback"]

logger = logging.getLogger("mcpgov.identity")

JWKS_MAX_BYTES = 256 * 1024
"""The largest JWKS (or discovery document) fetched; a bigger answer is a failed fetch."""

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_CURVE_ALG: Mapping[str, str] = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K"}
_OKP_ALG: Mapping[str, str] = {"Ed25519": "Ed25519", "Ed448": "Ed448"}
_ALIASES: Mapping[str, str] = {"EdDSA": "Ed25519"}  # RFC 9864: "EdDSA" over an Ed25519 key is "Ed25519"
_KEY_TYPES: Mapping[str, type[Key]] = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey, "oct": OctKey}
MIN_RSA_BITS = 2048
MIN_HMAC_BYTES = 32
MAX_KID_CHARS = 256


class KeySetError(IdentityError, ValueError):
    """A key set or key is malformed, unusable, or holds private key material.

    An :class:`~mcpgov.IdentityError`; also a ``ValueError``, as it was before it joined the tree.
    """


class OneAlgorithm(JWSRegistry):
    """A joserfc registry that accepts exactly one algorithm: the one its key is bound to.

    The per-issuer allowlist and the key binding are mcpgov's policy, checked before this is
    used; so it also serves algorithms joserfc merely flags as deprecated names (``EdDSA``).
    """

    def __init__(self, alg: str, header_registry: HeaderRegistryDict | None = None) -> None:
        super().__init__(header_registry=header_registry, algorithms=[alg], strict_check_header=True)
        self._alg = alg

    def get_alg(self, name: str) -> JWSAlgModel:
        if name != self._alg and _ALIASES.get(name) != self._alg:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


class BoundKey:
    """A public verification key bound to exactly one algorithm.

    Attributes:
        kid: the key id, or ``None``.
        alg: the one algorithm this key verifies (canonical name: ``Ed25519`` for EdDSA keys).
        key: the joserfc key.
        registry: the joserfc registry allowing only ``alg``.
        static: whether the key is configured in place (inline JWKS or a shared secret) rather
            than fetched from the issuer.
    """

    __slots__ = ("alg", "key", "kid", "registry", "static")

    def __init__(self, kid: str | None, alg: str, key: Key, *, static: bool) -> None:
        self.kid = kid
        self.alg = alg
        self.key = key
        self.registry = OneAlgorithm(alg)
        self.static = static

    def accepts(self, alg: str) -> bool:
        """Whether a token signed with ``alg`` may be verified by this key."""
        return alg == self.alg or _ALIASES.get(alg) == self.alg

    def __repr__(self) -> str:
        return f"BoundKey(kid={self.kid!r}, alg={self.alg!r})"


def canonical_alg(alg: str) -> str:
    """The canonical name of a JWS algorithm (``EdDSA`` is ``Ed25519``)."""
    return _ALIASES.get(alg, alg)


def bind_jwk(
    jwk: Any,
    *,
    default_rsa_alg: str | None,
    uses: Collection[str],
    static: bool,
    require_use: bool = False,
) -> BoundKey | None:
    """Turn one public JWK into a :class:`BoundKey`.

    Returns ``None`` for a key that is not for signature verification (``use`` not in ``uses``,
    no ``use`` at all when ``require_use``, or ``key_ops`` without ``verify``) or whose
    algorithm cannot be determined.

    Raises:
        KeySetError: the JWK holds private or secret key material, or is not a usable key.
    """
    if not isinstance(jwk, Mapping):
        raise KeySetError("a JWK is an object")
    private = _PRIVATE_MEMBERS.intersection(jwk)
    if private:
        raise KeySetError("the key set holds private or secret key material")
    # A "use" member that is present but not one of our names (null, a list...) is not for us.
    if "use" in jwk:
        use = jwk["use"]
        if not isinstance(use, str) or use not in uses:
            return None
    elif require_use:
        return None
    key_ops = jwk.get("key_ops")
    if key_ops is not None:
        if not isinstance(key_ops, list) or not all(isinstance(op, str) for op in key_ops):
            raise KeySetError("a key's key_ops is a list of strings")
        if "verify" not in key_ops:
            return None  # RFC 7517 4.3: a key whose operations exclude "verify" verifies nothing
    kty = jwk.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        raise KeySetError(f"unsupported key type {kty!r}")
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > MAX_KID_CHARS):
        raise KeySetError("a key id is a non-empty string")
    alg = jwk.get("alg")
    if alg is None:
        if kty == "EC":
            alg = _CURVE_ALG.get(str(jwk.get("crv")))
        elif kty == "OKP":
            alg = _OKP_ALG.get(str(jwk.get("crv")))
        else:
            alg = default_rsa_alg
        if alg is None:
            return None
    if not isinstance(alg, str):
        raise KeySetError("a key's alg is a string")
    alg = canonical_alg(alg)
    model = JWSRegistry.algorithms.get(alg)
    if model is None or alg == "none" or model.key_type != kty:
        raise KeySetError(f"algorithm {alg!r} does not fit a {kty} key")
    try:
        # "use" is checked above; SPIFFE's "jwt-svid" is not a value joserfc knows.
        key = import_key({k: v for k, v in jwk.items() if k not in ("use", "key_ops")})
    except Exception as exc:  # noqa: BLE001 - any import failure means an unusable key; the text is not ours
        raise KeySetError(f"unusable {kty} key ({type(exc).__name__})") from None
    if key.is_private:
        raise KeySetError("the key set holds private key material")
    if isinstance(key, RSAKey) and key.public_key.key_size < MIN_RSA_BITS:
        raise KeySetError(f"RSA keys have at least {MIN_RSA_BITS} bits")
    if isinstance(key, OKPKey) and jwk.get("crv") != alg:
        raise KeySetError(f"algorithm {alg!r} does not fit curve {jwk.get('crv')!r}")
    if isinstance(key, ECKey) and _CURVE_ALG.get(str(jwk.get("crv"))) != alg:
        raise KeySetError(f"algorithm {alg!r} does not fit curve {jwk.get('crv')!r}")
    return BoundKey(kid, alg, key, static=static)


def bind_jwks(
    jwks: Any, *, default_rsa_alg: str | None, uses: Collection[str], static: bool, require_use: bool = False
) -> tuple[BoundKey, ...]:
    """Bind every usable key of a JWKS document (``{"keys": [...]}``).

    Raises:
        KeySetError: the document is malformed, holds private key material or repeats a key id.
    """
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise KeySetError('a JWKS is an object with a "keys" array')
    bound: list[BoundKey] = []
    seen: set[str] = set()
    for jwk in jwks["keys"]:
        key = bind_jwk(jwk, default_rsa_alg=default_rsa_alg, uses=uses, static=static, require_use=require_use)
        if key is None:
            continue
        if key.kid is not None:
            if key.kid in seen:
                raise KeySetError(f"key id {key.kid!r} appears twice")
            seen.add(key.kid)
        bound.append(key)
    return tuple(bound)


def _select(keys: Mapping[str | None, BoundKey], unkeyed: Sequence[BoundKey], kid: str | None, alg: str) -> BoundKey:
    """Pick the key for a token's ``kid``/``alg``. Raises IdentityError; KeyError for an unknown kid."""
    if kid is not None:
        key = keys[kid]  # KeyError: unknown kid
    else:
        candidates = [k for k in unkeyed if k.accepts(alg)] or [k for k in keys.values() if k.accepts(alg)]
        if len(candidates) != 1:
            raise IdentityError("the token names no key id and no single key fits", reason="kid_required")
        key = candidates[0]
    if not key.accepts(alg):
        raise IdentityError(f"key {key.kid!r} is bound to {key.alg}, the token says {alg}", reason="alg_mismatch")
    return key


class KeySource:
    """Where an issuer's verification keys come from. Use :class:`StaticKeys` or :class:`RemoteKeys`."""

    static: bool = False
    uses: frozenset[str] = frozenset({"sig"})
    require_use: bool = False
    default_rsa_alg: str | None = "RS256"
    _configured: tuple[frozenset[str], bool, str | None] | None = None

    def configure(self, *, uses: Collection[str], default_rsa_alg: str | None, require_use: bool = False) -> None:
        """Called by the issuer configuration that owns this source: the key ``use`` values it
        takes, whether a key without ``use`` is skipped, and the RSA default.

        Raises:
            ConfigurationError: the source already serves a configuration with other key rules
                (an OIDC issuer and a SPIFFE trust domain): each needs its own source, or one
                would verify with keys only the other accepts.
        """
        settings = (frozenset(uses), bool(require_use), default_rsa_alg)
        if self._configured is not None and self._configured != settings:
            raise ConfigurationError(
                "this key source already serves an issuer with other key rules: "
                "give each issuer or trust domain its own"
            )
        self._configured = settings
        self.uses, self.require_use, self.default_rsa_alg = settings

    async def key(self, kid: str | None, alg: str) -> BoundKey:
        """The key for a token's ``kid`` and ``alg``, fetching (rate-limited) if needed.

        Raises:
            IdentityError: no such key, the key is bound to another algorithm, or keys are
                unavailable or too stale.
        """
        raise NotImplementedError

    def key_cached(self, kid: str | None, alg: str) -> BoundKey:
        """Like :meth:`key` without any fetch (for synchronous callers)."""
        raise NotImplementedError

    async def holds(self, key: BoundKey) -> bool:
        """Whether ``key`` is still one of this source's current, usable keys."""
        raise NotImplementedError

    def holds_cached(self, key: BoundKey) -> bool:
        """Like :meth:`holds` with the keys already fetched (no network; for synchronous callers).

        A source that cannot tell answers ``False``: the token is then verified again.
        """
        return False

    def describe(self) -> str:
        """A short description for audit details and reprs (no secret)."""
        raise NotImplementedError


class StaticKeys(KeySource):
    """Keys configured in place: an inline public JWKS, or (tests, small setups) HMAC secrets.

    Args:
        jwks: a JWKS document (``{"keys": [...]}``) of public keys.

    Raises:
        ConfigurationError: the JWKS is malformed or holds private or secret key material.
    """

    static = True

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._jwks: Mapping[str, Any] | None = jwks
        self._keys: dict[str | None, BoundKey] = {}
        self._unkeyed: tuple[BoundKey, ...] = ()
        self._bind()

    def _bind(self) -> None:
        if self._jwks is None:
            return
        try:
            keys = bind_jwks(
                self._jwks,
                default_rsa_alg=self.default_rsa_alg,
                uses=self.uses,
                static=True,
                require_use=self.require_use,
            )
        except KeySetError as exc:
            raise ConfigurationError(f"inline key set refused: {exc}") from None
        self._set(keys)

    def _set(self, keys: Sequence[BoundKey]) -> None:
        self._keys = {k.kid: k for k in keys if k.kid is not None}
        self._unkeyed = tuple(k for k in keys if k.kid is None)

    def configure(self, *, uses: Collection[str], default_rsa_alg: str | None, require_use: bool = False) -> None:
        super().configure(uses=uses, default_rsa_alg=default_rsa_alg, require_use=require_use)
        self._bind()

    @classmethod
    def shared_secret(cls, secret: bytes, *, alg: str = "HS256", kid: str | None = None) -> StaticKeys:
        """An HMAC shared secret (``HS256``/``HS384``/``HS512``).

        A shared secret is a static key that every token minter holds: fine for tests, weak for
        production (an accept policy can refuse it with ``static_keys=False``).

        Args:
            secret: at least 32 bytes of secret randomness.
            alg: the HMAC algorithm this secret is bound to.
            kid: the key id tokens name, if any.

        Raises:
            ConfigurationError: the secret is too short or ``alg`` is not an HMAC algorithm.
        """
        if alg not in ("HS256", "HS384", "HS512"):
            raise ConfigurationError(f"a shared secret signs HS256, HS384 or HS512, not {alg!r}")
        if not isinstance(secret, bytes) or len(secret) < MIN_HMAC_BYTES:
            raise ConfigurationError(f"a shared secret is at least {MIN_HMAC_BYTES} bytes")
        source = cls.__new__(cls)
        source._jwks = None
        source._set([BoundKey(kid, alg, OctKey.import_key(secret), static=True)])
        return source

    async def key(self, kid: str | None, alg: str) -> BoundKey:
        return self.key_cached(kid, alg)

    def key_cached(self, kid: str | None, alg: str) -> BoundKey:
        try:
            return _select(self._keys, self._unkeyed, kid, alg)
        except KeyError:
            raise IdentityError("the token names an unknown key id", reason="unknown_kid") from None

    async def holds(self, key: BoundKey) -> bool:
        return True

    def holds_cached(self, key: BoundKey) -> bool:
        return True

    def describe(self) -> str:
        return f"static ({len(self._keys) + len(self._unkeyed)} keys)"

    def __repr__(self) -> str:
        return f"StaticKeys(kids={sorted(k for k in self._keys if k is not None)!r})"


def _check_url(url: str, what: str) -> str:
    """Key URLs are https, or http on a loopback address (local tests and sidecars)."""
    if not isinstance(url, str):
        raise ConfigurationError(f"{what} must be a URL string")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and is_loopback(host):
        return url
    raise ConfigurationError(f"{what} must be an https URL (or http on a loopback address), got {url!r}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _FetchFailed(Exception):
    """A key fetch failed; the message names why (never a token)."""


class RemoteKeys(KeySource):
    """Keys fetched from a JWKS URL, or from the ``jwks_uri`` of an OIDC discovery document.

    Args:
        jwks_url: the JWKS URL (exclusive with ``discovery``).
        discovery: an issuer URL; its ``/.well-known/openid-configuration`` names the JWKS, and
            must name the same issuer.
        refresh_interval: seconds a fetched key set counts as fresh.
        max_staleness: seconds after the last successful fetch after which, if no fresh key set
            could be fetched, verification fails closed.
        min_refresh_interval: the least time between two fetches (an unknown ``kid`` triggers
            at most one fetch per interval).
        timeout: seconds for one fetch.
        http_client: an ``httpx2.AsyncClient`` to fetch with (its owner closes it); by default a
            short-lived client per fetch.
        clock: the time source.

    Raises:
        ConfigurationError: bad URLs or intervals.
    """

    def __init__(
        self,
        jwks_url: str | None = None,
        *,
        discovery: str | None = None,
        refresh_interval: float = 300.0,
        max_staleness: float = 3600.0,
        min_refresh_interval: float = 30.0,
        timeout: float = 5.0,
        http_client: httpx2.AsyncClient | None = None,
        clock: Clock = time.time,
    ) -> None:
        if (jwks_url is None) == (discovery is None):
            raise ConfigurationError("RemoteKeys takes exactly one of jwks_url= or discovery=")
        self.jwks_url = _check_url(jwks_url, "jwks_url") if jwks_url is not None else None
        self.discovery = _check_url(discovery, "discovery") if discovery is not None else None
        self.refresh_interval = positive_seconds("refresh_interval", refresh_interval)
        self.max_staleness = positive_seconds("max_staleness", max_staleness)
        self.min_refresh_interval = positive_seconds("min_refresh_interval", min_refresh_interval)
        self.timeout = positive_seconds("timeout", timeout)
        if max_staleness < refresh_interval:
            raise ConfigurationError("max_staleness cannot be shorter than refresh_interval")
        self._http_client = http_client
        self._clock = clock
        self._fresh: TTLCache[str, tuple[BoundKey, ...]] = TTLCache(maxsize=1, ttl=refresh_interval, timer=clock)
        self._keys: dict[str | None, BoundKey] = {}
        self._unkeyed: tuple[BoundKey, ...] = ()
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._lock = anyio.Lock()
        self.fetches = 0
        """How many fetches were attempted (for tests and metrics)."""
        self.last_error: str | None = None
        """Why the last fetch failed, if it did."""

    def describe(self) -> str:
        return f"jwks {self.jwks_url}" if self.jwks_url else f"discovery {self.discovery}"

    def __repr__(self) -> str:
        target = f"jwks_url={self.jwks_url!r}" if self.jwks_url else f"discovery={self.discovery!r}"
        return f"RemoteKeys({target})"

    def _usable(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at <= self.max_staleness

    async def _ensure(self, *, unknown_kid: bool = False) -> None:
        """Refresh when not fresh (or for an unknown kid), at most once per min_refresh_interval."""
        if not unknown_kid and "keys" in self._fresh:
            return
        async with self._lock:
            now = self._clock()
            if not unknown_kid and "keys" in self._fresh:
                return  # another task refreshed while we waited
            if self._last_attempt is not None and now - self._last_attempt < self.min_refresh_interval:
                return  # rate-limited: use what we have (or fail closed below)
            self._last_attempt = now
            self.fetches += 1
            try:
                keys = await self._fetch()
            except _FetchFailed as exc:
                self.last_error = str(exc)
                logger.warning("key set %s could not be refreshed: %s", self.describe(), exc)
                return
            except Exception as exc:  # noqa: BLE001 - any fetch failure keeps the last good keys
                self.last_error = type(exc).__name__
                logger.warning("key set %s could not be refreshed: %s", self.describe(), type(exc).__name__)
                return
            self.last_error = None
            self._keys = {k.kid: k for k in keys if k.kid is not None}
            self._unkeyed = tuple(k for k in keys if k.kid is None)
            self._fetched_at = self._clock()
            self._fresh["keys"] = keys

    async def _get_json(self, client: httpx2.AsyncClient, url: str) -> Any:
        try:
            with anyio.fail_after(self.timeout):
                async with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
                    if response.status_code != 200:
                        raise _FetchFailed(f"HTTP {response.status_code}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > JWKS_MAX_BYTES:
                            raise _FetchFailed(f"document larger than {JWKS_MAX_BYTES} bytes")
        except TimeoutError:
            raise _FetchFailed("timed out") from None
        except httpx2.HTTPError as exc:
            raise _FetchFailed(type(exc).__name__) from None
        try:
            return json.loads(bytes(body))
        except ValueError:
            raise _FetchFailed("not JSON") from None

    async def _fetch(self) -> tuple[BoundKey, ...]:
        if self._http_client is not None:
            return await self._fetch_with(self._http_client)
        async with httpx2.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            return await self._fetch_with(client)

    async def _fetch_with(self, client: httpx2.AsyncClient) -> tuple[BoundKey, ...]:
        url = self.jwks_url
        if url is None:
            assert self.discovery is not None  # noqa: S101 - exactly one is set, checked at construction
            document = await self._get_json(client, self.discovery.rstrip("/") + "/.well-known/openid-configuration")
            if not isinstance(document, Mapping) or document.get("issuer") != self.discovery:
                raise _FetchFailed("the discovery document names another issuer")
            try:
                url = _check_url(document.get("jwks_uri"), "jwks_uri")  # type: ignore[arg-type]
            except ConfigurationError as exc:
                raise _FetchFailed(exc.detail) from None
        document = await self._get_json(client, url)
        try:
            return bind_jwks(
                document,
                default_rsa_alg=self.default_rsa_alg,
                uses=self.uses,
                static=False,
                require_use=self.require_use,
            )
        except KeySetError as exc:
            raise _FetchFailed(f"key set refused: {exc}") from None

    def _pick(self, kid: str | None, alg: str) -> BoundKey:
        if not self._usable(self._clock()):
            reason = "keys_stale" if self._fetched_at is not None else "keys_unavailable"
            raise IdentityError(f"no usable key set from {self.describe()} ({self.last_error})", reason=reason)
        return _select(self._keys, self._unkeyed, kid, alg)

    async def key(self, kid: str | None, alg: str) -> BoundKey:
        await self._ensure()
        try:
            return self._pick(kid, alg)
        except KeyError:
            pass
        await self._ensure(unknown_kid=True)
        try:
            return self._pick(kid, alg)
        except KeyError:
            raise IdentityError("the token names an unknown key id", reason="unknown_kid") from None

    def key_cached(self, kid: str | None, alg: str) -> BoundKey:
        try:
            return self._pick(kid, alg)
        except KeyError:
            raise IdentityError("the token names an unknown key id", reason="unknown_kid") from None

    async def holds(self, key: BoundKey) -> bool:
        await self._ensure()
        return self.holds_cached(key)

    def holds_cached(self, key: BoundKey) -> bool:
        if not self._usable(self._clock()):
            return False
        if key.kid is not None:
            return self._keys.get(key.kid) is key
        return key in self._unkeyed
