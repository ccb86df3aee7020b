"""A tamper-evident JSON Lines audit log: one event per line, SHA-256 hash-chained, with signed checkpoints.

Each line is one JSON object, written in its RFC 8785 canonical form::

    {"event": {...}, "hash": "sha256:<hex>", "prev": "sha256:<hex>", "seq": 42}

* ``event`` is the audit event in canonical JSON (RFC 8785);
* ``seq`` counts lines from 1 across the whole chain (rotated files continue it);
* ``prev`` is the ``hash`` of the line before (for line 1: ``sha256:`` and 64 zeros);
* ``hash`` is ``sha256(prev + "\\n" + str(seq) + "\\n" + canonical(event))``.

With a checkpoint key, the sink also writes *checkpoint* lines into the chain (every N events,
every T seconds, before a rotation and at close)::

    {"checkpoint": "<compact JWS>", "hash": ..., "prev": ..., "seq": 1001}

whose signed payload names the line's own ``prev`` and ``seq`` (see
:mod:`mcpgov.audit._checkpoint`), so the signature commits to everything before it, and whose
hash covers ``canonical({"checkpoint": jws})``.

:func:`verify_chain` (``mcpgov audit verify``) checks that every line is exactly the canonical
encoding of what it holds (a duplicated key, reordered keys, extra whitespace or a changed
escape are reported as tampering), recomputes every hash and link, and with the public key
checks every checkpoint signature and that the log ends with a signed closing checkpoint: a
truncated log, a deleted file or a chain rebuilt without the key is found without any external
anchor. Anchoring a head elsewhere (:attr:`JsonlSink.head`, ``verify --head``) stays possible.

Several processes may append to one log: each write takes an exclusive ``flock`` on the file
and continues the chain from the file's real last line, so the chain stays one chain.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import io
import json
import json.encoder
import logging
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rfc8785

from mcpgov._arguments import _PLAIN_ENCODER, _plain, canonical_json
from mcpgov._errors import ConfigurationError
from mcpgov._types import Clock
from mcpgov._validate import first_repeat, is_positive_count
from mcpgov.audit._redact import json_safe

if TYPE_CHECKING:  # the writer's types: `mcpgov audit verify` loads neither pydantic nor the key code
    from mcpgov._audit import AuditEvent
    from mcpgov.audit._checkpoint import CheckpointKeys, CheckpointSigner

if sys.platform == "win32":  # pragma: no cover - no advisory locks: one writer process per log

    def _flock(fd: int, exclusive: bool) -> None:
        return None

else:  # POSIX: several processes share one chain under an exclusive lock
    import fcntl

    def _flock(fd: int, exclusive: bool) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_UN)


__all__ = [
    "GENESIS",
    "ChainProblem",
    "ChainReport",
    "JsonlSink",
    "encode_event",
    "line_hash",
    "read_chain",
    "verify_chain",
]

logger = logging.getLogger("mcpgov.audit")

GENESIS = "sha256:" + "0" * 64
"""The ``prev`` of the first line of a chain."""

_HASH_RE = re.compile(r"sha256:[0-9a-f]{64}")
_TAIL_CHUNK = 65536
_MAX_LINE = 16 * 1024 * 1024
_MAX_SAFE_INT = 2**53 - 1
_MAX_CLAIMED_RANGES = 64  # a checkpoint claims at most this many ranges of lines (its signature stays small)


@functools.cache
def _writer() -> tuple[tuple[tuple[str, str], ...], Callable[[AuditEvent], dict[str, Any]]]:
    """What only writing needs (loaded on first write): the event's fields in order, the codec."""
    from mcpgov._audit import AuditEvent  # noqa: PLC0415 - see the TYPE_CHECKING block
    from mcpgov.audit._codec import event_to_dict  # noqa: PLC0415

    return tuple((name, f'"{name}":') for name in sorted(AuditEvent.model_fields)), event_to_dict


_escape: Callable[[str], str] = json.encoder.encode_basestring
_EVENT_KEYS = frozenset({"event", "hash", "prev", "seq"})
_CHECKPOINT_KEYS = frozenset({"checkpoint", "hash", "prev", "seq"})


def canonical_event(event: dict[str, Any]) -> bytes:
    """The canonical JSON (RFC 8785) of an event's data, made JSON-safe first if it must be."""
    try:
        return canonical_json(event)
    except (rfc8785.CanonicalizationError, TypeError):
        return canonical_json(json_safe(event))


def encode_event(event: AuditEvent) -> bytes:
    """The canonical JSON (RFC 8785) of ``event`` as the log writes it.

    Equal, byte for byte, to ``canonical_json(event_to_dict(event))`` (the test suite checks it
    against the ``rfc8785`` library on generated events). Events of the usual shape are written
    field by field in sorted order, each string escaped by the standard library's C escaper,
    which escapes exactly as RFC 8785 does (``"``, ``\\`` and control characters, ``\\u00xx`` in
    lowercase, nothing else); safe integers and plain floats print the same in Python and
    ECMAScript; attribute mappings go through :func:`~mcpgov._arguments.canonical_json`.
    Anything else (an unsafe number, a lone surrogate, an unusual type) takes the general path.
    """
    field_keys, event_to_dict = _writer()
    data = event.__dict__
    parts: list[str] = []
    add = parts.append
    for name, key in field_keys:
        value = data[name]
        if value is None:
            continue
        kind = type(value)
        if kind is str:
            add(key + _escape(value))
        elif kind is datetime:
            add(key + '"' + value.isoformat() + '"')
        elif kind is bool:
            add(key + ("true" if value else "false"))
        elif kind is int:
            if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
                return canonical_event(event_to_dict(event))
            add(key + str(value))
        elif kind is float:
            if not _plain(value):
                return canonical_event(event_to_dict(event))
            add(key + repr(value))
        elif kind is tuple:
            if value:
                if not all(type(v) is str for v in value):
                    return canonical_event(event_to_dict(event))
                add(key + "[" + ",".join(map(_escape, value)) + "]")
        elif kind is dict:
            if value:
                if not _plain(value):
                    return canonical_event(event_to_dict(event))
                add(key + _PLAIN_ENCODER.encode(value))
        else:
            return canonical_event(event_to_dict(event))
    try:
        return ("{" + ",".join(parts) + "}").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: the general path makes it JSON-safe
        return canonical_event(event_to_dict(event))


def line_hash(prev: str, seq: int, canonical: bytes) -> str:
    """The chain hash of one line: SHA-256 over ``prev``, ``seq`` and the canonical content."""
    digest = hashlib.sha256(f"{prev}\n{seq}\n".encode("ascii"))
    digest.update(canonical)
    return "sha256:" + digest.hexdigest()


