"""Build the golden vectors of tests/vectors from fixed inputs, with the code as it is now.

Run ``python -m tests.vectors.build`` from the repository root to rewrite every vector file;
``--check`` only reports which files would change. Rewriting a vector is a format change: old
audit logs, pin files, credentials or store entries stop verifying (see README.md).

Every key here is derived from a fixed, published seed: these keys protect nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.jwk import ECKey, OKPKey

from mcpgov import Actor, Principal
from mcpgov._arguments import ArgumentLimits, arguments_hash, canonical_json, freeze_and_hash
from mcpgov.audit import JsonlSink
from mcpgov.audit._codec import event_from_dict
from mcpgov.audit._jsonl import GENESIS, line_hash
from mcpgov.credentials import CredentialClaims, CredentialIssuer, RevocationList, SigningKeySet
from mcpgov.credentials._jose import sign_credential
from mcpgov.pinning import tool_fingerprint
from mcpgov.pinning._fingerprint import tool_wire_form
from mcpgov.pinning._manifest import Manifest, dump_manifest
from mcpgov.policy import Policy

VECTORS = Path(__file__).resolve().parent

CREDENTIAL_SEED = b"mcpgov test vector: credential signing key (public, protects nothing)"
PUBLISHER_SEED = b"mcpgov test vector: pin publisher key (public, protects nothing)"
PUBLISHER_ES256_SEED = b"mcpgov test vector: ES256 pin publisher key (public, protects nothing)"

# --- fixed inputs ---------------------------------------------------------------------------------

CANONICAL_VALUES: list[tuple[str, Any]] = [
    ("empty object", {}),
    ("empty array", []),
    ("scalars", {"null": None, "true": True, "false": False, "zero": 0, "negative": -17, "text": "abc"}),
    ("key order by UTF-16 code units", {"b": 1, "a": 2, "aa": 3, "A": 4, "_": 5, "~": 6, "é": 7, "😀": 8, "\uff5a": 9}),
    ("nested", {"outer": {"inner": [1, [2, [3, {"deep": "yes"}]]], "list": [{"b": 1, "a": 0}]}}),
    ("safe integer bounds", {"max": 2**53 - 1, "min": -(2**53 - 1)}),
    ("floats", {"half": 0.5, "third": 1 / 3, "neg": -2.25, "tiny": 1e-7, "big": 1e21, "int_like": 1.0, "zero": 0.0}),
    ("more floats", [1e16, 123456789012345.6, 5e-324, 1.7976931348623157e308, 0.1, 100.0, -0.0]),
    ("string escapes", {"quote": '"', "backslash": "\\", "controls": "\b\f\n\r\t\u0000\u001f", "del": "\u007f"}),
    ("non-ASCII text", {"text": "naïve café \u2013 日本語 😀", "rtl": "\u202eevil"}),
    ("slash and html", {"path": "/etc/passwd", "html": "<script>&</script>"}),
]

ARGUMENT_CASES: list[tuple[str, Any]] = [
    ("no arguments", None),
    ("empty", {}),
    ("flat ascii", {"path": "/reports/q3.txt", "limit": 10, "dry_run": False, "note": None}),
    ("same, other key order", {"note": None, "dry_run": False, "limit": 10, "path": "/reports/q3.txt"}),
    ("nested", {"query": {"filter": {"owner": "alice", "tags": ["a", "b"]}, "page": 2}}),
    ("floats", {"amount": 12.5, "rate": 0.1, "whole": 3.0, "huge": 1e21}),
    ("non-ASCII keys", {"ключ": "значение", "😀": 1, "é": [True]}),
    ("non-ASCII values", {"to": "josé@example.com", "body": "日本語 \u2013 ✓"}),
    ("escapes", {"sql": "x'; DROP TABLE t; --", "nl": "a\nb", "nul": "\u0000"}),
]

REJECTED_ARGUMENTS: list[tuple[str, Any, str]] = [
    ("integer beyond 2**53", {"n": 2**53}, "argument_invalid"),
    ("negative integer beyond 2**53", {"n": [-(2**53)]}, "argument_invalid"),
    ("not an object", [1, 2, 3], "argument_invalid"),
    ("a string, not an object", "{}", "argument_invalid"),
]

TOOLS: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "title": "Read a file",
        "description": "Read a UTF-8 text file under the workspace.",
        "inputSchema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "max_bytes": {"type": "integer", "minimum": 1}},
            "required": ["path"],
        },
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "send_email",
        "description": "Send an email. Café ✓",
        "inputSchema": {
            "type": "object",
            "properties": {
                "to": {"type": "string", "format": "email"},
                "priority": {"enum": ["low", "normal", "high"]},
                "weight": {"type": "number", "maximum": 2.5},
            },
            "required": ["to"],
        },
        "outputSchema": {"type": "object", "properties": {"id": {"type": "string"}}},
    },
    {"name": "ping", "inputSchema": {"type": "object"}},
]

FINGERPRINTED_TOOLS: list[dict[str, Any]] = [
    # Every field of a definition is covered: _meta, icons and execution hints too.
    {
        "name": "show_invoice",
        "inputSchema": {"type": "object"},
        "_meta": {"vendor.example/x": 1, "ui": {"resourceUri": "ui://invoices/view.html"}},
        "icons": [{"src": "https://example.com/i.png", "mimeType": "image/png"}],
        "execution": {"taskSupport": "optional"},
    },
]
"""Tools with a fingerprint vector that are not in the pinned manifest vectors."""

PINNED_SERVER = ("files-server", "1.4.2")

CREDENTIAL_CLOCK = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z
CREDENTIAL_ISSUER = "https://issuer.example"
CREDENTIAL_PRINCIPAL = Principal(
    issuer="https://idp.example",
    subject="spiffe://example.org/agent/reporter",
    tenant="acme",
    actors=(Actor("user:alice", "https://idp.example"), Actor("service:planner")),
)
CREDENTIAL_MINT: dict[str, Any] = {
    "audience": "https://files.example/mcp",
    "tools": ["read_file", "list_dir"],
    "scope": ["files:read", "files:list"],
    "task_id": "task-0001",
    "purpose": "quarterly report",
    "args_hash": arguments_hash({"path": "/reports/q4.txt"}),
    "ttl": 120.0,
    "single_use": True,
}
CREDENTIAL_JTI = "vector-jti-0001"

REVOCATION_CLOCK = 1_767_225_900.5
REVOCATIONS: dict[str, Any] = {
    "jti": "revoked-jti-0001",
    "jti_expires_at": 1_767_226_000.0,
    "task": ["acme", "task-0001"],
    "principal": ["acme", "https://idp.example", "spiffe://example.org/agent/reporter"],
}

POLICY_YAML = """\
version: 1
name: vector-policy
rules:
  - id: read-reports
    effect: allow
    tenants: [acme]
    tools: [read_file]
    when:
      arguments:
        path: {path: {under: /reports}}
  - id: no-email-outside
    effect: deny
    tools: [send_email]
    unless:
      scopes: ["mail:send"]
