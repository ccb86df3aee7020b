"""A trail that cannot lie: byte-exact lines, signed checkpoints (truncation, deleted files and
rebuilt chains found without an anchor), several writer processes on one chain, and output that
a client-chosen name cannot forge."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import rfc8785
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import AuditEvent, Auditor, Decision, GovContext, Hooks, govern
from mcpgov.audit import JsonlSink, QueuedSink, read_events, verify_chain
from mcpgov.audit._codec import event_to_dict
from mcpgov.audit._jsonl import encode_event, line_hash
from mcpgov.cli import main

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint key as ``mcpgov keys generate`` writes it, its public JWKS, and a stranger's key."""
    where = tmp_path_factory.mktemp("keys")
    runner = CliRunner()
    for name in ("signer", "stranger"):
        result = runner.invoke(main, ["keys", "generate", "--out", str(where / f"{name}.jwks")])
        assert result.exit_code == 0, result.output
    public = runner.invoke(main, ["keys", "jwks", str(where / "signer.jwks")])
    assert public.exit_code == 0
    (where / "signer.pub.jwks").write_text(public.output)
    return where


def events(n: int, *, target: str = "deploy", tenant: str = "acme") -> list[AuditEvent]:
    ctx = GovContext(side="server", method="tools/call", kind="tool", target=target, task_id="t-1", tenant=tenant)
    out = []
    for i in range(n):
        effect = "deny" if i % 3 == 0 else "allow"
        out.append(AuditEvent.from_context(ctx, "decision", effect=effect, rule=f"rule-{i}", detail="é ünïcode"))
    return out


def write(path: Path, n: int, **kwargs: object) -> JsonlSink:
    sink = JsonlSink(path, **kwargs)  # type: ignore[arg-type]
    sink.write_batch(events(n))
    sink.close()
    return sink


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--no-color", *args])
    return result.exit_code, result.output


# --- byte-exact lines ------------------------------------------------------------------------------


def _respell(raw: bytes, how: str) -> bytes:
    """The same JSON data (or, for a duplicate key, what readers keeping the first key see
    differently), spelled differently."""
    text = raw.decode("utf-8").rstrip("\n")
    if how == "duplicate":
        return text.replace('"effect":"deny"', '"effect":"allow","effect":"deny"', 1).encode() + b"\n"
    if how == "space":
        return text.replace('":', '": ', 1).encode() + b"\n"
    if how == "escape":
        return text.replace('"deploy"', '"d\\u0065ploy"', 1).encode() + b"\n"
    if how == "ascii":
        return json.dumps(json.loads(text), ensure_ascii=True, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    if how == "order":
        record = json.loads(text)
        record["event"] = dict(reversed(list(record["event"].items())))
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    if how == "crlf":
        return text.encode() + b"\r\n"
    raise AssertionError(how)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(line=st.integers(1, 7), how=st.sampled_from(["space", "escape", "ascii", "order", "crlf"]))
def test_a_line_whose_bytes_differ_from_the_canonical_encoding_is_tampered(tmp_path: Path, line: int, how: str) -> None:
    path = tmp_path / f"log-{line}-{how}.jsonl"
    write(path, 7)
    lines = path.read_bytes().splitlines(keepends=True)
    changed = _respell(lines[line - 1], how)
    assert json.loads(changed) == json.loads(lines[line - 1])  # same data: the old verify accepted it
    lines[line - 1] = changed
    path.write_bytes(b"".join(lines))
    report = verify_chain([path])
    assert [(p.line, p.kind) for p in report.problems] == [(line, "noncanonical")]
    code, out = cli("audit", "verify", str(path))
    assert code == 1 and f"{path}:{line}: noncanonical" in out


def test_an_injected_duplicate_key_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 4)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[0] = _respell(lines[0], "duplicate")  # readers keeping the first key would see "allow"
    path.write_bytes(b"".join(lines))
    (problem,) = verify_chain([path]).problems
    assert (problem.line, problem.kind) == (1, "duplicate_key") and '"effect"' in problem.message
    code, out = cli("audit", "verify", str(path))
    assert code == 1 and f"{path}:1: duplicate_key" in out


