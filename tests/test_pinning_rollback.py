"""A genuinely signed older pin put back is refused: manifests carry a sequence number (and an
optional ``not_after``) under the signature, and a registry refuses one older than it accepted,
one without a number after a numbered one, and one past its ``not_after``; with a state store,
replicas and restarts agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import OKPKey
from mcp import MCPError

from mcpgov import GovernedClient, InMemoryStateStore, PinningError, StateStore, StateStoreError
from mcpgov.pinning import Manifest, PinningMiddleware, ServerRegistry, approve_changes, snapshot, write_manifest
from mcpgov.pinning._manifest import parse_manifest

from .pinning_server import edit_tool
from .redis_support import redis_server
from .test_pinning_middleware import AGENT, Setup

pytestmark = pytest.mark.anyio

KEY = OKPKey.generate_key("Ed25519", {"kid": "billing-publisher"})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _registry(setup: Setup, **options: Any) -> ServerRegistry:
    return ServerRegistry([setup.entry], **options)


def _client(setup: Setup, registry: ServerRegistry, mode: str) -> GovernedClient:
    pinning = PinningMiddleware(registry, server_id="billing")
    return GovernedClient(setup.server, pinning, audit=setup.sink, principal=AGENT, mode=mode)


async def _refused(client: GovernedClient, name: str, args: dict[str, Any]) -> PinningError:
    with pytest.raises(MCPError) as caught:
        await client.call_tool(name, args)
    assert caught.value.code == -32005
    cause = caught.value.__cause__
    assert isinstance(cause, PinningError)
    return cause


async def _two_pins(setup: Setup) -> tuple[str, str]:
    """Pin 1 approves refund; pin 2 (its publisher withdrew the old refund) approves the changed one.
    Both genuinely signed; returns their file texts."""
    first = (await snapshot(setup.server)).succeeding()
    write_manifest(setup.pin_path, first, signing_key=KEY)
    old_text = setup.pin_path.read_text()
    edit_tool(setup.server, "refund", description="Refund part of an invoice (at most 100).")
    second = approve_changes(first, await snapshot(setup.server))
    assert second.sequence == 2
    write_manifest(setup.pin_path, second, signing_key=KEY)
    return old_text, setup.pin_path.read_text()


async def test_a_signed_older_pin_put_back_is_refused_and_audited(tmp_path: Path, mode: str) -> None:
    setup = Setup(tmp_path, publisher_key=KEY.as_dict(private=False))
    old_text, _ = await _two_pins(setup)
    registry = _registry(setup)
    async with _client(setup, registry, mode) as client:
        assert sorted(t.name for t in (await client.list_tools()).tools) == ["read_invoice", "refund"]
        # The server goes back to the withdrawn refund, and the old pin that approved it is put back.
        edit_tool(setup.server, "refund", description="Refund part of an invoice.")
        setup.pin_path.write_text(old_text)
        cause = await _refused(client, "refund", {"invoice_id": "inv-1", "amount": 5})
        assert cause.reason == "pin.rollback"
        with pytest.raises(MCPError):
            await client.list_tools()
    assert setup.server_calls() == []
    denies = [e for e in setup.sink.decisions() if e.effect == "deny"]
    assert [e.reason for e in denies] == ["pin.rollback", "pin.rollback"]


async def test_an_unsequenced_pin_after_a_sequenced_one_is_refused(tmp_path: Path, mode: str) -> None:
    setup = Setup(tmp_path, publisher_key=KEY.as_dict(private=False))
    legacy = await snapshot(setup.server)
    assert legacy.sequence is None and legacy.format == "mcpgov.pins/1"
    write_manifest(setup.pin_path, legacy, signing_key=KEY)
    legacy_text = setup.pin_path.read_text()
    registry = _registry(setup)
    async with _client(setup, registry, mode) as client:
        # No sequenced pin seen yet: the old format still verifies.
        assert (await client.call_tool("read_invoice", {"invoice_id": "inv-1"})).is_error is False
        write_manifest(setup.pin_path, legacy.succeeding(legacy), signing_key=KEY)
        assert (await client.call_tool("read_invoice", {"invoice_id": "inv-1"})).is_error is False
        setup.pin_path.write_text(legacy_text)
        cause = await _refused(client, "read_invoice", {"invoice_id": "inv-1"})
        assert cause.reason == "pin.rollback"


async def test_replicas_sharing_a_state_store_refuse_a_pin_older_than_either_accepted(
    tmp_path: Path, mode: str
) -> None:
    await _replicas(tmp_path, mode, InMemoryStateStore())


async def test_replicas_sharing_redis_refuse_a_pin_older_than_either_accepted(tmp_path: Path) -> None:
    pytest.importorskip("redis.asyncio", reason="the 'redis' extra is not installed")
    from mcpgov.redis import RedisStateStore

    with redis_server() as (url, _process):
        async with RedisStateStore.from_url(url, prefix="pins:") as store:
            await _replicas(tmp_path, "legacy", store)
            assert await store.get("pin:sequence:billing") == repr(2.0)


async def _replicas(tmp_path: Path, mode: str, store: StateStore) -> None:
    setup = Setup(tmp_path, publisher_key=KEY.as_dict(private=False))
    old_text, new_text = await _two_pins(setup)
    async with _client(setup, _registry(setup, state=store), mode) as client:
        await client.list_tools()  # this replica accepts pin 2
    setup.pin_path.write_text(old_text)
    # Another replica (or this one restarted) has never seen pin 2 itself.
    async with _client(setup, _registry(setup, state=store), mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.list_tools()
        assert isinstance(caught.value.__cause__, PinningError)
        assert caught.value.__cause__.reason == "pin.rollback"
    setup.pin_path.write_text(new_text)
    async with _client(setup, _registry(setup, state=store), mode) as client:
        assert sorted(t.name for t in (await client.list_tools()).tools) == ["read_invoice", "refund"]


class FailingStore(InMemoryStateStore):
    async def get(self, key: str) -> str | None:
        raise StateStoreError("down", reason="unavailable")


class GarbledStore(InMemoryStateStore):
    def __init__(self, value: str) -> None:
        super().__init__()
        self.value = value

    async def get(self, key: str) -> str | None:
        return self.value


@pytest.mark.parametrize(
    "store", [FailingStore(), GarbledStore("nan"), GarbledStore("inf"), GarbledStore("-1"), GarbledStore("x")]
)
async def test_a_state_store_that_cannot_say_refuses(tmp_path: Path, store: InMemoryStateStore) -> None:
    setup = Setup(tmp_path, publisher_key=KEY.as_dict(private=False))
    await _two_pins(setup)
    async with _client(setup, _registry(setup, state=store), "legacy") as client:
        with pytest.raises(MCPError) as caught:
            await client.list_tools()
    cause = caught.value.__cause__
    assert isinstance(cause, PinningError) and cause.reason == "pin.unverifiable"
    assert setup.server_calls() == []


async def test_an_expired_pin_is_refused(tmp_path: Path, mode: str) -> None:
    setup = Setup(tmp_path, publisher_key=KEY.as_dict(private=False))
    manifest = (await snapshot(setup.server)).succeeding(not_after="2030-01-01T00:00:00Z")
    write_manifest(setup.pin_path, manifest, signing_key=KEY)
    clock = Clock(manifest.expires_at - 1)  # type: ignore[operator]
    async with _client(setup, _registry(setup, clock=clock), mode) as client:
        assert (await client.call_tool("read_invoice", {"invoice_id": "inv-1"})).is_error is False
        clock.now += 1
        cause = await _refused(client, "read_invoice", {"invoice_id": "inv-1"})
        assert cause.reason == "pin.expired"


def test_sequence_and_not_after_are_covered_by_the_signature(tmp_path: Path) -> None:
    setup = Setup(tmp_path, publisher_key=KEY.as_dict(private=False))
    registry = _registry(setup)
    entry = registry.get("billing")
    assert entry is not None and entry.publisher is not None
    manifest = Manifest.from_tools("billing", "1.4.2", []).succeeding(not_after="2030-01-01T00:00:00+00:00")
    write_manifest(setup.pin_path, manifest, signing_key=KEY)
    signed = json.loads(setup.pin_path.read_text())
    assert parse_manifest(signed, publisher=entry.publisher).sequence == 1
    for change in ({"sequence": 9}, {"not_after": "2099-01-01T00:00:00+00:00"}):
        with pytest.raises(PinningError) as caught:
            parse_manifest({**signed, **change}, publisher=entry.publisher)
        assert caught.value.reason == "pin.bad_signature"
    stripped = {k: v for k, v in signed.items() if k != "not_after"}
    with pytest.raises(PinningError) as caught:
        parse_manifest(stripped, publisher=entry.publisher)
    assert caught.value.reason == "pin.bad_signature"


@pytest.mark.parametrize(
    "change",
    [
        {"format": "mcpgov.pins/2"},  # no sequence
        {"sequence": 1},  # a sequence in the old format
        {"format": "mcpgov.pins/2", "sequence": 0},
        {"format": "mcpgov.pins/2", "sequence": True},
        {"format": "mcpgov.pins/2", "sequence": 1.0},
        {"format": "mcpgov.pins/2", "sequence": "2"},
        {"format": "mcpgov.pins/2", "sequence": 1, "not_after": "2030-01-01"},
        {"format": "mcpgov.pins/2", "sequence": 1, "not_after": "2030-01-01T00:00:00"},
        {"format": "mcpgov.pins/2", "sequence": 1, "not_after": 1893456000},
        {"format": "mcpgov.pins/2", "sequence": 1, "not_after": "soon"},
    ],
)
def test_malformed_sequence_or_not_after_is_refused(change: dict[str, Any]) -> None:
    body = Manifest.from_tools("billing", "1.4.2", []).body()
    with pytest.raises(PinningError) as caught:
        parse_manifest({**body, **change})
    assert caught.value.reason == "pin.malformed"


def test_an_old_format_manifest_reads_and_digests_as_it_was_written() -> None:
    manifest = Manifest.from_tools("billing", "1.4.2", [])
    assert set(manifest.body()) == {"format", "server", "tools"}
    assert parse_manifest(manifest.body()).digest == manifest.digest
