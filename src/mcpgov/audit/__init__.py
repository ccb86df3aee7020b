"""The audit trail: redaction, sinks, a tamper-evident log, OpenTelemetry, and queries.

Every event passes the :class:`Redactor` of its :class:`~mcpgov.Auditor` before any sink sees
it. Sinks are callables and compose:

* any sync or async callable (``print``, ``events.append``, :class:`mcpgov.testing.InMemoryAuditSink`);
* :class:`LoggingSink`: one structured Python logging record per event;
* :class:`JsonlSink`: a SHA-256 hash-chained JSON Lines file with rotation, checked by
  :func:`verify_chain` (``mcpgov audit verify``);
* :class:`OTelSink`: attributes and span events on the SDK's server span, decision counters;
* :class:`FanOut`: several sinks as one;
* :class:`QueuedSink`: a bounded queue and a worker thread in front of any of them, so file and
  network I/O stay off the call path (drops counted; flushed at shutdown).

Example (production)::

    auditor = Auditor(
        [OTelSink(), QueuedSink(FanOut(JsonlSink("/var/log/mcpgov/audit.jsonl"), LoggingSink()))],
        strict=True,
    )
    govern(server, hooks, audit=auditor)
"""

from typing import TYPE_CHECKING

from mcpgov._public import by_module as _by_module
from mcpgov._public import lazy_names as _lazy_names
from mcpgov._public import retired as _retired

__all__ = [
    "REDACT_FIELDS",
    "Call",
    "ChainProblem",
    "ChainReport",
    "CheckpointKeys",
    "CheckpointSigner",
    "CredentialGrant",
    "EventFilter",
    "FanOut",
    "JsonlSink",
    "LoggingSink",
    "OTelSink",
    "Proof",
    "ProofScope",
    "QueuedSink",
    "Redactor",
    "Request",
    "Trail",
    "Verdict",
    "event_from_dict",
    "event_to_dict",
    "printable",
    "prove",
    "read_events",
    "request_keys",
    "task_trail",
    "verify_chain",
]


if TYPE_CHECKING:
    from mcpgov.audit._checkpoint import CheckpointKeys, CheckpointSigner
    from mcpgov.audit._codec import event_from_dict, event_to_dict
    from mcpgov.audit._jsonl import ChainProblem, ChainReport, JsonlSink, verify_chain
    from mcpgov.audit._otel import OTelSink
    from mcpgov.audit._prove import Call, CredentialGrant, Proof, ProofScope, Verdict, prove
    from mcpgov.audit._query import EventFilter, Request, Trail, printable, read_events, task_trail
    from mcpgov.audit._redact import REDACT_FIELDS, Redactor
    from mcpgov.audit._request import request_keys
    from mcpgov.audit._sinks import FanOut, LoggingSink, QueuedSink

# Names load on first use, so `mcpgov audit verify` reads a chain without importing pydantic or
# OpenTelemetry.
_LAZY: dict[str, str] = _by_module(
    {
        "mcpgov.audit._checkpoint": ("CheckpointKeys", "CheckpointSigner"),
        "mcpgov.audit._prove": ("Call", "CredentialGrant", "Proof", "ProofScope", "Verdict", "prove"),
        "mcpgov.audit._query": ("printable", "EventFilter", "Request", "Trail", "read_events", "task_trail"),
        "mcpgov.audit._request": ("request_keys",),
        "mcpgov.audit._codec": ("event_from_dict", "event_to_dict"),
        "mcpgov.audit._jsonl": ("ChainProblem", "ChainReport", "JsonlSink", "verify_chain"),
        "mcpgov.audit._otel": ("OTelSink",),
        "mcpgov.audit._redact": ("REDACT_FIELDS", "Redactor"),
        "mcpgov.audit._sinks": ("FanOut", "LoggingSink", "QueuedSink"),
    }
)


# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    **_retired(
        {
            "mcpgov.audit._checkpoint": ("CHECKPOINT_TYP",),
            "mcpgov.audit._prove": ("DEFAULT_MAX_TTL",),
            "mcpgov.audit._redact": ("DEFAULT_PATTERNS", "DEFAULT_SECRET_KEYS", "REDACTED"),
            "mcpgov.audit._jsonl": ("GENESIS", "encode_event"),
            "mcpgov.audit._request": ("REQUEST_KEY",),
            "mcpgov.audit._query": ("format_event",),
        }
    ),
}

__getattr__ = _lazy_names(__name__, _LAZY, _DEPRECATED)