def test_an_empty_log_does_not_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    assert [p.kind for p in verify_chain([path]).problems] == ["empty"]
    assert cli("audit", "verify", str(path))[0] == 1


def test_a_line_cut_short_is_reported_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 3)
    data = path.read_bytes()
    path.write_bytes(data[:-1])  # the last line loses its line end
    assert [(p.line, p.kind) for p in verify_chain([path]).problems] == [(3, "torn")]
    path.write_bytes(data[:-40])  # and now its middle
    code, out = cli("audit", "verify", str(path))
    assert code == 1 and f"{path}:3: malformed" in out and "Traceback" not in out


@pytest.mark.parametrize(
    "content",
    [b"\x00\xff\xfe garbage\n", b"[" * 100000 + b"\n", b'{"not": "a chain line"}\n', b"plain text\n"],
    ids=["binary", "deep", "foreign-json", "text"],
)
def test_foreign_and_hostile_files_are_bad_input_with_file_and_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "foreign.jsonl"
    path.write_bytes(content)
    for command in ("verify", "show"):
        code, out = cli("audit", command, str(path))
        assert code == 2, out
        assert str(path) in out and "line 1" in out and "Traceback" not in out


_ZEROS = b'"sha256:' + b"0" * 64 + b'"'
_TAIL = b',"hash":' + _ZEROS + b',"prev":' + _ZEROS + b',"seq":3}\n'
HOSTILE_LINES = {
    "nul": b'{"event":{"a":"\x00"},"hash":' + _ZEROS + b',"prev":' + _ZEROS + b',"seq":3}\n',
    "invalid-utf8": b'{"event":{"target":"\xff\xfe"},"hash":' + _ZEROS + b',"prev":' + _ZEROS + b',"seq":3}\n',
    "raw-escapes": b'\x1b[2J\x1b]0;owned\x07{"event":{}}\n',
    "overlong": b'{"event":{"a":"' + b"A" * (16 * 1024 * 1024 + 1) + b'"}}\n',
    "overlong-unended": b"A" * (17 * 1024 * 1024),
    "deep-event": b'{"event":'
    + b'{"a":' * 900
    + b"1"
    + b"}" * 900
    + b',"hash":'
    + _ZEROS
    + b',"prev":'
    + _ZEROS
    + b',"seq":3}\n',
    "deep-attributes": b'{"event":{"attributes":{"a":'
    + b"[" * 900
    + b"]" * 900
    + b'},"id":"x","time":"2026-01-01T00:00:00+00:00",'
    b'"type":"decision"},"hash":' + _ZEROS + b',"prev":' + _ZEROS + b',"seq":3}\n',
    "huge-integer": b'{"event":{"a":' + b"9" * 5000 + b'},"hash":' + _ZEROS + b',"prev":' + _ZEROS + b',"seq":3}\n',
    "escaped-controls": b'{"event":{"target":"\\ud800\\u001b[31m\\u202e","task_id":"t-1","type":"decision"},"hash":'
    + _ZEROS
    + b',"prev":'
    + _ZEROS
    + b',"seq":3}\n',
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE_LINES))
def test_a_hostile_line_inside_a_log_is_reported_and_printed_safely(tmp_path: Path, hostile: str) -> None:
    """verify, show and prove, on a real log with one hostile line among its lines: a clear
    result, never a traceback, and output (styles aside) without any control or format character."""
    path = tmp_path / "audit.jsonl"
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="dep\x1b[31mloy", task_id="t-1")
    sink = JsonlSink(path)
    sink.write_batch([AuditEvent.from_context(ctx, "decision", effect="allow", rule=f"r{i}\u202e") for i in range(2)])
    sink.close()
    with path.open("ab") as f:
        f.write(HOSTILE_LINES[hostile])
    for command, codes in (
        (["verify"], {1}),
        (["show"], {0}),
        (["show", "--task", "t-1"], {0}),
        (["prove", "--task", "t-1"], {1}),
    ):
        result = CliRunner().invoke(main, ["audit", *command, str(path)], color=True)
        assert result.exit_code in codes and not isinstance(result.exception, Exception), (command, result.output)
        text = re.sub(r"\x1b\[[0-9;]*m", "", result.output)  # the styles click adds
        assert all(ch.isprintable() or ch == "\n" for ch in text), (command, text)


