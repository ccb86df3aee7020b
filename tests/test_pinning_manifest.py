"""Pinned manifests and pin files: validated on load, atomic writes, and fail-closed stores."""

from __future__ import annotations

import base64
import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc.jwk import OKPKey
from mcp_types import Tool

from mcpgov import PinningError
from mcpgov.pinning import (
    FilePinStore,
    InlinePinStore,
    Manifest,
    PinStore,
    PublisherKeys,
    dump_manifest,
    parse_manifest,
    read_manifest,
    tool_fingerprint,
    write_manifest,
)

from .pinning_server import build_server

pytestmark = pytest.mark.anyio


def _tool(name: str, description: str = "d") -> Tool:
    return Tool(name=name, description=description, input_schema={"type": "object", "properties": {}})


def _manifest(*names: str) -> Manifest:
    return Manifest.from_tools("billing", "1.4.2", [_tool(n) for n in names or ("read_invoice", "refund")])


def _keys() -> tuple[OKPKey, PublisherKeys]:
    key = OKPKey.generate_key("Ed25519", {"kid": "publisher-1"})
    return key, PublisherKeys.from_jwk(key.as_dict(private=False))


_KEYS = _keys()
_PINS = Path(__import__("tempfile").mkdtemp(prefix="mcpgov-pins-"))
"""Where the property tests write their pin files (Hypothesis runs share no tmp_path)."""


async def test_snapshot_of_a_server_pins_every_tool() -> None:
    server = build_server()
    manifest = Manifest.from_tools(server.name, server.version, await server.list_tools())
    assert sorted(manifest.tools) == ["read_invoice", "refund"]
    assert manifest.server.name == "billing"
    assert manifest.server.version == "1.4.2"
    tool = next(t for t in await server.list_tools() if t.name == "refund")
    assert manifest.fingerprint_of("refund") == tool_fingerprint(tool)
    assert manifest.fingerprint_of("missing") is None


def test_from_tools_refuses_bad_duplicate_and_colliding_names() -> None:
    with pytest.raises(PinningError, match="not allowed") as bad:
        Manifest.from_tools("s", "1", [_tool("read invoice")])
    assert bad.value.reason == "pin.malformed"
    with pytest.raises(PinningError, match="two tools") as dup:
        Manifest.from_tools("s", "1", [_tool("a"), _tool("a")])
    assert dup.value.reason == "pin.malformed"
    with pytest.raises(PinningError) as collision:
        Manifest.from_tools("s", "1", [_tool("read_invoice"), _tool("read_lnvoice")])
    assert collision.value.reason == "name.collision"


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "billing.json"
    manifest = _manifest()
    write_manifest(path, manifest)
    assert read_manifest(path) == manifest
    assert manifest.digest.startswith("sha256:")
    # Stable text: sorted keys, indented, final newline; no temporary file left behind.
    assert path.read_text() == dump_manifest(manifest)
    assert path.read_text().endswith("}\n")
    assert [p.name for p in tmp_path.iterdir()] == ["billing.json"]


def test_write_is_atomic_and_keeps_the_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "billing.json"
    write_manifest(path, _manifest())
    os.chmod(path, 0o640)
    before = path.read_text()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_manifest(path, _manifest("read_invoice"))
    monkeypatch.undo()
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["billing.json"]
    write_manifest(path, _manifest("read_invoice"))
    assert path.stat().st_mode & 0o777 == 0o640  # the file's mode survives a rewrite


@pytest.mark.parametrize(
    ("label", "edit", "message"),
    [
        ("edited description", lambda d: d["tools"]["refund"]["tool"].__setitem__("description", "x"), "fingerprint"),
        ("bad fingerprint", lambda d: d["tools"]["refund"].__setitem__("fingerprint", "md5:abc"), "fingerprint"),
        ("renamed key", lambda d: d["tools"].__setitem__("refunds", d["tools"].pop("refund")), "another name"),
        ("unknown format", lambda d: d.__setitem__("format", "mcpgov.pins/9"), "format"),
        ("extra field", lambda d: d.__setitem__("approved_by", "me"), "approved_by"),
        ("uncovered tool field", lambda d: d["tools"]["refund"]["tool"].__setitem__("x-scopes", []), "does not cover"),
        ("no input schema", lambda d: d["tools"]["refund"]["tool"].pop("inputSchema"), "inputSchema"),
        ("tools not an object", lambda d: d.__setitem__("tools", []), "tools"),
        ("bad name", lambda d: d["tools"].__setitem__("bad name", d["tools"]["refund"]), "not allowed"),
    ],
)
def test_malformed_manifests_are_refused_with_a_clear_error(label: str, edit: Any, message: str) -> None:
    data = _manifest().body()
    edit(data)
    with pytest.raises(PinningError, match=message) as caught:
        parse_manifest(data, source="pin file x.json")
    assert caught.value.reason == "pin.malformed", label
    assert caught.value.detail.startswith("pin file x.json is not a valid pinned manifest")


