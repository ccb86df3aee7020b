"""A task's call limit (``history: {calls_below: n}``) holds for calls decided at once: each tool
call of a task is counted before it is decided, on one replica or on several sharing a store,
and a call that does not run is taken back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from mcp import MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import CallNext, GovContext, GovernedClient, McpGovError, StateStore, govern
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

from .policies.support import LookupIdentity, as_
from .redis_support import redis_server

pytestmark = pytest.mark.anyio

LIMIT = 2
POLICY = {
    "version": 1,
    "rules": [{"id": "few", "effect": "allow", "tools": ["work"], "when": {"history": {"calls_below": LIMIT}}}],
}


class Settled:
    """Counts calls that either reached the tool or were refused; set once all of them did."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.done = anyio.Event()

    def bump(self) -> None:
        self.count += 1
        if self.count >= self.total:
            self.done.set()

    async def wait(self) -> None:
        with anyio.fail_after(30):
            await self.done.wait()


NO_WAIT = Settled(0)


class Replica:
    """A governed server whose ``work`` tool holds every call until released, so calls overlap."""

    def __init__(
        self, state: StateStore | None = None, *, refuse: str | None = None, settled: Settled = NO_WAIT
    ) -> None:
        self.server = MCPServer("worker")
        self.ran: list[str] = []
        self.release = anyio.Event()
        self.sink = InMemoryAuditSink()

        @self.server.tool()
        async def work(step: str) -> str:
            self.ran.append(step)
            settled.bump()
            with anyio.fail_after(30):
                await self.release.wait()
            return "done"

        async def after_policy(ctx: GovContext, call_next: CallNext) -> Any:
            # A stage after the policy that refuses some calls (a credential, an approval...).
            if refuse is not None and (ctx.arguments or {}).get("step") == refuse:
                raise McpGovError("refused after the policy", reason="refused_later")
            return await call_next(ctx)

        policy = PolicyMiddleware(Policy.from_dict(POLICY), state=state)
        govern(self.server, LookupIdentity(), policy, after_policy, audit=self.sink)


async def _call(client: GovernedClient, step: str, task: str, outcomes: list[str], settled: Settled = NO_WAIT) -> None:
    try:
        result = await client.call_tool("work", {"step": step}, meta=as_("alice", task=task))
    except MCPError as exc:
        outcomes.append(f"refused {exc.code}")
        settled.bump()
    else:
        outcomes.append("error" if result.is_error else "ran")


async def test_calls_of_a_task_decided_at_once_run_no_more_often_than_its_limit(mode: str) -> None:
    settled = Settled(6)
    replica = Replica(settled=settled)
    outcomes: list[str] = []
    async with GovernedClient(replica.server, mode=mode) as client, anyio.create_task_group() as tg:
        for step in range(6):
            tg.start_soon(_call, client, str(step), "t-1", outcomes, settled)
        await settled.wait()
        replica.release.set()
    assert len(replica.ran) == LIMIT
    assert sorted(outcomes) == ["ran"] * LIMIT + ["refused -32003"] * (6 - LIMIT)
    # The limit is the task's: another task is unaffected.
    replica.release = anyio.Event()
    replica.release.set()
    async with GovernedClient(replica.server, mode=mode) as client:
        later: list[str] = []
        await _call(client, "again", "t-1", later)
        await _call(client, "other", "t-2", later)
    assert later == ["refused -32003", "ran"]


async def test_a_call_refused_after_the_policy_or_by_it_is_not_counted(mode: str) -> None:
    replica = Replica(refuse="refused")
    replica.release.set()
    outcomes: list[str] = []
    async with GovernedClient(replica.server, mode=mode) as client:
        for step in ("refused", "refused", "1", "2", "3"):
            await _call(client, step, "t-1", outcomes)
    assert replica.ran == ["1", "2"]
    assert outcomes[2:] == ["ran", "ran", "refused -32003"]
    assert all(o.startswith("refused") for o in outcomes[:2])


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as (url, _process):
        yield url


@pytest.fixture
async def shared(redis_url: str) -> AsyncIterator[Any]:
    redis_store = pytest.importorskip("mcpgov.redis", reason="the 'redis' extra is not installed")
    prefix = f"race-{time.monotonic_ns()}:"
    async with (
        redis_store.RedisStateStore.from_url(redis_url, prefix=prefix) as one,
        redis_store.RedisStateStore.from_url(redis_url, prefix=prefix) as two,
    ):
        yield one, two


async def test_two_replicas_sharing_a_store_hold_a_tasks_limit_together(shared: Any) -> None:
    one, two = shared
    settled = Settled(8)
    replicas = [Replica(one, settled=settled), Replica(two, settled=settled)]
    outcomes: list[str] = []
    async with (
        GovernedClient(replicas[0].server) as first,
        GovernedClient(replicas[1].server) as second,
        anyio.create_task_group() as tg,
    ):
        for step in range(8):
            tg.start_soon(_call, (first, second)[step % 2], str(step), "t-1", outcomes, settled)
        await settled.wait()
        for replica in replicas:
            replica.release.set()
    assert sum(len(r.ran) for r in replicas) == LIMIT
    assert sorted(outcomes) == ["ran"] * LIMIT + ["refused -32003"] * (8 - LIMIT)


async def test_a_task_call_whose_decision_reads_no_count_is_decided_inline_and_counted_once_it_ran() -> None:
    """Counting ahead costs a store round trip before the decision: only a call whose rules read
    the task's count pays it. Any other tool call of a task is decided inline and counted once it
    ran, so a limit added later still sees it."""
    from types import MappingProxyType

    from mcpgov import InMemoryStateStore, Principal

    class Logged(InMemoryStateStore):
        """Records each counter change."""

        def __init__(self) -> None:
            super().__init__()
            self.changes: list[str] = []

        async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
            self.changes.append(key)
            return await super().incr(key, ttl, amount)

    state = Logged()
    everything = {"version": 1, "rules": [{"id": "a", "effect": "allow", "tools": ["work"]}]}
    plain = PolicyMiddleware(Policy.from_dict(everything), state=state)
    limited = PolicyMiddleware(Policy.from_dict(POLICY), state=state)
    ctx = GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="work",
        arguments=MappingProxyType({}),
        task_id="t-1",
        principal=Principal("https://idp.example", "agent-1", tenant="acme"),
        tenant="acme",
    )
    assert plain.decide_now(ctx) is not None  # no store round trip before the decision
    assert limited.decide_now(ctx) is None  # the count is read from the store

    ran: list[int] = []

    async def run(c: GovContext) -> Any:
        ran.append(len(state.changes))
        return None

    async def run_uncounted(c: GovContext) -> Any:
        assert state.changes == counted  # nothing was counted before this call ran
        return await run(c)

    counted: list[str] = []
    for _ in range(LIMIT):
        await plain(ctx, run_uncounted)
        counted = list(state.changes)
    assert ran == [0, 1]
    assert len(counted) == LIMIT
    with pytest.raises(McpGovError):  # the calls that ran under the plain policy count
        await limited(ctx, run)
