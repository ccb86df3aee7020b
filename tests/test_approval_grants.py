"""A 2026-07-28 elicited approval is spent only by the call it covers: every binding (principal,
tenant, task, tool, arguments, policy version, expiry) is checked before the single use is
recorded, so a presentation that is refused leaves the approval intact for its rightful caller
and is recorded with the caller who presented it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from mcp import Client, MCPError
from mcp.client.context import ClientRequestContext
from mcp.server.mcpserver import MCPServer
from mcp_types import ElicitRequestParams, ElicitResult, ErrorData

from mcpgov import Decision, Effect, GovContext, Hooks, InMemoryStateStore, Principal, StateStore, govern
from mcpgov.approval import ApprovalMiddleware, ElicitationApprover
from mcpgov.testing import InMemoryAuditSink

from .redis_support import redis_server

pytestmark = pytest.mark.anyio

ALICE = Principal(issuer="https://idp.example", subject="alice-agent")
APPROVE = {"mcpgov.approval": ElicitResult(action="accept", content={"approve": True})}


async def _accept(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
    return ElicitResult(action="accept", content={"approve": True})


class Later:
    """Deploy needs approval. The caller is known before the approval stage; its tenant, task
    and the policy version are settled by stages after it (from ``_meta``, a test stand-in)."""

    def __init__(self, store: StateStore, *, clock: Any = None) -> None:
        self.server = MCPServer("deployer")
        self.sink = InMemoryAuditSink()
        self.ran: list[str] = []
        hooks = Hooks()

        @hooks.tool("deploy")
        def needs_approval(ctx: GovContext) -> Decision:
            version = str(ctx.meta.get("policy", "1"))
            return Decision(Effect.REQUIRE_APPROVAL, "deploys-need-approval", "", "approval_required",
                            policy_version=version)  # fmt: skip

        @self.server.tool()
        def deploy(version: str) -> str:
            self.ran.append(version)
            return version

        async def identity(ctx: GovContext, call_next: Any) -> Any:
            return await call_next(ctx.replace(principal=ALICE))

        async def settle(ctx: GovContext, call_next: Any) -> Any:
            meta = ctx.meta
            return await call_next(
                ctx.replace(tenant=str(meta.get("tenant", "acme")), task_id=str(meta.get("task", "task-1")))
            )

        options: dict[str, Any] = {"deadline": 30}
        if clock is not None:
            options["clock"] = clock
        approval = ApprovalMiddleware(ElicitationApprover(store=store), **options)
        govern(self.server, identity, approval, settle, hooks, audit=self.sink)

    async def ask(self, client: Client) -> str:
        first = await client.session.call_tool("deploy", {"version": "7"}, allow_input_required=True)
        state = getattr(first, "request_state", None)
        assert isinstance(state, str)
        return state

    @staticmethod
    async def retry(client: Client, state: str, meta: dict[str, str] | None = None) -> Any:
        return await client.session.call_tool(
            "deploy",
            {"version": "7"},
            input_responses=APPROVE,  # type: ignore[arg-type]
            request_state=state,
            meta=cast(Any, meta),
            allow_input_required=True,
        )


@asynccontextmanager
async def _store(kind: str) -> AsyncIterator[StateStore]:
    """An in-memory store, or a Redis one on a real redis-server of its own."""
    if kind == "memory":
        yield InMemoryStateStore()
        return
    pytest.importorskip("redis.asyncio", reason="the 'redis' extra is not installed")
    from mcpgov.redis import RedisStateStore

    with redis_server() as (url, _process):
        async with RedisStateStore.from_url(url, prefix="approvals:") as store:
            yield store


OTHER_PRESENTATIONS = [
    {"tenant": "globex"},  # another tenant
    {"task": "task-2"},  # another task
    {"policy": "2"},  # another policy version
    {"tenant": "globex", "task": "task-2", "policy": "2"},
]


@pytest.mark.parametrize("kind", ["memory", "redis"])
@pytest.mark.parametrize("other", OTHER_PRESENTATIONS)
async def test_a_refused_presentation_leaves_the_approval_to_its_caller(kind: str, other: dict[str, str]) -> None:
    async with _store(kind) as store:
        stack = Later(store)
        async with Client(stack.server, mode="auto", elicitation_callback=_accept) as client:
            state = await stack.ask(client)
            with pytest.raises(MCPError) as caught:
                await stack.retry(client, state, other)
            assert caught.value.code == -32003
            assert stack.ran == []
            refusal = stack.sink.decisions()[-1]
            assert (refusal.effect, refusal.reason) == ("deny", "approval_mismatch")
            assert refusal.tenant == other.get("tenant", "acme") and refusal.task_id == other.get("task", "task-1")
            assert stack.sink.of_type("approval.granted") == []
            ok = await stack.retry(client, state)  # the rightful caller's approval is still there
            assert getattr(ok, "is_error", None) is False
            with pytest.raises(MCPError):  # and it is used once
                await stack.retry(client, state)
    assert stack.ran == ["7"]
    (granted,) = stack.sink.of_type("approval.granted")
    assert (granted.tenant, granted.task_id) == ("acme", "task-1")


async def test_an_expired_presentation_is_refused_and_uses_nothing() -> None:
    now = [1000.0]
    stack = Later(InMemoryStateStore(), clock=lambda: now[0])
    async with Client(stack.server, mode="auto", elicitation_callback=_accept) as client:
        state = await stack.ask(client)
        now[0] += 31
        with pytest.raises(MCPError):
            await stack.retry(client, state)
    assert stack.ran == []
    assert stack.sink.decisions()[-1].effect == "deny"
