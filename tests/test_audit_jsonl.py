"""The hash-chained JSON Lines log: canonical lines, rotation, resuming, and detection of every kind
of tampering (edited, deleted, inserted, reordered, truncated), naming the file and line."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client

from mcpgov import AuditEvent, Auditor, ConfigurationError, GovContext
from mcpgov.audit import JsonlSink, QueuedSink, prove, read_events, verify_chain
from mcpgov.audit._jsonl import GENESIS, line_hash
from mcpgov.cli import main
from tests.conftest import build_demo

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jsonl-keys") / "audit.jwks"
    assert CliRunner().invoke(main, ["keys", "generate", "--out", str(path)]).exit_code == 0
    return path


def make_events(n: int, *, target: str = "read_file") -> list[AuditEvent]:
    ctx = GovContext(side="server", method="tools/call", kind="tool", target=target, task_id="t-1", tenant="acme")
    return [AuditEvent.from_context(ctx, "decision", effect="allow", rule=f"rule-{i}") for i in range(n)]


def write_log(path: Path, n: int, **kwargs: int | None) -> JsonlSink:
    sink = JsonlSink(path, **kwargs)  # type: ignore[arg-type]
    for event in make_events(n):
        sink(event)
    sink.close()
    return sink


def kinds(paths: Sequence[Path], **kwargs: object) -> list[tuple[str, int, str]]:
    report = verify_chain(paths, **kwargs)  # type: ignore[arg-type]
    return [(Path(p.file).name, p.line, p.kind) for p in report.problems]


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


async def test_session_events_form_a_verifiable_chain_of_canonical_lines(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    demo = build_demo(audit=Auditor([sink]))
    async with Client(demo.server, mode=mode) as client:
        await client.call_tool("read_file", {"path": "a"})
        await client.call_tool("explode", {})
    lines = path.read_bytes().splitlines()
    assert len(lines) == sink.seq >= 4
    for number, raw in enumerate(lines, 1):
        record = json.loads(raw)
        assert rfc8785.dumps(record) == raw  # every line is itself canonical JSON
        assert record["seq"] == number
        assert record["hash"] == line_hash(record["prev"], number, rfc8785.dumps(record["event"]))
    assert json.loads(lines[0])["prev"] == GENESIS
    report = verify_chain([path])
    assert report.ok and report.head == sink.head and report.last_seq == sink.seq
    events = read_events([path])
    assert [e.type for e in events if e.target == "read_file"] == ["decision", "outcome"]


def test_an_edited_line_is_detected_and_located(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 6)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"allow"', b'"deny"')
    rewrite(path, lines)
    assert kinds([path]) == [("audit.jsonl", 3, "edited")]


def test_a_deleted_line_is_detected_and_located(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 6)
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[3]
    rewrite(path, lines)
    report = verify_chain([path])
    assert [(p.line, p.kind) for p in report.problems] == [(4, "deleted")]
    assert "1 line missing before this line (seq 4)" in str(report.problems[0])


def test_an_inserted_copy_of_a_line_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 6)
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(4, lines[1])
    rewrite(path, lines)
    problems = kinds([path])
    assert problems[0] == ("audit.jsonl", 5, "inserted")


def test_a_forged_line_with_a_correct_hash_is_detected_at_the_next_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 6)
    lines = path.read_bytes().splitlines(keepends=True)
    before = json.loads(lines[2])
    forged_event = dict(json.loads(lines[3])["event"], effect="allow", rule="forged")
    seq = before["seq"] + 1
    forged_hash = line_hash(before["hash"], seq, rfc8785.dumps(forged_event))
    forged = {"event": forged_event, "hash": forged_hash, "prev": before["hash"], "seq": seq}
    lines.insert(3, rfc8785.dumps(forged) + b"\n")
    rewrite(path, lines)
    assert kinds([path]) == [("audit.jsonl", 5, "inserted")]


def test_reordered_lines_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 6)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    rewrite(path, lines)
    found = kinds([path])
    assert found[0] == ("audit.jsonl", 3, "reordered")
    assert {k for _, _, k in found} == {"reordered"}


def test_a_deleted_first_line_and_a_torn_line_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 4)
    lines = path.read_bytes().splitlines(keepends=True)
    rewrite(path, [*lines[1:3], lines[3][:20] + b"\n"])
    assert kinds([path]) == [("audit.jsonl", 1, "start"), ("audit.jsonl", 3, "malformed")]
    # An archive that legitimately starts mid-chain verifies with partial=True.
    rewrite(path, lines[1:])
    assert verify_chain([path], partial=True).ok


def test_truncation_is_detected_against_an_anchored_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = write_log(path, 5)
    lines = path.read_bytes().splitlines(keepends=True)
    rewrite(path, lines[:-1])
    assert verify_chain([path]).ok  # a shorter chain is still a chain...
    assert kinds([path], head=sink.head) == [("audit.jsonl", 4, "truncated")]  # ...but not the anchored one


def test_chain_continues_across_rotation_and_a_missing_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, max_bytes=4096)
    for event in make_events(60):
        sink(event)
    sink.close()
    files = sorted(tmp_path.iterdir())
    assert len(files) >= 4 and sink.rotations == len(files) - 1
    # Any order on the command line: files are put in chain order.
    report = verify_chain(list(reversed(files)))
    assert report.ok and report.lines == 60 and report.head == sink.head
    middle = files[1]
    first_seq_after = json.loads(files[2].read_bytes().splitlines()[0])["seq"]
    remaining = [f for f in files if f != middle]
    problems = verify_chain(remaining).problems
    assert [(Path(p.file).name, p.line, p.kind) for p in problems] == [(files[2].name, 1, "deleted")]
    assert f"before this line (seq {json.loads(middle.read_bytes().splitlines()[0])['seq']}.." in problems[0].message
    assert first_seq_after > 1
    # An edit inside a rotated file names that file.
    lines = files[1].read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b"rule-", b"RULE-")
    rewrite(files[1], lines)
    assert kinds(files) == [(files[1].name, 1, "edited")]


def test_reopening_a_log_continues_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = write_log(path, 3)
    second = JsonlSink(path)
    assert (second.seq, second.head) == (first.seq, first.head)
    second(make_events(1)[0])
    second.close()
    assert verify_chain([path]).ok and verify_chain([path]).last_seq == 4


def test_reopening_after_a_torn_write_continues_after_the_last_good_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    with path.open("ab") as f:
        f.write(b'{"event":{"id":"half')  # a crash mid-line
    sink = JsonlSink(path)
    assert sink.seq == 3
    sink(make_events(1)[0])
    sink.close()
    # The torn fragment and the next line share a physical line: reported once, chain otherwise intact.
    assert [k for _, _, k in kinds([path])] == ["malformed"]


def test_reopening_right_after_rotation_continues_from_the_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = write_log(path, 3)
    (path.with_name("audit.000000000001.jsonl")).write_bytes(path.read_bytes())
    path.unlink()
    resumed = JsonlSink(path)
    assert (resumed.seq, resumed.head) == (sink.seq, sink.head)
    resumed(make_events(1)[0])
    resumed.close()
    assert verify_chain(sorted(tmp_path.iterdir())).ok


def test_a_failed_write_leaves_the_chain_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = write_log(path, 2)
    sink.close()
    path.unlink()
    path.mkdir()
    with pytest.raises(OSError, match="not a regular file"):
        sink(make_events(1)[0])
    assert sink.seq == 2 and not sink.last_write_ok


def test_jsonl_configuration_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        JsonlSink(tmp_path / "a.jsonl", max_bytes=10)


async def test_queued_file_sink_receives_batches_and_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    file_sink = JsonlSink(path)
    queue = QueuedSink(file_sink, batch=64)
    auditor = Auditor([queue])
    for event in make_events(500):
        await auditor.emit(event)
    assert await auditor.aclose()
    assert queue.delivered == file_sink.written == 500
    assert verify_chain([path]).ok


_MUTATIONS = st.sampled_from(["edit", "delete", "duplicate", "swap", "garbage"])


@settings(max_examples=60, deadline=None)
@given(mutation=_MUTATIONS, index=st.integers(min_value=0, max_value=7), data=st.data())
def test_any_single_tampering_is_detected(mutation: str, index: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.jsonl"
        head = write_log(path, 8).head
        lines = path.read_bytes().splitlines(keepends=True)
        if mutation == "edit":
            record = json.loads(lines[index])
            record["event"]["rule"] = data.draw(st.text(min_size=1).filter(lambda r: r != record["event"]["rule"]))
            lines[index] = json.dumps(record).encode() + b"\n"
        elif mutation == "delete":
            del lines[index]
        elif mutation == "duplicate":
            lines.insert(data.draw(st.integers(min_value=0, max_value=8)), lines[index])
        elif mutation == "swap":
            other = data.draw(st.integers(min_value=0, max_value=7).filter(lambda o: o != index))
            lines[index], lines[other] = lines[other], lines[index]
        else:
            lines.insert(index, b"not a chain line\n")
        rewrite(path, lines)
        # The operator kept the head as an anchor: removing the last line is caught by it.
        assert not verify_chain([path], head=head).ok


async def test_an_event_whose_keys_are_not_utf8_is_written_and_verifies(tmp_path: Path) -> None:
    """An attribute key holding a lone surrogate (text no UTF-8 file can hold) is written with the
    surrogate escaped, like such a value: the event is not lost."""
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    auditor = Auditor([sink])
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="store", tenant="acme")
    odd = AuditEvent.from_context(ctx, "outcome", outcome="completed", attributes={"\ud800key": {"x\udc00": 1}})
    for event in (*make_events(1), odd, *make_events(1)):
        await auditor.emit(event)
    sink.close()
    assert auditor.sink_failures == 0 and sink.lost == 0
    assert verify_chain([path]).ok
    assert [e.type for e in read_events([path])] == ["decision", "outcome", "decision"]


@pytest.mark.parametrize("failure", [ValueError("the signing key is unavailable"), KeyboardInterrupt()])
def test_a_write_failing_with_anything_is_recorded_as_lost_in_the_log(
    tmp_path: Path, key_file: Path, failure: BaseException
) -> None:
    """Not only a full disk: a batch that fails for any reason (its checkpoint cannot be signed, an
    interrupt) leaves nothing of it in the file and is recorded as lost before the next line."""
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoint_key=key_file, checkpoint_every=3)
    sink.write_batch(make_events(1))
    signer = sink._signer
    assert signer is not None
    sign = signer.sign

    def broken(payload: object) -> str:
        raise failure

    signer.sign = broken  # type: ignore[method-assign]
    with pytest.raises(type(failure)):
        sink.write_batch(make_events(4))  # a checkpoint falls due within the batch
    signer.sign = sign  # type: ignore[method-assign]
    sink.write_batch(make_events(1))
    sink.close()
    assert sink.lost == 4
    report = verify_chain([path], public_key=key_file)
    assert [p.kind for p in report.problems] == ["lost"] and "4 event(s)" in report.problems[0].message
    assert [e.type for e in read_events([path])] == ["decision", "audit.gap", "decision"]


@pytest.mark.parametrize("writers", [1, 2])
@pytest.mark.parametrize("cut", [1, 4, 9, 17])
def test_lines_cut_from_the_start_of_the_active_file_are_found_with_partial_and_a_key(
    tmp_path: Path, key_file: Path, cut: int, writers: int
) -> None:
    """The active file's name says nothing of its first line, but every checkpoint in it signs
    the seq its file begins at: its first lines cut (its first checkpoints with them, or not)
    are found with --partial and the key, by every writer's checkpoints, and nothing is proven."""
    path = tmp_path / "audit.jsonl"
    sinks = [JsonlSink(path, max_bytes=32768, checkpoint_key=key_file, checkpoint_every=5) for _ in range(writers)]
    written = 0
    # Until a rotation happened and the active file holds enough lines to cut from.
    while not (any(p != path for p in tmp_path.iterdir()) and len(path.read_bytes().splitlines()) >= 24):
        sinks[written % writers](make_events(1)[0])
        written += 1
        assert written < 1000
    for sink in sinks:
        sink.close()
    assert any(p != path for p in tmp_path.iterdir())  # rotated: the active file begins mid-chain
    assert verify_chain([path], partial=True, public_key=key_file).ok
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) > cut + 2
    rewrite(path, lines[cut:])
    assert ("audit.jsonl", 1, "deleted") in kinds([path], partial=True, public_key=key_file)
    assert not prove([path], partial=True, public_key=key_file).proven
    result = CliRunner().invoke(main, ["audit", "verify", "--partial", "--public-key", str(key_file), str(path)])
    assert result.exit_code == 1 and "lines were cut from its start" in result.output


