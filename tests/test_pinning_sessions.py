"""One pinning stage serving two client sessions at once: each session's listing vouches only for
its own calls, so a tool one session verified is not sent on another whose server drifted."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, GovContext, GovernedClient, Hooks, NamePolicy, PinningError, govern
from mcpgov.pinning import PinningMiddleware, ServerRegistry, snapshot, write_manifest
from mcpgov.testing import InMemoryAuditSink

from .pinning_server import build_server
from .test_pinning_middleware import AGENT

pytestmark = pytest.mark.anyio


def _governed(server: MCPServer, sink: InMemoryAuditSink) -> MCPServer:
    hooks = Hooks()

    @hooks.tool("*")
    def allow_all(ctx: GovContext) -> Decision:
        return Decision.allow("test-allow-all")

    govern(server, hooks, audit=sink, names=NamePolicy(enforce=False))
    return server


class Pair:
    """Two billing servers behind one approval: ``clean`` as pinned, ``drifted`` with a changed refund."""

    def __init__(self) -> None:
        self.clean_sink = InMemoryAuditSink()
        self.drifted_sink = InMemoryAuditSink()
        self.clean = _governed(build_server(), self.clean_sink)
        self.drifted = _governed(build_server(drift=True), self.drifted_sink)
        self.sink = InMemoryAuditSink()

    async def stage(self, tmp_path: Path) -> PinningMiddleware:
        pin = tmp_path / "billing.json"
        write_manifest(pin, await snapshot(self.clean))
        registry = ServerRegistry(
            [
                {
                    "id": "billing",
                    "owner": "payments-team",
                    "tenants": ["acme"],
                    "workloads": ["spiffe://acme.example/agents/*"],
                    "command": "billing-server",
                    "server": {"name": "billing"},
                    "pin": str(pin),
                }
            ]
        )
        return PinningMiddleware(registry, server_id="billing")

    def client(self, server: MCPServer, pinning: PinningMiddleware, mode: str) -> GovernedClient:
        return GovernedClient(server, pinning, audit=self.sink, principal=AGENT, mode=mode)

    def drifted_calls(self) -> list[Any]:
        return [e for e in self.drifted_sink.events if e.method == "tools/call"]


async def _refused(client: GovernedClient, name: str, args: dict[str, Any]) -> PinningError:
    with pytest.raises(MCPError) as caught:
        await client.call_tool(name, args)
    cause = caught.value.__cause__
    assert isinstance(cause, PinningError)
    return cause


@pytest.mark.parametrize("order", ["drifted-lists-first", "clean-lists-first", "drifted-never-lists"])
async def test_a_listing_of_one_session_does_not_vouch_for_another(tmp_path: Path, mode: str, order: str) -> None:
    pair = Pair()
    pinning = await pair.stage(tmp_path)
    async with pair.client(pair.clean, pinning, mode) as clean, pair.client(pair.drifted, pinning, mode) as drifted:
        if order == "drifted-lists-first":
            assert [t.name for t in (await drifted.list_tools()).tools] == ["read_invoice"]
            assert sorted(t.name for t in (await clean.list_tools()).tools) == ["read_invoice", "refund"]
        elif order == "clean-lists-first":
            assert sorted(t.name for t in (await clean.list_tools()).tools) == ["read_invoice", "refund"]
            assert [t.name for t in (await drifted.list_tools()).tools] == ["read_invoice"]
        else:
            assert sorted(t.name for t in (await clean.list_tools()).tools) == ["read_invoice", "refund"]
        cause = await _refused(drifted, "refund", {"invoice_id": "inv-1", "amount": 5})
        assert cause.reason == "tool.unverified"
        # The clean session's own listing still vouches for its calls.
        assert (await clean.call_tool("refund", {"invoice_id": "inv-1", "amount": 5})).is_error is False
        assert (await drifted.call_tool("read_invoice", {"invoice_id": "inv-1"})).is_error is False
    assert {e.target for e in pair.drifted_calls()} == {"read_invoice"}
    assert "tool.changed" in [e.reason for e in pair.sink.of_type("pin.mismatch")]


async def test_a_closed_session_leaves_no_state_behind(tmp_path: Path, mode: str) -> None:
    pair = Pair()
    pinning = await pair.stage(tmp_path)
    for _ in range(3):
        async with pair.client(pair.clean, pinning, mode) as client:
            await client.list_tools()
            assert not pinning.needs_listing_for(client.session)
            assert pinning.needs_listing_for(object())  # a session that never listed
    del client
    gc.collect()
    assert len(pinning._sessions) == 0
