"""Nobody approves their own request: an answer whose approver is the requesting principal
itself (its subject or ``issuer#subject``, in any case or compatibility spelling) is refused,
denied and recorded with the reason, whichever approver carried it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client, MCPError

from mcpgov import ConfigurationError, Principal
from mcpgov.approval import (
    ApprovalAnswer,
    ApprovalMismatch,
    ApprovalQueue,
    ApprovalRequest,
    CallbackApprover,
)
from tests.test_approval import Deploys, acting_as

pytestmark = pytest.mark.anyio

ALICE = Principal(issuer="https://idp.example", subject="alice-agent", tenant="acme")

SELF = [
    "alice-agent",
    "https://idp.example#alice-agent",
    "ALICE-AGENT",
    " alice-agent ",
    "\uff41lice-agent",  # a fullwidth a (NFKC: "a")
]


class Stack(Deploys):
    def __init__(self, approver: Any) -> None:
        super().__init__(approver, before=[acting_as(ALICE)], deadline=30)

    def assert_refused_as_self(self, approver: str) -> None:
        assert self.ran == []
        (decision,) = self.sink.decisions()
        assert (decision.effect, decision.reason) == ("deny", "approval_self")
        assert decision.principal == ALICE.id
        (refused,) = self.sink.of_type("approval.refused")
        assert (refused.reason, refused.approver) == ("approval_self", approver)
        assert self.sink.of_type("approval.granted") == []


@pytest.mark.parametrize("approver", SELF)
async def test_a_callback_named_after_the_requester_cannot_approve(mode: str, approver: str) -> None:
    stack = Stack(CallbackApprover(lambda r: True, name=approver))
    async with Client(stack.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.code == -32003
    stack.assert_refused_as_self(approver)


@pytest.mark.parametrize("approver", SELF)
async def test_an_answer_naming_the_requester_cannot_approve(mode: str, approver: str) -> None:
    def answer(request: ApprovalRequest) -> ApprovalAnswer:
        return ApprovalAnswer(request.id, True, approver)

    stack = Stack(CallbackApprover(answer, name="ops@example.com"))
    async with Client(stack.server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("deploy", {"version": "1"})
    stack.assert_refused_as_self(approver)


@pytest.mark.parametrize("approver", SELF)
async def test_the_requester_cannot_answer_its_own_request_in_the_queue(mode: str, approver: str) -> None:
    queue = ApprovalQueue()
    stack = Stack(queue)
    async with Client(stack.server, mode=mode) as client, anyio.create_task_group() as tg:

        async def call() -> None:
            with pytest.raises(MCPError):
                await client.call_tool("deploy", {"version": "1"})

        tg.start_soon(call)
        request = await queue.next_request()
        with pytest.raises(ApprovalMismatch) as caught:
            queue.answer(request.id, approved=True, approver=approver)
        assert caught.value.reason == "self_approval"
        queue.answer(request.id, approved=False, approver="ops@example.com")
    assert stack.ran == []


async def test_another_person_still_approves(mode: str) -> None:
    stack = Stack(CallbackApprover(lambda r: True, name="alice-agent-manager"))
    async with Client(stack.server, mode=mode) as client:
        assert (await client.call_tool("deploy", {"version": "1"})).is_error is False
    assert stack.ran == ["1"]


def test_configuration_still_needs_a_name() -> None:
    with pytest.raises(ConfigurationError):
        CallbackApprover(lambda r: True, name="")
