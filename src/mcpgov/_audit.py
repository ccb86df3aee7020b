"""Audit events and the auditor that delivers them to callbacks.

Every governed request produces:

* one ``decision`` event: the allow, deny or approval decision and the rule that made it.
  Refusals by other stages (malformed input, identity, credentials) are ``decision``
  events with ``effect="deny"`` too, so exactly one event records every refusal;
* for a request that was allowed and ran, one ``outcome`` event: ``completed``,
  ``failed`` or ``cancelled``, with its latency;
* for a listing, one ``list.filtered`` event naming what was hidden.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mcpgov._context import GovContext
from mcpgov._errors import ConfigurationError

__all__ = ["SCHEMA_VERSION", "AuditCallback", "AuditEvent", "Auditor", "EventType"]

logger = logging.getLogger("mcpgov.audit")

SCHEMA_VERSION = "1"

EventType = Literal[
    "decision",
    "outcome",
    "list.filtered",
    "session.bound",
    "identity.verified",
    "identity.refused",
    "credential.minted",
    "credential.verified",
    "credential.refused",
    "credential.revoked",
    "approval.requested",
    "approval.granted",
    "approval.refused",
    "pin.mismatch",
    "server.refused",
    "policy.reloaded",
    "policy.shadow_mismatch",
]
"""Every event type mcpgov emits (see the audit docs for when each is emitted)."""

AuditCallback = Callable[["AuditEvent"], Awaitable[None] | None]
"""A sink: a sync or async callable that receives every event."""


class AuditEvent(BaseModel):
    """One audit event. Immutable; ``schema_version`` changes when fields change meaning.

    Attributes:
        schema_version: version of this event model.
        id: unique event id (also sent to the peer in error data, to correlate).
        type: ``decision``, ``outcome`` or ``list.filtered``.
        time: when the event was created (UTC).
        side: ``client`` or ``server``.
        method: the MCP method.
        kind: tool, resource or prompt.
        target: tool or prompt name, or resource URI.
        principal: the caller as ``issuer#subject``; ``None`` before identity is known.
        tenant: the caller's tenant.
        actors: the actor chain (who the caller acts for), nearest first.
        session_id: session id, when the transport has one.
        request_id: JSON-RPC request id.
        task_id: task id.
        purpose: declared purpose.
        effect: for decisions, ``allow``, ``deny`` or ``require_approval``.
        rule: the rule, hook or stage that decided.
        reason: a short machine-readable reason (``default_deny``, ``hook_timeout``...).
        detail: a human-readable explanation (never a secret or token).
        error_code: the mcpgov error code for refusals and failures.
        outcome: for outcomes, ``completed``, ``failed`` or ``cancelled``.
        latency_ms: for outcomes, time from the start of governance to the result.
        args_hash: ``sha256:`` of the canonical JSON of the arguments.
        credential_id: the ``jti`` of the credential used, never the credential itself.
        hidden: for listings, the names that were hidden.
        shown: for listings, how many entries remained visible.
        engine: the policy engine that decided (``hooks``, ``policy``, ``cedar``...).
        policy_version: the version (digest) of the policy that decided.
        approver: who approved or refused an approval.
        auth_method: how the principal was authenticated.
        trace_id: the OpenTelemetry trace id of the request, when there is one.
        span_id: the OpenTelemetry span id of the request, when there is one.
        attributes: further event-specific values (never secrets; redacted before sinks).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = SCHEMA_VERSION
    id: str
    type: EventType
    time: datetime
    side: str
    method: str
    kind: str | None = None
    target: str | None = None
    principal: str | None = None
    tenant: str | None = None
    actors: tuple[str, ...] = ()
    session_id: str | None = None
    request_id: str | int | None = None
    task_id: str | None = None
    purpose: str | None = None
    effect: str | None = None
    rule: str | None = None
    reason: str | None = None
    detail: str | None = None
    error_code: str | None = None
    outcome: str | None = None
    latency_ms: float | None = None
    args_hash: str | None = None
    credential_id: str | None = None
    hidden: tuple[str, ...] = ()
    shown: int | None = None
    engine: str | None = None
    policy_version: str | None = None
    approver: str | None = None
    auth_method: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_context(cls, ctx: GovContext, event_type: EventType, **fields: Any) -> AuditEvent:
        """Build an event about ``ctx`` (caller, tenant, task...) with extra ``fields``."""
        principal = ctx.principal
        credential = ctx.credential
        values: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "id": _next_event_id(),
            "type": event_type,
            "time": datetime.now(timezone.utc),
            "side": ctx.side,
            "method": ctx.method,
            "kind": ctx.kind,
            "target": ctx.target,
            "principal": principal.id if principal is not None else None,
            "tenant": ctx.tenant,
            "actors": tuple(a.subject for a in principal.actors) if principal is not None else (),
            "session_id": ctx.session_id,
            "request_id": ctx.request_id,
            "task_id": ctx.task_id,
            "purpose": ctx.purpose,
            "credential_id": credential.get("jti") if credential is not None else None,
            "args_hash": ctx.args_hash,
            "auth_method": principal.auth_method if principal is not None else None,
        }
        values.update(fields)
        return cls._trusted(values)

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> AuditEvent:
        """Build from values mcpgov itself produced, without re-validating them.

        Equivalent to ``model_construct`` (what pydantic documents for trusted data) at a
        fraction of its cost on the call path; the test suite checks that the result equals a
        fully validated event.
        """
        data = dict(_TEMPLATE)
        data.update(values)
        if "attributes" not in values:
            data["attributes"] = {}
        event = cls.__new__(cls)
        object.__setattr__(event, "__dict__", data)
        object.__setattr__(event, "__pydantic_fields_set__", set(values))
        object.__setattr__(event, "__pydantic_extra__", None)
        object.__setattr__(event, "__pydantic_private__", None)
        return event


