"""A synchronous approver (one that waits for a person on a lock, a socket, a console) or
operator authenticator runs off the event loop: other sessions are served while it waits, the
approval deadline still denies, and an answer it gives after the deadline is never applied."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, GovContext, Hooks, govern
from mcpgov.approval import ApprovalAnswer, ApprovalMiddleware, ApprovalQueue, ApprovalRequest, CallbackApprover
from mcpgov.testing import InMemoryAuditSink, serve_http

pytestmark = pytest.mark.anyio

WAIT = 30.0  # only ever reached when the approver is not released (a failing run)


class Gate:
    """A synchronous approver blocked on a threading.Event until the test releases it."""

    def __init__(self, answer: bool = True) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.answer = answer
        self.released: list[bool] = []

    def __call__(self, request: ApprovalRequest) -> bool:
        self.entered.set()
        self.released.append(self.release.wait(WAIT))
        return self.answer


class Plain:
    """An approver that is a plain (non-async) callable taking the request and the context."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def __call__(self, request: ApprovalRequest, ctx: GovContext) -> ApprovalAnswer:
        return ApprovalAnswer(request.id, self.gate(request), "ops@example.com")


def _server(approver: Any, **options: Any) -> tuple[MCPServer, list[str], InMemoryAuditSink]:
    server = MCPServer("deployer")
    ran: list[str] = []
    sink = InMemoryAuditSink()
    hooks = Hooks()

    @hooks.tool("deploy")
    def needs_approval(ctx: GovContext) -> Decision:
        return Decision.require_approval("deploys-need-approval", "production change")

    @hooks.tool("status")
    def anyone(ctx: GovContext) -> Decision:
        return Decision.allow("status-is-open")

    @server.tool()
    def deploy(version: str) -> str:
        ran.append(version)
        return version

    @server.tool()
    def status() -> str:
        ran.append("status")
        return "ok"

    govern(server, ApprovalMiddleware(approver, **options), hooks, audit=sink)
    return server, ran, sink


def _approvers(gate: Gate) -> dict[str, Any]:
    return {"callback": CallbackApprover(gate, name="ops@example.com"), "plain": Plain(gate)}


@pytest.mark.parametrize("kind", ["callback", "plain"])
async def test_a_waiting_sync_approver_does_not_stop_other_sessions(mode: str, kind: str) -> None:
    gate = Gate()
    server, ran, _sink = _server(_approvers(gate)[kind], deadline=60)
    async with (
        Client(server, mode=mode) as waiting,
        Client(server, mode=mode) as other,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(waiting.call_tool, "deploy", {"version": "1"})
        assert await anyio.to_thread.run_sync(gate.entered.wait, WAIT)
        result = await other.call_tool("status", {})  # served while the approver waits
        assert result.is_error is False
        gate.release.set()
    assert gate.released == [True]  # the approver was still waiting when the other call completed
    assert ran == ["status", "1"]


@pytest.mark.parametrize("kind", ["callback", "plain"])
async def test_a_sync_approver_answering_after_the_deadline_approves_nothing(mode: str, kind: str) -> None:
    gate = Gate(answer=True)
    server, ran, sink = _server(_approvers(gate)[kind], deadline=0.2)
    try:
        async with Client(server, mode=mode) as client:
            with pytest.raises(MCPError) as caught:
                await client.call_tool("deploy", {"version": "1"})
            assert caught.value.code == -32004
            assert not gate.release.is_set()
    finally:
        gate.release.set()  # the approver answers "yes" now, after the deadline
    assert await anyio.to_thread.run_sync(gate.entered.wait, WAIT)
    assert ran == []
    assert [d.reason for d in sink.decisions()] == ["approval_timeout"]
    assert sink.of_type("approval.granted") == []


async def test_a_waiting_sync_operator_authenticator_does_not_stop_other_sessions(mode: str) -> None:
    """The operator API shares the event loop with the sessions: a synchronous authenticator
    (a directory lookup) waits in a worker thread while the other sessions are served."""
    queue = ApprovalQueue()
    server, ran, _sink = _server(queue, deadline=60)
    entered = threading.Event()
    release = threading.Event()
    released: list[bool] = []

    def authenticate(request: Any) -> str | None:
        entered.set()
        released.append(release.wait(WAIT))
        return "carol@example.com"

    async def operator(http: httpx.AsyncClient, request_id: str) -> None:
        await http.post(f"/approvals/{request_id}", json={"approve": True})

    async with (
        serve_http(queue.asgi_app(authenticate)) as api,
        httpx.AsyncClient(base_url=api, timeout=WAIT * 2) as http,
        Client(server, mode=mode) as waiting,
        Client(server, mode=mode) as other,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(waiting.call_tool, "deploy", {"version": "1"})
        request = await queue.next_request()
        tg.start_soon(operator, http, request.id)
        assert await anyio.to_thread.run_sync(entered.wait, WAIT)
        assert (await other.call_tool("status", {})).is_error is False  # served meanwhile
        release.set()
    assert released == [True]
    assert ran == ["status", "1"]
