"""Reading audit logs back: filters, and the trail of one task."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pydantic import ValidationError

from mcpgov._audit import AuditEvent
from mcpgov.audit._codec import event_from_dict
from mcpgov.audit._jsonl import read_chain
from mcpgov.audit._printable import printable, printable_word

__all__ = [
    "EventFilter",
    "Request",
    "Trail",
    "category",
    "format_event",
    "iter_lines",
    "printable",
    "read_events",
    "task_trail",
]


def read_events(paths: Sequence[str | os.PathLike[str]], *, skipped: list[str] | None = None) -> list[AuditEvent]:
    """Every event in the given JSON Lines log files, in chain order (by sequence number).

    Lines that are not valid chain lines or events are skipped; when ``skipped`` is given,
    ``"file:line"`` of each is appended to it. (Run :func:`~mcpgov.audit.verify_chain` to
    check the log has not been tampered with.)

    Raises:
        OSError: a file cannot be read.
    """
    found: list[tuple[int, int, AuditEvent]] = []
    for index, path in enumerate(paths):
        for number, record in read_chain(path):
            if record is None:
                if skipped is not None:
                    skipped.append(f"{path}:{number}")
                continue
            if "event" not in record:  # a checkpoint line
                continue
            try:
                event = event_from_dict(record["event"])
            except ValidationError:
                if skipped is not None:
                    skipped.append(f"{path}:{number}")
                continue
            found.append((record["seq"], index, event))
    found.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in found]


@dataclasses.dataclass(frozen=True)
class EventFilter:
    """Selects events; every given criterion must match (``None`` matches anything).

    Attributes:
        task: the task id.
        task_owner: the task's owner (``issuer#subject``), or just its subject: one task id may
            name the tasks of several owners.
        principal: the caller (``issuer#subject``), or just its subject.
        tenant: the tenant.
        tool: the target (tool or prompt name, resource URI).
        credential: the credential id (``jti``).
        types: event types (``decision``, ``approval.granted``...) or prefixes ending in ``.``
            (``approval.``).
    """

    task: str | None = None
    principal: str | None = None
    tenant: str | None = None
    tool: str | None = None
    credential: str | None = None
    types: tuple[str, ...] = ()
    task_owner: str | None = None

    def __call__(self, event: AuditEvent) -> bool:
        """Whether ``event`` matches (an event naming no principal matches ``principal`` only in
        :meth:`select`, which knows whom each credential was minted for)."""
        return self._matches(event, {})

    def _matches(self, event: AuditEvent, holders: dict[str, str]) -> bool:
        if self.task is not None and event.task_id != self.task:
            return False
        if self.task_owner is not None and not _principal_matches(event.task_owner, self.task_owner):
            return False
        if self.principal is not None:
            caller = event.principal
            if caller is None and event.credential_id is not None:
                caller = holders.get(event.credential_id)
            if not _principal_matches(caller, self.principal):
                return False
        if self.tenant is not None and event.tenant != self.tenant:
            return False
        if self.tool is not None and event.target != self.tool:
            return False
        if self.credential is not None and event.credential_id != self.credential:
            return False
        return not self.types or any(
            event.type.startswith(t) if t.endswith(".") else event.type == t for t in self.types
        )

    def select(self, events: Iterable[AuditEvent]) -> list[AuditEvent]:
        """The matching events, in order. An event of a call made with a credential alone (it
        names no principal) is the call of the principal that credential was minted for."""
        holders: dict[str, str] = {}
        chosen: list[AuditEvent] = []
        for event in events:
            if event.type == "credential.minted" and event.credential_id is not None and event.principal is not None:
                holders.setdefault(event.credential_id, event.principal)
            if self._matches(event, holders):
                chosen.append(event)
        return chosen


def _principal_matches(value: str | None, wanted: str) -> bool:
    if value is None:
        return False
    return value == wanted or value.rsplit("#", 1)[-1] == wanted


def category(event: AuditEvent) -> str:
    """What part of a trail an event belongs to: request, decision, approval, credential, identity, outcome..."""
    kind = event.type.split(".", 1)[0]
    return {"session": "identity", "list": "listing", "pin": "pinning", "server": "pinning"}.get(kind, kind)


@dataclasses.dataclass
class Request:
    """One request in a trail and the events about it, in order.

    Attributes:
        side: ``client`` or ``server``.
        session_id: the session, when there was one.
        request_id: the JSON-RPC request id.
        method: the MCP method.
        target: the tool, prompt or resource.
        events: the events, in order.
    """

    side: str
    session_id: str | None
    request_id: str | int | None
    method: str
    target: str | None
    events: list[AuditEvent] = dataclasses.field(default_factory=list)

    def of(self, *categories: str) -> list[AuditEvent]:
        """The events of the given categories (``decision``, ``approval``, ``credential``...)."""
        return [e for e in self.events if category(e) in categories]

    @property
    def decision(self) -> AuditEvent | None:
        """The request's (last) decision event."""
        decisions = self.of("decision")
        return decisions[-1] if decisions else None

    @property
    def credential_ids(self) -> tuple[str, ...]:
        """The credential ids the request's events name, in order of first appearance."""
        return tuple(dict.fromkeys(e.credential_id for e in self.events if e.credential_id))

    @property
    def approvers(self) -> tuple[str, ...]:
        """Who approved (``approval.granted``) this request."""
        return tuple(e.approver for e in self.events if e.type == "approval.granted" and e.approver)


@dataclasses.dataclass
class Trail:
    """The trail of one task: its requests, each with its decisions, approvals, credentials and outcome.

    Attributes:
        task_id: the task.
        requests: the requests, in order of their first event.
        events: every event of the task, in order.
    """

    task_id: str
    requests: list[Request]
    events: list[AuditEvent]


def task_trail(events: Iterable[AuditEvent], task_id: str) -> Trail:
    """Group the events of one task by request.

    Events are grouped by their ``request_key`` when they have one (unique across sessions and
    processes), else by side, session, request id, method, target and caller: two agents whose
    requests share an id are never merged. Events that belong to no request (no request id, e.g.
    a credential minted ahead of a call) form requests of their own.
    """
    selected = [e for e in events if e.task_id == task_id]
    requests: list[Request] = []
    index: dict[tuple[Any, ...], Request] = {}
    for event in selected:
        if event.request_id is None and not event.request_key:
            requests.append(Request(event.side, event.session_id, None, event.method, event.target, [event]))
            continue
        key: tuple[Any, ...] = (
            ("key", event.request_key)
            if event.request_key
            else (event.side, event.session_id, event.request_id, event.method, event.target, event.principal)
        )
        request = index.get(key)
        if request is None:
            request = Request(event.side, event.session_id, event.request_id, event.method, event.target)
            index[key] = request
            requests.append(request)
        request.events.append(event)
    return Trail(task_id, requests, selected)


def format_event(event: AuditEvent) -> str:
    """One line describing ``event`` (time, type, target, what was decided or happened, by whom)."""
    parts = [event.time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", printable_word(event.type)]
    what = event.effect or event.outcome
    if what:
        parts.append(printable_word(what))
    parts.append(printable_word(event.method))
    if event.target:
        parts.append(printable_word(event.target))
    for label, value in (
        ("rule", event.rule),
        ("reason", event.reason),
        ("principal", event.principal),
        ("tenant", event.tenant),
        ("approver", event.approver),
        ("credential", event.credential_id),
        ("policy", event.policy_version),
        ("latency_ms", f"{event.latency_ms:.1f}" if event.latency_ms is not None else None),
        ("args", event.args_hash),
        ("task", event.task_id),
        ("task_owner", event.task_owner if event.task_owner != event.principal else None),
        ("session", event.session_id),
        ("request", event.request_id),
        ("id", event.id),
    ):
        if value is not None and value != "":
            parts.append(f"{label}={printable_word(value)}")
    return " ".join(parts)


def iter_lines(trail: Trail) -> Iterator[tuple[AuditEvent | None, str]]:
    """The trail as text lines: a heading per request (event ``None``), then its events indented."""
    yield None, f"task {printable_word(trail.task_id)}: {len(trail.requests)} request(s), {len(trail.events)} event(s)"
    owners = sorted({e.task_owner or "(no owner recorded)" for e in trail.events if e.type != "credential.revoked"})
    if len(owners) > 1:
        # A task id is chosen by whoever asks for a credential: these are several tasks.
        yield None, f"  the tasks of {len(owners)} owners: {', '.join(printable_word(o) for o in owners)}"
    for request in trail.requests:
        first = request.events[0]
        who = first.principal or "unknown caller"
        heading = f"{printable_word(request.side)} {printable_word(request.method)}"
        if request.target:
            heading += f" {printable_word(request.target)}"
        heading += f" by {printable_word(who)}"
        if first.tenant:
            heading += f" (tenant {printable_word(first.tenant)})"
        if first.purpose:
            heading += f" purpose={printable_word(first.purpose)}"
        if first.args_hash:
            heading += f" args={printable_word(first.args_hash)}"
        yield None, heading
        for event in request.events:
            yield event, f"  [{category(event)}] {format_event(event)}"
