"""Shared state: revocations, single-use ids, rate counters, pending approvals.

Everything that several server replicas must agree on goes through the :class:`StateStore`
protocol. :class:`InMemoryStateStore` is the bounded single-process default; a Redis
implementation lives in :mod:`mcpgov.redis` (the ``redis`` extra).

Every entry has a time to live, so a store never holds what no credential can still need.
A store that errors or times out must make its callers fail closed (a revocation lookup that
fails counts as revoked); the store itself raises :class:`StateStoreError` and never guesses.
"""

from __future__ import annotations

import heapq
import time
from typing import Protocol, runtime_checkable

from mcpgov._errors import ConfigurationError, McpGovError
from mcpgov._types import Clock
from mcpgov._validate import is_positive_count, is_positive_number

__all__ = ["InMemoryStateStore", "StateStore", "StateStoreError"]


class StateStoreError(McpGovError, code="mcpgov.state_store"):
    """The state store could not answer or could not record. Callers must fail closed."""


@runtime_checkable
class StateStore(Protocol):
    """Key/value state with per-entry expiry. Keys are namespaced by the caller (``revoked:jti:...``).

    Optional operations, used where a store has them (not part of the protocol, so a store
    without them still is one):

    * ``async put_many(items: list[tuple[str, str]], ttl: float) -> None``: :meth:`put` of every
      ``(key, value)`` pair (one round trip);
    * ``async put_max(key: str, value: float, ttl: float) -> bool``: set ``key`` to ``value``
      (as text, ``repr(value)``) for ``ttl`` seconds unless it holds a number at least as large,
      atomically; True when this call set it. A
      :class:`~mcpgov.credentials.RevocationList` writes the time of a task's or principal's
      revocation with it, so that two replicas revoking at once, or a retried older revocation,
      never lower it. Without it, :meth:`put` is used (the last writer wins).
    """

    async def add(self, key: str, value: str, ttl: float) -> bool:
        """Set ``key`` only if absent; True when this call set it (single use, first writer wins)."""
        ...

    async def put(self, key: str, value: str, ttl: float) -> None:
        """Set ``key`` (overwriting) for ``ttl`` seconds."""
        ...

    async def get(self, key: str) -> str | None:
        """The value of ``key``, or None when absent or expired."""
        ...

    async def get_many(self, keys: list[str]) -> list[str | None]:
        """The values of ``keys`` in order (one round trip where the backend allows)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...

    async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        """Add ``amount`` to the counter ``key`` and return the new value; a new counter lives ``ttl`` seconds."""
        ...


def _at_least(current: str | None, value: float) -> bool:
    """Whether a stored ``current`` is a number at least ``value`` (what ``put_max`` keeps)."""
    if current is None:
        return False
    try:
        return float(current) >= value
    except ValueError:
        return False


class _Entry:
    __slots__ = ("expires", "value")

    def __init__(self, value: str, expires: float) -> None:
        self.value = value
        self.expires = expires


_STALE_SLACK = 64
"""Stale expiry pairs tolerated beyond twice the live entries before the heap is rebuilt."""


def _check_ttl(ttl: float) -> float:
    if not is_positive_number(ttl):
        raise StateStoreError(f"a state entry needs a positive finite ttl, got {ttl!r}", reason="bad_ttl")
    return float(ttl)


class InMemoryStateStore:
    """A bounded, single-process :class:`StateStore`.

    Entries expire with their own TTL (a dictionary of entries and a heap of expiry times,
    expired entries dropped as writes come in). When the store is full, expired entries go
    first; if it is still full, a write raises :class:`StateStoreError` rather than evicting a
    live entry (evicting a live revocation would silently re-enable a credential).

    Args:
        maxsize: the most entries held at once.
        clock: seconds since the epoch; injectable so tests can freeze time.
    """

    def __init__(self, maxsize: int = 1_000_000, *, clock: Clock = time.time) -> None:
        if not is_positive_count(maxsize):
            raise ConfigurationError(f"maxsize must be a positive integer, got {maxsize!r}")
        self._clock = clock
        self._maxsize = maxsize
        self._entries: dict[str, _Entry] = {}
        # (expiry, key) of every write; a pair whose entry was since rewritten or deleted is stale
        # and skipped when it comes up. Rebuilt from the entries when stale pairs dominate.
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._entries)

    def _expire(self, now: float) -> None:
        heap = self._expiries
        entries = self._entries
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            entry = entries.get(key)
            if entry is not None and entry.expires <= now:
                del entries[key]

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None or entry.expires <= self._clock():
            return None
        return entry

    def _store(self, key: str, value: str, ttl: float) -> None:
        now = self._clock()
        expires = now + _check_ttl(ttl)
        self._expire(now)
        self._set(key, value, expires)

    def _set(self, key: str, value: str, expires: float) -> None:
        entries = self._entries
        if key not in entries and len(entries) >= self._maxsize:
            raise StateStoreError("the in-memory state store is full", reason="store_full")
        entries[key] = _Entry(value, expires)
        heap = self._expiries
        heapq.heappush(heap, (expires, key))
        # Rebuilt once stale pairs outnumber the entries (plus a little): amortised O(1) per write,
        # and a key rewritten on every request (a task's history) holds few stale pairs and copies.
        if len(heap) > 2 * len(entries) + _STALE_SLACK:
            self._expiries = [(entry.expires, k) for k, entry in entries.items()]
            heapq.heapify(self._expiries)

    async def add(self, key: str, value: str, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        self._store(key, value, ttl)
        return True

    async def put(self, key: str, value: str, ttl: float) -> None:
        self._store(key, value, ttl)

    async def put_many(self, items: list[tuple[str, str]], ttl: float) -> None:
        """:meth:`put` of every ``(key, value)`` pair, in order, each for ``ttl`` seconds.

        Not part of the :class:`StateStore` protocol: callers use it where a store offers it
        (one call instead of one per key; one round trip on Redis).
        """
        if type(self).put is not InMemoryStateStore.put:  # a subclass's own put is honoured for every key
            for key, value in items:
                await self.put(key, value, ttl)
            return
        now = self._clock()
        expires = now + _check_ttl(ttl)
        self._expire(now)
        for key, value in items:
            self._set(key, value, expires)

    async def put_max(self, key: str, value: float, ttl: float) -> bool:
        """Set ``key`` to ``value`` (``repr(value)``) for ``ttl`` seconds unless it holds a number
        at least as large; True when this call set it.

        Not part of the :class:`StateStore` protocol: a :class:`~mcpgov.credentials.RevocationList`
        uses it where a store offers it, so that the time of a revocation never goes down.
        """
        current = await self.get(key)  # a subclass's own get and put are honoured
        if _at_least(current, value):
            return False
        await self.put(key, repr(float(value)), ttl)
        return True

    async def get(self, key: str) -> str | None:
        entry = self._live(key)
        return entry.value if entry is not None else None

    async def get_many(self, keys: list[str]) -> list[str | None]:
        out: list[str | None] = []
        for key in keys:
            entry = self._live(key)
            out.append(entry.value if entry is not None else None)
        return out

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        entry = self._live(key)
        if entry is None:
            self._store(key, str(amount), ttl)
            return amount
        value = int(entry.value) + amount
        entry.value = str(value)
        return value
