"""The in-memory state store: expiry, single use, counters, bounds that never evict live entries."""

from __future__ import annotations

import pytest

from mcpgov import ConfigurationError, InMemoryStateStore, StateStore, StateStoreError

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_entries_expire_with_their_ttl() -> None:
    clock = Clock()
    store = InMemoryStateStore(clock=clock)
    assert isinstance(store, StateStore)
    await store.put("revoked:a", "1", ttl=10)
    assert await store.get("revoked:a") == "1"
    clock.now += 10.5
    assert await store.get("revoked:a") is None
    assert await store.get_many(["revoked:a", "x"]) == [None, None]


async def test_add_is_first_writer_wins_until_expiry() -> None:
    clock = Clock()
    store = InMemoryStateStore(clock=clock)
    assert await store.add("used:j1", "1", ttl=5) is True
    assert await store.add("used:j1", "1", ttl=5) is False
    clock.now += 6
    assert await store.add("used:j1", "1", ttl=5) is True


async def test_counters_count_within_their_window() -> None:
    clock = Clock()
    store = InMemoryStateStore(clock=clock)
    assert [await store.incr("rate:k", ttl=60) for _ in range(3)] == [1, 2, 3]
    clock.now += 61
    assert await store.incr("rate:k", ttl=60) == 1


async def test_a_full_store_refuses_rather_than_evicting_live_entries() -> None:
    clock = Clock()
    store = InMemoryStateStore(maxsize=2, clock=clock)
    await store.put("a", "1", ttl=100)
    await store.put("b", "1", ttl=5)
    with pytest.raises(StateStoreError):
        await store.put("c", "1", ttl=100)
    assert await store.get("a") == "1"
    clock.now += 6  # "b" expired: its room can be reused
    await store.put("c", "1", ttl=100)
    assert await store.get("a") == "1" and await store.get("c") == "1"


async def test_delete() -> None:
    store = InMemoryStateStore()
    await store.put("k", "v", ttl=5)
    await store.delete("k")
    await store.delete("k")
    assert await store.get("k") is None


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), True])
async def test_ttl_must_be_positive_and_finite(ttl: float) -> None:
    with pytest.raises(StateStoreError):
        await InMemoryStateStore().put("k", "v", ttl=ttl)


@pytest.mark.parametrize("maxsize", [0, -5, 1.5])
def test_maxsize_is_validated(maxsize: int) -> None:
    with pytest.raises(ConfigurationError):
        InMemoryStateStore(maxsize=maxsize)
