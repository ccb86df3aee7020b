"""Audit events and the auditor that delivers them to sinks.

Every governed request produces:

* one ``decision`` event: the allow, deny or approval decision and the rule that made it.
  Refusals by other stages (malformed input, identity, credentials) are ``decision``
  events with ``effect="deny"`` too, so exactly one event records every refusal;
* for a request that was allowed and ran, one ``outcome`` event: ``completed``,
  ``failed`` or ``cancelled``, with its latency;
* for a listing, one ``list.filtered`` event naming what was hidden.

The :class:`Auditor` redacts every event (see :mod:`mcpgov.audit`), stamps it with the current
trace context, and hands it to its sinks in order. Sinks are called on the call path; production
configurations put slow ones behind :class:`mcpgov.audit.QueuedSink` (a bounded queue drained by a
worker thread) and call :meth:`Auditor.flush` / :meth:`Auditor.aclose` on shutdown.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
from opentelemetry.trace import get_current_span
from pydantic import BaseModel, ConfigDict, Field

from mcpgov._arguments import ArgsDigest
from mcpgov._contain import contained
from mcpgov._context import ExtensionKey, GovContext, recorded_args_hash, task_owner
from mcpgov._errors import AuditUnavailable, ConfigurationError
from mcpgov._protocols import HealthReporting, closable, flushable, health_reporting, stats_of
from mcpgov._types import Clock, is_async_callable
from mcpgov._validate import positive_seconds

if TYPE_CHECKING:
    from mcpgov.audit._redact import Redactor

__all__ = ["REQUEST_KEY", "SCHEMA_VERSION", "AuditCallback", "AuditEvent", "AuditStats", "Auditor", "EventType"]

logger = logging.getLogger("mcpgov.audit")

SCHEMA_VERSION = "1"

REQUEST_KEY: ExtensionKey[str] = ExtensionKey("mcpgov.audit.request_key")
"""``GovContext.extensions`` key: a value unique to one request across sessions and processes,
recorded as ``request_key`` on its events (see :func:`mcpgov.audit.request_keys`)."""

EventType = Literal[
    "decision",
    "outcome",
    "list.filtered",
    "session.bound",
    "identity.verified",
    "identity.refused",
    "credential.minted",
    "credential.verified",
    "credential.refused",
    "credential.revoked",
    "approval.requested",
    "approval.granted",
    "approval.refused",
    "pin.mismatch",
    "server.refused",
    "policy.reloaded",
    "policy.reload_failed",
    "policy.shadow_mismatch",
    "upstream.ready",
    "upstream.down",
    "upstream.left_out",
    "audit.gap",
]
"""Every event type mcpgov emits (see the audit docs for when each is emitted)."""

AuditCallback = Callable[["AuditEvent"], Awaitable[None] | None]
"""A sink: a sync or async callable that receives every event."""


class AuditEvent(BaseModel):
    """One audit event. Immutable; ``schema_version`` changes when fields change meaning.

    Attributes:
        schema_version: version of this event model.
        id: unique event id (also sent to the peer in error data, to correlate).
        type: one of :data:`EventType` (``decision``, ``outcome``, ``list.filtered``...).
        time: when the event was created (UTC).
        side: ``client`` or ``server``.
        method: the MCP method.
        kind: tool, resource or prompt.
        target: tool or prompt name, or resource URI.
        principal: the caller as ``issuer#subject``; ``None`` before identity is known.
        tenant: the caller's tenant.
        actors: the actor chain (who the caller acts for), nearest first.
        session_id: session id, when the transport has one.
        request_id: JSON-RPC request id.
        request_key: a key unique to the request across sessions and processes (request ids
            repeat: several sessions, and the 2026-07-28 mode has no session id), when the
            context carries one (``ctx.extensions[REQUEST_KEY]``).
        task_id: task id.
        task_owner: the owner of the task (``issuer#subject``): the principal its first
            credential was minted for (a delegate acting in the task records the owner, not
            itself); two principals' tasks of one id have two owners.
        purpose: declared purpose.
        effect: for decisions, ``allow``, ``deny`` or ``require_approval``.
        rule: the rule, hook or stage that decided.
        reason: a short machine-readable reason (``default_deny``, ``hook_timeout``...).
        detail: a human-readable explanation (never a secret or token).
        error_code: the mcpgov error code for refusals and failures.
        outcome: for outcomes, ``completed``, ``failed`` or ``cancelled``.
        latency_ms: for outcomes, time from the start of governance to the result.
        args_hash: ``sha256:`` of the canonical JSON of the arguments.
        credential_id: the ``jti`` of the credential used, never the credential itself.
        hidden: for listings, the names that were hidden.
        shown: for listings, how many entries remained visible.
        engine: the policy engine that decided (``hooks``, ``policy``, ``cedar``...).
        policy_version: the version (digest) of the policy that decided.
        approver: who approved or refused an approval.
        auth_method: how the principal was authenticated.
        trace_id: the OpenTelemetry trace id of the request, when there is a span context
            (sampled or not: audit never depends on sampling).
        span_id: the OpenTelemetry span id of the request, when there is a span context.
        attributes: further event-specific values (never secrets; redacted before sinks).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = SCHEMA_VERSION
    id: str
    type: EventType
    time: datetime
    side: str
    method: str
    kind: str | None = None
    target: str | None = None
    principal: str | None = None
    tenant: str | None = None
    actors: tuple[str, ...] = ()
    session_id: str | None = None
    request_id: str | int | None = None
    request_key: str | None = None
    task_id: str | None = None
    task_owner: str | None = None
    purpose: str | None = None
    effect: str | None = None
    rule: str | None = None
    reason: str | None = None
    detail: str | None = None
    error_code: str | None = None
    outcome: str | None = None
    latency_ms: float | None = None
    args_hash: str | None = None
    credential_id: str | None = None
    hidden: tuple[str, ...] = ()
    shown: int | None = None
    engine: str | None = None
    policy_version: str | None = None
    approver: str | None = None
    auth_method: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_context(cls, ctx: GovContext, event_type: EventType, **fields: Any) -> AuditEvent:
        """Build an event about ``ctx`` (caller, tenant, task...) with extra ``fields``."""
        return cls.from_values(ContextValues(ctx), event_type, **fields)

    @classmethod
    def from_values(cls, values: ContextValues, event_type: EventType, **fields: Any) -> AuditEvent:
        """:meth:`from_context`, from a context's fields read once for several events."""
        return values.event(event_type, fields, cls)

    def with_values(self, **changes: Any) -> AuditEvent:
        """A copy of this event with ``changes`` (values mcpgov produced; not re-validated)."""
        new = type(self).__new__(type(self))
        data = dict(self.__dict__)
        data.update(changes)
        object.__setattr__(new, "__dict__", data)
        object.__setattr__(new, "__pydantic_fields_set__", self.__pydantic_fields_set__ | changes.keys())
        object.__setattr__(new, "__pydantic_extra__", None)
        object.__setattr__(new, "__pydantic_private__", None)
        return new

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> AuditEvent:
        """Build from values mcpgov itself produced, without re-validating them.

        Equivalent to ``model_construct`` (what pydantic documents for trusted data) at a
        fraction of its cost on the call path; the test suite checks that the result equals a
        fully validated event.
        """
        data = dict(_TEMPLATE)
        data.update(values)
        if "attributes" not in values:
            data["attributes"] = {}
        return cls._built(data, set(values))

    @classmethod
    def _built(cls, data: dict[str, Any], fields_set: set[str]) -> AuditEvent:
        event = cls.__new__(cls)
        object.__setattr__(event, "__dict__", data)
        object.__setattr__(event, "__pydantic_fields_set__", fields_set)
        object.__setattr__(event, "__pydantic_extra__", None)
        object.__setattr__(event, "__pydantic_private__", None)
        return event


class _EventIds:
    """Random event ids, drawn from the operating system's CSPRNG in batches.

    Ids reach peers in error data, so they must reveal nothing (no counter): each is 96 bits of
    ``secrets`` output. Drawing 128 at a time keeps the system call (which releases the GIL to
    other threads, such as an audit worker) off nearly every event. A forked child discards the
    batch it inherited, so no two processes hand out the same id.

    No lock: ``list.pop`` and ``list.extend`` are atomic, so each drawn id is handed out once
    even when threads race; two threads that find the pool empty at once both refill it, with
    distinct random ids.
    """

    __slots__ = ("_pool",)
    _BATCH = 128

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self._pool: list[str] = []

    def next(self) -> str:
        try:
            return self._pool.pop()
        except IndexError:
            return self._refill()

    def _refill(self) -> str:
        raw = secrets.token_hex(12 * self._BATCH)
        fresh = [raw[i : i + 24] for i in range(0, len(raw), 24)]
        own = fresh.pop()
        self._pool.extend(fresh)
        return own


_event_ids = _EventIds()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_event_ids.renew)


