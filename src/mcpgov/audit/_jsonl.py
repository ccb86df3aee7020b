"""A tamper-evident JSON Lines audit log: one event per line, SHA-256 hash-chained across lines and files.

Each line is one JSON object with four keys::

    {"event": {...}, "hash": "sha256:<hex>", "prev": "sha256:<hex>", "seq": 42}

* ``event`` is the audit event in canonical JSON (RFC 8785, through the ``rfc8785`` library);
* ``seq`` counts lines from 1 across the whole chain (rotated files continue it);
* ``prev`` is the ``hash`` of the line before (for line 1: ``sha256:`` and 64 zeros);
* ``hash`` is ``sha256(prev + "\\n" + str(seq) + "\\n" + canonical(event))``.

Editing a line breaks its hash; deleting, inserting or reordering lines breaks ``prev``/``seq``.
:func:`verify_chain` (and ``mcpgov audit verify``) finds each break and names its file and line.
Removing lines from the *end* leaves a shorter valid chain: compare the last hash with an
anchor kept elsewhere (:attr:`JsonlSink.head`, ``verify --head``) to detect that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rfc8785

from mcpgov._arguments import canonical_json
from mcpgov._errors import ConfigurationError
from mcpgov.audit._redact import json_safe

if TYPE_CHECKING:
    from mcpgov._audit import AuditEvent

__all__ = ["GENESIS", "ChainProblem", "ChainReport", "JsonlSink", "line_hash", "read_chain", "verify_chain"]

logger = logging.getLogger("mcpgov.audit")

GENESIS = "sha256:" + "0" * 64
"""The ``prev`` of the first line of a chain."""

_HASH_RE = re.compile(r"sha256:[0-9a-f]{64}")
_TAIL_CHUNK = 65536


def canonical_event(event: dict[str, Any]) -> bytes:
    """The canonical JSON (RFC 8785) of an event's data, made JSON-safe first if it must be."""
    try:
        return canonical_json(event)
    except (rfc8785.CanonicalizationError, TypeError):
        return canonical_json(json_safe(event))


def line_hash(prev: str, seq: int, canonical: bytes) -> str:
    """The chain hash of one line: SHA-256 over ``prev``, ``seq`` and the canonical event."""
    digest = hashlib.sha256(f"{prev}\n{seq}\n".encode("ascii"))
    digest.update(canonical)
    return "sha256:" + digest.hexdigest()


