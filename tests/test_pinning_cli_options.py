"""`mcpgov pin` options: --mode over a real stdio server, a registry entry's env, bad modes (exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcpgov.cli import main

ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = str(ROOT / "tests" / "pinning_server.py")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "legacy", *MODERN_PROTOCOL_VERSIONS])
def test_snapshot_over_stdio_in_each_mode(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "pin.json"
    result = run("pin", "snapshot", "--mode", mode, "-o", str(out), "--stdio", "--", sys.executable, SERVER_SCRIPT)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["server"]["name"] == "billing" and set(data["tools"]) == {"read_invoice", "refund"}


@pytest.mark.parametrize(
    ("mode", "hint"),
    [("2024-11-05", "handshake-era version: use --mode legacy"), ("newest", "use one of: auto, legacy")],
)
def test_an_unsupported_mode_is_one_line_and_exit_2(mode: str, hint: str) -> None:
    result = run("pin", "snapshot", "--mode", mode, "tests.pinning_server:server", "--app-dir", str(ROOT))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and hint in result.stderr and repr(mode) in result.stderr


@pytest.mark.slow
def test_a_registry_entry_env_reaches_the_stdio_server(tmp_path: Path) -> None:
    registry = tmp_path / "approved.yaml"
    entry = {
        "id": "billing",
        "owner": "payments",
        "tenants": ["acme"],
        "workloads": ["*"],
        "command": sys.executable,
        "args": [SERVER_SCRIPT],
        "server": {"name": "billing"},
        "pin": "pin.json",
    }
    registry.write_text(json.dumps({"servers": [entry]}))
    assert run("pin", "snapshot", "--registry", str(registry), "--server", "billing", "-o", str(tmp_path / "pin.json"))
    assert run("pin", "check", "--registry", str(registry), "--server", "billing").exit_code == 0
    entry["env"] = {"PINNING_SERVER_DRIFT": "1"}  # the deployment's environment changes a tool
    registry.write_text(json.dumps({"servers": [entry]}))
    drifted = run("pin", "check", "--registry", str(registry), "--server", "billing")
    assert drifted.exit_code == 1 and "refund" in drifted.output
