"""Pinned manifests: the approved fingerprint of every tool of one server, and their files."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import rfc8785
from joserfc.jwk import Key
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcpgov._datafile import unique_json_pairs
from mcpgov._errors import PinningError
from mcpgov.pinning._fingerprint import TOOL_FIELDS, ToolLike, tool_fingerprint, tool_wire_form
from mcpgov.pinning._keys import PublisherKeys, sign_payload
from mcpgov.pinning._names import NameIndex, find_collision, name_problem

__all__ = [
    "MANIFEST_FORMAT",
    "SEQUENCED_FORMAT",
    "FilePinStore",
    "InlinePinStore",
    "Manifest",
    "PinStore",
    "PinnedTool",
    "ServerIdentity",
    "check_name_collisions",
    "dump_manifest",
    "parse_manifest",
    "read_manifest",
    "write_manifest",
]

MANIFEST_FORMAT: Literal["mcpgov.pins/1"] = "mcpgov.pins/1"
"""The ``format`` of a pinned manifest without a sequence number (still read)."""

SEQUENCED_FORMAT: Literal["mcpgov.pins/2"] = "mcpgov.pins/2"
"""The ``format`` of a pinned manifest with a ``sequence`` number (and an optional ``not_after``)."""

_FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
"""A pin file larger than this is refused unread (a manifest of thousands of tools is far smaller)."""


class ServerIdentity(BaseModel):
    """Who a manifest describes: the server's self-declared name and version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    version: str = ""


