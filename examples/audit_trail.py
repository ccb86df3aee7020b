"""Audit trail: a governed server writes a tamper-evident log, and we answer
"who approved this deploy, and which credential did it use?".

Runs in-process (no network), writes only under a temporary directory, and exits non-zero if
anything is not as expected.

Run:  python examples/audit_trail.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import AuditEvent, Auditor, Decision, GovContext, Hooks, Principal, govern
from mcpgov.audit import JsonlSink, QueuedSink, Redactor, read_events, task_trail, verify_chain

# A token-shaped value planted in an argument, to show it never reaches the log.
PLANTED_TOKEN = ".".join(("eyJhbGciOiJFUzI1NiJ9", "eyJzdWIiOiJjaS1hZ2VudCJ9", "c2lnbmF0dXJl"))


def build_server(auditor: Auditor) -> MCPServer:
    server = MCPServer("release")
    hooks = Hooks()

    @server.tool()
    def deploy(version: str, note: str = "") -> str:
        return f"deployed {version}"

    @server.tool()
    def drop_database() -> str:
        return "dropped"

    async def caller_and_approval(ctx: GovContext, call_next: Any) -> Any:
        # Stand-ins for the identity, credential and approval stages: who is calling, with which
        # credential, and who approved.
        principal = Principal(issuer="https://idp.example", subject="ci-agent", tenant="acme")
        ctx = ctx.replace(principal=principal, tenant="acme", task_id="deploy-7", purpose="release")
        audit = ctx.audit
        if ctx.target == "deploy" and audit is not None:
            ctx = ctx.replace(credential={"jti": "cred-42"})
            await audit.emit(AuditEvent.from_context(ctx, "credential.verified", reason="valid"))
            await audit.emit(
                AuditEvent.from_context(ctx, "approval.granted", approver="alice@example.com", reason="approved")
            )
        return await call_next(ctx)

    @hooks.tool("deploy")
    def release_managers(ctx: GovContext) -> Decision:
        return Decision.allow("release-managers", redact=("note",))

    @hooks.tool("drop_database")
    def never(ctx: GovContext) -> Decision:
        return Decision.deny("no-drops", "databases are not dropped by agents", "forbidden")

    govern(server, caller_and_approval, hooks, audit=auditor)
    return server


async def main(directory: Path) -> list[str]:
    problems: list[str] = []
    log = directory / "audit.jsonl"
    file_sink = JsonlSink(log)
    auditor = Auditor([QueuedSink(file_sink)], strict=True, redactor=Redactor(record_arguments=True))
    server = build_server(auditor)
    async with Client(server) as client:
        await client.call_tool("deploy", {"version": "2.1", "note": f"token {PLANTED_TOKEN}"})
        try:
            await client.call_tool("drop_database", {})
            problems.append("drop_database was not refused")
        except MCPError as exc:
            print(f"refused as expected: {exc.error.message} (data {exc.error.data})")
    await auditor.aclose()

    report = verify_chain([log])
    print(f"chain: {'intact' if report.ok else 'BROKEN'}, {report.lines} lines, head {report.head}")
    if not report.ok:
        problems.append(f"fresh log does not verify: {report.problems}")

    (deploy,) = [r for r in task_trail(read_events([log]), "deploy-7").requests if r.target == "deploy"]
    print(f"who approved the deploy: {deploy.approvers}; with credential: {deploy.credential_ids}")
    if deploy.approvers != ("alice@example.com",) or deploy.credential_ids != ("cred-42",):
        problems.append("the trail does not name the approver and credential")
    if PLANTED_TOKEN in log.read_text():
        problems.append("a token reached the log")

    # Tamper with a copy: turn the refusal into an allow. Verification must say where.
    tampered = directory / "tampered.jsonl"
    tampered.write_text(log.read_text().replace('"effect":"deny"', '"effect":"allow"'))
    found = verify_chain([tampered]).problems
    for problem in found:
        print(f"tampering detected: {problem}")
    if not found:
        problems.append("an edited line was not detected")
    return problems


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        failures = anyio.run(main, Path(tmp))
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    sys.exit(1 if failures else 0)
