"""Kept-alive HTTP connections: an answer read from an event stream no longer costs a new connection.

The SDK's Streamable HTTP client closes a POST's response as soon as it has read the answer,
before the server's end of the stream arrives, so httpx used to close the connection. These
tests count the TCP connections a real server (uvicorn on loopback) sees.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import httpcore2
import httpx2
import pytest
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcpgov import Auditor, GovernedClient
from mcpgov._keepalive import DRAIN_BYTES, DRAIN_SECONDS, DrainingTransport, _Backend, pooled_transport
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry, snapshot
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, serve_http

pytestmark = pytest.mark.anyio


class ConnectionsSeen:
    """ASGI middleware: the client address (host, port: one per TCP connection) of every POST."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.posts: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts.append(scope["client"])
        await self.app(scope, receive, send)


def adder() -> MCPServer:
    server = MCPServer("adder", version="1.0.0")

    @server.tool()
    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    return server


async def test_governed_client_keeps_one_connection_for_its_calls(mode: str) -> None:
    seen = ConnectionsSeen(adder().streamable_http_app())
    async with serve_http(seen) as base, GovernedClient(f"{base}/mcp", mode=mode) as client:
        for i in range(12):
            result = await client.call_tool("add", {"a": i, "b": 1})
            assert result.structured_content == {"result": i + 1}
    assert len(seen.posts) >= 12
    # Sequential calls: every POST on the same connection (a second one is allowed for a request
    # sent while the first was still being read, e.g. the handshake's notification).
    assert len(set(seen.posts)) <= 2, seen.posts


async def test_the_gateway_keeps_its_connection_to_an_http_upstream() -> None:
    upstream = ConnectionsSeen(adder().streamable_http_app())
    idp = IdentityIssuer(audience="mcp://gateway")
    async with serve_http(upstream) as upstream_base:
        url = f"{upstream_base}/mcp"
        registry = ServerRegistry(
            [
                {
                    "id": "calc",
                    "owner": "o",
                    "tenants": ["acme"],
                    "workloads": ["*"],
                    "url": url,
                    "server": {"name": "adder", "version": ">=1"},
                    "pin": (await snapshot(url)).model_dump(mode="json", by_alias=True),
                }
            ]
        )
        before = len(upstream.posts)
        policy = Policy.from_dict({"version": 1, "rules": [{"id": "all", "effect": "allow", "tools": ["calc_*"]}]})
        sink = InMemoryAuditSink()
        gateway = Gateway(
            [UpstreamConfig.model_validate({"id": "calc", "namespace": {"prefix": "calc_"}})],
            registry,
            IdentityMiddleware(idp.verifier()),
            PolicyMiddleware(policy),
            audit=Auditor([sink]),
        )
        token = idp.token("agent", tenant="acme")
        app = gateway.http_app(auth=gateway.bearer_auth("http://127.0.0.1/mcp"))
        async with serve_http(app) as base, GovernedClient(f"{base}/mcp", identity=token, mode="legacy") as agent:
            for i in range(12):
                result = await agent.call_tool("calc_add", {"a": i, "b": 2})
                assert result.structured_content == {"result": i + 2}
    through_gateway = upstream.posts[before:]
    assert len(through_gateway) >= 12
    assert len(set(through_gateway)) <= 3, through_gateway  # handshake, standing requests, the calls
    decided = [e for e in sink.events if e.type == "decision" and e.side == "server" and e.target == "calc_add"]
    assert len(decided) == 12 and all(e.effect == "allow" for e in decided)


# --- the transport on its own, against servers that end their streams, or do not ---------------

_EVENT = b"event: message\r\ndata: answer\r\n\r\n"


