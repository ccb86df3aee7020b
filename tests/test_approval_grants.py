"""A 2026-07-28 elicited approval is spent only by the call it covers: every binding (principal,
tenant, task, tool, arguments, policy version, expiry) is checked before the single use is
recorded, so a presentation that is refused leaves the approval intact for its rightful caller
and is recorded with the caller who presented it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from mcp import Client, MCPError
from mcp.client.context import ClientRequestContext
from mcp.server.mcpserver import MCPServer
from mcp_types import ElicitRequestParams, ElicitResult, ErrorData

from mcpgov import Decision, Effect, GovContext, Hooks, InMemoryStateStore, Principal, StateStore, govern
from mcpgov._context import TASK_OWNER
from mcpgov.approval import ApprovalMiddleware, ElicitationApprover
from mcpgov.policy import Policy, PolicyMiddleware
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

    def __init__(self, store: StateStore, *, clock: Any = None, early: bool = False) -> None:
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
            ctx = ctx.replace(principal=ALICE)
            return await call_next(await settled(ctx) if early else ctx)

        async def settled(ctx: GovContext) -> GovContext:
            meta = ctx.meta
            ctx = ctx.replace(tenant=str(meta.get("tenant", "acme")), task_id=str(meta.get("task", "task-1")))
            if "owner" in meta:  # the caller acts in another principal's task of the same id
                ctx = ctx.with_extension(TASK_OWNER, (ALICE.issuer, str(meta["owner"])))
            return ctx

        async def settle(ctx: GovContext, call_next: Any) -> Any:
            return await call_next(await settled(ctx))

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
    {"owner": "bob-agent"},  # the same task id, of another owner (the caller acts in bob's task)
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


def _two_rules() -> Policy:
    return Policy.from_dict(
        {
            "version": 1,
            "rules": [
                {"id": "deploy-ok", "effect": "allow", "tools": ["deploy"], "anonymous": True},
                {"id": "release-manager", "effect": "require_approval", "tools": ["deploy"], "anonymous": True},
                {"id": "big-change", "effect": "require_approval", "tools": ["deploy"], "anonymous": True},
            ],
        }
    )


RULES = ("release-manager", "big-change")


@pytest.mark.parametrize("refused", [None, *RULES])
async def test_every_approval_rule_is_asked_through_elicitation(mode: str, refused: str | None) -> None:
    """Two approval rules apply to one call: the client's user is asked about each (one prompt
    per rule, naming it), the call runs once both are approved, and a "no" to either runs nothing."""
    server = MCPServer("deployer")
    ran: list[str] = []
    sink = InMemoryAuditSink()

    @server.tool()
    def deploy(version: str) -> str:
        ran.append(version)
        return version

    asked: list[str] = []

    async def answer(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        message = str(getattr(params, "message", ""))
        (rule,) = [r for r in RULES if f'Rule "{r}"' in message]
        asked.append(rule)
        return ElicitResult(action="accept", content={"approve": rule != refused})

    approval = ApprovalMiddleware(ElicitationApprover(store=InMemoryStateStore()), deadline=30)
    govern(server, approval, PolicyMiddleware(_two_rules()), audit=sink)
    async with Client(server, mode=mode, elicitation_callback=answer) as client:
        if refused is None:
            assert (await client.call_tool("deploy", {"version": "1"})).is_error is False
        else:
            with pytest.raises(MCPError) as caught:
                await client.call_tool("deploy", {"version": "1"})
            assert caught.value.code == -32003
    assert asked == (["release-manager"] if refused == "release-manager" else list(RULES))
    assert ran == ([] if refused else ["1"])
    granted = sorted(e.rule or "" for e in sink.of_type("approval.granted"))
    assert granted == ([] if refused else sorted(RULES))
    assert sink.decisions()[-1].effect == ("deny" if refused else "allow")


async def test_one_answer_never_stands_for_two_approval_rules() -> None:
    """Replaying the retry that approved the first rule asks about the second again: an answer
    given under one rule's prompt approves nothing else."""
    server = MCPServer("deployer")
    ran: list[str] = []

    @server.tool()
    def deploy(version: str) -> str:
        ran.append(version)
        return version

    govern(server, ApprovalMiddleware(ElicitationApprover(store=InMemoryStateStore()), deadline=30),
           PolicyMiddleware(_two_rules()))  # fmt: skip
    async with Client(server, mode="auto", elicitation_callback=_accept) as client:
        first = await client.session.call_tool("deploy", {"version": "1"}, allow_input_required=True)
        state = getattr(first, "request_state", None)
        assert isinstance(state, str)
        for _ in range(2):
            again = await client.session.call_tool(
                "deploy",
                {"version": "1"},
                input_responses=APPROVE,  # type: ignore[arg-type]
                request_state=state,
                allow_input_required=True,
            )
            assert getattr(again, "result_type", None) == "input_required"
            assert getattr(again, "request_state", None) not in (None, state)
    assert ran == []


