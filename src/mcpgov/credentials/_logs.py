"""Keeping bearer tokens out of log records: the MCP SDK and HTTP libraries log whole messages
(``_meta`` included) at DEBUG level, and a credential or identity token travels there."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

__all__ = ["REDACTED", "TokenRedactingFilter", "redact_token_logs"]

REDACTED = "[secure]"
"""What replaces a token in a log record."""

# A compact JWS/JWT: three base64url parts; the header of every JOSE token starts with '{"',
# which base64url-encodes as 'eyJ'. Identity tokens and credentials both have this shape.
_JWS = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")

_LOGGER_PREFIXES = ("mcp", "httpx", "httpx2", "httpcore", "httpcore2", "starlette", "uvicorn", "sse_starlette")
"""Records of these loggers (and their children) are redacted: the libraries a session runs on."""


def _covered(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in _LOGGER_PREFIXES)


class TokenRedactingFilter(logging.Filter):
    """A ``logging.Filter`` replacing every compact JWS in a record's message with ``[secure]``.

    The message is formatted once (``msg % args``) and replaced by its redacted text; records
    without a token pass unchanged. Exception text is redacted the same way.
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
    if "eyJ" in message:
        record.msg = _JWS.sub(REDACTED, message)
        record.args = None
    if record.exc_info and record.exc_text is None:
        text = logging.Formatter().formatException(record.exc_info)
        if "eyJ" in text:
            record.exc_text = _JWS.sub(REDACTED, text)
            record.exc_info = None


_lock = threading.Lock()
_installed: list[Any] = []


def redact_token_logs() -> None:
    """Redact tokens from every record of the MCP SDK's and the HTTP stack's loggers, present
    and future (idempotent; :class:`~mcpgov.credentials.ClientCredentials` and
    :class:`~mcpgov.credentials.CredentialMiddleware` call it).

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
