"""A request refused under rate limits consumes none of them: a caller over its own limit, or a
request whose counting failed half-way, leaves every other counter as it was, so one noisy
caller never spends a limit it shares with others (a tenant's, a tool's)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import MappingProxyType
from typing import Any, cast

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp_types import RequestParamsMeta

from mcpgov import CallNext, Decision, Effect, GovContext, Principal, StateStore, govern
from mcpgov._context import APPROVAL_GRANT
from mcpgov._state import InMemoryStateStore, StateStoreError
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

from .policies.support import LookupIdentity, as_
from .redis_support import redis_server

AGENT_LIMIT = 1
TENANT_LIMIT = 2


def _policy(tenant_limit: int = TENANT_LIMIT) -> Policy:
    return Policy.from_dict(
        {
            "rules": [
                {
                    "id": "per-agent",
                    "effect": "allow",
                    "tools": ["search"],
                    "obligations": {"rate_limit": {"limit": AGENT_LIMIT, "per": 60, "by": ["principal"]}},
                },
                {
                    "id": "per-tenant",
                    "effect": "allow",
                    "tools": ["search"],
                    "obligations": {"rate_limit": {"limit": tenant_limit, "per": 60, "by": ["tenant"]}},
                },
            ]
        }
    )


class _Interrupted(BaseException):
    """Not an ``Exception``: what a store (or a cancellation) may raise instead of a store error."""


class _FlakyStore(InMemoryStateStore):
    """Counts like the in-memory store; the next ``failures`` increments of a tenant counter fail
    after the principal's counter of the same request was counted."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[BaseException] = []
        self.seen: list[str] = []

    async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        if amount > 0:
            self.seen.append(key)
            if self.failures and len(self.seen) % 2 == 0:
                raise self.failures.pop(0)
        return await super().incr(key, ttl, amount)


def _server(store: StateStore, tenant_limit: int = TENANT_LIMIT) -> tuple[MCPServer, InMemoryAuditSink, list[str]]:
    server = MCPServer("search")
    ran: list[str] = []

    @server.tool()
    def search(query: str) -> str:
        ran.append(query)
        return query

    sink = InMemoryAuditSink()
    middleware = PolicyMiddleware(_policy(tenant_limit), state=store, clock=lambda: 1_000.0)
    govern(server, LookupIdentity(), middleware, audit=sink)
    return server, sink, ran


async def _call(client: Client, who: str, query: str) -> bool:
    try:
        result = await client.call_tool("search", {"query": query}, meta=as_(who))
    except MCPError as exc:
        code = exc.code
    else:
        assert result.is_error is False
        return True
    assert code == -32003
    return False


@pytest.mark.anyio
async def test_a_caller_over_its_own_limit_spends_nothing_of_its_tenants(mode: str) -> None:
    server, sink, ran = _server(InMemoryStateStore())
    async with Client(server, mode=mode) as client:
        assert await _call(client, "alice", "a1")
        for i in range(5):
            assert not await _call(client, "alice", f"a{i + 2}")
        # The tenant's limit of two admitted requests still has room for another agent.
        assert await _call(client, "reader", "r1")
        assert not await _call(client, "reader", "r2")
    assert ran == ["a1", "r1"]
    denied = [(e.rule, e.reason) for e in sink.decisions() if e.effect == "deny"]
    assert denied == [("per-agent", "rate_limited")] * 6


@pytest.mark.anyio
@pytest.mark.parametrize(
    "failure",
    # Made per test: a raised instance kept in the parameters would keep its traceback, and the
    # sessions its frames reference, alive for the rest of the run.
    [lambda: StateStoreError("down", reason="unavailable"), _Interrupted],
    ids=["store-error", "base-exception"],
)
async def test_a_request_whose_counting_fails_half_way_spends_nothing(
    failure: Callable[[], BaseException], mode: str
) -> None:
    store = _FlakyStore()
    server, sink, ran = _server(store)
    async with Client(server, mode=mode) as client:
        store.failures = [failure()]
        with pytest.raises(MCPError) as caught:
            await client.call_tool("search", {"query": "lost"}, meta=as_("alice"))
        assert caught.value.code == -32003
        assert len(store.seen) == 2  # the principal's counter was counted, the tenant's failed
        # The refused request left alice's own limit untouched.
        assert await _call(client, "alice", "a1")
        assert not await _call(client, "alice", "a2")
    assert ran == ["a1"]
    assert sink.decisions()[0].effect == "deny"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(callers=st.lists(st.sampled_from(["alice", "reader"]), max_size=8))
