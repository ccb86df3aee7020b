"""Resource URI spellings every decider treats alike.

A URI with a dot segment (``.`` or ``..``), a backslash, a NUL or a percent-encoded dot or
separator names one thing as spelt and possibly another once a server resolves it (``file:///
public/../secret``). A glob pattern (a policy rule's or a hook's) never matches such a URI, so
no allow reaches it by a prefix; a governed server refuses it before any decision.
"""

from __future__ import annotations

__all__ = ["suspicious_uri"]


def suspicious_uri(uri: str) -> bool:
    """Whether ``uri`` has dot segments, backslashes, NULs or encoded dots or separators."""
    rest = uri.split("://", 1)[-1]
    if "\\" in rest or "\x00" in rest:
        return True
    lowered = rest.lower()
    if "%2e" in lowered or "%2f" in lowered or "%5c" in lowered:
        return True
    return any(seg in (".", "..") for seg in rest.split("/"))