def _next_event_id() -> str:
    """A random event id (see :class:`_EventIds`)."""
    return _event_ids.next()


class ContextValues:
    """The fields every event about one context carries (all but id, type, time and the
    event's own fields), read once; see :meth:`AuditEvent.from_values`."""

    __slots__ = ("data", "fields_set")

    def __init__(self, ctx: GovContext, *, defer_hash: bool = False) -> None:
        """Read ``ctx``; with ``defer_hash``, long arguments not hashed yet leave their digest to
        be computed by whoever delivers the events (:meth:`Auditor.emit` or a queued sink's
        worker): such events must go through :meth:`Auditor.emit`."""
        principal = ctx.principal
        credential = ctx.credential
        values: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "side": ctx.side,
            "method": ctx.method,
            "kind": ctx.kind,
            "target": ctx.target,
            "principal": principal.id if principal is not None else None,
            "tenant": ctx.tenant,
            "actors": tuple(a.subject for a in principal.actors) if principal is not None else (),
            "session_id": ctx.session_id,
            "request_id": ctx.request_id,
            "request_key": ctx.request_key or ctx.extension(REQUEST_KEY),
            "task_id": ctx.task_id,
            "task_owner": f"{owner[0]}#{owner[1]}" if (owner := task_owner(ctx)) is not None else None,
            "purpose": ctx.purpose,
            "credential_id": credential.get("jti") if credential is not None else None,
            "args_hash": recorded_args_hash(ctx) if defer_hash else ctx.args_hash,
            "auth_method": principal.auth_method if principal is not None else None,
        }
        if not _CONTEXT_FIELDS:  # the names written above: the same for every context, made once
            _CONTEXT_FIELDS.append(frozenset(values) | _ALWAYS_SET)
        self.fields_set = _CONTEXT_FIELDS[0]
        data = dict(_TEMPLATE)
        data.update(values)
        self.data = data

    def event(self, event_type: EventType, fields: dict[str, Any], cls: type[AuditEvent] | None = None) -> AuditEvent:
        """An event of ``event_type`` about this context with its own ``fields`` (a dictionary the
        caller hands over: it is not kept). One copy of the shared values per event, nothing else."""
        data = self.data.copy()
        data["id"] = _event_ids.next()
        data["type"] = event_type
        data["time"] = _now(_UTC)
        fields_set = set(self.fields_set)
        if fields:
            data.update(fields)
            fields_set.update(fields)
        if "attributes" not in fields:
            data["attributes"] = {}
        return (AuditEvent if cls is None else cls)._built(data, fields_set)


