"""A fast CLI: commands that do not talk to a server import no MCP SDK (and the lightest ones no pydantic).

Each command runs in a fresh interpreter, exactly as ``mcpgov`` would, and reports which modules it
imported. Start-up time itself is measured in ``benchmarks/bench_cli.py``, never here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from mcpgov.cli import _COMMANDS as COMMANDS
from mcpgov.cli import main

ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import json, sys
from mcpgov.cli import main
try:
    main(sys.argv[1:], prog_name="mcpgov")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}), file=sys.stderr)
"""

SDK = {"mcp", "mcp_types"}
HEAVY = SDK | {"pydantic", "httpx", "httpx2", "starlette", "uvicorn", "opentelemetry", "authlib", "cedarpy", "redis"}


def _run(*args: str, cwd: Path) -> tuple[int, set[str]]:
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed probe
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=cwd, check=False, timeout=120
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mcpgov import AuditEvent, GovContext
    from mcpgov.audit import JsonlSink

    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    sink = JsonlSink(path)
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="read_file", tenant="acme")
    for _ in range(3):
        sink(AuditEvent.from_context(ctx, "decision", effect="allow", rule="readers"))
    sink.close()
    return path


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["audit", "--help"]], ids=" ".join)
def test_the_lightest_commands_import_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    code, modules = _run(*args, cwd=tmp_path)
    assert code == 0
    assert not modules & HEAVY, modules & HEAVY


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_shows_its_help_without_the_sdk(tmp_path: Path, name: str) -> None:
    """A command added to the table (gateway, audit prove...) is checked here without being listed."""
    code, modules = _run(name, "--help", cwd=tmp_path)
    assert code == 0
    assert not modules & SDK, modules & SDK


@pytest.mark.slow
def test_audit_verify_imports_neither_the_sdk_nor_pydantic(tmp_path: Path, chain: Path) -> None:
    code, modules = _run("audit", "verify", str(chain), cwd=tmp_path)
    assert code == 0
    assert not modules & HEAVY, modules & HEAVY


@pytest.mark.slow
def test_a_tampered_chain_still_fails_without_the_sdk(tmp_path: Path, chain: Path) -> None:
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text(chain.read_text().replace("read_file", "read_fil3"))
    code, modules = _run("audit", "verify", str(tampered), cwd=tmp_path)
    assert code == 1
    assert not modules & SDK


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["keys", "generate", "--out", "key.json"],
        ["policy", "validate", str(ROOT / "examples" / "ci" / "policy.yaml")],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_commands_that_reach_no_server_import_no_sdk(tmp_path: Path, args: list[str]) -> None:
    code, modules = _run(*args, cwd=tmp_path)
    assert code == 0
    assert not modules & SDK, modules & SDK


def test_the_command_table_says_what_each_command_says_of_itself() -> None:
    ctx = click.Context(main)
    assert main.list_commands(ctx) == sorted(COMMANDS)
    for name, (_, summary) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None
        assert command.get_short_help_str(limit=500) == summary, name


def test_an_unknown_command_is_a_usage_error() -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["nonsense"])
    assert result.exit_code == 2 and "No such command 'nonsense'" in result.output
