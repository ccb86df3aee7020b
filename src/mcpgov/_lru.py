"""A least-recently-used cache that costs one dict entry per item.

``cachetools.LRUCache`` keeps, besides its dict, an ordered dict and size bookkeeping per item and
per cache (about 600 bytes for an empty one). The caches a session fills (a client's credentials,
a server's verified tokens) hold a few items per session, so they use this one: a plain dict
whose insertion order is the recency order (a hit moves its item to the end).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from mcpgov._errors import ConfigurationError

__all__ = ["LRU"]

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``maxsize`` items; adding one to a full cache drops the least recently used."""

    __slots__ = ("_data", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigurationError("a cache size must be a positive integer")
        self.maxsize = maxsize
        self._data: dict[K, V] = {}

    def __repr__(self) -> str:
        return f"LRU({len(self._data)}/{self.maxsize})"

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))

    def get(self, key: K) -> V | None:
        """The item of ``key`` (now the most recently used), or ``None``."""
        data = self._data
        value = data.pop(key, None)
        if value is not None:
            data[key] = value
        return value

    def __setitem__(self, key: K, value: V) -> None:
        data = self._data
        if data.pop(key, None) is None and len(data) >= self.maxsize:
            del data[next(iter(data))]
        data[key] = value

    def pop(self, key: K) -> V | None:
        """Remove ``key``'s item and return it (``None`` when there is none)."""
        return self._data.pop(key, None)

    def clear(self) -> None:
        """Remove every item."""
        self._data.clear()
