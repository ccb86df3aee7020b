"""Human approval through real sessions: granted, refused, timed out, replayed, and by elicitation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, MCPError
from mcp.client.context import ClientRequestContext
from mcp.server.mcpserver import MCPServer
from mcp_types import ElicitRequestParams, ElicitResult, ErrorData

from mcpgov import ConfigurationError, Decision, GovContext, Hooks, InMemoryStateStore, Principal, govern
from mcpgov.approval import (
    ApprovalAnswer,
    ApprovalMiddleware,
    ApprovalMismatch,
    ApprovalQueue,
    ApprovalRequest,
    CallbackApprover,
    ElicitationApprover,
)
from mcpgov.testing import InMemoryAuditSink, serve_http

pytestmark = pytest.mark.anyio


def acting_as(principal: Principal) -> Any:
    """A stand-in for identity middleware: every request comes from ``principal`` (and its tenant)."""

    async def identity(ctx: GovContext, call_next: Any) -> Any:
        return await call_next(ctx.replace(principal=principal, tenant=principal.tenant))

    return identity


class Deploys:
    """A server whose deploy tool requires approval, with what ran and the audit trail.

    ``before``: stages ahead of the approval stage (an identity stand-in, say)."""

    def __init__(self, approver: Any, *, before: Sequence[Any] = (), **middleware_options: Any) -> None:
        self.server = MCPServer("deployer")
        self.ran: list[str] = []
        self.sink = InMemoryAuditSink()
        hooks = Hooks()

        @hooks.tool("deploy")
        def needs_approval(ctx: GovContext) -> Decision:
            return Decision.require_approval("deploys-need-approval", "production change")

        @self.server.tool()
        def deploy(version: str) -> str:
            self.ran.append(version)
            return f"deployed {version}"

        govern(self.server, *before, ApprovalMiddleware(approver, **middleware_options), hooks, audit=self.sink)

    def types(self) -> list[str]:
        return [e.type for e in self.sink.events if e.type.startswith("approval.") or e.type == "decision"]


async def test_callback_approval_lets_exactly_that_call_run(mode: str) -> None:
    seen: list[ApprovalRequest] = []

    def approve(request: ApprovalRequest) -> bool:
        seen.append(request)
        return True

    d = Deploys(CallbackApprover(approve, name="alice@example.com"))
    async with Client(d.server, mode=mode) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["deploy"]  # visible: approval is on use
        result = await client.call_tool("deploy", {"version": "1.4.2"})
    assert result.is_error is False
    assert d.ran == ["1.4.2"]
    (request,) = seen
    assert (request.target, request.rule) == ("deploy", "deploys-need-approval")
    assert request.args_hash is not None
    assert d.types() == ["approval.requested", "decision", "approval.granted"]  # recorded once it covered the caller
    granted = d.sink.of_type("approval.granted")[0]
    assert granted.approver == "alice@example.com"
    decision = d.sink.decisions()[0]
    assert (decision.effect, decision.rule, decision.reason) == ("allow", "deploys-need-approval", "approved")
    assert decision.detail == "approved by alice@example.com"
    assert decision.approver == "alice@example.com"


async def test_refused_approval_denies_and_nothing_runs(mode: str) -> None:
    d = Deploys(CallbackApprover(lambda r: False, name="bob"))
    async with Client(d.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.code == -32003
    assert d.ran == []
    assert d.types() == ["approval.requested", "approval.refused", "decision"]
    assert d.sink.of_type("approval.refused")[0].approver == "bob"
    assert d.sink.decisions()[0].reason == "approval_refused"


@pytest.mark.parametrize("behaviour", ["raises", "returns_junk", "answers_another_request"])
async def test_broken_approvers_give_no_approval(mode: str, behaviour: str) -> None:
    def approver(request: ApprovalRequest) -> Any:
        if behaviour == "raises":
            raise RuntimeError("approver down")
        if behaviour == "returns_junk":
            return "yes"
        return ApprovalAnswer("some-other-request", True, "mallory")

    d = Deploys(CallbackApprover(approver, name="x"))
    async with Client(d.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.code == -32004
    assert d.ran == []


async def test_no_answer_within_the_deadline_denies(mode: str) -> None:
    queue = ApprovalQueue()
    d = Deploys(queue, deadline=0.05)
    async with Client(d.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.code == -32004
    assert caught.value.message == "Approval required"
    assert d.ran == []
    assert d.sink.decisions()[0].reason == "approval_timeout"
    assert queue.pending() == []


async def test_operator_queue_in_process(mode: str) -> None:
    queue = ApprovalQueue()
    d = Deploys(queue, deadline=5)
    results: list[Any] = []

    async def agent(client: Client) -> None:
        results.append(await client.call_tool("deploy", {"version": "2.0"}))

    async with Client(d.server, mode=mode) as client, anyio.create_task_group() as tg:
        tg.start_soon(agent, client)
        with anyio.fail_after(5):
            request = await queue.next_request()
        assert queue.pending() == [request]
        with pytest.raises(ApprovalMismatch):
            queue.answer(request.id, approved=True, approver="ops", args_hash="sha256:other-arguments")
        with pytest.raises(ApprovalMismatch):
            queue.answer("no-such-request", approved=True, approver="ops")
        queue.answer(request.id, approved=True, approver="ops@example.com", args_hash=request.args_hash)
    assert results[0].is_error is False
    assert d.ran == ["2.0"]
    assert d.sink.of_type("approval.granted")[0].approver == "ops@example.com"


async def test_operator_api_over_http(mode: str) -> None:
    queue = ApprovalQueue()
    d = Deploys(queue, deadline=5)
    tokens = {"Bearer ops-token": "carol@example.com"}

    def authenticate(request: Any) -> str | None:
        return tokens.get(request.headers.get("authorization", ""))

    results: list[Any] = []

    async def agent(client: Client) -> None:
        results.append(await client.call_tool("deploy", {"version": "3.1"}))

    async with (
        serve_http(queue.asgi_app(authenticate)) as api,
        httpx.AsyncClient(base_url=api) as http,
        Client(d.server, mode=mode) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(agent, client)
        with anyio.fail_after(5):
            await queue.next_request()
        assert (await http.get("/approvals")).status_code == 401
        listed = (await http.get("/approvals", headers={"Authorization": "Bearer ops-token"})).json()
        (item,) = listed
        assert (item["target"], item["arguments"]) == ("deploy", {"version": "3.1"})
        auth = {"Authorization": "Bearer ops-token"}
        spoof = await http.post(f"/approvals/{item['id']}", json={"approve": True, "approver": "ceo"})
        assert spoof.status_code == 401
        wrong = await http.post(f"/approvals/{item['id']}", json={"approve": True, "args_hash": "x"}, headers=auth)
        assert wrong.status_code == 409
        bad = await http.post(f"/approvals/{item['id']}", content=b"not json", headers=auth)
        assert bad.status_code == 400
        ok = await http.post(
            f"/approvals/{item['id']}", json={"approve": True, "args_hash": item["args_hash"]}, headers=auth
        )
        assert ok.json() == {"answered": item["id"], "approver": "carol@example.com"}
    assert d.ran == ["3.1"]
    assert d.sink.of_type("approval.granted")[0].approver == "carol@example.com"


def _elicitation(answer: str, approve: bool, asked: list[str]) -> Any:
    async def callback(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        asked.append(params.message)
        return ElicitResult(action=answer, content={"approve": approve} if answer == "accept" else None)  # type: ignore[arg-type]

    return callback


@pytest.mark.parametrize(
    ("answer", "approve", "ran"), [("accept", True, True), ("accept", False, False), ("decline", True, False)]
)
async def test_elicitation_asks_the_clients_user(mode: str, answer: str, approve: bool, ran: bool) -> None:
    d = Deploys(ElicitationApprover(), deadline=5)
    asked: list[str] = []
    async with Client(d.server, mode=mode, elicitation_callback=_elicitation(answer, approve, asked)) as client:
        if ran:
            result = await client.call_tool("deploy", {"version": "4.0"})
            assert result.is_error is False
        else:
            with pytest.raises(MCPError) as caught:
                await client.call_tool("deploy", {"version": "4.0"})
            assert caught.value.code == -32003
    assert d.ran == (["4.0"] if ran else [])
    assert len(asked) == 1 and "deploy" in asked[0]
    events = d.sink.of_type("approval.granted" if ran else "approval.refused")
    assert events[0].approver == "client-user:unidentified"


async def test_elicitation_without_the_capability_refuses(mode: str) -> None:
    d = Deploys(ElicitationApprover(), deadline=5)
    async with Client(d.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "5"})
    assert caught.value.code == -32004
    assert d.ran == []


async def test_modern_approval_cannot_be_replayed_for_other_arguments() -> None:
    d = Deploys(ElicitationApprover(store=InMemoryStateStore()), deadline=5)
    asked: list[str] = []
    async with Client(d.server, mode="auto", elicitation_callback=_elicitation("accept", True, asked)) as client:
        first = await client.session.call_tool("deploy", {"version": "safe"}, allow_input_required=True)
        state = getattr(first, "request_state", None)
        assert state is not None
        approve = {"mcpgov.approval": ElicitResult(action="accept", content={"approve": True})}
        with pytest.raises(MCPError):
            await client.session.call_tool(
                "deploy",
                {"version": "evil"},
                input_responses=approve,  # type: ignore[arg-type]
                request_state=state,
                allow_input_required=True,
            )
        ok = await client.session.call_tool(
            "deploy",
            {"version": "safe"},
            input_responses=approve,  # type: ignore[arg-type]
            request_state=state,
            allow_input_required=True,
        )
        assert getattr(ok, "is_error", None) is False
        # The same approval cannot be used twice.
        with pytest.raises(MCPError):
            await client.session.call_tool(
                "deploy",
                {"version": "safe"},
                input_responses=approve,  # type: ignore[arg-type]
                request_state=state,
                allow_input_required=True,
            )
    assert d.ran == ["safe"]


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        ApprovalMiddleware(CallbackApprover(lambda r: True, name="a"), deadline=0)
    with pytest.raises(ConfigurationError):
        CallbackApprover(lambda r: True, name="")
    with pytest.raises(ConfigurationError):
        ApprovalQueue().answer("x", approved=True, approver="")


def test_a_grant_covers_exactly_its_action_until_it_expires() -> None:
    from mcpgov import Principal
    from mcpgov._arguments import ArgumentLimits, freeze_and_hash
    from mcpgov.approval import ApprovalGrant

    def ctx_for(version: str, subject: str = "agent", task: str = "T1") -> GovContext:
        arguments, digest = freeze_and_hash({"version": version}, ArgumentLimits())
        return GovContext(
            side="server",
            method="tools/call",
            kind="tool",
            target="deploy",
            action="execute",
            arguments=arguments,
            args_hash=digest,
            principal=Principal("https://id.example", subject, tenant="acme"),
            tenant="acme",
            task_id=task,
        )

    now = [100.0]
    decision = Decision.require_approval("r")
    request = ApprovalRequest.for_context(ctx_for("1"), decision, ttl=30, now=now[0])
    grant = ApprovalGrant(request, "alice", expires_at=now[0] + 10, clock=lambda: now[0])
    assert grant.covers(ctx_for("1"), decision)
    assert not grant.covers(ctx_for("2"), decision)
    assert not grant.covers(ctx_for("1", subject="other"), decision)
    assert not grant.covers(ctx_for("1", task="T2"), decision)
    assert not grant.covers(ctx_for("1").replace(target="deploy_all"), decision)
    now[0] += 11
    assert not grant.covers(ctx_for("1"), decision)