@pytest.mark.parametrize(
    "granted",
    [
        None,
        {},
        [1],
        [{"id": "x"}],
        [{"id": "", "rule": "r", "reason": "", "approver": "a", "expires_at": 1.0, "request_expires_at": 1.0}],
        [{"id": "x", "rule": "r", "reason": "", "approver": "", "expires_at": 1.0, "request_expires_at": 1.0}],
        [{"id": "x", "rule": "r", "reason": "", "approver": "a", "expires_at": True, "request_expires_at": 1.0}],
        [{"id": "x", "rule": "r", "reason": "", "approver": "a", "expires_at": 1e999, "request_expires_at": 1.0}],
        [{"id": "x", "rule": 1, "reason": "", "approver": "a", "expires_at": 1.0, "request_expires_at": 1.0}],
    ],
)
def test_a_pending_approval_with_garbled_earlier_approvals_is_unreadable(granted: Any) -> None:
    """What cannot be read approves nothing: a pending approval whose approvals of earlier
    rounds are not well formed is refused as a whole."""
    from mcpgov.approval._elicit import _pending_record

    record = {
        "action": ["tools/call", "tool", "deploy", "sha256:x", None, None, None, None, None, None],
        "rule": "r",
        "reason": "",
        "principal": None,
        "tenant": None,
        "task_id": None,
        "args_hash": "sha256:x",
        "expires_at": 1.0,
        "policy_version": None,
    }
    assert _pending_record(json.dumps(record)) is not None
    assert _pending_record(json.dumps({**record, "granted": granted})) is None


@pytest.mark.parametrize(
    "no", [ElicitResult(action="accept", content={"approve": False}), ElicitResult(action="decline")]
)
async def test_a_no_is_final(no: ElicitResult) -> None:
    """A "no" to a 2026-07-28 prompt, from the caller it was asked of, denies, and the same
    request state answered "yes" later approves nothing."""
    stack = Later(InMemoryStateStore(), early=True)
    async with Client(stack.server, mode="auto", elicitation_callback=_accept) as client:
        state = await stack.ask(client)
        with pytest.raises(MCPError) as caught:
            await _answer(client, state, no)
        assert caught.value.code == -32003
        with pytest.raises(MCPError):
            await stack.retry(client, state)
    assert stack.ran == []
    assert [d.reason for d in stack.sink.decisions()] == ["approval_refused", "approval_replayed"]


@pytest.mark.parametrize("early", [True, False])
@pytest.mark.parametrize("other", OTHER_PRESENTATIONS[:2])
async def test_another_tenants_no_spends_nothing(early: bool, other: dict[str, str]) -> None:
    """A "no" presented by a caller in another tenant or task (known before the approval stage
    or only after it) is denied and leaves the approval to its rightful caller."""
    stack = Later(InMemoryStateStore(), early=early)
    async with Client(stack.server, mode="auto", elicitation_callback=_accept) as client:
        state = await stack.ask(client)
        with pytest.raises(MCPError):
            await _answer(client, state, ElicitResult(action="decline"), other)
        ok = await stack.retry(client, state)
        assert getattr(ok, "is_error", None) is False
    assert stack.ran == ["7"]


async def _answer(client: Client, state: str, answer: ElicitResult, meta: dict[str, str] | None = None) -> Any:
    return await client.session.call_tool(
        "deploy",
        {"version": "7"},
        input_responses={"mcpgov.approval": answer},
        request_state=state,
        meta=cast(Any, meta),
        allow_input_required=True,
    )