"""

AUDIT_EVENTS: list[dict[str, Any]] = [
    {
        "id": "evt-0001",
        "type": "decision",
        "time": "2026-01-01T00:00:00+00:00",
        "side": "server",
        "method": "tools/call",
        "kind": "tool",
        "target": "read_file",
        "principal": "https://idp.example#spiffe://example.org/agent/reporter",
        "tenant": "acme",
        "actors": ["https://idp.example#user:alice"],
        "request_id": 7,
        "task_id": "task-0001",
        "effect": "allow",
        "rule": "read-files",
        "args_hash": arguments_hash({"path": "/reports/q4.txt"}),
        "engine": "policy",
        "policy_version": "sha256:" + "ab" * 32,
    },
    {
        "id": "evt-0002",
        "type": "outcome",
        "time": "2026-01-01T00:00:00.125000+00:00",
        "side": "server",
        "method": "tools/call",
        "kind": "tool",
        "target": "read_file",
        "principal": "https://idp.example#spiffe://example.org/agent/reporter",
        "tenant": "acme",
        "request_id": "req-β",
        "outcome": "completed",
        "latency_ms": 12.5,
        "credential_id": CREDENTIAL_JTI,
        "attributes": {"bytes": 4096, "ratio": 0.25, "nested": {"z": [1, 2.5, None], "a": "é😀"}},
    },
    {
        "id": "evt-0003",
        "type": "list.filtered",
        "time": "2026-01-01T00:00:01+00:00",
        "side": "client",
        "method": "tools/list",
        "tenant": "acme",
        "hidden": ["send_email", "delete_file"],
        "shown": 2,
    },
    {
        "id": "evt-0004",
        "type": "decision",
        "time": "2026-01-01T00:00:02+00:00",
        "side": "server",
        "method": "tools/call",
        "kind": "tool",
        "target": "send_email",
        "tenant": "acme",
        "effect": "deny",
        "rule": "no-email-outside",
        "reason": "rule",
        "detail": 'denied: "to" is outside <acme>',
        "error_code": "mcpgov.denied",
    },
]


# --- keys -----------------------------------------------------------------------------------------


def _ed25519(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())


def _p256(seed: bytes) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(hashlib.sha256(seed).digest(), "big"), ec.SECP256R1())


def credential_pem() -> bytes:
    """The credential signing key, as PKCS#8 PEM."""
    return _ed25519(CREDENTIAL_SEED).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def publisher_private_jwk() -> dict[str, Any]:
    """The Ed25519 pin publisher key, as a private JWK with its thumbprint as ``kid``."""
    raw = _ed25519(PUBLISHER_SEED)
    key = OKPKey(raw, raw)
    key.ensure_kid()
    return dict(key.as_dict(private=True))