def test_non_object_and_non_json_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PinningError) as not_object:
        parse_manifest([1, 2])
    assert not_object.value.reason == "pin.malformed"
    path = tmp_path / "pin.json"
    path.write_text("{not json")
    with pytest.raises(PinningError, match="not valid JSON") as not_json:
        read_manifest(path)
    assert not_json.value.reason == "pin.malformed"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(PinningError) as not_utf8:
        read_manifest(path)
    assert not_utf8.value.reason == "pin.malformed"


def test_missing_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PinningError, match="does not exist") as missing:
        read_manifest(tmp_path / "absent.json")
    assert missing.value.reason == "pin.missing"
    with pytest.raises(PinningError) as directory:
        read_manifest(tmp_path)
    assert directory.value.reason == "pin.unreadable"


def test_signed_manifest_round_trips_and_verifies(tmp_path: Path) -> None:
    key, publisher = _keys()
    path = tmp_path / "pin.json"
    write_manifest(path, _manifest(), signing_key=key)
    data = json.loads(path.read_text())
    assert data["signature"].count(".") == 2 and ".." in data["signature"]  # detached payload
    assert read_manifest(path, publisher=publisher) == _manifest()
    assert repr(publisher) == "PublisherKeys(kids=['publisher-1'])"


def test_tampered_signed_manifest_is_refused(tmp_path: Path) -> None:
    key, publisher = _keys()
    signed = json.loads(dump_manifest(_manifest(), signing_key=key))
    # A re-pinned tool with a consistent fingerprint, but not what the publisher signed.
    other = _manifest("read_invoice", "refund_all").body()
    signed["tools"] = other["tools"]
    with pytest.raises(PinningError) as caught:
        parse_manifest(signed, publisher=publisher)
    assert caught.value.reason == "pin.bad_signature"


def test_signature_by_an_unknown_key_is_refused() -> None:
    stranger = OKPKey.generate_key("Ed25519", {"kid": "stranger"})
    _, publisher = _keys()
    signed = json.loads(dump_manifest(_manifest(), signing_key=stranger))
    with pytest.raises(PinningError, match="unknown publisher key") as caught:
        parse_manifest(signed, publisher=publisher)
    assert caught.value.reason == "pin.unknown_key"


def test_same_kid_but_another_key_is_a_bad_signature() -> None:
    impostor = OKPKey.generate_key("Ed25519", {"kid": "publisher-1"})
    _, publisher = _keys()
    signed = json.loads(dump_manifest(_manifest(), signing_key=impostor))
    with pytest.raises(PinningError) as caught:
        parse_manifest(signed, publisher=publisher)
    assert caught.value.reason == "pin.bad_signature"


@pytest.mark.parametrize("signature", ["garbage", "a.b.c", 42, "eyJhbGciOiJFZDI1NTE5In0..AAAA"])
def test_malformed_signatures_are_refused(signature: Any) -> None:
    _, publisher = _keys()
    data = {**_manifest().body(), "signature": signature}
    with pytest.raises(PinningError) as caught:
        parse_manifest(data, publisher=publisher)
    assert caught.value.reason == "pin.bad_signature"


def test_unsigned_manifest_is_refused_when_a_publisher_key_is_set() -> None:
    _, publisher = _keys()
    with pytest.raises(PinningError) as caught:
        parse_manifest(_manifest().body(), publisher=publisher)
    assert caught.value.reason == "pin.unsigned"


def test_signed_manifest_without_a_configured_key_is_refused_at_runtime_but_readable_by_tools() -> None:
    key, _ = _keys()
    signed = json.loads(dump_manifest(_manifest(), signing_key=key))
    with pytest.raises(PinningError) as caught:
        parse_manifest(signed, require_signature=True)
    assert caught.value.reason == "pin.unknown_key"
    assert parse_manifest(signed) == _manifest()  # local tooling (diff) may read it unchecked


