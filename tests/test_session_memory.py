"""What an open governed session holds is freed when it closes: clients, SDK sessions, task
scopes and the server's per-session anchors do not accumulate over many sessions of the full
stack (identity, per-task credentials, policy, queued JSON Lines audit), in both protocol modes.

Counted with weak references and the garbage collector, never with timings.
"""

from __future__ import annotations

import gc
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.server.mcpserver import MCPServer

from mcpgov import Auditor, GovernedClient, Principal, govern
from mcpgov._client import _GovernedListTools, _ListenStamp
from mcpgov._context import SessionAnchor
from mcpgov._server import ServerGovernance
from mcpgov.audit import JsonlSink, QueuedSink
from mcpgov.credentials import (
    ClientCredentials,
    CredentialIssuer,
    CredentialMiddleware,
    IssuerTokenSource,
    SigningKeySet,
    TaskScope,
    open_task,
)
from mcpgov.credentials._holder import MintingPrincipal
from mcpgov.identity import IdentityMiddleware
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer

AUDIENCE = "https://memory.test/mcp"
TENANT = "acme"
PER_SESSION = (
    GovernedClient,
    ClientSession,
    TaskScope,
    SessionAnchor,
    _GovernedListTools,
    _ListenStamp,
    MintingPrincipal,
)


class _Stack:
    def __init__(self, log: Path) -> None:
        self.identities = IdentityIssuer("https://id.test", audience=AUDIENCE)
        self.credentials = CredentialIssuer("https://credentials.test", SigningKeySet.generate("Ed25519"), max_ttl=600)
        self.auditor = Auditor([QueuedSink(JsonlSink(log, max_bytes=None))])
        self.server = MCPServer("memory")

        @self.server.tool()
        async def add(a: int, b: int) -> int:
            return a + b

        policy = Policy.from_dict({"rules": [{"id": "adds", "effect": "allow", "tenants": [TENANT], "tools": ["add"]}]})
        self.governance: ServerGovernance = govern(
            self.server,
            IdentityMiddleware(self.identities.verifier()),
            CredentialMiddleware(self.credentials.verifier(AUDIENCE)),
            PolicyMiddleware(policy),
            audit=self.auditor,
        )
        self.identity: IdentityMiddleware = self.governance.governor.middleware[0]  # type: ignore[assignment]
        # One workload: its identity token is the same for all its sessions.
        self.token = self.identities.token("agent-1", tenant=TENANT, ttl=3600)

    async def session(self, mode: str, kept: list[weakref.ref[Any]]) -> None:
        """One session of the full stack: open, one call inside a task, close."""
        me = Principal("https://id.test", "agent-1", tenant=TENANT, auth_method="jwt")
        credentials = ClientCredentials(IssuerTokenSource(self.credentials), audience=AUDIENCE, ttl=600)
        async with GovernedClient(self.server, credentials, identity=self.token, principal=me, mode=mode) as client:
            async with open_task(client, "task-1", purpose="memory") as task:
                result = await client.call_tool("add", {"a": 1, "b": 2})
                assert not result.is_error
            kept += [weakref.ref(client), weakref.ref(client.session), weakref.ref(task)]


def _alive() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__name__ for o in gc.get_objects() if isinstance(o, PER_SESSION))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_closed_sessions_leave_nothing_behind(mode: str, tmp_path: Path) -> None:
    stack = _Stack(tmp_path / "audit.jsonl")
    kept: list[weakref.ref[Any]] = []

    async def rounds() -> list[Counter[str]]:
        seen = []
        for _ in range(3):
            for _ in range(10):
                await stack.session(mode, kept)
            await stack.auditor.aflush()
            seen.append(_alive())
        return seen

    try:
        seen = anyio.run(rounds)
    finally:
        stack.auditor.close()
    gc.collect()
    assert len(kept) == 90
    assert [ref for ref in kept if ref() is not None] == []
    assert seen[0] == seen[1] == seen[2] == Counter()
    # The server's per-session state is keyed weakly on the session and is gone with it.
    assert len(stack.governance._anchors) == 0
    assert len(stack.identity._bound) == 0  # the server adapter's anchors hold their binding themselves


def test_open_sessions_hold_their_state_until_they_close(tmp_path: Path) -> None:
    """The counting above sees per-session objects at all: while sessions are open, they are there."""
    stack = _Stack(tmp_path / "audit.jsonl")

    async def scenario() -> tuple[Counter[str], Counter[str]]:
        me = Principal("https://id.test", "agent-1", tenant=TENANT, auth_method="jwt")
        credentials = ClientCredentials(IssuerTokenSource(stack.credentials), audience=AUDIENCE, ttl=600)
        client = GovernedClient(stack.server, credentials, identity=stack.token, principal=me, mode="legacy")
        async with client, open_task(client, "task-1"):
            await client.call_tool("add", {"a": 1, "b": 2})
            during = _alive()
            anchors = len(stack.governance._anchors)
            (anchor,) = stack.governance._anchors.values()
            bound = ("https://id.test", "agent-1", TENANT)
            # Bound once: another identity neither replaces nor clears the binding.
            assert anchor.bind(("https://id.test", "intruder", TENANT)) == bound
            assert anchor.bind(("https://id.test", "intruder", "other")) == bound
        return during, Counter({"anchors": anchors})

    try:
        during, anchors = anyio.run(scenario)
    finally:
        stack.auditor.close()
    assert during["GovernedClient"] == 1
    assert during["TaskScope"] == 1
    assert during["SessionAnchor"] == 1
    assert during["_ListenStamp"] == during["_GovernedListTools"] == during["MintingPrincipal"] == 1
    assert anchors["anchors"] == 1