def publisher_es256_private_jwk() -> dict[str, Any]:
    """The P-256 pin publisher key, as a private JWK with its thumbprint as ``kid``."""
    raw = _p256(PUBLISHER_ES256_SEED)
    key = ECKey(raw, raw)
    key.ensure_kid()
    return dict(key.as_dict(private=True))


def _public(jwk: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in jwk.items() if k != "d"}


# --- vector files ---------------------------------------------------------------------------------


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def canonical_vectors() -> bytes:
    cases = [
        {"name": name, "value": value, "canonical": canonical_json(value).decode("utf-8")}
        for name, value in CANONICAL_VALUES
    ]
    return _json({"format": "RFC 8785 canonical JSON (mcpgov._arguments.canonical_json)", "cases": cases})


def argument_vectors() -> bytes:
    limits = ArgumentLimits()
    cases = []
    for name, arguments in ARGUMENT_CASES:
        digest = arguments_hash(arguments)
        if arguments is not None:
            assert freeze_and_hash(arguments, limits)[1] == digest
        cases.append({"name": name, "arguments": arguments, "hash": digest})
    rejected = [{"name": n, "arguments": a, "reason": r} for n, a, r in REJECTED_ARGUMENTS]
    return _json(
        {
            "format": "sha256: over the RFC 8785 canonical JSON of a call's arguments ({} when absent)",
            "cases": cases,
            "rejected": rejected,
        }
    )


def fingerprint_vectors() -> bytes:
    cases = []
    for tool in [*TOOLS, *FINGERPRINTED_TOOLS]:
        form = tool_wire_form(tool)
        cases.append(
            {
                "tool": tool,
                "wire_form": form,
                "canonical": canonical_json(form).decode("utf-8"),
                "fingerprint": tool_fingerprint(tool),
            }
        )
    return _json({"format": "sha256: over the RFC 8785 canonical JSON of a tool's covered wire fields", "cases": cases})


def _manifest() -> Manifest:
    return Manifest.from_tools(*PINNED_SERVER, TOOLS)


def manifest_unsigned() -> bytes:
    return dump_manifest(_manifest()).encode("utf-8")


