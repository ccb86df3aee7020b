"""An HTTP transport for Streamable HTTP clients that keeps connections alive across requests.

The SDK's Streamable HTTP client closes a POST's response as soon as it has read the JSON-RPC
answer from its event stream, a moment before the server's end of the stream (the last chunk)
arrives. A response closed before its end cannot leave its connection in a reusable state, so
httpx closes the connection: every request answered over SSE paid a new TCP connection (and
left one more socket in TIME_WAIT). :class:`DrainingTransport`, used by
:class:`~mcpgov.GovernedClient` for a URL and by the gateway's upstream clients, reads what is
left of a POST's response when it is closed, for a short, bounded time and size, so that a
server which ends the stream promptly gets its connection reused. Nothing read there is used:
the SDK had stopped reading that stream, as before.
"""

from __future__ import annotations

import select
import socket
import sys
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio
import httpcore2
import httpx2

__all__ = ["DRAIN_BYTES", "DRAIN_SECONDS", "DrainingTransport", "pooled_transport"]

DRAIN_SECONDS = 0.25
"""How long a closed POST response is read for its end before its connection is given up."""

DRAIN_BYTES = 64 * 1024
"""How many bytes of a closed POST response are read for its end before its connection is given up."""


_STANDING = frozenset({"subscriptions/listen"})
"""Requests whose event stream is meant to stay open: closing one is not waiting for its end."""


class _DrainOnClose(httpx2.AsyncByteStream):
    """A response body that, once closed early, reads on to its end (bounded) so its connection can be reused."""

    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner
        self._chunks: AsyncIterator[bytes] | None = None
        self._ended = False
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._chunks is None:
            self._chunks = self._inner.__aiter__()
        # Not closed when this generator is: :meth:`aclose` may still read on from where it stopped.
        async for chunk in self._chunks:
            yield chunk
        self._ended = True

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if not self._ended:
                await self._drain()
        finally:
            await self._inner.aclose()  # the connection goes back to the pool only if the body ended

    async def _drain(self) -> None:
        chunks = self._chunks if self._chunks is not None else self._inner.__aiter__()
        read = 0
        with anyio.move_on_after(DRAIN_SECONDS):
            try:
                async for chunk in chunks:
                    read += len(chunk)
                    if read > DRAIN_BYTES:
                        return
            except httpx2.TransportError:
                return  # the connection is gone: closing it is all that is left
        self._ended = True


class DrainingTransport(httpx2.AsyncBaseTransport):
    """An httpx transport whose POST event streams, closed before their end, are read to it first (bounded).

    Only ``text/event-stream`` answers are wrapped: a JSON answer is read whole by the SDK, and
    a listen stream (``Mcp-Method: subscriptions/listen``) is meant to stay open.

    Args:
        inner: the transport that does the requests, e.g. ``httpx2.AsyncHTTPTransport(limits=...)``.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if (
            request.method != "POST"
            or request.headers.get("mcp-method") in _STANDING
            or not isinstance(response.stream, httpx2.AsyncByteStream)
            or not response.headers.get("content-type", "").lower().startswith("text/event-stream")
        ):
            return response  # a JSON answer is read to its end by the SDK: nothing to drain
        response.stream = _DrainOnClose(response.stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# --- a connection pool that checks idle connections cheaply -------------------------------------
#
# httpcore's pool, on every request and every response closed, asks each idle connection whether
# the server has closed it ("is the socket readable?"). Its anyio stream finds the socket anew on
# each question, through anyio's typed attributes, which build a dictionary of getters per call:
# with as many pooled connections as requests in flight (a gateway's upstream), that scan was
# about a tenth of a busy gateway's CPU. The streams below find their socket once.


def _readable(sock: socket.socket | None) -> bool:
    """Whether ``sock`` has data to read (or is gone): httpcore's own test, on a known socket."""
    fd = None if sock is None else sock.fileno()
    if fd is None or fd < 0:
        return True  # no socket left: as if the next read returned the end
    if sys.platform == "win32" or not hasattr(select, "poll"):  # pragma: no cover - no poll here
        ready, _, _ = select.select([fd], [], [], 0)
        return bool(ready)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore2.AsyncNetworkStream):
    """A network stream that finds its socket once for the pool's readability checks."""

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = None
        self._found = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 - httpcore's interface
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 - httpcore's interface
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            if not self._found:
                self._socket = self._inner.get_extra_info("socket")
                self._found = True
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


class _Backend(httpcore2.AsyncNetworkBackend):
    """httpcore's network backend, handing out :class:`_Stream` s."""

    def __init__(self, inner: httpcore2.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _Stream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pooled_transport(limits: httpx2.Limits | None = None) -> DrainingTransport:
    """A keep-alive HTTP transport (:class:`DrainingTransport`) whose pool checks idle connections
    cheaply. Where httpx's transport does not have the expected pool (another httpx2 version),
    it is used as it is."""
    inner = httpx2.AsyncHTTPTransport() if limits is None else httpx2.AsyncHTTPTransport(limits=limits)
    pool = getattr(inner, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(pool, httpcore2.AsyncConnectionPool) and isinstance(backend, httpcore2.AsyncNetworkBackend):
        pool._network_backend = _Backend(backend)  # httpx's transport takes no backend of its own
    return DrainingTransport(inner)
