"""The kill switch holds when the store fails in unusual ways, when revocations are retried out of
order and when replicas race: driven through real sessions and real stores (in memory, and a real
redis-server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError

from mcpgov import CredentialError, GovernedClient, InMemoryStateStore, StateStore
from mcpgov.credentials import CompactMemoryStore, IssuerTokenSource, RevocationList, TaskScope, open_task
from mcpgov.credentials._client import ClientCredentials

from .redis_support import redis_server
from .test_credentials_client import identify
from .test_credentials_killswitch import FlakyStore, StoreBroke
from .test_credentials_support import AUDIENCE, FrozenClock, build_governed, call, make_issuer, principal

pytestmark = pytest.mark.anyio

AGENT = principal("agent-1", "acme")


class PlainFlakyStore:
    """A third-party store with only the protocol's operations (no ``put_max``), that can fail."""

    def __init__(self, clock: FrozenClock) -> None:
        self._inner = InMemoryStateStore(clock=clock)
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("store down")

    async def add(self, key: str, value: str, ttl: float) -> bool:
        self._check()
        return await self._inner.add(key, value, ttl)

    async def put(self, key: str, value: str, ttl: float) -> None:
        self._check()
        await self._inner.put(key, value, ttl)

    async def get(self, key: str) -> str | None:
        self._check()
        return await self._inner.get(key)

    async def get_many(self, keys: list[str]) -> list[str | None]:
        self._check()
        return await self._inner.get_many(keys)

    async def delete(self, key: str) -> None:
        self._check()
        await self._inner.delete(key)

    async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        self._check()
        return await self._inner.incr(key, ttl, amount)


# -- a retried older revocation never undoes a newer one ---------------------------------------------


@pytest.mark.parametrize("kind", ["with-put-max", "without-put-max"])
async def test_a_retried_older_task_revocation_never_undoes_a_newer_one_on_other_replicas(mode: str, kind: str) -> None:
    """A task revocation the store missed, retried after a newer revocation of the same task was
    recorded, leaves the newer one in place: credentials issued between the two stay refused on
    every replica (also on a store that has no ``put_max``)."""
    clock = FrozenClock()
    store: FlakyStore | PlainFlakyStore = FlakyStore(clock=clock) if kind == "with-put-max" else PlainFlakyStore(clock)
    assert isinstance(store, StateStore)
    issuer = make_issuer(clock, revocations=RevocationList(store, max_ttl=300, clock=clock))
    replica = build_governed(issuer, revocations=RevocationList(store, max_ttl=300, clock=clock))

    store.down = True  # the kill switch is pulled during an outage: kept here, retried later
    with pytest.raises(CredentialError):
        await issuer.revoke_task(AGENT, "release-42")
    store.down = False
    clock.advance(issuer.revocations.leeway + 1)
    stolen = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="release-42", ttl=300)
    clock.advance(0.2)
    await issuer.revoke_task(AGENT, "release-42")  # recorded this time
    assert issuer.revocations.pending == 0  # the newer revocation supersedes the one waiting
    async with Client(replica.server, mode=mode) as client:
        with pytest.raises(MCPError):
            await call(client, "status", {}, stolen.token, AGENT)

    clock.advance(2)
    assert await issuer.revocations.flush() == 0
    async with Client(replica.server, mode=mode) as client:
        with pytest.raises(MCPError):
            await call(client, "status", {}, stolen.token, AGENT)
    assert replica.ran == []


async def test_a_pending_task_revocation_keeps_its_latest_time_when_the_clock_steps_back() -> None:
    """Two task revocations the store missed, the second after the clock stepped back: what
    waits, and what the retry writes, is the later of the two times, never the earlier."""
    clock = FrozenClock()
    store = PlainFlakyStore(clock)
    revocations = RevocationList(store, max_ttl=300, clock=clock)
    owner = ("https://idp.example", "agent-1")
    key = revocations.task_key("acme", "release-42", owner)
    store.down = True
    with pytest.raises(CredentialError):
        await revocations.revoke_task("acme", "release-42", owner=owner)
    latest = clock.now
    clock.advance(-5)  # the wall clock is stepped back (NTP)
    with pytest.raises(CredentialError):
        await revocations.revoke_task("acme", "release-42", owner=owner)
    assert revocations.pending == 1
    store.down = False
    assert await revocations.flush() == 0
    assert await store.get(key) == repr(latest)


# -- the store's own maximum: racing replicas never lower a revocation's time ------------------------


async def _assert_put_max_keeps_the_maximum(store: Any) -> None:
    assert await store.put_max("k", 10.0, 60) is True
    assert await store.put_max("k", 5.0, 60) is False
    assert await store.get("k") == "10.0"
    assert await store.put_max("k", 12.5, 60) is True
    assert await store.get("k") == "12.5"
    await store.put("odd", "not a number", 60)
    assert await store.put_max("odd", 1.0, 60) is True  # what cannot be read as a time is replaced
    assert await store.get("odd") == "1.0"