class PinnedTool(BaseModel):
    """One approved tool: its fingerprint, and the wire form the fingerprint was taken over."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fingerprint: str
    tool: dict[str, Any]

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint_shape(cls, value: str) -> str:
        if not _FINGERPRINT.match(value):
            raise ValueError("must be 'sha256:' and 64 lowercase hex digits")
        return value

    @model_validator(mode="after")
    def _fingerprint_matches(self) -> PinnedTool:
        extra = set(self.tool) - set(TOOL_FIELDS)
        if extra:
            raise ValueError(f"tool has fields a pin does not cover: {sorted(extra)}")
        if not isinstance(self.tool.get("inputSchema"), dict):
            raise ValueError("tool has no inputSchema object")  # noqa: TRY004 - pydantic reports ValueError
        try:
            actual = tool_fingerprint(self.tool)
        except ValueError as exc:
            raise ValueError(str(exc)) from exc
        if actual != self.fingerprint:
            raise ValueError("fingerprint does not match the pinned tool")
        return self


class Manifest(BaseModel):
    """The approved tools of one server (``mcpgov.pins/1``).

    Every pinned tool keeps its wire form next to its fingerprint, so a diff can say which field
    changed; loading checks each fingerprint against its tool, so an edited or damaged file is
    refused rather than trusted.

    ``mcpgov.pins/2`` adds a ``sequence`` number, one more for every manifest its publisher
    approves, and an optional ``not_after`` (an ISO 8601 date and time with its offset), both
    covered by the signature: a registry refuses a manifest older than one it accepted for the
    server (an approved pin put back after it was replaced), and one past its ``not_after``.

    Attributes:
        format: :data:`MANIFEST_FORMAT` (no sequence) or :data:`SEQUENCED_FORMAT`.
        server: the server's name and version when the manifest was taken.
        tools: approved tools by name.
        sequence: ``mcpgov.pins/2``: the manifest's number (1 and up).
        not_after: ``mcpgov.pins/2``: when the manifest stops being accepted, if ever.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["mcpgov.pins/1", "mcpgov.pins/2"] = MANIFEST_FORMAT
    server: ServerIdentity
    tools: dict[str, PinnedTool] = Field(default_factory=dict)
    sequence: int | None = Field(default=None, ge=1, le=2**53)
    not_after: str | None = None

    @field_validator("sequence", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError("must be a whole number")
        return value

    @field_validator("not_after")
    @classmethod
    def _instant(cls, value: str | None) -> str | None:
        if value is not None:
            _instant_of(value)
        return value

    @model_validator(mode="after")
    def _versioned(self) -> Manifest:
        if self.format == SEQUENCED_FORMAT and self.sequence is None:
            raise ValueError(f"a {SEQUENCED_FORMAT} manifest needs a 'sequence'")
        if self.format == MANIFEST_FORMAT and (self.sequence is not None or self.not_after is not None):
            raise ValueError(f"'sequence' and 'not_after' need format {SEQUENCED_FORMAT!r}")
        return self

    @property
    def expires_at(self) -> float | None:
        """``not_after`` as a POSIX time, or ``None``."""
        return _instant_of(self.not_after) if self.not_after is not None else None

    def succeeding(self, previous: Manifest | None = None, *, not_after: str | None = None) -> Manifest:
        """This manifest as the next one after ``previous``: ``mcpgov.pins/2``, its sequence one
        more than ``previous``'s (1 when ``previous`` is ``None`` or has none).

        Raises:
            PinningError: reason ``pin.malformed``: ``not_after`` is not an ISO 8601 date and
                time with an offset.
        """
        body = self.body()
        body.update(format=SEQUENCED_FORMAT, sequence=(previous.sequence or 0) + 1 if previous else 1)
        body.pop("not_after", None)
        if not_after is not None:
            body["not_after"] = not_after
        return _validated(body, "manifest")

    @model_validator(mode="after")
    def _names(self) -> Manifest:
        seen = NameIndex()
        for name, pin in self.tools.items():
            problem = name_problem(name)
            if problem is not None:
                raise ValueError(f"tool name {name!r} is not allowed: {problem}")
            if pin.tool.get("name") != name:
                raise ValueError(f"tool {name!r} is pinned under another name ({pin.tool.get('name')!r})")
            # Two approved names a reader cannot tell apart: whichever a model picks, nobody
            # approved that choice (a snapshot or an approval never pins such a pair).
            other = find_collision(name, seen)
            if other is not None:
                raise ValueError(f"tool names {other!r} and {name!r} can be mistaken for each other")
            seen.add(name)
        return self

    @classmethod
    def from_tools(cls, server_name: str, server_version: str, tools: Iterable[ToolLike]) -> Manifest:
        """Pin ``tools`` as they are now.

        Args:
            server_name: the server's self-declared name.
            server_version: the server's self-declared version.
            tools: the server's tools (``mcp_types.Tool`` or wire mappings).

        Returns:
            The manifest.

        Raises:
            PinningError: reason ``pin.malformed``: a tool name breaks the MCP naming rule, two
                tools share a name or collide (confusably), or a tool cannot be canonicalised.
        """
        pinned: dict[str, dict[str, Any]] = {}
        for tool in tools:
            try:
                form = tool_wire_form(tool)
            except ValueError as exc:
                raise PinningError(f"a tool cannot be pinned: {exc}", reason="pin.malformed") from exc
            name = form.get("name")
            if not isinstance(name, str):
                raise PinningError("a tool has no name", reason="pin.malformed")
            if name in pinned:
                raise PinningError(f"two tools are named {name!r}", reason="pin.malformed")
            try:
                pinned[name] = {"fingerprint": tool_fingerprint(form), "tool": form}
            except ValueError as exc:
                raise PinningError(f"tool {name!r}: {exc}", reason="pin.malformed") from exc
        check_name_collisions(pinned)
        return _validated({"server": {"name": server_name, "version": server_version}, "tools": pinned}, "snapshot")

    def fingerprint_of(self, name: str) -> str | None:
        """The pinned fingerprint of tool ``name``, or ``None`` when it is not pinned."""
        pin = self.tools.get(name)
        return pin.fingerprint if pin is not None else None

    def body(self) -> dict[str, Any]:
        """The manifest as plain JSON data (what a signature covers)."""
        data = self.model_dump(mode="json")
        for field in ("sequence", "not_after"):
            if data.get(field) is None:
                del data[field]  # absent, as in the file: an mcpgov.pins/1 manifest reads as it was signed
        return data

    def canonical(self) -> bytes:
        """The RFC 8785 canonical JSON of :meth:`body`."""
        data: bytes = rfc8785.dumps(self.body())
        return data

    @functools.cached_property
    def digest(self) -> str:
        """``sha256:`` of :meth:`canonical`: names this exact manifest in audit events."""
        return "sha256:" + hashlib.sha256(self.canonical()).hexdigest()


def _instant_of(value: str) -> float:
    """An ISO 8601 date and time with its offset, as a POSIX time."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError as exc:
        raise ValueError("must be an ISO 8601 date and time") from exc
    if len(value) < 16 or parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must be an ISO 8601 date and time with its offset (Z or +hh:mm)")
    return parsed.timestamp()


def check_name_collisions(names: Iterable[str]) -> None:
    """Refuse a set of tool names in which two names can be mistaken for each other.

    Raises:
        PinningError: reason ``name.collision``, naming the two names.
    """
    seen = NameIndex()
    for name in names:
        other = find_collision(name, seen)
        if other is not None:
            raise PinningError(
                f"tool names {other!r} and {name!r} can be mistaken for each other", reason="name.collision"
            )
        seen.add(name)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "manifest"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def _validated(data: Any, source: str) -> Manifest:
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise PinningError(
            f"{source} is not a valid pinned manifest ({_first_error(exc)})", reason="pin.malformed"
        ) from exc


def parse_manifest(
    data: Any,
    *,
    publisher: PublisherKeys | None = None,
    require_signature: bool = False,
    source: str = "manifest",
) -> Manifest:
    """Validate manifest data (as read from JSON), checking its signature when there is one.

    Args:
        data: the parsed JSON object (a manifest body, with an optional ``signature``).
        publisher: the publisher's keys. When given, the manifest must carry a valid signature
            by one of them.
        require_signature: when ``publisher`` is ``None``: ``True`` refuses a signed manifest
            (no key could vouch for it), ``False`` leaves a signature unchecked (local tooling).
        source: how to name the data in error messages (a file path...).

    Returns:
        The manifest.

    Raises:
        PinningError: reason ``pin.malformed``, ``pin.unsigned``, ``pin.bad_signature`` or
            ``pin.unknown_key``.
    """
    if not isinstance(data, Mapping):
        raise PinningError(f"{source} is not a JSON object", reason="pin.malformed")
    body = {key: value for key, value in data.items() if key != "signature"}
    signature = data.get("signature")
    try:
        manifest = _validated(body, source)
    except RecursionError as exc:
        raise PinningError(f"{source} is nested too deeply", reason="pin.malformed") from exc
    if publisher is not None:
        if signature is None:
            raise PinningError(f"{source} is not signed, but its server has a publisher key", reason="pin.unsigned")
        try:
            payload: bytes = rfc8785.dumps(body)
        except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
            raise PinningError(f"{source} cannot be canonicalised", reason="pin.malformed") from exc
        publisher.verify(signature, payload)
    elif signature is not None and require_signature:
        raise PinningError(
            f"{source} is signed, but no publisher key is configured to check it", reason="pin.unknown_key"
        )
    return manifest


def read_manifest(
    path: str | os.PathLike[str],
    *,
    publisher: PublisherKeys | None = None,
    require_signature: bool = False,
) -> Manifest:
    """Read and validate a pin file (see :func:`parse_manifest`).

    Raises:
        PinningError: reason ``pin.missing`` (no such file), ``pin.unreadable`` (cannot be read,
            too large), ``pin.malformed`` (not UTF-8 JSON, a key given twice in one object, nested
            too deeply), or any reason of :func:`parse_manifest`.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError as exc:
        raise PinningError(f"pin file {path} does not exist", reason="pin.missing") from exc
    except OSError as exc:
        raise PinningError(f"pin file {path} cannot be read ({type(exc).__name__})", reason="pin.unreadable") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise PinningError(f"pin file {path} is larger than {MAX_MANIFEST_BYTES} bytes", reason="pin.unreadable")
    try:
        # A key given twice is refused: one reader would take the first, another the last, and
        # a reviewer sees both; a pin means one thing.
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_json_pairs)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PinningError(f"pin file {path} is not valid JSON ({type(exc).__name__})", reason="pin.malformed") from exc
    except ValueError as exc:  # a duplicate key
        raise PinningError(f"pin file {path} is not valid JSON: {exc}", reason="pin.malformed") from exc
    except RecursionError as exc:
        raise PinningError(f"pin file {path} is nested too deeply", reason="pin.malformed") from exc
    return parse_manifest(data, publisher=publisher, require_signature=require_signature, source=f"pin file {path}")


