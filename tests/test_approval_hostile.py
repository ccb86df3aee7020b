"""Human approval against hostile approvers, answers and prompts, through real sessions."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, GovContext, Hooks, govern
from mcpgov.approval import ApprovalMiddleware, ApprovalRequest, CallbackApprover
from mcpgov.testing import InMemoryAuditSink

pytestmark = pytest.mark.anyio


class Deploys:
    """A server whose deploy tool requires approval, with what ran and the audit trail."""

    def __init__(self, approver: Any, **middleware_options: Any) -> None:
        self.server = MCPServer("deployer")
        self.ran: list[Any] = []
        self.sink = InMemoryAuditSink()
        hooks = Hooks()

        @hooks.tool("deploy")
        def needs_approval(ctx: GovContext) -> Decision:
            return Decision.require_approval("deploys-need-approval", "production change")

        @self.server.tool()
        def deploy(version: str, note: str = "") -> str:
            self.ran.append((version, note))
            return f"deployed {version}"

        govern(self.server, ApprovalMiddleware(approver, **middleware_options), hooks, audit=self.sink)


async def test_an_answer_given_after_the_deadline_does_not_approve(mode: str) -> None:
    """An approver that ignores the deadline's cancellation and approves late approves nothing."""

    async def late(request: ApprovalRequest) -> bool:
        try:
            await anyio.sleep(5)
        except anyio.get_cancelled_exc_class():
            return True  # swallows the cancellation and answers yes, too late
        return True

    d = Deploys(CallbackApprover(late, name="late-approver"), deadline=0.05)
    async with Client(d.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.code == -32004
    assert d.ran == []
    assert d.sink.decisions()[0].reason == "approval_timeout"
    assert d.sink.of_type("approval.granted") == []
