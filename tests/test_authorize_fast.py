"""Synchronous decisions without a cancel scope (``Authorizer.decide_now``), held to the same rules.

* a policy decision that needs nothing asynchronous is made by ``decide_now`` and is the very
  decision ``decide`` makes; one that needs task history or a rate limit is left to ``decide``;
* a governed session with a policy makes its calls and its listings without entering a cancel
  scope per decision, and still enters one where the decision awaits something;
* a ``decide_now`` that raises, answers something else than a Decision, or answers too late is a
  deny, audited, and nothing runs; a listing hides the entries it failed on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Authorizer, Decision, Effect, GovContext, Principal, govern
from mcpgov.policy import OBLIGATION_RATE_LIMIT, Policy, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

from .test_policy_properties import context, policy_of, requests, rules

TENANT = Principal("https://idp", "alice", tenant="acme")


@st.composite
def rules_with_async_parts(draw: st.DrawFn) -> dict[str, Any]:
    rule = draw(rules())
    extra = draw(st.sampled_from(["none", "history", "rate_limit"]))
    if extra == "history":
        rule.setdefault("when", {})["history"] = {"calls_below": draw(st.integers(1, 3))}
    elif extra == "rate_limit" and rule["effect"] == "allow":
        rule["obligations"] = {"rate_limit": {"limit": 2, "per": 60, "by": ["principal"]}}
    return rule


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(rules_with_async_parts(), min_size=1, max_size=5),
    requests,
    st.sampled_from(["execute", "discover"]),
    st.sampled_from([None, "task-1"]),
)
def test_decide_now_is_decide_or_nothing(
    drawn: list[dict[str, Any]], req: dict[str, Any], action: str, task: str | None
) -> None:
    policy = Policy.from_dict(policy_of(drawn))
    base = context(req, action)
    ctx = base.replace(task_id=task) if task is not None else base
    quick = PolicyMiddleware(policy).decide_now(ctx)
    full = anyio.run(PolicyMiddleware(policy).decide, ctx)
    # Left to decide() exactly where the decision needs task history or admits a rate limit.
    execute = action == "execute"
    # Listings inside a task see its history exactly as calls do; an approved call counts too.
    needs_history = bool(PolicyMiddleware(policy).engine.history_needs(ctx))
    admits_limit = execute and full.effect is not Effect.DENY and bool(full.obligations.get(OBLIGATION_RATE_LIMIT))
    assert (quick is None) == (needs_history or admits_limit), (quick, full, drawn)
    if quick is not None:
        assert quick == full


@contextmanager
def counting_scopes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Count the deadline scopes mcpgov's authorisers enter (not the SDK's own)."""
    entered: list[str] = []
    original = anyio.fail_after

    def fail_after(delay: float | None, shield: bool = False) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("mcpgov."):
            entered.append(caller)
        return original(delay, shield)

    monkeypatch.setattr(anyio, "fail_after", fail_after)
    yield entered


POLICY = {
    "rules": [
        {"id": "no-admin", "effect": "deny", "tools": ["admin_*"]},
        {"id": "tools", "effect": "allow", "tenants": ["acme"], "tools": ["tool_*"]},
        {
            "id": "limited",
            "effect": "allow",
            "tenants": ["acme"],
            "tools": ["limited"],
            "obligations": {"rate_limit": {"limit": 100, "per": 60, "by": ["principal"]}},
        },
    ]
}


def _numbered(i: int) -> Callable[[int], int]:
    def tool(x: int) -> int:
        return x + i

    return tool


async def as_alice(ctx: GovContext, call_next: Any) -> Any:
    """Stands in for identity middleware: the caller is alice of acme."""
    return await call_next(ctx.replace(principal=TENANT, tenant="acme"))


def build(n_tools: int) -> tuple[MCPServer, InMemoryAuditSink, list[str]]:
    server = MCPServer("many")
    ran: list[str] = []
    for i in range(n_tools):
        server.add_tool(_numbered(i), name=f"tool_{i}")
    server.add_tool(_numbered(-1), name="admin_reset")

    @server.tool()
    def limited() -> str:
        ran.append("limited")
        return "ok"

    sink = InMemoryAuditSink()
    govern(server, as_alice, PolicyMiddleware(Policy.from_dict(POLICY)), audit=sink)
    return server, sink, ran


