"""Every rate limit an admitted decision carries is counted, whichever stage decided it, and a
request refused after it was counted (by a later stage, a last check, a failing audit sink)
spends none of it: only a request that ran is counted against its limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import (
    AuditEvent,
    Auditor,
    Authorizer,
    CallNext,
    Decision,
    GovContext,
    Hooks,
    McpGovError,
    StateStore,
    govern,
)
from mcpgov._context import APPROVAL_GRANT
from mcpgov._state import InMemoryStateStore
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.policy._ratelimit import RateLimitSpec
from mcpgov.testing import InMemoryAuditSink

from .policies.support import LookupIdentity, as_

LIMIT = 2


def _server() -> tuple[MCPServer, list[str]]:
    server = MCPServer("search")
    ran: list[str] = []

    @server.tool()
    def search(query: str) -> str:
        ran.append(query)
        if query.startswith("fail"):
            raise ValueError("the search failed")
        return query

    return server, ran


async def _admitted(client: Client, who: str, query: str) -> bool:
    try:
        result = await client.call_tool("search", {"query": query}, meta=as_(who))
    except MCPError:
        return False
    assert result.is_error is False
    return True


LIMIT_SPELLINGS: dict[str, Callable[[], Any]] = {
    "spec": lambda: RateLimitSpec("hook-limit", LIMIT, 60.0, ("principal",)),
    "mapping": lambda: {"limit": LIMIT, "per": 60, "by": ["principal"]},
    "list": lambda: [{"limit": LIMIT, "per": 60, "by": "principal"}],
}


@pytest.mark.anyio
@pytest.mark.parametrize("spelling", sorted(LIMIT_SPELLINGS))
@pytest.mark.parametrize("offload", [False, True], ids=["inline", "offloaded"])
async def test_a_hook_declared_limit_admits_exactly_its_limit(spelling: str, offload: bool, mode: str) -> None:
    server, ran = _server()
    hooks = Hooks(offload=offload, clock=lambda: 1_000.0)
    limit = LIMIT_SPELLINGS[spelling]()

    @hooks.tool("search")
    def limited(ctx: GovContext) -> Decision:
        return Decision.allow("hook-limit", rate_limit=limit)

    sink = InMemoryAuditSink()
    govern(server, LookupIdentity(), hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        outcomes = [await _admitted(client, "alice", f"a{i}") for i in range(LIMIT + 3)]
        assert await _admitted(client, "reader", "r0")  # counted per principal
    assert outcomes == [True] * LIMIT + [False] * 3
    assert ran == [f"a{i}" for i in range(LIMIT)] + ["r0"]
    assert [e.reason for e in sink.decisions() if e.effect == "deny"] == ["rate_limited"] * 3


class _OwnAuthorizer(Authorizer):
    """An authoriser of one's own whose allow carries a limit."""

    async def decide(self, ctx: GovContext) -> Decision:
        return Decision.allow("own", rate_limit={"limit": 1, "per": 60, "by": ["tool"]})


@pytest.mark.anyio
async def test_a_limit_of_any_authoriser_is_counted_in_the_store_it_was_given(mode: str) -> None:
    server, ran = _server()
    store = InMemoryStateStore()
    govern(server, LookupIdentity(), _OwnAuthorizer(state=store))
    async with Client(server, mode=mode) as client:
        assert await _admitted(client, "alice", "a0")
        assert not await _admitted(client, "reader", "r0")  # counted per tool: shared
    assert ran == ["a0"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "limit",
    [
        {"limit": 0, "per": 60},
        {"limit": True, "per": 60},
        {"limit": 1, "per": 0},
        {"limit": 1, "per": float("nan")},
        {"limit": 1, "per": 60, "by": ["argument"]},
        {"limit": 1, "per": 60, "by": []},
        {"limit": 1, "per": 60, "every": "hour"},
        "10/minute",
        [],
        None,
    ],
    ids=repr,
)
async def test_a_limit_that_cannot_be_read_denies(limit: Any, mode: str) -> None:
    server, ran = _server()
    hooks = Hooks()
    hooks.register("search", lambda ctx: Decision.allow("unreadable", rate_limit=limit))
    govern(server, LookupIdentity(), hooks)
    async with Client(server, mode=mode) as client:
        assert not await _admitted(client, "alice", "a0")
    assert ran == []


class _RefuseAfter:
    """A stage after the authorisers that refuses the requests whose query is in ``refuse``."""

    def __init__(self) -> None:
        self.refuse: set[str] = set()

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        query = (ctx.arguments or {}).get("query")
        if query in self.refuse:
            raise McpGovError("refused by a later stage", reason="later_stage")
        return await call_next(ctx)


class _CheckAtTheGate:
    """A stage adding a last check, run at the gate, that refuses the requests in ``refuse``."""

    def __init__(self) -> None:
        self.refuse: set[str] = set()

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        async def check(c: GovContext) -> None:
            if (c.arguments or {}).get("query") in self.refuse:
                raise McpGovError("refused at the gate", reason="last_check")

        return await call_next(ctx.replace(final_checks=(*ctx.final_checks, check)))


