"""The audit trail under faults and hostile input: crashes mid-write, sinks that raise anything,
lost writes, and what an attacker with write access to the log can and cannot get past verify."""

from __future__ import annotations

import errno
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from mcp import Client

from mcpgov import AuditEvent, Auditor, AuditUnavailable, GovContext, Principal
from mcpgov.audit import JsonlSink, ProofScope, QueuedSink, Redactor, prove, read_events, verify_chain
from tests.conftest import build_demo

pytestmark = pytest.mark.anyio

OWNER = Principal("https://id.example", "deploy-bot", tenant="acme")
"""The caller of the task events written by hand (a task belongs to its owner)."""


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


# --- a disk or queue that loses events: the log records the gap --------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    from click.testing import CliRunner

    from mcpgov.cli import main

    path = tmp_path / "audit-key.jwks"
    assert CliRunner().invoke(main, ["keys", "generate", "--out", str(path)]).exit_code == 0
    return path


async def test_events_a_failing_disk_lost_are_recorded_in_the_chain_and_fail_verify_and_prove(
    tmp_path: Path, key_file: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoint_key=key_file)
    demo = build_demo(audit=Auditor([sink]))  # not strict: calls go on while the disk is full
    real_write = os.write
    disk_full = False

    def write(fd: int, data: bytes) -> int:
        if disk_full and fd == sink._fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    async with Client(demo.server, mode=mode) as client:
        await client.call_tool("read_file", {"path": "a"})
        disk_full = True
        await client.call_tool("read_file", {"path": "b"})  # its decision and outcome are lost
        disk_full = False
        await client.call_tool("read_file", {"path": "c"})
    sink.close()
    assert demo.ran == ["read_file"] * 3
    assert sink.lost == 2
    report = verify_chain([path], public_key=key_file)
    assert [p.kind for p in report.problems] == ["lost"], report.problems
    assert "2 event(s)" in report.problems[0].message
    assert report.sealed  # the record of the loss is itself chained and signed: it cannot be cut out
    gap = [e for e in read_events([path]) if e.type == "audit.gap"]
    assert len(gap) == 1 and gap[0].attributes["lost"] == 2 and gap[0].reason == "write_failed"
    assert not prove([path], ProofScope(), public_key=key_file).proven
    runner_code, output = _cli("verify", "--public-key", str(key_file), str(path))
    assert runner_code == 1 and "lost" in output and "FAILED" in output


@pytest.mark.parametrize("keyed", [True, False], ids=["key", "no-key"])
async def test_events_lost_by_the_last_write_are_recorded_when_the_sink_closes(
    tmp_path: Path, key_file: Path, mode: str, monkeypatch: pytest.MonkeyPatch, keyed: bool
) -> None:
    """The disk fails for the last call before shutdown: closing the sink records the loss, so a
    head anchored after close (or the closing checkpoint) never vouches for a log missing them."""
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoint_key=key_file) if keyed else JsonlSink(path)
    demo = build_demo(audit=Auditor([sink]))
    real_write = os.write
    disk_full = False

    def write(fd: int, data: bytes) -> int:
        if disk_full and fd == sink._fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    async with Client(demo.server, mode=mode) as client:
        await client.call_tool("read_file", {"path": "a"})
        disk_full = True
        await client.call_tool("read_file", {"path": "b"})  # its decision and outcome are lost
    disk_full = False
    sink.close()
    assert sink.lost == 2
    key = key_file if keyed else None
    report = verify_chain([path], head=sink.head, public_key=key)
    assert [p.kind for p in report.problems] == ["lost"], report.problems
    assert "2 event(s)" in report.problems[0].message
    assert not prove([path], ProofScope(), head=sink.head, public_key=key).proven