_now = datetime.now
_UTC = timezone.utc


def resolved(event: AuditEvent) -> AuditEvent:
    """``event`` with its argument hash computed, if it carries a deferred one (see
    :class:`ContextValues`); sinks only ever see the hash itself."""
    digest = event.__dict__["args_hash"]
    if type(digest) is ArgsDigest:
        return event.with_values(args_hash=digest.value())
    return event


def gap_event(lost: int, reason: str, since: datetime, sink: str) -> AuditEvent:
    """The ``audit.gap`` event a sink writes when it can write again: ``lost`` events, from
    ``since`` on, never reached it (``reason``: ``write_failed``, ``queue_full``...)."""
    return AuditEvent._trusted(
        {
            "id": _event_ids.next(),
            "type": "audit.gap",
            "time": _now(_UTC),
            "side": "audit",
            "method": "audit/gap",
            "reason": reason,
            "detail": f"{lost} audit event(s) could not be recorded since {since.isoformat()}",
            "attributes": {"lost": lost, "since": since.isoformat(), "sink": sink},
        }
    )


def cut_event(seq: int, head: str, found_seq: int, found_head: str, sink: str) -> AuditEvent:
    """The ``audit.gap`` event a log writer writes when the log it wrote up to ``seq`` (``head``)
    now ends earlier or elsewhere (``found_seq``, ``found_head``): lines were cut or replaced."""
    return AuditEvent._trusted(
        {
            "id": _event_ids.next(),
            "type": "audit.gap",
            "time": _now(_UTC),
            "side": "audit",
            "method": "audit/gap",
            "reason": "log_cut",
            "detail": f"the log was written up to seq {seq} but now ends at seq {found_seq}: lines were removed "
            "or replaced",
            "attributes": {
                "lost": max(seq - found_seq, 1),
                "seq": seq,
                "head": head,
                "found_seq": found_seq,
                "found_head": found_head,
                "sink": sink,
            },
        }
    )


