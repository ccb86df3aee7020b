"""The audit trail under faults and hostile input: crashes mid-write, sinks that raise anything,
lost writes, and what an attacker with write access to the log can and cannot get past verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpgov import AuditEvent, GovContext
from mcpgov.audit import JsonlSink, read_events, verify_chain

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