def _cli(*args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from mcpgov.cli import main

    result = CliRunner().invoke(main, ["audit", *args])
    return result.exit_code, result.output


def test_events_a_full_queue_dropped_are_recorded_in_the_file_it_feeds(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    gate = threading.Event()

    class Slow(JsonlSink):
        def write_batch(self, events: Sequence[AuditEvent]) -> None:
            gate.wait(10)
            super().write_batch(events)

    queue = QueuedSink(Slow(path), maxsize=4, batch=2, linger=0.01)
    dropped = 0
    for event in make_events(20):
        try:
            queue(event)
        except AuditUnavailable:
            dropped += 1
    assert dropped == queue.dropped > 0
    gate.set()
    assert queue.flush(5.0)
    queue(make_events(1, start=99)[0])
    assert queue.close(5.0)
    report = verify_chain([path])
    assert [p.kind for p in report.problems] == ["lost"], report.problems
    gaps = [e for e in read_events([path]) if e.type == "audit.gap"]
    assert sum(e.attributes["lost"] for e in gaps) == dropped
    assert {e.reason for e in gaps} == {"queue_full"}
    assert report.events == 20 - dropped + 1 + len(gaps)


def test_a_sink_that_never_lost_an_event_writes_no_gap(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    queue = QueuedSink(JsonlSink(path), maxsize=100)
    for event in make_events(20):
        queue(event)
    assert queue.close(5.0)
    report = verify_chain([path])
    assert report.ok and report.events == 20


# --- secrets in URL-encoded text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "https://a/cb?next=https%3A%2F%2Fx%2Fy%3Faccess_token%3DZq8xK2mPv9%26q%3D1",
            "https://a/cb?next=https://x/y?access_token=[redacted]&q=1",
        ),
        ("x%3Dy%26token%253DZq8xK2mPv9", "x=y&token=[redacted]"),  # encoded twice
        ("u=postgres%3A%2F%2Fadmin%3AZq8xK2mPv9%40db", "u=postgres://[redacted]@db"),
        # Ordinary URL-encoded text is left as it is.
        ("file:///srv/annual%20report.txt", "file:///srv/annual%20report.txt"),
        ("100% sure, a%3Db", "100% sure, a%3Db"),
    ],
)
def test_url_encoded_secrets_are_redacted_and_other_encoded_text_kept(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


# --- a log rewritten by someone with write access but not the key ----------------------------------


def _rebuilt_without(path: Path, drop: str) -> None:
    """Rewrite a log as its writer's attacker could: drop lines, recompute every hash, drop checkpoints."""
    import rfc8785

    from mcpgov.audit._jsonl import GENESIS, line_hash

    prev, out = GENESIS, list[bytes]()
    for raw in path.read_bytes().splitlines():
        record = json.loads(raw)
        if "event" not in record or drop in raw.decode():
            continue
        seq = len(out) + 1
        body = rfc8785.dumps(record["event"])
        digest = line_hash(prev, seq, body)
        out.append(rfc8785.dumps({"event": record["event"], "hash": digest, "prev": prev, "seq": seq}) + b"\n")
        prev = digest
    path.write_bytes(b"".join(out))


def test_a_proof_needs_an_authenticated_log(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoint_key=key_file)
    ctx = GovContext(
        side="server", method="tools/call", kind="tool", target="deploy", task_id="t", tenant="acme", principal=OWNER
    )
    other = GovContext(
        side="server", method="tools/call", kind="tool", target="deploy", task_id="t", tenant="globex", principal=OWNER
    )
    sink.write_batch(
        [
            AuditEvent.from_context(ctx, "decision", effect="deny", rule="r"),
            AuditEvent.from_context(other, "decision", effect="allow", rule="cross-tenant"),
        ]
    )
    sink.close()
    head = sink.head
    assert not prove([path], ProofScope(task="t"), public_key=key_file).proven  # the cross-tenant call
    _rebuilt_without(path, "cross-tenant")
    assert verify_chain([path]).ok  # an intact chain: the hashes alone cannot tell
    unauthenticated = prove([path], ProofScope(task="t"))
    assert unauthenticated.chain.ok and all(v.holds for v in unauthenticated.verdicts)
    assert not unauthenticated.proven and not unauthenticated.authenticated
    assert not prove([path], ProofScope(task="t"), public_key=key_file).proven  # unsealed
    assert not prove([path], ProofScope(task="t"), head=head).proven  # another head
    code, output = _cli("prove", "--task", "t", str(path))
    assert code == 1 and "NOT AUTHENTICATED" in output and output.rstrip().endswith("NOT PROVEN")
    assert json.loads(_cli("prove", "--task", "t", "--format", "json", str(path))[1])["proven"] is False
    assert "NOT AUTHENTICATED" in _cli("prove", "--task", "t", "--format", "html", str(path))[1]


def test_a_log_anchored_by_its_head_can_prove_without_a_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    ctx = GovContext(
        side="server", method="tools/call", kind="tool", target="deploy", task_id="t", tenant="acme", principal=OWNER
    )
    sink.write_batch([AuditEvent.from_context(ctx, "decision", effect="deny", rule="r")])
    sink.close()
    proof = prove([path], ProofScope(task="t"), head=sink.head)
    assert proof.authenticated and proof.proven
    code, output = _cli("prove", "--task", "t", "--head", sink.head, str(path))
    assert code == 0 and output.rstrip().endswith("PROVEN") and "NOT AUTHENTICATED" not in output


def test_verify_without_a_key_or_head_says_it_checked_the_hash_chain_only(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoint_key=key_file)
    sink.write_batch(make_events(3))
    sink.close()
    code, output = _cli("verify", str(path))
    assert code == 0 and output.startswith("OK: ")
    assert "1 checkpoint(s) not checked" in output and "not authenticated" in output
    code, output = _cli("verify", "--public-key", str(key_file), str(path))
    assert code == 0 and "not authenticated" not in output and "closed" in output
    code, output = _cli("verify", "--head", sink.head, str(path))
    assert code == 0 and "not authenticated" not in output


# --- a live log cut back behind its writer's back -----------------------------------------------------


def _cut_to(path: Path, lines: int) -> None:
    keep = b"".join(path.read_bytes().splitlines(keepends=True)[:lines])
    with path.open("r+b") as f:  # in place: the writer's open file is the one cut
        f.truncate(len(keep))


@pytest.mark.parametrize("queued", [False, True])
def test_a_live_log_cut_back_is_recorded_by_its_writer_and_never_sealed_as_intact(
    tmp_path: Path, key_file: Path, queued: bool
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoint_key=key_file, checkpoint_every=2)
    sink.write_batch(make_events(5))  # 5 events and 2 checkpoints: 7 lines
    _cut_to(path, 3)  # the last 4 lines (2 events, a checkpoint, 1 event) removed
    if queued:
        queue = QueuedSink(sink)
        for event in make_events(2, start=5):
            queue(event)
        assert queue.close(5.0)
    else:
        sink.write_batch(make_events(2, start=5))
        sink.close()
    report = verify_chain([path], public_key=key_file)
    assert [(p.line, p.kind) for p in report.problems] == [(4, "lost")], report.problems
    assert "up to seq 7 cut back to seq 3" in report.problems[0].message
    assert report.sealed  # the record of the cut is itself signed by the next checkpoints
    assert rules(path)[-2:] == ["rule-5", "rule-6"]


@pytest.mark.parametrize("longer", [False, True])
def test_an_unsealed_last_line_rewritten_with_its_hash_recomputed_is_never_sealed_as_intact(
    tmp_path: Path, key_file: Path, longer: bool
) -> None:
    import rfc8785

    from mcpgov.audit._jsonl import line_hash

    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoint_key=key_file, checkpoint_every=100)
    sink.write_batch(make_events(2))  # no checkpoint yet: both lines unsealed
    lines = path.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[1])
    record["event"]["rule"] = "rule-XX" if longer else "rule-X"  # same length, or not
    body = rfc8785.dumps(record["event"])
    record["hash"] = line_hash(record["prev"], record["seq"], body)
    path.write_bytes(lines[0] + rfc8785.dumps(record) + b"\n")
    sink.write_batch(make_events(1, start=2))
    sink.close()
    report = verify_chain([path], public_key=key_file)
    assert not report.ok
    # Rewritten with another length, the writer notices and claims neither line; otherwise the
    # next line no longer chains to it.
    expected = ["lost", "unclaimed", "unclaimed"] if longer else ["inserted"]
    assert [p.kind for p in report.problems] == expected, report.problems