def dump_manifest(manifest: Manifest, *, signing_key: Key | Mapping[str, Any] | None = None) -> str:
    """The JSON text of a pin file for ``manifest``, signed with ``signing_key`` when given.

    Args:
        manifest: the manifest.
        signing_key: the publisher's private key (joserfc key or private JWK mapping).

    Returns:
        Indented JSON with sorted keys and a final newline (stable, reviewable diffs).
    """
    data = manifest.body()
    if signing_key is not None:
        data["signature"] = sign_payload(manifest.canonical(), signing_key)
    return _escaped_json(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)) + "\n"


def _escaped_json(text: str) -> str:
    """JSON ``text`` with every character that is not printable (bidirectional overrides, C1
    controls, zero-width and tag characters, all inside strings) written as a JSON ``\\u`` escape:
    the same JSON data, and what a reviewer reads on a terminal or in a diff is what it holds."""
    if all(ch.isprintable() or ch == "\n" for ch in text):
        return text
    return "".join(ch if ch.isprintable() or ch == "\n" else json.dumps(ch)[1:-1] for ch in text)


def write_manifest(
    path: str | os.PathLike[str], manifest: Manifest, *, signing_key: Key | Mapping[str, Any] | None = None
) -> None:
    """Write a pin file atomically: a temporary file in the same directory, renamed over ``path``.

    A reader sees either the old file or the new one, never a half-written one.

    Args:
        path: the pin file.
        manifest: what to write.
        signing_key: sign the manifest with this private key.

    Raises:
        OSError: the file could not be written (``path`` is then unchanged).
    """
    path = Path(path)
    text = dump_manifest(manifest, signing_key=signing_key)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@runtime_checkable
