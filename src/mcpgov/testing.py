"""Test doubles for users' own tests: an in-memory audit sink and a local HTTP server."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn

from mcpgov._audit import AuditEvent

__all__ = ["InMemoryAuditSink", "serve_http"]


@asynccontextmanager
async def serve_http(app: Any, *, startup_timeout: float = 10.0) -> AsyncIterator[str]:
    """Serve an ASGI ``app`` with uvicorn on 127.0.0.1 (a free port) and yield its base URL.

    For tests that need a real HTTP server, e.g. ``server.streamable_http_app()``::

        async with serve_http(server.streamable_http_app()) as base:
            async with GovernedClient(f"{base}/mcp") as client: ...

    The server stops when the block exits.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
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
