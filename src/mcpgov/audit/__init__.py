"""The audit trail: redaction, sinks, a tamper-evident log, OpenTelemetry, and queries.

Every event passes the :class:`Redactor` of its :class:`~mcpgov.Auditor` before any sink sees
it. Sinks are callables and compose:

* any sync or async callable (``print``, ``events.append``, :class:`mcpgov.testing.InMemoryAuditSink`);
* :class:`LoggingSink`: one structured Python logging record per event;
* :class:`JsonlSink`: a SHA-256 hash-chained JSON Lines file with rotation, signed checkpoints
  and several writer processes, checked byte for byte by :func:`verify_chain`
  (``mcpgov audit verify``);
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

from mcpgov._public import publish as _publish
from mcpgov.audit._checkpoint import CHECKPOINT_TYP, CheckpointKeys, CheckpointSigner
from mcpgov.audit._codec import event_from_dict, event_to_dict
from mcpgov.audit._jsonl import GENESIS, ChainProblem, ChainReport, JsonlSink, encode_event, verify_chain
from mcpgov.audit._otel import OTelSink
from mcpgov.audit._prove import DEFAULT_MAX_TTL, Call, CredentialGrant, Proof, ProofScope, Verdict, prove
from mcpgov.audit._query import EventFilter, Request, Trail, format_event, printable, read_events, task_trail
from mcpgov.audit._redact import DEFAULT_PATTERNS, DEFAULT_SECRET_KEYS, REDACT_FIELDS, REDACTED, Redactor
from mcpgov.audit._request import REQUEST_KEY, request_keys
from mcpgov.audit._sinks import FanOut, LoggingSink, QueuedSink

__all__ = [
    "CHECKPOINT_TYP",
    "DEFAULT_MAX_TTL",
    "DEFAULT_PATTERNS",
    "DEFAULT_SECRET_KEYS",
    "GENESIS",
    "REDACTED",
    "REDACT_FIELDS",
    "REQUEST_KEY",
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
    "encode_event",
    "event_from_dict",
    "event_to_dict",
    "format_event",
    "printable",
    "prove",
    "read_events",
    "request_keys",
    "task_trail",
    "verify_chain",
]

_publish(__name__, globals())
