"""Golden vectors: every persisted or signed format still reads, verifies and hashes as it did.

The files in tests/vectors were written by the code as it was when each format was fixed (see
tests/vectors/README.md). These tests read the files on their own terms: an old audit log, pin
file, credential or revocation entry must keep verifying, and the code must still produce
exactly the same bytes and hashes from the same inputs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_types import Tool

from mcpgov import InMemoryStateStore, InvalidRequest, PinningError
from mcpgov._arguments import ArgumentLimits, arguments_hash, canonical_json, freeze_and_hash
from mcpgov.audit import JsonlSink, verify_chain
from mcpgov.audit._codec import event_from_dict
from mcpgov.audit._jsonl import GENESIS, line_hash
from mcpgov.credentials import (
    CredentialClaims,
    CredentialIssuer,
    CredentialRefused,
    CredentialVerifier,
    RevocationList,
    SigningKeySet,
    VerificationKeys,
)
from mcpgov.credentials._jose import sign_credential
from mcpgov.pinning import PublisherKeys, tool_fingerprint
from mcpgov.pinning._fingerprint import tool_wire_form
from mcpgov.pinning._manifest import dump_manifest, parse_manifest, read_manifest
from mcpgov.policy import Policy
from tests.vectors import build

VECTORS = Path(__file__).resolve().parent / "vectors"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text("utf-8"))


def _reordered(value: Any, data: st.DataObject) -> Any:
    """``value`` with the keys of every object in an order drawn by Hypothesis."""
    if isinstance(value, dict):
        keys = data.draw(st.permutations(list(value)))
        return {k: _reordered(value[k], data) for k in keys}
    if isinstance(value, list):
        return [_reordered(v, data) for v in value]
    return value


# --- the files are what the code builds -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(build.BUILDERS))
def test_the_code_rebuilds_every_vector_file_byte_for_byte(name: str) -> None:
    """Rebuilding from the fixed inputs gives exactly the stored bytes (a format change shows here)."""
    assert build.BUILDERS[name]() == (VECTORS / name).read_bytes(), (
        f"{name} changed: a persisted format changed. If deliberate, see tests/vectors/README.md"
    )


def test_the_build_check_reports_a_changed_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m tests.vectors.build --check`` fails on a vector that differs from the code."""
    copy = tmp_path / "vectors"
    shutil.copytree(VECTORS, copy)
    monkeypatch.setattr(build, "VECTORS", copy)
    assert build.main(["--check"]) == 0
    target = copy / "policy_version.json"
    target.write_bytes(target.read_bytes().replace(b'"version": "sha256:', b'"version": "sha256:0'))
    assert build.main(["--check"]) == 1


# --- canonical JSON and argument hashes ---------------------------------------------------------------


CANONICAL = _load("canonical_json.json")["cases"]
ARGUMENTS = _load("arguments_hash.json")


@pytest.mark.parametrize("case", CANONICAL, ids=[c["name"] for c in CANONICAL])
def test_canonical_json_bytes_are_pinned(case: dict[str, Any]) -> None:
    expected = case["canonical"].encode("utf-8")
    assert canonical_json(case["value"]) == expected
    assert rfc8785.dumps(case["value"]) == expected  # the library itself agrees with the vector


@pytest.mark.parametrize("case", ARGUMENTS["cases"], ids=[c["name"] for c in ARGUMENTS["cases"]])
def test_argument_hashes_are_pinned(case: dict[str, Any]) -> None:
    arguments, expected = case["arguments"], case["hash"]
    assert arguments_hash(arguments) == expected
    if arguments is not None:
        assert freeze_and_hash(arguments, ArgumentLimits())[1] == expected
        assert expected == "sha256:" + hashlib.sha256(rfc8785.dumps(arguments)).hexdigest()
    else:
        assert expected == "sha256:" + hashlib.sha256(b"{}").hexdigest()


def test_argument_vectors_that_must_differ_do_and_reorderings_do_not() -> None:
    by_name = {c["name"]: c["hash"] for c in ARGUMENTS["cases"]}
    assert by_name["flat ascii"] == by_name["same, other key order"]
    assert by_name["no arguments"] == by_name["empty"]
    assert len(set(by_name.values())) == len(by_name) - 2


