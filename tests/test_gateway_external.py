"""The gateway governing real third-party servers, and a real third-party client.

* ``mcp-server-time`` from PyPI (an SDK 2.x build and an SDK 1.x build, each in its own venv);
* ``@modelcontextprotocol/server-everything`` from npm (a Node server);
* the official TypeScript SDK client (``@modelcontextprotocol/sdk``) over Streamable HTTP.

``.ci/gateway.sh`` installs them into ``.ci/.gateway-ext`` (or ``$MCPGOV_GATEWAY_EXT``). Outside
CI these tests skip when that is absent; with ``MCPGOV_REQUIRE_EXTERNAL=1`` (set by the CI
script) absence is a failure. Each server is started through a wiretap that records every
message it receives, so "the upstream saw nothing" is checked on the upstream's own wire.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPError
from mcp.client.stdio import StdioServerParameters
from mcp_types import TextContent

from mcpgov import Auditor, GovernedClient
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import Manifest, ServerRegistry, snapshot
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, serve_http

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
EXT = Path(os.environ.get("MCPGOV_GATEWAY_EXT", ROOT / ".ci" / ".gateway-ext"))
WIRETAP = Path(__file__).resolve().parent / "gateway_wiretap.py"
TIME2 = EXT / "time-venv" / "bin" / "mcp-server-time"
TIME1 = EXT / "time1-venv" / "bin" / "mcp-server-time"
EVERYTHING = EXT / "node" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
TS_CLIENT = Path(__file__).resolve().parent / "gateway_ts_client.mjs"
TS_SDK = EXT / "node" / "node_modules" / "@modelcontextprotocol" / "sdk"


def _require(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if not missing and (shutil.which("node") is not None or EVERYTHING not in paths):
        return
    reason = f"third-party servers not installed (run .ci/gateway.sh): missing {missing or ['node']}"
    if os.environ.get("MCPGOV_REQUIRE_EXTERNAL") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


UPSTREAMS: dict[str, list[str]] = {
    "time": [str(TIME2), "--local-timezone", "UTC"],
    "time1": [str(TIME1), "--local-timezone", "UTC"],
    "every": ["node", str(EVERYTHING), "stdio"],
}
PREFIX = {"time": "time_", "time1": "oldtime_", "every": "every_"}
POLICY: dict[str, Any] = {
    "version": 1,
    "rules": [
        {
            "id": "acme",
            "effect": "allow",
            "tenants": ["acme"],
            "tools": ["time_get_current_time", "oldtime_get_current_time", "every_echo", "every_get-sum"],
        }
    ],
}


async def _pin(command: list[str]) -> Manifest:
    """What an operator does once: snapshot the server as it is and approve that as its pin."""
    manifest: Manifest = await snapshot(StdioServerParameters(command=command[0], args=command[1:]))
    return manifest


def _tamper(manifest: Manifest, tool: str) -> dict[str, Any]:
    data = manifest.model_dump(mode="json", by_alias=True)
    pinned = data["tools"][tool]["tool"]
    pinned["description"] = str(pinned.get("description", "")) + " (as approved last month)"
    from mcpgov.pinning import tool_fingerprint

    data["tools"][tool]["fingerprint"] = tool_fingerprint(pinned)
    return data


async def _gateway(
    tmp_path: Path, ids: list[str], *, drift: dict[str, str] | None = None
) -> tuple[Gateway, IdentityIssuer, InMemoryAuditSink]:
    entries = []
    for server_id in ids:
        command = UPSTREAMS[server_id]
        manifest = await _pin(command)
        pin = (
            _tamper(manifest, drift[server_id])
            if drift and server_id in drift
            else manifest.model_dump(mode="json", by_alias=True)
        )
        entries.append(
            {
                "id": server_id,
                "owner": "platform",
                "tenants": ["acme"],
                "workloads": ["*"],
                "command": sys.executable,
                "args": [str(WIRETAP), str(tmp_path / f"{server_id}.wire"), *command],
                "server": {"name": manifest.server.name, "version": f"=={manifest.server.version}"},
                "pin": pin,
            }
        )
    idp = IdentityIssuer(audience="mcp://gateway")
    sink = InMemoryAuditSink()
    gateway = Gateway(
        [
            UpstreamConfig.model_validate({"id": i, "namespace": {"prefix": PREFIX[i]}, "start_timeout": 60})
            for i in ids
        ],
        ServerRegistry(entries),
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(POLICY)),
        audit=Auditor([sink]),
    )
    return gateway, idp, sink


def _wire(tmp_path: Path, server_id: str) -> list[dict[str, Any]]:
    path = tmp_path / f"{server_id}.wire"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _called(tmp_path: Path, server_id: str) -> list[str]:
    return [m["params"]["name"] for m in _wire(tmp_path, server_id) if m.get("method") == "tools/call"]


def _text(result: Any) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_real_python_and_node_servers_are_governed(tmp_path: Path, mode: str) -> None:
    _require(TIME2, TIME1, EVERYTHING)
    gateway, idp, _ = await _gateway(tmp_path, ["time", "time1", "every"])
    token = idp.token("agent", tenant="acme")
    async with gateway, GovernedClient(gateway.server, identity=token, mode=mode) as agent:
        assert gateway.ready, gateway.status()
        names = {t.name for t in (await agent.list_tools()).tools}
        assert names == {"time_get_current_time", "oldtime_get_current_time", "every_echo", "every_get-sum"}
        now = await agent.call_tool("time_get_current_time", {"timezone": "Europe/Paris"})
        assert "Europe/Paris" in _text(now)
        old = await agent.call_tool("oldtime_get_current_time", {"timezone": "Asia/Tokyo"})
        assert "Asia/Tokyo" in _text(old)
        echo = await agent.call_tool("every_echo", {"message": "through the gateway"})
        assert "through the gateway" in _text(echo)
        for denied, arguments in (
            ("time_convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}),
            ("every_get-env", {}),
            ("every_echo_", {}),
        ):
            with pytest.raises(MCPError):
                await agent.call_tool(denied, arguments)
    assert _called(tmp_path, "time") == ["get_current_time"]
    assert _called(tmp_path, "time1") == ["get_current_time"]
    assert _called(tmp_path, "every") == ["echo"]
    everything = json.dumps([_wire(tmp_path, i) for i in ("time", "time1", "every")])
    assert token not in everything


async def test_a_real_server_that_differs_from_its_pin_is_caught(tmp_path: Path) -> None:
    _require(TIME2)
    gateway, idp, sink = await _gateway(tmp_path, ["time"], drift={"time": "get_current_time"})
    async with gateway, GovernedClient(gateway.server, identity=idp.token("agent"), mode="legacy") as agent:
        assert "time_get_current_time" not in {t.name for t in (await agent.list_tools()).tools}
        with pytest.raises(MCPError) as refused:
            await agent.call_tool("time_get_current_time", {"timezone": "UTC"})
        assert refused.value.code == -32005
    assert _called(tmp_path, "time") == []
    assert any(e.target == "get_current_time" and e.reason == "tool.changed" for e in sink.of_type("pin.mismatch"))


async def test_the_official_typescript_client_talks_to_the_gateway(tmp_path: Path) -> None:
    _require(TIME2, TS_SDK)
    gateway, idp, _ = await _gateway(tmp_path, ["time"])
    script = EXT / "node" / "gateway_ts_client.mjs"
    # ESM resolves packages from the script's folder: the script runs beside node_modules.
    shutil.copy(TS_CLIENT, script)
    async with serve_http(gateway.http_app(auth=gateway.bearer_auth("http://127.0.0.1/mcp"))) as base:
        token = idp.token("ts-agent", tenant="acme")
        args = ["node", str(script), f"{base}/mcp", token, "time_get_current_time", '{"timezone":"UTC"}']
        with anyio.fail_after(120):
            done = await anyio.run_process([*args, "time_convert_time"], check=False)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        out = json.loads(done.stdout.decode().strip().splitlines()[-1])
        anonymous = await anyio.run_process([*args[:3], "not-a-token", *args[4:], "x"], check=False)
    assert out["tools"] == ["time_get_current_time"]
    assert out["allowed"]["isError"] is not True
    assert "UTC" in json.dumps(out["allowed"]["content"])
    assert out["deniedError"]["code"] == -32003
    assert anonymous.returncode != 0
    assert _called(tmp_path, "time") == ["get_current_time"]


def test_the_wiretap_passes_messages_through(tmp_path: Path) -> None:
    """The recorder itself: what it logs is what the child received."""
    log = tmp_path / "wire"
    done = subprocess.run(  # noqa: S603 - this interpreter and a fixed script
        [sys.executable, str(WIRETAP), str(log), sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"],
        input=b'{"a": 1}\n',
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == b'{"A": 1}'
    assert log.read_bytes() == b'{"a": 1}\n'
