"""Keeping bearer tokens and secrets out of log records: the MCP SDK and HTTP libraries log whole
messages (``_meta`` included) at DEBUG level, and a credential or identity token travels there; the SDK
logs the exception a tool raised, whose message can hold the secret the tool was called with."""

from __future__ import annotations

import base64
import logging
import re
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["REDACTED", "TokenRedactingFilter", "redact_known_secrets", "redact_token_logs"]

REDACTED = "[secure]"
"""What replaces a token in a log record."""

# A compact JWS/JWT: three base64url parts, the first a JSON object (the protected header). The
# header's JSON may start with whitespace or put any member first, so its encoding has no fixed
# prefix: a candidate is redacted when its first part decodes to '{"' (JSON whitespace allowed).
_CANDIDATE = re.compile(r"([A-Za-z0-9_-]{4,})(\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)")
_JSON_SPACE = b" \t\r\n"
_MAX_LEAD = 64
"""How far into a run of base64url characters a header may start (text glued before it, such as
``%22`` or ``token%3D``)."""


def _is_header(segment: str) -> bool:
    """Whether ``segment`` is base64url of a JSON object's start, ``{`` then a member name's
    ``"`` (only its first bytes are decoded)."""
    head = segment[:32]
    head = head[: len(head) - len(head) % 4]
    try:
        data = base64.urlsafe_b64decode(head).lstrip(_JSON_SPACE)
    except ValueError:
        return False
    return data.startswith(b"{") and data[1:].lstrip(_JSON_SPACE).startswith(b'"')


def _redact_match(match: re.Match[str]) -> str:
    first = match.group(1)
    for start in range(min(len(first) - 3, _MAX_LEAD)):
        if _is_header(first[start:]):
            return first[:start] + REDACTED
    return match.group(0)


_known: list[weakref.WeakMethod[Callable[[str], str]]] = []
"""The scrubbers of secrets a running component knows by value (a gateway's upstream
credentials), held weakly: a component that is gone scrubs nothing more."""


def redact_known_secrets(scrub: Callable[[str], str]) -> None:
    """Also remove, from every record :func:`redact_token_logs` covers, the secrets ``scrub``
    knows by value: ``scrub(text)`` returns ``text`` with each of them replaced by the audit
    redaction marker (a component's bound method, held weakly; e.g. a gateway's scrubber of its
    upstreams' credentials, in every form they may come back in)."""
    with _lock:
        _known[:] = [ref for ref in _known if ref() is not None]
        _known.append(weakref.WeakMethod(scrub))
    redact_token_logs()


def scrub_known(text: str) -> str:
    """``text`` with every secret a running component registered (:func:`redact_known_secrets`) removed."""
    for ref in tuple(_known):
        scrub = ref()
        if scrub is not None:
            text = scrub(text)
    return text


def _redact_tokens(text: str) -> str:
    from mcpgov._audit import _default_redactor  # noqa: PLC0415 - mcpgov._audit imports mcpgov.credentials
    from mcpgov.audit._redact import REDACTED as AUDIT_REDACTED  # noqa: PLC0415

    redacted = scrub_known(_default_redactor().text(text)) if _known else _default_redactor().text(text)
    if redacted != text:  # one marker in logs: what the audit redactor removed reads as a token does
        text = redacted.replace(AUDIT_REDACTED, REDACTED)
    if "." in text:
        text = _CANDIDATE.sub(_redact_match, text)
    return text


_LOGGER_PREFIXES = (
    "mcp",
    "mcpgov",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "starlette",
    "uvicorn",
    "sse_starlette",
)
"""Records of these loggers (and their children) are redacted: the libraries a session runs on."""


def _covered(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in _LOGGER_PREFIXES)


class TokenRedactingFilter(logging.Filter):
    """A ``logging.Filter`` replacing every compact JWS in a record's message, and every token
    and secret the default audit :class:`~mcpgov.audit.Redactor` finds, with ``[secure]``.

    The message is formatted once (``msg % args``) and replaced by its redacted text; records
    without a token or secret pass unchanged. Exception text is redacted the same way.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redact(record)
        return True


def redact(record: logging.LogRecord) -> None:
    """Redact tokens in ``record`` in place."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a record that cannot be formatted is left to logging's own handling
        return
    try:
        redacted = _redact_tokens(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_info and record.exc_text is None:
            text = logging.Formatter().formatException(record.exc_info)
            redacted = _redact_tokens(text)
            if redacted != text:
                record.exc_text = redacted
                record.exc_info = None
    except Exception:  # noqa: BLE001 - a record that could not be redacted is not logged as it was
        record.msg, record.args, record.exc_info, record.exc_text = "[redacted]", None, None, None


_lock = threading.Lock()
_installed: list[Any] = []


def redact_token_logs() -> None:
    """Redact tokens and secrets from every record of mcpgov's, the MCP SDK's and the HTTP
    stack's loggers, present and future (idempotent; every governed server and client calls it,
    as do :class:`~mcpgov.credentials.ClientCredentials` and
    :class:`~mcpgov.credentials.CredentialMiddleware`).

    Installed as a log record factory that wraps the current one, so it also covers loggers
    created later; only records of those libraries are touched, and only when a level that
    creates them is enabled.
    """
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _covered(record.name):
                redact(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed.append(factory)
