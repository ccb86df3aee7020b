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

from mcpgov._public import lazy_names as _lazy_names

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
_LAZY: dict[str, str] = {
    "ChangeKind": "mcpgov.pinning._diff",
    "ManifestDiff": "mcpgov.pinning._diff",
    "ToolChange": "mcpgov.pinning._diff",
    "approve_changes": "mcpgov.pinning._diff",
    "diff_manifests": "mcpgov.pinning._diff",
    "tool_fingerprint": "mcpgov.pinning._fingerprint",
    "PublisherKeys": "mcpgov.pinning._keys",
    "load_signing_key": "mcpgov.pinning._keys",
    "FilePinStore": "mcpgov.pinning._manifest",
    "InlinePinStore": "mcpgov.pinning._manifest",
    "Manifest": "mcpgov.pinning._manifest",
    "PinnedTool": "mcpgov.pinning._manifest",
    "PinStore": "mcpgov.pinning._manifest",
    "ServerIdentity": "mcpgov.pinning._manifest",
    "dump_manifest": "mcpgov.pinning._manifest",
    "parse_manifest": "mcpgov.pinning._manifest",
    "read_manifest": "mcpgov.pinning._manifest",
    "write_manifest": "mcpgov.pinning._manifest",
    "PinningMiddleware": "mcpgov.pinning._middleware",
    "NameCheck": "mcpgov.pinning._names",
    "check_name": "mcpgov.pinning._names",
    "ApprovedServer": "mcpgov.pinning._registry",
    "ExpectedServer": "mcpgov.pinning._registry",
    "ServerRegistry": "mcpgov.pinning._registry",
    "snapshot": "mcpgov.pinning._snapshot",
}


# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    "MANIFEST_FORMAT": ("mcpgov.pinning._manifest", None),
    "NameIndex": ("mcpgov.pinning._names", None),
    "SERVER_INFO": ("mcpgov.pinning._middleware", None),
    "SERVER_TARGET": ("mcpgov.pinning._middleware", None),
    "SIGNATURE_TYPE": ("mcpgov.pinning._keys", None),
    "SnapshotTarget": ("mcpgov.pinning._snapshot", None),
    "TOOL_FIELDS": ("mcpgov.pinning._fingerprint", None),
    "ToolLike": ("mcpgov.pinning._fingerprint", None),
    "changed_fields": ("mcpgov.pinning._fingerprint", None),
    "check_name_collisions": ("mcpgov.pinning._manifest", None),
    "find_collision": ("mcpgov.pinning._names", None),
    "fold_name": ("mcpgov.pinning._names", None),
    "load_server": ("mcpgov.pinning._snapshot", None),
    "name_problem": ("mcpgov.pinning._names", None),
    "name_skeleton": ("mcpgov.pinning._names", None),
    "pin": ("mcpgov.pinning._cli", None),
    "resolve_target": ("mcpgov.pinning._snapshot", None),
    "sign_payload": ("mcpgov.pinning._keys", None),
    "tool_wire_form": ("mcpgov.pinning._fingerprint", None),
}

__getattr__ = _lazy_names(__name__, _LAZY, _DEPRECATED)


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