_ALWAYS_SET = frozenset({"id", "type", "time"})
_CONTEXT_FIELDS: list[frozenset[str]] = []

_TEMPLATE: dict[str, Any] = {
    name: (None if info.is_required() else info.get_default(call_default_factory=True))
    for name, info in AuditEvent.model_fields.items()
}


@dataclasses.dataclass(frozen=True)
class AuditStats:
    """Delivery counters of an :class:`Auditor` (see :meth:`Auditor.stats`).

    Attributes:
        emitted: events handed to the sinks.
        sink_failures: deliveries that failed on the call path (a sink raised, a queue was full).
        dropped: events a queue refused (full or closed), summed over queued sinks (also counted
            in ``sink_failures``, since the refusal happens on the call path).
        failed: events a queued sink's worker could not write, summed over queued sinks.
        pending: events waiting in queues.
        refused: requests strict mode refused because audit was unavailable.
        sinks: per-sink counters, for sinks that keep them (``name -> counters``).
    """

    emitted: int
    sink_failures: int
    dropped: int
    failed: int
    pending: int
    refused: int
    sinks: dict[str, dict[str, int]]

    @property
    def lost(self) -> int:
        """Deliveries that did not happen: failures on the call path (which include events a queue
        refused) plus events queued sinks' workers could not write."""
        return self.sink_failures + self.failed


async def _within(seconds: float, delivery: Awaitable[object]) -> None:
    """Await an asynchronous sink's ``delivery``, cancelling it after ``seconds``.

    Raises:
        AuditUnavailable: it had not returned by then (reason ``sink_timeout``).
    """
    with anyio.move_on_after(seconds) as waited:
        await delivery
    if waited.cancelled_caught:
        raise AuditUnavailable(f"no answer within {seconds:g}s", reason="sink_timeout")


class _FailureLog:
    """Logs sink failures without event content, at most once per ``interval`` seconds per sink."""

    __slots__ = ("clock", "interval", "last", "suppressed")

    def __init__(self, clock: Clock, interval: float) -> None:
        self.clock = clock
        self.interval = interval
        # Made at the first failure: most auditors never see one.
        self.last: dict[str, float] | None = None
        self.suppressed: dict[str, int] | None = None

    def report(self, sink_name: str, event: AuditEvent, exc: BaseException) -> None:
        now = self.clock()
        seen = self.last
        if seen is None:
            seen = self.last = {}
        suppressed = self.suppressed
        if suppressed is None:
            suppressed = self.suppressed = {}
        last = seen.get(sink_name)
        if last is not None and now - last < self.interval:
            suppressed[sink_name] = suppressed.get(sink_name, 0) + 1
            return
        seen[sink_name] = now
        more = suppressed.pop(sink_name, 0)
        logger.error(
            "audit sink %s failed on event %s (%s): %s; the event is counted as not delivered to it%s",
            sink_name,
            event.id,
            event.type,
            describe_error(exc),
            f" ({more} more failures since the last report)" if more else "",
        )


