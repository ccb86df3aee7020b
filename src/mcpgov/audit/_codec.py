"""Audit events as plain JSON data (what the file and logging sinks write, and what readers parse)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mcpgov._audit import AuditEvent
from mcpgov.audit._redact import json_safe

__all__ = ["event_from_dict", "event_to_dict"]


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    """``event`` as JSON data: fields that are ``None`` or empty are left out, times are ISO 8601.

    Values of unexpected types (only possible in events built without validation) become
    markers naming their type rather than making the event unwritable.
    """
    out: dict[str, Any] = {}
    for name, value in event.__dict__.items():
        if value is None:
            continue
        kind = type(value)
        if kind is str or kind is bool:
            out[name] = value
        elif kind is datetime:
            out[name] = value.isoformat()
        elif kind is tuple or kind is dict:
            if value:
                out[name] = json_safe(value)
        else:
            out[name] = json_safe(value)
    return out


def event_from_dict(data: dict[str, Any]) -> AuditEvent:
    """Parse (and validate) an event written by :func:`event_to_dict`.

    Raises:
        pydantic.ValidationError: ``data`` is not a valid event.
    """
    return AuditEvent.model_validate(data)
