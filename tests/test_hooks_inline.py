"""Synchronous hooks are asked inline (no coroutine, no cancel scope), held to the same rules.

* a hook that raises (any exception, a ``BaseException`` that is not one, a stray
  ``CancelledError``, its own ``TimeoutError``), answers too late, answers something that is not
  a Decision, or hands back an awaitable after all is judged exactly as before: a deny naming the
  hook's rule with the reason, audited, nothing run; a listing hides that entry;
* calls, listings and ``decide`` give the same answer for any sequence of hooks, sync and async;
* a listing decided by synchronous hooks enters no deadline scope per entry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, Effect, GovContext, Hooks, govern
from mcpgov._chain import Listing, ListItem
from mcpgov.testing import InMemoryAuditSink

from .test_authorize_fast import _numbered, check_work_is_denied, counting_scopes, work_and_other

DEADLINE = 0.05


class _NotAnException(BaseException):
    """Raised by a broken hook: not an ``Exception``, and not an exit either."""


def _raises(ctx: GovContext) -> Decision:
    raise RuntimeError("hook broke")


def _raises_base(ctx: GovContext) -> Decision:
    raise _NotAnException("broken")


def _raises_cancelled(ctx: GovContext) -> Decision:
    raise asyncio.CancelledError  # nothing cancelled the request: an error of this hook


def _raises_timeout(ctx: GovContext) -> Decision:
    raise TimeoutError


def _late(ctx: GovContext) -> Decision:
    time.sleep(DEADLINE + 0.03)
    return Decision.allow("too-late")


def _not_a_decision(ctx: GovContext) -> Any:
    return "allow"


def _awaitable_allow(ctx: GovContext) -> Any:
    async def later() -> Decision:
        return Decision.allow("later")

    return later()


def _awaitable_late(ctx: GovContext) -> Any:
    async def later() -> Decision:
        await anyio.sleep(5)
        return Decision.allow("never")

    return later()


def _awaitable_raises(ctx: GovContext) -> Any:
    async def later() -> Decision:
        raise KeyError("missing")

    return later()


BROKEN: dict[str, tuple[Callable[[GovContext], Any], str]] = {
    "raises": (_raises, "authoriser_error"),
    "raises-not-an-exception": (_raises_base, "authoriser_error"),
    "raises-stray-cancel": (_raises_cancelled, "authoriser_error"),
    "raises-timeout": (_raises_timeout, "authoriser_timeout"),
    "late": (_late, "authoriser_timeout"),
    "not-a-decision": (_not_a_decision, "authoriser_invalid"),
    "awaitable-late": (_awaitable_late, "authoriser_timeout"),
    "awaitable-raises": (_awaitable_raises, "authoriser_error"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(BROKEN))
async def test_a_broken_synchronous_hook_is_an_audited_deny_naming_it(case: str, mode: str) -> None:
    answer, reason = BROKEN[case]
    server, ran = work_and_other()
    hooks = Hooks(deadline=DEADLINE)
    hooks.register("*", lambda ctx: Decision.allow("everyone"), rule="hook:everyone")
    hooks.register("work", answer, rule="hook:broken")
    hooks.register("other", lambda ctx: Decision.allow("fine"), rule="hook:fine")
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    await check_work_is_denied(server, ran, sink, mode, reason=reason, rule="hook:broken")


@pytest.mark.anyio
async def test_a_sync_hook_handing_back_an_awaitable_is_awaited_under_its_deadline(mode: str) -> None:
    server = MCPServer("later")

    @server.tool()
    def work() -> str:
        return "done"

    hooks = Hooks(deadline=DEADLINE)
    hooks.register("work", _awaitable_allow)
    govern(server, hooks)
    async with Client(server, mode=mode) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"work"}
        assert (await client.call_tool("work", {})).structured_content == {"result": "done"}


@pytest.mark.anyio
async def test_a_listing_decided_by_synchronous_hooks_enters_no_scope_per_entry(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    server = MCPServer("many")
    for i in range(40):
        server.add_tool(_numbered(0), name=f"tool_{i}")
    hooks = Hooks()
    hooks.register("tool_*", lambda ctx: Decision.allow("tools"))
    hooks.register("tool_3*", lambda ctx: Decision.deny("thirties", "no thirties"))
    govern(server, hooks)
    with counting_scopes(monkeypatch) as entered:
        async with Client(server, mode=mode) as client:
            listed = {t.name for t in (await client.list_tools()).tools}
            assert (await client.call_tool("tool_1", {"x": 1})).structured_content == {"result": 1}
    assert listed == {f"tool_{i}" for i in range(40) if not str(i).startswith("3")}
    assert entered == []  # 40 listing decisions and one call decision, no scope

    async def slow(ctx: GovContext) -> Decision:
        return Decision.allow("async")

    hooks.register("tool_1", slow)
    with counting_scopes(monkeypatch) as entered:
        async with Client(server, mode=mode) as client:
            assert (await client.call_tool("tool_1", {"x": 1})).structured_content == {"result": 1}
    assert entered  # an async hook is still asked under its deadline


# -- property: calls, listings and decide() agree for any sequence of hooks ---------------------------

_BEHAVIOURS = ["allow", "deny", "approval", "raise", "not-a-decision", "awaitable-allow", "awaitable-deny"]


def _hook(behaviour: str, is_async: bool, index: int) -> Callable[[GovContext], Any]:
    def answer() -> Any:
        if behaviour == "allow":
            return Decision.allow(f"allow-{index}")
        if behaviour == "deny":
            return Decision.deny(f"deny-{index}", "no")
        if behaviour == "approval":
            return Decision.require_approval(f"approve-{index}", "ask")
        if behaviour == "raise":
            raise ValueError("broken")
        return "not a decision"

    if is_async:

        async def async_hook(ctx: GovContext) -> Any:
            await anyio.lowlevel.checkpoint()
            return answer()

        return async_hook

    def sync_hook(ctx: GovContext) -> Any:
        if behaviour.startswith("awaitable-"):

            async def later() -> Decision:
                return Decision.allow("later") if behaviour == "awaitable-allow" else Decision.deny("later", "no")

            return later()
        return answer()

    return sync_hook


def _expected(drawn: list[tuple[str, bool]]) -> tuple[Effect, str]:
    """The effect and rule every path must give: the first deny in order, else the strictest."""
    effects: list[tuple[Effect, str]] = []
    for index, (behaviour, is_async) in enumerate(drawn):
        rule = f"hook:{index}"
        if behaviour in ("raise", "not-a-decision") or (is_async and behaviour.startswith("awaitable-")):
            return Effect.DENY, rule
        if behaviour == "deny":
            return Effect.DENY, f"deny-{index}"
        if behaviour == "awaitable-deny":
            return Effect.DENY, "later"
        effects.append(
            (Effect.REQUIRE_APPROVAL, f"approve-{index}") if behaviour == "approval" else (Effect.ALLOW, "any")
        )
    approvals = [e for e in effects if e[0] is Effect.REQUIRE_APPROVAL]
    return approvals[-1] if approvals else (Effect.ALLOW, "any")  # the later of equal effects names the rule


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_BEHAVIOURS), st.booleans()), min_size=1, max_size=4))
def test_property_calls_listings_and_decide_agree(drawn: list[tuple[str, bool]]) -> None:
    hooks = Hooks(deadline=1.0)
    for index, (behaviour, is_async) in enumerate(drawn):
        hooks.register("t*", _hook(behaviour, is_async, index), rule=f"hook:{index}")
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="tool", action="execute")

    async def main() -> None:
        by_evaluate = await hooks.evaluate(ctx)
        by_decide = await hooks.decide(ctx)
        listing = Listing("tool", (ListItem("tool", {"name": "tool"}),))
        shown = await hooks.filter(ctx.replace(method="tools/list", kind=None, target=None, action=None), listing)
        effect, rule = _expected(drawn)
        assert by_evaluate.effect is by_decide.effect is effect, (by_evaluate, by_decide, drawn)
        if effect is not Effect.ALLOW:
            assert by_evaluate.rule == by_decide.rule == rule
        assert bool(shown.items) == (effect is not Effect.DENY)

    anyio.run(main)


@pytest.mark.anyio
async def test_a_subclass_deciding_its_own_way_is_still_asked_for_calls_and_listings(mode: str) -> None:
    asked: list[tuple[str | None, str | None]] = []

    class Audited(Hooks):
        async def decide(self, ctx: GovContext) -> Decision:
            asked.append((ctx.action, ctx.target))
            if ctx.target == "secret":
                return Decision.deny("no-secret", "never")
            return await super().decide(ctx)

    server = MCPServer("sub")
    server.add_tool(_numbered(0), name="open")
    server.add_tool(_numbered(0), name="secret")
    hooks = Audited()
    hooks.register("*", lambda ctx: Decision.allow("all"))
    govern(server, hooks)
    async with Client(server, mode=mode) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"open"}
        assert (await client.call_tool("open", {"x": 2})).structured_content == {"result": 2}
        with pytest.raises(MCPError):
            await client.call_tool("secret", {"x": 2})
    assert ("discover", "secret") in asked and ("execute", "open") in asked and ("execute", "secret") in asked