_EVENT_ID_PREFIX = secrets.token_hex(8)
_event_counter = itertools.count(1)


def _next_event_id() -> str:
    """A unique event id: a random per-process prefix and a counter (cheaper than 96 fresh random bits)."""
    return f"{_EVENT_ID_PREFIX}{next(_event_counter):010x}"


_TEMPLATE: dict[str, Any] = {
    name: (None if info.is_required() else info.get_default(call_default_factory=True))
    for name, info in AuditEvent.model_fields.items()
}


class Auditor:
    """Delivers audit events to sinks (sync or async callables).

    A sink that raises never changes a decision and never breaks the call: the failure is
    logged (without the event's content) and counted in :attr:`sink_failures`.

    Args:
        sinks: the callables that receive every event.
    """

    def __init__(self, sinks: Iterable[AuditCallback] = ()) -> None:
        self._sinks: list[AuditCallback] = []
        self._async: list[bool] = []
        self.sink_failures = 0
        """How many times a sink raised."""
        self.events_emitted = 0
        """How many events were handed to the sinks."""
        for sink in sinks:
            self.add_sink(sink)

    def add_sink(self, sink: AuditCallback) -> None:
        """Deliver future events to ``sink`` as well."""
        if not callable(sink):
            raise ConfigurationError(f"an audit sink must be callable, got {type(sink).__name__}")
        self._sinks.append(sink)
        self._async.append(
            inspect.iscoroutinefunction(sink) or inspect.iscoroutinefunction(getattr(sink, "__call__", None))  # noqa: B004
        )

    @property
    def sinks(self) -> tuple[AuditCallback, ...]:
        """The configured sinks."""
        return tuple(self._sinks)

    async def emit(self, event: AuditEvent) -> None:
        """Hand ``event`` to every sink, isolating each sink's failures."""
        self.events_emitted += 1
        for sink, is_async in zip(self._sinks, self._async, strict=True):
            try:
                result = sink(event)
                if is_async or (result is not None and inspect.isawaitable(result)):
                    await result  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - a sink must never break the call or change a decision
                self.sink_failures += 1
                logger.error(
                    "audit sink %s raised on event %s (%s); the event is counted as not delivered to it",
                    getattr(sink, "__qualname__", type(sink).__name__),
                    event.id,
                    event.type,
                    exc_info=False,
                )