def test_file_store_rereads_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "pin.json"
    write_manifest(path, _manifest("read_invoice"))
    store = FilePinStore(path)
    assert isinstance(store, PinStore)
    first = store.load()
    assert store.load() is first  # unchanged file: cached
    write_manifest(path, _manifest("read_invoice", "refund"))
    assert sorted(store.load().tools) == ["read_invoice", "refund"]


def test_file_store_fails_closed_and_never_falls_back_to_the_last_good_pin(tmp_path: Path) -> None:
    path = tmp_path / "pin.json"
    write_manifest(path, _manifest())
    store = FilePinStore(path)
    store.load()
    path.write_text('{"format": "mcpgov.pins/1", "server": {"name": "billing"}, "tools": {"refund": ')
    for _ in range(2):
        with pytest.raises(PinningError) as corrupt:
            store.load()
        assert corrupt.value.reason == "pin.malformed"
    path.unlink()
    with pytest.raises(PinningError) as missing:
        store.load()
    assert missing.value.reason == "pin.missing"
    write_manifest(path, _manifest())
    assert store.load() == _manifest()


def test_file_store_with_publisher_requires_the_signature(tmp_path: Path) -> None:
    key, publisher = _keys()
    path = tmp_path / "pin.json"
    write_manifest(path, _manifest())
    with pytest.raises(PinningError) as unsigned:
        FilePinStore(path, publisher=publisher).load()
    assert unsigned.value.reason == "pin.unsigned"
    write_manifest(path, _manifest(), signing_key=key)
    assert FilePinStore(path, publisher=publisher).load() == _manifest()
    with pytest.raises(PinningError) as unknown:
        FilePinStore(path).load()
    assert unknown.value.reason == "pin.unknown_key"


def test_inline_store_validates_at_construction() -> None:
    assert InlinePinStore(_manifest().body()).load() == _manifest()
    with pytest.raises(PinningError):
        InlinePinStore({"format": "mcpgov.pins/1"})
    assert "billing" in repr(InlinePinStore(_manifest().body()))


def test_oversized_pin_file_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcpgov.pinning import _manifest as manifest_module

    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", 64)
    path = tmp_path / "pin.json"
    write_manifest(path, _manifest())
    with pytest.raises(PinningError, match="larger than") as caught:
        read_manifest(path)
    assert caught.value.reason == "pin.unreadable"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)


def _near_manifest() -> st.SearchStrategy[Any]:
    """Manifest-shaped data with arbitrary values in arbitrary places."""
    body = _manifest().body()
    return st.fixed_dictionaries(
        {},
        optional={
            "format": st.sampled_from(["mcpgov.pins/1", "mcpgov.pins/2"]) | _json_values,
            "server": st.just(body["server"]) | _json_values,
            "tools": st.just(body["tools"]) | st.dictionaries(st.text(max_size=12), _json_values, max_size=3),
            "signature": _json_values,
        },
    )


@given(data=_json_values | _near_manifest())
def test_parse_manifest_only_ever_returns_a_manifest_or_raises_pinning_error(data: Any) -> None:
    _, publisher = _keys()
    for kwargs in ({}, {"require_signature": True}, {"publisher": publisher}):
        outcome = _outcome(functools.partial(parse_manifest, data, **kwargs))
        assert isinstance(outcome, Manifest) or outcome.reason.startswith("pin.")


def _outcome(parse: Any) -> Manifest | PinningError:
    try:
        manifest: Manifest = parse()
    except PinningError as exc:
        return exc
    return manifest


def _with_key_twice(value: Any, target: int, repeat: Any, counter: list[int]) -> str:
    """``value`` as JSON text, with the first key of its ``target``-th object (pre-order) given
    again in front of it, holding ``repeat`` (``...``: the same value)."""
    if isinstance(value, dict):
        index = counter[0]
        counter[0] += 1
        items = [f"{json.dumps(k)}: {_with_key_twice(v, target, repeat, counter)}" for k, v in value.items()]
        if index == target and value:
            first = next(iter(value))
            again = value[first] if repeat is ... else repeat
            items.insert(0, f"{json.dumps(first)}: {json.dumps(again)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_with_key_twice(v, target, repeat, counter) for v in value) + "]"
    return json.dumps(value)