def manifest_signed() -> bytes:
    return dump_manifest(_manifest(), signing_key=publisher_private_jwk()).encode("utf-8")


def manifest_es256() -> bytes:
    """Signed with ES256 (randomised signatures): stored once, verified, never re-made."""
    path = VECTORS / "pins" / "manifest.es256.json"
    if path.exists():
        return path.read_bytes()
    return dump_manifest(_manifest(), signing_key=publisher_es256_private_jwk()).encode("utf-8")


def manifest_digest() -> bytes:
    manifest = _manifest()
    return _json(
        {
            "format": "sha256: over the RFC 8785 canonical JSON of a manifest body (Manifest.digest)",
            "canonical": manifest.canonical().decode("utf-8"),
            "digest": manifest.digest,
        }
    )


def _credential_keys() -> SigningKeySet:
    path = VECTORS / "credentials" / "signing-key.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(credential_pem())
    return SigningKeySet.from_pem(path, clock=lambda: CREDENTIAL_CLOCK)


def _minted_payload() -> dict[str, Any]:
    issuer = CredentialIssuer(CREDENTIAL_ISSUER, _credential_keys(), max_ttl=300.0, clock=lambda: CREDENTIAL_CLOCK)
    credential = asyncio.run(issuer.mint(CREDENTIAL_PRINCIPAL, **CREDENTIAL_MINT))
    payload = credential.claims.to_payload()
    payload["jti"] = CREDENTIAL_JTI  # the one random claim
    return payload


def credential_vectors() -> bytes:
    keys = _credential_keys()
    kid, alg, key = keys.current
    payload = _minted_payload()
    claims = CredentialClaims.from_payload(payload)
    token = sign_credential(claims.to_payload(), kid, alg, key)
    principal = CREDENTIAL_PRINCIPAL
    return _json(
        {
            "format": "compact JWS, typ mcpgov-credential+jwt, Ed25519 (deterministic signatures)",
            "inputs": {
                "clock": CREDENTIAL_CLOCK,
                "issuer": CREDENTIAL_ISSUER,
                "principal": {
                    "issuer": principal.issuer,
                    "subject": principal.subject,
                    "tenant": principal.tenant,
                    "actors": [[a.subject, a.issuer] for a in principal.actors],
                },
                "mint": CREDENTIAL_MINT,
                "jti": CREDENTIAL_JTI,
            },
            "kid": kid,
            "alg": alg,
            "payload": payload,
            "token": token,
        }
    )


def credential_jwks() -> bytes:
    return _json(_credential_keys().jwks())


def revocation_vectors() -> bytes:
    from mcpgov import InMemoryStateStore

    store = InMemoryStateStore(clock=lambda: REVOCATION_CLOCK)
    revocations = RevocationList(store, max_ttl=300.0, clock=lambda: REVOCATION_CLOCK)

    async def record() -> dict[str, str | None]:
        await revocations.revoke(REVOCATIONS["jti"], expires_at=REVOCATIONS["jti_expires_at"])
        await revocations.revoke_task(*REVOCATIONS["task"], owner=None)  # the tenant-wide (administrative) key
        await revocations.revoke_principal(*REVOCATIONS["principal"])
        keys = [
            revocations.jti_key(REVOCATIONS["jti"]),
            revocations.task_key(*REVOCATIONS["task"]),
            revocations.principal_key(*REVOCATIONS["principal"]),
        ]
        return dict(zip(keys, await store.get_many(keys), strict=True))

    entries = asyncio.run(record())
    return _json(
        {
            "format": "revocation entries in a StateStore (namespace mcpgov:cred:)",
            "clock": REVOCATION_CLOCK,
            "revoked": REVOCATIONS,
            "keys": {
                "jti": revocations.jti_key(REVOCATIONS["jti"]),
                "task": revocations.task_key(*REVOCATIONS["task"]),
                "principal": revocations.principal_key(*REVOCATIONS["principal"]),
            },
            "entries": entries,
        }
    )


