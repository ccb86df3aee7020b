"""The gateway in front of a real HTTP upstream process: death while idle, clean errors, reconnection."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPError

from mcpgov import Auditor, GovernedClient
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry, read_manifest
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gateway"
TOOLS = ["notes_add_note", "notes_list_notes"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NotesOverHttp:
    """The example notes server serving Streamable HTTP on one fixed loopback port, (re)startable."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter running the example server
            [sys.executable, str(EXAMPLE / "notes_server.py"), "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the notes server exited at start")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.05)
                continue
            return
        raise RuntimeError("the notes server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def notes_http() -> Iterator[NotesOverHttp]:
    server = NotesOverHttp(_free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


def build(server: NotesOverHttp, **upstream: Any) -> tuple[Gateway, IdentityIssuer, InMemoryAuditSink]:
    registry = ServerRegistry(
        [
            {
                "id": "notes",
                "owner": "platform",
                "tenants": ["acme"],
                "workloads": ["*"],
                "url": server.url,
                "server": {"name": "notes", "version": ">=1.2,<2"},
                "pin": read_manifest(EXAMPLE / "pins" / "notes.json").model_dump(mode="json", by_alias=True),
            }
        ]
    )
    idp = IdentityIssuer(audience="mcp://gateway")
    sink = InMemoryAuditSink()
    policy = Policy.from_dict(
        {"version": 1, "rules": [{"id": "acme", "effect": "allow", "tenants": ["acme"], "tools": TOOLS}]}
    )
    config = UpstreamConfig.model_validate({"id": "notes", "namespace": {"prefix": "notes_"}, **upstream})
    gateway = Gateway(
        [config], registry, IdentityMiddleware(idp.verifier()), PolicyMiddleware(policy), audit=Auditor([sink])
    )
    return gateway, idp, sink


async def _state_becomes(gateway: Gateway, state: str, *, within: float) -> bool:
    for _ in range(int(within / 0.02)):
        if gateway.upstreams["notes"].state == state:
            return True
        await anyio.sleep(0.02)
    return False


async def _audited(sink: InMemoryAuditSink, event_type: str, *, within: float) -> bool:
    for _ in range(int(within / 0.02)):
        if sink.of_type(event_type):
            return True
        await anyio.sleep(0.02)
    return False


async def test_an_http_upstream_that_dies_while_idle_is_noticed_refused_fast_and_reconnected(
    notes_http: NotesOverHttp, mode: str
) -> None:
    """Killed with no request in flight: ``upstream.down`` is audited by the probe, calls fail at once
    with a clean error while it is gone, and serving resumes once the server is back."""
    gateway, idp, sink = build(
        notes_http,
        mode=mode,
        timeout=10,
        restart={"initial": 0.2, "maximum": 0.4},
        health={"interval": 0.2, "timeout": 2},
    )
    token = idp.token("agent", tenant="acme")
    async with gateway, GovernedClient(gateway.server, identity=token, mode=mode) as agent:
        first = await agent.call_tool("notes_add_note", {"text": "one"})
        assert not first.is_error
        assert sink.of_type("upstream.down") == []
        notes_http.kill()
        # No agent request: the health probe notices the death by itself.
        assert await _audited(sink, "upstream.down", within=5)
        down = sink.of_type("upstream.down")[0]
        assert down.reason == "connection lost" and down.target == "notes"
        assert 0.1 <= down.attributes["retry_in"] <= 0.2  # the first delay, with jitter
        # While it is gone (down, or failing to reconnect): a clean error at once, never a hang.
        for _ in range(5):
            started = time.monotonic()
            with anyio.fail_after(2):
                with pytest.raises(MCPError) as refused:
                    await agent.call_tool("notes_list_notes", {})
            assert refused.value.message == "The upstream server is unavailable"
            assert time.monotonic() - started < 1.0
            await anyio.sleep(0.1)
        notes_http.start()
        assert await _state_becomes(gateway, "ready", within=15)
        await agent.list_tools()  # a governed listing verifies the pins of the new connection
        result = await agent.call_tool("notes_list_notes", {})
        assert not result.is_error
    ready = sink.of_type("upstream.ready")
    assert len(ready) == 2 and {e.reason for e in ready} == {"started"}
    refusals = [e for e in sink.outcomes() if e.target == "notes_list_notes" and e.outcome == "failed"]
    assert len(refusals) == 5
    assert all(e.error_code == "mcpgov.gateway.upstream_unavailable" for e in refusals)
    assert all(e.principal == "https://issuer.test#agent" for e in refusals)


async def test_an_http_upstream_restarted_between_probes_is_reconnected(notes_http: NotesOverHttp) -> None:
    """A handshake-era session does not survive its server's restart: the probe sees the lost session
    and the gateway opens a new one, instead of failing every call on the old one."""
    gateway, idp, sink = build(
        notes_http, timeout=10, restart={"initial": 0.2, "maximum": 0.4}, health={"interval": 0.5, "timeout": 2}
    )
    token = idp.token("agent", tenant="acme")
    async with gateway, GovernedClient(gateway.server, identity=token, mode="legacy") as agent:
        assert not (await agent.call_tool("notes_add_note", {"text": "one"})).is_error
        notes_http.kill()
        notes_http.start()
        assert await _audited(sink, "upstream.down", within=10)
        assert sink.of_type("upstream.down")[0].reason in ("session lost", "connection lost")
        assert await _state_becomes(gateway, "ready", within=15)
        await agent.list_tools()
        result = await agent.call_tool("notes_list_notes", {})
        assert not result.is_error
    assert gateway.upstreams["notes"].stats.starts == 2


async def test_an_http_upstream_that_hangs_while_idle_is_marked_down_and_reconnected_when_it_answers(
    notes_http: NotesOverHttp,
) -> None:
    """A stopped process still accepts connections but answers nothing: the unanswered probe marks it
    down (``unresponsive``), calls fail within the start timeout instead of hanging, and serving
    resumes once the process runs again."""
    gateway, idp, sink = build(
        notes_http,
        timeout=10,
        start_timeout=1,
        restart={"initial": 0.2, "maximum": 0.4},
        health={"interval": 0.2, "timeout": 0.5},
    )
    token = idp.token("agent", tenant="acme")
    assert notes_http.process is not None
    async with gateway, GovernedClient(gateway.server, identity=token, mode="legacy") as agent:
        assert not (await agent.call_tool("notes_add_note", {"text": "one"})).is_error
        os.kill(notes_http.process.pid, signal.SIGSTOP)
        try:
            assert await _audited(sink, "upstream.down", within=5)
            assert sink.of_type("upstream.down")[0].reason == "unresponsive"
            started = time.monotonic()
            with anyio.fail_after(5), pytest.raises(MCPError) as refused:
                await agent.call_tool("notes_list_notes", {})
            assert refused.value.message == "The upstream server is unavailable"
            assert time.monotonic() - started < 2.5  # bounded by start_timeout, not the request timeout
        finally:
            os.kill(notes_http.process.pid, signal.SIGCONT)
        assert await _state_becomes(gateway, "ready", within=20)
        await agent.list_tools()
        assert not (await agent.call_tool("notes_list_notes", {})).is_error
