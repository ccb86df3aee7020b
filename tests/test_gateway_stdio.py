"""The gateway in front of a real stdio subprocess: secrets, tokens, crashes and restarts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from mcp import Client, MCPError
from mcp.client.stdio import StdioServerParameters
from mcp_types import TextContent

from mcpgov import Auditor, GovernedClient
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry, read_manifest
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gateway"
TOOLS = ["notes_add_note", "notes_list_notes", "notes_check_key", "notes_leak_key", "notes_crash"]


def build(tmp_path: Path, secret: str, **upstream: Any) -> tuple[Gateway, IdentityIssuer, InMemoryAuditSink, Path]:
    log = tmp_path / "calls.jsonl"
    registry = ServerRegistry(
        [
            {
                "id": "notes",
                "owner": "platform",
                "tenants": ["acme"],
                "workloads": ["*"],
                "command": sys.executable,
                "args": [str(EXAMPLE / "notes_server.py")],
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
    config = UpstreamConfig.model_validate(
        {
            "id": "notes",
            "namespace": {"prefix": "notes_"},
            "env": {"NOTES_LOG": str(log)},
            "secret_env": {"NOTES_API_KEY": {"env": "GATEWAY_NOTES_KEY"}},
            **upstream,
        }
    )
    gateway = Gateway(
        [config],
        registry,
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(policy),
        audit=Auditor([sink]),
        environ={"GATEWAY_NOTES_KEY": secret},
    )
    return gateway, idp, sink, log


def calls(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


async def test_upstream_secret_is_used_but_never_shown_and_agent_token_never_forwarded(tmp_path: Path) -> None:
    secret = "sk-live-" + "7" * 24
    gateway, idp, sink, log = build(tmp_path, secret)
    token = idp.token("agent", tenant="acme")
    async with gateway, GovernedClient(gateway.server, identity=token, mode="legacy") as agent:
        listing = await agent.list_tools()
        checked = await agent.call_tool("notes_check_key", {})
        assert isinstance(checked.content[0], TextContent)
        assert checked.content[0].text == "key present"
        leaked = await agent.call_tool("notes_leak_key", {})
    seen_by_agent = listing.model_dump_json() + checked.model_dump_json() + leaked.model_dump_json()
    assert secret not in seen_by_agent
    assert leaked.is_error
    audit_text = json.dumps([e.model_dump(mode="json") for e in sink.events])
    assert secret not in audit_text and token not in audit_text
    received = calls(log)
    assert [c["tool"] for c in received] == ["check_key", "leak_key"]
    assert token not in json.dumps(received)
    assert all("io.mcpgov/identity" not in (c["meta"] or {}) for c in received)


async def test_a_crashed_upstream_gives_clean_errors_then_is_restarted(tmp_path: Path) -> None:
    gateway, idp, sink, _ = build(tmp_path, "k-unused-key", restart={"initial": 1.0, "maximum": 2.0}, timeout=10)
    token = idp.token("agent", tenant="acme")
    async with gateway, GovernedClient(gateway.server, identity=token, mode="legacy") as agent:
        await agent.call_tool("notes_add_note", {"text": "one"})
        with anyio.fail_after(15):
            with pytest.raises(MCPError) as crashed:
                await agent.call_tool("notes_crash", {})
        assert "unavailable" in crashed.value.message.lower() or crashed.value.code == -32000
        # While it is down: a clean, immediate error, not a hang.
        with anyio.fail_after(5):
            with pytest.raises(MCPError) as down:
                await agent.call_tool("notes_list_notes", {})
        assert down.value.message == "The upstream server is unavailable"
        # After the backoff, it is back.
        with anyio.fail_after(20):
            while True:
                try:
                    result = await agent.call_tool("notes_list_notes", {})
                    break
                except MCPError:
                    await anyio.sleep(0.3)
        assert not result.is_error
    assert gateway.upstreams["notes"].stats.starts == 2
    failed = [e for e in sink.outcomes() if e.error_code == "mcpgov.gateway.upstream_unavailable"]
    assert failed and all(e.principal == "https://issuer.test#agent" for e in failed)


async def test_an_upstream_that_will_not_start_is_a_clean_error(tmp_path: Path) -> None:
    gateway, idp, sink, _ = build(tmp_path, "k-unused-key", start_timeout=2, cwd="does-not-exist")
    token = idp.token("agent", tenant="acme")
    async with gateway, GovernedClient(gateway.server, identity=token, mode="legacy") as agent:
        assert not gateway.ready
        with anyio.fail_after(10):
            with pytest.raises(MCPError) as refused:
                await agent.call_tool("notes_list_notes", {})
        assert refused.value.message == "The upstream server is unavailable"
        assert (await agent.list_tools()).tools == []
    assert gateway.upstreams["notes"].stats.failures >= 1
    (failed,) = [e for e in sink.outcomes() if e.target == "notes_list_notes"]
    assert failed.outcome == "failed" and failed.error_code == "mcpgov.gateway.upstream_unavailable"
    assert failed.principal == "https://issuer.test#agent"


async def test_the_cli_serves_one_local_agent_over_stdio(tmp_path: Path) -> None:
    """`mcpgov gateway --stdio`: a desktop agent starts the gateway; its identity comes from the environment."""
    for name in ("gateway.yaml", "approved-servers.yaml", "policy.yaml", "notes_server.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    shutil.copytree(EXAMPLE / "pins", tmp_path / "pins")
    registry = yaml.safe_load((tmp_path / "approved-servers.yaml").read_text())
    registry["servers"][0]["command"] = sys.executable
    (tmp_path / "approved-servers.yaml").write_text(yaml.safe_dump(registry))
    idp = IdentityIssuer("https://id.acme.example", audience="https://gateway.acme.example/mcp")
    (tmp_path / "jwks.json").write_text(json.dumps(idp.jwks()))
    token = idp.token("notes-agent", tenant="acme")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcpgov.cli", "gateway", "--config", str(tmp_path / "gateway.yaml"), "--stdio"],
        env={
            "MCPGOV_IDENTITY": token,
            "NOTES_API_KEY": "k-123-notes-key",
            "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": str(EXAMPLE.parents[1] / "src"),  # this checkout's mcpgov
        },
        cwd=str(tmp_path),
    )
    with anyio.fail_after(120):
        async with Client(params, mode="legacy") as agent:
            names = sorted(t.name for t in (await agent.list_tools()).tools)
            assert names == ["notes_add_note", "notes_check_key", "notes_list_notes"]
            result = await agent.call_tool("notes_check_key", {})
            assert isinstance(result.content[0], TextContent)
            assert result.content[0].text == "key present"
            with pytest.raises(MCPError):
                await agent.call_tool("notes_delete_all_notes", {})
    assert [c["tool"] for c in calls(tmp_path / "notes-calls.jsonl")] == ["check_key"]


def _children(marker: str) -> list[int]:
    """Processes whose parent is this one and whose command line names ``marker`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and marker in cmdline and stat[0] != "Z":
            found.append(int(entry.name))
    return found


async def _state_becomes(gateway: Gateway, state: str, *, within: float) -> bool:
    for _ in range(int(within / 0.02)):
        if gateway.upstreams["notes"].state == state:
            return True
        await anyio.sleep(0.02)
    return False


async def test_an_upstream_that_dies_while_idle_is_noticed_audited_and_restarted(tmp_path: Path) -> None:
    secret = "sk-idle-" + "3" * 24
    gateway, idp, sink, _ = build(tmp_path, secret, restart={"initial": 1.5, "maximum": 3.0}, timeout=10)
    lines: list[str] = []
    gateway.on_status = lines.append
    token = idp.token("agent", tenant="acme")
    async with gateway, GovernedClient(gateway.server, identity=token, mode="legacy") as agent:
        await agent.call_tool("notes_add_note", {"text": "one"})
        (pid,) = _children("notes_server.py")
        os.kill(pid, signal.SIGKILL)
        # No request is made: the gateway notices the exit by itself.
        assert await _state_becomes(gateway, "down", within=5)
        (down,) = sink.of_type("upstream.down")
        assert down.reason == "exited" and down.target == "notes"
        assert 0.75 <= down.attributes["retry_in"] <= 1.5  # the first delay, with jitter
        # While it is down: a clean error at once.
        with anyio.fail_after(1):
            with pytest.raises(MCPError) as refused:
                await agent.call_tool("notes_list_notes", {})
        assert refused.value.message == "The upstream server is unavailable"
        assert await _state_becomes(gateway, "ready", within=20)
        assert _children("notes_server.py") not in ([], [pid])
        await agent.list_tools()  # a governed listing re-verifies the pins of the new process
        result = await agent.call_tool("notes_list_notes", {})
        assert not result.is_error
    assert [e.reason for e in sink.of_type("upstream.ready")] == ["started", "started"]
    assert gateway.upstreams["notes"].stats.starts == 2
    assert any("'notes': down (exited); restarting in" in line for line in lines)
    assert secret not in json.dumps([e.model_dump(mode="json") for e in sink.events]) + "".join(lines)
    assert _children("notes_server.py") == []  # leaving the gateway stopped the process
