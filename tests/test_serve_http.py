"""mcpgov.testing.serve_http: connections it accepts have Nagle's algorithm off (TCP_NODELAY)."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mcpgov import Decision, GovContext, GovernedClient, Hooks, govern
from mcpgov.testing import serve_http

pytestmark = pytest.mark.anyio


class _RecordingServer(uvicorn.Server):
    """A uvicorn server that remembers itself, so a test can look at its live connections."""

    instances: list[uvicorn.Server] = []  # noqa: RUF012 - test-local registry

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        _RecordingServer.instances.append(self)


def _open_sockets(server: uvicorn.Server) -> list[Any]:
    sockets = []
    for connection in server.server_state.connections:
        transport = getattr(connection, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            sockets.append(sock)
    return sockets


def _nodelay(sock: Any) -> int:
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[uvicorn.Server]:
    _RecordingServer.instances = []
    monkeypatch.setattr(uvicorn, "Server", _RecordingServer)
    return _RecordingServer.instances


async def test_accepted_connections_have_tcp_nodelay(recorded: list[uvicorn.Server]) -> None:
    seen: list[tuple[int, int]] = []

    async def hello(request: Request) -> PlainTextResponse:
        # Inspected while the connection is open: the socket the server accepted for this request.
        (server,) = recorded
        sockets = _open_sockets(server)
        seen.extend((int(s.proto), _nodelay(s)) for s in sockets)
        return PlainTextResponse("hello")

    async with serve_http(Starlette(routes=[Route("/", hello)])) as base, httpx.AsyncClient() as http:
        for _ in range(3):  # several requests on one kept-alive connection, then a fresh one
            assert (await http.get(f"{base}/")).text == "hello"
        async with httpx.AsyncClient() as other:
            assert (await other.get(f"{base}/")).text == "hello"
    assert seen, "no accepted connection was observed"
    assert all(proto == socket.IPPROTO_TCP for proto, _ in seen)
    assert all(flag != 0 for _, flag in seen)


async def test_governed_streamable_http_connections_have_tcp_nodelay(recorded: list[uvicorn.Server], mode: str) -> None:
    server = MCPServer("nodelay")

    @server.tool()
    async def add(a: int, b: int) -> int:
        return a + b

    hooks = Hooks()

    @hooks.tool("add")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("allow-add")

    govern(server, hooks)
    flags: list[int] = []
    async with serve_http(server.streamable_http_app()) as base, GovernedClient(f"{base}/mcp", mode=mode) as client:
        for i in range(3):
            result = await client.call_tool("add", {"a": i, "b": 1})
            assert result.structured_content == {"result": i + 1}
            (uv,) = recorded
            flags.extend(_nodelay(s) for s in _open_sockets(uv))
    assert flags
    assert all(flag != 0 for flag in flags)
