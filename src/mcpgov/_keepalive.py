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

from collections.abc import AsyncIterator

import anyio
import httpx2

__all__ = ["DRAIN_BYTES", "DRAIN_SECONDS", "DrainingTransport"]

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
