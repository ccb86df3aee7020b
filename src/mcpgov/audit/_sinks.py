"""Composable sinks: a bounded queue in front of a slow sink, fan-out, and structured logging."""

from __future__ import annotations

import asyncio
import atexit
import inspect
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, cast, overload

from mcpgov._arguments import ArgsDigest
from mcpgov._audit import AuditCallback, AuditEvent, describe_error, gap_event, resolved, sink_name
from mcpgov._errors import AuditUnavailable, ConfigurationError
from mcpgov._protocols import BatchWriter, ClosableSink, Ticking, closable, flushable, health_reporting, stats_of
from mcpgov._types import is_async_callable
from mcpgov._validate import is_number, is_positive_count, positive_seconds
from mcpgov.audit._codec import event_to_dict
from mcpgov.audit._printable import printable_word

__all__ = ["FanOut", "LoggingSink", "QueuedSink"]

logger = logging.getLogger("mcpgov.audit")

_IDLE_WAIT = 0.25

_FIELDS: tuple[str, ...] = tuple(AuditEvent.model_fields)
_ATTRIBUTES = _FIELDS.index("attributes")
_Queued = AuditEvent | tuple[Any, ...]
_QUEUED = object()  # marks the queued form of an event (a plain object: the tuple stays untrackable)


def _queued(event: AuditEvent) -> _Queued:
    """What the queue holds for ``event``: for a plain event, one flat tuple (a mark, its values in
    field order with its attributes as a tuple of items, then the names of the fields set, joined).

    An event waits in the queue long enough to outlive the garbage collector's young
    generations; held as an object (or as anything holding a dict or a set), each would be
    promoted to the oldest generation, and a busy server would pay a full collection of its
    whole heap every few thousand calls. A tuple of plain values leaves the collector's watch
    at its first pass (one holding other tuples, one pass per level)."""
    if type(event) is not AuditEvent:
        return resolved(event) if isinstance(event, AuditEvent) else event  # held and delivered as given
    data = event.__dict__
    if tuple(data) != _FIELDS:
        return resolved(event)
    values = [_QUEUED, *data.values()]
    values[_ATTRIBUTES + 1] = tuple(values[_ATTRIBUTES + 1].items())
    values.append("\0".join(event.__pydantic_fields_set__))
    return tuple(values)


def _event(item: _Queued) -> AuditEvent:
    """The event :func:`_queued` holds (the same fields, an equal event)."""
    if isinstance(item, tuple) and item and item[0] is _QUEUED:
        data = dict(zip(_FIELDS, item[1:-1], strict=True))  # after the mark; the last item is the fields set
        data["attributes"] = dict(item[_ATTRIBUTES + 1])
        digest = data["args_hash"]
        if type(digest) is ArgsDigest:  # long arguments, hashed here: on the worker, off the call path
            data["args_hash"] = digest.value()
        fields_set = item[-1]
        return AuditEvent._built(data, set(fields_set.split("\0")) if fields_set else set())
    return cast("AuditEvent", item)  # held as it was given


class _Batch(Sequence[AuditEvent]):
    """A batch handed to a sink: each event is made when it is read, so a sink reading the batch
    once holds one event object at a time, not the whole batch while it writes."""

    __slots__ = ("_items",)

    def __init__(self, items: list[_Queued]) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> AuditEvent: ...

    @overload
    def __getitem__(self, index: slice) -> list[AuditEvent]: ...

    def __getitem__(self, index: int | slice) -> AuditEvent | list[AuditEvent]:
        if isinstance(index, slice):
            return [_event(item) for item in self._items[index]]
        return _event(self._items[index])

    def __iter__(self) -> Iterator[AuditEvent]:
        return map(_event, self._items)


_LIVE_QUEUES: weakref.WeakSet[QueuedSink] = weakref.WeakSet()


def _close_live_queues() -> None:  # pragma: no cover - runs at interpreter exit
    for queue in list(_LIVE_QUEUES):
        queue.close(timeout=5.0)


