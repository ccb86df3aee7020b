"""The in-memory state store: expiry, single use, counters, bounds that never evict live entries."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


async def test_rewriting_a_key_keeps_few_stale_expiry_pairs() -> None:
    """A key written on every request (a task's history) leaves a stale (expiry, key) pair per
    write: they are dropped once they pass twice the live entries plus a small slack, so a busy
    task holds tens of them, not a thousand (each with its own copy of the key)."""
    clock = Clock()
    store = InMemoryStateStore(clock=clock)
    for i in range(2_000):
        clock.now += 0.001
        await store.put("task:called", "1", ttl=600)
        await store.put_many([(f"task:{i % 3}", "1"), ("task:last", "add")], ttl=600)
        assert len(store._expiries) <= 2 * 5 + 64 + 1
    assert len(store) == 5
    assert await store.get_many(["task:called", "task:0", "task:last"]) == ["1", "1", "add"]


async def test_add_is_first_writer_wins_until_expiry() -> None:
    clock = Clock()
    store = InMemoryStateStore(clock=clock)
    assert await store.add("used:j1", "1", ttl=5) is True
    assert await store.add("used:j1", "1", ttl=5) is False
    clock.now += 6
    assert await store.add("used:j1", "1", ttl=5) is True


async def test_put_many_writes_every_pair_with_its_ttl() -> None:
    clock = Clock()
    store = InMemoryStateStore(clock=clock)
    await store.put("a", "old", ttl=100)
    await store.put_many([("a", "1"), ("b", "2")], ttl=10)
    assert await store.get_many(["a", "b"]) == ["1", "2"]
    clock.now += 10.5
    assert await store.get_many(["a", "b"]) == [None, None]
    with pytest.raises(StateStoreError):
        await store.put_many([("c", "3")], ttl=0)
    assert await store.get("c") is None


async def test_put_many_goes_through_a_subclass_put() -> None:
    """A store that changes ``put`` (to fail, to mirror...) sees every pair of ``put_many`` there."""
    seen: list[str] = []

    class Refusing(InMemoryStateStore):
        async def put(self, key: str, value: str, ttl: float) -> None:
            seen.append(key)
            raise StateStoreError("down", reason="unavailable")

    store = Refusing()
    with pytest.raises(StateStoreError):
        await store.put_many([("a", "1"), ("b", "2")], ttl=10)
    assert seen == ["a"]
    assert await store.get("a") is None


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


_KEYS = ["a", "b", "c", "d", "e"]
_OPS = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(_KEYS), st.sampled_from([0.5, 1.0, 3.0, 10.0])),
    st.tuples(st.just("add"), st.sampled_from(_KEYS), st.sampled_from([0.5, 1.0, 3.0, 10.0])),
    st.tuples(st.just("incr"), st.sampled_from(_KEYS), st.sampled_from([0.5, 1.0, 3.0, 10.0])),
    st.tuples(st.just("delete"), st.sampled_from(_KEYS), st.just(0.0)),
    st.tuples(st.just("advance"), st.just(""), st.sampled_from([0.25, 0.5, 1.0, 2.0, 5.0])),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(_OPS, max_size=60), maxsize=st.integers(1, 4))
def test_the_store_behaves_as_a_dictionary_of_entries_with_expiry(
    ops: list[tuple[str, str, float]], maxsize: int
) -> None:
    """Against a plain model: live values read back exactly, expired ones never do, and a full
    store refuses a new key (never evicting a live entry) while expired ones make room."""

    async def run() -> None:
        clock = Clock()
        store = InMemoryStateStore(maxsize=maxsize, clock=clock)
        model: dict[str, tuple[str, float]] = {}  # key -> (value, expires)

        def live() -> dict[str, str]:
            return {k: v for k, (v, exp) in model.items() if exp > clock.now}

        for i, (op, key, amount) in enumerate(ops):
            if op == "advance":
                clock.now += amount
                continue
            if op == "delete":
                await store.delete(key)
                model.pop(key, None)
                continue
            full = key not in live() and len(live()) >= maxsize
            if op == "incr" and key in live():
                value, exp = model[key]
                model[key] = (str(int(value) + 1), exp)
                assert await store.incr(key, amount) == int(value) + 1
                continue
            if op == "add" and key in live():
                assert await store.add(key, "x", amount) is False
                continue
            if full:
                with pytest.raises(StateStoreError):
                    await getattr(store, op)(key, *(("1",) if op != "incr" else ()), amount)
                continue
            value = "1" if op == "incr" else str(i)
            if op == "put":
                await store.put(key, value, amount)
            elif op == "add":
                assert await store.add(key, value, amount) is True
            else:
                assert await store.incr(key, amount) == 1
            model[key] = (value, clock.now + amount)
            assert await store.get_many(_KEYS) == [live().get(k) for k in _KEYS]
        assert len(store) == len(live())
        assert await store.get_many(_KEYS) == [live().get(k) for k in _KEYS]

    anyio.run(run)
