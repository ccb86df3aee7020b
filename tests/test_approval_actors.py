"""An approval is bound to whom the caller acts for: a workload acting for one party cannot use
an approval given for its request on behalf of another (nor for itself, nor through a longer or
reordered actor chain), in the in-band flow, the operator flow and the grant itself."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp_types import ElicitResult

from mcpgov import Actor, Decision, GovContext, InMemoryStateStore, Principal
from mcpgov._arguments import ArgumentLimits, freeze_and_hash
from mcpgov.approval import ApprovalGrant, ApprovalQueue, ApprovalRequest, ElicitationApprover, action_key

from .test_approval import Deploys, _elicitation

pytestmark = pytest.mark.anyio

IDP = "https://id.example"


def workload(*acting_for: Actor) -> Principal:
    return Principal(IDP, "agent", tenant="acme", actors=acting_for)


ALICE = Actor("alice", IDP)
BOB = Actor("bob", IDP)
CAROL = Actor("carol", IDP)
CHAINS: dict[str, tuple[Actor, ...]] = {
    "bob": (BOB,),
    "nobody": (),
    "alice-then-carol": (ALICE, CAROL),
    "carol-then-alice": (CAROL, ALICE),
    "alice-other-issuer": (Actor("alice", "https://other.example"),),
    "alice-no-issuer": (Actor("alice"),),
}


class Switchable:
    """An identity stand-in whose principal the test switches between requests."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    async def __call__(self, ctx: GovContext, call_next: Any) -> Any:
        return await call_next(ctx.replace(principal=self.principal, tenant=self.principal.tenant))


@pytest.mark.parametrize("other", sorted(CHAINS))
async def test_an_in_band_approval_for_one_party_does_not_run_the_call_for_another(other: str) -> None:
    who = Switchable(workload(ALICE))
    d = Deploys(ElicitationApprover(store=InMemoryStateStore()), before=[who], deadline=5)
    approve = {"mcpgov.approval": ElicitResult(action="accept", content={"approve": True})}

    async with Client(d.server, mode="auto", elicitation_callback=_elicitation("accept", True, [])) as client:
        first = await client.session.call_tool("deploy", {"version": "7"}, allow_input_required=True)
        state = getattr(first, "request_state", None)
        assert state is not None
        who.principal = workload(*CHAINS[other])
        with pytest.raises(MCPError):
            await client.session.call_tool(
                "deploy",
                {"version": "7"},
                input_responses=approve,  # type: ignore[arg-type]
                request_state=state,
                allow_input_required=True,
            )
        assert d.ran == []
        who.principal = workload(ALICE)
        ok = await client.session.call_tool(
            "deploy",
            {"version": "7"},
            input_responses=approve,  # type: ignore[arg-type]
            request_state=state,
            allow_input_required=True,
        )
        assert getattr(ok, "is_error", None) is False
    assert d.ran == ["7"]


async def test_the_operator_sees_whom_the_caller_acts_for(mode: str) -> None:
    queue = ApprovalQueue()
    d = Deploys(queue, before=[Switchable(workload(ALICE, CAROL))], deadline=5)
    results: list[Any] = []

    async def agent(client: Client) -> None:
        results.append(await client.call_tool("deploy", {"version": "8"}))

    async with Client(d.server, mode=mode) as client, anyio.create_task_group() as tg:
        tg.start_soon(agent, client)
        with anyio.fail_after(5):
            request = await queue.next_request()
        assert request.acting_for == (f"{IDP}#alice", f"{IDP}#carol")
        text = request.describe()
        assert f'acting for "{IDP}#alice", who acts for "{IDP}#carol"' in text
        queue.answer(request.id, approved=True, approver="ops@example.com", args_hash=request.args_hash)
    assert results[0].is_error is False
    assert d.ran == ["8"]


def _ctx(principal: Principal) -> GovContext:
    arguments, digest = freeze_and_hash({"version": "9"}, ArgumentLimits())
    return GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="deploy",
        action="execute",
        arguments=arguments,
        args_hash=digest,
        principal=principal,
        tenant="acme",
        task_id="T1",
    )


# Lookalikes of one another (case, padding, fullwidth letters, quotes, separators a naive
# rendering of a chain would confuse): each is a party of its own.
SUBJECTS = ["alice", "bob", "Alice", "alice ", "\uff41\uff4c\uff49\uff43\uff45", '"alice"', "a,b", "alice>bob"]
actors = st.lists(
    st.builds(
        Actor,
        st.sampled_from(SUBJECTS),
        st.sampled_from([None, IDP, "https://other.example", f"{IDP}/"]),
    ),
    max_size=3,
).map(tuple)


@settings(max_examples=200)
@given(first=actors, second=actors)
def test_a_grant_covers_a_request_only_for_the_same_actor_chain(
    first: tuple[Actor, ...], second: tuple[Actor, ...]
) -> None:
    """Property: a grant given for the request of a workload acting for ``first`` covers the same
    request acting for ``second`` exactly when the two chains are the same chain."""
    decision = Decision.require_approval("r")
    request = ApprovalRequest.for_context(_ctx(workload(*first)), decision, ttl=60, now=100.0)
    grant = ApprovalGrant(request=request, approver="ops", expires_at=160.0, clock=lambda: 110.0)
    assert (action_key(_ctx(workload(*second))) == request.action) is (first == second)
    assert grant.covers(_ctx(workload(*second)), decision) is (first == second)
