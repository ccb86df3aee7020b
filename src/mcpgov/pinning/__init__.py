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
    from mcpgov.pinning._cli import pin
    from mcpgov.pinning._diff import ChangeKind, ManifestDiff, ToolChange, approve_changes, diff_manifests
    from mcpgov.pinning._fingerprint import TOOL_FIELDS, ToolLike, changed_fields, tool_fingerprint, tool_wire_form
    from mcpgov.pinning._keys import SIGNATURE_TYPE, PublisherKeys, load_signing_key, sign_payload
    from mcpgov.pinning._manifest import (
        MANIFEST_FORMAT,
        FilePinStore,
        InlinePinStore,
        Manifest,
        PinnedTool,
        PinStore,
        ServerIdentity,
        check_name_collisions,
        dump_manifest,
        parse_manifest,
        read_manifest,
        write_manifest,
    )
    from mcpgov.pinning._middleware import SERVER_INFO, SERVER_TARGET, PinningMiddleware
    from mcpgov.pinning._names import (
        NameCheck,
        NameIndex,
        check_name,
        find_collision,
        fold_name,
        name_problem,
        name_skeleton,
    )
    from mcpgov.pinning._registry import ApprovedServer, ExpectedServer, ServerRegistry
    from mcpgov.pinning._snapshot import SnapshotTarget, load_server, resolve_target, snapshot

# Names load on first use: `mcpgov pin --help` and the registry import no MCP SDK until a server is reached.
_LAZY: dict[str, str] = {
    "pin": "mcpgov.pinning._cli",
    "ChangeKind": "mcpgov.pinning._diff",
    "ManifestDiff": "mcpgov.pinning._diff",
    "ToolChange": "mcpgov.pinning._diff",
    "approve_changes": "mcpgov.pinning._diff",
    "diff_manifests": "mcpgov.pinning._diff",
    "TOOL_FIELDS": "mcpgov.pinning._fingerprint",
    "ToolLike": "mcpgov.pinning._fingerprint",
    "changed_fields": "mcpgov.pinning._fingerprint",
    "tool_fingerprint": "mcpgov.pinning._fingerprint",
    "tool_wire_form": "mcpgov.pinning._fingerprint",
    "SIGNATURE_TYPE": "mcpgov.pinning._keys",
    "PublisherKeys": "mcpgov.pinning._keys",
    "load_signing_key": "mcpgov.pinning._keys",
    "sign_payload": "mcpgov.pinning._keys",
    "MANIFEST_FORMAT": "mcpgov.pinning._manifest",
    "FilePinStore": "mcpgov.pinning._manifest",
    "InlinePinStore": "mcpgov.pinning._manifest",
    "Manifest": "mcpgov.pinning._manifest",
    "PinnedTool": "mcpgov.pinning._manifest",
    "PinStore": "mcpgov.pinning._manifest",
    "ServerIdentity": "mcpgov.pinning._manifest",
    "check_name_collisions": "mcpgov.pinning._manifest",
    "dump_manifest": "mcpgov.pinning._manifest",
    "parse_manifest": "mcpgov.pinning._manifest",
    "read_manifest": "mcpgov.pinning._manifest",
    "write_manifest": "mcpgov.pinning._manifest",
    "SERVER_INFO": "mcpgov.pinning._middleware",
    "SERVER_TARGET": "mcpgov.pinning._middleware",
    "PinningMiddleware": "mcpgov.pinning._middleware",
    "NameCheck": "mcpgov.pinning._names",
    "NameIndex": "mcpgov.pinning._names",
    "check_name": "mcpgov.pinning._names",
    "find_collision": "mcpgov.pinning._names",
    "fold_name": "mcpgov.pinning._names",
    "name_problem": "mcpgov.pinning._names",
    "name_skeleton": "mcpgov.pinning._names",
    "ApprovedServer": "mcpgov.pinning._registry",
    "ExpectedServer": "mcpgov.pinning._registry",
    "ServerRegistry": "mcpgov.pinning._registry",
    "SnapshotTarget": "mcpgov.pinning._snapshot",
    "load_server": "mcpgov.pinning._snapshot",
    "resolve_target": "mcpgov.pinning._snapshot",
    "snapshot": "mcpgov.pinning._snapshot",
}


__getattr__ = _lazy_names(__name__, _LAZY)


__all__ = [
    "MANIFEST_FORMAT",
    "SERVER_INFO",
    "SERVER_TARGET",
    "SIGNATURE_TYPE",
    "TOOL_FIELDS",
    "ApprovedServer",
    "ChangeKind",
    "ExpectedServer",
    "FilePinStore",
    "InlinePinStore",
    "Manifest",
    "ManifestDiff",
    "NameCheck",
    "NameIndex",
    "PinStore",
    "PinnedTool",
    "PinningMiddleware",
    "PublisherKeys",
    "ServerIdentity",
    "ServerRegistry",
    "SnapshotTarget",
    "ToolChange",
    "ToolLike",
    "approve_changes",
    "changed_fields",
    "check_name",
    "check_name_collisions",
    "diff_manifests",
    "dump_manifest",
    "find_collision",
    "fold_name",
    "load_server",
    "load_signing_key",
    "name_problem",
    "name_skeleton",
    "parse_manifest",
    "pin",
    "read_manifest",
    "resolve_target",
    "sign_payload",
    "snapshot",
    "tool_fingerprint",
    "tool_wire_form",
    "write_manifest",
]
