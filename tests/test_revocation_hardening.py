"""The kill switch holds when the store fails in unusual ways: driven through real sessions and
real stores."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client, MCPError

from mcpgov import CredentialError, GovernedClient
from mcpgov.credentials import CompactMemoryStore, IssuerTokenSource, RevocationList, TaskScope, open_task
from mcpgov.credentials._client import ClientCredentials

from .test_credentials_client import identify
from .test_credentials_support import AUDIENCE, FrozenClock, build_governed, call, make_issuer, principal

pytestmark = pytest.mark.anyio

AGENT = principal("agent-1", "acme")


class StoreBroke(BaseException):
    """A failure that is not an ``Exception`` (as a driver or an interrupt may raise)."""


class FlakyStore(CompactMemoryStore):
    """A shared store (standing for Redis) that can be taken down and brought back."""

    down = False
    failure: Callable[[], BaseException] = staticmethod(lambda: ConnectionError("store down"))

    async def put(self, key: str, value: str, ttl: float) -> None:
        if self.down:
            raise self.failure()
        await super().put(key, value, ttl)

    async def get_many(self, keys: list[str]) -> list[str | None]:
        if self.down:
            raise self.failure()
        return await super().get_many(keys)


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
