"""The audit log's files: the sink writes only a regular file of its own, never through a symbolic
link, a FIFO, a device or a file others may write (also for files a rotation creates), and readers
refuse what is not a regular file instead of hanging on it."""

from __future__ import annotations

import os
import stat
import sys
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from mcpgov import AuditEvent, ConfigurationError, GovContext
from mcpgov.audit import ChainReport, JsonlSink, read_events, verify_chain
from mcpgov.cli import main

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file semantics")

VICTIM = b""  # an empty file: nothing in it tells the sink it is not a fresh log


def events(n: int, *, start: int = 0) -> list[AuditEvent]:
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="deploy", tenant="acme")
    return [AuditEvent.from_context(ctx, "decision", effect="allow", rule=f"rule-{i}") for i in range(start, start + n)]


def finishes(action: Callable[[], object]) -> BaseException | None:
    """Run ``action`` in a thread; the exception it raised (``None`` if none). Fails if it hangs."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "hung on a file that is not a regular file"
    return caught[0] if caught else None


def plant(path: Path, kind: str, victim: Path) -> None:
    if kind == "symlink":
        path.symlink_to(victim)
    elif kind == "dangling-symlink":
        path.symlink_to(victim.with_name("not-yet-there"))
    elif kind == "relative-symlink":
        path.symlink_to(victim.name)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "hard-link":
        os.link(victim, path)
    elif kind == "group-writable":
        path.write_bytes(b"")
        path.chmod(0o620)
    elif kind == "world-writable":
        path.write_bytes(b"")
        path.chmod(0o602)
    else:  # pragma: no cover - the parameters name the kinds above
        raise AssertionError(kind)


KINDS = [
    "symlink",
    "dangling-symlink",
    "relative-symlink",
    "hard-link",
    "fifo",
    "directory",
    "group-writable",
    "world-writable",
]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    target = tmp_path / "victim.txt"
    target.write_bytes(VICTIM)
    return target


def untouched(tmp_path: Path, victim: Path) -> None:
    assert victim.read_bytes() == VICTIM
    assert not (tmp_path / "not-yet-there").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_the_sink_refuses_a_log_path_that_is_not_its_own_regular_file(tmp_path: Path, victim: Path, kind: str) -> None:
    path = tmp_path / "audit.jsonl"
    plant(path, kind, victim)
    error = finishes(lambda: JsonlSink(path))
    assert isinstance(error, ConfigurationError), error
    assert str(path) in str(error) and "refusing" in str(error)
    untouched(tmp_path, victim)


def test_the_sink_refuses_a_log_owned_by_another_user(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    JsonlSink(path).close()
    owner = path.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    with pytest.raises(ConfigurationError, match="another user") as caught:
        JsonlSink(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
def test_a_log_path_swapped_while_the_sink_runs_is_never_written_through(
    tmp_path: Path, victim: Path, kind: str
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    sink.write_batch(events(2))
    path.rename(tmp_path / "moved.jsonl")
    plant(path, kind, victim)
    for _ in range(2):
        error = finishes(lambda: sink.write_batch(events(1)))
        assert isinstance(error, OSError), error
    assert sink.lost == 2 and not sink.last_write_ok
    untouched(tmp_path, victim)
    assert [e.rule for e in read_events([tmp_path / "moved.jsonl"])] == ["rule-0", "rule-1"]


@pytest.mark.parametrize("kind", ["symlink", "dangling-symlink", "hard-link", "fifo"])
def test_the_file_a_rotation_creates_is_never_written_through_a_planted_path(
    tmp_path: Path, victim: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, max_bytes=4096)
    rename = os.replace

    def replace_then_plant(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        rename(src, dst)
        if Path(src) == path:  # the attacker wins the race between the rename and the new file
            plant(path, kind, victim)

    monkeypatch.setattr(os, "replace", replace_then_plant)
    written = 0
    while not sink.rotations:
        batch = events(5, start=written)
        error = finishes(lambda batch=batch: sink.write_batch(batch))  # type: ignore[misc]
        if error is not None:
            assert isinstance(error, OSError), error
            break
        written += 5
    assert sink.rotations == 1 and sink.lost == 5
    untouched(tmp_path, victim)
    (rotated,) = tmp_path.glob("audit.0*.jsonl")
    assert len(read_events([rotated])) == written


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_a_planted_rotated_file_is_refused_when_the_sink_resumes(tmp_path: Path, victim: Path, kind: str) -> None:
    path = tmp_path / "audit.jsonl"
    plant(tmp_path / "audit.000000000001.jsonl", kind, victim)
    error = finishes(lambda: JsonlSink(path))
    assert isinstance(error, ConfigurationError), error
    assert "audit.000000000001.jsonl" in str(error)
    untouched(tmp_path, victim)


def test_the_file_the_sink_creates_is_private_and_closed_on_exec(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    sink.write_batch(events(1))
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert sink._fd is not None and not os.get_inheritable(sink._fd)
    sink.close()


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_readers_refuse_what_is_not_a_regular_file(tmp_path: Path, victim: Path, kind: str) -> None:
    path = tmp_path / "audit.jsonl"
    plant(path, kind, victim)
    error = finishes(lambda: verify_chain([path]))
    assert isinstance(error, OSError) and "regular file" in str(error), error
    error = finishes(lambda: read_events([path]))
    assert isinstance(error, OSError) and "regular file" in str(error), error
    for command in ("verify", "show"):
        outcome: list[tuple[int, str]] = []

        def run(command: str = command, outcome: list[tuple[int, str]] = outcome) -> None:
            result = CliRunner().invoke(main, ["--no-color", "audit", command, str(path)])
            outcome.append((result.exit_code, result.output))

        assert finishes(run) is None
        code, out = outcome[0]
        assert code == 2 and ("not a regular file" in out or "is a directory" in out) and "Traceback" not in out, out


def test_readers_refuse_a_device_rather_than_read_it_forever(tmp_path: Path) -> None:
    error = finishes(lambda: verify_chain([Path("/dev/zero")]))
    assert isinstance(error, OSError) and "regular file" in str(error), error


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_a_checkpoint_key_that_is_not_a_small_regular_file_is_bad_input_not_a_hang(tmp_path: Path, kind: str) -> None:
    log = tmp_path / "audit.jsonl"
    JsonlSink(log).close()
    key = tmp_path / "key.jwks"
    if kind == "fifo":
        os.mkfifo(key)
    elif kind == "device":
        key = Path("/dev/zero")
    else:
        with key.open("wb") as f:  # sparse: a large file that costs no disk
            f.truncate(1 << 34)
    error = finishes(lambda: JsonlSink(tmp_path / "other.jsonl", checkpoint_key=key))
    assert isinstance(error, ConfigurationError) and str(key) in str(error), error
    outcome: list[tuple[int, str]] = []

    def run() -> None:
        result = CliRunner().invoke(main, ["--no-color", "audit", "verify", "--public-key", str(key), str(log)])
        outcome.append((result.exit_code, result.output))

    assert finishes(run) is None
    code, out = outcome[0]
    assert code == 2 and str(key) in out and "Traceback" not in out, out


@pytest.mark.parametrize("target", ["given-file", "symlink-to-it", "rotated-sibling"])
def test_prove_never_writes_its_report_over_an_audit_log(tmp_path: Path, target: str) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, max_bytes=4096)
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="deploy", task_id="t-1")
    while not sink.rotations:
        sink.write_batch([AuditEvent.from_context(ctx, "decision", effect="allow", rule="r")] * 5)
    sink.close()
    (rotated,) = tmp_path.glob("audit.0*.jsonl")
    out = {"given-file": path, "symlink-to-it": tmp_path / "report.txt", "rotated-sibling": rotated}[target]
    if target == "symlink-to-it":
        out.symlink_to(path)
    before = {p.name: p.read_bytes() for p in (path, rotated)}
    args = ["--no-color", "audit", "prove", "--task", "t-1", "--head", sink.head, "--out", str(out), str(path)]
    result = CliRunner().invoke(main, [*args[:-1], str(rotated), str(path)])
    assert result.exit_code == 2 and str(out) in result.output and "Traceback" not in result.output, result.output
    assert {p.name: p.read_bytes() for p in (path, rotated)} == before


JUNK = 128 * 1024 * 1024  # one line of NUL bytes, far past the longest line a log holds (16 MiB)


def peak_memory(action: Callable[[], object]) -> int:
    """The most memory ``action`` held at once (bytes, as traced by tracemalloc)."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def log_with_gap(path: Path) -> None:
    sink = JsonlSink(path, max_bytes=None)
    sink.write_batch(events(5))
    sink.close()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2] + lines[3:]))  # a deleted line: verify names it


@pytest.mark.parametrize("where", ["end", "start", "middle"])
def test_a_huge_junk_line_is_never_held_whole_by_verify_or_the_sink(tmp_path: Path, where: str) -> None:
    path = tmp_path / "audit.jsonl"
    log_with_gap(path)
    data = path.read_bytes()
    with path.open("wb") as f:  # the junk is a sparse hole: it costs no disk
        if where == "end":
            f.write(data)
            f.truncate(len(data) + JUNK)
        elif where == "start":
            f.seek(JUNK)
            f.write(b"\n" + data)
        else:
            first, rest = data.split(b"\n", 1)
            f.write(first + b"\n")
            f.seek(len(first) + 1 + JUNK)
            f.write(b"\n" + rest)
    report: list[object] = []
    assert peak_memory(lambda: report.append(verify_chain([path]))) < JUNK // 2
    assert isinstance(report[0], ChainReport) and not report[0].ok
    assert "line longer than" in str(report[0].problems)
    sinks: list[JsonlSink] = []
    assert peak_memory(lambda: sinks.append(JsonlSink(path, max_bytes=None))) < JUNK // 2
    sinks[0].write_batch(events(1, start=9))
    sinks[0].close()
    assert [e.rule for e in read_events([path])][-1] == "rule-9"
