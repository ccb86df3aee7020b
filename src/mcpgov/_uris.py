"""Resource URI spellings every decider treats alike.

A URI with a dot segment (``.`` or ``..``), a backslash, a NUL, a percent-encoded dot or
separator, or a scheme not in lower case names one thing as spelt and possibly another once a
server resolves it (``file:///public/../secret``; ``FILE:///secret``, which ``urllib.parse`` reads
as ``file``). A glob pattern (a policy rule's or a hook's) never matches such a URI, so
no allow reaches it by a prefix; a governed server refuses it before any decision.
"""

from __future__ import annotations

import re

__all__ = ["suspicious_uri"]


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def suspicious_uri(uri: str) -> bool:
    """Whether ``uri`` has dot segments, backslashes, NULs, encoded dots or separators, or a
    scheme that is not in lower case (RFC 3986's normal form)."""
    scheme = _SCHEME.match(uri)
    if scheme is not None and not scheme.group().islower():
        return True
    rest = uri.split("://", 1)[-1]
    if "\\" in rest or "\x00" in rest:
        return True
    lowered = rest.lower()
    if "%2e" in lowered or "%2f" in lowered or "%5c" in lowered:
        return True
    return any(seg in (".", "..") for seg in rest.split("/"))