@pytest.mark.parametrize("kind", ["in-memory", "compact"])
async def test_put_max_never_lowers_a_stored_time_in_memory(kind: str) -> None:
    """``put_max`` sets a time only where none is stored or the stored one is lower."""
    clock = FrozenClock()
    store = InMemoryStateStore(clock=clock) if kind == "in-memory" else CompactMemoryStore(clock=clock)
    await _assert_put_max_keeps_the_maximum(store)
    clock.advance(61)
    assert await store.get("k") is None  # it keeps its ttl


@pytest.mark.parametrize("scope", ["task", "principal"])
async def test_two_replicas_revoking_at_once_leave_the_later_time_in_the_store(scope: str) -> None:
    """Two issuer replicas revoking the same task (or principal) at once: whichever write lands
    last, the store keeps the later time, and what either revocation covers stays refused."""
    real = FrozenClock()
    behind = FrozenClock(real.now - 3)
    store = CompactMemoryStore(clock=real)
    late = make_issuer(real, revocations=RevocationList(store, max_ttl=300, clock=real))
    early = make_issuer(behind, keys=late.keys, revocations=RevocationList(store, max_ttl=300, clock=behind))
    server = build_governed(late, revocations=RevocationList(store, max_ttl=300, clock=real))
    for issuer in (late, early):  # the later time lands first, the earlier one last
        if scope == "task":
            await issuer.revoke_task(AGENT, "release-42")
        else:
            await issuer.revoke_principal(AGENT)
    key = (
        late.revocations.task_key("acme", "release-42", AGENT.key)
        if scope == "task"
        else late.revocations.principal_key("acme", AGENT.issuer, AGENT.subject)
    )
    assert await store.get(key) == repr(real.now)
    real.advance(-1)  # minted between the two revocations
    cred = await late.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="release-42")
    async with Client(server.server, mode="auto") as client:
        with pytest.raises(MCPError):
            await call(client, "status", {}, cred.token, AGENT)
    assert server.ran == []


# -- a store failing with something other than an Exception ----------------------------------------


@pytest.mark.parametrize("failure", ["base-exception", "stray-cancel"])
async def test_a_revocation_the_store_missed_with_a_base_exception_is_kept_retried_and_reported(
    mode: str, failure: str
) -> None:
    """A revocation whose store write raised a ``BaseException`` subclass, or a ``CancelledError``
    while nothing cancelled the caller, is reported (``revocation_failed``), enforced in this
    process, and retried until the store records it."""
    clock = FrozenClock()
    store = FlakyStore(clock=clock)
    store.failure = (lambda: StoreBroke("driver gave up")) if failure == "base-exception" else asyncio.CancelledError
    revocations = RevocationList(store, max_ttl=300, clock=clock)
    replica = RevocationList(store, max_ttl=300, clock=clock)
    issuer = make_issuer(clock, revocations=revocations)
    governed = build_governed(issuer, revocations=revocations)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], ttl=300)
    store.down = True
    with pytest.raises(CredentialError) as caught:
        await issuer.revoke(cred)
    assert caught.value.reason == "revocation_failed"
    assert revocations.pending == 1
    store.down = False
    clock.advance(30)
    assert await revocations.flush() == 0
    other = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], ttl=300)
    await issuer.revoke(other)
    async with Client(governed.server, mode=mode) as client:
        with pytest.raises(MCPError):
            await call(client, "status", {}, cred.token, AGENT)
    assert governed.ran == []
    assert await replica.store.get(replica.jti_key(cred.id)) is not None  # recorded for the other replicas


async def test_an_interrupt_from_the_store_propagates_and_the_revocation_is_kept() -> None:
    """An interpreter exit raised by the store reaches the caller as itself; the revocation is
    still enforced in this process and retried."""
    clock = FrozenClock()
    store = FlakyStore(clock=clock)
    store.failure = KeyboardInterrupt
    revocations = RevocationList(store, max_ttl=300, clock=clock)
    issuer = make_issuer(clock, revocations=revocations)
    verifier = issuer.verifier(AUDIENCE)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], ttl=300)
    store.down = True
    with pytest.raises(KeyboardInterrupt):
        await revocations.revoke(cred.id, expires_at=cred.expires_at)
    assert revocations.pending == 1
    with pytest.raises(KeyboardInterrupt):  # a retry that meets it again stops and lets it through
        await revocations.flush()
    assert revocations.pending == 1
    store.down = False
    clock.advance(30)
    with pytest.raises(CredentialError):
        await verifier.verify(cred.token, tool="status")
    assert revocations.pending == 0


# -- a task scope revokes everything, whatever one revocation raises ----------------------------------


