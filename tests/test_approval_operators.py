"""An operator answers only their own tenants' approval requests: over the operator API and in
process, another tenant's request is neither listed nor answerable (refused exactly as an unknown
one), whatever spelling of the tenant the request carries."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client, MCPError

from mcpgov import ConfigurationError, Principal
from mcpgov.approval import ApprovalMismatch, ApprovalQueue, ApprovalRequest, Operator
from mcpgov.testing import serve_http

from .test_approval import Deploys, acting_as

pytestmark = pytest.mark.anyio

OPERATORS: dict[str, Operator | str] = {
    "Bearer acme-ops": Operator("carol@acme.example", tenants={"acme"}),
    "Bearer globex-ops": Operator("dave@globex.example", tenants=["globex"]),
    "Bearer nobody-ops": Operator("erin@example.com", tenants=()),
    "Bearer root-ops": "root@example.com",
}


def authenticate(request: Any) -> Operator | str | None:
    return OPERATORS.get(request.headers.get("authorization", ""))


class Stack(Deploys):
    """A server whose deploy tool needs approval, called by an agent of ``tenant``."""

    def __init__(self, queue: ApprovalQueue, tenant: str | None) -> None:
        agent = Principal(issuer="https://idp.example", subject="agent-1", tenant=tenant)
        super().__init__(queue, before=[acting_as(agent)], deadline=3)


async def _pending_call(tenant: str | None, mode: str, operator_work: Any) -> Stack:
    """Run one call needing approval by an agent of ``tenant`` while ``operator_work(queue,
    request)`` runs against the pending request; return the stack afterwards."""
    queue = ApprovalQueue()
    stack = Stack(queue, tenant)
    outcome: list[Any] = []

    async def agent(client: Client) -> None:
        try:
            outcome.append(await client.call_tool("deploy", {"version": "9"}))
        except MCPError as exc:
            outcome.append(exc)

    async with Client(stack.server, mode=mode) as client, anyio.create_task_group() as tg:
        tg.start_soon(agent, client)
        with anyio.fail_after(5):
            request = await queue.next_request()
        await operator_work(queue, request)
    return stack


@pytest.mark.parametrize("tenant", ["globex", "ACME", "acme ", "\uff41cme", None])
async def test_an_operator_of_acme_sees_and_answers_no_other_tenants_request(mode: str, tenant: str | None) -> None:
    async def work(queue: ApprovalQueue, request: ApprovalRequest) -> None:
        async with serve_http(queue.asgi_app(authenticate)) as api, httpx.AsyncClient(base_url=api) as http:
            acme = {"Authorization": "Bearer acme-ops"}
            assert (await http.get("/approvals", headers=acme)).json() == []
            answered = await http.post(
                f"/approvals/{request.id}", json={"approve": True, "args_hash": request.args_hash}, headers=acme
            )
            unknown = await http.post("/approvals/no-such-id", json={"approve": True}, headers=acme)
            # refused exactly as an unknown request: the answer reveals nothing of the other tenant
            assert (
                (answered.status_code, answered.json())
                == (unknown.status_code, unknown.json())
                == (
                    409,
                    {"error": "unknown_request"},
                )
            )
            with pytest.raises(ApprovalMismatch) as caught:
                queue.answer(request.id, approved=True, approver=OPERATORS["Bearer acme-ops"])
            assert caught.value.reason == "unknown_request"
            # the request is still pending: the refusal spent nothing, and root (every tenant) refuses it
            root = {"Authorization": "Bearer root-ops"}
            (listed,) = (await http.get("/approvals", headers=root)).json()
            assert listed["id"] == request.id
            refused = await http.post(f"/approvals/{request.id}", json={"approve": False}, headers=root)
            assert refused.status_code == 200

    stack = await _pending_call(tenant, mode, work)
    assert stack.ran == []
    refusals = [(e.approver, e.reason) for e in stack.sink.of_type("approval.refused")]
    assert refusals == [("root@example.com", "approval_refused")]
    assert stack.sink.of_type("approval.granted") == []


async def test_an_operator_of_the_requests_tenant_approves_it(mode: str) -> None:
    async def work(queue: ApprovalQueue, request: ApprovalRequest) -> None:
        async with serve_http(queue.asgi_app(authenticate)) as api, httpx.AsyncClient(base_url=api) as http:
            for other in ("Bearer globex-ops", "Bearer nobody-ops"):
                assert (await http.get("/approvals", headers={"Authorization": other})).json() == []
            acme = {"Authorization": "Bearer acme-ops"}
            (listed,) = (await http.get("/approvals", headers=acme)).json()
            assert (listed["id"], listed["tenant"]) == (request.id, "acme")
            ok = await http.post(
                f"/approvals/{request.id}", json={"approve": True, "args_hash": request.args_hash}, headers=acme
            )
            assert ok.json() == {"answered": request.id, "approver": "carol@acme.example"}

    stack = await _pending_call("acme", mode, work)
    assert stack.ran == ["9"]
    assert [e.approver for e in stack.sink.of_type("approval.granted")] == ["carol@acme.example"]


async def test_an_operator_object_answers_in_process_only_for_its_tenants(mode: str) -> None:
    async def work(queue: ApprovalQueue, request: ApprovalRequest) -> None:
        globex = Operator("dave@globex.example", tenants=["globex"])
        acme = Operator("carol@acme.example", tenants=["acme", "initech"])
        assert queue.pending(globex) == []
        assert queue.pending(acme) == [request] == queue.pending()
        with pytest.raises(ApprovalMismatch):
            queue.answer(request.id, approved=True, approver=globex)
        queue.answer(request.id, approved=True, approver=acme, args_hash=request.args_hash)

    stack = await _pending_call("acme", mode, work)
    assert stack.ran == ["9"]
    assert [e.approver for e in stack.sink.of_type("approval.granted")] == ["carol@acme.example"]


async def test_an_authenticator_that_returns_something_else_authenticates_nobody() -> None:
    queue = ApprovalQueue()
    answers: list[Any] = [b"carol", 42, "", Operator, ["carol"], None]

    def authenticate(request: Any) -> Any:
        return answers.pop(0)

    async with serve_http(queue.asgi_app(authenticate)) as api, httpx.AsyncClient(base_url=api) as http:
        while answers:
            assert (await http.get("/approvals")).status_code == 401


@given(
    tenants=st.one_of(st.none(), st.frozensets(st.sampled_from(["acme", "globex", "Acme", "acme\u200b"]))),
    request_tenant=st.one_of(st.none(), st.sampled_from(["acme", "globex", "Acme", "acme\u200b", "initech"])),
)
def test_an_operator_answers_exactly_the_requests_of_its_tenants(
    tenants: frozenset[str] | None, request_tenant: str | None
) -> None:
    request = ApprovalRequest(
        id="r",
        action=(
            "tools/call",
            "tool",
            "deploy",
            None,
            "https://idp.example",
            "agent-1",
            request_tenant,
            None,
            None,
            None,
        ),
        method="tools/call",
        kind="tool",
        target="deploy",
        args_hash=None,
        principal="https://idp.example#agent-1",
        tenant=request_tenant,
        task_id=None,
        purpose=None,
        rule="r",
        reason="",
        requested_at=0,
        expires_at=10,
    )
    operator = Operator("ops", tenants)
    expected = tenants is None or (request_tenant is not None and request_tenant in tenants)
    assert operator.answers_for(request) is expected


@pytest.mark.parametrize(
    ("name", "tenants"),
    [("", None), (None, None), ("ops", "acme"), ("ops", b"acme"), ("ops", [""]), ("ops", [1]), ("ops", 3)],
)
def test_a_malformed_operator_is_refused(name: Any, tenants: Any) -> None:
    with pytest.raises(ConfigurationError):
        Operator(name, tenants)
