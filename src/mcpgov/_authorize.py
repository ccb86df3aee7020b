"""Authorisers: middleware that decides. Fail-closed evaluation and list filtering live here."""

from __future__ import annotations

import abc
import dataclasses
import inspect
import logging
import math
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.to_thread

from mcpgov._chain import CallNext, ChainResult, Listing, StageSpec
from mcpgov._contain import contained
from mcpgov._context import APPROVAL_GRANT, GovContext, discovery_contexts
from mcpgov._decision import RATE_LIMIT, Decision, Effect
from mcpgov._errors import ApprovalRequired, ConfigurationError, Denied
from mcpgov._methods import LIST_METHODS
from mcpgov._state import StateStore
from mcpgov._types import Clock
from mcpgov._validate import positive_seconds

if TYPE_CHECKING:
    from mcpgov.policy._ratelimit import RateLimiter, RateLimitSpec

__all__ = ["Authorizer", "Unsettled", "approved_decision", "decided_inline", "guarded", "rate_limit_specs"]

logger = logging.getLogger("mcpgov.authorize")


PROTOCOL_DEFAULT_METHODS = frozenset({"logging/setLevel", "subscriptions/listen"})
"""Methods allowed for any admitted caller unless a rule decides about them: the client's own
log level and its list-changed subscription stream carry no tool, resource or prompt."""

PROTOCOL_DEFAULT_RULE = "mcpgov:protocol-default"
"""The rule audit records for an allow made by the protocol default."""

_NO_RULE_APPLIED = frozenset({"mcpgov:default-deny", "mcpgov:policy:default-deny", "cedar:default-deny"})
"""The rules the built-in authorisers (hooks, policy, Cedar) name when no rule applied."""

_PROTOCOL_ALLOW = Decision(
    Effect.ALLOW,
    PROTOCOL_DEFAULT_RULE,
    "no rule decided about this protocol method; it is allowed by default",
    "protocol_default",
)


def protocol_default(ctx: GovContext, decision: Decision) -> Decision:
    """Turn a "no rule applied" deny of a :data:`PROTOCOL_DEFAULT_METHODS` request into an allow.

    Only a built-in authoriser's default deny (no hook or rule applied) changes: a rule's or
    hook's deny, an authoriser's failure (error, timeout, invalid answer) and an approval
    requirement stand.
    """
    if (
        ctx.method in PROTOCOL_DEFAULT_METHODS
        and ctx.kind is None
        and decision.effect is Effect.DENY
        and decision.reason_code == "default_deny"
        and decision.rule in _NO_RULE_APPLIED
    ):
        return _PROTOCOL_ALLOW
    return decision