def test_the_fast_encoder_writes_the_rfc8785_bytes_of_events() -> None:
    """The C-encoder path is taken for usual events; its bytes are the rfc8785 library's."""
    ctx = GovContext(side="client", method="tools/call", kind="tool", target="x\u2028\U0001f600\x07")
    for event in (
        AuditEvent.from_context(ctx, "outcome", outcome="completed", latency_ms=1.5),
        AuditEvent.from_context(ctx, "outcome", outcome="completed", latency_ms=3.0),
        AuditEvent.from_context(ctx, "decision", attributes={"n": 2**60, "f": 1e-9, "\U0001f600": [1.0, "\ud800"]}),
    ):
        assert encode_event(event) == rfc8785.dumps(json.loads(json.dumps(event_to_dict(event))))


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(st.characters(exclude_categories=()), max_size=30),  # surrogates and controls included
    number=st.one_of(st.integers(-(2**60), 2**60), st.floats(allow_nan=False, allow_infinity=False)),
    attributes=st.dictionaries(
        st.text(max_size=5),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(-1e20, 1e20), st.text()),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
            max_leaves=6,
        ),
        max_size=3,
    ),
)
def test_encode_event_equals_canonical_json_of_the_event(
    text: str, number: float, attributes: dict[str, object]
) -> None:
    from mcpgov.audit._jsonl import _content, canonical_event

    ctx = GovContext(side="server", method="tools/call", target=text, purpose=text)
    event = AuditEvent.from_context(ctx, "outcome", latency_ms=number, attributes=attributes, actors=(text,))
    body = encode_event(event)
    assert body == canonical_event(event_to_dict(event))
    # What verification recomputes from the parsed line is the same canonical form.
    parsed = json.loads(body)
    assert _content({"event": parsed}) == body


# --- signed checkpoints -----------------------------------------------------------------------------


def test_checkpoints_every_n_events_and_at_close_verify_with_the_keys_generate_file(
    tmp_path: Path, key_dir: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = write(path, 25, checkpoint_key=key_dir / "signer.jwks", checkpoint_every=10)
    assert sink.checkpoints == 3  # after events 10 and 20, and at close
    for key in ("signer.jwks", "signer.pub.jwks"):
        report = verify_chain([path], public_key=key_dir / key)
        assert report.ok and report.sealed and report.checkpoints == 3 and report.events == 25
        code, out = cli("audit", "verify", "--public-key", str(key_dir / key), str(path))
        assert code == 0 and "3 signed checkpoint(s), closed" in out
    assert [e.rule for e in read_events([path])][:2] == ["rule-0", "rule-1"]


def test_a_checkpoint_is_written_after_the_interval_by_the_queue_worker(tmp_path: Path, key_dir: Path) -> None:
    clock = [0.0]
    sink = JsonlSink(tmp_path / "a.jsonl", checkpoint_key=key_dir / "signer.jwks", clock=lambda: clock[0])
    queue = QueuedSink(sink, linger=0.001)
    for event in events(3):
        queue(event)
    assert queue.flush(5)
    assert sink.checkpoints == 0
    clock[0] = 61.0
    deadline = time.monotonic() + 5
    while sink.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sink.checkpoints == 1  # the idle worker's tick wrote it, no event needed
    queue.close(5)
    assert verify_chain([tmp_path / "a.jsonl"], public_key=key_dir / "signer.pub.jwks").sealed


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(cut=st.integers(1, 30))
def test_truncation_is_detected_without_an_anchor(tmp_path: Path, key_dir: Path, cut: int) -> None:
    path = tmp_path / f"cut-{cut}.jsonl"
    write(path, 27, checkpoint_key=key_dir / "signer.jwks", checkpoint_every=5)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-cut]))
    assert verify_chain([path]).ok  # without the key, a shorter chain is still a chain...
    report = verify_chain([path], public_key=key_dir / "signer.pub.jwks")
    kinds = [p.kind for p in report.problems]  # ...with it, it is not the whole log
    assert kinds in (["truncated"], ["unsealed"])  # cut after the last checkpoint, or before the first
    assert cli("audit", "verify", "--public-key", str(key_dir / "signer.pub.jwks"), str(path))[0] == 1


