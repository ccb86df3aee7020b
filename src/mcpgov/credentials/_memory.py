"""A compact in-memory :class:`~mcpgov.StateStore` for large revocation lists."""

from __future__ import annotations

import heapq
import math
import time

from mcpgov._errors import ConfigurationError
from mcpgov._state import StateStoreError
from mcpgov._types import Clock
from mcpgov._validate import is_positive_count, is_positive_number

__all__ = ["CompactMemoryStore"]


def _ttl(ttl: float) -> float:
    if not is_positive_number(ttl):
        raise StateStoreError(f"a state entry needs a positive finite ttl, got {ttl!r}", reason="bad_ttl")
    return float(ttl)


class CompactMemoryStore:
    """A bounded single-process :class:`~mcpgov.StateStore` that holds many small entries cheaply.

    Expiry is kept in one-second buckets: an entry lives until the whole second after its TTL
    runs out (never less than asked), and expired buckets are dropped as time passes. One
    million revocation entries take well under 250 MB (see ``benchmarks/bench_credentials.py``).
    When the store is full a write raises :class:`~mcpgov.StateStoreError` instead of evicting
    a live entry (evicting a revocation would quietly re-enable a credential).

    Args:
        maxsize: the most entries held at once.
        clock: seconds since the epoch.
    """

    def __init__(self, maxsize: int = 2_000_000, *, clock: Clock = time.time) -> None:
        if not is_positive_count(maxsize):
            raise ConfigurationError(f"maxsize must be a positive integer, got {maxsize!r}")
        self._maxsize = maxsize
        self._clock = clock
        self._values: dict[str, str] = {}
        self._expires: dict[str, int] = {}
        self._buckets: dict[int, list[str]] = {}
        self._heap: list[int] = []
        self._seconds: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"CompactMemoryStore(entries={len(self._values)}, maxsize={self._maxsize})"

    def __len__(self) -> int:
        self._purge(self._clock())
        return len(self._values)

    def _purge(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0] <= now:
            second = heapq.heappop(heap)
            expires, values = self._expires, self._values
            del self._seconds[second]
            for key in self._buckets.pop(second):
                if expires.get(key) == second:
                    del expires[key]
                    del values[key]

    def _store(self, key: str, value: str, ttl: float, now: float) -> None:
        second = math.ceil(now + _ttl(ttl))
        if key not in self._values and len(self._values) >= self._maxsize:
            raise StateStoreError("the in-memory state store is full", reason="store_full")
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = []
            self._seconds[second] = second
            heapq.heappush(self._heap, second)
        else:
            second = self._seconds[second]  # one int object per bucket, shared by its entries
        bucket.append(key)
        self._values[key] = value
        self._expires[key] = second

    async def add(self, key: str, value: str, ttl: float) -> bool:
        now = self._clock()
        self._purge(now)
        if key in self._values:
            return False
        self._store(key, value, ttl, now)
        return True

    async def put(self, key: str, value: str, ttl: float) -> None:
        now = self._clock()
        self._purge(now)
        self._store(key, value, ttl, now)

    async def get(self, key: str) -> str | None:
        self._purge(self._clock())
        return self._values.get(key)

    async def get_many(self, keys: list[str]) -> list[str | None]:
        self._purge(self._clock())
        values = self._values
        return [values.get(key) for key in keys]

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)
        self._expires.pop(key, None)

    async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        now = self._clock()
        self._purge(now)
        current = self._values.get(key)
        if current is None:
            self._store(key, str(amount), ttl, now)
            return amount
        value = int(current) + amount
        self._values[key] = str(value)
        return value
