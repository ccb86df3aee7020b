"""The one normal form of resource URIs every decider judges.

A resource URI names one thing as spelt and may name another once a server resolves it: a dot
segment (``file:///public/../secret``), a backslash, percent-encoding of a character that needs
none (``file:///sec%72et``, which a server decodes), an encoded separator, ``%`` or control
character, a control character, or a Unicode compatibility character (a fullwidth letter, which
NFKC folds).

:func:`uri_problem` names the first such problem. A governed server refuses a URI that has one
before any decision (``-32602``, ``uri_invalid``); a glob pattern (a policy rule's or a hook's)
never matches one, on either side, so no allow reaches it by a pattern and the default deny
stands unless a rule or hook names that exact spelling.

A scheme is case-insensitive (RFC 3986): ``FILE:///secret`` and ``file:///secret`` are one URI,
and ``urllib.parse`` reads both as ``file``. It is not refused (a server may register a resource
under an upper-case scheme); instead a glob is matched against :func:`scheme_folded` as well, so
a deny of ``file:///secret*`` also stops ``FILE:///secret``.

A host is case-insensitive too, and a server commonly reads only the host of an authority
(``urlsplit(uri).hostname``: lower case, without user-info or port), so ``vault://PROD/key``,
``vault://user@prod/key`` and ``vault://prod:443/key`` may all name ``vault://prod/key``. They
are not refused (an MCP template such as ``greeting://{name}`` puts a case-sensitive name, or
an address with an ``@``, where the host goes, and a port is ordinary); instead whatever only
restricts (a deny, an approval, a label) is also matched against :func:`authority_folded`, and
with its own pattern folded the same way, while an allow is matched only against the URI as
received (or with its scheme folded): a deny must hold for every reading a server could take,
an allow only for the one it names.

A server that resolves the path of a URI as a file path (``urlsplit(uri).path``, then the file
system) reads ``vault://prod//key``, ``vault://prod/key/``, ``vault://prod/key?v=2`` and
``file:////secret`` as ``vault://prod/key`` and ``file:///secret``. So what only restricts is
also matched against :func:`path_folded` (query and fragment dropped, runs of ``/`` as one, no
trailing ``/``); an allow never is.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

__all__ = ["authority_folded", "path_folded", "restricting_readings", "scheme_folded", "uri_problem"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_AUTHORITY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*:)//([^/?#]*)")
_UNRESERVED = re.compile(r"%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|2[DdEe]|5[Ff]|7[Ee])")
_STRUCTURAL = re.compile(r"%(?:2[Ff]|5[Cc]|25|00|0[1-9A-Fa-f]|1[0-9A-Fa-f]|7[Ff])")


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` is not in its normal form (a sentence naming no part of it), or ``None``."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        return "the resource URI contains control characters"
    if not uri.isascii() and unicodedata.normalize("NFKC", uri) != uri:
        return "the resource URI is not in Unicode normal form (NFKC)"
    if "%" in uri:
        if _UNRESERVED.search(uri):
            return "the resource URI percent-encodes characters that need no encoding"
        if _STRUCTURAL.search(uri):
            return "the resource URI percent-encodes a separator, '%' or a control character"
    rest = uri.split("://", 1)[-1]
    if "\\" in rest:
        return "the resource URI has a backslash (send its normal form)"
    if any(segment in (".", "..") for segment in rest.split("/")):
        return "the resource URI has a '.' or '..' segment (send its normal form)"
    return None


def scheme_folded(uri: str) -> str:
    """``uri`` with its scheme in lower case (the same URI: schemes are case-insensitive)."""
    scheme = _SCHEME.match(uri)
    if scheme is None or scheme.group().islower():
        return uri
    return scheme.group().lower() + uri[scheme.end() :]


def authority_folded(uri: str) -> str:
    """``uri`` as a server that reads only its host sees it: the scheme in lower case and the
    authority reduced to its host, in lower case, without user-info, port or a trailing dot
    (``vault://User@PROD.:443/key`` reads as ``vault://prod/key``). A URI without an authority
    (``file:///x`` has an empty one) only has its scheme folded. Also used on glob patterns."""
    found = _AUTHORITY.match(uri)
    if found is None:
        return scheme_folded(uri)
    host = found.group(2).rpartition("@")[2]  # the last '@' ends the user-info, as urllib reads it
    if host.startswith("["):
        closing = host.find("]")
        host = host if closing < 0 else host[: closing + 1]
    else:
        host = host.partition(":")[0]
    host = host.lower()
    if host.endswith(".") and host.strip("."):
        host = host.rstrip(".")  # an absolute DNS name: "prod." names "prod"
    return found.group(1).lower() + "//" + host + uri[found.end() :]


_SLASHES = re.compile(r"/{2,}")


def path_folded(uri: str) -> str:
    """``uri`` as a server that reads only its path and resolves it as a file path sees it:
    without query or fragment, each run of ``/`` in the path as one ``/``, and no trailing ``/``
    (``file:////secret//x/?v=1`` reads as ``file:///secret/x``). For URIs, never glob patterns
    (where ``?`` is a wildcard)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if not parts.scheme:
        return uri
    path = _SLASHES.sub("/", parts.path).rstrip("/")
    has_authority = uri[len(parts.scheme) + 1 :].startswith("//")
    return uri[: len(parts.scheme)] + ":" + ("//" + parts.netloc if has_authority else "") + path


def restricting_readings(uri: str) -> set[str]:
    """Every reading of ``uri`` a deny, an approval or a label is also matched against: as a
    server reading only its host sees it (:func:`authority_folded`), and as one reading only its
    path (:func:`path_folded`), both ways together."""
    host = authority_folded(uri)
    return {host, path_folded(host), path_folded(uri)}