def test_a_deleted_file_is_detected(tmp_path: Path, key_dir: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, max_bytes=4096, checkpoint_key=key_dir / "signer.jwks")
    for _ in range(6):
        sink.write_batch(events(6))
    sink.close()
    files = sorted(tmp_path.glob("audit*.jsonl"))
    assert len(files) >= 3 and sink.rotations >= 2
    assert verify_chain(files, public_key=key_dir / "signer.jwks").ok
    # The active (last) file is deleted: the previous one ends with its rotation checkpoint.
    rest = [f for f in files if f != path]
    assert [p.kind for p in verify_chain(rest, public_key=key_dir / "signer.jwks").problems] == ["missing_file"]
    # A middle file is deleted.
    middle = [f for f in files if f != rest[1]]
    assert "deleted" in [p.kind for p in verify_chain(middle, public_key=key_dir / "signer.jwks").problems]
    # The first file is deleted.
    assert "start" in [p.kind for p in verify_chain(files[1:], public_key=key_dir / "signer.jwks").problems]


def _rebuild(lines: list[bytes], keep_checkpoints: bool) -> list[bytes]:
    """Rewrite a chain as an attacker without the key would: every hash recomputed."""
    out: list[bytes] = []
    prev, seq = "sha256:" + "0" * 64, 0
    for raw in lines:
        record = json.loads(raw)
        if "checkpoint" in record and not keep_checkpoints:
            continue
        seq += 1
        if "event" in record:
            event = record["event"]
            if event.get("effect") == "deny":
                event["effect"] = "allow"
            body = rfc8785.dumps(event)
        else:
            body = rfc8785.dumps({"checkpoint": record["checkpoint"]})
        digest = line_hash(prev, seq, body)
        key = "event" if "event" in record else "checkpoint"
        out.append(rfc8785.dumps({key: record[key], "hash": digest, "prev": prev, "seq": seq}) + b"\n")
        prev = digest
    return out


@pytest.mark.parametrize("keep_checkpoints", [True, False])
def test_a_rebuilt_chain_is_detected(tmp_path: Path, key_dir: Path, keep_checkpoints: bool) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 12, checkpoint_key=key_dir / "signer.jwks", checkpoint_every=4)
    path.write_bytes(b"".join(_rebuild(path.read_bytes().splitlines(), keep_checkpoints)))
    assert verify_chain([path]).ok  # the hashes are all consistent...
    problems = verify_chain([path], public_key=key_dir / "signer.pub.jwks").problems
    assert problems  # ...but the signatures are not
    kinds = {p.kind for p in problems}
    assert kinds == ({"checkpoint", "unsealed"} if keep_checkpoints else {"unsealed"})


def _relink(lines: list[bytes]) -> list[bytes]:
    """``lines`` with every hash and ``seq`` recomputed after the first line (checkpoints kept as they are)."""
    out = [lines[0]]
    first = json.loads(lines[0])
    prev, seq = first["hash"], first["seq"]
    for raw in lines[1:]:
        record = json.loads(raw)
        key = "event" if "event" in record else "checkpoint"
        seq += 1
        digest = line_hash(
            prev, seq, rfc8785.dumps({"checkpoint": record[key]} if key == "checkpoint" else record[key])
        )
        out.append(rfc8785.dumps({key: record[key], "hash": digest, "prev": prev, "seq": seq}) + b"\n")
        prev = digest
    return out


