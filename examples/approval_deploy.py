"""A deploy tool that waits for a human.

The server's policy says deploys need approval. An operator watches the approval queue (here a
task in the same process standing in for a person at `GET /approvals`), approves the first
deploy after checking its arguments, and refuses the second. The audit trail shows who
approved what.

Run:  python examples/approval_deploy.py
"""

from __future__ import annotations

import anyio
from mcp import MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import AuditEvent, Decision, GovContext, GovernedClient, Hooks, govern
from mcpgov.approval import ApprovalMiddleware, ApprovalQueue

server = MCPServer("release-tools")
hooks = Hooks()
queue = ApprovalQueue()
trail: list[AuditEvent] = []
deployed: list[str] = []


@hooks.tool("deploy")
def deploys_need_a_human(ctx: GovContext) -> Decision:
    return Decision.require_approval("prod-deploys", "production deploys need a release manager")


@server.tool()
def deploy(version: str) -> str:
    """Deploy a version to production."""
    deployed.append(version)
    return f"deployed {version}"


govern(server, ApprovalMiddleware(queue, deadline=10), hooks, audit=trail.append)


async def operator() -> None:
    """A release manager answering the queue (what `POST /approvals/{id}` does over HTTP)."""
    for approve in (True, False):
        request = await queue.next_request()
        print(f"operator sees: {request.describe()}")
        queue.answer(request.id, approved=approve, approver="rita@example.com", args_hash=request.args_hash)


async def main() -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(operator)
        async with GovernedClient(server) as agent:
            print((await agent.call_tool("deploy", {"version": "2.4.0"})).content[0].text)  # type: ignore[union-attr]
            try:
                await agent.call_tool("deploy", {"version": "2.5.0-rc1"})
            except MCPError as refused:
                print(f"second deploy refused: {refused.message}")
    print("\naudit trail:")
    for event in trail:
        print(f"  {event.type:<18} {event.target or '-':<8} {event.effect or '':<6} approver={event.approver}")
    if deployed != ["2.4.0"]:
        raise SystemExit(f"unexpected deploys: {deployed}")
    if [e.approver for e in trail if e.type == "approval.granted"] != ["rita@example.com"]:
        raise SystemExit("the approval was not recorded with its approver")


if __name__ == "__main__":
    anyio.run(main)
