"""GovernedClient.listen: each resource URI of the filter is decided by the client-side chain,
as a ``resources/subscribe`` of that URI (what ``subscribe_resource`` of it gets), and only the
allowed ones are sent."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp.client.subscriptions import ResourceUpdated, ServerEvent, ToolsListChanged
from mcp.server.mcpserver import Context, MCPServer

from mcpgov import Decision, GovContext, GovernedClient, Hooks
from mcpgov.testing import InMemoryAuditSink

pytestmark = pytest.mark.anyio


def _server() -> MCPServer:
    server = MCPServer("notes")

    @server.tool()
    async def announce(uris: list[str], ctx: Context) -> str:
        for uri in uris:
            await ctx.notify_resource_updated(uri)
        await ctx.notify_tools_changed()
        return "ok"

    return server


def _hooks() -> Hooks:
    hooks = Hooks()
    hooks.tool("announce")(lambda ctx: Decision.allow("announce"))

    @hooks.resource("docs://*")
    def docs(ctx: GovContext) -> Decision:
        if ctx.target == "docs://broken":
            raise RuntimeError("hook bug")
        return Decision.allow("docs")

    return hooks


async def _events(sub: Any) -> list[ServerEvent]:
    events: list[ServerEvent] = []
    with anyio.fail_after(10):
        async for event in sub:
            events.append(event)
            if isinstance(event, ToolsListChanged):
                break
    return events


async def test_listen_sends_only_the_uris_the_client_chain_allows() -> None:
    sink = InMemoryAuditSink()
    asked = ["docs://a", "secret://b", "docs://broken", "docs://c"]
    async with (
        GovernedClient(_server(), _hooks(), audit=sink, mode="auto") as client,
        client.listen(tools_list_changed=True, resource_subscriptions=asked) as sub,
    ):
        assert sub.honored.resource_subscriptions == ["docs://a", "docs://c"]
        await client.call_tool("announce", {"uris": ["secret://b", "docs://broken", "docs://a", "docs://c"]})
        events = await _events(sub)
    assert events == [ResourceUpdated("docs://a"), ResourceUpdated("docs://c"), ToolsListChanged()]
    decided = [(e.target, e.effect) for e in sink.decisions() if e.method == "resources/subscribe"]
    assert decided == [("docs://a", "allow"), ("secret://b", "deny"), ("docs://broken", "deny"), ("docs://c", "allow")]


async def test_listen_with_no_uri_allowed_sends_none() -> None:
    async with (
        GovernedClient(_server(), _hooks(), mode="auto") as client,
        client.listen(tools_list_changed=True, resource_subscriptions=["secret://b"]) as sub,
    ):
        assert sub.honored.resource_subscriptions is None
        await client.call_tool("announce", {"uris": ["secret://b"]})
        assert await _events(sub) == [ToolsListChanged()]