class Authorizer(abc.ABC):
    """Base class for middleware that makes authorisation decisions.

    Subclasses implement :meth:`decide`. The base class turns it into middleware:

    * a request is allowed to proceed only on an allow; a deny raises :class:`~mcpgov.Denied`,
      a require-approval raises :class:`~mcpgov.ApprovalRequired`;
    * a listing is filtered: each entry is decided as a ``discover`` of that entry, so what a
      caller sees and what it may use come from the same decisions;
    * :meth:`decide` raising, returning something that is not a :class:`~mcpgov.Decision`, or
      running past ``deadline`` seconds is a deny. A late answer is discarded.
    * a default deny (no rule applied) of ``logging/setLevel`` or ``subscriptions/listen``
      becomes an allow (rule ``mcpgov:protocol-default``): a rule about them decides as usual.
    * a ``rate_limit`` obligation its allow (or approved request) carries is counted in
      ``state`` (default: in memory) before the request goes on: over the limit is a deny
      (``rate_limited``), a limit that cannot be read or counted is a deny. The counts are taken
      back when the request is refused or fails before it runs.

    Args:
        deadline: seconds one decision may take.
        name: the id recorded as the deciding rule when this authoriser itself fails.
        state: where the rate limits its decisions carry are counted (default: in memory, this
            process only; share a store between replicas to share the limits).
        clock: seconds since the epoch, for the rate-limit windows (injectable).
    """

    stage: ClassVar[StageSpec] = StageSpec(after=frozenset({"principal", "credential", "approval"}))

    counts_own_limits: ClassVar[bool] = False
    """Whether :meth:`decide` itself counts the rate limits of its allows (``PolicyMiddleware``);
    otherwise the base class counts them."""

    def __init__(
        self,
        *,
        deadline: float = 1.0,
        name: str | None = None,
        state: StateStore | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.deadline = positive_seconds("deadline", deadline)
        self.name = name or type(self).__name__
        if state is not None and not isinstance(state, StateStore):
            raise ConfigurationError(f"state must implement StateStore, got {type(state).__name__}")
        if not callable(clock):
            raise ConfigurationError("clock must be callable")
        self._limit_state = state
        self._limit_clock = clock
        self._own_limiter: RateLimiter | None = None

    @abc.abstractmethod
    async def decide(self, ctx: GovContext) -> Decision:
        """Decide about ``ctx``. Must return a :class:`~mcpgov.Decision`."""

    def decide_now(self, ctx: GovContext) -> Decision | None:
        """Optionally, the same decision as :meth:`decide`, made without awaiting anything.

        Return ``None`` (the default) when the answer needs asynchronous work; :meth:`decide`
        is then asked, under a cancel scope. An answer given here runs no cancel scope (a
        synchronous call cannot be interrupted anyway): its time is checked afterwards, and
        an answer later than ``deadline`` is discarded (a deny). Raising, or returning
        something that is not a :class:`~mcpgov.Decision`, is a deny as in :meth:`decide`.
        Implement it only where it decides exactly as :meth:`decide` would.
        """
        return None

    async def evaluate(self, ctx: GovContext) -> Decision:
        """Decide ``ctx`` fail-closed under the deadline (:meth:`decide_now`, else :meth:`decide`);
        any failure is a deny naming this authoriser."""
        try:
            quick = self._now(ctx)
        except BaseException as exc:  # noqa: BLE001 - contained or re-raised by _raised
            return await self._raised(exc)
        if quick is None:
            return await guarded(self.decide, ctx, self.deadline, self.name)
        return quick

    def _now(self, ctx: GovContext) -> Decision | None:
        """:meth:`decide_now`, its answer checked (deadline, type); raises what it raised."""
        start = time.perf_counter()
        quick = self.decide_now(ctx)
        if quick is None:
            return None
        return _checked(quick, start, self.deadline, self.name)

    async def _raised(self, exc: BaseException) -> Decision:
        if not await contained(exc):
            raise exc
        logger.warning("authoriser %s raised %s; denying", self.name, type(exc).__name__)
        return Decision.deny(self.name, f"{self.name} raised {type(exc).__name__}", "authoriser_error")

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        if ctx.method in LIST_METHODS:
            result = await call_next(ctx)
            if isinstance(result, Listing):
                return await self.filter(ctx, result)
            return result
        decision = protocol_default(ctx, await self.evaluate(ctx))
        if decision.effect is Effect.REQUIRE_APPROVAL:
            decision = approved_decision(ctx, decision)
        if (
            decision.effect is Effect.ALLOW
            and not self.counts_own_limits
            and ctx.action != "discover"
            and RATE_LIMIT in decision.obligations
        ):
            decision = await self._counted(ctx, decision)
        if decision.effect is Effect.ALLOW:
            return await call_next(ctx.replace(decision=decision.combine(ctx.decision)))
        refusal = ApprovalRequired(decision) if decision.effect is Effect.REQUIRE_APPROVAL else Denied(decision)
        refusal.context = ctx
        raise refusal

    def _rate_limiter(self) -> RateLimiter:
        """The rate limiter of this authoriser's own decisions (made on first use)."""
        limiter = self._own_limiter
        if limiter is None:
            from mcpgov._state import InMemoryStateStore  # noqa: PLC0415
            from mcpgov.policy._ratelimit import RateLimiter  # noqa: PLC0415 - avoids an import cycle

            state = getattr(self, "_limit_state", None)
            clock = getattr(self, "_limit_clock", time.time)
            limiter = RateLimiter(state if state is not None else InMemoryStateStore(), clock=clock)
            self._own_limiter = limiter
        return limiter

    async def _counted(self, ctx: GovContext, decision: Decision) -> Decision:
        """``decision`` once its rate limits counted this request; a deny when one is exceeded,
        cannot be read, or cannot be counted (fail closed)."""
        specs = rate_limit_specs(decision.obligations.get(RATE_LIMIT), decision.rule)
        if isinstance(specs, str):
            logger.warning("authoriser %s: rule %s carries an unreadable rate limit; denying", self.name, decision.rule)
            return Decision.deny(
                decision.rule, f"{decision.rule} carries a rate limit that {specs}", "rate_limit_invalid"
            )
        exceeded: RateLimitSpec | None = None
        try:
            with anyio.fail_after(self.deadline):
                exceeded = await self._rate_limiter().admit(ctx, specs)
        except TimeoutError:
            return _timed_out(self.name, self.deadline)
        except BaseException as exc:  # noqa: BLE001 - contained or re-raised by _failed
            return await _failed(exc, self.name)
        if exceeded is not None:
            detail = f"rate limit of {exceeded.limit} per {exceeded.per:g}s (by {', '.join(exceeded.by)}) exceeded"
            return Decision.deny(exceeded.rule, detail, "rate_limited")
        # The decision carries the limits as counted, which the gate checks were counted.
        return dataclasses.replace(decision, obligations=MappingProxyType({**decision.obligations, RATE_LIMIT: specs}))

    async def filter(self, ctx: GovContext, listing: Listing) -> Listing:
        """Keep the entries of ``listing`` whose discovery this authoriser allows."""
        visible: set[str] = set()
        entry = discovery_contexts(ctx, listing.kind)
        for item in listing.items:
            entry_ctx = entry(item.name)
            # Each entry is decided as evaluate() would; a decision made without awaiting
            # anything is taken without building a coroutine for it.
            try:
                decision = self._now(entry_ctx)
            except BaseException as exc:  # noqa: BLE001 - contained or re-raised by _raised
                decision = await self._raised(exc)
            if decision is None:
                decision = await guarded(self.decide, entry_ctx, self.deadline, self.name)
            # An entry that needs approval to use is still shown: the approval happens on use.
            if decision.effect is not Effect.DENY:
                visible.add(item.name)
        return listing.keep(lambda item: item.name in visible)


def approved_decision(ctx: GovContext, decision: Decision) -> Decision:
    """An approval-required decision becomes an allow only with a grant for exactly this action."""
    grant = ctx.extension(APPROVAL_GRANT)
    if grant is None:
        return decision
    try:
        covering = getattr(grant, "covering", None)
        if callable(covering):  # the grant of a chain that was asked about this decision's rule
            grant = covering(ctx, decision)
            covered = grant is not None
        else:
            covered = grant.covers(ctx, decision) is True
    except Exception:  # noqa: BLE001 - a broken grant object grants nothing (BaseExceptions: the governor contains)
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
    decide: Any,
    ctx: GovContext,
    deadline: float,
    rule: str,
    *,
    is_async: bool = True,
    offload: bool = False,
    limiter: anyio.CapacityLimiter | None = None,
) -> Decision:
    """Call ``decide(ctx)`` fail-closed under ``deadline`` seconds.

    An async decider runs under a cancel scope and is cancelled at the deadline. A sync one
    cannot be interrupted: inline (the default) it blocks the event loop for as long as it runs
    and its answer is discarded if it came too late; with ``offload`` it runs in a worker thread
    and the request is denied at the deadline while the event loop keeps serving (the thread is
    abandoned and its late answer discarded).
    """
    if not is_async and not offload:
        answer = decided_inline(decide, ctx, deadline, rule)
        return await answer.settle() if isinstance(answer, Unsettled) else answer
    start = time.perf_counter()
    try:
        with anyio.fail_after(deadline):
            if offload:
                result = await anyio.to_thread.run_sync(decide, ctx, abandon_on_cancel=True, limiter=limiter)
            else:
                result = decide(ctx)
                if inspect.isawaitable(result):
                    result = await result
    except TimeoutError:
        return _timed_out(rule, deadline)
    except BaseException as exc:  # noqa: BLE001 - contained or re-raised by _failed
        return await _failed(exc, rule)
    return _checked(result, start, deadline, rule)


