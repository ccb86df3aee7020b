"""Client side: where a workload's identity token comes from, and the middleware that attaches it."""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import anyio

from mcpgov._chain import CallNext
from mcpgov._context import HTTP_AUTHORIZATION, META_IDENTITY, GovContext
from mcpgov._errors import ConfigurationError, IdentityError

__all__ = ["CallableToken", "ClientIdentity", "IdentityProvider", "StaticToken", "TokenFile", "as_identity_provider"]

MAX_TOKEN_FILE_BYTES = 65536


@runtime_checkable
class IdentityProvider(Protocol):
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
        self, path: str | os.PathLike[str], *, check_interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not isinstance(check_interval, int | float) or check_interval < 0:
            raise ConfigurationError("check_interval must be a non-negative number of seconds")
        self.path = Path(path)
        self.check_interval = float(check_interval)
        self._clock = clock
        self._token: str | None = None
        self._stamp: tuple[int, int, int] | None = None
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
            if self._token is not None and stamp == self._stamp:
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
            self._token, self._stamp = text, stamp
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


def as_identity_provider(value: IdentityProvider | str | os.PathLike[str] | Callable[[], Any]) -> IdentityProvider:
    """Accept a provider, a token string, a ``Path`` to a token file, or a callable."""
    if isinstance(value, IdentityProvider):
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

    def __init__(self, provider: IdentityProvider, *, http: bool) -> None:
        self.provider = provider
        self.http = http

    def __repr__(self) -> str:
        return f"ClientIdentity({self.provider!r}, http={self.http})"

    def authorization(self) -> str | None:
        """The ``Authorization`` header value for HTTP requests outside governed calls."""
        token = self.provider.current()
        return f"Bearer {token}" if token else None

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        """Attach the current token, then continue the chain."""
        token = await self.provider.token()
        if self.http:
            return await call_next(ctx.with_extension(HTTP_AUTHORIZATION, f"Bearer {token}"))
        return await call_next(ctx.replace(meta={**ctx.meta, META_IDENTITY: token}))
