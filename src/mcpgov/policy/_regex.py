"""Regular expressions for policy conditions: RE2, so matching time is linear in the input."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import re2

__all__ = ["compile_regex", "glob_to_regex"]

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


def glob_to_regex(pattern: str) -> str:
    """A glob (``*`` any run, ``?`` one character, ``[...]``/``[!...]`` a class) as an RE2 pattern
    with :func:`fnmatch.fnmatchcase` semantics (``*`` also crosses ``/``), matched in linear time.

    Character classes are translated by :func:`fnmatch.translate` itself (one class at a time),
    so ranges, negation and escapes mean exactly what they mean to ``fnmatch``.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if not out or out[-1] != "(?s:.*)":
                out.append("(?s:.*)")
        elif ch == "?":
            out.append("(?s:.)")
        elif ch == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape("["))
                continue
            translated = fnmatch.translate(pattern[i - 1 : j + 1])
            body = translated.removeprefix("(?s:").removesuffix(")\\Z")
            out.append(_NOTHING if body == "(?!)" else f"(?s:{body})")
            i = j + 1
        else:
            out.append(re.escape(ch))
    return "".join(out)


_NOTHING = "[^\\x00-\\x{10FFFF}]"