def _policy() -> Policy:
    return Policy.from_dict(
        {
            "rules": [
                {
                    "id": "per-agent",
                    "effect": "allow",
                    "tools": ["search"],
                    "obligations": {"rate_limit": {"limit": LIMIT, "per": 60, "by": ["principal"]}},
                }
            ]
        }
    )


def _denying_hooks(refuse: set[str]) -> Hooks:
    hooks = Hooks()

    @hooks.tool("search")
    def deny_some(ctx: GovContext) -> Decision:
        if (ctx.arguments or {}).get("query") in refuse:
            return Decision.deny("deny-some", "refused by a later authoriser")
        return Decision.allow("allow-rest")

    return hooks


def _limiting_hooks(store: StateStore) -> Hooks:
    hooks = Hooks(state=store, clock=lambda: 1_000.0)
    hooks.register(
        "search", lambda ctx: Decision.allow("per-agent", rate_limit={"limit": LIMIT, "per": 60, "by": ["principal"]})
    )
    return hooks


@pytest.mark.anyio
@pytest.mark.parametrize("counter", ["policy", "hooks"])
@pytest.mark.parametrize("refuser", ["later-stage", "later-authoriser", "last-check"])
async def test_a_request_refused_after_admission_spends_nothing(counter: str, refuser: str, mode: str) -> None:
    server, ran = _server()
    store = InMemoryStateStore()
    limiting = (
        PolicyMiddleware(_policy(), state=store, clock=lambda: 1_000.0)
        if counter == "policy"
        else _limiting_hooks(store)
    )
    refuse: set[str] = set()
    later: Any
    if refuser == "later-stage":
        later = _RefuseAfter()
        later.refuse = refuse
    elif refuser == "last-check":
        later = _CheckAtTheGate()
        later.refuse = refuse
    else:
        later = _denying_hooks(refuse)
    govern(server, LookupIdentity(), limiting, later)
    async with Client(server, mode=mode) as client:
        refuse.update(f"x{i}" for i in range(5))
        for i in range(5):
            assert not await _admitted(client, "alice", f"x{i}")
        # The five refused requests spent nothing: alice still has her whole limit.
        outcomes = [await _admitted(client, "alice", f"a{i}") for i in range(LIMIT + 1)]
    assert outcomes == [True] * LIMIT + [False]
    assert ran == [f"a{i}" for i in range(LIMIT)]


@pytest.mark.anyio
async def test_a_request_that_ran_and_failed_stays_counted(mode: str) -> None:
    server, ran = _server()
    govern(server, LookupIdentity(), PolicyMiddleware(_policy(), clock=lambda: 1_000.0))
    async with Client(server, mode=mode) as client:
        for i in range(LIMIT):
            result = await client.call_tool("search", {"query": f"fail{i}"}, meta=as_("alice"))
            assert result.is_error is True
        assert not await _admitted(client, "alice", "a0")
    assert ran == [f"fail{i}" for i in range(LIMIT)]


class _NoTakingBack(InMemoryStateStore):
    """Counts, and fails every attempt to take a count back."""

    async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        if amount < 0:
            raise RuntimeError("the store is down")
        return await super().incr(key, ttl, amount)


@pytest.mark.anyio
async def test_a_count_that_cannot_be_taken_back_stays(mode: str) -> None:
    server, ran = _server()
    refuse = {"x0"}
    later = _RefuseAfter()
    later.refuse = refuse
    policy = PolicyMiddleware(_policy(), state=_NoTakingBack(), clock=lambda: 1_000.0)
    govern(server, LookupIdentity(), policy, later)
    async with Client(server, mode=mode) as client:
        assert not await _admitted(client, "alice", "x0")
        outcomes = [await _admitted(client, "alice", f"a{i}") for i in range(LIMIT)]
    # Stricter, never looser: the refused request's count stayed.
    assert outcomes == [True] * (LIMIT - 1) + [False]
    assert ran == ["a0"]


class _FailingSink:
    """An audit sink that cannot record allow decisions while ``failing``."""

    def __init__(self) -> None:
        self.failing = False

    def __call__(self, event: AuditEvent) -> None:
        if self.failing and event.type == "decision" and event.effect == "allow":
            raise RuntimeError("the audit store is down")


@pytest.mark.anyio
async def test_a_request_strict_audit_refuses_spends_nothing(mode: str) -> None:
    server, ran = _server()
    sink = _FailingSink()
    policy = PolicyMiddleware(_policy(), clock=lambda: 1_000.0)
    govern(server, LookupIdentity(), policy, audit=Auditor([sink], strict=True))
    async with Client(server, mode=mode) as client:
        sink.failing = True
        for i in range(3):
            assert not await _admitted(client, "alice", f"x{i}")
        sink.failing = False
        outcomes = [await _admitted(client, "alice", f"a{i}") for i in range(LIMIT + 1)]
    assert outcomes == [True] * LIMIT + [False]
    assert ran == [f"a{i}" for i in range(LIMIT)]


class _AddsALimit:
    """A stage of one's own after the authorisers that adds a rate limit to the decision."""

    def __init__(self, limit: Any) -> None:
        self.limit = limit

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        decision = Decision.allow("added", rate_limit=self.limit).combine(ctx.decision)
        return await call_next(ctx.replace(decision=decision))


