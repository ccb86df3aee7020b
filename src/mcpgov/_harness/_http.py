"""A real HTTP server on 127.0.0.1 for tests (published as :func:`mcpgov.testing.serve_http`)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio


@asynccontextmanager
async def serve_http(app: Any, *, startup_timeout: float = 10.0) -> AsyncIterator[str]:
    """Serve an ASGI ``app`` with uvicorn on 127.0.0.1 (a free port) and yield its base URL.

    For tests that need a real HTTP server, e.g. ``server.streamable_http_app()``::

        async with serve_http(server.streamable_http_app()) as base:
            async with GovernedClient(f"{base}/mcp") as client: ...

    The server stops when the block exits.
    """
    import uvicorn  # noqa: PLC0415 - only tests that serve HTTP load the server

    # IPPROTO_TCP, not the default protocol 0: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    # only on sockets that say they are TCP, and accepted connections inherit the listening
    # socket's protocol. Without it a small response can wait ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on"))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(startup_timeout):
                while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                    await anyio.sleep(0.01)
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()
