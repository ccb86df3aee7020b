"""``mcpgov audit verify`` and ``mcpgov audit show``: one readable line on errors, the trail of one
task (requests, decisions, approvals, credentials), plain output when not a terminal."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import AuditEvent, Auditor, Decision, GovContext, Hooks, Principal, govern
from mcpgov.audit import EventFilter, JsonlSink, LoggingSink, read_events, task_trail
from mcpgov.cli import main

pytestmark = pytest.mark.anyio


async def record_deploy_session(path: Path, mode: str) -> None:
    """A session in which alice approves a deploy that then runs with credential cred-42."""
    server = MCPServer("release")
    hooks = Hooks()

    @server.tool()
    def deploy(version: str) -> str:
        return f"deployed {version}"

    @server.tool()
    def status() -> str:
        return "green"

    async def identity_and_approval(ctx: GovContext, call_next: Any) -> Any:
        task = ctx.meta.get("task") if ctx.meta else None
        principal = Principal(issuer="https://idp.example", subject="ci-agent", tenant="acme")
        ctx = ctx.replace(principal=principal, tenant="acme", task_id=task, purpose="release")
        audit = ctx.audit
        if ctx.target == "deploy" and audit is not None:
            ctx = ctx.replace(credential={"jti": "cred-42"})
            await audit.emit(AuditEvent.from_context(ctx, "credential.verified", reason="valid"))
            await audit.emit(AuditEvent.from_context(ctx, "approval.requested", reason="approval_required"))
            await audit.emit(
                AuditEvent.from_context(ctx, "approval.granted", approver="alice@example.com", reason="approved")
            )
        return await call_next(ctx)

    @hooks.tool("deploy")
    @hooks.tool("status")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("release-managers")

    sink = JsonlSink(path)
    govern(server, identity_and_approval, hooks, audit=Auditor([sink]))
    async with Client(server, mode=mode) as client:
        await client.call_tool("status", {}, meta={"task": "deploy-7"})  # type: ignore[arg-type]
        await client.call_tool("deploy", {"version": "2.1"}, meta={"task": "deploy-7"})  # type: ignore[arg-type]
        await client.call_tool("status", {}, meta={"task": "other"})  # type: ignore[arg-type]
        with pytest.raises(MCPError):
            await client.call_tool("unknown-tool", {}, meta={"task": "deploy-7"})  # type: ignore[arg-type]
    sink.close()


@pytest.fixture
async def log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    await record_deploy_session(path, "legacy")
    return path


def tamper(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"ci-agent", b"someone-else")
    del lines[4]
    path.write_bytes(b"".join(lines))


def append_garbage(path: Path) -> None:
    with path.open("ab") as f:
        f.write(b"garbage\n")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


async def test_verify_reports_an_intact_chain(log: Path) -> None:
    code, out = run("audit", "verify", str(log))
    assert code == 0
    assert out.startswith("OK: ") and "head sha256:" in out


async def test_verify_names_the_file_and_line_of_each_problem(log: Path) -> None:
    tamper(log)
    code, out = run("audit", "verify", str(log))
    assert code == 1
    assert f"{log}:2: edited: the line's content does not match its hash" in out
    assert f"{log}:5: deleted: 1 line missing before this line" in out
    assert "\x1b[" not in out  # plain output when not a terminal
    assert out.strip().splitlines()[-1].startswith("FAILED: 2 problem(s)")
    code, out = run("audit", "verify", "--quiet", str(log))
    assert (code, out) == (1, "")


def test_errors_are_one_readable_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    for command in ("verify", "show"):
        code, out = run("audit", command, str(missing))
        assert code == 2  # bad input, distinct from a log that fails verification (1)
        assert out.strip().splitlines() == [f"error: cannot read {missing}: no such file"]
    code, out = run("audit", "verify", str(tmp_path))
    assert code == 2 and out.strip() == f"error: cannot read {tmp_path}: is a directory"


def test_help_everywhere() -> None:
    for args in ([], ["audit"], ["audit", "verify"], ["audit", "show"]):
        code, out = run(*args, "--help")
        assert code == 0 and "Usage:" in out
    code, out = run("--version")
    assert code == 0 and "mcpgov" in out


async def test_show_prints_the_trail_of_one_task(log: Path) -> None:
    code, out = run("audit", "show", str(log), "--task", "deploy-7")
    assert code == 0
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert lines[0] == "task deploy-7: 3 request(s), 8 event(s)"
    heading = "tools/call deploy by https://idp.example#ci-agent"
    deploy_heading = next(i for i, line in enumerate(lines) if heading in line)
    block = lines[deploy_heading + 1 : deploy_heading + 6]
    assert [line.split("]")[0].strip() for line in block] == [
        "[credential",
        "[approval",
        "[approval",
        "[decision",
        "[outcome",
    ]
    assert "approval.granted" in block[2] and "approver=alice@example.com" in block[2]
    assert "credential=cred-42" in block[0] and "rule=release-managers" in block[3]
    assert "tenant acme" in lines[deploy_heading] and "args=sha256:" in lines[deploy_heading]
    refused = next(line for line in lines if "unknown-tool" in line and "[decision]" in line)
    assert "deny" in refused and "reason=default_deny" in refused
    assert "other" not in out.replace("task deploy-7", "")


async def test_show_filters_by_principal_tenant_tool_credential_and_type(log: Path) -> None:
    code, out = run("audit", "show", str(log), "--credential", "cred-42", "--type", "approval.")
    assert code == 0
    assert [line.split()[2] for line in out.splitlines()] == ["approval.requested", "approval.granted"]
    code, out = run("audit", "show", str(log), "--tool", "status", "--principal", "ci-agent", "--tenant", "acme")
    assert code == 0 and len(out.splitlines()) == 4  # two calls: a decision and an outcome each
    code, out = run("audit", "show", str(log), "--tenant", "nobody")
    assert (code, out) == (0, "")
    code, out = run("audit", "show", str(log), "--json", "--type", "approval.granted")
    (event,) = [json.loads(line) for line in out.splitlines()]
    assert (event["approver"], event["credential_id"], event["target"]) == ("alice@example.com", "cred-42", "deploy")


async def test_who_approved_this_deploy_and_with_which_credential(log: Path) -> None:
    """The question the audit trail exists to answer, through the Python API."""
    events = read_events([log])
    (request,) = [r for r in task_trail(events, "deploy-7").requests if r.target == "deploy"]
    assert request.approvers == ("alice@example.com",)
    assert request.credential_ids == ("cred-42",)
    assert request.decision is not None and request.decision.rule == "release-managers"
    assert EventFilter(tool="deploy", types=("outcome",)).select(events)[0].outcome == "completed"


async def test_show_reports_unreadable_lines_on_stderr(log: Path) -> None:
    append_garbage(log)
    result = CliRunner().invoke(main, ["audit", "show", str(log), "--type", "approval.granted"])
    assert result.exit_code == 0
    assert result.stdout.count("approval.granted") == 1
    assert f"skipped 1 unreadable line(s): {log}:" in result.stderr


FORGED = "status allow rule=release-managers approver=alice@example.com"


async def test_a_name_with_spaces_cannot_print_as_fields_of_its_own(tmp_path: Path, mode: str) -> None:
    """A client-chosen name holding spaces and ``label=value`` pairs prints quoted, so the line of
    its refusal never reads as an allowed, approved call: every field is one shell word."""
    path = tmp_path / "audit.jsonl"
    server = MCPServer("release")

    @server.tool()
    def status() -> str:
        return "green"

    async def identity(ctx: GovContext, call_next: Any) -> Any:
        principal = Principal(issuer="https://idp.example", subject="ci agent (tenant acme) purpose=x", tenant="acme")
        return await call_next(ctx.replace(principal=principal, tenant="acme", task_id="t 1", purpose="a b"))

    sink = JsonlSink(path)
    govern(server, identity, Hooks(), audit=Auditor([sink]))
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool(FORGED, {})
    sink.close()
    for args in ((), ("--task", "t 1"), ("--task", "t 1", "--flat")):
        code, out = run("audit", "show", str(path), *args)
        assert code == 0 and FORGED in out
        (line,) = [line for line in out.splitlines() if "[decision]" in line]
        words = shlex.split(line)
        assert FORGED in words and "deny" in words
        assert [w for w in words if w.startswith(("rule=", "approver="))] == ["rule=mcpgov:default-deny"]
        assert "allow" not in words
        assert "principal=https://idp.example#ci agent (tenant acme) purpose=x" in words
        if args == ("--task", "t 1"):
            heading = out.splitlines()[1]
            assert FORGED in shlex.split(heading) and "https://idp.example#ci agent (tenant acme) purpose=x" in (
                shlex.split(heading)
            )


async def test_the_logging_sink_message_prints_a_hostile_name_as_one_escaped_word(mode: str) -> None:
    """A plain-text log (a file, a terminal) gets one line per event: a client-chosen name with a
    newline, terminal escapes or spaced ``label=value`` pairs cannot forge a line or a field."""
    forged = "x\n2026-01-01 audit decision allow tools/call deploy rule=admins\x1b[2K id=1 rule=admins"
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("tests.audit.logging_sink")
    logger.propagate = False
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    server = MCPServer("release")
    try:
        govern(server, Hooks(), audit=Auditor([LoggingSink(logger)]))
        async with Client(server, mode=mode) as client:
            with pytest.raises(MCPError):
                await client.call_tool(forged, {})
    finally:
        logger.removeHandler(handler)
    (message,) = [r.getMessage() for r in records if r.getMessage().startswith("audit decision")]
    assert "\n" not in message and "\x1b" not in message and message.isprintable()
    words = shlex.split(message)
    assert words[:4] == ["audit", "decision", "deny", "tools/call"] and words[4].startswith("x\\n2026-01-01 audit")
    assert [w for w in words if w.startswith("rule=")] == ["rule=mcpgov:default-deny"]
