"""RedisStateStore against a real redis-server: the StateStore protocol, failing closed, replicas."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from mcp import Client, MCPError

from mcpgov import ConfigurationError, StateStore, StateStoreError
from mcpgov.credentials import RevocationList

from .redis_support import redis_server
from .test_credentials_support import AUDIENCE, FrozenClock, build_governed, call, make_issuer, principal, refusals

pytestmark = pytest.mark.anyio

redis_asyncio = pytest.importorskip("redis.asyncio", reason="the 'redis' extra is not installed")
from mcpgov.redis import RedisStateStore  # noqa: E402 - after the importorskip guard

AGENT = principal("agent-1", "acme")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private redis-server on 127.0.0.1 for this module's tests."""
    with redis_server() as (url, _process):
        yield url


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStateStore]:
    async with RedisStateStore.from_url(redis_url, prefix=f"test-{time.monotonic_ns()}:") as s:
        yield s


async def test_it_implements_the_state_store_protocol(store: RedisStateStore) -> None:
    assert isinstance(store, StateStore)
    assert await store.add("k", "1", 10) is True
    assert await store.add("k", "2", 10) is False
    assert await store.get("k") == "1"
    await store.put("k", "3", 10)
    assert await store.get_many(["k", "missing"]) == ["3", None]
    assert await store.get_many([]) == []
    await store.delete("k")
    assert await store.get("k") is None
    assert await store.incr("c", 10) == 1
    assert await store.incr("c", 10, 5) == 6
    await store.put_many([("m1", "a"), ("m2", "b")], 10)
    await store.put_many([], 10)
    assert await store.get_many(["m1", "m2"]) == ["a", "b"]


async def test_entries_carry_their_ttl_and_counters_keep_their_window(redis_url: str, store: RedisStateStore) -> None:
    await store.put("k", "v", 2.5)
    await store.put_many([("m", "v")], 3.5)
    await store.incr("c", 30)
    client = redis_asyncio.Redis.from_url(redis_url)
    try:
        assert 2000 < await client.pttl(store._prefix + "k") <= 2500
        assert 3000 < await client.pttl(store._prefix + "m") <= 3500
        first = await client.pttl(store._prefix + "c")
        await store.incr("c", 9999)
        assert await client.pttl(store._prefix + "c") <= first
    finally:
        await client.aclose()


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
async def test_bad_ttls_are_refused(store: RedisStateStore, ttl: float) -> None:
    with pytest.raises(StateStoreError):
        await store.put("k", "v", ttl)


async def test_an_unreachable_redis_raises_state_store_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        async with RedisStateStore.from_url(f"redis://127.0.0.1:{port}/0", timeout=0.5) as down:
            for operation in (
                down.get("k"),
                down.put("k", "v", 1),
                down.add("k", "v", 1),
                down.incr("c", 1),
                down.put_many([("k", "v")], 1),
            ):
                with pytest.raises(StateStoreError) as caught:
                    await operation
                assert caught.value.reason in {"unavailable", "timeout"}


async def test_a_redis_that_does_not_answer_in_time_raises(redis_url: str) -> None:
    admin = redis_asyncio.Redis.from_url(redis_url)
    try:
        async with RedisStateStore.from_url(redis_url, timeout=0.2) as slow:
            await slow.get("warm")  # the connection exists before the pause
            await admin.execute_command("CLIENT", "PAUSE", "1000", "ALL")
            with pytest.raises(StateStoreError) as caught:
                await slow.get("k")
            assert caught.value.reason == "timeout"
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()


async def test_two_replicas_sharing_redis_see_each_others_revocations(redis_url: str, mode: str) -> None:
    clock = FrozenClock(time.time())
    prefix = f"replicas-{time.monotonic_ns()}:"
    async with (
        RedisStateStore.from_url(redis_url, prefix=prefix) as issuer_store,
        RedisStateStore.from_url(redis_url, prefix=prefix) as store_a,
        RedisStateStore.from_url(redis_url, prefix=prefix) as store_b,
    ):
        issuer = make_issuer(clock, revocations=RevocationList(issuer_store, max_ttl=300, clock=clock))
        replicas = [
            build_governed(issuer, revocations=RevocationList(s, max_ttl=300, clock=clock)) for s in (store_a, store_b)
        ]
        cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="release-42")
        once = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], single_use=True)
        for replica in replicas:
            async with Client(replica.server, mode=mode) as client:
                await call(client, "status", {}, cred.token, AGENT)
        async with Client(replicas[0].server, mode=mode) as client:
            await call(client, "status", {}, once.token, AGENT)
        async with Client(replicas[1].server, mode=mode) as client:
            with pytest.raises(MCPError):  # single use holds across replicas
                await call(client, "status", {}, once.token, AGENT)
        await issuer.revoke_tenant_task("acme", "release-42")
        for replica in replicas:
            async with Client(replica.server, mode=mode) as client:
                with pytest.raises(MCPError) as caught:
                    await call(client, "status", {}, cred.token, AGENT)
            assert caught.value.code == -32002
        assert [r.ran for r in replicas] == [["status", "status"], ["status"]]
        reasons = [e.reason for r in replicas for e in refusals(r.sink)]
        assert reasons == ["revoked", "replayed", "revoked"]


async def test_a_verifier_whose_redis_is_down_refuses(mode: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with RedisStateStore.from_url(f"redis://127.0.0.1:{port}/0", timeout=0.3) as down:
            issuer = make_issuer()
            governed = build_governed(issuer, revocations=RevocationList(down, max_ttl=300, timeout=0.5))
            cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
            async with Client(governed.server, mode=mode) as client:
                with pytest.raises(MCPError) as caught:
                    await call(client, "status", {}, cred.token, AGENT)
    assert caught.value.code == -32002
    assert governed.ran == []
    (event,) = refusals(governed.sink)
    assert (event.reason, event.credential_id) == ("revocation_unavailable", cred.id)


async def test_configuration_is_validated_and_the_repr_hides_the_url() -> None:
    with pytest.raises(ConfigurationError):
        RedisStateStore(object())  # type: ignore[arg-type]
    async with RedisStateStore.from_url("redis://:hunter2@127.0.0.1:6399/0") as secret:
        assert "hunter2" not in repr(secret)
    client = redis_asyncio.Redis()
    try:
        with pytest.raises(ConfigurationError):
            RedisStateStore(client, timeout=0)
    finally:
        await client.aclose()