class FailingTaskSource(IssuerTokenSource):
    """A token source whose task revocation raises ``failure`` (its per-credential ones work)."""

    failure: Callable[[], BaseException] = staticmethod(lambda: StoreBroke("token service gave up"))

    async def revoke_task(self, task_id: str, principal: Any) -> None:
        raise self.failure()


@pytest.mark.parametrize("failure", ["base-exception", "stray-cancel", "interrupt"])
async def test_a_task_scope_revokes_every_credential_whatever_one_revocation_raises(mode: str, failure: str) -> None:
    """When one revocation of a task scope fails with anything (a ``BaseException`` subclass, a
    stray ``CancelledError``, an interrupt), the scope still revokes every other credential it
    minted, then reports the failure (``revocation_failed``), or lets an interrupt through."""
    issuer = make_issuer()
    governed = build_governed(issuer)
    source = FailingTaskSource(issuer)
    if failure == "stray-cancel":
        source.failure = asyncio.CancelledError
    elif failure == "interrupt":
        source.failure = KeyboardInterrupt
    creds = ClientCredentials(source, audience=AUDIENCE)
    scopes: list[TaskScope] = []
    expected: type[BaseException] = KeyboardInterrupt if failure == "interrupt" else CredentialError
    async with GovernedClient(governed.server, identify(AGENT), creds, principal=AGENT, mode=mode) as client:

        async def run_task() -> None:
            async with open_task(client, "release-42", purpose="deploy") as scope:
                scopes.append(scope)
                await client.call_tool("status", {})
                await client.call_tool("deploy", {"version": "1"})

        with pytest.raises(expected) as caught:
            await run_task()
        if isinstance(caught.value, CredentialError):
            assert caught.value.reason == "revocation_failed"
    (task,) = scopes
    assert task.revoked
    assert len(task.credential_ids) >= 2
    for jti in task.credential_ids:
        assert await issuer.revocations.store.get(issuer.revocations.jti_key(jti)) is not None


# -- Redis: a stalled server, and the store's own maximum ----------------------------------------------


@pytest.fixture
def stallable_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    pytest.importorskip("redis.asyncio", reason="the 'redis' extra is not installed")
    with redis_server() as running:
        yield running


async def test_a_retried_older_task_revocation_never_undoes_a_newer_one_on_redis(
    mode: str, stallable_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """Two replicas on one Redis: a task revocation missed while Redis stalled, retried after a
    newer revocation of the task was recorded, leaves the newer one in place."""
    from mcpgov.redis import RedisStateStore

    url, process = stallable_redis
    clock = FrozenClock()
    async with (
        RedisStateStore.from_url(url, timeout=1.0) as issuer_store,
        RedisStateStore.from_url(url, timeout=1.0) as replica_store,
    ):
        issuer = make_issuer(clock, revocations=RevocationList(issuer_store, max_ttl=300, timeout=1.0, clock=clock))
        replica = build_governed(
            issuer, revocations=RevocationList(replica_store, max_ttl=300, timeout=1.0, clock=clock)
        )
        process.send_signal(signal.SIGSTOP)  # Redis stalls: the kill switch cannot be recorded
        try:
            with pytest.raises(CredentialError):
                await issuer.revoke_task(AGENT, "release-42")
        finally:
            process.send_signal(signal.SIGCONT)
        await anyio.sleep(0.2)
        clock.advance(issuer.revocations.leeway + 1)
        stolen = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="release-42", ttl=300)
        clock.advance(0.2)
        await issuer.revoke_task(AGENT, "release-42")  # recorded
        async with Client(replica.server, mode=mode) as client:
            with pytest.raises(MCPError):
                await call(client, "status", {}, stolen.token, AGENT)
        clock.advance(2)
        assert await issuer.revocations.flush() == 0
        async with Client(replica.server, mode=mode) as client:
            with pytest.raises(MCPError):
                await call(client, "status", {}, stolen.token, AGENT)
        assert replica.ran == []


