"""A :class:`~mcpgov.StateStore` on Redis, for several server replicas (the ``redis`` extra).

Revocations, single-use credential ids and rate counters written by one replica are seen by
every other replica using the same Redis. Every operation runs under a timeout; an error or a
timeout raises :class:`~mcpgov.StateStoreError`, so callers fail closed (a revocation lookup
that fails counts as revoked).

Example::

    from mcpgov.redis import RedisStateStore

    store = RedisStateStore.from_url("redis://127.0.0.1:6379/0")
    revocations = RevocationList(store)
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import anyio

try:
    from redis import asyncio as aioredis
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("mcpgov.redis needs the 'redis' extra: pip install 'mcpgov[redis]'") from exc

from mcpgov._errors import ConfigurationError
from mcpgov._state import StateStoreError
from mcpgov._validate import is_number, is_positive_number, positive_seconds

__all__ = ["RedisStateStore"]

# INCRBY, and give a new counter its TTL (an existing counter keeps its window).
_INCR = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


# SET with the PX ttl unless the key holds a number at least as large (a revocation's time
# never goes down, whoever writes last).
_PUT_MAX = """
local current = tonumber(redis.call('GET', KEYS[1]))
if current ~= nil and current >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


def _ms(ttl: float) -> int:
    if not is_positive_number(ttl):
        raise StateStoreError(f"a state entry needs a positive finite ttl, got {ttl!r}", reason="bad_ttl")
    return max(1, math.ceil(ttl * 1000))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


class RedisStateStore:
    """:class:`~mcpgov.StateStore` over a ``redis.asyncio`` client.

    Args:
        client: a ``redis.asyncio.Redis`` client (its connection pool is shared by all calls).
        prefix: prepended to every key (several applications can share one Redis).
        timeout: seconds one operation may take; beyond it the operation fails.
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str = "", timeout: float = 0.5) -> None:
        if not isinstance(client, aioredis.Redis):
            raise ConfigurationError("RedisStateStore needs a redis.asyncio.Redis client")
        self._redis = client
        self._prefix = prefix
        self.timeout = positive_seconds("timeout", timeout)
        self._incr = client.register_script(_INCR)
        self._put_max = client.register_script(_PUT_MAX)

    def __repr__(self) -> str:
        return f"RedisStateStore(prefix={self._prefix!r}, timeout={self.timeout})"

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "", timeout: float = 0.5, **options: Any) -> RedisStateStore:
        """A store on a new client for ``url`` (``redis://host:port/db``; credentials in the URL
        are used for the connection and never shown in ``repr``).

        Args:
            url: the Redis URL.
            prefix: key prefix.
            timeout: seconds per operation.
            **options: further ``redis.asyncio.Redis.from_url`` options.
        """
        options.setdefault("socket_timeout", timeout)
        options.setdefault("socket_connect_timeout", timeout)
        return cls(aioredis.Redis.from_url(url, **options), prefix=prefix, timeout=timeout)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._redis.aclose()

    async def __aenter__(self) -> RedisStateStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _run(self, operation: str, call: Any) -> Any:
        try:
            with anyio.fail_after(self.timeout):
                return await call
        except (TimeoutError, asyncio.TimeoutError, RedisTimeoutError):
            # Python 3.10's asyncio.TimeoutError is not the builtin one; redis has its own as well.
            raise StateStoreError(f"redis {operation} timed out after {self.timeout}s", reason="timeout") from None
        except (RedisError, OSError) as exc:
            raise StateStoreError(f"redis {operation} failed ({type(exc).__name__})", reason="unavailable") from None

    async def add(self, key: str, value: str, ttl: float) -> bool:
        done = await self._run("add", self._redis.set(self._prefix + key, value, px=_ms(ttl), nx=True))
        return bool(done)

    async def put(self, key: str, value: str, ttl: float) -> None:
        await self._run("put", self._redis.set(self._prefix + key, value, px=_ms(ttl)))

    async def put_many(self, items: list[tuple[str, str]], ttl: float) -> None:
        """:meth:`put` of every ``(key, value)`` pair for ``ttl`` seconds, in one round trip."""
        if not items:
            return
        pipe = self._redis.pipeline(transaction=False)
        for key, value in items:
            pipe.set(self._prefix + key, value, px=_ms(ttl))
        await self._run("put_many", pipe.execute())

    async def put_max(self, key: str, value: float, ttl: float) -> bool:
        """Set ``key`` to ``value`` (``repr(value)``) for ``ttl`` seconds unless it holds a number
        at least as large, atomically (one script); True when this call set it (the optional
        operation of :class:`~mcpgov.StateStore`: a revocation's time never goes down)."""
        if not is_number(value) or not math.isfinite(value):
            raise StateStoreError("put_max needs a finite number", reason="bad_value")
        done = await self._run("put_max", self._put_max(keys=[self._prefix + key], args=[repr(float(value)), _ms(ttl)]))
        return bool(done)

    async def get(self, key: str) -> str | None:
        return _text(await self._run("get", self._redis.get(self._prefix + key)))

    async def get_many(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        values = await self._run("get_many", self._redis.mget([self._prefix + k for k in keys]))
        if not isinstance(values, list) or len(values) != len(keys):
            raise StateStoreError("redis returned a malformed answer", reason="unavailable")
        return [_text(v) for v in values]

    async def delete(self, key: str) -> None:
        await self._run("delete", self._redis.delete(self._prefix + key))

    async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise StateStoreError("an increment must be an integer", reason="bad_amount")
        value = await self._run("incr", self._incr(keys=[self._prefix + key], args=[amount, _ms(ttl)]))
        return int(value)