def _objects(value: Any, found: list[bool]) -> list[bool]:
    """For each object of ``value`` (pre-order): does it hold a key."""
    if isinstance(value, dict):
        found.append(bool(value))
        for v in value.values():
            _objects(v, found)
    elif isinstance(value, list):
        for v in value:
            _objects(v, found)
    return found


@given(data=st.data(), signed=st.booleans())
def test_a_key_given_twice_anywhere_in_a_pin_file_is_refused(data: st.DataObject, signed: bool) -> None:
    """Whichever object holds it and whatever it holds (the same value too): a pin means one thing."""
    key, keys = _KEYS
    body = json.loads(dump_manifest(_manifest(), signing_key=key if signed else None))
    target = data.draw(st.sampled_from([i for i, keyed in enumerate(_objects(body, [])) if keyed]))
    repeat = data.draw(st.sampled_from([..., None, "other", {"type": "object"}]))
    text = _with_key_twice(body, target, repeat, [0])
    path = _PINS / f"twice-{os.getpid()}.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PinningError) as caught:
        read_manifest(path, publisher=keys if signed else None)
    assert caught.value.reason == "pin.malformed"
    assert "duplicate key" in caught.value.detail
    with pytest.raises(PinningError):
        FilePinStore(path, publisher=keys if signed else None).load()


@pytest.mark.parametrize("depth", [950, 5_000, 100_000])
def test_a_pin_file_nested_too_deeply_is_malformed_not_a_crash(tmp_path: Path, depth: int) -> None:
    body = _manifest().body()
    body["tools"]["refund"]["tool"]["inputSchema"] = "@schema@"
    nested = '{"a": ' * depth + "{}" + "}" * depth
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(body).replace('"@schema@"', nested), encoding="utf-8")
    with pytest.raises(PinningError) as caught:
        read_manifest(path)
    assert caught.value.reason == "pin.malformed"
    with pytest.raises(PinningError):
        FilePinStore(path).load()


@pytest.mark.parametrize("twin", ["Refund", "re-fund", "refunb", "REFUND", "ref.und", "refun_d"])
def test_a_pin_file_approving_names_that_can_be_mistaken_for_each_other_is_malformed(twin: str) -> None:
    body = _manifest().body()
    tool = {**body["tools"]["refund"]["tool"], "name": twin}
    body["tools"][twin] = {"fingerprint": tool_fingerprint(tool), "tool": tool}
    if twin == "refunb":  # not a lookalike: still a valid pin
        assert twin in parse_manifest(body).tools
        return
    with pytest.raises(PinningError, match="mistaken") as caught:
        parse_manifest(body, source="pin file x.json")
    assert caught.value.reason == "pin.malformed"


def _attached(signature: str, payload: bytes) -> str:
    """A detached signature with ``payload`` put back in (a compact JWS carrying its payload)."""
    header, _, sig = signature.split(".")
    return f"{header}.{base64.urlsafe_b64encode(payload).decode('ascii').rstrip('=')}.{sig}"


@pytest.mark.parametrize(
    "signed_body",
    ["older manifest", "other server", "the same manifest"],
)
def test_a_signature_carrying_its_own_payload_never_vouches_for_a_manifest(signed_body: str) -> None:
    """The publisher's genuine signature of some other JSON (an older pin, another server's pin),
    with that JSON attached, must not pass for the manifest beside it."""
    key, publisher = _KEYS
    current = _manifest("read_invoice", "refund", "refund_all")
    other = {
        "older manifest": _manifest("read_invoice"),
        "other server": Manifest.from_tools("payroll", "2.0.0", [_tool("pay")]),
        "the same manifest": current,
    }[signed_body]
    genuine = json.loads(dump_manifest(other, signing_key=key))["signature"]
    body = current.body()
    body["signature"] = _attached(genuine, other.canonical())
    with pytest.raises(PinningError) as caught:
        parse_manifest(body, publisher=publisher)
    assert caught.value.reason == "pin.bad_signature"
    # The signature as written (detached) verifies only the manifest it was made for.
    body["signature"] = genuine
    if other is current:
        assert parse_manifest(body, publisher=publisher) == current
    else:
        with pytest.raises(PinningError):
            parse_manifest(body, publisher=publisher)
