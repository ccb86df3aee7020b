"""A stdio registry entry judges the executable its command resolves to, as the process is
started: the same command name found in another ``PATH`` or read from another working directory
is another program, and a command that resolves to nothing cannot be the approved one."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError
from mcp.client.stdio import StdioServerParameters

from mcpgov import GovernedClient, PinningError, Principal
from mcpgov.pinning import PinningMiddleware, ServerRegistry, snapshot
from mcpgov.testing import InMemoryAuditSink

from .pinning_server import build_server

pytestmark = pytest.mark.anyio

AGENT = Principal(
    issuer="https://id.acme.example",
    subject="billing-agent",
    tenant="acme",
    spiffe_id="spiffe://acme.example/agents/billing-agent",
)
INFO = {"name": "billing", "version": "1.4.2"}
SERVER_SCRIPT = Path(__file__).with_name("pinning_server.py")


def _program(directory: Path, name: str = "mcp-billing") -> Path:
    """An executable ``name`` in ``directory`` that starts the billing server over stdio."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SERVER_SCRIPT}" "$@"\n', encoding="utf-8")
    path.chmod(0o755)
    return path


async def _registry(tmp_path: Path, **where: Any) -> ServerRegistry:
    manifest = await snapshot(build_server())
    entry: dict[str, Any] = {
        "id": "billing",
        "owner": "payments-team",
        "tenants": ["acme"],
        "workloads": ["spiffe://acme.example/agents/*"],
        "server": {"name": "billing"},
        "pin": manifest.model_dump(mode="json"),
        **where,
    }
    return ServerRegistry([entry], base_dir=tmp_path)


def _why(registry: ServerRegistry, target: object) -> str | None:
    try:
        registry.check("billing", tenant="acme", principal=AGENT, server_info=INFO, target=target)
    except PinningError as exc:
        return f"{exc.reason}: {exc.detail}"
    return None


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX executables and PATH lookup")
async def test_the_same_command_name_found_in_another_path_is_refused_in_a_real_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, evil = tmp_path / "approved-bin", tmp_path / "other-bin"
    _program(good), _program(evil)
    path = os.pathsep.join([str(good), os.environ.get("PATH", os.defpath)])
    monkeypatch.setenv("PATH", path)  # where this process finds the approved program
    registry = await _registry(tmp_path, command="mcp-billing")
    sink = InMemoryAuditSink()
    # The entry's command and arguments, and a PATH the entry does not name that finds another
    # program of that name first (it serves exactly the pinned tools: pins alone cannot tell).
    for env in (None, {"PATH": os.pathsep.join([str(evil), path])}):
        target = StdioServerParameters(command="mcp-billing", env=env)
        pinning = PinningMiddleware(registry, server_id="billing")
        async with GovernedClient(target, pinning, principal=AGENT, audit=sink) as client:
            if env is None:
                assert sorted(t.name for t in (await client.list_tools()).tools) == ["read_invoice", "refund"]
                continue
            with pytest.raises(MCPError) as caught:
                await client.list_tools()
            cause = caught.value.__cause__
            assert isinstance(cause, PinningError) and cause.reason == "server.refused"
            assert "resolves to another executable" in cause.detail
            assert str(evil) not in cause.detail


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX executables and PATH lookup")
async def test_a_path_the_entry_does_not_name_is_judged_by_what_it_resolves_to(tmp_path: Path) -> None:
    good = _program(tmp_path / "approved-bin")
    evil = tmp_path / "other-bin"
    _program(evil)
    registry = await _registry(tmp_path, command=str(good))
    assert _why(registry, StdioServerParameters(command=str(good))) is None
    assert _why(registry, StdioServerParameters(command=str(good), env={"PATH": str(evil)})) is None
    # The entry names no PATH: a bare command is looked up in the process's own.
    bare = await _registry(tmp_path, command="mcp-billing")
    assert "resolves to no executable" in (_why(bare, StdioServerParameters(command="mcp-billing")) or "")
    why = _why(bare, StdioServerParameters(command="mcp-billing", env={"PATH": str(evil)}))
    assert why is not None and "resolves to no executable" in why


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX executables and PATH lookup")
@pytest.mark.parametrize("spelling", ["relative command", "relative PATH entry", "empty PATH entry"])
async def test_a_command_read_from_another_working_directory_is_refused(tmp_path: Path, spelling: str) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    _program(home / "bin"), _program(elsewhere / "bin")
    _program(home, "mcp-billing"), _program(elsewhere, "mcp-billing")
    command, env = {
        "relative command": ("bin/mcp-billing", None),
        "relative PATH entry": ("mcp-billing", {"PATH": "bin"}),
        "empty PATH entry": ("mcp-billing", {"PATH": ""}),
    }[spelling]
    registry = await _registry(tmp_path, command=command, env=env, cwd=str(home))
    assert _why(registry, StdioServerParameters(command=command, env=env, cwd=home)) is None
    assert _why(registry, StdioServerParameters(command=command, env=env, cwd=str(home / "bin" / ".."))) is None
    why = _why(registry, StdioServerParameters(command=command, env=env, cwd=elsewhere))
    assert why is not None and why.startswith("server.refused: ") and "working directory" in why
    # Without a stated cwd the entry resolves from this process's directory; a client starting the
    # command elsewhere reaches another program.
    loose = await _registry(tmp_path, command=command, env=env)
    home_why = _why(loose, StdioServerParameters(command=command, env=env, cwd=home))
    assert home_why is not None and ("another executable" in home_why or "resolves to no executable" in home_why)


async def test_a_working_directory_that_cannot_be_judged_is_refused(tmp_path: Path) -> None:
    good = _program(tmp_path / "approved-bin")
    registry = await _registry(tmp_path, command=str(good), cwd=str(tmp_path))

    class Odd:
        command = str(good)
        args = ()
        env = None
        cwd = 42

    assert "cannot be judged" in (_why(registry, Odd()) or "")
    assert "cannot be judged" in (_why(registry, StdioServerParameters(command=str(good), cwd="a\x00b")) or "")


def test_an_entry_cwd_must_be_absolute_and_for_a_command(tmp_path: Path) -> None:
    from mcpgov import ConfigurationError

    base: dict[str, Any] = {
        "id": "billing",
        "owner": "o",
        "tenants": ["acme"],
        "workloads": ["*"],
        "server": {"name": "billing"},
        "pin": "p.json",
    }
    with pytest.raises(ConfigurationError, match="cwd"):
        ServerRegistry([{**base, "command": "mcp-billing", "cwd": "relative/dir"}])
    with pytest.raises(ConfigurationError, match="cwd"):
        ServerRegistry([{**base, "url": "https://billing.example/mcp", "cwd": "/srv"}])
    entry = ServerRegistry([{**base, "command": "mcp-billing", "cwd": "/srv"}]).get("billing")
    assert entry is not None
    connection = entry.connection()
    assert isinstance(connection, StdioServerParameters) and connection.cwd == "/srv"