class PinStore(Protocol):
    """Where one server's pinned manifest comes from."""

    def load(self) -> Manifest:
        """The current manifest.

        Raises:
            PinningError: the store is missing, unreadable, malformed or wrongly signed.
        """
        ...


class InlinePinStore:
    """A manifest given in configuration (validated once, at construction).

    Args:
        data: the manifest data (as in a pin file, optionally signed).
        publisher: the publisher's keys, when manifests must be signed.

    Raises:
        PinningError: the manifest is malformed or wrongly signed.
    """

    def __init__(self, data: Any, *, publisher: PublisherKeys | None = None) -> None:
        self._manifest = parse_manifest(data, publisher=publisher, require_signature=True, source="inline manifest")

    def __repr__(self) -> str:
        return f"InlinePinStore(server={self._manifest.server.name!r}, tools={len(self._manifest.tools)})"

    def load(self) -> Manifest:
        """The manifest."""
        return self._manifest


class FilePinStore:
    """A pin file, re-read whenever it changes on disk (``mcpgov pin approve`` replaces it atomically).

    A missing, unreadable, malformed or wrongly signed file makes :meth:`load` raise every time
    until the file is fixed: the last good manifest is never used in its place.

    Args:
        path: the pin file.
        publisher: the publisher's keys; when given, the file must be signed by one of them.
            Without them, a signed file is refused (nothing could check its signature).
    """

    def __init__(self, path: str | os.PathLike[str], *, publisher: PublisherKeys | None = None) -> None:
        self.path = Path(path)
        self.publisher = publisher
        self._file_stamp: tuple[int, int, int] | None = None
        self._manifest: Manifest | None = None

    def __repr__(self) -> str:
        return f"FilePinStore(path={str(self.path)!r}, signed={self.publisher is not None})"

    def load(self) -> Manifest:
        """The manifest in the file now (cached while the file's inode, size and mtime are unchanged).

        Raises:
            PinningError: see :func:`read_manifest`.
        """
        try:
            st = self.path.stat()
        except FileNotFoundError as exc:
            self._manifest = None
            raise PinningError(f"pin file {self.path} does not exist", reason="pin.missing") from exc
        except OSError as exc:
            self._manifest = None
            raise PinningError(
                f"pin file {self.path} cannot be read ({type(exc).__name__})", reason="pin.unreadable"
            ) from exc
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._manifest is not None and stamp == self._file_stamp:
            return self._manifest
        self._manifest = None
        manifest = read_manifest(self.path, publisher=self.publisher, require_signature=True)
        self._manifest, self._file_stamp = manifest, stamp
        return manifest