def _parse(raw: bytes) -> dict[str, Any] | None:
    """A chain record from one line, or ``None`` when the line is not one."""
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or set(record) != {"event", "hash", "prev", "seq"}:
        return None
    seq, prev, digest, event = record["seq"], record["prev"], record["hash"], record["event"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or not isinstance(event, dict):
        return None
    if not isinstance(prev, str) or not isinstance(digest, str):
        return None
    if not _HASH_RE.fullmatch(prev) or not _HASH_RE.fullmatch(digest):
        return None
    return record


def _last_record(path: Path) -> dict[str, Any] | None:
    """The last valid chain record of a file (a torn last line from a crash is skipped)."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        carry = b""
        while pos > 0:
            step = min(_TAIL_CHUNK, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + carry
            lines = buf.split(b"\n")
            carry = lines[0] if pos > 0 else b""
            for raw in reversed(lines[1:] if pos > 0 else lines):
                if raw.strip():
                    record = _parse(raw)
                    if record is not None:
                        return record
    return None


def _first_record(path: Path) -> dict[str, Any] | None:
    with path.open("rb") as f:
        for raw in f:
            if raw.strip():
                return _parse(raw)
    return None


class JsonlSink:
    """Appends events to a hash-chained JSON Lines file, rotating it by size.

    Opening an existing log continues its chain (after the last valid line; a line torn by a
    crash is left for :func:`verify_chain` to report). When the file would grow past
    ``max_bytes`` it is renamed ``<stem>.<first seq, 12 digits><suffix>`` and a new file
    continues the chain, so ``verify`` over all files checks across rotations.

    Writes go straight to the file descriptor (``O_APPEND``); a failed write (full disk,
    revoked permission) is truncated away so the chain stays intact, and raises ``OSError``
    for the caller to count. Put the sink behind :class:`~mcpgov.audit.QueuedSink` to keep
    file I/O off the call path; it then receives events in batches (one write per batch).

    Args:
        path: the active log file (created with mode 0600 if missing; its directory must exist).
        max_bytes: rotate before the file would exceed this size (``None``: never rotate).
        fsync: ``fsync`` after every write (durable against power loss, much slower).

    Raises:
        ConfigurationError: the file cannot be opened for appending, ``max_bytes`` is too small,
            or the file is not empty yet holds no valid chain line (refusing to append to it).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_bytes: int | None = 64 * 1024 * 1024, fsync: bool = False
    ) -> None:
        if max_bytes is not None and max_bytes < 4096:
            raise ConfigurationError("max_bytes must be at least 4096 (or None to never rotate)")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.name = f"jsonl({self.path.name})"
        self._lock = threading.Lock()
        self.head = GENESIS
        """The hash of the last line written (anchor it elsewhere to detect truncation)."""
        self.seq = 0
        """The sequence number of the last line written."""
        self.written = 0
        """Lines written by this sink."""
        self.rotations = 0
        """How many times this sink rotated the file."""
        self._healthy = True
        try:
            self._resume()
            self._fd: int | None = self._open()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot open audit log {self.path}: {exc.strerror or type(exc).__name__}"
            ) from None

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}, seq={self.seq})"

    @property
    def last_write_ok(self) -> bool:
        """Whether the last write succeeded."""
        return self._healthy

    def stats(self) -> dict[str, int]:
        """Counters: lines written, rotations, last sequence number."""
        return {"written": self.written, "rotations": self.rotations, "seq": self.seq}

    def _rotated_name(self, first_seq: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.{first_seq:012d}{self.path.suffix}")

    def _rotated_files(self) -> list[tuple[int, Path]]:
        pattern = re.compile(re.escape(self.path.stem) + r"\.(\d{12})" + re.escape(self.path.suffix) + "$")
        found: list[tuple[int, Path]] = []
        if self.path.parent.is_dir():
            for candidate in self.path.parent.iterdir():
                m = pattern.match(candidate.name)
                if m:
                    found.append((int(m.group(1)), candidate))
        return sorted(found)

    def _resume(self) -> None:
        source: Path | None = None
        if self.path.is_file() and self.path.stat().st_size > 0:
            source = self.path
        else:
            rotated = self._rotated_files()
            if rotated:
                source = rotated[-1][1]
        self._first_seq = 1
        if source is None:
            return
        last = _last_record(source)
        if last is None:
            raise ConfigurationError(
                f"audit log {source} is not empty but holds no valid chain line; refusing to append to it"
            )
        self.head, self.seq = last["hash"], last["seq"]
        if source == self.path:
            first = _first_record(self.path)
            self._first_seq = first["seq"] if first is not None else self.seq + 1
        else:
            self._first_seq = self.seq + 1

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(fd).st_size
        return fd

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        target = self._rotated_name(self._first_seq)
        try:
            os.replace(self.path, target)
        except OSError:
            logger.error("audit log %s could not be rotated; appending to it past max_bytes", self.path)
        else:
            self.rotations += 1
            self._first_seq = self.seq + 1
        self._fd = self._open()

    def encode(self, events: Iterable[AuditEvent]) -> tuple[bytes, str, int]:
        """The lines for ``events`` after the current head, with the new head and sequence number."""
        from mcpgov.audit._codec import event_to_dict  # noqa: PLC0415 - keeps `mcpgov audit verify` free of pydantic

        prev, seq = self.head, self.seq
        parts: list[bytes] = []
        for event in events:
            body = canonical_event(event_to_dict(event))
            seq += 1
            digest = line_hash(prev, seq, body)
            parts.append(
                b'{"event":%b,"hash":"%b","prev":"%b","seq":%d}\n' % (body, digest.encode(), prev.encode(), seq)
            )
            prev = digest
        return b"".join(parts), prev, seq

    def write_batch(self, events: Sequence[AuditEvent]) -> None:
        """Append ``events`` (one write).

        Raises:
            OSError: the write failed; nothing of it remains in the file.
        """
        with self._lock:
            data, head, seq = self.encode(events)
            try:
                fd = self._ready_fd(len(data))
            except OSError:
                self._healthy = False
                raise
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                if self.fsync:
                    os.fsync(fd)
            except OSError:
                self._healthy = False
                try:
                    os.ftruncate(fd, self._size)
                except OSError:
                    logger.error("audit log %s: a failed write could not be truncated away", self.path)
                raise
            if self._size == 0:
                self._first_seq = self.seq + 1
            self._size += len(data)
            self.head, self.seq = head, seq
            self.written += len(events)
            self._healthy = True

    def _ready_fd(self, incoming: int) -> int:
        """The open descriptor to append ``incoming`` bytes to, reopening or rotating first if needed."""
        if self._fd is None:
            self._fd = self._open()
        if self.max_bytes is not None and self._size > 0 and self._size + incoming > self.max_bytes:
            self._rotate()
        if self._fd is None:  # pragma: no cover - _rotate reopens or raises
            raise OSError("audit log is not open")
        return self._fd

    def __call__(self, event: AuditEvent) -> None:
        """Append one event.

        Raises:
            OSError: the write failed.
        """
        self.write_batch((event,))

    def close(self, timeout: float | None = None) -> None:
        """Close the file (later writes reopen it)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


# --- verification ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ChainProblem:
    """One break in a chain.

    Attributes:
        file: the file.
        line: the 1-based line number (0 when the problem is about the whole file).
        kind: ``malformed``, ``edited``, ``deleted``, ``inserted``, ``reordered``, ``start``
            (the chain does not begin at its first line) or ``truncated`` (it does not end at the
            expected head).
        message: what was found.
    """

    file: str
    line: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: {self.message}"


@dataclasses.dataclass(frozen=True)
class ChainReport:
    """The result of :func:`verify_chain`.

    Attributes:
        files: the files, in chain order.
        lines: how many lines were read.
        first_seq: the sequence number the chain starts at (``None`` if no valid line).
        last_seq: the last sequence number.
        head: the last line's hash (anchor it to detect later truncation).
        problems: every break found, in order.
    """

    files: tuple[str, ...]
    lines: int
    first_seq: int | None
    last_seq: int | None
    head: str | None
    problems: tuple[ChainProblem, ...]

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


@dataclasses.dataclass
class _Line:
    file: str
    number: int
    record: dict[str, Any] | None


def read_chain(path: str | os.PathLike[str]) -> list[tuple[int, dict[str, Any] | None]]:
    """The lines of one log file as ``(line number, record or None if malformed)``; blank last line skipped.

    Raises:
        OSError: the file cannot be read.
    """
    out: list[tuple[int, dict[str, Any] | None]] = []
    with Path(path).open("rb") as f:
        for number, raw in enumerate(f, 1):
            out.append((number, _parse(raw) if raw.strip() else None))
    return out


def verify_chain(
    paths: Sequence[str | os.PathLike[str]], *, partial: bool = False, head: str | None = None
) -> ChainReport:
    """Check the hash chain of one log, given as one or more files (in any order).

    Files are put in chain order by their first sequence number. Every line's hash is
    recomputed, and every line must follow the one before it (``prev`` and ``seq``), also across
    files. Each break is reported with its file and line and classified as an edited,
    deleted, inserted or reordered line (or a malformed one).

    Args:
        paths: the files of the log (the active file and its rotated predecessors).
        partial: accept a chain that starts mid-way (older files were archived or removed);
            by default the first line must be the chain's first (``seq`` 1).
        head: the expected hash of the last line (an anchor kept elsewhere); detects lines
            removed from the end.

    Returns:
        The report; ``report.ok`` is true when nothing was found.

    Raises:
        OSError: a file cannot be read.
    """
    files: list[tuple[float, int, str, list[tuple[int, dict[str, Any] | None]]]] = []
    for index, path in enumerate(paths):
        lines = read_chain(path)
        first = next((rec["seq"] for _, rec in lines if rec is not None), None)
        files.append((float("inf") if first is None else float(first), index, str(path), lines))
    files.sort(key=lambda f: (f[0], f[1]))
    ordered: list[_Line] = []
    for _, _, name, lines in files:
        ordered.extend(_Line(name, number, record) for number, record in lines)
    positions: dict[int, list[_Line]] = {}
    for line in ordered:
        if line.record is not None:
            positions.setdefault(line.record["seq"], []).append(line)

    problems: list[ChainProblem] = []
    expected_prev: str | None = None if partial else GENESIS
    expected_seq: int | None = None if partial else 1
    first_seq: int | None = None
    last: dict[str, Any] | None = None
    anchored = partial
    for line in ordered:
        record = line.record
        if record is None:
            problems.append(ChainProblem(line.file, line.number, "malformed", "not a chain line (torn write or edit)"))
            expected_prev = expected_seq = None  # re-anchor on the next valid line
            continue
        seq, prev = record["seq"], record["prev"]
        if first_seq is None:
            first_seq = seq
        try:
            recomputed = line_hash(prev, seq, canonical_json(record["event"]))
        except (rfc8785.CanonicalizationError, TypeError):
            recomputed = None
        if recomputed != record["hash"]:
            problems.append(
                ChainProblem(line.file, line.number, "edited", "the line's content does not match its hash")
            )
        if not anchored and last is None and (seq != 1 or prev != GENESIS):
            problems.append(
                ChainProblem(
                    line.file,
                    line.number,
                    "start",
                    f"the chain starts at seq {seq}, not at its beginning: earlier lines or files are missing "
                    "(give the older files too, or --partial if they were archived)",
                )
            )
        elif expected_prev is not None and expected_seq is not None and (prev != expected_prev or seq != expected_seq):
            problems.append(_classify(line, seq, expected_seq, positions))
        anchored = True
        expected_prev, expected_seq = record["hash"], seq + 1
        last = record
    last_file = ordered[-1].file if ordered else (str(paths[-1]) if paths else "")
    if head is not None and (last is None or last["hash"] != head):
        where = f"seq {last['seq']} ({last['hash']})" if last is not None else "no valid line"
        problems.append(
            ChainProblem(
                last_file,
                len(files[-1][3]) if files else 0,
                "truncated",
                f"the chain ends at {where}, not at the expected head",
            )
        )
    return ChainReport(
        files=tuple(f[2] for f in files),
        lines=len(ordered),
        first_seq=first_seq,
        last_seq=last["seq"] if last is not None else None,
        head=last["hash"] if last is not None else None,
        problems=tuple(problems),
    )


def _classify(line: _Line, seq: int, expected: int, positions: dict[int, list[_Line]]) -> ChainProblem:
    if seq == expected:
        return ChainProblem(
            line.file,
            line.number,
            "inserted",
            "does not chain to the line before it: that line was inserted or replaced",
        )
    if seq > expected:
        missing = range(expected, seq)
        if all(s in positions for s in missing):
            return ChainProblem(
                line.file, line.number, "reordered", f"out of order: expected seq {expected}, found {seq}"
            )
        count = len(missing)
        return ChainProblem(
            line.file,
            line.number,
            "deleted",
            f"{count} line{'s' if count != 1 else ''} missing before this line (seq {expected}"
            + (f"..{seq - 1})" if count > 1 else ")"),
        )
    others = [p for p in positions.get(seq, []) if p is not line]
    if others:
        other = others[0]
        return ChainProblem(
            line.file,
            line.number,
            "inserted",
            f"seq {seq} appears twice (also at {other.file}:{other.number}): a line was inserted or duplicated",
        )
    return ChainProblem(line.file, line.number, "reordered", f"out of order: seq {seq} comes after seq {expected - 1}")