def policy_vectors() -> bytes:
    return _json(
        {
            "format": "a policy's version: sha256: over the RFC 8785 canonical JSON of the document as written",
            "yaml": POLICY_YAML,
            "version": Policy.from_yaml(POLICY_YAML).version,
        }
    )


def audit_chain() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.jsonl"
        sink = JsonlSink(path, max_bytes=None)
        for data in AUDIT_EVENTS:
            sink(event_from_dict(data))
        sink.close()
        return path.read_bytes()


def audit_expected() -> bytes:
    lines = audit_chain().splitlines()
    prev, hashes = GENESIS, []
    for seq, raw in enumerate(lines, 1):
        record = json.loads(raw)
        digest = line_hash(prev, seq, canonical_json(record["event"]))
        hashes.append(digest)
        prev = digest
    return _json(
        {
            "format": "hash-chained JSON Lines: hash = sha256(prev + '\\n' + seq + '\\n' + canonical(event))",
            "events": AUDIT_EVENTS,
            "hashes": hashes,
            "head": prev,
        }
    )


ROTATED_EVENTS: list[dict[str, Any]] = [
    {**event, "id": f"evt-r{round_ + 1}-{index + 1}"} for round_ in range(4) for index, event in enumerate(AUDIT_EVENTS)
]


def audit_rotated() -> dict[str, bytes]:
    """A log rotated at 4096 bytes: every file of it, by name."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.jsonl"
        sink = JsonlSink(path, max_bytes=4096)
        for data in ROTATED_EVENTS:
            sink(event_from_dict(data))
        sink.close()
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())}


def audit_rotated_expected() -> bytes:
    files = audit_rotated()
    last = json.loads(files["audit.jsonl"].splitlines()[-1])
    return _json(
        {
            "format": "a hash-chained log rotated by size: <stem>.<first seq, 12 digits><suffix>, then the active file",
            "max_bytes": 4096,
            "events": ROTATED_EVENTS,
            "files": {name: len(data.splitlines()) for name, data in files.items()},
            "head": last["hash"],
            "last_seq": last["seq"],
        }
    )


def _rotated_file(name: str) -> Callable[[], bytes]:
    return lambda: audit_rotated()[name]


BUILDERS: dict[str, Callable[[], bytes]] = {
    "canonical_json.json": canonical_vectors,
    "arguments_hash.json": argument_vectors,
    "tool_fingerprints.json": fingerprint_vectors,
    "pins/publisher.private.jwk.json": lambda: _json(publisher_private_jwk()),
    "pins/publisher.public.jwk.json": lambda: _json(_public(publisher_private_jwk())),
    "pins/publisher-es256.public.jwk.json": lambda: _json(_public(publisher_es256_private_jwk())),
    "pins/manifest.unsigned.json": manifest_unsigned,
    "pins/manifest.signed.json": manifest_signed,
    "pins/manifest.es256.json": manifest_es256,
    "pins/manifest_digest.json": manifest_digest,
    "credentials/signing-key.pem": credential_pem,
    "credentials/jwks.json": credential_jwks,
    "credentials/credential.json": credential_vectors,
    "revocation.json": revocation_vectors,
    "policy_version.json": policy_vectors,
    "audit/chain.jsonl": audit_chain,
    "audit/chain.json": audit_expected,
    "audit/rotated.json": audit_rotated_expected,
    "audit/rotated/audit.000000000001.jsonl": _rotated_file("audit.000000000001.jsonl"),
    "audit/rotated/audit.000000000008.jsonl": _rotated_file("audit.000000000008.jsonl"),
    "audit/rotated/audit.jsonl": _rotated_file("audit.jsonl"),
}


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with ``--check``, compare) every vector file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only list the files that would change")
    args = parser.parse_args(argv)
    changed = []
    for name, build in BUILDERS.items():
        path = VECTORS / name
        data = build()
        if not path.exists() or path.read_bytes() != data:
            changed.append(name)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
    for name in changed:
        print(("differs: " if args.check else "written: ") + name)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