def _payload(token: str) -> dict[str, object]:
    import base64

    body = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


def test_a_checkpoint_naming_no_file_start_still_verifies(tmp_path: Path, key_file: Path) -> None:
    """Checkpoints signed before they named their file's start verify as they did."""
    from mcpgov.audit._checkpoint import CheckpointSigner

    path = tmp_path / "audit.jsonl"
    sign = CheckpointSigner.sign

    def without_start(self: CheckpointSigner, payload: Mapping[str, Any]) -> str:
        return sign(self, {k: v for k, v in payload.items() if k != "file_first"})

    CheckpointSigner.sign = without_start  # type: ignore[method-assign]
    try:
        sink = JsonlSink(path, checkpoint_key=key_file, checkpoint_every=3)
        sink.write_batch(make_events(7))
        sink.close()
    finally:
        CheckpointSigner.sign = sign  # type: ignore[method-assign]
    signed = [json.loads(line)["checkpoint"] for line in path.read_text().splitlines() if '"checkpoint"' in line]
    assert signed and all("file_first" not in _payload(token) for token in signed)
    report = verify_chain([path], partial=True, public_key=key_file)
    assert report.ok and report.sealed


@pytest.mark.parametrize("cut", [1, 3])
def test_lines_cut_from_the_start_of_the_first_file_given_are_found_with_partial(
    tmp_path: Path, key_file: Path, cut: int
) -> None:
    """--partial accepts older files archived, not lines cut from a file: a rotated file is named
    for its first line, so its first lines removed are found, signed log or not."""
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, max_bytes=4096, checkpoint_key=key_file, checkpoint_every=5)
    for event in make_events(60):
        sink(event)
    sink.close()
    rotated = sorted(p for p in tmp_path.iterdir() if p != path)
    assert len(rotated) >= 3
    kept = [*rotated[1:], path]  # the oldest file was archived
    assert verify_chain(kept, partial=True, public_key=key_file).ok
    lines = rotated[1].read_bytes().splitlines(keepends=True)
    rewrite(rotated[1], lines[cut:])
    for key in (key_file, None):
        found = kinds(kept, partial=True, public_key=key)
        assert (rotated[1].name, 1, "deleted") in found, found
    assert not prove(kept, partial=True, public_key=key_file).proven


@pytest.mark.parametrize("first", [0, -1, "1", 1.5, True, None, 99])
def test_a_checkpoint_naming_its_file_start_in_another_form_is_refused(key_file: Path, first: object) -> None:
    """A signed ``file_first`` that is not a seq at or before the checkpoint's own refuses the
    checkpoint (what cannot be read proves nothing)."""
    from mcpgov.audit._checkpoint import CheckpointSigner

    signer = CheckpointSigner(key_file)
    payload = {"events": 1, "file_first": first, "lines": [[1, 1]], "prev": "sha256:x", "reason": "count"}
    payload.update(seq=2, time="2026-01-01T00:00:00+00:00", writer="w")
    with pytest.raises(ValueError, match="file's start"):
        signer.public_keys().check(signer.sign(payload))
    assert signer.public_keys().check(signer.sign({**payload, "file_first": 2}))["file_first"] == 2
