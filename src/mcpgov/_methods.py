"""The one table of MCP methods governance knows: what each targets, lists, or carries.

Every adapter, authoriser and tool that needs to know which method uses or lists which kind of
target reads it from here, so the client side, the server side, the audit prover, the policy CLI
and the test kit cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

__all__ = [
    "ARGUMENT_METHODS",
    "COMPLETION_REFS",
    "EXECUTE_METHOD",
    "EXECUTE_METHODS",
    "LISTEN_METHOD",
    "LISTEN_SUBSCRIBE_METHOD",
    "LISTINGS",
    "LIST_METHOD",
    "LIST_METHODS",
    "MAX_LISTEN_URIS",
    "NAMED_METHODS",
    "TARGETED",
    "TargetKind",
]

TargetKind = Literal["tool", "resource", "prompt"]
"""What a request's target is."""

EXECUTE_METHOD: Mapping[TargetKind, str] = MappingProxyType(
    {"tool": "tools/call", "resource": "resources/read", "prompt": "prompts/get"}
)
"""The method that uses a target of each kind."""

EXECUTE_METHODS = frozenset(EXECUTE_METHOD.values())
"""The methods that use (execute) a target."""

LIST_METHOD: Mapping[TargetKind, str] = MappingProxyType(
    {"tool": "tools/list", "resource": "resources/list", "prompt": "prompts/list"}
)
"""The method that lists the targets of each kind."""

TARGETED: Mapping[str, tuple[TargetKind, str]] = MappingProxyType(
    {
        "tools/call": ("tool", "name"),
        "prompts/get": ("prompt", "name"),
        "resources/read": ("resource", "uri"),
        "resources/subscribe": ("resource", "uri"),
        "resources/unsubscribe": ("resource", "uri"),
    }
)
"""Method -> (kind of its target, the params key that names the target)."""

LISTINGS: Mapping[str, tuple[TargetKind, str, str]] = MappingProxyType(
    {
        "tools/list": ("tool", "tools", "name"),
        "prompts/list": ("prompt", "prompts", "name"),
        "resources/list": ("resource", "resources", "uri"),
        "resources/templates/list": ("resource", "resourceTemplates", "uriTemplate"),
    }
)
"""List method -> (kind listed, the result key holding the entries, the entry key naming each)."""

LIST_METHODS = frozenset(LISTINGS)
"""The methods that return a listing."""

COMPLETION_REFS: Mapping[str, tuple[TargetKind, str]] = MappingProxyType(
    {"ref/prompt": ("prompt", "name"), "ref/resource": ("resource", "uri")}
)
"""``completion/complete`` ref type -> (kind of its target, the ref key that names it)."""

NAMED_METHODS: Mapping[str, TargetKind] = MappingProxyType({"tools/call": "tool", "prompts/get": "prompt"})
"""Methods whose target is a served name (checked against the server's name rules)."""

ARGUMENT_METHODS = frozenset(NAMED_METHODS)
"""Methods whose params carry ``arguments`` the handler receives."""

LISTEN_METHOD = "subscriptions/listen"
"""The 2026-07-28 change-notification stream (SEP-2575). The request itself names no target (it is
decided as a protocol method); the resource URIs of its filter
(``params.notifications.resourceSubscriptions``) are each decided as
:data:`LISTEN_SUBSCRIBE_METHOD` of that URI, and only the allowed ones are listened to."""

LISTEN_SUBSCRIBE_METHOD = "resources/subscribe"
"""The method each resource URI of a ``subscriptions/listen`` filter is decided as: the same
decision a handshake-era ``resources/subscribe`` of that URI gets."""

MAX_LISTEN_URIS = 256
"""The most resource URIs one ``subscriptions/listen`` filter may name (each is a decision)."""
