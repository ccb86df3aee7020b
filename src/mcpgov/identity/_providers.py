"""Client side: where a workload's identity token comes from, and the middleware that attaches it."""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import anyio

from mcpgov._chain import CallNext, ChainResult
from mcpgov._context import HTTP_AUTHORIZATION, META_IDENTITY, GovContext
from mcpgov._errors import ConfigurationError, IdentityError
from mcpgov._types import Clock
from mcpgov._validate import positive_seconds
from mcpgov.identity._keys import is_loopback

__all__ = [
    "CallableToken",
    "ClientIdentity",
    "IdentitySource",
    "OAuthClientCredentials",
    "ProjectedTokenFile",
    "StaticToken",
    "TokenFile",
    "as_identity_provider",
]

MAX_TOKEN_FILE_BYTES = 65536
KUBERNETES_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path, not a secret
"""Where Kubernetes mounts a pod's service-account token by default."""

logger = logging.getLogger("mcpgov.identity")


@runtime_checkable
class IdentitySource(Protocol):
    """A source of the workload's current identity token."""

    async def token(self) -> str:
        """The current token.

        Raises:
            IdentityError: no token is available.
        """
        ...

    def current(self) -> str | None:
        """The most recent token without waiting (for HTTP requests outside governed calls)."""
        ...


class StaticToken:
    """A fixed token (short scripts and tests; rotating tokens belong in :class:`TokenFile`).

    Args:
        token: the token.
    """

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or not token.strip():
            raise ConfigurationError("a static identity token is a non-empty string")
        self._token = token.strip()

    def __repr__(self) -> str:
        return "StaticToken([secure])"

    async def token(self) -> str:
        return self._token

    def current(self) -> str | None:
        return self._token


class TokenFile:
    """A token kept in a file and re-read when the file changes.

    This is how SPIFFE helpers and Kubernetes projected service-account tokens deliver rotating
    tokens: the file is replaced before the old token expires. The file's modification time,
    size and inode are checked at most every ``check_interval`` seconds; the token is re-read
    (off the event loop) when they change.

    Args:
        path: the token file.
        check_interval: least seconds between two checks of the file.
        clock: the time source.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, check_interval: float = 1.0, clock: Clock = time.monotonic
    ) -> None:
        if not isinstance(check_interval, int | float) or check_interval < 0:
            raise ConfigurationError("check_interval must be a non-negative number of seconds")
        self.path = Path(path)
        self.check_interval = float(check_interval)
        self._clock = clock
        self._token: str | None = None
        self._file_stamp: tuple[int, int, int] | None = None
        self._checked: float | None = None
        self._lock = threading.Lock()
        self.reads = 0
        """How many times the file was read."""

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"

    def _refresh(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is not None and self._checked is not None and now - self._checked < self.check_interval:
                return self._token
            try:
                st = self.path.stat()
            except OSError:
                raise IdentityError(
                    f"identity token file {self.path} is missing", reason="identity_unavailable"
                ) from None
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            self._checked = now
            if self._token is not None and stamp == self._file_stamp:
                return self._token
            if st.st_size > MAX_TOKEN_FILE_BYTES:
                raise IdentityError(f"identity token file {self.path} is too large", reason="identity_unavailable")
            try:
                text = self.path.read_text("ascii").strip()
            except (OSError, UnicodeDecodeError):
                raise IdentityError(
                    f"identity token file {self.path} is unreadable", reason="identity_unavailable"
                ) from None
            if not text:
                raise IdentityError(f"identity token file {self.path} is empty", reason="identity_unavailable")
            self.reads += 1
            self._token, self._file_stamp = text, stamp
            return text

    async def token(self) -> str:
        with self._lock:
            fresh = (
                self._token is not None
                and self._checked is not None
                and self._clock() - self._checked < self.check_interval
            )
            if fresh:
                assert self._token is not None  # noqa: S101 - checked just above
                return self._token
        return await anyio.to_thread.run_sync(self._refresh)

    def current(self) -> str | None:
        try:
            return self._refresh()
        except IdentityError:
            return self._token


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a compact JWS token, read WITHOUT verifying it (the server verifies).

    Only used to notice, on the client, a token that can no longer work. ``None`` when the token
    is not a JWT or has no numeric ``exp``.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class ProjectedTokenFile(TokenFile):
    """A rotating token file written by a platform agent: a Kubernetes projected service-account
    token, or a SPIFFE JWT-SVID written by the SPIFFE helper.

    A :class:`TokenFile` (re-read when the file is replaced; the kubelet swaps a symlink, the
    helper renames a file) that also refuses, on the client, a token whose ``exp`` has passed:
    the agent stopped rotating it, and sending it would only be refused by the server. The
    expiry is read without verifying the token; the server verifies it.

    Args:
        path: the token file (default: the Kubernetes service-account token).
        check_interval: least seconds between two checks of the file.
        clock: monotonic time source for the file checks.
        wall_clock: UNIX time source for the expiry check.
        leeway: seconds of clock skew tolerated on ``exp``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = KUBERNETES_TOKEN_PATH,
        *,
        check_interval: float = 1.0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        leeway: float = 30.0,
    ) -> None:
        super().__init__(path, check_interval=check_interval, clock=clock)
        if not isinstance(leeway, int | float) or leeway < 0:
            raise ConfigurationError("leeway must be a non-negative number of seconds")
        self._wall_clock = wall_clock
        self.leeway = float(leeway)

    @classmethod
    def kubernetes(cls, path: str | os.PathLike[str] = KUBERNETES_TOKEN_PATH, **options: Any) -> ProjectedTokenFile:
        """The pod's service-account token (or a projected token at ``path``)."""
        return cls(path, **options)

    @classmethod
    def spiffe_jwt_svid(cls, path: str | os.PathLike[str], **options: Any) -> ProjectedTokenFile:
        """A JWT-SVID file kept fresh by the SPIFFE helper (``jwt_svids`` in its configuration)."""
        return cls(path, **options)

    def __repr__(self) -> str:
        return f"ProjectedTokenFile({str(self.path)!r})"

    def _unexpired(self, token: str) -> str:
        exp = _jwt_expiry(token)
        if exp is not None and exp + self.leeway <= self._wall_clock():
            raise IdentityError(
                f"the token in {self.path} expired and was not replaced: is the agent that rotates it "
                "(kubelet, SPIFFE helper) running?",
                reason="identity_unavailable",
            )
        return token

    async def token(self) -> str:
        return self._unexpired(await super().token())

    def current(self) -> str | None:
        token = super().current()
        if token is None:
            return None
        try:
            return self._unexpired(token)
        except IdentityError:
            return None


