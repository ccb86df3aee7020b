"""Authorisers: middleware that decides. Fail-closed evaluation and list filtering live here."""

from __future__ import annotations

import abc
import inspect
import logging
import math
import time
from typing import Any

import anyio

from mcpgov._chain import CallNext, Listing
from mcpgov._context import GovContext
from mcpgov._decision import Decision, Effect
from mcpgov._errors import ApprovalRequired, ConfigurationError, Denied

__all__ = ["Authorizer"]

logger = logging.getLogger("mcpgov.authorize")

LIST_METHODS = frozenset({"tools/list", "resources/list", "resources/templates/list", "prompts/list"})

APPROVAL_GRANT = "mcpgov.approval.grant"
"""``GovContext.extensions`` key under which an approval middleware passes a granted approval
(an object with ``covers(ctx, decision) -> bool`` and ``approver``) to the authorisers."""


class Authorizer(abc.ABC):
    """Base class for middleware that makes authorisation decisions.

    Subclasses implement :meth:`decide`. The base class turns it into middleware:

    * a request is allowed to proceed only on an allow; a deny raises :class:`~mcpgov.Denied`,
      a require-approval raises :class:`~mcpgov.ApprovalRequired`;
    * a listing is filtered: each entry is decided as a ``discover`` of that entry, so what a
      caller sees and what it may use come from the same decisions;
    * :meth:`decide` raising, returning something that is not a :class:`~mcpgov.Decision`, or
      running past ``deadline`` seconds is a deny. A late answer is discarded.

    Args:
        deadline: seconds one decision may take.
        name: the id recorded as the deciding rule when this authoriser itself fails.
    """

    def __init__(self, *, deadline: float = 1.0, name: str | None = None) -> None:
        if (
            not isinstance(deadline, (int, float))
            or isinstance(deadline, bool)
            or not (math.isfinite(deadline) and deadline > 0)
        ):
            raise ConfigurationError(f"deadline must be a positive number of seconds, got {deadline!r}")
        self.deadline = float(deadline)
        self.name = name or type(self).__name__

    @abc.abstractmethod
    async def decide(self, ctx: GovContext) -> Decision:
        """Decide about ``ctx``. Must return a :class:`~mcpgov.Decision`."""

    async def evaluate(self, ctx: GovContext) -> Decision:
        """Run :meth:`decide` under the deadline; any failure is a deny naming this authoriser."""
        return await guarded(self.decide, ctx, self.deadline, self.name)

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        if ctx.method in LIST_METHODS:
            result = await call_next(ctx)
            if isinstance(result, Listing):
                return await self.filter(ctx, result)
            return result
        decision = await self.evaluate(ctx)
        if decision.effect is Effect.REQUIRE_APPROVAL:
            decision = _approved(ctx, decision)
        if decision.effect is Effect.ALLOW:
            return await call_next(ctx.replace(decision=decision.combine(ctx.decision)))
        refusal = ApprovalRequired(decision) if decision.effect is Effect.REQUIRE_APPROVAL else Denied(decision)
        refusal.context = ctx
        raise refusal

    async def filter(self, ctx: GovContext, listing: Listing) -> Listing:
        """Keep the entries of ``listing`` whose discovery this authoriser allows."""
        visible: set[str] = set()
        for item in listing.items:
            decision = await self.evaluate(ctx.for_discovery(listing.kind, item.name))
            # An entry that needs approval to use is still shown: the approval happens on use.
            if decision.effect is not Effect.DENY:
                visible.add(item.name)
        return listing.keep(lambda item: item.name in visible)


def _approved(ctx: GovContext, decision: Decision) -> Decision:
    """An approval-required decision becomes an allow only with a grant for exactly this action."""
    grant = ctx.extensions.get(APPROVAL_GRANT)
    if grant is None:
        return decision
    try:
        covered = grant.covers(ctx, decision) is True
    except Exception:  # noqa: BLE001 - a broken grant object grants nothing
        logger.warning("approval grant check raised; the approval does not apply")
        covered = False
    if not covered:
        return decision
    return Decision(
        Effect.ALLOW,
        decision.rule,
        f"approved by {grant.approver}",
        "approved",
        decision.obligations,
        decision.engine,
        decision.policy_version,
    )


async def guarded(
    decide: Any, ctx: GovContext, deadline: float, rule: str, *, is_async: bool = True, offload: bool = False
) -> Decision:
    """Call ``decide(ctx)`` fail-closed under ``deadline`` seconds.

    An async decider runs under a cancel scope and is cancelled at the deadline. A sync one
    cannot be interrupted: inline (the default) it blocks the event loop for as long as it runs
    and its answer is discarded if it came too late; with ``offload`` it runs in a worker thread
    and the request is denied at the deadline while the event loop keeps serving (the thread is
    abandoned and its late answer discarded).
    """
    start = time.perf_counter()
    try:
        if offload and not is_async:
            with anyio.fail_after(deadline):
                result = await anyio.to_thread.run_sync(decide, ctx, abandon_on_cancel=True)
        elif is_async:
            with anyio.fail_after(deadline):
                result = decide(ctx)
                if inspect.isawaitable(result):
                    result = await result
        else:
            result = decide(ctx)
            if type(result) is not Decision and inspect.isawaitable(
                result
            ):  # a sync callable that returned an awaitable after all
                with anyio.fail_after(max(deadline - (time.perf_counter() - start), 0.0)):
                    result = await result
    except TimeoutError:
        return Decision.deny(rule, f"{rule} did not decide within {deadline}s", "authoriser_timeout")
    except Exception as exc:  # noqa: BLE001 - fail closed: an authoriser error is a deny
        logger.warning("authoriser %s raised %s; denying", rule, type(exc).__name__)
        return Decision.deny(rule, f"{rule} raised {type(exc).__name__}", "authoriser_error")
    if time.perf_counter() - start > deadline:
        return Decision.deny(rule, f"{rule} did not decide within {deadline}s", "authoriser_timeout")
    if not isinstance(result, Decision) or not isinstance(result.effect, Effect):
        detail = f"{rule} returned {type(result).__name__}, not a Decision"
        return Decision.deny(rule, detail, "authoriser_invalid")
    return result


def is_async_callable(fn: Any) -> bool:
    """True for coroutine functions and objects whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004
