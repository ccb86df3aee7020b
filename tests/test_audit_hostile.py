"""The audit trail under faults and hostile input: crashes mid-write, sinks that raise anything,
lost writes, and what an attacker with write access to the log can and cannot get past verify."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mcpgov import AuditEvent, Auditor, GovContext
from mcpgov.audit import JsonlSink, QueuedSink, read_events, verify_chain

pytestmark = pytest.mark.anyio


def make_events(n: int, *, start: int = 0) -> list[AuditEvent]:
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="deploy", tenant="acme")
    return [AuditEvent.from_context(ctx, "decision", effect="allow", rule=f"rule-{i}") for i in range(start, start + n)]


def rules(path: Path) -> list[str | None]:
    return [event.rule for event in read_events([path])]


# --- a crash mid-write ------------------------------------------------------------------------------


@pytest.mark.parametrize("torn", [b'{"event":{"id":"x', b"{", b'{"event":{}', b"garbage"])
def test_a_line_torn_by_a_crash_is_kept_apart_and_the_next_events_stay_whole(tmp_path: Path, torn: bytes) -> None:
    path = tmp_path / "audit.jsonl"
    first = JsonlSink(path)
    first.write_batch(make_events(2))
    first.close()
    with path.open("ab") as f:  # the process died in the middle of its next write
        f.write(torn)
    resumed = JsonlSink(path)
    resumed.write_batch(make_events(2, start=2))
    resumed.close()
    assert rules(path) == ["rule-0", "rule-1", "rule-2", "rule-3"]  # nothing written after the crash is lost
    report = verify_chain([path])
    assert [(p.line, p.kind) for p in report.problems] == [(3, "malformed")]  # the torn line, on its own
    assert report.events == 4


def test_a_line_torn_by_another_writer_is_kept_apart_from_this_writers_next_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    sink.write_batch(make_events(1))
    other = JsonlSink(path)  # another process, which crashes mid-line
    other.write_batch(make_events(1, start=1))
    other.close()
    with path.open("ab") as f:
        f.write(b'{"event":{"effect":"al')
    sink.write_batch(make_events(1, start=2))
    sink.close()
    assert rules(path) == ["rule-0", "rule-1", "rule-2"]
    report = verify_chain([path])
    assert [(p.line, p.kind) for p in report.problems] == [(3, "malformed")]


# --- a queued sink that raises anything ------------------------------------------------------------


class Custom(BaseException):
    pass


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt, GeneratorExit, Custom])
@pytest.mark.parametrize("batched", [False, True])
def test_a_queued_sink_raising_any_base_exception_loses_nothing_uncounted(
    error: type[BaseException], batched: bool
) -> None:
    received: list[AuditEvent] = []
    failing = threading.Event()
    failing.set()

    def deliver(event: AuditEvent) -> None:
        if failing.is_set():
            raise error
        received.append(event)

    class Batched:
        def __call__(self, event: AuditEvent) -> None:
            deliver(event)

        def write_batch(self, events: list[AuditEvent]) -> None:
            for event in events:
                deliver(event)

    queue = QueuedSink(Batched() if batched else deliver, linger=0.01)
    auditor = Auditor([queue], strict=True)
    queue(make_events(1)[0])
    queue.flush(5.0)
    assert queue.failed == 1  # counted, not silently gone with the worker
    assert not auditor.available()  # strict audit refuses while the sink is failing
    failing.clear()
    events = make_events(3, start=1)
    for event in events:
        queue(event)
    assert queue.flush(5.0)  # the worker is still there to write them
    assert [e.rule for e in received] == ["rule-1", "rule-2", "rule-3"]
    assert auditor.available()
    assert queue.close(5.0)


def test_a_queued_sink_whose_tick_raises_any_base_exception_keeps_its_worker() -> None:
    received: list[AuditEvent] = []

    class Ticking:
        ticks = 0

        def __call__(self, event: AuditEvent) -> None:
            received.append(event)

        def tick(self) -> None:
            self.ticks += 1
            raise Custom

    sink = Ticking()
    queue = QueuedSink(sink, linger=0.01)
    queue(make_events(1)[0])
    assert queue.flush(5.0)
    pause = threading.Event()
    for _ in range(100):  # the idle worker ticks within a quarter second or so
        if sink.ticks:
            break
        pause.wait(0.05)
    assert sink.ticks
    queue(make_events(1, start=1)[0])
    assert queue.flush(5.0)
    assert [e.rule for e in received] == ["rule-0", "rule-1"]
    assert queue.close(5.0)