def describe_error(exc: BaseException) -> str:
    """A log-safe description of ``exc``: its type, and for OS errors the errno name and file.

    Exception text is not logged in general: it may carry values from the event.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        import errno  # noqa: PLC0415 - only needed when a write failed

        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{type(exc).__name__} {name} ({exc.strerror})"
    if isinstance(exc, AuditUnavailable):
        return f"{type(exc).__name__} ({exc.reason})"
    return type(exc).__name__


def _all_within(
    timeout: float | None, steps: list[Callable[[float | None], object]], *, succeeded: Callable[[object], bool]
) -> bool:
    """Run every step, each given what is left of ``timeout``; whether every result ``succeeded``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    done = True
    for step in steps:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        done = succeeded(step(left)) and done
    return done


def _not_false(result: object) -> bool:
    return result is not False


def sink_name(sink: Any) -> str:
    """A readable name for a sink (its ``name`` attribute, qualified name or type)."""
    name = getattr(sink, "name", None)
    if isinstance(name, str) and name:
        return name
    return str(getattr(sink, "__qualname__", None) or type(sink).__name__)


_DEFAULT_REDACTOR: list[Redactor] = []


def _default_redactor() -> Redactor:
    """The default :class:`~mcpgov.audit.Redactor`, built once and shared by every auditor built
    without one (a client's auditor is built per session). Sharing is safe: its configuration
    never changes after construction, and its one cache (values found clean, bounded) depends on
    that configuration only."""
    if not _DEFAULT_REDACTOR:
        from mcpgov.audit._redact import Redactor  # noqa: PLC0415 - mcpgov.audit imports this module

        _DEFAULT_REDACTOR.append(Redactor())
    return _DEFAULT_REDACTOR[0]