async def test_put_max_never_lowers_a_stored_time_on_redis(
    stallable_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """Redis's ``put_max`` sets a time only where none is stored or the stored one is lower (one
    script), with the ttl asked; a stalled Redis makes it fail like any operation."""
    from mcpgov import StateStoreError
    from mcpgov.redis import RedisStateStore

    url, process = stallable_redis
    async with RedisStateStore.from_url(url, timeout=2.0) as store:
        await _assert_put_max_keeps_the_maximum(store)
        ttl = await store._redis.pttl("k")
        assert 0 < ttl <= 60_000
        # Many replicas racing: the store ends with the largest time, whatever the order.
        values = [float(v) for v in range(100, 200)]
        async with anyio.create_task_group() as tg:
            for value in reversed(values):
                tg.start_soon(store.put_max, "race", value, 60)
        assert await store.get("race") == "199.0"
        process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(StateStoreError):
                await store.put_max("k", 99.0, 60)
        finally:
            process.send_signal(signal.SIGCONT)


# -- issuers whose clocks run ahead of the revoker's ---------------------------------------------


@pytest.mark.parametrize("scope", ["task", "principal"])
@pytest.mark.parametrize("ahead", [0.5, 7.0, 59.0])
async def test_a_revocation_covers_credentials_an_issuer_ahead_of_it_minted_before_it(
    mode: str, scope: str, ahead: float
) -> None:
    """An issuer replica whose clock runs ``ahead`` of the revoking process stamps a credential it
    mints before the revocation with a later time than the revocation's own: with
    ``issuer_skew`` at least that far, the revocation still covers it, on every replica."""
    real = FrozenClock()
    fast = FrozenClock(real.now + ahead)
    store = CompactMemoryStore(clock=real)
    revoker = make_issuer(real, revocations=RevocationList(store, max_ttl=300, issuer_skew=60, clock=real))
    minting = make_issuer(fast, keys=revoker.keys, revocations=RevocationList(store, max_ttl=300, clock=fast))
    replica = build_governed(revoker, revocations=RevocationList(store, max_ttl=300, clock=real))
    minted = await minting.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="release-42", ttl=300)
    real.advance(0.25)  # the revocation comes after the mint, by every clock but the issuer's
    if scope == "task":
        await revoker.revoke_task(AGENT, "release-42")
    else:
        await revoker.revoke_principal(AGENT)
    assert minted.claims.issued_at > real.now  # stamped later than the revocation's own time
    async with Client(replica.server, mode=mode) as client:
        with pytest.raises(MCPError):
            await call(client, "status", {}, minted.token, AGENT)
    assert replica.ran == []
    # Past the window, the task or principal can be given credentials again.
    real.advance(61)
    fast.advance(61)
    fresh = await revoker.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="release-42", ttl=300)
    async with Client(replica.server, mode=mode) as client:
        await call(client, "status", {}, fresh.token, AGENT)
    assert replica.ran == ["status"]


async def test_without_issuer_skew_the_clocks_are_trusted_to_agree() -> None:
    """The default (``issuer_skew=0``) covers what was stamped up to the revoker's own time only:
    the window the option closes, shown so that its effect above is not vacuous."""
    real = FrozenClock()
    fast = FrozenClock(real.now + 5)
    store = CompactMemoryStore(clock=real)
    revoker = RevocationList(store, max_ttl=300, clock=real)
    minting = make_issuer(fast, revocations=RevocationList(store, max_ttl=300, clock=fast))
    minted = await minting.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="release-42", ttl=300)
    await revoker.revoke_task("acme", "release-42", owner=AGENT.key)
    assert await revoker.check(minted.claims)  # admitted: stamped after the revocation's time
    skewed = RevocationList(store, max_ttl=300, issuer_skew=5, clock=real)
    await skewed.revoke_task("acme", "release-42", owner=AGENT.key)
    with pytest.raises(CredentialError) as caught:
        await revoker.check(minted.claims)
    assert caught.value.reason == "revoked"


@pytest.mark.parametrize("bad", [-1, 301, float("nan"), float("inf"), "5", True, None])
def test_issuer_skew_must_be_a_number_of_seconds(bad: Any) -> None:
    from mcpgov import ConfigurationError

    with pytest.raises(ConfigurationError, match="issuer_skew"):
        RevocationList(issuer_skew=bad)


async def test_an_issuer_ahead_of_the_revoker_on_redis(
    mode: str, stallable_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """Two replicas on one real Redis, the minting one's clock 20 s ahead of the revoking one's:
    the revocation covers the credential minted before it, and the other replica refuses it."""
    from mcpgov.redis import RedisStateStore

    url, _process = stallable_redis
    real = FrozenClock()
    fast = FrozenClock(real.now + 20)
    async with (
        RedisStateStore.from_url(url, timeout=2.0) as revoker_store,
        RedisStateStore.from_url(url, timeout=2.0) as replica_store,
    ):
        revoker = make_issuer(
            real, revocations=RevocationList(revoker_store, max_ttl=300, issuer_skew=30, timeout=2.0, clock=real)
        )
        minting = make_issuer(
            fast, keys=revoker.keys, revocations=RevocationList(replica_store, max_ttl=300, timeout=2.0, clock=fast)
        )
        replica = build_governed(
            minting, revocations=RevocationList(replica_store, max_ttl=300, timeout=2.0, clock=real)
        )
        minted = await minting.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="release-9", ttl=300)
        real.advance(1)
        await revoker.revoke_task(AGENT, "release-9")
        async with Client(replica.server, mode=mode) as client:
            with pytest.raises(MCPError):
                await call(client, "status", {}, minted.token, AGENT)
        assert replica.ran == []
