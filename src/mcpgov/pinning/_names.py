"""Tool-name rules: the MCP naming rule (SEP-986) and collisions with approved names."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from confusables import is_confusable  # type: ignore[import-untyped]  # the package ships no type information
from mcp.shared.tool_name_validation import validate_tool_name

__all__ = ["find_collision", "fold_name", "name_problem"]


def name_problem(name: object) -> str | None:
    """Why ``name`` breaks the MCP tool-naming rule (SEP-986), or ``None`` when it follows it.

    Args:
        name: a tool name as listed by a server.

    Returns:
        A short explanation, or ``None`` for a valid name.
    """
    if not isinstance(name, str):
        return f"tool name is a {type(name).__name__}, not a string"
    result = validate_tool_name(name)
    if result.is_valid:
        return None
    return "; ".join(result.warnings) or "tool name breaks the MCP naming rule"


def fold_name(name: str) -> str:
    """``name`` after Unicode NFKC normalisation and case folding."""
    return unicodedata.normalize("NFKC", name).casefold()


def find_collision(name: str, approved: Iterable[str]) -> str | None:
    """The approved name that ``name`` could be mistaken for, if any.

    Two different names collide when they are equal after :func:`fold_name` (``Deploy`` and
    ``deploy``, its full-width form), or when the Unicode confusables data says one can be
    read as the other (``read_fi1e`` for ``read_file``, ``rn`` for ``m``), before or after folding.

    Args:
        name: the candidate name.
        approved: the names already approved.

    Returns:
        The first approved name ``name`` collides with, or ``None``.
    """
    folded = fold_name(name)
    for other in approved:
        if other == name:
            continue
        other_folded = fold_name(other)
        if folded == other_folded or is_confusable(name, other) or is_confusable(folded, other_folded):
            return other
    return None