class Unsettled:
    """A synchronous decider's call that did not end in an answer: it raised, or it returned an
    awaitable after all. :meth:`settle` finishes it as :func:`guarded` would."""

    __slots__ = ("deadline", "error", "pending", "rule", "start")

    def __init__(
        self, start: float, deadline: float, rule: str, *, error: BaseException | None = None, pending: Any = None
    ) -> None:
        self.start = start
        self.deadline = deadline
        self.rule = rule
        self.error = error
        self.pending = pending

    async def settle(self) -> Decision:
        """The decision: a deny for what the decider raised; else the awaited answer, checked."""
        if self.error is not None:
            if isinstance(self.error, TimeoutError):  # as guarded() reads a decider's own timeout
                return _timed_out(self.rule, self.deadline)
            return await _failed(self.error, self.rule)
        try:
            with anyio.fail_after(max(self.deadline - (time.perf_counter() - self.start), 0.0)):
                result = await self.pending
        except TimeoutError:
            return _timed_out(self.rule, self.deadline)
        except BaseException as exc:  # noqa: BLE001 - contained or re-raised by _failed
            return await _failed(exc, self.rule)
        return _checked(result, self.start, self.deadline, self.rule)


def decided_inline(decide: Any, ctx: GovContext, deadline: float, rule: str) -> Decision | Unsettled:
    """Call a synchronous decider inline: its checked answer (see :func:`guarded`), or, when it
    raised or returned an awaitable, what is left to :meth:`Unsettled.settle`. Nothing awaited:
    an answer given at once costs no coroutine and no cancel scope."""
    start = time.perf_counter()
    try:
        result = decide(ctx)
    except BaseException as exc:  # noqa: BLE001 - contained or re-raised by settle()
        return Unsettled(start, deadline, rule, error=exc)
    if type(result) is not Decision and inspect.isawaitable(result):
        return Unsettled(start, deadline, rule, pending=result)  # a sync callable that returned an awaitable
    return _checked(result, start, deadline, rule)


