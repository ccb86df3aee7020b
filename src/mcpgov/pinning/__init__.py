"""Approved servers and pinned tools.

* :class:`ServerRegistry` / :class:`ApprovedServer`: which servers an agent may use, for which
  tenants and workloads, reached how, describing themselves as what, signed by whom;
* :func:`tool_fingerprint`: the canonical hash of a tool (RFC 8785 JSON, SHA-256);
* :class:`Manifest`: a server's pinned tools, in a pin file (optionally signed by the publisher);
* :class:`PinningMiddleware`: the client middleware that refuses unapproved servers and hides
  and refuses tools that drifted from their pin;
* :func:`snapshot`, :func:`diff_manifests`, :func:`approve_changes`: what ``mcpgov pin`` does.
"""

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