@pytest.mark.parametrize("splice", ["same-seq", "relinked", "empty-log-first", "rotated-file"])
def test_a_checkpoint_never_vouches_for_another_log_signed_with_the_same_key(
    tmp_path: Path, key_dir: Path, splice: str
) -> None:
    """A signed checkpoint commits to the hash of the line before it, so to every line back to
    the log's first: moved into another log written with the same key (at the same seq, with the
    chain after it relinked, as another log's first line, or as a whole rotated file), it is
    refused, and the other log's own lines are not vouched for by it."""
    key = key_dir / "signer.jwks"
    a, b = tmp_path / "a" / "audit.jsonl", tmp_path / "b" / "audit.jsonl"
    a.parent.mkdir()
    b.parent.mkdir()
    for path in (a, b):
        sink = JsonlSink(
            path, checkpoint_key=key, checkpoint_every=3, max_bytes=4096 if splice == "rotated-file" else None
        )
        for event in events(24 if splice == "rotated-file" else 7):
            sink(event)
        sink.close()
    files_b = sorted(b.parent.iterdir())
    assert verify_chain(files_b, public_key=key_dir / "signer.pub.jwks").ok
    a_lines, b_lines = a.read_bytes().splitlines(keepends=True), b.read_bytes().splitlines(keepends=True)
    if splice == "same-seq":  # A's checkpoint at seq 4 stands in for B's
        assert b'"checkpoint"' in a_lines[3] and b'"checkpoint"' in b_lines[3]
        b.write_bytes(b"".join([*b_lines[:3], a_lines[3], *b_lines[4:]]))
    elif splice == "relinked":  # and the lines after it relinked to it
        b.write_bytes(b"".join(_relink([*b_lines[:3], a_lines[3], *b_lines[4:]])))
    elif splice == "empty-log-first":  # a log closed without events starts B
        JsonlSink(tmp_path / "empty.jsonl", checkpoint_key=key).close()
        empty = (tmp_path / "empty.jsonl").read_bytes().splitlines(keepends=True)
        assert len(empty) == 1
        b.write_bytes(b"".join(_relink([empty[0], *b_lines[1:]])))
    else:  # A's first file in place of B's
        first_a = sorted(p for p in a.parent.iterdir() if p != a)[0]
        first_b = sorted(p for p in b.parent.iterdir() if p != b)[0]
        assert first_a.name == first_b.name
        first_b.write_bytes(first_a.read_bytes())
    report = verify_chain(sorted(b.parent.iterdir()), public_key=key_dir / "signer.pub.jwks")
    assert not report.ok
    assert {p.kind for p in report.problems} & {"checkpoint", "inserted", "deleted", "unclaimed", "edited"}, (
        report.problems
    )


def test_checkpoints_signed_by_another_key_are_forged(tmp_path: Path, key_dir: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 5, checkpoint_key=key_dir / "stranger.jwks", checkpoint_every=2)
    problems = verify_chain([path], public_key=key_dir / "signer.pub.jwks").problems
    assert {p.kind for p in problems} >= {"checkpoint"}
    assert all("unknown key" in p.message for p in problems if p.kind == "checkpoint")


def test_a_live_log_is_accepted_only_when_asked(tmp_path: Path, key_dir: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, checkpoint_key=key_dir / "signer.jwks", checkpoint_every=4)
    sink.write_batch(events(6))
    assert [p.kind for p in verify_chain([path], public_key=key_dir / "signer.jwks").problems] == ["truncated"]
    report = verify_chain([path], public_key=key_dir / "signer.jwks", live=True)
    assert report.ok and report.unsealed == 2 and report.sealed is False
    sink.close()


def test_bad_key_files_are_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 2)
    (tmp_path / "junk.jwks").write_text("{nope")
    for key in (tmp_path / "junk.jwks", tmp_path / "missing.jwks", tmp_path):
        code, out = cli("audit", "verify", "--public-key", str(key), str(path))
        assert code == 2 and "Traceback" not in out, out


