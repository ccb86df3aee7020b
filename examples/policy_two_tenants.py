"""Policy as code for a two-tenant deployment, end to end, in one process.

One file server is shared by two tenants (acme and globex). Its policy
(``examples/policies/two_tenants.yaml``) keeps each tenant to its own folder and payroll,
refuses path tricks, requires a scope for writes, rate-limits search and stops a task that read
payroll data from sending mail. Agents of both tenants list and call tools; every outcome is
checked, and the script exits non-zero if any is not what the policy says.

The caller's identity would come from identity middleware (verified tokens); here a small
stand-in middleware maps a name in the request's ``_meta`` to a principal and its tenant.

Run:  python examples/policy_two_tenants.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import anyio
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp_types import RequestParamsMeta

from mcpgov import CallNext, GovContext, Principal, govern
from mcpgov.policy import PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

POLICY = Path(__file__).parent / "policies" / "two_tenants.yaml"

AGENTS = {
    "acme-agent": Principal(
        "https://idp.acme.example", "agent-1", tenant="acme", claims={"scope": "files:read files:write"}
    ),
    "globex-agent": Principal("https://idp.globex.example", "agent-9", tenant="globex", claims={"scope": "files:read"}),
}


class DemoIdentity:
    """Stand-in for identity middleware: the caller named in ``_meta`` and its verified tenant."""

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        principal = AGENTS.get(str(ctx.meta.get("example/agent")))
        task = ctx.meta.get("example/task")
        purpose = ctx.meta.get("example/purpose")
        return await call_next(
            ctx.replace(
                principal=principal,
                tenant=principal.tenant if principal else None,
                task_id=task if isinstance(task, str) else None,
                purpose=purpose if isinstance(purpose, str) else None,
            )
        )


server = MCPServer("shared-files")


@server.tool()
def read_file(path: str) -> str:
    """Read a file."""
    return f"<contents of {path}>"


@server.tool()
def write_file(path: str, content: str) -> str:
    """Write a file."""
    return "written"


@server.tool()
def send_email(tenant_mailbox: str, body: str) -> str:
    """Send mail to a tenant's own mailbox."""
    return "sent"


@server.tool()
def search(query: str) -> str:
    """Search the tenant's documents."""
    return "results"


@server.resource("payroll://acme/{month}")
def acme_payroll(month: str) -> str:
    return f"acme payroll {month}"


@server.resource("payroll://globex/{month}")
def globex_payroll(month: str) -> str:
    return f"globex payroll {month}"


policy = PolicyMiddleware(POLICY)
trail = InMemoryAuditSink()
govern(server, DemoIdentity(), policy, audit=trail)

failures: list[str] = []


def expect(condition: bool, what: str) -> None:
    print(f"  [{'ok' if condition else 'FAIL'}] {what}")
    if not condition:
        failures.append(what)


def as_(agent: str, **extra: str) -> RequestParamsMeta:
    """The request ``_meta`` naming the calling agent (and its task and purpose)."""
    return cast("RequestParamsMeta", {"example/agent": agent, **{f"example/{k}": v for k, v in extra.items()}})


async def refused(call: Any) -> bool:
    try:
        await call
    except MCPError as exc:
        return exc.code == -32003
    return False


async def main() -> None:
    async with Client(server) as client:
        print("listings")
        acme = {t.name for t in (await client.list_tools(meta=as_("acme-agent"))).tools}
        globex = {t.name for t in (await client.list_tools(meta=as_("globex-agent"))).tools}
        expect(acme == {"read_file", "write_file", "send_email", "search"}, f"acme sees {sorted(acme)}")
        expect(globex == {"read_file", "send_email", "search"}, f"globex sees {sorted(globex)} (no write scope)")

        print("tenant isolation and paths")
        ok = await client.call_tool("read_file", {"path": "/srv/acme/plan.txt"}, meta=as_("acme-agent"))
        expect(not ok.is_error, "acme reads its own file")
        for path in (
            "/srv/globex/plan.txt",
            "/srv/acme/../globex/plan.txt",
            "/srv/acme/%2e%2e/globex",
            "/srv/acme-old",
        ):
            denied = await refused(client.call_tool("read_file", {"path": path}, meta=as_("acme-agent")))
            expect(denied, f"acme cannot read {path!r}")
        denied = await refused(
            client.call_tool("write_file", {"path": "/srv/globex/x", "content": "c"}, meta=as_("globex-agent"))
        )
        expect(denied, "globex cannot write without the files:write scope")

        print("task history: no mail after reading payroll")
        task = as_("acme-agent", task="close-month", purpose="payroll-run")
        sent = await client.call_tool("send_email", {"tenant_mailbox": "acme", "body": "started"}, meta=task)
        expect(not sent.is_error, "mail before touching payroll is fine")
        payroll = await client.read_resource("payroll://acme/2025-06", meta=task)
        expect(bool(payroll.contents), "acme reads its payroll for a payroll run")
        denied = await refused(client.call_tool("send_email", {"tenant_mailbox": "acme", "body": "numbers"}, meta=task))
        expect(denied, "the same task may not send mail afterwards")
        try:
            await client.read_resource("payroll://acme/2025-06", meta=as_("globex-agent", purpose="payroll-run"))
            expect(False, "globex cannot read acme payroll")
        except MCPError:
            expect(True, "globex cannot read acme payroll")

        print("rate limit")
        outcomes = [
            not await refused(client.call_tool("search", {"query": "q"}, meta=as_("globex-agent"))) for _ in range(4)
        ]
        expect(outcomes == [True, True, True, False], "search: three calls a minute per agent")

    print("explain")
    ctx = GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="read_file",
        action="execute",
        arguments=MappingProxyType({"path": "/srv/acme/../globex/x"}),
        principal=AGENTS["acme-agent"],
        tenant="acme",
    )
    explanation = await policy.explain(ctx)
    print("  " + str(explanation).replace("\n", "\n  "))
    expect(not explanation.decision.allowed, "explain agrees: the traversal is denied")

    rules = sorted({e.rule for e in trail.decisions() if e.effect == "deny" and e.rule})
    print(f"audit: {len(trail.decisions())} decisions; denying rules: {rules}")
    expect("no-exfiltration" in rules and "search" in rules, "the audit trail names the deciding rules")


anyio.run(main)
if failures:
    print(f"{len(failures)} expectation(s) failed", file=sys.stderr)
    sys.exit(1)
print("all expectations met")
