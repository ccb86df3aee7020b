"""The canonical fingerprint of a tool: SHA-256 over the RFC 8785 JSON of its wire form."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import rfc8785

from mcpgov._arguments import canonical_json

__all__ = ["TOOL_FIELDS", "ToolLike", "changed_fields", "tool_fingerprint", "tool_wire_form"]

TOOL_FIELDS: tuple[str, ...] = (
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
    "icons",
    "execution",
    "_meta",
)
"""The wire fields (camelCase, as sent) a fingerprint covers: every field of a tool definition.

A client or a model is shown all of them (``_meta`` names an app's UI resource and whether the
model sees the tool, icons are shown to people, ``execution`` says how the tool is called), so
none of them may change after approval. A field outside this list cannot be fingerprinted."""
_COVERED = frozenset(TOOL_FIELDS)

if TYPE_CHECKING:
    from mcp_types import Tool

    ToolLike = Tool | Mapping[str, Any]
else:  # the SDK's types load on first use (`mcpgov pin --help` stays light)
    ToolLike = Any
"""A tool as the SDK parses it (``mcp_types.Tool``), or its wire form (a camelCase mapping)."""


def tool_wire_form(tool: ToolLike) -> dict[str, Any]:
    """The part of ``tool`` a fingerprint covers, as it appears on the wire.

    Args:
        tool: an ``mcp_types.Tool`` or a wire mapping (camelCase keys).

    Returns:
        A plain dict with the :data:`TOOL_FIELDS` present in ``tool`` (``None`` values left out).

    Raises:
        TypeError: ``tool`` is neither a ``Tool`` nor a mapping.
        ValueError: ``tool`` has a field (not ``None``) that is not one of :data:`TOOL_FIELDS`:
            what no pin covers is never passed over.
    """
    from mcp_types import Tool  # noqa: PLC0415 - loaded on first use

    if isinstance(tool, Tool):
        data: Mapping[str, Any] = tool.model_dump(by_alias=True, mode="json", exclude_none=True)
    elif isinstance(tool, Mapping):
        data = tool
    else:
        raise TypeError(f"expected an mcp_types.Tool or a mapping, got {type(tool).__name__}")
    uncovered = [key for key, value in data.items() if key not in _COVERED and value is not None]
    if uncovered:
        names = ", ".join(sorted(json.dumps(str(key)) for key in uncovered))
        raise ValueError(f"tool has fields a pin does not cover: {names}")
    return {key: data[key] for key in TOOL_FIELDS if data.get(key) is not None}


def tool_fingerprint(tool: ToolLike) -> str:
    """``sha256:<hex>`` of the RFC 8785 canonical JSON of the tool's :func:`tool_wire_form`.

    Key order does not matter (a reordered schema hashes the same); any other change, such as a
    new enum value, a dropped ``required`` entry, a new property, a new icon or a changed
    ``_meta`` entry, gives a different hash.

    Args:
        tool: an ``mcp_types.Tool`` or a wire mapping.

    Returns:
        The fingerprint.

    Raises:
        ValueError: the tool cannot be canonicalised (for example an integer beyond the
            I-JSON range, or a non-finite number), or it has a field no pin covers.
        TypeError: ``tool`` is neither a ``Tool`` nor a mapping.
    """
    form = tool_wire_form(tool)
    try:
        canonical: bytes = canonical_json(form)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"tool cannot be canonicalised: {type(exc).__name__}") from exc
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    """The :data:`TOOL_FIELDS` whose canonical values differ between two wire forms, in field order."""
    changed: list[str] = []
    for key in TOOL_FIELDS:
        a, b = old.get(key), new.get(key)
        if a is None and b is None:
            continue
        if a is None or b is None:
            changed.append(key)
            continue
        try:
            same = canonical_json(a) == canonical_json(b)
        except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError):
            same = False
        if not same:
            changed.append(key)
    return tuple(changed)