def _streaming_app(opened: list[float]) -> Starlette:
    async def ends(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield _EVENT

        return StreamingResponse(body(), media_type="text/event-stream")

    async def hangs(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield _EVENT
            opened.append(time.monotonic())
            await anyio.sleep(30)
            yield b"never"

        return StreamingResponse(body(), media_type="text/event-stream")

    async def floods(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield _EVENT
            for _ in range(DRAIN_BYTES // 1024 + 8):
                yield b": " + b"x" * 1024 + b"\r\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    async def json_hangs(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b'{"jsonrpc": "2.0", '
            opened.append(time.monotonic())
            await anyio.sleep(30)
            yield b"}"

        return StreamingResponse(body(), media_type="application/json")

    return Starlette(
        routes=[
            Route("/json-hangs", json_hangs, methods=["POST"]),
            Route("/ends", ends, methods=["POST"]),
            Route("/hangs", hangs, methods=["POST"]),
            Route("/floods", floods, methods=["POST"]),
        ]
    )


async def _first_event(http: httpx2.AsyncClient, url: str, headers: dict[str, str] | None = None) -> None:
    """Read a POST's first event and close the response there, as the SDK's client does."""
    async with http.stream("POST", url, json={}, headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                await response.aclose()
                return


async def test_a_stream_that_ends_promptly_leaves_its_connection_reusable() -> None:
    seen = ConnectionsSeen(_streaming_app([]))
    async with serve_http(seen) as base:
        async with httpx2.AsyncClient(transport=DrainingTransport(httpx2.AsyncHTTPTransport())) as http:
            for _ in range(5):
                await _first_event(http, f"{base}/ends")
        async with httpx2.AsyncClient() as plain:
            for _ in range(3):
                await _first_event(plain, f"{base}/ends")
    assert len(set(seen.posts[:5])) == 1
    assert len(set(seen.posts[5:])) == 3  # httpx alone: a new connection each time


async def test_a_stream_left_open_is_given_up_after_a_bounded_wait() -> None:
    opened: list[float] = []
    seen = ConnectionsSeen(_streaming_app(opened))
    transport = DrainingTransport(httpx2.AsyncHTTPTransport())
    async with serve_http(seen) as base, httpx2.AsyncClient(transport=transport) as http:
        start = time.monotonic()
        await _first_event(http, f"{base}/hangs")
        waited = time.monotonic() - start
        await _first_event(http, f"{base}/ends")
        await _first_event(http, f"{base}/floods")
        await _first_event(http, f"{base}/ends")
    assert opened, "the server kept the stream open"
    assert waited < DRAIN_SECONDS + 2.0
    hangs, after_hang, floods, after_flood = seen.posts
    assert after_hang != hangs  # the connection of a stream that did not end is not reused
    assert after_flood != floods  # nor one that kept sending past the bound


async def test_a_listen_stream_is_closed_without_waiting_for_its_end() -> None:
    opened: list[float] = []
    transport = DrainingTransport(httpx2.AsyncHTTPTransport())
    async with serve_http(_streaming_app(opened)) as base, httpx2.AsyncClient(transport=transport) as http:
        start = time.monotonic()
        await _first_event(http, f"{base}/hangs")
        request_stream = time.monotonic() - start
        start = time.monotonic()
        await _first_event(http, f"{base}/hangs", headers={"mcp-method": "subscriptions/listen"})
        listen_stream = time.monotonic() - start
    assert len(opened) == 2
    assert request_stream >= DRAIN_SECONDS  # a request's stream: its end was waited for (bounded)
    assert listen_stream < request_stream  # a standing stream is not expected to end: no wait


async def test_only_event_streams_are_drained_a_json_answer_closed_early_is_closed_at_once() -> None:
    opened: list[float] = []
    transport = DrainingTransport(httpx2.AsyncHTTPTransport())
    async with serve_http(_streaming_app(opened)) as base, httpx2.AsyncClient(transport=transport) as http:
        start = time.monotonic()
        async with http.stream("POST", f"{base}/json-hangs", json={}) as response:
            async for _ in response.aiter_raw():
                await response.aclose()
                break
        closed_json = time.monotonic() - start
        start = time.monotonic()
        await _first_event(http, f"{base}/hangs")
        closed_stream = time.monotonic() - start
    assert len(opened) == 2
    assert closed_stream >= DRAIN_SECONDS  # an event stream: its end was waited for (bounded)
    assert closed_json < DRAIN_SECONDS  # a JSON body is not an event stream: no wait


@pytest.mark.parametrize(
    ("content_type", "drained"),
    [
        ("text/event-stream", True),
        ("Text/Event-Stream; charset=utf-8", True),
        ("application/json", False),
        ("application/json; charset=utf-8", False),
        ("", False),
    ],
)
async def test_a_post_answer_is_wrapped_for_draining_only_when_it_is_an_event_stream(
    content_type: str, drained: bool
) -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": content_type}, stream=_Body())

    transport = DrainingTransport(httpx2.MockTransport(answer))
    post = await transport.handle_async_request(httpx2.Request("POST", "http://upstream.test/mcp", json={}))
    assert (type(post.stream) is not _Body) is drained
    get = await transport.handle_async_request(httpx2.Request("GET", "http://upstream.test/mcp"))
    assert type(get.stream) is _Body  # only POST answers are ever wrapped
    await post.aclose()
    await get.aclose()


class _Body(httpx2.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{}"


async def test_the_pool_reads_a_connections_state_as_httpcore_does_with_its_socket_found_once() -> None:
    """The pool asks each idle connection whether the server closed it, on every request; our
    streams find their socket once for that. Same answers as httpcore's own stream: an idle open
    connection is not readable, one the server closed is (and one we closed counts as gone)."""
    closing = anyio.Event()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        await closing.wait()
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        plain = httpcore2.AnyIOBackend()
        ours = await _Backend(plain).connect_tcp("127.0.0.1", port)
        theirs = await plain.connect_tcp("127.0.0.1", port)
        assert ours.get_extra_info("is_readable") is theirs.get_extra_info("is_readable") is False
        assert ours.get_extra_info("socket") is not None  # other questions still go through
        closing.set()
        with anyio.fail_after(5):
            while not (ours.get_extra_info("is_readable") and theirs.get_extra_info("is_readable")):  # noqa: ASYNC110
                await anyio.sleep(0.01)  # the server's close reaches our side: nothing to wait on but the socket
        await ours.aclose()
        await theirs.aclose()
        assert ours.get_extra_info("is_readable") is True
        tg.cancel_scope.cancel()
    await listener.aclose()


def test_governed_clients_and_gateways_pool_connections_through_the_cheap_check() -> None:
    transport = pooled_transport(httpx2.Limits(max_keepalive_connections=8))
    inner = transport._inner
    assert isinstance(inner, httpx2.AsyncHTTPTransport)
    assert isinstance(inner._pool._network_backend, _Backend)