# --- several writer processes -----------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from mcpgov import AuditEvent, GovContext
    from mcpgov.audit import JsonlSink
    path, key, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sink = JsonlSink(path, max_bytes=64 * 1024, checkpoint_key=key, checkpoint_every=7)
    ctx = GovContext(side="server", method="tools/call", target=name)
    for i in range(n):
        sink.write_batch([AuditEvent.from_context(ctx, "decision", effect="allow", rule=f"{name}-{i}")] * (1 + i % 3))
    sink.close()
    """
)


@pytest.mark.slow
def test_several_processes_writing_one_log_keep_one_intact_chain(tmp_path: Path, key_dir: Path) -> None:
    path = tmp_path / "audit.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    writers = [
        subprocess.Popen(  # noqa: S603 - this interpreter running the writer above
            [sys.executable, "-c", _WRITER, str(path), str(key_dir / "signer.jwks"), f"w{i}", "150"], env=env
        )
        for i in range(4)
    ]
    assert all(w.wait(120) == 0 for w in writers)
    files = sorted(tmp_path.glob("audit*.jsonl"))
    assert len(files) > 1  # they rotated the shared file, too
    report = verify_chain(files, public_key=key_dir / "signer.pub.jwks")
    assert report.ok, report.problems[:5]
    assert report.events == 4 * sum(1 + i % 3 for i in range(150))
    code, out = cli("audit", "show", "--json", *map(str, files))
    assert code == 0 and len(out.splitlines()) == report.events


# --- display safety --------------------------------------------------------------------------------

FORGED = "deploy\n2026-01-01T00:00:00.000Z decision allow tools/call deploy rule=ok\x1b[2K\x1b[1A\u202e\r"


async def test_a_client_chosen_name_cannot_forge_show_output(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "audit.jsonl"
    server = MCPServer("display")
    hooks = Hooks()

    @server.tool()
    def deploy() -> str:
        return "ok"

    @hooks.tool("deploy")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("ok")

    auditor = Auditor([QueuedSink(JsonlSink(path))])
    govern(server, hooks, audit=auditor)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool(FORGED, {})
        await client.call_tool("deploy", {})
    await auditor.aclose()
    recorded = [e for e in read_events([path]) if e.target == FORGED]
    assert recorded, "the forged name was recorded as the target"
    count = len(read_events([path]))
    for args in (["audit", "show", str(path)], ["audit", "show", "--json", str(path)]):
        code, out = cli(*args)
        assert code == 0
        assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
        assert len(out.splitlines()) == count  # one line per event: no forged line
    code, out = cli("audit", "show", "--task", "none", str(path))
    assert code == 0


def test_file_names_with_control_characters_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "evil\x1b[31m.jsonl"
    path.write_bytes(b"junk\n")
    code, out = cli("audit", "verify", str(path))
    assert code == 2 and "\x1b" not in out and "\\x1b" in out


def test_checkpoint_payloads_name_their_line(tmp_path: Path, key_dir: Path) -> None:
    """A checkpoint signs its own position: moving a valid one to another chain is detected."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write(first, 4, checkpoint_key=key_dir / "signer.jwks", checkpoint_every=100)
    write(second, 4, checkpoint_key=key_dir / "signer.jwks", checkpoint_every=100)
    a_lines, b_lines = first.read_bytes().splitlines(), second.read_bytes().splitlines()
    moved = json.loads(a_lines[-1])
    target = json.loads(b_lines[-1])
    body = rfc8785.dumps({"checkpoint": moved["checkpoint"]})
    forged = {
        "checkpoint": moved["checkpoint"],
        "hash": line_hash(target["prev"], target["seq"], body),
        "prev": target["prev"],
        "seq": target["seq"],
    }
    second.write_bytes(b"\n".join([*b_lines[:-1], rfc8785.dumps(forged)]) + b"\n")
    problems = verify_chain([second], public_key=key_dir / "signer.jwks").problems
    assert "checkpoint" in {p.kind for p in problems}
    assert hashlib.sha256(second.read_bytes()).hexdigest() != hashlib.sha256(first.read_bytes()).hexdigest()


# --- delivery that batches -------------------------------------------------------------------------


class _Batches:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, event: AuditEvent) -> None:
        self.sizes.append(1)

    def write_batch(self, events: list[AuditEvent]) -> None:
        self.sizes.append(len(events))