def _timed_out(rule: str, deadline: float) -> Decision:
    return Decision.deny(rule, f"{rule} did not decide within {deadline}s", "authoriser_timeout")


async def _failed(exc: BaseException, rule: str) -> Decision:
    """A deny for a decider that raised ``exc`` (re-raised when it must propagate)."""
    if not await contained(exc):
        raise exc
    logger.warning("authoriser %s raised %s; denying", rule, type(exc).__name__)
    return Decision.deny(rule, f"{rule} raised {type(exc).__name__}", "authoriser_error")


def _checked(result: Any, start: float, deadline: float, rule: str) -> Decision:
    """``result`` if it is a decision that came within ``deadline`` seconds of ``start``, else a deny."""
    if time.perf_counter() - start > deadline:
        return _timed_out(rule, deadline)
    if not isinstance(result, Decision) or not isinstance(result.effect, Effect):
        detail = f"{rule} returned {type(result).__name__}, not a Decision"
        return Decision.deny(rule, detail, "authoriser_invalid")
    return result


_LIMIT_DIMENSIONS = frozenset({"principal", "tenant", "tool"})


def rate_limit_specs(value: Any, rule: str) -> tuple[RateLimitSpec, ...] | str:
    """The rate limits a decision's ``rate_limit`` obligation names (one, or a list or tuple of
    them: a mapping ``{limit, per, by}`` counted
    under ``rule``, ``by`` defaulting to principal and tool, or a ``RateLimitSpec`` as a policy
    makes them), or why it cannot be read."""
    from mcpgov.policy._ratelimit import RateLimitSpec  # noqa: PLC0415 - avoids an import cycle

    items = value if isinstance(value, (tuple, list)) else (value,)
    specs: list[RateLimitSpec] = []
    for item in items:
        spec_rule: object
        limit: object
        per: object
        by: object
        if isinstance(item, RateLimitSpec):
            spec_rule, limit, per, by = item.rule, item.limit, item.per, item.by
        elif isinstance(item, Mapping) and set(item) <= {"limit", "per", "by"}:
            spec_rule, limit, per = rule, item.get("limit"), item.get("per")
            by = item.get("by", ("principal", "tool"))
        else:
            return f"is not a RateLimitSpec or {{limit, per, by}} ({type(item).__name__})"
        if not isinstance(spec_rule, str) or not spec_rule:
            return "names no rule"
        if type(limit) is not int or limit < 1:
            return "has no whole positive limit"
        if isinstance(per, bool) or not isinstance(per, (int, float)) or not math.isfinite(per) or per <= 0:
            return "has no positive window"
        if isinstance(by, str):
            by = (by,)
        if (
            not isinstance(by, (tuple, list))
            or not by
            or not all(isinstance(d, str) and d in _LIMIT_DIMENSIONS for d in by)
        ):
            return "counts by something other than principal, tenant and tool"
        specs.append(RateLimitSpec(spec_rule, limit, float(per), tuple(by)))
    if not specs:
        return "names no limit"
    return tuple(specs)
