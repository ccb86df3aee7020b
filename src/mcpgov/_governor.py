"""The chain runner both adapters share: input bounds, the default-deny gate, and audit."""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import Any

import anyio

from mcpgov._admission import Admission, enter_admission, leave_admission
from mcpgov._arguments import ArgsDigest, ArgumentLimits, freeze_lazily
from mcpgov._audit import AuditCallback, AuditEvent, Auditor, ContextValues
from mcpgov._authorize import Authorizer
from mcpgov._chain import CallNext, Listing, Middleware, check_order
from mcpgov._contain import contained, must_propagate, really_cancelled
from mcpgov._context import APPROVAL_GRANT, GovContext, Side, args_hash_source, new_context
from mcpgov._decision import RATE_LIMIT, Decision
from mcpgov._errors import AuditUnavailable, ConfigurationError, Denied, McpGovError
from mcpgov._methods import LIST_METHODS

__all__ = ["Governor"]

logger = logging.getLogger("mcpgov")

OutcomeOf = Callable[[Any], str]
"""Maps a terminal result to ``"completed"`` or ``"failed"`` (a tool result with ``isError``)."""

DEFAULT_DENY = Decision.deny("mcpgov:default-deny", "no authoriser allowed this request", "default_deny")

UNCOUNTED_LIMIT = Decision.deny(
    "mcpgov:rate-limit-uncounted", "the decision carries a rate limit no stage counted", "rate_limit_uncounted"
)


class _InputRound(Exception):
    """Raised by a terminal whose request was answered with input requests, to be retried with the answers.

    Not a failure: the governor records the round's outcome as ``input_required`` with
    :attr:`reason`, and lets the exception through to whoever relays the input requests. The
    retry carrying the answers is a request of its own, decided and recorded again.
    """

    reason: str = "input_required"


def _ended_by(exc: Exception) -> tuple[str, str, str | None]:
    """The outcome, reason and error code of a request whose terminal raised ``exc`` (an mcpgov
    error's own machine-readable reason, such as ``upstream_busy``; else the exception's type)."""
    if isinstance(exc, _InputRound):
        return "input_required", exc.reason, None
    if isinstance(exc, McpGovError):
        return "failed", exc.reason, exc.code
    return "failed", type(exc).__name__, None


def _hash_of(c: GovContext, values: ContextValues | None) -> str | ArgsDigest | None:
    """The argument hash ``c``'s events record: as read into ``values`` (maybe deferred, see
    :class:`ContextValues`), else computed now."""
    return values.data["args_hash"] if values is not None else c.args_hash


