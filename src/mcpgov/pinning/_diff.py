"""What changed between a pinned manifest and a server's manifest now, and approving it."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mcpgov._errors import PinningError
from mcpgov.pinning._fingerprint import changed_fields
from mcpgov.pinning._manifest import Manifest, PinnedTool, ServerIdentity
from mcpgov.pinning._names import NameIndex, find_collision

__all__ = ["ChangeKind", "ManifestDiff", "ToolChange", "approve_changes", "diff_manifests"]

ChangeKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True, slots=True)
class ToolChange:
    """How one tool differs from its pin.

    Attributes:
        name: the tool.
        kind: ``added`` (not pinned), ``removed`` (pinned, no longer offered) or ``changed``.
        old: the pinned fingerprint (``None`` for an added tool).
        new: the current fingerprint (``None`` for a removed tool).
        fields: for a change, the wire fields that differ (``description``, ``inputSchema``...).
        old_tool: the pinned wire form.
        new_tool: the current wire form.
    """

    name: str
    kind: ChangeKind
    old: str | None
    new: str | None
    fields: tuple[str, ...] = ()
    old_tool: Mapping[str, Any] | None = None
    new_tool: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ManifestDiff:
    """The differences between a pinned manifest and a current one.

    Attributes:
        changes: per tool, sorted by name.
        server_name: ``(pinned, current)`` when the server's name differs.
        server_version: ``(pinned, current)`` when the server's version differs (not drift by
            itself: the approved version range lives in the server registry).
    """

    changes: tuple[ToolChange, ...] = ()
    server_name: tuple[str, str] | None = None
    server_version: tuple[str, str] | None = None

    @property
    def drifted(self) -> bool:
        """True when a tool or the server's name differs from the pin."""
        return bool(self.changes) or self.server_name is not None

    def of_kind(self, kind: ChangeKind) -> tuple[ToolChange, ...]:
        """The changes of one kind."""
        return tuple(change for change in self.changes if change.kind == kind)

    def render(self) -> str:
        """A readable, line-oriented report: ``+`` added, ``-`` removed, ``~`` changed (with field diffs)."""
        lines: list[str] = []
        if self.server_name is not None:
            lines.append(f"server name: {self.server_name[0]!r} -> {self.server_name[1]!r}")
        if self.server_version is not None:
            lines.append(f"server version: {self.server_version[0]!r} -> {self.server_version[1]!r}")
        for change in self.changes:
            if change.kind == "added":
                lines.append(f"+ {change.name}: new tool ({change.new})")
            elif change.kind == "removed":
                lines.append(f"- {change.name}: removed ({change.old})")
            else:
                lines.append(f"~ {change.name}: {', '.join(change.fields)} changed ({change.old} -> {change.new})")
                for field in change.fields:
                    lines.extend(_field_diff(field, change.old_tool or {}, change.new_tool or {}))
        counts = {kind: len(self.of_kind(kind)) for kind in ("added", "removed", "changed")}
        if self.drifted:
            lines.append(
                f"{len(self.changes)} tool change(s): "
                f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed"
            )
        else:
            lines.append("no tool changes")
        return "\n".join(lines)


def _pretty(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.splitlines() or [""]
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def _field_diff(field: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = [f"    {field}:"]
    for line in difflib.unified_diff(_pretty(old.get(field)), _pretty(new.get(field)), lineterm="", n=2):
        if line.startswith(("---", "+++")):
            continue
        out.append(f"      {line}")
    return out


def diff_manifests(pinned: Manifest, current: Manifest) -> ManifestDiff:
    """Compare a server's current manifest with its pin.

    Args:
        pinned: the approved manifest.
        current: the manifest taken from the server now.

    Returns:
        The differences, tools sorted by name.
    """
    changes: list[ToolChange] = []
    for name in sorted(set(pinned.tools) | set(current.tools)):
        old, new = pinned.tools.get(name), current.tools.get(name)
        if old is None and new is not None:
            changes.append(ToolChange(name, "added", None, new.fingerprint, new_tool=new.tool))
        elif new is None and old is not None:
            changes.append(ToolChange(name, "removed", old.fingerprint, None, old_tool=old.tool))
        elif old is not None and new is not None and old.fingerprint != new.fingerprint:
            fields = changed_fields(old.tool, new.tool)
            changes.append(ToolChange(name, "changed", old.fingerprint, new.fingerprint, fields, old.tool, new.tool))
    s_old, s_new = pinned.server, current.server
    return ManifestDiff(
        tuple(changes),
        (s_old.name, s_new.name) if s_old.name != s_new.name else None,
        (s_old.version, s_new.version) if s_old.version != s_new.version else None,
    )


def approve_changes(pinned: Manifest, current: Manifest, tools: Iterable[str] | None = None) -> Manifest:
    """The pin with ``current``'s changes approved: what ``mcpgov pin approve`` writes.

    Args:
        pinned: the approved manifest.
        current: the server's manifest now.
        tools: approve only the changes of these tools (added, changed or removed); ``None``
            approves every change. The server's name and version are always taken from ``current``.

    Returns:
        The new manifest to pin: ``mcpgov.pins/2``, its ``sequence`` one more than ``pinned``'s
        (1 after a manifest without one), so a registry that accepted it refuses ``pinned`` again.

    Raises:
        PinningError: reason ``pin.no_change`` (a named tool has no change to approve) or
            ``name.collision`` (an added tool's name can be mistaken for another approved name).
    """
    diff = diff_manifests(pinned, current)
    by_name = {change.name: change for change in diff.changes}
    if tools is None:
        selected = list(by_name)
    else:
        selected = list(dict.fromkeys(tools))
        missing = [name for name in selected if name not in by_name]
        if missing:
            raise PinningError(f"no change to approve for tool(s) {', '.join(missing)}", reason="pin.no_change")
    result: dict[str, PinnedTool] = dict(pinned.tools)
    for name in selected:
        change = by_name[name]
        if change.kind == "removed":
            del result[name]
        else:
            result[name] = current.tools[name]
    index = NameIndex(result)
    for name in selected:
        if by_name[name].kind == "added":
            other = find_collision(name, index)
            if other is not None:
                raise PinningError(
                    f"tool name {name!r} can be mistaken for the approved name {other!r}", reason="name.collision"
                )
    return Manifest(
        server=ServerIdentity(name=current.server.name, version=current.server.version),
        tools=dict(sorted(result.items())),
    ).succeeding(pinned)