def _claim(ranges: list[list[int]], seq: int) -> None:
    """Add ``seq`` to ``ranges`` (ascending ranges of sequence numbers, merged when adjacent)."""
    if ranges and ranges[-1][1] == seq - 1:
        ranges[-1][1] = seq
    else:
        ranges.append([seq, seq])


def _checkpoint_body(token: str) -> bytes:
    return canonical_json({"checkpoint": token})


def _event_line(body: bytes, digest: str, prev: str, seq: int) -> bytes:
    return b'{"event":%b,"hash":"%b","prev":"%b","seq":%d}\n' % (body, digest.encode(), prev.encode(), seq)


def _checkpoint_line(token: str, digest: str, prev: str, seq: int) -> bytes:
    return b'{"checkpoint":%b,"hash":"%b","prev":"%b","seq":%d}\n' % (
        canonical_json(token),
        digest.encode(),
        prev.encode(),
        seq,
    )


def _parse(raw: bytes) -> dict[str, Any] | None:
    """A chain record from one line, or ``None`` when the line is not one."""
    record, _ = _parse_checked(raw)
    return record


def _parse_checked(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """A chain record and ``""``, or ``None`` and why the line is not one."""
    if len(raw) > _MAX_LINE:
        return None, f"line longer than {_MAX_LINE} bytes"
    try:
        record = json.loads(raw)
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except RecursionError:
        return None, "JSON nested too deeply"
    except ValueError:
        return None, "not JSON (torn write or edit)"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    keys = record.keys()
    if keys not in (_EVENT_KEYS, _CHECKPOINT_KEYS):
        return None, "not a chain line (unexpected keys)"
    seq, prev, digest = record["seq"], record["prev"], record["hash"]
    if type(seq) is not int or seq < 1:
        return None, "seq is not a positive integer"
    if not isinstance(prev, str) or not isinstance(digest, str):
        return None, "prev/hash are not strings"
    if not _HASH_RE.fullmatch(prev) or not _HASH_RE.fullmatch(digest):
        return None, "prev/hash are not sha256 digests"
    if "event" in record:
        if not isinstance(record["event"], dict):
            return None, "event is not an object"
    elif not isinstance(record["checkpoint"], str):
        return None, "checkpoint is not a string"
    return record, ""


def _duplicate_key(raw: bytes) -> str | None:
    """The first key that appears twice in one object of ``raw``, if any."""
    found: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        repeated = first_repeat(key for key, _ in pairs)
        if repeated is not None and not found:
            found.append(repeated)
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return None
    return found[0] if found else None


def _plain_object(data: dict[str, Any]) -> bool:
    """:func:`~mcpgov._arguments._plain` for a parsed event, with a quicker look at its (mostly
    ASCII string) top-level values; nested values get the full check."""
    for key, value in data.items():
        if not key.isascii():
            return False
        kind = type(value)
        if kind is str:
            if not value.isascii() and not _plain(value):
                return False
        elif kind is int:
            if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
                return False
        elif not (value is None or kind is bool or _plain(value)):
            return False
    return True


def _floats(value: Any) -> Any:
    """``value`` with integers beyond the exact range of a JSON number read as the floats they
    were written from (the writer never writes such integers: they become strings)."""
    kind = type(value)
    if kind is int and not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
        return float(value)
    if kind is dict:
        return {k: _floats(v) for k, v in value.items()}
    if kind is list:
        return [_floats(v) for v in value]
    return value


def _content(record: dict[str, Any]) -> bytes | None:
    """The canonical content a line's hash covers, or ``None`` when it has no canonical form."""
    try:
        if "event" in record:
            event = record["event"]
            if _plain_object(event):
                return _PLAIN_ENCODER.encode(event).encode("utf-8")
            return canonical_json(_floats(event))
        return _checkpoint_body(record["checkpoint"])
    except (rfc8785.CanonicalizationError, TypeError, RecursionError):
        return None


def _expected_line(record: dict[str, Any], content: bytes) -> bytes:
    if "event" in record:
        return _event_line(content, record["hash"], record["prev"], record["seq"])
    return _checkpoint_line(record["checkpoint"], record["hash"], record["prev"], record["seq"])


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for its other end
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _irregular(mode: int) -> str:
    """Why a file of ``mode`` is not a regular file, naming what it is."""
    if stat.S_ISDIR(mode):
        return "is not a regular file (a directory)"
    if stat.S_ISFIFO(mode):
        return "is not a regular file (a FIFO)"
    if stat.S_ISSOCK(mode):
        return "is not a regular file (a socket)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is not a regular file (a device)"
    return "is not a regular file"


def _not_a_file(path: str | os.PathLike[str], mode: int) -> OSError:
    return OSError(errno.EINVAL, _irregular(mode), os.fspath(path))


def _unsafe_log(st: os.stat_result) -> str | None:
    """Why a file the sink would write is not its own to write (``None`` when it is)."""
    if not stat.S_ISREG(st.st_mode):
        return _irregular(st.st_mode)
    if st.st_nlink > 1:  # the sink's files are renamed, never linked: another name writes the same file
        return f"has {st.st_nlink} hard links (another name reaches the same file)"
    if sys.platform != "win32":
        if st.st_uid != os.geteuid():
            return f"is owned by another user (uid {st.st_uid})"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _refusal(path: str | os.PathLike[str], why: str) -> ConfigurationError:
    return ConfigurationError(f"audit log {os.fspath(path)} {why}; refusing to write to it")


def _open_log(path: Path) -> int:
    """The active log file opened for appending (created 0600 if missing): never through a symbolic
    link, and only a regular file of this user's, with no other hard link, that group and others
    cannot write.

    Raises:
        ConfigurationError: the path is a symbolic link, not a regular file, or not this user's own.
        OSError: it cannot be opened.
    """
    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise _refusal(path, "is a symbolic link")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _NONBLOCK | _CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if os.path.islink(path):  # planted after the look above (ELOOP, EMLINK)
            raise _refusal(path, "is a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise _refusal(path, "is not a regular file (a FIFO)") from None
        if exc.errno == errno.EISDIR:
            raise _refusal(path, "is not a regular file (a directory)") from None
        raise
    try:
        _own_file(path, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _own_file(path: Path, fd: int) -> None:
    why = _unsafe_log(os.fstat(fd))
    if why is not None:
        raise _refusal(path, why)
    if _NONBLOCK:
        os.set_blocking(fd, True)


def _regular_file(path: str | os.PathLike[str], fd: int) -> None:
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        raise _not_a_file(path, mode)
    if _NONBLOCK:
        os.set_blocking(fd, True)


def _read_file(path: str | os.PathLike[str], *, follow: bool = True) -> io.BufferedReader:
    """``path`` opened for reading if it is a regular file (a FIFO or device is refused, never
    waited on or read forever); with ``follow=False`` never through a symbolic link.

    Raises:
        OSError: it cannot be opened or is not a regular file.
    """
    flags = os.O_RDONLY | _NONBLOCK | _CLOEXEC | (0 if follow else _NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow and os.path.islink(path):
            raise OSError(errno.ELOOP, "is a symbolic link", os.fspath(path)) from None
        if exc.errno == errno.EISDIR:
            raise OSError(errno.EISDIR, "is not a regular file (a directory)", os.fspath(path)) from None
        raise
    try:
        _regular_file(path, fd)
        return open(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def _bounded_lines(f: io.BufferedReader) -> Iterator[bytes | None]:
    """Each line of ``f`` (with its line end), or ``None`` for a line longer than ``_MAX_LINE``
    bytes, which is skipped without ever being held whole."""
    while True:
        raw = f.readline(_MAX_LINE + 1)
        if not raw:
            return
        if len(raw) > _MAX_LINE:
            del raw
            while (rest := f.readline(_TAIL_CHUNK)) and not rest.endswith(b"\n"):
                pass
            yield None
            continue
        yield raw


def _last_record(path: Path) -> dict[str, Any] | None:
    """The last valid chain record of a file (a torn last line from a crash is skipped, and a
    line longer than any chain line is skipped without being held whole)."""
    with _read_file(path, follow=False) as f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        carry = b""
        skipping = False  # inside a line too long to be a chain line: read back to its start
        while pos > 0:
            step = min(_TAIL_CHUNK, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step)
            if skipping:
                cut = buf.rfind(b"\n")
                if cut < 0:
                    continue
                buf, skipping = buf[: cut + 1], False
            else:
                buf += carry
            lines = buf.split(b"\n")
            carry = lines[0] if pos > 0 else b""
            for raw in reversed(lines[1:] if pos > 0 else lines):
                if raw.strip():
                    record = _parse(raw)
                    if record is not None:
                        return record
            if len(carry) > _MAX_LINE:
                carry, skipping = b"", True
    return None


def _ends_torn(path: Path) -> bool:
    """Whether a non-empty file's last line has no line end (a write torn by a crash)."""
    with _read_file(path, follow=False) as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def _hash_of_line_ending_at(path: Path, end: int) -> str | None:
    """The hash of the chain line whose line end is the byte before ``end`` (``None`` if none is)."""
    with _read_file(path, follow=False) as f:
        carry = b""
        pos = end
        while pos > 0 and len(carry) <= _MAX_LINE:
            step = min(_TAIL_CHUNK, pos)
            pos -= step
            f.seek(pos)
            carry = f.read(step) + carry
            if not carry.endswith(b"\n"):
                return None
            start = carry.rfind(b"\n", 0, len(carry) - 1)
            if start >= 0 or pos == 0:
                record = _parse(carry[start + 1 :])
                return record["hash"] if record is not None else None
    return None


def _first_record(path: Path) -> dict[str, Any] | None:
    with _read_file(path, follow=False) as f:
        for raw in _bounded_lines(f):
            if raw is None:
                return None
            if raw.strip():
                return _parse(raw)
    return None


class JsonlSink:
    """Appends events to a hash-chained JSON Lines file, rotating it by size, with signed checkpoints.

    Opening an existing log continues its chain (after the last valid line; a line torn by a
    crash is ended, so it stays a line of its own for :func:`verify_chain` to report, and the
    next line is written whole after it). When the file would grow past
    ``max_bytes`` it is renamed ``<stem>.<first seq, 12 digits><suffix>`` and a new file
    continues the chain, so ``verify`` over all files checks across rotations.

    Several sinks, in one process or several, may write one log: each write holds an exclusive
    ``flock`` on the file and first catches up with lines others appended (or a rotation they
    made), so they share one intact chain.

    With ``checkpoint_key``, a signed checkpoint line is written after every
    ``checkpoint_every`` events, when ``checkpoint_interval`` seconds passed since the last one
    (checked on every write and by :meth:`tick`, which :class:`~mcpgov.audit.QueuedSink` calls
    when idle), before each rotation and at :meth:`close`. ``mcpgov audit verify --public-key``
    then detects truncation, deleted files and rebuilt chains without an external anchor.

    Writes go straight to the file descriptor (``O_APPEND``); a failed write (full disk,
    revoked permission) is truncated away so the chain stays intact, and raises ``OSError``
    for the caller to count. Put the sink behind :class:`~mcpgov.audit.QueuedSink` to keep
    file I/O off the call path; it then receives events in batches (one write per batch).

    Args:
        path: the active log file (created with mode 0600 if missing; its directory must exist).
            It must be a regular file of this process's user, with no other hard link, that
            group and others cannot write, and is never opened through a symbolic link (also
            after a rotation).
        max_bytes: rotate before the file would exceed this size (``None``: never rotate).
        fsync: ``fsync`` after every write (durable against power loss, much slower).
        checkpoint_key: the signing key for checkpoints: a key file as ``mcpgov keys generate``
            writes it, a PEM private key file, a joserfc private key, a
            :class:`~mcpgov.credentials.SigningKeySet` or a
            :class:`~mcpgov.audit.CheckpointSigner` (``None``: no checkpoints).
        checkpoint_every: write a checkpoint after this many events.
        checkpoint_interval: write a checkpoint when this many seconds passed since the last one
            and events were written since.
        clock: monotonic clock for the checkpoint interval (injectable for tests).

    Raises:
        ConfigurationError: the file cannot be opened for appending, is a symbolic link, not a
            regular file or not this user's own (see ``path``), ``max_bytes`` is too small,
            the file is not empty yet holds no valid chain line (refusing to append to it), or
            the checkpoint key or intervals are not usable.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None = 64 * 1024 * 1024,
        fsync: bool = False,
        checkpoint_key: Any = None,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_bytes is not None and max_bytes < 4096:
            raise ConfigurationError("max_bytes must be at least 4096 (or None to never rotate)")
        if not is_positive_count(checkpoint_every):
            raise ConfigurationError("checkpoint_every must be a positive number of events")
        if isinstance(checkpoint_interval, bool) or not checkpoint_interval > 0:
            raise ConfigurationError("checkpoint_interval must be a positive number of seconds")
        self.path = Path(path)
        self._fspath = os.fspath(self.path)  # stat'ed on every write: converted once
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.name = f"jsonl({self.path.name})"
        self._signer: CheckpointSigner | None = None
        if checkpoint_key is not None:
            from mcpgov.audit._checkpoint import CheckpointSigner  # noqa: PLC0415 - see the TYPE_CHECKING block

            self._signer = (
                checkpoint_key if isinstance(checkpoint_key, CheckpointSigner) else CheckpointSigner(checkpoint_key)
            )
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = float(checkpoint_interval)
        self._clock = clock
        self.writer = secrets.token_hex(8)
        """This sink's id in the checkpoints it signs."""
        self._lock = threading.Lock()
        self.head = GENESIS
        """The hash of the last line written (anchor it elsewhere to detect truncation)."""
        self.seq = 0
        """The sequence number of the last line written."""
        self.written = 0
        """Event lines written by this sink."""
        self.checkpoints = 0
        """Checkpoint lines written by this sink."""
        self.rotations = 0
        """How many times this sink rotated the file."""
        self._healthy = True
        self._since_checkpoint = 0
        self._last_checkpoint = clock()
        self._ino: int | None = None
        self._sealed_at: int | None = None
        self._torn = False
        self.lost = 0
        """Events this sink could not write (each write that failed and was truncated away)."""
        self._unrecorded = 0  # lost events the log does not record yet (an ``audit.gap`` line will)
        self._lost_since: datetime | None = None
        self._mine: list[list[int]] = []  # ranges of seq this sink wrote since its last checkpoint
        self._cuts: list[tuple[int, str, int, str]] = []  # the log found cut back: (seq, head, found seq, head)
        try:
            self._resume()
            self._fd: int | None = self._open()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot open audit log {self.path}: {exc.strerror or type(exc).__name__}"
            ) from None

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}, seq={self.seq}, checkpoints={self._signer is not None})"

    @property
    def last_write_ok(self) -> bool:
        """Whether the last write succeeded."""
        return self._healthy

    def stats(self) -> dict[str, int]:
        """Counters: lines written, checkpoints, rotations, last sequence number."""
        return {
            "written": self.written,
            "lost": self.lost,
            "checkpoints": self.checkpoints,
            "rotations": self.rotations,
            "seq": self.seq,
        }

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
        """Take head, seq and the active file's first seq from what is on disk."""
        source: Path | None = None
        try:
            st: os.stat_result | None = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise _refusal(self.path, "is a symbolic link")
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise _refusal(self.path, _irregular(st.st_mode))
        if st is not None and st.st_size > 0:
            source = self.path
        else:
            rotated = self._rotated_files()
            if rotated:
                source = rotated[-1][1]
        self._first_seq = self.seq + 1 if self.seq else 1
        self._torn = False
        if source is None:
            return
        try:
            last = _last_record(source)
        except OSError as exc:
            if source == self.path:
                raise
            raise ConfigurationError(
                f"audit log {source} {exc.strerror or type(exc).__name__}: cannot continue its chain; refusing to "
                "write the log"
            ) from None
        if last is None:
            raise ConfigurationError(
                f"audit log {source} is not empty but holds no valid chain line; refusing to append to it"
            )
        self.head, self.seq = last["hash"], last["seq"]
        if source == self.path:
            # A line torn by a crash (this process's or another writer's) must stay a line of its
            # own: the next write starts with a line end, or its first line would be glued to it.
            self._torn = _ends_torn(self.path)
            first = _first_record(self.path)
            self._first_seq = first["seq"] if first is not None else self.seq + 1
        else:
            self._first_seq = self.seq + 1

    def _open(self) -> int:
        fd = _open_log(self.path)
        st = os.fstat(fd)
        self._size = st.st_size
        self._ino = st.st_ino
        self._stale = True  # others may have written since the chain was last read: read it again under the lock
        return fd

    def _locked(self) -> int:
        """The open descriptor of the active file, exclusively locked, caught up with other writers."""
        while True:
            if self._fd is None:
                try:
                    self._fd = self._open()
                except ConfigurationError as exc:
                    raise OSError(errno.EPERM, exc.detail, self._fspath) from None
            fd = self._fd
            _flock(fd, True)
            try:
                if self._caught_up(fd):
                    return fd
            except BaseException as exc:
                _flock(fd, False)
                if isinstance(exc, ConfigurationError):
                    raise OSError(errno.EPERM, exc.detail, self._fspath) from None
                raise
            # Another writer rotated the file away (or the path now names something else): reopen it.
            _flock(fd, False)
            os.close(fd)
            self._fd = None

    def _caught_up(self, fd: int) -> bool:
        """With ``fd`` locked: whether it is still the active file, after catching up with what
        other writers appended to it (``False``: the path names another file now)."""
        try:
            current = os.lstat(self._fspath)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and current.st_ino == mine.st_ino and current.st_dev == mine.st_dev:
            if self._stale or mine.st_size != self._size:
                # Another writer appended (or rotated and we reopened): continue its chain.
                known = self._size if not (self._stale or self._torn) and mine.st_size > self._size else 0
                self._size = mine.st_size
                seq, head = self.seq, self.head
                self._resume()
                self._stale = False
                if seq and (
                    self.seq < seq
                    or (self.seq == seq and self.head != head)
                    or (known and _hash_of_line_ending_at(self.path, known) != head)
                ):
                    # Writers only ever append: a chain that now ends before (or beside) the
                    # line this sink wrote last was cut or replaced. Continuing it silently
                    # would seal the cut; the next line records it instead.
                    self._cuts.append((seq, head, self.seq, self.head))
                    # What now stands where this sink's unclaimed lines were may have been
                    # rewritten (hashes recomputed): this sink's signature claims none of it.
                    self._mine = []
            return True
        return False

    def _unlock(self, fd: int) -> None:
        _flock(fd, False)

    def _checkpoint(self, reason: str, prev: str, seq: int, events: int, lines: list[list[int]]) -> tuple[bytes, str]:
        """A signed checkpoint line at ``seq`` after ``prev`` claiming ``lines`` (the ranges of
        sequence numbers this sink wrote since its last checkpoint), and its hash."""
        assert self._signer is not None  # noqa: S101 - callers check; narrows the type
        payload = {
            "events": events,
            "file_first": self._first_seq,
            "lines": lines,
            "prev": prev,
            "reason": reason,
            "seq": seq,
            "time": datetime.now(timezone.utc).isoformat(),
            "writer": self.writer,
        }
        token = self._signer.sign(payload)
        digest = line_hash(prev, seq, _checkpoint_body(token))
        return _checkpoint_line(token, digest, prev, seq), digest

    def encode(self, events: Iterable[AuditEvent]) -> tuple[bytes, str, int]:
        """The lines for ``events`` after the current head, with the new head and sequence number
        (checkpoints that fall due are not included)."""
        prev, seq = self.head, self.seq
        parts: list[bytes] = []
        for event in events:
            body = encode_event(event)
            seq += 1
            digest = line_hash(prev, seq, body)
            parts.append(_event_line(body, digest, prev, seq))
            prev = digest
        return b"".join(parts), prev, seq

    def _append(self, fd: int, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(fd)
        except BaseException:  # also an interrupt between two partial writes: no half batch stays
            self._healthy = False
            try:
                os.ftruncate(fd, self._size)
            except OSError:
                logger.error("audit log %s: a failed write could not be truncated away", self.path)
            raise
        self._size += len(data)

    def write_batch(self, events: Sequence[AuditEvent]) -> None:
        """Append ``events`` (one write, with any checkpoint that falls due).

        Raises:
            OSError: the write failed; nothing of it remains in the file. Anything else that
                makes it fail (an event that cannot be encoded, a checkpoint that cannot be
                signed, an interrupt) propagates as it was raised, with the same effect: the
                events are counted in :attr:`lost` and the next write records them in the log
                (an ``audit.gap`` line).
        """
        try:
            bodies = [encode_event(event) for event in events]
        except BaseException:
            with self._lock:
                self._lose(len(events))
            raise
        with self._lock:
            try:
                fd = self._ready(sum(map(len, bodies)) + 220 * len(bodies))
                try:
                    self._write_locked(fd, bodies, None)
                finally:
                    self._unlock_current()
            except BaseException:  # a full disk, a key that cannot sign, an interrupt: all recorded
                self._healthy = False
                self._lose(len(bodies))
                raise

    def _lose(self, count: int) -> None:
        """Count ``count`` events as lost; the next write records the gap in the chain."""
        if not count:
            return
        self.lost += count
        self._unrecorded += count
        if self._lost_since is None:
            self._lost_since = datetime.now(timezone.utc)

    def _ready(self, incoming: int) -> int:
        """Lock the active file, catching up with other writers, and rotate it first if needed."""
        try:
            fd = self._locked()
        except OSError:
            self._healthy = False
            raise
        if self.max_bytes is not None and self._size > 0 and self._size + incoming > self.max_bytes:
            try:
                fd = self._rotate_locked(fd)
            except OSError:
                self._healthy = False
                self._unlock_current()
                raise
        return fd

    def _unlock_current(self) -> None:
        if self._fd is not None:
            self._unlock(self._fd)

    def _notes(self) -> list[bytes]:
        """The ``audit.gap`` lines the chain owes before anything else: events lost to failed
        writes, and cuts found in the log, so a verifier sees them instead of a seamless chain."""
        if not self._unrecorded and not self._cuts:
            return []
        from mcpgov._audit import cut_event, gap_event  # noqa: PLC0415 - see the TYPE_CHECKING block

        notes = [encode_event(cut_event(*cut, self.name)) for cut in self._cuts]
        if self._unrecorded:
            assert self._lost_since is not None  # noqa: S101 - set with _unrecorded; narrows the type
            notes.append(encode_event(gap_event(self._unrecorded, "write_failed", self._lost_since, self.name)))
        return notes

    def _write_locked(self, fd: int, bodies: list[bytes], reason: str | None) -> None:
        notes = self._notes()
        if notes:
            bodies = [*notes, *bodies]
        prev, seq = self.head, self.seq
        since = self._since_checkpoint
        signer = self._signer
        every = self.checkpoint_every
        parts: list[bytes] = []
        checkpoints = 0
        # The lines this sink wrote since its last checkpoint, as ranges of seq: each checkpoint
        # claims them, so lines others appended (another writer, or someone without the key)
        # are never vouched for by this sink's signature.
        mine = [list(r) for r in self._mine]
        for body in bodies:
            seq += 1
            digest = line_hash(prev, seq, body)
            parts.append(_event_line(body, digest, prev, seq))
            prev = digest
            since += 1
            _claim(mine, seq)
            if signer is not None and (since >= every or len(mine) >= _MAX_CLAIMED_RANGES):
                seq += 1
                line, prev = self._checkpoint("count", prev, seq, since, mine)
                parts.append(line)
                since, mine = 0, []
                checkpoints += 1
        now = self._clock()
        if signer is not None and reason is None and since and now - self._last_checkpoint >= self.checkpoint_interval:
            reason = "interval"
        if signer is not None and reason is not None:
            seq += 1
            line, prev = self._checkpoint(reason, prev, seq, since, mine)
            parts.append(line)
            since, mine = 0, []
            checkpoints += 1
        if not parts:
            return
        if self._torn:
            parts.insert(0, b"\n")
        data = b"".join(parts)
        self._append(fd, data)
        self._torn = False
        if self._size == len(data):
            self._first_seq = self.seq + 1
        self.head, self.seq = prev, seq
        self.written += len(bodies) - len(notes)
        if notes:
            self._unrecorded, self._lost_since = 0, None
            self._cuts.clear()
        self.checkpoints += checkpoints
        self._since_checkpoint = since
        self._mine = mine
        if checkpoints:
            self._last_checkpoint = now
        self._healthy = True

    def _rotate_locked(self, fd: int) -> int:
        """Seal the active file (a ``rotate`` checkpoint), rename it, and lock a fresh one."""
        if self._signer is not None:
            self._write_locked(fd, [], "rotate")
        target = self._rotated_name(self._first_seq)
        if os.path.lexists(target):  # never overwrite a rotated file (the lock makes this check safe among writers)
            logger.error("audit log %s: %s already exists; appending past max_bytes", self.path, target.name)
            return fd
        try:
            os.replace(self.path, target)
        except OSError:
            logger.error("audit log %s could not be rotated; appending to it past max_bytes", self.path)
            return fd
        self.rotations += 1
        self._first_seq = self.seq + 1
        self._unlock(fd)
        os.close(fd)
        self._fd = None
        # Lock the new active file like any write does: another writer may have created it and
        # appended to it between the rename and this lock, so catch up first.
        return self._locked()

    def tick(self) -> None:
        """Write a checkpoint if ``checkpoint_interval`` seconds passed and events were written since.

        Raises:
            OSError: the write failed.
        """
        if self._signer is None or not self._since_checkpoint:
            return
        if self._clock() - self._last_checkpoint < self.checkpoint_interval:
            return
        with self._lock:
            fd = self._ready(1024)
            try:
                self._write_locked(fd, [], "interval")
            finally:
                self._unlock_current()

    def __call__(self, event: AuditEvent) -> None:
        """Append one event.

        Raises:
            OSError: the write failed.
        """
        self.write_batch((event,))

    def close(self, timeout: float | None = None) -> None:
        """Record what the log still owes (events lost to a failed write, a cut found in it), write
        the closing checkpoint (with a key), and close the file (later writes reopen it)."""
        with self._lock:
            owed = bool(self._unrecorded or self._cuts)
            if self._signer is not None or owed:
                try:
                    fd = self._ready(1024)
                    try:
                        if self._signer is None:
                            self._write_locked(fd, [], None)  # the audit.gap lines alone
                        elif self._sealed_at != self._size or owed:  # not already sealed by this sink
                            self._write_locked(fd, [], "close")
                            self._sealed_at = self._size
                    finally:
                        self._unlock_current()
                except OSError as exc:
                    logger.error("audit log %s: the closing lines could not be written: %s", self.path, exc)
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
        kind: ``malformed`` (not a chain line), ``noncanonical`` (not the exact canonical bytes of
            its content: whitespace, key order, escapes), ``duplicate_key``, ``torn`` (no line end),
            ``edited``, ``deleted``, ``inserted``, ``reordered``, ``start`` (the chain does not
            begin at its first line), ``empty``, ``truncated`` (it does not end where it should:
            at the expected head, or at a signed closing checkpoint), ``missing_file`` (the chain
            continues in a file that is not given), ``checkpoint`` (a checkpoint whose signature
            or content does not verify), ``unclaimed`` (an event line no signed checkpoint claims
            as its writer's own), ``unsealed`` (no signed checkpoint at all) or ``lost``
            (the writer recorded events it could not write: an ``audit.gap`` line).
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
        events: how many event lines were read.
        checkpoints: how many checkpoint lines were read (and verified, with a key).
        sealed: with a key, whether the log ends with a signed closing checkpoint (``None``
            without a key).
        unsealed: lines after the last verified checkpoint (with a key).
        last_checkpoint: the payload of the last verified checkpoint (with a key).
        unclaimed: event lines no verified checkpoint claims as its writer's own (with a key;
            reported as problems unless ``live``).
    """

    files: tuple[str, ...]
    lines: int
    first_seq: int | None
    last_seq: int | None
    head: str | None
    problems: tuple[ChainProblem, ...]
    events: int = 0
    checkpoints: int = 0
    sealed: bool | None = None
    unsealed: int = 0
    last_checkpoint: dict[str, Any] | None = None
    unclaimed: int = 0

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def read_chain(path: str | os.PathLike[str]) -> list[tuple[int, dict[str, Any] | None]]:
    """The lines of one log file as ``(line number, record or None if malformed)``.

    Records are event lines (key ``event``) and checkpoint lines (key ``checkpoint``).

    Raises:
        OSError: the file cannot be read.
    """
    return [(number, record) for number, _, record, _ in _iter_file(path)]


def _iter_file(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes, dict[str, Any] | None, str]]:
    """``(line number, raw bytes, record or None, why not)`` for each line of a file."""
    with _read_file(path) as f:
        for number, raw in enumerate(_bounded_lines(f), 1):
            if raw is None:
                yield number, b"", None, f"line longer than {_MAX_LINE} bytes"
                continue
            if not raw.strip():
                yield number, raw, None, "blank line"
                continue
            record, why = _parse_checked(raw)
            yield number, raw, record, why


_ROTATED_NAME = re.compile(r"\.(\d{12})(?:\.[^.]*)?$")  # audit.000000001001.jsonl: a rotated file and its first seq
_SEQ_TAIL = re.compile(rb'"seq":(\d{1,19})\}\s*$')


def _first_seq_of(path: str | os.PathLike[str]) -> int | None:
    for _, _, record, _ in _iter_file(path):
        if record is not None:
            seq: int = record["seq"]
            return seq
    return None


def _load_keys(public_key: Any) -> CheckpointKeys | None:
    if public_key is None:
        return None
    from mcpgov.audit._checkpoint import CheckpointKeys, CheckpointSigner  # noqa: PLC0415 - only with a key

    if isinstance(public_key, CheckpointKeys):
        return public_key
    if isinstance(public_key, CheckpointSigner):
        return public_key.public_keys()
    return CheckpointKeys.from_file(public_key)


EventVisitor = Callable[[str, int, int, dict[str, Any]], None]
"""Called by :func:`verify_chain` with ``(file, line, seq, event data)`` for each event line."""


def verify_chain(  # noqa: PLR0915 - one pass over the lines, its state kept in one place
    paths: Sequence[str | os.PathLike[str]],
    *,
    partial: bool = False,
    head: str | None = None,
    public_key: Any = None,
    live: bool = False,
    visit: EventVisitor | None = None,
) -> ChainReport:
    """Check the hash chain of one log, given as one or more files (in any order).

    Files are put in chain order by their first sequence number and read once, line by line.
    Every line must be exactly the canonical encoding of its content (so a duplicated key, an
    added space, reordered keys or a rewritten escape are found even where the parsed values
    would hash the same), every hash is recomputed, and every line must follow the one before it
    (``prev`` and ``seq``), also across files. Each break is reported with its file and line.

    With ``public_key``, every checkpoint's signature is checked, and the log must end with a
    signed closing checkpoint: lines removed from the end, a deleted last file and a chain
    rebuilt without the private key are reported without any external anchor.

    Args:
        paths: the files of the log (the active file and its rotated predecessors).
        partial: accept a chain that starts mid-way (older files were archived or removed);
            by default the first line must be the chain's first (``seq`` 1).
        head: the expected hash of the last line (an anchor kept elsewhere).
        public_key: the checkpoint verification key(s): a key file (the JWKS ``mcpgov keys
            generate`` writes, or its public half from ``mcpgov keys jwks``, or a PEM key), or a
            :class:`~mcpgov.audit.CheckpointKeys`.
        live: the log is still being written: lines after the last checkpoint, and a last
            checkpoint that is not a closing one, are accepted (and counted in ``unsealed``).
        visit: called with ``(file, line, seq, event data)`` for every event line that parses.

    Returns:
        The report; ``report.ok`` is true when nothing was found.

    Raises:
        OSError: a file cannot be read.
        ConfigurationError: ``public_key`` cannot be loaded.
    """
    keys = _load_keys(public_key)
    order: list[tuple[float, int, str]] = []
    for index, path in enumerate(paths):
        first = _first_seq_of(path)
        order.append((float("inf") if first is None else float(first), index, str(path)))
    order.sort()

    problems: list[ChainProblem] = []
    if partial and order and order[0][0] != float("inf"):
        # Archived files leave the chain starting at a file's first line, and a rotated file is
        # named for its first seq: a first file starting later than its name lost its first lines.
        named = _ROTATED_NAME.search(Path(order[0][2]).name)
        if named is not None and int(named.group(1)) != int(order[0][0]):
            begins = int(named.group(1))
            problems.append(
                ChainProblem(
                    order[0][2],
                    1,
                    "deleted" if int(order[0][0]) > begins else "inserted",
                    f"the file is named for seq {begins} but begins at seq {int(order[0][0])}: lines were cut "
                    "from (or put before) its start",
                )
            )
    gaps: list[tuple[ChainProblem, int, int]] = []  # (placeholder, expected, found) to classify at the end
    late: list[tuple[int, str, int]] = []  # (problem index, file, seq) of a seq lower than expected
    expected_prev: str | None = None if partial else GENESIS
    expected_seq: int | None = None if partial else 1
    first_seq: int | None = None
    last: dict[str, Any] | None = None
    last_file, last_line = (order[-1][2] if order else ""), 0
    total = events = checkpoints = 0
    since_checkpoint = 0
    last_checkpoint: dict[str, Any] | None = None
    unclaimed: dict[int, tuple[str, int]] = {}  # with a key: event lines no checkpoint claimed yet
    anchored = partial
    start_checked = False  # partial: the first file's start, against the first checkpoint naming it
    file_first: int | None = None
    for _, _, name in order:
        number = 0
        for number, raw, record, why in _iter_file(name):
            total += 1
            if record is None:
                problems.append(ChainProblem(name, number, "malformed", f"not a chain line: {why}"))
                expected_prev = expected_seq = None  # re-anchor on the next valid line
                since_checkpoint += 1
                continue
            seq, prev = record["seq"], record["prev"]
            if first_seq is None:
                first_seq = file_first = seq
            content = _content(record)
            if content is None:
                problems.append(ChainProblem(name, number, "noncanonical", "the content has no canonical JSON form"))
            else:
                if raw != _expected_line(record, content):
                    problems.append(_noncanonical(name, number, raw, record, content))
                if line_hash(prev, seq, content) != record["hash"]:
                    problems.append(ChainProblem(name, number, "edited", "the line's content does not match its hash"))
            if not anchored and last is None and (seq != 1 or prev != GENESIS):
                problems.append(
                    ChainProblem(
                        name,
                        number,
                        "start",
                        f"the chain starts at seq {seq}, not at its beginning: earlier lines or files are missing "
                        "(give the older files too, or --partial if they were archived)",
                    )
                )
            elif (
                expected_prev is not None
                and expected_seq is not None
                and (prev != expected_prev or seq != expected_seq)
            ):
                if seq > expected_seq:
                    placeholder = ChainProblem(name, number, "deleted", "")
                    gaps.append((placeholder, expected_seq, seq))
                    problems.append(placeholder)
                elif seq == expected_seq:
                    problems.append(
                        ChainProblem(
                            name,
                            number,
                            "inserted",
                            "does not chain to the line before it: that line was inserted or replaced",
                        )
                    )
                else:
                    late.append((len(problems), name, seq))
                    problems.append(
                        ChainProblem(
                            name, number, "reordered", f"out of order: seq {seq} comes after seq {expected_seq - 1}"
                        )
                    )
            anchored = True
            expected_prev, expected_seq = record["hash"], seq + 1
            last = record
            if "event" in record:
                events += 1
                since_checkpoint += 1
                if keys is not None:
                    unclaimed.setdefault(seq, (name, number))
                if record["event"].get("type") == "audit.gap":
                    problems.append(_gap(name, number, record["event"]))
                if visit is not None:
                    visit(name, number, seq, record["event"])
            else:
                checkpoints += 1
                if keys is None:
                    continue
                try:
                    payload = keys.check(record["checkpoint"])
                except ValueError as exc:
                    problems.append(ChainProblem(name, number, "checkpoint", f"forged or altered checkpoint: {exc}"))
                    since_checkpoint += 1
                    continue
                if payload["seq"] != seq or payload["prev"] != prev:
                    problems.append(
                        ChainProblem(
                            name,
                            number,
                            "checkpoint",
                            f"the signed checkpoint is for seq {payload['seq']} after another head: "
                            "the chain before it was rebuilt or the checkpoint moved",
                        )
                    )
                    since_checkpoint += 1
                    continue
                _claim_lines(unclaimed, payload)
                if partial and name == order[0][2] and not start_checked:
                    problem = _cut_start(name, payload.get("file_first"), file_first)
                    if problem is not None:
                        start_checked = True  # one problem for the file, however many checkpoints name it
                        problems.append(problem)
                last_checkpoint = dict(payload, file=name, line=number)
                since_checkpoint = 0
        if number:
            last_file, last_line = name, number
    if gaps or late:
        _classify(gaps, late, problems, order)
    if total == 0:
        problems.append(ChainProblem(last_file, 0, "empty", "the log holds no line at all"))
    if head is not None and (last is None or last["hash"] != head):
        where = f"seq {last['seq']} ({last['hash']})" if last is not None else "no valid line"
        problems.append(
            ChainProblem(last_file, last_line, "truncated", f"the chain ends at {where}, not at the expected head")
        )
    sealed: bool | None = None
    if keys is not None and total:
        sealed = False
        if last_checkpoint is None:
            problems.append(
                ChainProblem(
                    last_file,
                    0,
                    "unsealed",
                    "no checkpoint signed by the given key: the log was written without that checkpoint key, "
                    "or the chain was rebuilt",
                )
            )
        elif since_checkpoint:
            if not live:
                problems.append(
                    ChainProblem(
                        last_file,
                        last_line,
                        "truncated",
                        f"{since_checkpoint} line(s) after the last signed checkpoint "
                        f"({last_checkpoint['file']}:{last_checkpoint['line']}, seq {last_checkpoint['seq']}) and no "
                        "closing checkpoint: lines were removed from the end, or the writer did not close the log "
                        "(--live accepts a log still being written)",
                    )
                )
        elif last_checkpoint["reason"] == "rotate":
            problems.append(
                ChainProblem(
                    last_file,
                    last_line,
                    "missing_file",
                    f"the chain continues after seq {last_checkpoint['seq']} in a file that was rotated and is "
                    "missing (deleted?)",
                )
            )
        elif last_checkpoint["reason"] == "close":
            sealed = True
        elif not live:
            problems.append(
                ChainProblem(
                    last_file,
                    last_line,
                    "truncated",
                    f"the log ends at a {last_checkpoint['reason']} checkpoint (seq {last_checkpoint['seq']}), not a "
                    "closing one: lines after it were removed, or the writer did not close the log "
                    "(--live accepts a log still being written)",
                )
            )
    if unclaimed and last_checkpoint is not None and not live:
        _unclaimed_problems(unclaimed, last_checkpoint["seq"], problems)
    return ChainReport(
        files=tuple(name for _, _, name in order),
        lines=total,
        first_seq=first_seq,
        last_seq=last["seq"] if last is not None else None,
        head=last["hash"] if last is not None else None,
        problems=tuple(problems),
        events=events,
        checkpoints=checkpoints,
        sealed=sealed,
        unsealed=since_checkpoint if keys is not None else 0,
        unclaimed=len(unclaimed),
        last_checkpoint=dict(last_checkpoint) if last_checkpoint is not None else None,
    )


def _cut_start(name: str, signed: int | None, found: int | None) -> ChainProblem | None:
    """The problem of a first file whose signed start (``file_first`` of a checkpoint in it) is
    not the seq it begins at: lines cut from its start, or put before it."""
    if signed is None or found is None or signed == found:
        return None
    cut = found > signed
    return ChainProblem(
        name,
        1,
        "deleted" if cut else "inserted",
        f"a signed checkpoint says the file begins at seq {signed}, but it begins at seq {found}: lines were "
        + ("cut from its start" if cut else "put before its start"),
    )


def _claim_lines(unclaimed: dict[int, tuple[str, int]], payload: dict[str, Any]) -> None:
    """Take the event lines a verified checkpoint claims off ``unclaimed`` (a checkpoint without
    ``lines``, from before writers named their own lines, claims every line before it)."""
    ranges = payload.get("lines")
    if ranges is None:
        ranges = [[1, payload["seq"] - 1]]
    for first, last in ranges:
        if last - first + 1 > len(unclaimed):
            for seq in [s for s in unclaimed if first <= s <= last]:
                del unclaimed[seq]
        else:
            for seq in range(first, last + 1):
                unclaimed.pop(seq, None)


_MAX_UNCLAIMED_REPORTED = 20


def _unclaimed_problems(unclaimed: dict[int, tuple[str, int]], sealed_to: int, problems: list[ChainProblem]) -> None:
    """One problem per event line before the last checkpoint that no checkpoint claims (lines after
    it are reported as truncated), the first few by name and the rest counted."""
    found = sorted((seq, where) for seq, where in unclaimed.items() if seq < sealed_to)
    for seq, (name, number) in found[:_MAX_UNCLAIMED_REPORTED]:
        problems.append(
            ChainProblem(
                name,
                number,
                "unclaimed",
                f"no signed checkpoint claims seq {seq}: it was appended by someone without the key (a writer "
                "continued the chain after it), or its writer stopped before its next checkpoint",
            )
        )
    if len(found) > _MAX_UNCLAIMED_REPORTED:
        name, number = found[_MAX_UNCLAIMED_REPORTED][1]
        problems.append(
            ChainProblem(
                name, number, "unclaimed", f"{len(found) - _MAX_UNCLAIMED_REPORTED} more line(s) no checkpoint claims"
            )
        )


def _gap(name: str, number: int, event: dict[str, Any]) -> ChainProblem:
    """The problem an ``audit.gap`` line records: events the writer could not write."""
    attributes = event.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    lost, since, reason = attributes.get("lost"), attributes.get("since"), event.get("reason")
    count = str(lost) if type(lost) is int else "some"
    if reason == "log_cut":
        seq, found = attributes.get("seq"), attributes.get("found_seq")
        return ChainProblem(
            name,
            number,
            "lost",
            f"the writer found the log it had written up to seq {seq if type(seq) is int else '?'} cut back to "
            f"seq {found if type(found) is int else '?'}: lines were removed or replaced",
        )
    when = f" since {since[:40]}" if isinstance(since, str) else ""
    why = f" ({reason[:40]})" if isinstance(reason, str) else ""
    return ChainProblem(
        name, number, "lost", f"the writer recorded that {count} event(s){when} could not be written{why}"
    )


def _noncanonical(name: str, number: int, raw: bytes, record: dict[str, Any], content: bytes) -> ChainProblem:
    expected = _expected_line(record, content)
    if raw == expected[:-1]:
        return ChainProblem(name, number, "torn", "the line has no line end (a torn write, or the file was cut)")
    duplicate = _duplicate_key(raw)
    if duplicate is not None:
        return ChainProblem(
            name,
            number,
            "duplicate_key",
            f"key {json.dumps(duplicate)[:80]} appears twice in one object: readers may see a value other than "
            "the one hashed",
        )
    return ChainProblem(
        name,
        number,
        "noncanonical",
        "the line is not the exact canonical encoding of its content (whitespace, key order, number format or "
        "escapes changed)",
    )


def _classify(
    gaps: list[tuple[ChainProblem, int, int]],
    late: list[tuple[int, str, int]],
    problems: list[ChainProblem],
    order: list[tuple[float, int, str]],
) -> None:
    """Name each gap as deleted or reordered lines, and each late seq as reordered or duplicated."""
    positions: dict[int, tuple[str, int]] = {}
    duplicates: dict[int, tuple[str, int]] = {}
    for _, _, name in order:
        with _read_file(name) as f:
            for number, raw in enumerate(_bounded_lines(f), 1):
                if raw is None:
                    continue
                m = _SEQ_TAIL.search(raw[-40:])
                if m is None:
                    continue
                seq = int(m.group(1))
                if seq in positions:
                    duplicates.setdefault(seq, positions[seq])
                else:
                    positions[seq] = (name, number)
    for placeholder, expected, seq in gaps:
        index = problems.index(placeholder)
        missing = range(expected, seq)
        if all(s in positions for s in missing):
            problems[index] = dataclasses.replace(
                placeholder, kind="reordered", message=f"out of order: expected seq {expected}, found {seq}"
            )
        else:
            count = len(missing)
            problems[index] = dataclasses.replace(
                placeholder,
                message=f"{count} line{'s' if count != 1 else ''} missing before this line (seq {expected}"
                + (f"..{seq - 1})" if count > 1 else ")"),
            )
    for index, _name, seq in late:
        original = duplicates.get(seq)
        if original is not None and original != (problems[index].file, problems[index].line):
            problems[index] = dataclasses.replace(
                problems[index],
                kind="inserted",
                message=f"seq {seq} appears twice (also at {original[0]}:{original[1]}): a line was inserted or "
                "duplicated",
            )
