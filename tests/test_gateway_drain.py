"""A real gateway process on SIGTERM: in-flight calls finish, new ones are refused, no upstream is left behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
import yaml
from mcp import MCPError
from mcp.client.stdio import StdioServerParameters
from mcp_types import TextContent

from mcpgov import GovernedClient
from mcpgov.audit import verify_chain
from mcpgov.pinning import snapshot, write_manifest
from mcpgov.testing import IdentityIssuer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

AUDIENCE = "https://gateway.drain.test/mcp"
ISSUER = "https://id.drain.test"

UPSTREAM = '''
import os, sys
from pathlib import Path
import anyio
from mcp.server.mcpserver import MCPServer

here = Path(__file__).parent
(here / "upstream.pids").open("a").write(f"{os.getpid()}\\n")
server = MCPServer("slowpoke", version="1.0.0")

@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    (here / "slow.started").write_text("1")
    await anyio.sleep(seconds)
    return "done"

@server.tool()
def quick() -> str:
    """Answer at once."""
    (here / "quick.calls").open("a").write("1\\n")
    return "quick"

server.run()
'''


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _wait_for(predicate: object, seconds: float) -> bool:
    for _ in range(int(seconds / 0.05)):
        if callable(predicate) and predicate():
            return True
        await anyio.sleep(0.05)
    return False


async def _configure(work: Path, idp: IdentityIssuer, port: int, *, queued: bool = False) -> Path:
    (work / "upstream.py").write_text(UPSTREAM)
    params = StdioServerParameters(command=sys.executable, args=[str(work / "upstream.py")])
    write_manifest(work / "pin.json", await snapshot(params))
    (work / "upstream.pids").unlink()  # the snapshot's own process
    registry = {
        "servers": [
            {
                "id": "slow",
                "owner": "test",
                "tenants": ["acme"],
                "workloads": ["*"],
                "command": sys.executable,
                "args": [str(work / "upstream.py")],
                "server": {"name": "slowpoke", "version": ">=1"},
                "pin": "pin.json",
            }
        ]
    }
    policy = {"version": 1, "rules": [{"id": "allow", "effect": "allow", "tenants": ["acme"], "tools": ["slow_*"]}]}
    config = {
        "version": 1,
        "registry": "registry.yaml",
        "policy": "policy.yaml",
        "identity": {
            "issuers": [{"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": "jwks.json", "tenant_claim": "tenant"}]
        },
        "audit": {"jsonl": "audit.jsonl", "queued": queued},
        "http": {"host": "127.0.0.1", "port": port},
        "drain_timeout": 10,
        "upstreams": [{"id": "slow", "namespace": {"prefix": "slow_"}, "env": {"PYTHONWARNINGS": "ignore"}}],
    }
    (work / "registry.yaml").write_text(yaml.safe_dump(registry))
    (work / "policy.yaml").write_text(yaml.safe_dump(policy))
    (work / "jwks.json").write_text(json.dumps(idp.jwks()))
    (work / "gateway.yaml").write_text(yaml.safe_dump(config))
    return work / "gateway.yaml"


@pytest.mark.parametrize("queued", [False, True], ids=["audit-direct", "audit-queued"])
async def test_sigterm_lets_in_flight_calls_finish_refuses_new_ones_and_stops_the_upstream(
    tmp_path: Path, queued: bool
) -> None:
    idp = IdentityIssuer(ISSUER, audience=AUDIENCE)
    port = _port()
    config = await _configure(tmp_path, idp, port, queued=queued)
    log = tmp_path / "gateway.log"
    with log.open("wb") as stderr:
        gateway = subprocess.Popen(  # noqa: S603, ASYNC220 - this interpreter running our own CLI
            [sys.executable, "-m", "mcpgov.cli", "gateway", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    try:

        def ready() -> bool:
            try:
                return httpx2.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            except httpx2.HTTPError:
                return False

        assert await _wait_for(ready, 90), log.read_text(errors="replace")
        url = f"http://127.0.0.1:{port}/mcp"
        token = idp.token("agent", tenant="acme", ttl=600)
        (pid,) = [int(line) for line in (tmp_path / "upstream.pids").read_text().split()]
        answers: list[str] = []
        async with (
            GovernedClient(url, identity=token, mode="legacy") as first,
            GovernedClient(url, identity=token, mode="legacy") as second,
        ):
            await second.list_tools()
            # Listed first, so the SDK has the tool's output schema and sends no listing of its own
            # after the call returns, when the gateway may already have stopped listening.
            await first.list_tools()
            async with anyio.create_task_group() as tg:

                async def in_flight() -> None:
                    result = await first.call_tool("slow_slow", {"seconds": 4.0})
                    assert isinstance(result.content[0], TextContent)
                    answers.append(result.content[0].text)

                tg.start_soon(in_flight)
                assert await _wait_for((tmp_path / "slow.started").exists, 20)
                started = time.monotonic()
                gateway.send_signal(signal.SIGTERM)
                await anyio.sleep(0.3)
                with anyio.fail_after(3):  # refused at once, not queued behind the drain
                    with pytest.raises(MCPError) as refused:
                        await second.call_tool("slow_quick", {})
                assert refused.value.message == "The upstream server is unavailable"
                assert answers == []  # ... while the call in flight was still running
            assert answers == ["done"]  # the call in flight finished and was answered
            assert time.monotonic() - started < 12  # within the drain bound (drain_timeout 10 s)
        assert not (tmp_path / "quick.calls").exists()  # the refused call never reached the upstream
        await anyio.to_thread.run_sync(lambda: gateway.wait(timeout=30))
        assert await _wait_for(lambda: not _alive(pid), 10), "the upstream process outlived the gateway"
        status = log.read_text(errors="replace")
        assert "mcpgov gateway: stopped" in status
        assert "Traceback" not in status
        # Queued or not, every event is in the file once the gateway stopped, in one intact chain.
        report = verify_chain([tmp_path / "audit.jsonl"])
        assert not report.problems, report.problems
        assert report.events >= 4
        events = [json.loads(line)["event"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
        outcomes = [(e["target"], e["outcome"]) for e in events if e["type"] == "outcome"]
        assert ("slow_slow", "completed") in outcomes
        assert ("slow_quick", "failed") in outcomes
        decisions = [e for e in events if e["type"] == "decision" and e.get("target") == "slow_slow"]
        assert [e["effect"] for e in decisions] == ["allow"]
    finally:
        if gateway.poll() is None:  # pragma: no cover - a stuck drain must not leak the process
            gateway.kill()
            gateway.wait(timeout=10)