class _Run:
    """Per-request bookkeeping: when it started, the context last seen, and whether it got past the gate."""

    __slots__ = ("admission", "args_hash", "arguments", "ctx", "executed", "listing_failed", "seen", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.admission = Admission()
        self.executed = False
        self.listing_failed = False
        self.ctx: GovContext | None = None
        self.seen: GovContext | None = None
        self.arguments: Any = None
        self.args_hash: str | ArgsDigest | None = None


def _prechecked(
    c: GovContext,
    decision: Decision | None,
    precheck: Callable[[GovContext], None] | None,
    admission: Admission,
) -> None:
    """Run ``precheck``, then refuse ``c`` when its decision carries a rate limit no stage
    counted it against (one a stage of its own added to the decision): nothing would enforce it.

    Raises:
        McpGovError: what ``precheck`` raised.
        Denied: an uncounted limit (``rate_limit_uncounted``).
    """
    if precheck is not None:
        precheck(c)
    if decision is None or c.action == "discover":
        return
    limits = decision.obligations.get(RATE_LIMIT)
    if limits is not None and not admission.covers(limits):
        raise Denied(UNCOUNTED_LIMIT)


def _approver(ctx: GovContext, decision: Decision | None) -> str | None:
    """Who approved this request, when an approval is what allowed it."""
    if decision is None or decision.reason_code != "approved":
        return None
    grant = ctx.extension(APPROVAL_GRANT)
    approver = getattr(grant, "approver", None)
    return approver if isinstance(approver, str) else None


def _same_hash(a: str | ArgsDigest | None, b: str | ArgsDigest | None) -> bool:
    """Whether two argument hashes are equal, computing a deferred one only when they differ in form."""
    if a is b:
        return True
    if isinstance(a, ArgsDigest):
        a = a.value()
    if isinstance(b, ArgsDigest):
        b = b.value()
    return a == b


class _RequestKeys:
    """Request keys: a random per-process prefix and a counter (no system call per request).
    Keys reach audit sinks only, never the peer; a forked child draws a new prefix."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = secrets.token_hex(8) + "-"
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):x}"


_request_keys = _RequestKeys()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_request_keys.renew)


_DEFAULT_LIMITS = ArgumentLimits()


class _Done:
    """An awaitable that is already complete (awaiting it never suspends)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that ends at once


_DONE = _Done()


def as_auditor(audit: Auditor | Iterable[AuditCallback] | AuditCallback | None) -> Auditor:
    """Accept an :class:`Auditor`, one callback, or several, and return an :class:`Auditor`."""
    if audit is None:
        return Auditor()
    if isinstance(audit, Auditor):
        return audit
    if callable(audit):
        return Auditor([audit])
    return Auditor(audit)


class Governor:
    """Runs one side's governance chain around a terminal call (the SDK request).

    For every request it: validates and freezes the arguments; runs the middleware chain;
    at the end of the chain requires an allow decision when any authoriser is configured
    (no authoriser having allowed means deny); records one decision event and, for a request
    that ran, one outcome event; records one ``list.filtered`` event for listings.

    With a strict :class:`Auditor`, a request is refused (:class:`AuditUnavailable`, one deny
    decision event) when a sink is known to be failing, and a request whose allow decision
    cannot be delivered does not run (its outcome event says ``failed`` / ``audit_unavailable``).

    Args:
        side: ``client`` or ``server``.
        middleware: the chain, outermost first.
        audit: an :class:`Auditor` or audit callbacks.
        limits: bounds on request arguments.
        require_authorizer: refuse a chain with no :class:`Authorizer` (server side: a
            governed server must decide every request).
    """

    def __init__(
        self,
        side: Side,
        middleware: Sequence[Middleware],
        *,
        audit: Auditor | Iterable[AuditCallback] | AuditCallback | None = None,
        limits: ArgumentLimits | None = None,
        require_authorizer: bool = False,
    ) -> None:
        for mw in middleware:
            if not callable(mw):
                raise ConfigurationError(f"middleware must be callable as (ctx, call_next), got {type(mw).__name__}")
        check_order(middleware)
        self.side: Side = side
        self.middleware: tuple[Middleware, ...] = tuple(middleware)
        self.auditor = as_auditor(audit)
        from mcpgov.credentials._logs import redact_token_logs  # noqa: PLC0415 - avoids an import cycle

        redact_token_logs()  # the SDK logs whole messages, and the exceptions tools raise, with their secrets
        self.limits = limits or _DEFAULT_LIMITS  # immutable: shared by the governors built per session
        self.gated = any(isinstance(mw, Authorizer) for mw in self.middleware)
        if require_authorizer and not self.gated:
            raise ConfigurationError(
                "a governed server needs at least one authoriser (Hooks, a policy...) in its chain; "
                "with none, every request would be denied"
            )

    def context(self, method: str, **fields: Any) -> GovContext:
        """A fresh context for this side, with a fresh request key."""
        if "request_key" not in fields:
            fields["request_key"] = _request_keys.next()
        fields["side"] = self.side
        fields["method"] = method
        fields["audit"] = self.auditor
        return new_context(fields)

    async def begin(self, method: str, raw_arguments: Any = None, **fields: Any) -> GovContext:
        """A fresh context whose arguments are ``raw_arguments``, validated and frozen.

        Raises:
            InvalidRequest: the arguments break :attr:`limits`; the refusal is audited.
        """
        if "request_key" not in fields:
            fields["request_key"] = _request_keys.next()
        try:
            arguments, args_hash = freeze_lazily(raw_arguments, self.limits)
        except McpGovError as exc:
            await self.refuse(self.context(method, **fields), exc)
            raise
        # The hash is deferred: ``ctx.args_hash`` computes it when first read (once per side).
        fields["side"] = self.side
        fields["method"] = method
        fields["audit"] = self.auditor
        fields["arguments"] = arguments
        fields["args_hash"] = args_hash
        return new_context(fields)

    async def run(
        self,
        ctx: GovContext,
        terminal: Callable[[GovContext], Awaitable[Any]],
        *,
        outcome_of: OutcomeOf | None = None,
        precheck: Callable[[GovContext], None] | None = None,
    ) -> Any:
        """Govern one request.

        Args:
            ctx: the request context, from :meth:`begin`.
            terminal: performs the request once it is allowed; for list methods it returns
                a :class:`Listing`.
            outcome_of: classifies the terminal's result as completed, failed or input_required.
            precheck: runs after the allow and before the request (e.g. "is this tool known");
                raising an :class:`McpGovError` there refuses the request.

        Raises:
            McpGovError: the request was refused; ``exc.event_id`` names its audit event.
        """
        run = _Run(time.perf_counter())
        run.seen = ctx
        run.arguments = ctx.arguments
        run.args_hash = args_hash_source(ctx)

        def gate(c: GovContext) -> Awaitable[Any]:
            return self._gate(c, terminal, run, outcome_of, precheck)

        def stage(mw: Middleware, call_next: CallNext) -> CallNext:
            # A plain function handing back the stage's own awaitable: no coroutine of ours per
            # stage per request. The stage starts as soon as its caller awaits what it returns.
            def call(c: GovContext) -> Awaitable[Any]:
                run.seen = c  # a refusal names the caller as known when the refusing stage began
                return mw(c, call_next)

            return call

        chain: CallNext = gate
        for mw in reversed(self.middleware):
            chain = stage(mw, chain)
        entered = enter_admission(run.admission)
        try:
            result = await chain(ctx)
        except McpGovError as exc:
            # A request that never reached its effect spends none of the limits it was counted
            # against, whichever stage refused it after they counted it.
            await run.admission.take_back()
            if not run.executed:
                await self.refuse(exc.context or run.ctx or run.seen, exc)
            raise
        except BaseException as exc:
            if must_propagate(exc):
                raise
            await run.admission.take_back()
            if isinstance(exc, anyio.get_cancelled_exc_class()) and await really_cancelled():
                if not run.executed:
                    with anyio.CancelScope(shield=True):
                        await self.refuse(run.seen, McpGovError("cancelled before a decision", reason="cancelled"))
                raise
            if run.executed or run.listing_failed:
                raise
            # Fail closed: a stage that broke (with any exception, BaseException subclasses and a
            # stray CancelledError included) refuses the request, and the session keeps serving.
            logger.error("governance middleware raised %s; refusing the request", type(exc).__name__)
            error = McpGovError(f"governance middleware raised {type(exc).__name__}", reason="middleware_error")
            with anyio.CancelScope(shield=True):
                await self.refuse(run.ctx or run.seen, error)
            raise error from None
        finally:
            leave_admission(entered)
        if isinstance(result, Listing):
            inner = run.ctx or ctx
            if not self.auditor.wants_events:  # nobody receives it: not built
                self.auditor.events_emitted += 1
                return result
            await self.auditor.emit(
                AuditEvent.from_context(inner, "list.filtered", hidden=result.hidden, shown=len(result.items)),
                required=False,
            )
        return result

    async def _gate(
        self,
        c: GovContext,
        terminal: Callable[[GovContext], Awaitable[Any]],
        run: _Run,
        outcome_of: OutcomeOf | None,
        precheck: Callable[[GovContext], None] | None,
    ) -> Any:
        """The end of the chain: require an allow, record it, run the request, record the outcome."""
        auditor = self.auditor
        run.ctx = c
        if c.method in LIST_METHODS:
            auditor.check_available()
            try:
                return await terminal(c)
            except Exception:
                # The peer's own error (a server refusing the listing): it passes unchanged.
                run.listing_failed = True
                raise
        if c.arguments is not run.arguments or not _same_hash(args_hash_source(c), run.args_hash):
            # What runs is what was validated and decided on: no stage may swap the arguments.
            raise McpGovError("a stage replaced the request's arguments", reason="arguments_changed")
        decision = c.decision
        if self.gated and (decision is None or not decision.allowed):
            raise Denied(DEFAULT_DENY)
        _prechecked(c, decision, precheck, run.admission)
        auditor.check_available()
        # The last checks run right before the effect. When recording the allow cannot suspend
        # (no asynchronous sink), they run before it, so a refusal is one deny decision with the
        # caller; otherwise after it (then the outcome records that the request did not run).
        checks_first = bool(c.final_checks) and not auditor.may_suspend
        if checks_first:
            await self._checked_finally(c)
        run.executed = True
        # Read once for both events; long arguments may be hashed by the sink, off the call path.
        values = ContextValues(c, defer_hash=True) if auditor.wants_events else None
        try:
            await self._record_allow(c, decision, values)
        except AuditUnavailable as exc:
            # Strict audit: the allow could not be recorded everywhere, so the request does not run.
            auditor.refused += 1
            exc.event_id = await self._not_run(c, run, exc, values)
            raise
        if c.final_checks and not checks_first:
            try:
                await self._checked_finally(c)
            except McpGovError as error:
                with anyio.CancelScope(shield=True):
                    error.event_id = await self._not_run(c, run, error, values)
                raise
        # Nothing awaits between the last check and the effect: the terminal starts the request now.
        run.admission.started = True
        try:
            result = await terminal(c)
        except Exception as exc:
            outcome, reason, code = _ended_by(exc)
            await self._outcome(
                c, outcome, run.start, _hash_of(c, values), reason=reason, error_code=code, values=values
            )
            raise
        except BaseException as exc:
            await self._raised(c, run, exc, values)
            raise
        if not auditor.wants_events:
            auditor.events_emitted += 1
            return result
        outcome = outcome_of(result) if outcome_of is not None else "completed"
        await auditor.emit(
            # ``values`` is None when a sink was added while the request ran: read the context now.
            self._outcome_event(c, outcome, run.start, _hash_of(c, values), values or ContextValues(c)),
            required=False,
        )
        return result

    async def _raised(self, c: GovContext, run: _Run, exc: BaseException, values: ContextValues | None) -> None:
        """Record the outcome of a request that raised something other than an ``Exception``: the
        caller's cancellation, or a failure all the same (a stray ``CancelledError`` the request
        raised on its own, a ``BaseException`` subclass). Interpreter exits are not recorded."""
        if must_propagate(exc):
            return
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class()) and await really_cancelled()
        with anyio.CancelScope(shield=True):
            if cancelled:
                await self._outcome(c, "cancelled", run.start, _hash_of(c, values), reason="cancelled", values=values)
            else:
                await self._outcome(
                    c, "failed", run.start, _hash_of(c, values), reason=type(exc).__name__, values=values
                )

    async def _not_run(self, c: GovContext, run: _Run, error: McpGovError, values: ContextValues | None) -> str:
        """Record that an allowed request did not run because of ``error``; returns the event id."""
        return await self._outcome(
            c,
            "failed",
            run.start,
            _hash_of(c, values),
            reason=error.reason,
            error_code=error.code,
            executed=False,
            values=values,
        )

    def _record_allow(self, c: GovContext, decision: Decision | None, values: ContextValues | None) -> Awaitable[None]:
        """Record the allow decision (not built when no sink would receive it: never strict then).
        A plain function handing back the auditor's own awaitable: no coroutine of its own."""
        auditor = self.auditor
        if values is None or not auditor.wants_events:
            auditor.events_emitted += 1
            return _DONE
        return auditor.emit(self._allow_event(c, decision, values))

    def _allow_event(self, c: GovContext, decision: Decision | None, values: ContextValues) -> AuditEvent:
        """The allow decision event."""
        recorded = self.auditor.arguments(c)
        attributes = {"arguments": recorded} if recorded is not None else {}
        # ``decision`` is None for a chain with no gate: nothing decided, the allow is "ungated".
        return values.event(
            "decision",
            {
                "effect": "allow",
                "rule": None if decision is None else decision.rule,
                "reason": "ungated" if decision is None else decision.reason_code,
                "detail": None if decision is None else decision.reason,
                "args_hash": values.data["args_hash"],
                "engine": None if decision is None else decision.engine,
                "policy_version": None if decision is None else decision.policy_version,
                "attributes": attributes,
                "approver": _approver(c, decision),
            },
        )

    @staticmethod
    async def _checked_finally(c: GovContext) -> None:
        """Run ``c.final_checks``; anything they raise short of an exit is an :class:`McpGovError`."""
        try:
            for check in c.final_checks:
                await check(c)
        except McpGovError:
            raise
        except BaseException as exc:
            if not await contained(exc):
                raise
            raise McpGovError(f"a final check raised {type(exc).__name__}", reason="middleware_error") from None

    async def refuse(self, ctx: GovContext, exc: McpGovError) -> None:
        """Record ``exc`` as the refusal of ``ctx`` (one deny decision event) and tag it with the event id."""
        decision = getattr(exc, "decision", None)
        recorded = self.auditor.arguments(ctx)
        attributes: dict[str, Any] = {"arguments": recorded} if recorded is not None else {}
        if exc.unverified:
            attributes["unverified"] = dict(exc.unverified)
        event = AuditEvent.from_context(
            ctx,
            "decision",
            effect=decision.effect.value if decision is not None else "deny",
            rule=decision.rule if decision is not None else f"mcpgov:{exc.code.rsplit('.', 1)[-1]}",
            reason=exc.reason,
            detail=exc.detail,
            error_code=exc.code,
            engine=decision.engine if decision is not None else None,
            policy_version=decision.policy_version if decision is not None else None,
            attributes=attributes,
        )
        exc.event_id = event.id
        await self.auditor.emit(event, required=False)

    async def _outcome(
        self,
        ctx: GovContext,
        outcome: str,
        start: float,
        args_hash: str | ArgsDigest | None,
        *,
        reason: str | None = None,
        error_code: str | None = None,
        executed: bool = True,
        values: ContextValues | None = None,
    ) -> str:
        """Record the outcome (after the fact: never raises in strict mode) and return its event id."""
        event = self._outcome_event(
            ctx,
            outcome,
            start,
            args_hash,
            values if values is not None else ContextValues(ctx),
            reason=reason,
            error_code=error_code,
            executed=executed,
        )
        await self.auditor.emit(event, required=False)
        return event.id

    @staticmethod
    def _outcome_event(
        ctx: GovContext,
        outcome: str,
        start: float,
        args_hash: str | ArgsDigest | None,
        values: ContextValues,
        *,
        reason: str | None = None,
        error_code: str | None = None,
        executed: bool = True,
    ) -> AuditEvent:
        """The outcome event of ``ctx``, its latency measured from ``start`` until now."""
        return values.event(
            "outcome",
            {
                "outcome": outcome,
                "latency_ms": (time.perf_counter() - start) * 1000.0,
                "args_hash": args_hash,
                "reason": reason,
                "error_code": error_code,
                "attributes": {} if executed else {"executed": False},
            },
        )