@pytest.mark.anyio
@pytest.mark.parametrize("limit", list(LIMIT_SPELLINGS), ids=str)
async def test_a_limit_no_stage_counted_refuses_the_request(limit: str, mode: str) -> None:
    server, ran = _server()
    sink = InMemoryAuditSink()
    hooks = Hooks()
    hooks.register("search", lambda ctx: Decision.allow("allow-search"))
    govern(server, LookupIdentity(), hooks, _AddsALimit(LIMIT_SPELLINGS[limit]()), audit=sink)
    async with Client(server, mode=mode) as client:
        assert not await _admitted(client, "alice", "a0")
    assert ran == []
    assert [(e.rule, e.reason) for e in sink.decisions()] == [("mcpgov:rate-limit-uncounted", "rate_limit_uncounted")]


@pytest.mark.anyio
@pytest.mark.parametrize("spelling", sorted(LIMIT_SPELLINGS))
async def test_a_hooks_limit_and_a_policys_limit_both_hold(spelling: str, mode: str) -> None:
    server, ran = _server()
    hooks = Hooks(clock=lambda: 1_000.0)
    hook_limit = LIMIT_SPELLINGS[spelling]()  # two per principal
    hooks.register("search", lambda ctx: Decision.allow("hook-limit", rate_limit=hook_limit))
    tight = Policy.from_dict(
        {
            "rules": [
                {
                    "id": "per-tool",
                    "effect": "allow",
                    "tools": ["search"],
                    "obligations": {"rate_limit": {"limit": 3, "per": 60, "by": ["tool"]}},
                }
            ]
        }
    )
    govern(server, LookupIdentity(), hooks, PolicyMiddleware(tight, clock=lambda: 1_000.0))
    async with Client(server, mode=mode) as client:
        alice = [await _admitted(client, "alice", f"a{i}") for i in range(3)]
        reader = [await _admitted(client, "reader", f"r{i}") for i in range(2)]
    # Alice is held by the hook's two per principal; the tool's three then hold the reader to one.
    assert alice == [True, True, False]
    assert reader == [True, False]
    assert ran == ["a0", "a1", "r0"]


class _Granting:
    """A stage before the authorisers standing for an approver: every request comes with a grant."""

    class Grant:
        approver = "carol"

        def covers(self, ctx: GovContext, decision: Decision) -> bool:
            return True

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        return await call_next(ctx.with_extension(APPROVAL_GRANT, self.Grant()))


@pytest.mark.anyio
async def test_an_approved_request_refused_after_admission_spends_nothing(mode: str) -> None:
    server, ran = _server()
    approve = Policy.from_dict(
        {
            "rules": [
                {
                    "id": "approve-search",
                    "effect": "require_approval",
                    "tools": ["search"],
                    "obligations": {"rate_limit": {"limit": LIMIT, "per": 60, "by": ["tenant"]}},
                }
            ]
        }
    )
    later = _RefuseAfter()
    later.refuse = {"x0", "x1", "x2"}
    govern(server, LookupIdentity(), _Granting(), PolicyMiddleware(approve, clock=lambda: 1_000.0), later)
    async with Client(server, mode=mode) as client:
        for query in ("x0", "x1", "x2"):
            assert not await _admitted(client, "alice", query)
        outcomes = [await _admitted(client, who, f"{who}{i}") for i, who in enumerate(["alice", "reader", "alice"])]
    assert outcomes == [True, True, False]
    assert ran == ["alice0", "reader1"]


class _SignallingStore(InMemoryStateStore):
    """Counts like the in-memory store and signals each take-back."""

    def __init__(self) -> None:
        super().__init__()
        self.taken_back = anyio.Event()

    async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        count = await super().incr(key, ttl, amount)
        if amount < 0:
            self.taken_back.set()
        return count


class _Waits:
    """A stage after the authorisers that holds the requests whose query is ``hold`` until cancelled."""

    def __init__(self) -> None:
        self.entered = anyio.Event()

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        if (ctx.arguments or {}).get("query") == "hold":
            self.entered.set()
            await anyio.sleep_forever()
        return await call_next(ctx)


@pytest.mark.anyio
async def test_a_request_cancelled_before_it_runs_spends_nothing(mode: str) -> None:
    server, ran = _server()
    store = _SignallingStore()
    waits = _Waits()
    govern(server, LookupIdentity(), PolicyMiddleware(_policy(), state=store, clock=lambda: 1_000.0), waits)
    async with Client(server, mode=mode) as client:
        async with anyio.create_task_group() as tg:

            async def held() -> None:
                await _admitted(client, "alice", "hold")

            tg.start_soon(held)
            with anyio.fail_after(30):
                await waits.entered.wait()
            tg.cancel_scope.cancel()
        with anyio.fail_after(30):
            await store.taken_back.wait()
        outcomes = [await _admitted(client, "alice", f"a{i}") for i in range(LIMIT + 1)]
    assert outcomes == [True] * LIMIT + [False]
    assert ran == [f"a{i}" for i in range(LIMIT)]
