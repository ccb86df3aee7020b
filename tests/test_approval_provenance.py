"""Approval provenance through real sessions: refusals and timeouts are deny events naming the
caller and the approver (or the timeout); a grant is recorded only for the caller it covered;
another caller's replay of an elicited approval neither is credited nor consumes it; task
trails never merge two agents whose request ids repeat."""

from __future__ import annotations

from typing import Any, cast

import pytest
from mcp import Client, MCPError
from mcp_types import ElicitResult

from mcpgov import GovContext, Principal
from mcpgov._state import InMemoryStateStore
from mcpgov.approval import ApprovalQueue, CallbackApprover, ElicitationApprover
from mcpgov.audit import request_keys, task_trail
from tests.test_approval import Deploys, _elicitation

pytestmark = pytest.mark.anyio

PEOPLE = {
    "alice": Principal(issuer="https://idp.example", subject="alice-agent", tenant="acme"),
    "mallory": Principal(issuer="https://idp.example", subject="mallory-agent", tenant="acme"),
}


async def caller_in_meta(ctx: GovContext, call_next: Any) -> Any:
    """A stand-in for identity middleware: the caller named in ``_meta``."""
    who = PEOPLE[str(ctx.meta.get("who", "alice"))]
    return await call_next(ctx.replace(principal=who, tenant=who.tenant, task_id=f"task-{who.subject}"))


class Stack(Deploys):
    def __init__(self, approver: Any, **options: Any) -> None:
        super().__init__(approver, before=[request_keys, caller_in_meta], **options)


async def test_a_timeout_is_a_deny_naming_the_caller_and_the_timeout(mode: str) -> None:
    stack = Stack(ApprovalQueue(), deadline=0.05)
    async with Client(stack.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.code == -32004
    (decision,) = stack.sink.decisions()
    assert (decision.effect, decision.reason) == ("deny", "approval_timeout")
    assert decision.principal == PEOPLE["alice"].id and decision.tenant == "acme" and decision.task_id
    (refused,) = stack.sink.of_type("approval.refused")
    assert refused.effect == "deny" and refused.reason == "approval_timeout" and "deadline" in (refused.detail or "")
    assert refused.principal == PEOPLE["alice"].id
    assert stack.ran == []


async def test_a_refusal_is_a_deny_naming_the_caller_and_the_approver(mode: str) -> None:
    stack = Stack(CallbackApprover(lambda r: False, name="bob@example.com"))
    async with Client(stack.server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("deploy", {"version": "1"})
    (decision,) = stack.sink.decisions()
    assert (decision.effect, decision.reason) == ("deny", "approval_refused")
    assert decision.principal == PEOPLE["alice"].id and "bob@example.com" in (decision.detail or "")
    (refused,) = stack.sink.of_type("approval.refused")
    assert (refused.effect, refused.approver, refused.principal) == ("deny", "bob@example.com", PEOPLE["alice"].id)
    assert stack.sink.of_type("approval.granted") == []


async def test_a_grant_is_recorded_for_the_caller_it_covered(mode: str) -> None:
    stack = Stack(CallbackApprover(lambda r: True, name="carol@example.com"))
    async with Client(stack.server, mode=mode) as client:
        await client.call_tool("deploy", {"version": "2"})
    (granted,) = stack.sink.of_type("approval.granted")
    assert (granted.approver, granted.principal) == ("carol@example.com", PEOPLE["alice"].id)
    (decision,) = stack.sink.decisions()
    assert decision.request_key and decision.request_key == granted.request_key


async def test_another_callers_replay_is_refused_uncredited_and_does_not_consume_the_approval() -> None:
    stack = Stack(ElicitationApprover(store=InMemoryStateStore()), deadline=5)
    approve = {"mcpgov.approval": ElicitResult(action="accept", content={"approve": True})}
    asked: list[str] = []
    async with Client(stack.server, mode="auto", elicitation_callback=_elicitation("accept", True, asked)) as client:
        first = await client.session.call_tool("deploy", {"version": "9"}, allow_input_required=True)
        state = getattr(first, "request_state", None)
        assert state is not None
        with pytest.raises(MCPError):  # mallory replays alice's approval
            await client.session.call_tool(
                "deploy",
                {"version": "9"},
                input_responses=approve,  # type: ignore[arg-type]
                request_state=state,
                meta=cast(Any, {"who": "mallory"}),
                allow_input_required=True,
            )
        assert stack.sink.of_type("approval.granted") == []  # nothing credited to anyone
        (refusal,) = [d for d in stack.sink.decisions() if d.effect == "deny"]
        assert refusal.principal == PEOPLE["mallory"].id and refusal.reason == "approval_mismatch"
        ok = await client.session.call_tool(  # alice's approval is still there for alice
            "deploy",
            {"version": "9"},
            input_responses=approve,  # type: ignore[arg-type]
            request_state=state,
            allow_input_required=True,
        )
        assert getattr(ok, "is_error", None) is False
    assert stack.ran == ["9"]
    (granted,) = stack.sink.of_type("approval.granted")
    assert granted.principal == PEOPLE["alice"].id


async def test_task_trails_never_merge_two_agents_with_the_same_request_ids(mode: str) -> None:
    stack = Stack(CallbackApprover(lambda r: True, name="ops"))
    async with Client(stack.server, mode=mode) as alice, Client(stack.server, mode=mode) as mallory:
        await alice.call_tool("deploy", {"version": "a"})
        await mallory.call_tool("deploy", {"version": "m"}, meta=cast(Any, {"who": "mallory"}))
    events = stack.sink.events
    for who in ("alice", "mallory"):
        trail = task_trail(events, f"task-{PEOPLE[who].subject}")
        for request in trail.requests:
            assert {e.principal for e in request.events if e.principal} == {PEOPLE[who].id}
    # Without request keys, caller-distinct grouping still keeps them apart.
    stripped = [e.with_values(request_key=None, session_id=None) for e in events]
    same_task = [e.with_values(task_id="shared") for e in stripped]
    for request in task_trail(same_task, "shared").requests:
        assert len({e.principal for e in request.events if e.principal}) <= 1
