"""Where a client connected is judged, or the connection is refused: a transport whose
destination the registry cannot compare with its entry is not assumed to be the approved server."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError
from mcp.client._memory import InMemoryTransport
from mcp.server.mcpserver import MCPServer

from mcpgov import GovernedClient, PinningError, Principal
from mcpgov.pinning import PinningMiddleware, ServerRegistry, snapshot
from mcpgov.pinning._registry import ApprovedServer
from mcpgov.testing import InMemoryAuditSink

from .pinning_server import build_server

pytestmark = pytest.mark.anyio

AGENT = Principal(issuer="https://id.acme.example", subject="agent", tenant="acme")


class Tunnel:
    """A transport of the application's own making: it says nothing about where it goes."""

    def __init__(self, inner: AbstractAsyncContextManager[Any]) -> None:
        self._inner = inner

    async def __aenter__(self) -> Any:
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._inner.__aexit__(*exc_info)


class Claims:
    """A transport that says where it goes (as the gateway's own transports do)."""

    def __init__(self, inner: AbstractAsyncContextManager[Any], url: object) -> None:
        self._inner = inner
        self.url = url

    async def __aenter__(self) -> Any:
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._inner.__aexit__(*exc_info)


async def _registry(**where: Any) -> ServerRegistry:
    manifest = await snapshot(build_server())
    return ServerRegistry(
        [
            {
                "id": "billing",
                "owner": "payments-team",
                "tenants": ["acme"],
                "workloads": ["*"],
                **where,
                "server": {"name": "billing", "version": "==1.4.2"},
                "pin": manifest.model_dump(mode="json"),
            }
        ]
    )


TRANSPORTS: dict[str, Callable[[MCPServer], Any]] = {
    "own transport": lambda server: Tunnel(InMemoryTransport(server)),
    "sdk in-memory transport": InMemoryTransport,
    "url that is not text": lambda server: Claims(InMemoryTransport(server), b"https://billing.example/mcp"),
    "another url": lambda server: Claims(InMemoryTransport(server), "https://evil.example/mcp"),
}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("label", sorted(TRANSPORTS))
@pytest.mark.parametrize(
    "where", [{"url": "https://billing.example/mcp"}, {"command": "billing-server"}], ids=["http", "stdio"]
)
async def test_a_transport_whose_destination_cannot_be_judged_is_refused(
    mode: str, label: str, where: dict[str, Any]
) -> None:
    server = build_server()
    ran: list[str] = []
    original = server._tool_manager.get_tool("read_invoice")
    assert original is not None
    inner = original.fn

    def recorded(invoice_id: str) -> Any:
        ran.append(invoice_id)
        return inner(invoice_id)

    original.fn = recorded
    registry = await _registry(**where)
    sink = InMemoryAuditSink()
    pinning = PinningMiddleware(registry, server_id="billing")
    transport = TRANSPORTS[label](server)
    async with GovernedClient(transport, pinning, audit=sink, principal=AGENT, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("read_invoice", {"invoice_id": "inv-1"})
    cause = caught.value.__cause__
    assert isinstance(cause, PinningError)
    assert cause.reason == "server.refused"
    assert "evil" not in caught.value.message
    assert ran == []
    refusals = [e for e in sink.events if e.reason == "server.refused"]
    assert refusals and all(e.principal == "https://id.acme.example#agent" for e in refusals)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_transport_that_names_the_approved_url_is_judged_by_it(mode: str) -> None:
    server = build_server()
    registry = await _registry(url="https://billing.example/mcp")
    pinning = PinningMiddleware(registry, server_id="billing")
    transport = Claims(InMemoryTransport(server), "HTTPS://Billing.example:443/mcp")
    async with GovernedClient(transport, pinning, principal=AGENT, mode=mode) as client:
        result = await client.call_tool("read_invoice", {"invoice_id": "inv-1"})
    assert result.is_error is False


def test_only_an_in_process_server_goes_unjudged() -> None:
    entry = ApprovedServer.model_validate(
        {
            "id": "billing",
            "owner": "payments-team",
            "tenants": ["acme"],
            "workloads": ["*"],
            "url": "https://billing.example/mcp",
            "server": {"name": "billing"},
            "pin": "billing.json",
        }
    )
    assert entry.target_mismatch(build_server()) is None
    assert entry.target_mismatch(build_server()._lowlevel_server) is None
    for other in (None, 42, object(), Tunnel(InMemoryTransport(build_server())), Path("billing.json")):
        assert entry.target_mismatch(other) is not None, other