def test_other_writers_appending_and_rotating_are_never_taken_for_a_cut(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first, second = JsonlSink(path, max_bytes=4096), JsonlSink(path, max_bytes=4096)
    for i in range(40):
        (first if i % 3 else second).write_batch(make_events(1 + i % 4, start=i))
    first.close()
    second.close()
    files = sorted(tmp_path.glob("audit*.jsonl"))
    assert len(files) > 2
    report = verify_chain(files)
    assert report.ok, report.problems


def test_a_live_proof_does_not_vouch_for_lines_no_checkpoint_covers(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoint_key=key_file, checkpoint_every=2)
    ctx = GovContext(
        side="server", method="tools/call", kind="tool", target="deploy", task_id="t", tenant="acme", principal=OWNER
    )
    sink.write_batch([AuditEvent.from_context(ctx, "decision", effect="deny", rule="r")] * 2)  # then a checkpoint
    sealed = prove([path], ProofScope(task="t"), public_key=key_file, live=True)
    assert sealed.authenticated and sealed.proven
    sink.write_batch([AuditEvent.from_context(ctx, "decision", effect="deny", rule="r")])  # not covered yet
    tail = prove([path], ProofScope(task="t"), public_key=key_file, live=True)
    assert tail.chain.ok and not tail.authenticated and not tail.proven
    code, output = _cli("prove", "--task", "t", "--live", "--public-key", str(key_file), str(path))
    assert code == 1 and "1 line(s) after the last signed checkpoint" in output
    sink.close()
    assert prove([path], ProofScope(task="t"), public_key=key_file).proven


# --- properties: no change to a sealed, signed log goes unnoticed --------------------------------------

_SIGNED: dict[str, tuple[Path, Path, bytes]] = {}


def _signed_log() -> tuple[Path, Path, bytes]:
    """A sealed log written once (folder, key, bytes): events with escapes, numbers and non-ASCII."""
    if not _SIGNED:
        from click.testing import CliRunner

        from mcpgov.cli import main

        folder = Path(tempfile.mkdtemp())
        key = folder / "key.jwks"
        CliRunner().invoke(main, ["keys", "generate", "--out", str(key)])
        ctx = GovContext(side="server", method="tools/call", kind="tool", target="dé\u202eploy\n", tenant="acme")
        events = [
            AuditEvent.from_context(
                ctx, "decision", effect="allow", rule=f"r{i}", attributes={"x": 1.5, "n": i, "s": 'a"b\\c\u0001'}
            )
            for i in range(4)
        ]
        sink = JsonlSink(folder / "audit.jsonl", checkpoint_key=key, checkpoint_every=2)
        sink.write_batch(events)
        sink.close()
        _SIGNED["log"] = (folder, key, (folder / "audit.jsonl").read_bytes())
    return _SIGNED["log"]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_property_any_byte_or_line_change_to_a_signed_log_is_found(data: st.DataObject) -> None:
    folder, key, original = _signed_log()
    lines = original.splitlines(keepends=True)
    op = data.draw(st.sampled_from(["set", "delete", "insert", "cut", "drop", "dup", "swap", "crlf"]))
    at = data.draw(st.integers(0, len(original) - 1))
    line = data.draw(st.integers(0, len(lines) - 1))
    other = data.draw(st.integers(0, len(lines) - 1))
    if op == "set":
        changed = original[:at] + bytes([data.draw(st.integers(0, 255))]) + original[at + 1 :]
    elif op == "delete":
        changed = original[:at] + original[at + 1 :]
    elif op == "insert":
        changed = original[:at] + bytes([data.draw(st.integers(0, 255))]) + original[at:]
    elif op == "cut":
        changed = original[:at]
    elif op == "drop":
        changed = b"".join(lines[:line] + lines[line + 1 :])
    elif op == "dup":
        changed = b"".join(lines[: line + 1] + lines[line:])
    elif op == "swap":
        swapped = list(lines)
        swapped[line], swapped[other] = swapped[other], swapped[line]
        changed = b"".join(swapped)
    else:
        changed = original.replace(b"\n", b"\r\n", data.draw(st.integers(1, len(lines))))
    assume(changed != original)
    path = folder / "changed.jsonl"
    path.write_bytes(changed)
    report = verify_chain([path], public_key=key)
    assert not report.ok


# --- lines appended to a live log by someone without the key -------------------------------------------


def _append_forged(path: Path, event: dict[str, str]) -> None:
    """Append a line that continues the chain exactly as a writer would, without the key."""
    import rfc8785

    from mcpgov.audit._jsonl import line_hash

    last = json.loads(path.read_bytes().splitlines()[-1])
    seq = last["seq"] + 1
    body = rfc8785.dumps(event)
    digest = line_hash(last["hash"], seq, body)
    with path.open("ab") as f:
        f.write(rfc8785.dumps({"event": event, "hash": digest, "prev": last["hash"], "seq": seq}) + b"\n")


@pytest.mark.parametrize("queued", [False, True])
def test_lines_forged_into_a_live_log_are_never_vouched_for_by_its_writer(
    tmp_path: Path, key_file: Path, queued: bool
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoint_key=key_file, checkpoint_every=3)
    sink.write_batch(make_events(2))
    forged = {
        "id": "f1",
        "type": "approval.granted",
        "time": "2026-01-01T00:00:00+00:00",
        "side": "server",
        "method": "tools/call",
        "target": "deploy",
        "approver": "mallory",
        "schema_version": "1",
    }
    _append_forged(path, forged)  # the writer catches up and continues the chain after it
    if queued:
        queue = QueuedSink(sink)
        for event in make_events(4, start=2):
            queue(event)
        assert queue.close(5.0)
    else:
        sink.write_batch(make_events(4, start=2))
        sink.close()
    assert "mallory" in [e.approver for e in read_events([path])]
    report = verify_chain([path], public_key=key_file)
    assert [(p.line, p.kind) for p in report.problems] == [(3, "unclaimed")], report.problems
    assert not prove([path], ProofScope(), public_key=key_file).proven
    assert verify_chain([path]).ok  # the hash chain alone cannot tell


def test_several_writers_claim_each_others_lines_between_them(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = JsonlSink(path, checkpoint_key=key_file, checkpoint_every=4, max_bytes=4096)
    second = JsonlSink(path, checkpoint_key=key_file, checkpoint_every=5, max_bytes=4096)
    for i in range(60):
        (first if i % 3 else second).write_batch(make_events(1 + i % 4, start=i))
        if i == 30:
            live = verify_chain(sorted(tmp_path.glob("audit*.jsonl")), public_key=key_file, live=True)
            assert live.ok and live.unclaimed > 0  # each writer's newest lines await its next checkpoint
            names = [str(p) for p in sorted(tmp_path.glob("audit*.jsonl"))]
            code, output = _cli("verify", "--live", "--public-key", str(key_file), *names)
            assert code == 0 and f"{live.unclaimed} event line(s) no checkpoint claims yet" in output
    first.close()
    second.close()
    report = verify_chain(sorted(tmp_path.glob("audit*.jsonl")), public_key=key_file)
    assert report.ok and report.sealed and report.unclaimed == 0, report.problems


def test_a_writer_that_died_between_checkpoints_leaves_its_lines_unclaimed(tmp_path: Path, key_file: Path) -> None:
    path = tmp_path / "audit.jsonl"
    crashed = JsonlSink(path, checkpoint_key=key_file, checkpoint_every=100)
    crashed.write_batch(make_events(2))  # then the process dies: no checkpoint claims these
    resumed = JsonlSink(path, checkpoint_key=key_file)
    resumed.write_batch(make_events(1, start=2))
    resumed.close()
    report = verify_chain([path], public_key=key_file)
    assert [(p.line, p.kind) for p in report.problems] == [(1, "unclaimed"), (2, "unclaimed")]


def test_a_writers_unclaimed_lines_rewritten_and_extended_are_not_claimed(tmp_path: Path, key_file: Path) -> None:
    import rfc8785

    from mcpgov.audit._jsonl import line_hash

    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoint_key=key_file, checkpoint_every=100)
    sink.write_batch(make_events(3))  # no checkpoint yet: none of them claimed
    lines = path.read_bytes().splitlines(keepends=True)
    first = json.loads(lines[0])
    prev, out = first["hash"], [lines[0]]
    for raw in lines[1:]:  # rewrite lines 2 and 3 with their hashes recomputed, and add a line
        record = json.loads(raw)
        record["event"]["rule"] = "forged"
        record["prev"] = prev
        record["hash"] = prev = line_hash(prev, record["seq"], rfc8785.dumps(record["event"]))
        out.append(rfc8785.dumps(record) + b"\n")
    path.write_bytes(b"".join(out))
    _append_forged(path, {"id": "f", "type": "decision", "rule": "forged", "side": "server", "method": "x"})
    sink.write_batch(make_events(1, start=3))
    sink.close()
    report = verify_chain([path], public_key=key_file)
    kinds = [(p.line, p.kind) for p in report.problems]
    assert (5, "lost") in kinds  # the writer saw its own last line replaced
    assert {(2, "unclaimed"), (3, "unclaimed"), (4, "unclaimed")} <= set(kinds), kinds  # and vouches for none