@pytest.mark.anyio
async def test_property_a_request_is_admitted_exactly_when_every_limit_has_room(callers: list[str], mode: str) -> None:
    server, _sink, ran = _server(InMemoryStateStore())
    admitted: dict[str, int] = {}
    expected: list[str] = []
    async with Client(server, mode=mode) as client:
        for i, who in enumerate(callers):
            room = admitted.get(who, 0) < AGENT_LIMIT and sum(admitted.values()) < TENANT_LIMIT
            if room:
                admitted[who] = admitted.get(who, 0) + 1
                expected.append(f"{who}{i}")
            assert await _call(client, who, f"{who}{i}") is room
    assert ran == expected


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as (url, _process):
        yield url


@pytest.fixture
async def shared(redis_url: str) -> AsyncIterator[Any]:
    redis_store = pytest.importorskip("mcpgov.redis", reason="the 'redis' extra is not installed")
    prefix = f"rate-{time.monotonic_ns()}:"
    async with (
        redis_store.RedisStateStore.from_url(redis_url, prefix=prefix) as one,
        redis_store.RedisStateStore.from_url(redis_url, prefix=prefix) as two,
    ):
        yield one, two


@pytest.mark.anyio
async def test_two_replicas_racing_on_one_redis_admit_within_every_limit_and_spend_nothing_refused(
    shared: Any,
) -> None:
    one, two = shared
    replicas = [_server(one, tenant_limit=3), _server(two, tenant_limit=3)]
    outcomes: dict[str, list[bool]] = {"alice": [], "reader": []}

    async def call(client: Client, who: str, query: str) -> None:
        outcomes[who].append(await _call(client, who, query))

    async with Client(replicas[0][0]) as first, Client(replicas[1][0]) as second:
        async with anyio.create_task_group() as tg:
            for i in range(12):
                who = ("alice", "reader")[i % 2]
                tg.start_soon(call, (first, second)[(i // 2) % 2], who, f"{who}{i}")
        # Each agent got exactly its one request; the ten refused ones spent nothing of the
        # tenant's three, so a third agent of the tenant still gets one.
        assert sorted(outcomes["alice"]) == [False] * 5 + [True]
        assert sorted(outcomes["reader"]) == [False] * 5 + [True]
        assert await _call(second, "sub-agent", "s1")
        assert not await _call(first, "sub-agent", "s2")
    assert sum(len(ran) for _server_, _sink, ran in replicas) == 3


SPELLINGS = ["alice", "Alice", "ALICE", "alice ", " alice", "\uff41lice", "al\u200bice", "ali\u00adce"]


class _SpelledIdentity:
    """Identity whose subject (and tenant) is spelled as the request's ``_meta`` says."""

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        subject = ctx.meta.get("test/subject")
        tenant = ctx.meta.get("test/tenant")
        if not isinstance(subject, str) or not isinstance(tenant, str):
            return await call_next(ctx)
        principal = Principal("https://idp.example", subject, tenant=tenant)
        return await call_next(ctx.replace(principal=principal, tenant=tenant))


def _as(subject: str, tenant: str) -> RequestParamsMeta:
    return cast("RequestParamsMeta", {"test/subject": subject, "test/tenant": tenant})


def _spelled_server(by: str) -> tuple[MCPServer, list[str]]:
    server = MCPServer("search")
    ran: list[str] = []

    @server.tool()
    def search(query: str) -> str:
        ran.append(query)
        return query

    policy = Policy.from_dict(
        {
            "rules": [
                {
                    "id": "limited",
                    "effect": "allow",
                    "tools": ["search"],
                    "obligations": {"rate_limit": {"limit": 1, "per": 60, "by": [by]}},
                }
            ]
        }
    )
    govern(server, _SpelledIdentity(), PolicyMiddleware(policy, clock=lambda: 1_000.0))
    return server, ran


@pytest.mark.anyio
@pytest.mark.parametrize("spelling", SPELLINGS[1:])
async def test_one_principal_in_another_spelling_shares_its_counter(spelling: str, mode: str) -> None:
    server, ran = _spelled_server("principal")
    async with Client(server, mode=mode) as client:
        meta = _as("alice", "acme")
        assert (await client.call_tool("search", {"query": "first"}, meta=meta)).is_error is False
        with pytest.raises(MCPError) as caught:
            await client.call_tool("search", {"query": "again"}, meta=_as(spelling, "acme"))
        assert caught.value.code == -32003
    assert ran == ["first"]


@pytest.mark.anyio
@pytest.mark.parametrize("spelling", ["Acme", "ACME", "acme ", "\uff41cme"])
async def test_one_tenant_in_another_spelling_shares_its_counter(spelling: str, mode: str) -> None:
    server, ran = _spelled_server("tenant")
    async with Client(server, mode=mode) as client:
        meta = _as("alice", "acme")
        assert (await client.call_tool("search", {"query": "first"}, meta=meta)).is_error is False
        with pytest.raises(MCPError) as caught:
            await client.call_tool("search", {"query": "again"}, meta=_as("bob", spelling))
        assert caught.value.code == -32003
    assert ran == ["first"]


class _Grant:
    """An approval grant for one argument value only (what ``covers`` checks, in short)."""

    approver = "carol"

    def __init__(self, query: str) -> None:
        self.query = query

    def covers(self, ctx: GovContext, decision: Decision) -> bool:
        return (ctx.arguments or {}).get("query") == self.query


@pytest.mark.anyio
async def test_a_grant_that_does_not_cover_the_request_spends_none_of_its_limits() -> None:
    """An approval-required request is counted only when its grant approves exactly it: a grant
    replayed on other requests, each refused, never spends the limit the approved one needs."""
    policy = Policy.from_dict(
        {
            "rules": [
                {
                    "id": "big-search",
                    "effect": "require_approval",
                    "tools": ["search"],
                    "obligations": {"rate_limit": {"limit": 1, "per": 60, "by": ["tenant"]}},
                }
            ]
        }
    )
    middleware = PolicyMiddleware(policy, clock=lambda: 1_000.0)
    principal = Principal("https://idp.example", "alice", tenant="acme")

    def ctx(query: str, grant: _Grant) -> GovContext:
        return GovContext(
            side="server",
            method="tools/call",
            kind="tool",
            target="search",
            arguments=MappingProxyType({"query": query}),
            principal=principal,
            tenant="acme",
        ).with_extension(APPROVAL_GRANT, grant)

    grant = _Grant("approved")
    for i in range(3):
        replayed = await middleware.decide(ctx(f"other-{i}", grant))
        assert (replayed.effect, replayed.rule) == (Effect.REQUIRE_APPROVAL, "big-search")
    admitted = await middleware.decide(ctx("approved", grant))
    assert admitted.effect is Effect.REQUIRE_APPROVAL  # the authoriser turns it into an allow
    again = await middleware.decide(ctx("approved", grant))
    assert (again.effect, again.reason_code) == (Effect.DENY, "rate_limited")


class _FailingTakeBack(InMemoryStateStore):
    """Counts like the in-memory store, tracks each counter, and fails the next take-back after
    the first one of a request with an exception that is not an ``Exception``."""

    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[str, int] = {}
        self.fail_second_take_back = False
        self._take_backs = 0

    async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        if amount < 0 and self.fail_second_take_back:
            self._take_backs += 1
            if self._take_backs == 2:
                raise _Interrupted
        self.totals[key] = self.totals.get(key, 0) + amount
        return await super().incr(key, ttl, amount)


@pytest.mark.anyio
async def test_a_take_back_interrupted_half_way_takes_nothing_back_twice(mode: str) -> None:
    store = _FailingTakeBack()
    server, _sink, ran = _server(store)
    async with Client(server, mode=mode) as client:
        assert await _call(client, "alice", "a1")
        assert await _call(client, "reader", "r1")
        store.fail_second_take_back = True
        # The tenant's limit is spent: both of this request's counts are taken back, the second
        # one interrupted.
        with pytest.raises(MCPError) as caught:
            await client.call_tool("search", {"query": "s1"}, meta=as_("sub-agent"))
        assert caught.value.code == -32003
    assert ran == ["a1", "r1"]
    assert all(total >= 0 for total in store.totals.values()), store.totals
