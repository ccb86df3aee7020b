"""Approved servers and pinned tools.

* :class:`ServerRegistry` / :class:`ApprovedServer`: which servers an agent may use, for which
  tenants and workloads, reached how, describing themselves as what, signed by whom;
* :func:`tool_fingerprint`: the canonical hash of a tool (RFC 8785 JSON, SHA-256);
* :class:`Manifest`: a server's pinned tools, in a pin file (optionally signed by the publisher);
* :class:`PinningMiddleware`: the client middleware that refuses unapproved servers and hides
  and refuses tools that drifted from their pin;
* :func:`snapshot`, :func:`diff_manifests`, :func:`approve_changes`: what ``mcpgov pin`` does.
"""

from typing import TYPE_CHECKING

from mcpgov._public import by_module as _by_module
from mcpgov._public import lazy_names as _lazy_names
from mcpgov._public import retired as _retired

__all__ = [
    "ApprovedServer",
    "ChangeKind",
    "ExpectedServer",
    "FilePinStore",
    "InlinePinStore",
    "Manifest",
    "ManifestDiff",
    "NameCheck",
    "PinStore",
    "PinnedTool",
    "PinningMiddleware",
    "PublisherKeys",
    "ServerIdentity",
    "ServerRegistry",
    "ToolChange",
    "approve_changes",
    "check_name",
    "diff_manifests",
    "dump_manifest",
    "load_signing_key",
    "parse_manifest",
    "read_manifest",
    "snapshot",
    "tool_fingerprint",
    "write_manifest",
]


if TYPE_CHECKING:
    from mcpgov.pinning._diff import ChangeKind, ManifestDiff, ToolChange, approve_changes, diff_manifests
    from mcpgov.pinning._fingerprint import tool_fingerprint
    from mcpgov.pinning._keys import PublisherKeys, load_signing_key
    from mcpgov.pinning._manifest import (
        FilePinStore,
        InlinePinStore,
        Manifest,
        PinnedTool,
        PinStore,
        ServerIdentity,
        dump_manifest,
        parse_manifest,
        read_manifest,
        write_manifest,
    )
    from mcpgov.pinning._middleware import PinningMiddleware
    from mcpgov.pinning._names import (
        NameCheck,
        check_name,
    )
    from mcpgov.pinning._registry import ApprovedServer, ExpectedServer, ServerRegistry
    from mcpgov.pinning._snapshot import snapshot

# Names load on first use: `mcpgov pin --help` and the registry import no MCP SDK until a server is reached.
_LAZY: dict[str, str] = _by_module(
    {
        "mcpgov.pinning._diff": ("ChangeKind", "ManifestDiff", "ToolChange", "approve_changes", "diff_manifests"),
        "mcpgov.pinning._fingerprint": ("tool_fingerprint",),
        "mcpgov.pinning._keys": ("PublisherKeys", "load_signing_key"),
        "mcpgov.pinning._manifest": (
            "FilePinStore",
            "InlinePinStore",
            "Manifest",
            "PinnedTool",
            "PinStore",
            "ServerIdentity",
            "dump_manifest",
            "parse_manifest",
            "read_manifest",
            "write_manifest",
        ),
        "mcpgov.pinning._middleware": ("PinningMiddleware",),
        "mcpgov.pinning._names": ("NameCheck", "check_name"),
        "mcpgov.pinning._registry": ("ApprovedServer", "ExpectedServer", "ServerRegistry"),
        "mcpgov.pinning._snapshot": ("snapshot",),
    }
)


# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    **_retired(
        {
            "mcpgov.pinning._manifest": ("MANIFEST_FORMAT", "check_name_collisions"),
            "mcpgov.pinning._names": ("NameIndex", "find_collision", "fold_name", "name_problem", "name_skeleton"),
            "mcpgov.pinning._middleware": ("SERVER_INFO", "SERVER_TARGET"),
            "mcpgov.pinning._keys": ("SIGNATURE_TYPE", "sign_payload"),
            "mcpgov.pinning._snapshot": ("SnapshotTarget", "load_server", "resolve_target"),
            "mcpgov.pinning._fingerprint": ("TOOL_FIELDS", "ToolLike", "changed_fields", "tool_wire_form"),
            "mcpgov.pinning._cli": ("pin",),
        }
    ),
}

__getattr__ = _lazy_names(__name__, _LAZY, _DEPRECATED)