@pytest.mark.parametrize("case", ARGUMENTS["rejected"], ids=[c["name"] for c in ARGUMENTS["rejected"]])
def test_arguments_without_a_canonical_hash_are_still_refused(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        freeze_and_hash(case["arguments"], ArgumentLimits())
    assert caught.value.reason == case["reason"]


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_key_order_never_changes_a_pinned_argument_hash(data: st.DataObject) -> None:
    case = data.draw(st.sampled_from([c for c in ARGUMENTS["cases"] if c["arguments"] is not None]))
    shuffled = _reordered(case["arguments"], data)
    assert arguments_hash(shuffled) == case["hash"]
    assert freeze_and_hash(shuffled, ArgumentLimits())[1] == case["hash"]


# --- tool fingerprints ----------------------------------------------------------------------------------


FINGERPRINTS = _load("tool_fingerprints.json")["cases"]


@pytest.mark.parametrize("case", FINGERPRINTS, ids=[c["tool"]["name"] for c in FINGERPRINTS])
def test_tool_fingerprints_are_pinned(case: dict[str, Any]) -> None:
    tool = case["tool"]
    assert tool_wire_form(tool) == case["wire_form"]
    assert canonical_json(case["wire_form"]).decode("utf-8") == case["canonical"]
    expected = "sha256:" + hashlib.sha256(case["canonical"].encode("utf-8")).hexdigest()
    assert case["fingerprint"] == expected
    assert tool_fingerprint(tool) == expected
    # The same tool as the SDK parses it off the wire.
    assert tool_fingerprint(Tool.model_validate(tool)) == expected


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reordered_tools_keep_their_pinned_fingerprint(data: st.DataObject) -> None:
    case = data.draw(st.sampled_from(FINGERPRINTS))
    assert tool_fingerprint(_reordered(case["tool"], data)) == case["fingerprint"]


# --- pinned manifests -----------------------------------------------------------------------------------


def _publisher(name: str) -> PublisherKeys:
    return PublisherKeys.from_jwk(_load(f"pins/{name}"))


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    return [(path, value)]


def _with_leaf(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(data))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return copy


def _changed(value: Any) -> Any:
    """One small change of a JSON leaf (one character, one unit, a flipped boolean)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str) and value:
        return value[:-1] + ("0" if value[-1] != "0" else "1")
    if isinstance(value, str):
        return "x"
    return 0


def test_stored_pin_files_still_load_and_name_the_same_manifest() -> None:
    digest = _load("pins/manifest_digest.json")
    unsigned = read_manifest(VECTORS / "pins/manifest.unsigned.json")
    signed = read_manifest(VECTORS / "pins/manifest.signed.json", publisher=_publisher("publisher.public.jwk.json"))
    es256 = read_manifest(VECTORS / "pins/manifest.es256.json", publisher=_publisher("publisher-es256.public.jwk.json"))
    for manifest in (unsigned, signed, es256):
        assert manifest.canonical().decode("utf-8") == digest["canonical"]
        assert manifest.digest == digest["digest"]
        assert manifest.digest == "sha256:" + hashlib.sha256(digest["canonical"].encode("utf-8")).hexdigest()
    pinned = [case for case in FINGERPRINTS if case["tool"]["name"] in unsigned.tools]
    assert len(pinned) == len(unsigned.tools) == 3
    for case in pinned:
        assert unsigned.fingerprint_of(case["tool"]["name"]) == case["fingerprint"]


def test_the_ed25519_signature_of_a_stored_pin_file_is_reproduced_exactly() -> None:
    """Ed25519 signs deterministically: the same key and manifest give the stored file byte for byte."""
    manifest = read_manifest(VECTORS / "pins/manifest.signed.json", publisher=_publisher("publisher.public.jwk.json"))
    text = dump_manifest(manifest, signing_key=_load("pins/publisher.private.jwk.json"))
    assert text.encode("utf-8") == (VECTORS / "pins/manifest.signed.json").read_bytes()
    assert dump_manifest(manifest).encode("utf-8") == (VECTORS / "pins/manifest.unsigned.json").read_bytes()


def test_stored_signatures_verify_only_with_their_own_key() -> None:
    ed, es = _publisher("publisher.public.jwk.json"), _publisher("publisher-es256.public.jwk.json")
    with pytest.raises(PinningError) as caught:
        read_manifest(VECTORS / "pins/manifest.signed.json", publisher=es)
    assert caught.value.reason == "pin.unknown_key"
    with pytest.raises(PinningError) as caught:
        read_manifest(VECTORS / "pins/manifest.unsigned.json", publisher=ed)
    assert caught.value.reason == "pin.unsigned"
    with pytest.raises(PinningError) as caught:
        read_manifest(VECTORS / "pins/manifest.signed.json", require_signature=True)
    assert caught.value.reason == "pin.unknown_key"


@pytest.mark.parametrize(
    ("name", "publisher"),
    [("manifest.signed.json", "publisher.public.jwk.json"), ("manifest.es256.json", "publisher-es256.public.jwk.json")],
)
def test_any_change_to_a_signed_stored_pin_file_is_refused(name: str, publisher: str) -> None:
    data, keys = _load(f"pins/{name}"), _publisher(publisher)
    parse_manifest(data, publisher=keys)
    leaves = _leaves(data)
    assert len(leaves) > 30
    for path, value in leaves:
        with pytest.raises(PinningError):
            parse_manifest(_with_leaf(data, path, _changed(value)), publisher=keys)
    signature = data["signature"]
    for i, char in enumerate(signature):
        if char == ".":
            continue
        other = "A" if char != "A" else "B"
        with pytest.raises(PinningError):
            parse_manifest({**data, "signature": signature[:i] + other + signature[i + 1 :]}, publisher=keys)


def test_a_changed_tool_in_an_unsigned_stored_pin_file_is_refused() -> None:
    data = _load("pins/manifest.unsigned.json")
    for path, value in _leaves(data["tools"]):
        with pytest.raises(PinningError) as caught:
            parse_manifest(_with_leaf(data, ("tools", *path), _changed(value)))
        assert caught.value.reason == "pin.malformed"


# --- credentials ----------------------------------------------------------------------------------------


CREDENTIAL = _load("credentials/credential.json")


def _credential_verifier(clock: float, *, audience: str | None = None) -> CredentialVerifier:
    return CredentialVerifier(
        issuer=CREDENTIAL["inputs"]["issuer"],
        audience=audience or CREDENTIAL["payload"]["aud"],
        keys=VerificationKeys.from_file(VECTORS / "credentials/jwks.json"),
        revocations=RevocationList(max_ttl=300.0, clock=lambda: clock),
        max_ttl=300.0,
        clock=lambda: clock,
    )


def test_a_stored_credential_verifies_with_the_stored_public_keys() -> None:
    payload = CREDENTIAL["payload"]
    claims = _credential_verifier(payload["iat"] + 1.0).check_token(CREDENTIAL["token"])
    assert claims == CredentialClaims.from_payload(payload)
    assert claims.to_payload() == payload
    assert claims.actors == (("user:alice", "https://idp.example"), ("service:planner", None))
    assert claims.single_use


def test_the_stored_key_signs_the_stored_claims_into_the_stored_token() -> None:
    keys = SigningKeySet.from_pem(VECTORS / "credentials/signing-key.pem")
    assert keys.jwks() == _load("credentials/jwks.json")
    kid, alg, key = keys.current
    assert (kid, alg) == (CREDENTIAL["kid"], CREDENTIAL["alg"])
    claims = CredentialClaims.from_payload(CREDENTIAL["payload"])
    assert sign_credential(claims.to_payload(), kid, alg, key) == CREDENTIAL["token"]


def test_minting_with_a_fixed_key_and_clock_gives_the_stored_claims() -> None:
    inputs = CREDENTIAL["inputs"]
    clock = inputs["clock"]
    keys = SigningKeySet.from_pem(VECTORS / "credentials/signing-key.pem", clock=lambda: clock)
    issuer = CredentialIssuer(inputs["issuer"], keys, max_ttl=300.0, clock=lambda: clock)
    assert build.CREDENTIAL_PRINCIPAL.subject == inputs["principal"]["subject"]
    assert [[a.subject, a.issuer] for a in build.CREDENTIAL_PRINCIPAL.actors] == inputs["principal"]["actors"]
    credential = asyncio.run(issuer.mint(build.CREDENTIAL_PRINCIPAL, **inputs["mint"]))
    payload = credential.claims.to_payload()
    assert payload.pop("jti") != inputs["jti"]  # random per credential
    expected = dict(CREDENTIAL["payload"])
    del expected["jti"]
    assert payload == expected
    # The fresh token verifies with the stored public keys, as the stored one does.
    assert _credential_verifier(clock).check_token(credential.token).to_payload() == credential.claims.to_payload()


@pytest.mark.parametrize(
    ("offset", "reason"), [(-30.0, "not_yet_valid"), (126.0, "expired"), (10_000.0, "expired")], ids=str
)
def test_a_stored_credential_is_refused_outside_its_lifetime(offset: float, reason: str) -> None:
    with pytest.raises(CredentialRefused) as caught:
        _credential_verifier(CREDENTIAL["payload"]["iat"] + offset).check_token(CREDENTIAL["token"])
    assert caught.value.reason == reason


def test_any_one_character_change_to_a_stored_credential_is_refused() -> None:
    token = CREDENTIAL["token"]
    verifier = _credential_verifier(CREDENTIAL["payload"]["iat"] + 1.0)
    for i, char in enumerate(token):
        if char == ".":
            continue
        for other in {"A", "_", "0"} - {char}:
            with pytest.raises(CredentialRefused):
                verifier.check_token(token[:i] + other + token[i + 1 :])


def test_a_stored_credential_is_refused_by_another_audience() -> None:
    with pytest.raises(CredentialRefused) as caught:
        _credential_verifier(CREDENTIAL["payload"]["iat"], audience="https://other.example").check_token(
            CREDENTIAL["token"]
        )
    assert caught.value.reason == "wrong_audience"


# --- revocation entries ---------------------------------------------------------------------------------


REVOCATION = _load("revocation.json")


def test_revocation_store_keys_are_pinned() -> None:
    revoked, keys = REVOCATION["revoked"], REVOCATION["keys"]
    revocations = RevocationList()
    assert revocations.jti_key(revoked["jti"]) == keys["jti"]
    assert revocations.task_key(*revoked["task"]) == keys["task"]
    assert revocations.principal_key(*revoked["principal"]) == keys["principal"]


def test_revocation_entries_are_written_as_stored() -> None:
    clock = REVOCATION["clock"]
    store = InMemoryStateStore(clock=lambda: clock)
    revocations = RevocationList(store, max_ttl=300.0, clock=lambda: clock)
    revoked = REVOCATION["revoked"]

    async def record() -> list[str | None]:
        await revocations.revoke(revoked["jti"], expires_at=revoked["jti_expires_at"])
        await revocations.revoke_task(*revoked["task"], owner=None)  # the tenant-wide (administrative) key
        await revocations.revoke_principal(*revoked["principal"])
        return await store.get_many(list(REVOCATION["entries"]))

    assert asyncio.run(record()) == list(REVOCATION["entries"].values())


def _stored_claims(**changes: Any) -> CredentialClaims:
    return dataclasses.replace(CredentialClaims.from_payload(CREDENTIAL["payload"]), **changes)


@pytest.mark.parametrize(
    ("claims", "revoked"),
    [
        pytest.param(lambda: _stored_claims(jti="revoked-jti-0001", task_id=None, tenant="t2"), True, id="by-jti"),
        pytest.param(lambda: _stored_claims(chain=("revoked-jti-0001",), tenant="t2"), True, id="by-parent-jti"),
        pytest.param(lambda: _stored_claims(subject="other"), True, id="by-task"),
        pytest.param(lambda: _stored_claims(task_id=None), True, id="by-principal"),
        pytest.param(lambda: _stored_claims(task_id=None, tenant="globex"), False, id="other-tenant"),
        pytest.param(lambda: _stored_claims(issued_at=1_767_225_901.0, not_before=1_767_225_901.0), False, id="later"),
    ],
)
def test_stored_revocation_entries_keep_refusing_what_they_covered(
    claims: Callable[[], CredentialClaims], revoked: bool
) -> None:
    """A store holding entries written by an earlier release still refuses the same credentials."""
    clock = REVOCATION["clock"] + 1.0
    store = InMemoryStateStore(clock=lambda: clock)

    async def check() -> None:
        for key, value in REVOCATION["entries"].items():
            await store.put(key, value, 600.0)
        await RevocationList(store, max_ttl=300.0, clock=lambda: clock).check(claims())

    if revoked:
        with pytest.raises(Exception, match="revoked") as caught:
            asyncio.run(check())
        assert getattr(caught.value, "reason", None) == "revoked"
    else:
        asyncio.run(check())


# --- policy version -------------------------------------------------------------------------------------


def test_a_policy_version_is_pinned() -> None:
    vector = _load("policy_version.json")
    policy = Policy.from_yaml(vector["yaml"])
    assert policy.version == vector["version"]
    assert Policy.from_dict(json.loads(json.dumps(policy_document(vector["yaml"])))).version == vector["version"]


def policy_document(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


# --- the JSONL audit chain ------------------------------------------------------------------------------


CHAIN = _load("audit/chain.json")
CHAIN_FILE = VECTORS / "audit/chain.jsonl"


def test_the_stored_audit_log_verifies_with_its_stored_head() -> None:
    report = verify_chain([CHAIN_FILE], head=CHAIN["head"])
    assert report.ok, report.problems
    assert (report.first_seq, report.last_seq, report.lines) == (1, len(CHAIN["events"]), len(CHAIN["events"]))
    assert report.head == CHAIN["head"] == CHAIN["hashes"][-1]


def test_the_stored_chain_hashes_are_recomputed_line_by_line() -> None:
    prev = GENESIS
    lines = CHAIN_FILE.read_bytes().split(b"\n")
    assert lines[-1] == b""  # every line ends with a newline
    for seq, (raw, expected) in enumerate(zip(lines[:-1], CHAIN["hashes"], strict=True), 1):
        record = json.loads(raw)
        assert (record["seq"], record["prev"], record["hash"]) == (seq, prev, expected)
        body = canonical_json(record["event"])
        assert raw == b'{"event":%b,"hash":"%b","prev":"%b","seq":%d}' % (body, expected.encode(), prev.encode(), seq)
        assert line_hash(prev, seq, body) == expected
        assert expected == "sha256:" + hashlib.sha256(f"{prev}\n{seq}\n".encode() + body).hexdigest()
        assert record["event"] == {**CHAIN["events"][seq - 1], "schema_version": "1"}
        prev = expected


def test_the_sink_writes_the_stored_events_as_the_stored_bytes(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "audit.jsonl", max_bytes=None)
    sink.write_batch([event_from_dict(e) for e in CHAIN["events"]])
    sink.close()
    assert (tmp_path / "audit.jsonl").read_bytes() == CHAIN_FILE.read_bytes()
    assert sink.head == CHAIN["head"]


def test_a_stored_log_is_continued_not_restarted(tmp_path: Path) -> None:
    """Opening an old log appends after its last line; the whole file still verifies."""
    path = tmp_path / "audit.jsonl"
    shutil.copyfile(CHAIN_FILE, path)
    sink = JsonlSink(path, max_bytes=None)
    assert (sink.seq, sink.head) == (len(CHAIN["events"]), CHAIN["head"])
    sink(event_from_dict({**CHAIN["events"][0], "id": "evt-0005"}))
    sink.close()
    report = verify_chain([path], head=sink.head)
    assert report.ok, report.problems
    assert report.last_seq == len(CHAIN["events"]) + 1
    assert path.read_bytes().startswith(CHAIN_FILE.read_bytes())


def test_every_one_byte_change_to_the_stored_log_is_detected(tmp_path: Path) -> None:
    original = CHAIN_FILE.read_bytes()
    path = tmp_path / "audit.jsonl"
    for i in range(len(original)):
        changed = bytearray(original)
        changed[i] ^= 0x01
        path.write_bytes(bytes(changed))
        assert not verify_chain([path], head=CHAIN["head"]).ok, f"byte {i} changed unnoticed"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_substitution_in_the_stored_log_is_detected(tmp_path: Path, data: st.DataObject) -> None:
    original = CHAIN_FILE.read_bytes()
    i = data.draw(st.integers(0, len(original) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[i]))
    path = tmp_path / "audit.jsonl"
    path.write_bytes(original[:i] + bytes([byte]) + original[i + 1 :])
    assert not verify_chain([path], head=CHAIN["head"]).ok


def test_deleting_or_swapping_stored_lines_is_detected(tmp_path: Path) -> None:
    lines = CHAIN_FILE.read_bytes().splitlines(keepends=True)
    path = tmp_path / "audit.jsonl"
    variants = {
        "deleted": lines[:1] + lines[2:],
        "reordered": [lines[1], lines[0], *lines[2:]],
        "truncated": lines[:-1],
    }
    for kind, variant in variants.items():
        path.write_bytes(b"".join(variant))
        report = verify_chain([path], head=CHAIN["head"])
        assert kind in {p.kind for p in report.problems}, (kind, report.problems)


@pytest.mark.parametrize(("written", "edited"), [(b"\\u001f", b"\\u001F"), (b"1e+21", b"1E+21")])
def test_a_line_whose_bytes_differ_from_the_hashed_bytes_is_detected(
    tmp_path: Path, written: bytes, edited: bytes
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path, max_bytes=None)
    sink(event_from_dict({**CHAIN["events"][3], "detail": "a\u001fb", "attributes": {"big": 1e21}}))
    sink.close()
    original = path.read_bytes()
    assert written in original
    path.write_bytes(original.replace(written, edited))
    assert not verify_chain([path], head=sink.head).ok


# --- a rotated log ----------------------------------------------------------------------------------------


ROTATED = _load("audit/rotated.json")
ROTATED_DIR = VECTORS / "audit/rotated"


def test_a_stored_rotated_log_verifies_across_its_files_in_any_order() -> None:
    files = sorted(ROTATED_DIR.iterdir())
    assert {f.name: len(f.read_bytes().splitlines()) for f in files} == ROTATED["files"]
    for order in (files, files[::-1], [files[1], files[2], files[0]]):
        report = verify_chain(order, head=ROTATED["head"])
        assert report.ok, report.problems
        assert (report.first_seq, report.last_seq) == (1, ROTATED["last_seq"])


def test_a_stored_rotated_log_missing_its_first_file_is_refused_unless_partial() -> None:
    files = sorted(ROTATED_DIR.iterdir())[1:]
    assert "start" in {p.kind for p in verify_chain(files).problems}
    assert verify_chain(files, partial=True, head=ROTATED["head"]).ok


def test_the_sink_rotates_the_stored_events_into_the_stored_files(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "audit.jsonl", max_bytes=ROTATED["max_bytes"])
    for data in ROTATED["events"]:
        sink(event_from_dict(data))
    sink.close()
    written = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert written == {p.name: p.read_bytes() for p in ROTATED_DIR.iterdir()}


def test_a_sink_resumes_a_stored_rotated_log_whose_active_file_is_gone(tmp_path: Path) -> None:
    """With no active file, the sink finds the newest rotated file by its name and continues its chain."""
    for path in ROTATED_DIR.iterdir():
        if path.name != "audit.jsonl":
            shutil.copyfile(path, tmp_path / path.name)
    newest = json.loads((ROTATED_DIR / "audit.000000000008.jsonl").read_bytes().splitlines()[-1])
    sink = JsonlSink(tmp_path / "audit.jsonl", max_bytes=ROTATED["max_bytes"])
    assert (sink.seq, sink.head) == (newest["seq"], newest["hash"])
    sink(event_from_dict(ROTATED["events"][0] | {"id": "evt-resumed"}))
    sink.close()
    assert verify_chain(sorted(tmp_path.iterdir()), head=sink.head).ok
