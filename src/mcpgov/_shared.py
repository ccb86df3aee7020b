"""Strings shared between sessions instead of copied into each.

Every token a server verifies is decoded into fresh strings: the claim names, and values such as
the issuer, the audience, the tenant or the subject, identical in every session of a workload.
What outlives the request (a cached principal, verified claims) keeps one shared copy of each
instead (``sys.intern``: an interned string is freed like any other once nothing refers to it).
Values unique to one token (its id) are left alone: sharing them would save nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["shared_claims", "shared_text"]

_MAX_SHARED = 256
"""Longer strings are not worth sharing (and no claim value that recurs is that long)."""

_UNIQUE = frozenset({"jti"})
"""Claims whose values are unique per token."""


def shared_text(value: str) -> str:
    """``value``, as the one shared copy of equal strings (short strings only)."""
    if type(value) is str and len(value) <= _MAX_SHARED:  # not a subclass: intern() refuses those
        return sys.intern(value)
    return value


def _shared_value(value: Any) -> Any:
    if type(value) is str:
        return shared_text(value)
    if type(value) is list and all(type(item) is str for item in value):
        return [shared_text(item) for item in value]
    return value


def shared_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a decoded claims set whose names, and top-level text values (or lists of
    text) other than the token's id, are shared copies. Nested objects are kept as they are."""
    return {shared_text(name): value if name in _UNIQUE else _shared_value(value) for name, value in claims.items()}
