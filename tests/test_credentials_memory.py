"""CompactMemoryStore: the StateStore protocol with one-second expiry buckets and a hard bound."""

from __future__ import annotations

import unicodedata

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpgov import ConfigurationError, StateStore, StateStoreError
from mcpgov.credentials import CompactMemoryStore, RevocationList

from .test_credentials_support import FrozenClock

pytestmark = pytest.mark.anyio


async def test_it_is_a_state_store_with_add_put_get_delete_incr() -> None:
    clock = FrozenClock()
    store = CompactMemoryStore(clock=clock)
    assert isinstance(store, StateStore)
    assert await store.add("k", "1", 10) is True
    assert await store.add("k", "2", 10) is False
    assert await store.get("k") == "1"
    await store.put("k", "3", 10)
    assert await store.get_many(["k", "missing"]) == ["3", None]
    await store.delete("k")
    assert await store.get("k") is None
    assert await store.incr("c", 10) == 1
    assert await store.incr("c", 10, 4) == 5


async def test_entries_expire_no_earlier_than_their_ttl() -> None:
    clock = FrozenClock(1000.25)
    store = CompactMemoryStore(clock=clock)
    await store.put("a", "1", 2)  # asked to live until 1002.25
    clock.advance(1.9)
    assert await store.get("a") == "1"
    clock.advance(0.9)  # 1003.05: past its second
    assert await store.get("a") is None
    assert len(store) == 0


async def test_rewriting_with_a_later_expiry_keeps_the_entry() -> None:
    clock = FrozenClock(1000.0)
    store = CompactMemoryStore(clock=clock)
    await store.put("a", "1", 1)
    await store.put("a", "2", 100)
    clock.advance(5)
    assert await store.get("a") == "2"
    await store.delete("a")
    await store.add("a", "3", 1)
    clock.advance(2)
    assert await store.get("a") is None


async def test_a_full_store_refuses_rather_than_evicting_a_live_entry() -> None:
    clock = FrozenClock()
    store = CompactMemoryStore(maxsize=2, clock=clock)
    await store.put("a", "1", 10)
    await store.put("b", "1", 10)
    with pytest.raises(StateStoreError) as caught:
        await store.put("c", "1", 10)
    assert caught.value.reason == "store_full"
    await store.put("a", "2", 10)  # overwriting is not growing
    clock.advance(11)
    await store.put("c", "1", 10)  # expired entries made room
    assert await store.get_many(["a", "b", "c"]) == [None, None, "1"]


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
async def test_bad_ttls_are_refused(ttl: float) -> None:
    with pytest.raises(StateStoreError):
        await CompactMemoryStore().put("k", "v", ttl)


def test_maxsize_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        CompactMemoryStore(maxsize=0)


_KEYS = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@settings(max_examples=150, deadline=None)
@given(entries=st.dictionaries(_KEYS, st.sampled_from(["1", "2", "", "1 ", "revoked"]), max_size=20), probe=_KEYS)
def test_keys_held_as_digests_still_read_back_exactly(entries: dict[str, str], probe: str) -> None:
    """Any text key (lone surrogates and non-BMP characters included) reads back its own value,
    and a key that was not written, however close its spelling, reads as absent."""

    async def check() -> None:
        store = CompactMemoryStore(clock=FrozenClock())
        for key, value in entries.items():
            await store.put(key, value, 10)
        assert await store.get_many(list(entries)) == list(entries.values())
        assert await store.get(probe) == entries.get(probe)
        assert len(store) == len(entries)

    anyio.run(check)


@pytest.mark.parametrize("jti", ["abc", "é-ü", "e\u0301", "\U0001f600", "\ud800x", "ABC"])
async def test_a_revoked_id_is_revoked_in_every_spelling_it_was_given_and_only_that(jti: str) -> None:
    clock = FrozenClock()
    store = CompactMemoryStore(clock=clock)
    revocations = RevocationList(store, max_ttl=300, clock=clock)
    await revocations.revoke(jti, expires_at=clock() + 60)
    assert await store.get(revocations.jti_key(jti)) == "1"
    others = {
        unicodedata.normalize("NFC", jti),
        unicodedata.normalize("NFD", jti),
        jti.lower(),
        jti.upper(),
        jti.encode("utf-8", "surrogatepass").decode("latin-1"),
        jti + " ",
    } - {jti}
    for other in others:
        assert await store.get(revocations.jti_key(other)) is None, other
