"""Text that is safe to print on a terminal (light: the CLI's fast commands use it)."""

from __future__ import annotations

import json

__all__ = ["printable", "printable_word"]


def printable(value: object) -> str:
    """``value`` as text safe to print on a terminal: control and format characters (newlines,
    escape sequences, bidirectional overrides, zero-width characters) are shown escaped
    (``\\x1b``, ``\\u202e``), so a client-chosen name can never print a fake line or restyle output."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable_word(value: object) -> str:
    """``value`` as one word of a printed line: as it is when it is plain (printable, with no space,
    quote or backslash), else double-quoted with JSON escapes (and :func:`printable`), so a
    recorded name such as ``x rule=admin approver=alice`` never prints as fields of its own and
    shell-style splitting reads every word back whole."""
    text = value if isinstance(value, str) else str(value)
    if text and text.isprintable() and not any(ch in _QUOTED for ch in text):
        return text
    return printable(json.dumps(text, ensure_ascii=False))


_QUOTED = frozenset(" \"'\\")