class Auditor:
    """Redacts audit events and delivers them to sinks (sync or async callables).

    Every event is redacted first (tokens, secrets, named fields: see
    :class:`mcpgov.audit.Redactor`), stamped with the current OpenTelemetry trace and span ids
    when there is a span context, then handed to each sink in order on the caller's task.
    Sinks that must not slow the call path go behind :class:`mcpgov.audit.QueuedSink`.

    A sink that raises never changes a decision and never breaks the call: the failure is
    logged (without the event's content, rate-limited) and counted in :attr:`sink_failures`.
    In strict mode, a request whose decision cannot be delivered to every sink is refused with
    :class:`~mcpgov.AuditUnavailable`, and so is any request while a queued sink is known to be
    failing (its queue is full, its worker's last write failed, or a write has hung for longer
    than its ``max_lag``).

    An asynchronous sink gets ``sink_timeout`` seconds per event: one that has not returned by
    then is cancelled and counts as a failed delivery, so a sink that hangs (a collector that
    never answers) cannot hold a request, or the session, forever. A synchronous sink runs to
    completion on the caller's thread: put one that may block behind a
    :class:`~mcpgov.audit.QueuedSink`.

    Args:
        sinks: the callables that receive every event.
        strict: refuse requests that cannot be audited.
        redactor: the redaction configuration (default: :class:`mcpgov.audit.Redactor()`).
        flush_timeout: how long :meth:`aflush` waits for queued sinks at shutdown.
        sink_timeout: how long an asynchronous sink may take over one event, in seconds
            (default 10).
        log_interval: at most one failure log line per sink per this many seconds.
        clock: monotonic clock for rate-limiting logs (injectable for tests).

    Raises:
        ConfigurationError: a sink is not callable, or strict mode has no sink.
    """

    # Slots: a GovernedClient builds an auditor per session.
    __slots__ = (
        "_async",
        "_hash_off_path",
        "_log",
        "_reporting",
        "_sinks",
        "events_emitted",
        "flush_timeout",
        "redactor",
        "refused",
        "sink_failures",
        "sink_timeout",
        "strict",
    )

    def __init__(
        self,
        sinks: Iterable[AuditCallback] = (),
        *,
        strict: bool = False,
        redactor: Redactor | None = None,
        flush_timeout: float = 5.0,
        sink_timeout: float = 10.0,
        log_interval: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        from mcpgov.audit._redact import Redactor  # noqa: PLC0415 - mcpgov.audit imports this module

        if redactor is not None and not isinstance(redactor, Redactor):
            raise ConfigurationError(f"redactor must be a Redactor, got {type(redactor).__name__}")
        if flush_timeout <= 0 or log_interval < 0:
            raise ConfigurationError("flush_timeout must be positive and log_interval not negative")
        self.sink_timeout = positive_seconds("sink_timeout", sink_timeout)
        # Tuples: an auditor with no sink (a client's, built per session) holds three shared empty ones.
        self._sinks: tuple[AuditCallback, ...] = ()
        self._async: tuple[bool, ...] = ()
        self._reporting: tuple[HealthReporting, ...] = ()  # classified once: the health check runs per request
        # Whether every sink computes a deferred argument hash itself (queued sinks, on their worker).
        self._hash_off_path = False
        self.strict = bool(strict)
        self.redactor: Redactor = redactor if redactor is not None else _default_redactor()
        self.flush_timeout = flush_timeout
        self._log = _FailureLog(clock, log_interval)
        self.sink_failures = 0
        """How many deliveries failed on the call path (a sink raised, or a queue refused the event)."""
        self.events_emitted = 0
        """How many events were handed to the sinks."""
        self.refused = 0
        """How many requests strict mode refused because audit was unavailable."""
        for sink in sinks:
            self.add_sink(sink)
        if self.strict and not self._sinks:
            raise ConfigurationError("strict audit needs at least one sink: with none, nothing could be recorded")

    def __repr__(self) -> str:
        return f"Auditor(sinks={[sink_name(s) for s in self._sinks]}, strict={self.strict})"

    def add_sink(self, sink: AuditCallback) -> None:
        """Deliver future events to ``sink`` as well."""
        if not callable(sink):
            raise ConfigurationError(f"an audit sink must be callable, got {type(sink).__name__}")
        self._sinks = (*self._sinks, sink)
        self._async = (*self._async, is_async_callable(sink))
        self._hash_off_path = all(getattr(s, "computes_digests", False) is True for s in self._sinks)
        reporting = health_reporting(sink)
        if reporting is not None:
            self._reporting = (*self._reporting, reporting)

    @property
    def may_suspend(self) -> bool:
        """Whether emitting an event can yield to the event loop (an asynchronous sink)."""
        return any(self._async)

    @property
    def wants_events(self) -> bool:
        """Whether any sink receives events (callers may skip building events when not)."""
        return bool(self._sinks)

    @property
    def sinks(self) -> tuple[AuditCallback, ...]:
        """The configured sinks."""
        return self._sinks

    def prepare(self, event: AuditEvent) -> AuditEvent:
        """``event`` as sinks receive it: trace-stamped and redacted."""
        changes: dict[str, Any] | None = None
        if event.trace_id is None:
            span_context = get_current_span().get_span_context()
            if span_context.is_valid:
                changes = {
                    "trace_id": format(span_context.trace_id, "032x"),
                    "span_id": format(span_context.span_id, "016x"),
                }
        try:
            redacted = self.redactor.event_changes(event)
        except Exception:  # noqa: BLE001 - whatever went wrong, the event is not written in the clear
            from mcpgov.audit._redact import unredactable_changes  # noqa: PLC0415 - mcpgov.audit imports this module

            redacted = unredactable_changes(event)
        if redacted:
            changes = {**changes, **redacted} if changes else redacted
        return event.with_values(**changes) if changes else event

    async def emit(self, event: AuditEvent, *, required: bool | None = None) -> None:
        """Redact ``event`` and hand it to every sink, isolating each sink's failures.

        Args:
            event: the event.
            required: raise when a sink failed (default: :attr:`strict`). mcpgov passes
                ``False`` for events recorded after the fact (refusals, outcomes, listings).

        Raises:
            AuditUnavailable: ``required`` and at least one sink failed (the others got the event).
        """
        self.events_emitted += 1
        if not self._sinks:  # nobody receives it: no redaction, no trace stamp
            return
        event = self.prepare(event)
        if not self._hash_off_path:
            event = resolved(event)
        failed = False
        for index, (sink, is_async) in enumerate(zip(self._sinks, self._async, strict=True)):
            try:
                result = sink(event)
                if is_async or (result is not None and inspect.isawaitable(result)):
                    if not is_async:  # a sink that returns awaitables is asynchronous from now on
                        flags = self._async
                        self._async = (*flags[:index], True, *flags[index + 1 :])
                    await _within(self.sink_timeout, result)  # type: ignore[arg-type]
            except BaseException as exc:
                if not await contained(exc):
                    raise
                failed = True
                self.sink_failures += 1
                self._log.report(sink_name(sink), event, exc)
        if failed and (self.strict if required is None else required):
            raise AuditUnavailable(f"audit event {event.id} ({event.type}) was not delivered to every sink")

    def available(self) -> bool:
        """Whether every sink that reports its health (a ``healthy`` attribute, like
        :class:`~mcpgov.audit.QueuedSink`) is healthy. Direct sinks are tested by delivery itself."""
        return all(sink.healthy is not False for sink in self._reporting)

    def check_available(self) -> None:
        """In strict mode, refuse (raise) when a sink is known to be failing; otherwise do nothing.

        Raises:
            AuditUnavailable: strict mode and :meth:`available` is false.
        """
        if self.strict and not self.available():
            self.refused += 1
            raise AuditUnavailable("an audit sink is failing; strict audit refuses the request")

    def arguments(self, ctx: GovContext) -> dict[str, Any] | None:
        """The argument fields decision events record for ``ctx`` (``None`` unless configured)."""
        return self.redactor.arguments(ctx)

    def stats(self) -> AuditStats:
        """Delivery counters: emitted, failed, dropped, pending, refused, and per queued sink."""
        per_sink: dict[str, dict[str, int]] = {}
        totals = dict.fromkeys(("dropped", "failed", "pending"), 0)
        for sink in self._sinks:
            counters = stats_of(sink)
            if counters is None:
                continue
            name = sink_name(sink)
            if name in per_sink:
                name = f"{name}#{len(per_sink)}"
            per_sink[name] = dict(counters)
            for key in totals:
                totals[key] += int(counters.get(key, 0))
        return AuditStats(
            emitted=self.events_emitted,
            sink_failures=self.sink_failures,
            refused=self.refused,
            sinks=per_sink,
            **totals,
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued sinks have written what they hold (blocking; see :meth:`aflush`).

        Returns:
            ``True`` when everything was written in time.
        """
        queues = [queue for queue in map(flushable, self._sinks) if queue is not None]
        return _all_within(timeout, [queue.flush for queue in queues], succeeded=bool)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop queued sinks' workers and close sinks that hold files (blocking).

        Returns:
            ``True`` when everything was written in time.
        """
        holders = [holder for holder in map(closable, self._sinks) if holder is not None]
        return _all_within(timeout, [holder.close for holder in holders], succeeded=_not_false)

    def _has_queues(self) -> bool:
        return any(flushable(sink) is not None for sink in self._sinks)

    async def aflush(self, within: float | None = None) -> bool:
        """:meth:`flush` without blocking the event loop, waiting at most ``within`` seconds
        (default :attr:`flush_timeout`)."""
        if not self._has_queues():
            return True
        limit = self.flush_timeout if within is None else within
        return await anyio.to_thread.run_sync(self.flush, limit)

    async def aclose(self, within: float | None = None) -> bool:
        """:meth:`close` without blocking the event loop, waiting at most ``within`` seconds
        (default :attr:`flush_timeout`)."""
        limit = self.flush_timeout if within is None else within
        return await anyio.to_thread.run_sync(self.close, limit)
