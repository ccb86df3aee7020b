"""OpenTelemetry sink: audit on the SDK's own server span, and decision counters as metrics.

Uses only ``opentelemetry-api``: with no SDK configured everything here is a no-op, and the
application chooses exporters. The MCP SDK's ``OpenTelemetryMiddleware`` opens one SERVER span
per request (``"tools/call NAME"`` with ``mcp.method.name``, ``gen_ai.tool.name``,
``jsonrpc.request.id``) and mcpgov's middleware runs inside it, so this sink *enriches the
current span* instead of opening another:

* span attributes say who and what: ``mcpgov.principal``, ``mcpgov.tenant``, ``mcpgov.task_id``,
  ``mcpgov.task_owner``, ``mcpgov.purpose``, ``mcpgov.args_hash``, ``mcpgov.credential.id``..., and the decision
  (``mcpgov.decision.effect``, ``mcpgov.decision.rule``, policy engine and version);
* one span event per audit event (``mcpgov.decision``, ``mcpgov.outcome``, ``mcpgov.approval.granted``...)
  carries the rest: the event id, reason, detail, outcome, latency, approver;
* nothing the SDK already put on the span (method, tool name, request id) is repeated.

Counters are recorded for every event whether or not the span is sampled: audit never depends
on trace sampling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import get_current_span

from mcpgov._audit import AuditEvent

if TYPE_CHECKING:
    from mcpgov._audit import Auditor

__all__ = ["OTelSink"]

# event field -> span attribute (request-level facts: who, on whose behalf, what, with what)
_SPAN_FIELDS: Mapping[str, str] = {
    "principal": "mcpgov.principal",
    "tenant": "mcpgov.tenant",
    "actors": "mcpgov.actors",
    "auth_method": "mcpgov.auth_method",
    "task_id": "mcpgov.task_id",
    "task_owner": "mcpgov.task_owner",
    "purpose": "mcpgov.purpose",
    "session_id": "mcpgov.session_id",
    "args_hash": "mcpgov.args_hash",
    "credential_id": "mcpgov.credential.id",
}
_DECISION_FIELDS: Mapping[str, str] = {
    "effect": "mcpgov.decision.effect",
    "rule": "mcpgov.decision.rule",
    "engine": "mcpgov.policy.engine",
    "policy_version": "mcpgov.policy.version",
}
# event field -> span event attribute (what this event adds)
_EVENT_FIELDS: Mapping[str, str] = {
    "id": "mcpgov.event.id",
    "reason": "mcpgov.reason",
    "detail": "mcpgov.detail",
    "error_code": "mcpgov.error_code",
    "outcome": "mcpgov.outcome",
    "latency_ms": "mcpgov.latency_ms",
    "approver": "mcpgov.approver",
    "shown": "mcpgov.listing.shown",
    "hidden": "mcpgov.listing.hidden",
}


class OTelSink:
    """Puts audit events on the current (SDK server) span and counts decisions and outcomes.

    Must run on the call path (it reads the request's span from the current context), so it
    cannot be put behind a :class:`~mcpgov.audit.QueuedSink`; it only sets attributes and
    adds counters, which is cheap.

    Metrics: ``mcpgov.decisions`` (by effect, rule, reason, method, side), ``mcpgov.outcomes``
    (by outcome, method, side), ``mcpgov.audit.events`` (by type); with :meth:`observe`, an
    auditor's delivery counters (``mcpgov.audit.lost``, ``mcpgov.audit.dropped``,
    ``mcpgov.audit.pending``).

    Args:
        meter_provider: where counters go (default: the global meter provider).
        span_attributes: set request-level attributes on the current span.
        span_events: add one span event per audit event.
    """

    call_path_only = True
    """Marks a sink :class:`~mcpgov.audit.QueuedSink` refuses to queue."""

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        span_attributes: bool = True,
        span_events: bool = True,
    ) -> None:
        self.name = "otel"
        self.span_attributes = span_attributes
        self.span_events = span_events
        self._meter = metrics.get_meter("mcpgov", meter_provider=meter_provider)
        self._decisions = self._meter.create_counter(
            "mcpgov.decisions", unit="{decision}", description="Governance decisions by effect and rule"
        )
        self._outcomes = self._meter.create_counter(
            "mcpgov.outcomes", unit="{request}", description="Outcomes of governed requests that ran"
        )
        self._events = self._meter.create_counter(
            "mcpgov.audit.events", unit="{event}", description="Audit events recorded, by type"
        )

    def __repr__(self) -> str:
        return f"OTelSink(span_attributes={self.span_attributes}, span_events={self.span_events})"

    def __call__(self, event: AuditEvent) -> None:
        """Count ``event`` and record it on the current span (if that span is recording)."""
        data = event.__dict__
        event_type = data["type"]
        self._events.add(1, {"mcpgov.event.type": event_type})
        if event_type == "decision":
            self._decisions.add(
                1,
                {
                    "mcpgov.decision.effect": data["effect"] or "unknown",
                    "mcpgov.decision.rule": data["rule"] or "none",
                    "mcpgov.decision.reason": data["reason"] or "none",
                    "mcp.method.name": data["method"],
                    "mcpgov.side": data["side"],
                },
            )
        elif event_type == "outcome":
            self._outcomes.add(
                1,
                {
                    "mcpgov.outcome": data["outcome"] or "unknown",
                    "mcp.method.name": data["method"],
                    "mcpgov.side": data["side"],
                },
            )
        span = get_current_span()
        if not span.is_recording():
            return
        if self.span_attributes:
            attributes = _pick(data, _SPAN_FIELDS)
            if event_type == "decision":
                attributes.update(_pick(data, _DECISION_FIELDS))
            if attributes:
                span.set_attributes(attributes)
        if self.span_events:
            span.add_event(f"mcpgov.{event_type}", _pick(data, _EVENT_FIELDS))

    def observe(self, auditor: Auditor) -> None:
        """Export ``auditor``'s delivery counters as observable metrics (lost, dropped, pending, refused)."""

        def reading(field: str) -> Any:
            def callback(options: CallbackOptions) -> Iterable[Observation]:
                return [Observation(getattr(auditor.stats(), field))]

            return callback

        self._meter.create_observable_counter(
            "mcpgov.audit.lost", callbacks=[reading("lost")], unit="{event}", description="Audit deliveries that failed"
        )
        self._meter.create_observable_counter(
            "mcpgov.audit.dropped",
            callbacks=[reading("dropped")],
            unit="{event}",
            description="Events refused by full queues",
        )
        self._meter.create_observable_counter(
            "mcpgov.audit.refused",
            callbacks=[reading("refused")],
            unit="{request}",
            description="Requests strict audit refused",
        )
        self._meter.create_observable_up_down_counter(
            "mcpgov.audit.pending",
            callbacks=[reading("pending")],
            unit="{event}",
            description="Events waiting in audit queues",
        )


def _pick(data: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, key in fields.items():
        value = data[field]
        if value is None or value == ():
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out