@pytest.mark.anyio
async def test_listing_and_calls_enter_no_scope_per_decision(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    server, sink, ran = build(60)
    with counting_scopes(monkeypatch) as entered:
        async with Client(server, mode=mode) as client:
            listed = {t.name for t in (await client.list_tools()).tools}
            assert listed == {f"tool_{i}" for i in range(60)} | {"limited"}
            for i in range(5):
                result = await client.call_tool(f"tool_{i}", {"x": 1})
                assert result.structured_content == {"result": 1 + i}
            with pytest.raises(MCPError):
                await client.call_tool("admin_reset", {"x": 1})
        assert entered == []  # 62 listing decisions and 6 call decisions, no scope
        async with Client(server, mode=mode) as client:
            await client.call_tool("limited", {})
        assert entered  # the rate limit is admitted asynchronously: under a deadline
    assert ran == ["limited"]
    denied = [(e.target, e.rule) for e in sink.decisions() if e.effect == "deny"]
    assert denied == [("admin_reset", "no-admin")]


class Quick(Authorizer):
    """An authoriser whose synchronous answer is given by ``answer``; ``decide`` must not run."""

    def __init__(self, answer: Callable[[GovContext], Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answer = answer
        self.slow_path = 0

    def decide_now(self, ctx: GovContext) -> Decision | None:
        result: Decision | None = self.answer(ctx)
        return result

    async def decide(self, ctx: GovContext) -> Decision:
        self.slow_path += 1
        return Decision.allow("slow-path")


def _raise(ctx: GovContext) -> Decision:
    raise RuntimeError("engine broke")


def _late(ctx: GovContext) -> Decision:
    time.sleep(0.06)
    return Decision.allow("too-late")


def _hostile(ctx: GovContext) -> Any:
    return "allow"


def _base_exception(ctx: GovContext) -> Decision:
    raise KeyError("missing")


class _NotAnException(BaseException):
    """Raised by a broken engine: not an ``Exception``, and not an exit either."""


def _not_an_exception(ctx: GovContext) -> Decision:
    raise _NotAnException("broken")


BROKEN: dict[str, tuple[Callable[[GovContext], Any], str]] = {
    "raises": (_raise, "authoriser_error"),
    "raises-lookup": (_base_exception, "authoriser_error"),
    "raises-not-an-exception": (_not_an_exception, "authoriser_error"),
    "late": (_late, "authoriser_timeout"),
    "not-a-decision": (_hostile, "authoriser_invalid"),
    "a-dict": (lambda ctx: {"effect": "allow"}, "authoriser_invalid"),
}


def work_and_other() -> tuple[MCPServer, list[str]]:
    """A server with ``work`` (whose decision breaks) and ``other`` (allowed), and what ran."""
    server = MCPServer("broken")
    ran: list[str] = []

    @server.tool()
    def work() -> str:
        ran.append("work")
        return "done"

    @server.tool()
    def other() -> str:
        ran.append("other")
        return "done"

    return server, ran


async def check_work_is_denied(
    server: MCPServer, ran: list[str], sink: InMemoryAuditSink, mode: str, *, reason: str, rule: str
) -> None:
    """``work`` is hidden from the listing and refused, audited with ``reason`` and ``rule``;
    ``other`` is listed and runs."""
    async with Client(server, mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"other"}  # the failing entry is hidden
        with pytest.raises(MCPError) as caught:
            await client.call_tool("work", {})
        assert caught.value.code == -32003
        assert (await client.call_tool("other", {})).is_error is False
    assert ran == ["other"]
    denied = [(e.target, e.reason, e.rule) for e in sink.decisions() if e.effect == "deny"]
    assert denied == [("work", reason, rule)]


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(BROKEN))
async def test_a_broken_synchronous_answer_is_an_audited_deny(case: str, mode: str) -> None:
    answer, reason = BROKEN[case]
    server, ran = work_and_other()

    def selective(ctx: GovContext) -> Any:
        if ctx.target == "other":
            return Decision.allow("fine")
        return answer(ctx)

    quick = Quick(selective, deadline=0.03)
    sink = InMemoryAuditSink()
    govern(server, quick, audit=sink)
    await check_work_is_denied(server, ran, sink, mode, reason=reason, rule="Quick")
    assert quick.slow_path == 0


@pytest.mark.anyio
async def test_no_synchronous_answer_means_decide_under_its_deadline(mode: str) -> None:
    class Slow(Authorizer):
        async def decide(self, ctx: GovContext) -> Decision:
            await anyio.sleep(5)
            return Decision.allow("never")

    server = MCPServer("slow")

    @server.tool()
    def work() -> str:
        return "done"

    sink = InMemoryAuditSink()
    govern(server, Slow(deadline=0.05), audit=sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("work", {})
    assert [e.reason for e in sink.decisions()] == ["authoriser_timeout"]


def test_decide_now_default_is_none() -> None:
    class Plain(Authorizer):
        async def decide(self, ctx: GovContext) -> Decision:
            return Decision.allow("x")

    ctx = GovContext(side="server", method="tools/call", kind="tool", target="t", arguments=MappingProxyType({}))
    assert Plain().decide_now(ctx) is None
