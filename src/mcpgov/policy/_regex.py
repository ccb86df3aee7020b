"""Regular expressions for policy conditions: RE2, so matching time is linear in the input."""

from __future__ import annotations

from typing import Any

import re2

__all__ = ["compile_regex"]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 8 << 20


def compile_regex(pattern: str) -> Any:
    """Compile ``pattern`` with RE2 (linear-time matching, no backtracking).

    Raises:
        ValueError: RE2 refuses the pattern (backreferences, look-around, too large...); the
            message gives RE2's reason.
    """
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(f"regular expression {pattern!r} is refused by RE2 (linear-time matching): {detail}") from None
    except (TypeError, UnicodeError) as exc:
        raise ValueError(f"regular expression {pattern!r} cannot be compiled: {exc}") from None
