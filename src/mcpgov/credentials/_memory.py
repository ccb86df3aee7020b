"""A compact in-memory :class:`~mcpgov.StateStore` for large revocation lists."""

from __future__ import annotations

import hashlib
import heapq
import math
import secrets
import time
from typing import Union

from mcpgov._errors import ConfigurationError
from mcpgov._state import StateStoreError, _at_least
from mcpgov._types import Clock
from mcpgov._validate import is_positive_count, is_positive_number

__all__ = ["CompactMemoryStore"]

_COMMON = "1"
"""The value most entries hold (a revocation marker): stored as no object at all."""

_DIGEST_BYTES = 11
"""88-bit keys: an int of three 30-bit digits, 40 bytes (a revocation key as text takes ~100)."""

_Entry = Union[int, "tuple[str, int]"]
"""The expiry second of an entry holding :data:`_COMMON`, else ``(value, second)``."""


def _ttl(ttl: float) -> float:
    if not is_positive_number(ttl):
        raise StateStoreError(f"a state entry needs a positive finite ttl, got {ttl!r}", reason="bad_ttl")
    return float(ttl)


def _entry(value: str, second: int) -> _Entry:
    return second if value == _COMMON else (value, second)


def _second_of(entry: _Entry) -> int:
    return entry if isinstance(entry, int) else entry[1]


def _value_of(entry: _Entry) -> str:
    return _COMMON if isinstance(entry, int) else entry[0]


_RECENT_KEYS = 4096


class CompactMemoryStore:
    """A bounded single-process :class:`~mcpgov.StateStore` that holds many small entries cheaply.

    Expiry is kept in one-second buckets: an entry lives until the whole second after its TTL
    runs out (never less than asked), and expired buckets are dropped as time passes. Keys are
    held as 88-bit keyed BLAKE2b digests of their UTF-8 form (the key is random per store, so
    nobody can prepare colliding keys; a collision could only make a key read as present, never
    hide one), and the common value ``"1"`` takes no space: one million revocation entries take
    under 100 MB (see ``benchmarks/bench_session.py``). When the store is full a write raises
    :class:`~mcpgov.StateStoreError` instead of evicting a live entry (evicting a revocation
    would quietly re-enable a credential).

    Args:
        maxsize: the most entries held at once.
        clock: seconds since the epoch.
    """

    def __init__(self, maxsize: int = 2_000_000, *, clock: Clock = time.time) -> None:
        if not is_positive_count(maxsize):
            raise ConfigurationError(f"maxsize must be a positive integer, got {maxsize!r}")
        self._maxsize = maxsize
        self._clock = clock
        self._salt = secrets.token_bytes(16)
        self._entries: dict[int, _Entry] = {}
        self._buckets: dict[int, list[int]] = {}
        self._heap: list[int] = []
        self._seconds: dict[int, int] = {}
        self._recent_keys: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"CompactMemoryStore(entries={len(self._entries)}, maxsize={self._maxsize})"

    def __len__(self) -> int:
        self._purge(self._clock())
        return len(self._entries)

    def _key(self, key: str) -> int:
        known = self._recent_keys.get(key)
        if known is not None:
            return known
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_BYTES, key=self._salt)
        value = int.from_bytes(digest.digest(), "big")
        if len(self._recent_keys) >= _RECENT_KEYS:
            self._recent_keys.clear()  # bounded: the keys of the credentials in use recur per call
        self._recent_keys[key] = value
        return value

    def _purge(self, now: float) -> None:
        heap = self._heap
        entries = self._entries
        while heap and heap[0] <= now:
            second = heapq.heappop(heap)
            del self._seconds[second]
            for key in self._buckets.pop(second):
                entry = entries.get(key)
                if entry is not None and _second_of(entry) == second:
                    del entries[key]

    def _value(self, key: int) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        return _value_of(entry)

    def _store(self, key: int, value: str, ttl: float, now: float) -> None:
        second = math.ceil(now + _ttl(ttl))
        if key not in self._entries and len(self._entries) >= self._maxsize:
            raise StateStoreError("the in-memory state store is full", reason="store_full")
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = []
            self._seconds[second] = second
            heapq.heappush(self._heap, second)
        else:
            second = self._seconds[second]  # one int object per bucket, shared by its entries
        bucket.append(key)
        self._entries[key] = _entry(value, second)

    async def add(self, key: str, value: str, ttl: float) -> bool:
        now = self._clock()
        self._purge(now)
        digest = self._key(key)
        if digest in self._entries:
            return False
        self._store(digest, value, ttl, now)
        return True

    async def put(self, key: str, value: str, ttl: float) -> None:
        now = self._clock()
        self._purge(now)
        self._store(self._key(key), value, ttl, now)

    async def put_max(self, key: str, value: float, ttl: float) -> bool:
        """Set ``key`` to ``value`` (``repr(value)``) for ``ttl`` seconds unless it holds a number
        at least as large; True when this call set it (the optional operation of
        :class:`~mcpgov.StateStore`: a revocation's time never goes down)."""
        current = await self.get(key)  # a subclass's own get and put are honoured
        if _at_least(current, value):
            return False
        await self.put(key, repr(float(value)), ttl)
        return True

    async def get(self, key: str) -> str | None:
        self._purge(self._clock())
        return self._value(self._key(key))

    async def get_many(self, keys: list[str]) -> list[str | None]:
        self._purge(self._clock())
        return [self._value(self._key(key)) for key in keys]

    async def delete(self, key: str) -> None:
        self._entries.pop(self._key(key), None)

    async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        now = self._clock()
        self._purge(now)
        digest = self._key(key)
        entry = self._entries.get(digest)
        if entry is None:
            self._store(digest, str(amount), ttl, now)
            return amount
        value = int(_value_of(entry)) + amount
        self._entries[digest] = _entry(str(value), _second_of(entry))
        return value