_JWT_ALGORITHMS = {("OKP", "Ed25519"): "Ed25519", ("EC", "P-256"): "ES256", ("EC", "P-384"): "ES384"}


class OAuthClientCredentials:
    """A workload token from an OAuth 2.0 token endpoint: the client credentials grant (RFC 6749 §4.4).

    The client authenticates with a secret (``client_secret_basic`` or ``client_secret_post``) or
    with a private key (``private_key_jwt``, RFC 7523: a signed, single-use assertion per request),
    through authlib's HTTPX client. The token is kept and fetched again ``refresh_before``
    seconds before it expires (or half its lifetime, if shorter); concurrent requests share one
    fetch. When a refresh fails, the token in hand is used until it expires; after that, every
    governed request is refused with :class:`~mcpgov.IdentityError` saying why.

    Args:
        token_url: the token endpoint (``https://``; ``http://`` only on a loopback address).
        client_id: the client's id.
        client_secret: the shared secret (give this or ``private_key``).
        private_key: the client's private key for ``private_key_jwt``: a key file path (as
            ``mcpgov keys generate`` writes it, a JWK or a PEM key) or a private JWK mapping.
        auth_method: ``client_secret_basic`` (default with a secret) or ``client_secret_post``;
            ``private_key_jwt`` is implied by ``private_key``.
        scope: the scope to ask for.
        audience: an ``audience`` parameter, for providers that take one (Auth0, Okta...).
        resource: an RFC 8707 ``resource`` indicator.
        refresh_before: seconds before expiry to fetch a new token.
        default_lifetime: how long to keep a token whose response has no ``expires_in``.
        timeout: seconds for the token request.
        clock: UNIX time source.

    Raises:
        ConfigurationError: a missing or contradictory option, a plain-HTTP endpoint off
            loopback, or a key that cannot sign.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        *,
        client_secret: str | None = None,
        private_key: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        auth_method: str | None = None,
        scope: str | None = None,
        audience: str | None = None,
        resource: str | None = None,
        refresh_before: float = 60.0,
        default_lifetime: float = 300.0,
        timeout: float = 10.0,
        clock: Clock = time.time,
    ) -> None:
        parts = urlsplit(token_url) if isinstance(token_url, str) else None
        if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigurationError(f"token_url must be an https:// URL, got {token_url!r}")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ConfigurationError("token_url must use https:// (plain http:// only on a loopback address)")
        if parts.username or parts.password:
            raise ConfigurationError("token_url must not carry credentials: give client_id and client_secret")
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        if (client_secret is None) == (private_key is None):
            raise ConfigurationError("give exactly one of client_secret or private_key")
        for name, value in (("refresh_before", refresh_before), ("default_lifetime", default_lifetime)):
            if not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"{name} must be a non-negative number of seconds")
        positive_seconds("timeout", timeout)
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self.refresh_before = float(refresh_before)
        self.default_lifetime = float(default_lifetime)
        self.timeout = float(timeout)
        self._clock = clock
        self._params = {k: v for k, v in (("audience", audience), ("resource", resource)) if v is not None}
        self._secret: Any
        self._signer: Any = None
        if client_secret is not None:
            if not isinstance(client_secret, str) or not client_secret:
                raise ConfigurationError("client_secret must be a non-empty string")
            method = auth_method or "client_secret_basic"
            if method not in ("client_secret_basic", "client_secret_post"):
                raise ConfigurationError(
                    f"auth_method {method!r} does not go with a client secret "
                    "(use client_secret_basic or client_secret_post)"
                )
            self._secret = client_secret
        else:
            if auth_method not in (None, "private_key_jwt"):
                raise ConfigurationError(f"auth_method {auth_method!r} does not go with a private key")
            method = "private_key_jwt"
            self._secret, self._signer = self._key_signer(private_key)
        self.auth_method = method
        self._token: str | None = None
        self._expires_at = 0.0
        self._refresh_at = 0.0
        self._lock: anyio.Lock | None = None
        self.fetches = 0
        """How many tokens were fetched."""

    def _key_signer(self, private_key: Any) -> tuple[Any, Any]:
        from authlib.oauth2.rfc7523 import PrivateKeyJWT  # type: ignore[import-untyped]  # noqa: PLC0415 - authlib ships no types
        from joserfc.errors import JoseError  # noqa: PLC0415
        from joserfc.jwk import import_key  # noqa: PLC0415

        from mcpgov._keyfile import private_key as read_private_key  # noqa: PLC0415

        if isinstance(private_key, Mapping):
            jwk = dict(private_key)
            if not any(member in jwk for member in ("d", "p", "q")):
                raise ConfigurationError("private_key must be a private JWK")
        else:
            jwk = read_private_key(private_key, purpose="private_key_jwt client")
        try:
            key = import_key(jwk)
        except (JoseError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"private_key is not a usable JWK ({type(exc).__name__})") from None
        kty = jwk.get("kty")
        alg = "RS256" if kty == "RSA" else _JWT_ALGORITHMS.get((str(kty), str(jwk.get("crv"))))
        if alg is None:
            raise ConfigurationError(f"private_key of type {kty} {jwk.get('crv')} cannot sign a client assertion")
        kid = jwk.get("kid") or key.thumbprint()
        return key, PrivateKeyJWT(self.token_url, headers={"kid": kid}, alg=alg)

    def __repr__(self) -> str:
        return f"OAuthClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r}, [secure])"

    def current(self) -> str | None:
        if self._token is not None and self._clock() < self._expires_at:
            return self._token
        return None

    async def token(self) -> str:
        token = self._token
        if token is not None and self._clock() < self._refresh_at:
            return token
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token  # another request fetched it while this one waited
            try:
                await self._fetch()
            except IdentityError as exc:
                held = self.current()
                if held is None:
                    raise
                logger.warning("token refresh failed, using the current token until it expires: %s", exc.detail)
                return held
        assert self._token is not None  # noqa: S101 - _fetch sets it or raises
        return self._token

    async def _fetch(self) -> None:
        import httpx2  # noqa: PLC0415 - loaded only when a token is fetched
        from authlib.integrations.base_client import OAuthError  # type: ignore[import-untyped]  # noqa: PLC0415
        from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]  # noqa: PLC0415

        where = f"token endpoint {self.token_url}"
        client = AsyncOAuth2Client(
            self.client_id,
            self._secret,
            token_endpoint_auth_method=self.auth_method,
            scope=self.scope,
            timeout=self.timeout,
        )
        if self._signer is not None:
            client.register_client_auth_method(self._signer)
        try:
            async with client:
                response = await client.fetch_token(self.token_url, grant_type="client_credentials", **self._params)
        except OAuthError as exc:
            code = exc.error if isinstance(exc.error, str) and exc.error.isidentifier() else "error"
            raise IdentityError(f"{where} refused the client ({code})", reason="identity_unavailable") from None
        except httpx2.TimeoutException:
            raise IdentityError(
                f"{where} did not answer within {self.timeout:g} s", reason="identity_unavailable"
            ) from None
        except httpx2.TransportError as exc:
            raise IdentityError(
                f"{where} is unreachable ({type(exc).__name__}): check the URL and the network",
                reason="identity_unavailable",
            ) from None
        except (ValueError, KeyError, TypeError, httpx2.HTTPError) as exc:
            raise IdentityError(
                f"{where} gave no usable answer ({type(exc).__name__})", reason="identity_unavailable"
            ) from None
        self._accept(response, where)

    def _accept(self, response: Any, where: str) -> None:
        access = response.get("access_token") if isinstance(response, Mapping) else None
        if not isinstance(access, str) or not access.strip():
            raise IdentityError(f"{where} returned no access_token", reason="identity_unavailable")
        token_type = response.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise IdentityError(
                f"{where} returned a {token_type!r} token, not a Bearer token", reason="identity_unavailable"
            )
        now = self._clock()
        expires_in = response.get("expires_in")
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
            lifetime = float(expires_in)
        else:
            lifetime = self.default_lifetime
        jwt_exp = _jwt_expiry(access.strip())
        if jwt_exp is not None:
            lifetime = min(lifetime, jwt_exp - now)
        if lifetime <= 0:
            raise IdentityError(f"{where} returned a token that has already expired", reason="identity_unavailable")
        self._token = access.strip()
        self._expires_at = now + lifetime
        self._refresh_at = now + lifetime - min(self.refresh_before, lifetime / 2)
        self.fetches += 1


class CallableToken:
    """A token returned by a callable (sync or async): a token exchange, a vault client...

    Args:
        fn: called for every governed request; returns the current token. Cache inside it if
            obtaining a token is expensive.
    """

    def __init__(self, fn: Callable[[], str] | Callable[[], Awaitable[str]]) -> None:
        if not callable(fn):
            raise ConfigurationError("CallableToken needs a callable")
        self._fn = fn
        self._last: str | None = None

    def __repr__(self) -> str:
        return f"CallableToken({getattr(self._fn, '__qualname__', type(self._fn).__name__)})"

    async def token(self) -> str:
        try:
            value: Any = self._fn()
            if inspect.isawaitable(value):
                value = await value
        except IdentityError:
            raise
        except Exception as exc:  # noqa: BLE001 - the provider's failure is reported as an identity error
            raise IdentityError(
                f"identity provider raised {type(exc).__name__}", reason="identity_unavailable"
            ) from None
        if not isinstance(value, str) or not value.strip():
            raise IdentityError("identity provider returned no token", reason="identity_unavailable")
        self._last = value.strip()
        return self._last

    def current(self) -> str | None:
        if self._last is None and not inspect.iscoroutinefunction(self._fn):
            try:
                value = self._fn()
            except Exception:  # noqa: BLE001 - no token yet; the governed call will report why
                return None
            if isinstance(value, str) and value.strip():
                self._last = value.strip()
        return self._last


def as_identity_provider(value: IdentitySource | str | os.PathLike[str] | Callable[[], Any]) -> IdentitySource:
    """Accept a provider, a token string, a ``Path`` to a token file, or a callable."""
    if isinstance(value, IdentitySource):
        return value
    if isinstance(value, str):
        return StaticToken(value)
    if isinstance(value, os.PathLike):
        return TokenFile(value)
    if callable(value):
        return CallableToken(value)
    raise ConfigurationError(f"not an identity provider: {type(value).__name__}")


class ClientIdentity:
    """Client middleware attaching the workload's identity token to every governed request.

    For URL (Streamable HTTP) servers the token goes in the ``Authorization: Bearer`` header;
    otherwise in ``_meta`` under :data:`~mcpgov.META_IDENTITY`. ``GovernedClient(identity=...)``
    installs it outermost.

    Args:
        provider: where the token comes from.
        http: attach as an HTTP header (URL servers) rather than in ``_meta``.
    """

    def __init__(self, provider: IdentitySource, *, http: bool) -> None:
        self.provider = provider
        self.http = http
        from mcpgov.credentials._logs import redact_token_logs  # noqa: PLC0415 - avoids an import cycle

        redact_token_logs()  # the SDK logs whole messages (``_meta`` and its token) at DEBUG

    def __repr__(self) -> str:
        return f"ClientIdentity({self.provider!r}, http={self.http})"

    def authorization(self) -> str | None:
        """The ``Authorization`` header value for HTTP requests outside governed calls."""
        token = self.provider.current()
        return f"Bearer {token}" if token else None

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        """Attach the current token, then continue the chain."""
        token = await self.provider.token()
        if self.http:
            return await call_next(ctx.with_extension(HTTP_AUTHORIZATION, f"Bearer {token}"))
        return await call_next(ctx.replace(meta={**ctx.meta, META_IDENTITY: token}))