atexit.register(_close_live_queues)


class QueuedSink:
    """Delivers events to ``sink`` off the call path, through a bounded queue and a worker thread.

    Calling it only appends the event to the queue (a microsecond or so). When the queue is
    full the event is refused: counted in :attr:`dropped`, logged (without its content) and
    reported to the :class:`~mcpgov.Auditor` as a failed delivery, which strict mode turns into
    refusals. Events the worker cannot write (the sink raised) are counted in :attr:`failed`.
    Nothing is lost without being counted.

    The worker is not woken per event: it wakes when a whole batch is queued, or after
    ``linger`` seconds for a partial one (and, idle, on a timer that backs off to a quarter
    second, calling the sink's ``tick()`` if it has one, e.g. for a timed checkpoint). The worker
    starts with the first event. :meth:`flush` waits until everything queued is
    written; :meth:`close` flushes and stops the worker (also done at interpreter exit, and
    ``govern()`` flushes when the server's lifespan ends). A sink with a ``write_batch(events)``
    method (such as :class:`~mcpgov.audit.JsonlSink`) receives events in batches; async sinks
    run on the worker's own event loop.

    Args:
        sink: the sink to feed (sync or async callable).
        maxsize: the queue bound.
        batch: how many events the worker hands over at a time, at most (a full batch wakes it).
        linger: how long a partial batch waits for more events, in seconds (default 0.1). Each
            time the worker wakes it takes the interpreter lock from the thread serving calls,
            which costs both threads context switches, most of all to a server doing network
            I/O; waking at most ten times a second under a steady trickle of events keeps that
            cost small. An event reaches the sink within about ``linger`` of being queued while
            events keep coming (up to a quarter second more after an idle spell); a full batch,
            :meth:`flush` and :meth:`close` deliver at once. Lower it if the sink must see events
            sooner, at that cost. It also bounds each catch-up wait (below).

    Catching up: a busy thread can keep the worker from the interpreter lock for seconds (an
    event loop serving calls back to back takes the lock back each time it lets it go, before the
    worker thread is even scheduled), and the queue would then fill and refuse events a sink
    could easily write. So when two batches' worth are waiting, the thread queuing the next event
    waits (releasing the lock for real) until the worker is down to less than a batch, for at
    most ``linger`` seconds, and not again until another batch has queued up, nor while the
    worker has written nothing since a wait ran out (a stuck sink). A sink that is merely slow
    still fills the queue, and what does not fit is refused and counted.
        name: a name for logs and stats (default: the sink's).
        max_lag: how long, in seconds, the worker may spend handing one batch (or one ``tick()``)
            to the sink before the queue reports itself unhealthy (default 5). A sink that hangs
            (a network write that never returns, a lock never released) writes nothing while
            the queue still has room; past ``max_lag`` strict audit refuses requests rather than
            queue events that may never be written. Healthy again once the write returns.

    Raises:
        ConfigurationError: ``sink`` is not callable, must run on the call path (such as
            :class:`~mcpgov.audit.OTelSink`), a bound is not positive, or ``max_lag`` is not a
            positive number of seconds.
    """

    def __init__(
        self,
        sink: AuditCallback,
        *,
        maxsize: int = 10_000,
        batch: int = 512,
        linger: float = 0.1,
        name: str | None = None,
        max_lag: float = 5.0,
    ) -> None:
        if not callable(sink):
            raise ConfigurationError(f"an audit sink must be callable, got {type(sink).__name__}")
        if getattr(sink, "call_path_only", False):
            raise ConfigurationError(
                f"{sink_name(sink)} reads the current request's trace context and must not be queued"
            )
        if not (is_positive_count(maxsize) and is_positive_count(batch)):
            raise ConfigurationError("maxsize and batch must be at least 1")
        if not is_number(linger) or not 0 < linger <= 1:
            raise ConfigurationError("linger must be a number of seconds in (0, 1]")
        self.linger = float(linger)
        self.max_lag = positive_seconds("max_lag", max_lag)
        self._busy_since: float | None = None  # when the worker began its current write or tick
        # A full batch wakes the worker, and so does a half-full queue (it must never fill up idle).
        self._wake_at = max(1, min(batch, maxsize // 2))
        # Two batches waiting: the worker is behind, and a thread queuing an event waits for it.
        self._catch_up_at = min(2 * self._wake_at, maxsize)
        self._next_wait = self._catch_up_at
        self._batches_moved = 0  # batches the worker took, and batches it finished
        self._stalled = False
        self.waits = 0
        """How many times a thread queuing an event waited for the worker to catch up."""
        self.sink = sink
        self.maxsize = maxsize
        self.batch = batch
        self.name = name or f"queued({sink_name(sink)})"
        self._write_batch: Callable[[Sequence[AuditEvent]], Any] | None = (
            sink.write_batch if isinstance(sink, BatchWriter) else None
        )
        self._sink_async = is_async_callable(sink)
        self._queue: deque[_Queued] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._drained = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._idle = False
        self._inflight = 0
        self._closed = False
        self._last_ok = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self.enqueued = 0
        """Events accepted into the queue."""
        self.delivered = 0
        """Events the sink received without raising."""
        self.dropped = 0
        """Events refused because the queue was full or closed."""
        self.failed = 0
        """Events the sink raised on."""
        self._gap_recorded = 0  # dropped events the sink was told about (an ``audit.gap`` event)
        self._dropped_since: datetime | None = None
        self._last_log = 0.0
        self._unlogged = 0
        self._flushing = 0
        self._tick: Callable[[], Any] | None = sink.tick if isinstance(sink, Ticking) else None

    computes_digests = True
    """Events may reach it with their argument hash still to compute: its worker computes it."""

    def __repr__(self) -> str:
        return f"QueuedSink({sink_name(self.sink)}, maxsize={self.maxsize}, pending={self.pending})"

    @property
    def pending(self) -> int:
        """Events queued or being written."""
        return len(self._queue) + self._inflight

    @property
    def healthy(self) -> bool:
        """Whether the queue has room, is open, the sink's last write succeeded, and the write (or
        ``tick()``) under way, if any, began less than ``max_lag`` seconds ago."""
        thread = self._thread
        busy_since = self._busy_since
        return (
            not self._closed
            and self._last_ok
            and len(self._queue) < self.maxsize
            and (thread is None or thread.is_alive())
            and (busy_since is None or time.monotonic() - busy_since < self.max_lag)
        )

    def stats(self) -> dict[str, int]:
        """The counters: enqueued, delivered, dropped, failed, pending (catch-up waits: :attr:`waits`)."""
        return {
            "enqueued": self.enqueued,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "failed": self.failed,
            "pending": self.pending,
        }

    def __call__(self, event: AuditEvent) -> None:
        """Queue ``event`` for the worker.

        Raises:
            AuditUnavailable: the queue is full or closed (the event is counted as dropped).
        """
        with self._lock:
            if self._closed or len(self._queue) >= self.maxsize:
                self.dropped += 1
                if self._dropped_since is None:
                    self._dropped_since = datetime.now(timezone.utc)
                reason = "sink_closed" if self._closed else "queue_full"
                self._log_drop_locked(reason)
                raise AuditUnavailable(f"audit queue {self.name} refused an event ({reason})", reason=reason)
            self._queue.append(_queued(event))
            self.enqueued += 1
            if self._thread is None:
                self._start_locked()
            elif self._idle and len(self._queue) >= self._wake_at:
                self._not_empty.notify()
            if len(self._queue) >= self._next_wait:
                self._catch_up_locked()

    def _catch_up_locked(self) -> None:
        """Wait (the lock released) until the worker is down to less than a batch, at most
        ``linger`` seconds; the next wait comes only once another batch has queued up, and none
        while the worker has written nothing since a wait that ran out (a stuck sink)."""
        thread = self._thread
        if (
            thread is None
            or thread is threading.current_thread()
            or not thread.is_alive()
            or not self._last_ok
            or self._stalled
        ):
            return  # nothing to wait for: a failing or stuck sink is not waited on, it fills the queue
        self.waits += 1
        if self._idle:
            self._not_empty.notify()
        progress = self._batches_moved
        deadline = time.monotonic() + self.linger
        while len(self._queue) >= self._wake_at and not self._closed and self._last_ok:
            left = deadline - time.monotonic()
            if left <= 0:
                # The worker neither took nor finished a batch all along: its sink is stuck.
                self._stalled = self._batches_moved == progress
                break
            self._drained.wait(left)
        self._next_wait = max(self._catch_up_at, len(self._queue) + self._wake_at)

    def _log_drop_locked(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_log < 1.0:
            self._unlogged += 1
            return
        self._last_log = now
        more, self._unlogged = self._unlogged, 0
        logger.error(
            "audit queue %s dropped an event (%s): %d dropped so far%s",
            self.name,
            reason,
            self.dropped,
            f", {more} since the last report" if more else "",
        )

    def _start_locked(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"mcpgov-audit-{self.name}", daemon=True)
        _LIVE_QUEUES.add(self)
        self._thread.start()

    def _run(self) -> None:
        idle_wait = self.linger
        try:
            while True:
                tick_due = False
                with self._lock:
                    deadline: float | None = None
                    while True:
                        queued = len(self._queue)
                        if self._closed or (queued and (self._flushing or queued >= self._wake_at)):
                            break
                        now = time.monotonic()
                        if queued:
                            if deadline is None:
                                deadline = now + self.linger
                            left = deadline - now
                            if left <= 0:
                                break  # a partial batch waited its linger period: write it
                        else:
                            deadline = None
                            left = idle_wait
                        self._idle = True
                        signalled = self._not_empty.wait(left)
                        self._idle = False
                        if self._queue:
                            idle_wait = self.linger
                        elif not signalled:
                            # Idle: back off, and let the sink do timed work (a checkpoint).
                            idle_wait = min(idle_wait * 2, _IDLE_WAIT)
                            if self._tick is not None:
                                tick_due = True
                                break
                    if not tick_due:
                        if not self._queue:
                            return  # closed and drained
                        n = min(self.batch, len(self._queue))
                        batch = _Batch([self._queue.popleft() for _ in range(n)])
                        self._inflight = n
                        self._batches_moved += 1
                    self._busy_since = time.monotonic()
                if tick_due:
                    self._run_tick()
                    continue
                self._report_drops()
                ok = self._deliver(batch)
                with self._lock:
                    self._written_locked(ok)
        finally:
            if self._loop is not None:
                self._loop.close()
                self._loop = None

    def _written_locked(self, ok: bool) -> None:
        """Bookkeeping after the worker handed a batch over (``ok``: without a failure)."""
        self._inflight = 0
        self._busy_since = None
        self._batches_moved += 1
        self._stalled = False
        if len(self._queue) < self._wake_at:
            self._next_wait = self._catch_up_at  # caught up
        self._drained.notify_all()
        self._last_ok = ok

    def _run_tick(self) -> None:
        tick = self._tick
        if tick is None:
            return
        try:
            tick()
        except BaseException as exc:  # noqa: BLE001 - see _contain_in_worker
            with self._lock:
                self._last_ok = False
            self._log_failure(0, exc)
        finally:
            self._busy_since = None

    # _contain_in_worker: the worker contains every exception its sink raises, ``SystemExit``, ``KeyboardInterrupt``,
    # ``GeneratorExit`` and other ``BaseException`` subclasses included: in a worker thread there
    # is nobody to propagate them to, and a worker that ended would take its batch with it
    # uncounted, leave the queue looking healthy to strict audit and never write another event.
    # Each is counted as a failed delivery and makes the queue unhealthy until a write succeeds.

    def _report_drops(self) -> None:
        """Tell the sink how many events were dropped since it was last told (an ``audit.gap``
        event, ahead of the next batch), so a log records its own loss."""
        with self._lock:
            count, since = self.dropped - self._gap_recorded, self._dropped_since
        if not count or since is None or not self._record_gap(count, since):
            return
        with self._lock:
            self._gap_recorded += count
            if self._gap_recorded == self.dropped:
                self._dropped_since = None

    def _record_gap(self, count: int, since: datetime) -> bool:
        """Hand the sink an ``audit.gap`` event for ``count`` dropped events; whether it took it."""
        event = gap_event(count, "queue_full", since, self.name)
        try:
            result = self._write_batch([event]) if self._write_batch is not None else self.sink(event)
            if self._sink_async or (result is not None and inspect.isawaitable(result)):
                self._await(result)
        except BaseException as exc:  # noqa: BLE001 - see _contain_in_worker
            self._log_failure(0, exc)
            return False
        return True

    def _await(self, result: Any) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(result)

    def _deliver(self, batch: _Batch) -> bool:
        if self._write_batch is not None:
            try:
                result = self._write_batch(batch)
                if result is not None and inspect.isawaitable(result):
                    self._await(result)
            except BaseException as exc:  # noqa: BLE001 - see _contain_in_worker
                self.failed += len(batch)
                self._log_failure(len(batch), exc)
                return False
            self.delivered += len(batch)
            return True
        ok = True
        for event in batch:
            try:
                result = self.sink(event)
                if self._sink_async or (result is not None and inspect.isawaitable(result)):
                    self._await(result)
            except BaseException as exc:  # noqa: BLE001 - see _contain_in_worker
                self.failed += 1
                self._log_failure(1, exc)
                ok = False
            else:
                self.delivered += 1
        return ok

    def _log_failure(self, count: int, exc: BaseException) -> None:
        logger.error(
            "audit sink %s could not write %d event(s): %s; %d failed so far",
            sink_name(self.sink),
            count,
            describe_error(exc),
            self.failed,
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event was handed to the sink (or ``timeout`` seconds passed).

        Returns:
            ``True`` when the queue is empty and nothing is being written.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flushing += 1
            try:
                while self._queue or self._inflight:
                    if self._thread is None or not self._thread.is_alive():
                        return False
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    if self._idle:
                        self._not_empty.notify()
                    self._drained.wait(left)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush, stop the worker, and close the sink if it has a ``close()``; later events are dropped.

        Returns:
            ``True`` when everything queued was written.
        """
        done = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        _LIVE_QUEUES.discard(self)
        holder = closable(self.sink)
        if holder is not None:
            try:
                holder.close()
            except Exception as exc:  # noqa: BLE001 - closing must not raise at shutdown
                logger.error("audit sink %s failed to close: %s", sink_name(self.sink), describe_error(exc))
        return done and not self._queue


class FanOut:
    """One sink that delivers every event to several sinks, isolating their failures.

    Useful behind one :class:`QueuedSink` (one worker feeding a file and a log, say). Each inner
    sink's failures are counted in :attr:`failures` (by sink name); when any inner sink failed,
    the fan-out raises :class:`~mcpgov.AuditUnavailable` after trying them all, so the caller
    counts the delivery as failed.

    Args:
        sinks: the sinks (sync or async callables).
        name: a name for logs and stats.

    Raises:
        ConfigurationError: a sink is not callable, or there is none.
    """

    def __init__(self, *sinks: AuditCallback, name: str = "fan-out") -> None:
        if not sinks:
            raise ConfigurationError("FanOut needs at least one sink")
        for sink in sinks:
            if not callable(sink):
                raise ConfigurationError(f"an audit sink must be callable, got {type(sink).__name__}")
        self.sinks: tuple[AuditCallback, ...] = sinks
        self._reporting = [r for r in map(health_reporting, sinks) if r is not None]
        self.name = name
        self.call_path_only = any(getattr(s, "call_path_only", False) for s in sinks)
        self.failures: dict[str, int] = {}
        """Failed deliveries per inner sink name."""

    def __repr__(self) -> str:
        return f"FanOut({', '.join(sink_name(s) for s in self.sinks)})"

    @property
    def healthy(self) -> bool:
        """Whether every inner sink that reports health is healthy."""
        return all(sink.healthy is not False for sink in self._reporting)

    async def __call__(self, event: AuditEvent) -> None:
        """Deliver ``event`` to every inner sink.

        Raises:
            AuditUnavailable: at least one inner sink failed (the others got the event).
        """
        failed: list[str] = []
        for sink in self.sinks:
            try:
                result = sink(event)
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - isolate each inner sink
                name = sink_name(sink)
                self.failures[name] = self.failures.get(name, 0) + 1
                failed.append(f"{name}: {describe_error(exc)}")
        if failed:
            raise AuditUnavailable(f"fan-out delivery failed ({'; '.join(failed)})")

    def stats(self) -> dict[str, int]:
        """Failures per inner sink, plus inner sinks' own counters prefixed by their names."""
        out: dict[str, int] = {f"failed[{k}]": v for k, v in self.failures.items()}
        for sink in self.sinks:
            counters = stats_of(sink)
            if counters is not None:
                name = sink_name(sink)
                for key, value in counters.items():
                    out[f"{name}.{key}"] = int(value)
                    if key in {"dropped", "failed", "pending"}:
                        out[key] = out.get(key, 0) + int(value)
        return out

    def flush(self, timeout: float | None = None) -> bool:
        """Flush inner sinks that queue: every one of them, whatever the others answer."""
        answers = [bool(queue.flush(timeout)) for queue in map(flushable, self.sinks) if queue is not None]
        return all(answers)

    def close(self, timeout: float | None = None) -> bool:
        """Close inner sinks that can be closed: every one of them, whatever the others answer."""
        answers = [_close(holder, timeout) for holder in map(closable, self.sinks) if holder is not None]
        return all(answers)


def _close(holder: ClosableSink, timeout: float | None) -> bool:
    """Close ``holder`` (passing ``timeout`` when its ``close`` takes one); ``False`` only when it says so."""
    result = holder.close(timeout) if _takes_timeout(holder.close) else holder.close()
    return result is not False


def _takes_timeout(fn: Callable[..., Any]) -> bool:
    try:
        return len(inspect.signature(fn).parameters) >= 1
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return False


class LoggingSink:
    """Writes every event to Python logging as one structured record.

    The message is a short summary (``audit decision allow tools/call deploy rule=... id=...``);
    the whole event, as JSON data, is on the record as ``record.<extra_key>`` (default
    ``mcpgov_audit``) for structured formatters (JSON log handlers, structlog) to pick up.

    Args:
        logger: the logger or its name (default ``mcpgov.audit.events``).
        level: the level of every record.
        extra_key: the record attribute holding the event.

    Raises:
        ConfigurationError: ``logger`` is neither a name nor a ``logging.Logger``.
    """

    def __init__(
        self,
        logger: logging.Logger | str = "mcpgov.audit.events",
        *,
        level: int = logging.INFO,
        extra_key: str = "mcpgov_audit",
    ) -> None:
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        if not isinstance(logger, logging.Logger):
            raise ConfigurationError("logger must be a logging.Logger or a logger name")
        self.logger = logger
        self.level = level
        self.extra_key = extra_key
        self.name = f"logging({logger.name})"

    def __repr__(self) -> str:
        return f"LoggingSink({self.logger.name!r})"

    def __call__(self, event: AuditEvent) -> None:
        """Log ``event``."""
        if not self.logger.isEnabledFor(self.level):
            return
        what = event.effect or event.outcome
        # Each value one escaped word: a client-chosen name never forges a line or a field of a text log.
        self.logger.log(
            self.level,
            "audit %s%s %s %s rule=%s id=%s",
            printable_word(event.type),
            f" {printable_word(what)}" if what else "",
            printable_word(event.method),
            printable_word(event.target or "-"),
            printable_word(event.rule or "-"),
            event.id,
            extra={self.extra_key: event_to_dict(event)},
        )
