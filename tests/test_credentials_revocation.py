"""Revocation: at once, across replicas sharing a store, and expiring.

The race with concurrent uses is in test_credentials_killswitch.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, MCPError

from mcpgov import InMemoryStateStore
from mcpgov.credentials import CompactMemoryStore, RevocationList

from .test_credentials_support import AUDIENCE, FrozenClock, build_governed, call, make_issuer, principal

pytestmark = pytest.mark.anyio

AGENT = principal("agent-1", "acme")


async def test_two_replicas_sharing_one_store_see_each_others_revocations(mode: str) -> None:
    clock = FrozenClock()
    shared = InMemoryStateStore(clock=clock)
    issuer = make_issuer(clock, revocations=RevocationList(shared, max_ttl=300, clock=clock))
    replicas = [build_governed(issuer, revocations=RevocationList(shared, max_ttl=300, clock=clock)) for _ in range(2)]
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    for replica in replicas:
        async with Client(replica.server, mode=mode) as client:
            await call(client, "status", {}, cred.token, AGENT)
    await issuer.revoke(cred)
    for replica in replicas:
        async with Client(replica.server, mode=mode) as client:
            with pytest.raises(MCPError):
                await call(client, "status", {}, cred.token, AGENT)
        assert replica.ran == ["status"]


async def test_revocation_entries_expire_with_the_credentials_they_cover() -> None:
    clock = FrozenClock()
    store = CompactMemoryStore(clock=clock)
    revocations = RevocationList(store, max_ttl=300, leeway=5, clock=clock)
    issuer = make_issuer(clock, revocations=revocations)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], ttl=60)
    await issuer.revoke(cred)
    await issuer.revoke_tenant_task("acme", "t1")
    assert len(store) == 2
    clock.advance(60 + 5 + 1)
    assert len(store) == 1  # the credential's entry went with the credential
    clock.advance(300)
    assert len(store) == 0  # the task's entry outlived every credential it could cover


async def test_a_revocation_that_cannot_be_recorded_raises() -> None:
    class Full:
        async def put(self, *args: Any) -> None:
            from mcpgov import StateStoreError

            raise StateStoreError("full", reason="store_full")

    revocations = RevocationList(Full(), max_ttl=300)  # type: ignore[arg-type]
    issuer = make_issuer(revocations=revocations)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
    from mcpgov import CredentialError

    with pytest.raises(CredentialError) as caught:
        await issuer.revoke(cred)
    assert caught.value.reason == "revocation_failed"
    # This process still refuses it: the local record was made before the store was asked.
    with pytest.raises(CredentialError):
        revocations.recheck(cred.claims, [revocations.jti_key(cred.id)])


def test_revocation_list_configuration_is_validated() -> None:
    from mcpgov import ConfigurationError

    cases: list[dict[str, Any]] = [{"max_ttl": 0}, {"timeout": -1}, {"leeway": 1000}]
    for kwargs in cases:
        with pytest.raises(ConfigurationError):
            RevocationList(**kwargs)


async def test_credentials_of_one_task_share_their_principal_and_task_keys() -> None:
    """The revocation keys a verifier reads per call are worked out once per credential and kept:
    those of the principal and the task are one string for every credential of the task, not a
    copy per credential; the credential's own key is its own."""
    issuer = make_issuer()
    revocations = issuer.revocations
    me = principal()
    first = await issuer.mint(me, audience=AUDIENCE, tools=("add",), task_id="task-1")
    second = await issuer.mint(me, audience=AUDIENCE, tools=("*task*",), task_id="task-1")
    one, two = revocations.keys(first.claims), revocations.keys(second.claims)
    assert len(one) == len(two) == 4
    assert one[0] != two[0]  # each credential's own id
    for mine, theirs in zip(one[1:], two[1:], strict=True):
        assert mine == theirs
        assert mine is theirs
    other = await issuer.mint(me, audience=AUDIENCE, tools=("add",), task_id="task-2")
    assert revocations.keys(other.claims)[2:] != one[2:]  # another task: its own keys