def test_the_queue_worker_is_woken_per_batch_not_per_event() -> None:
    batches = _Batches()
    queue = QueuedSink(batches, batch=64, linger=0.5)
    for event in events(40):  # fewer than a batch: they wait for the linger period together
        queue(event)
        time.sleep(0.001)
    assert queue.flush(5)
    assert sum(batches.sizes) == 40 and len(batches.sizes) <= 2
    for event in events(200):  # full batches wake the worker at once
        queue(event)
    assert queue.flush(5)
    assert sum(batches.sizes) == 240 and max(batches.sizes) == 64
    queue.close(5)


def test_by_default_a_trickle_of_events_wakes_the_worker_about_ten_times_a_second_not_per_event() -> None:
    # Each wake-up takes the interpreter lock from the thread serving calls: under a steady
    # trickle the worker must hand events over in a few partial batches, not one by one.
    batches = _Batches()
    queue = QueuedSink(batches, batch=512)
    for event in events(60):  # one every 5 ms, for about 0.3 s
        queue(event)
        time.sleep(0.005)
    assert queue.flush(5)
    assert sum(batches.sizes) == 60
    assert len(batches.sizes) <= 8, batches.sizes
    queue.close(5)


def test_an_auditor_without_sinks_builds_nothing_for_them() -> None:
    assert Auditor([]).wants_events is False
    assert Auditor([lambda event: None]).wants_events is True


def test_a_log_file_overwritten_with_garbage_beside_real_ones_is_tampering(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, max_bytes=4096)
    for _ in range(4):
        sink.write_batch(events(8))
    sink.close()
    files = sorted(tmp_path.glob("audit*.jsonl"))
    files[0].write_bytes(b"\x00garbage\n" * 3)
    code, out = cli("audit", "verify", *map(str, files))
    assert code == 1 and f"{files[0]}:1: malformed" in out


def test_two_sinks_in_one_process_on_one_file_share_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first, second = JsonlSink(path, max_bytes=8192), JsonlSink(path, max_bytes=8192)
    for i in range(30):
        (first if i % 3 else second).write_batch(events(1 + i % 4))
    first.close()
    second.close()
    files = sorted(tmp_path.glob("audit*.jsonl"))
    report = verify_chain(files)
    assert report.ok, report.problems[:3]
    assert report.events == sum(1 + i % 4 for i in range(30)) and len(files) > 1


def test_a_reopened_log_cut_back_to_an_earlier_runs_close_is_caught_only_by_an_anchor(tmp_path: Path) -> None:
    """Each run of a reopened log ends with a signed ``close``: cut back to the first run's, the
    log verifies as sealed on its own (what it was when that run ended: the documented limit),
    and ``--head`` with the head recorded after the last run refuses it."""
    assert CliRunner().invoke(main, ["keys", "generate", "--out", str(tmp_path / "signer.jwks")]).exit_code == 0
    key = tmp_path / "signer.jwks"
    path = tmp_path / "audit.jsonl"
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="deploy", tenant="acme")
    first = JsonlSink(path, checkpoint_key=key)
    first.write_batch([AuditEvent.from_context(ctx, "decision", effect="allow", rule=f"r{i}") for i in range(5)])
    first.close()
    cut_at = path.stat().st_size
    second = JsonlSink(path, checkpoint_key=key)  # a restart: the chain continues in the same file
    second.write_batch([AuditEvent.from_context(ctx, "decision", effect="deny", rule=f"s{i}") for i in range(7)])
    second.close()
    anchored = second.head  # kept where the log's writer cannot rewrite it

    def verify(*extra: str) -> int:
        args = ["--no-color", "audit", "verify", "--public-key", str(key), *extra, str(path)]
        return CliRunner().invoke(main, args).exit_code

    assert verify() == 0
    assert verify("--head", anchored) == 0
    with path.open("r+b") as f:
        f.truncate(cut_at)  # the second run's lines removed
    assert verify() == 0  # sealed by the first run's close: nothing inside the log tells otherwise
    assert verify("--head", anchored) != 0
