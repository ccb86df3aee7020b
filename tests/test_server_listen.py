"""``subscriptions/listen`` on a governed server: each resource URI of the filter is decided."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated, ServerEvent, ToolsListChanged
from mcp.server.mcpserver import Context, MCPServer

from mcpgov import Decision, GovContext, Hooks, govern
from mcpgov.testing import InMemoryAuditSink

pytestmark = pytest.mark.anyio


def build() -> tuple[MCPServer, InMemoryAuditSink]:
    """A server whose ``announce`` tool publishes updates of every URI it is given, then a tool list change;
    its hooks allow the tool and the resources under ``docs://``, and fail on ``docs://broken``."""
    server = MCPServer("notes")

    @server.tool()
    async def announce(uris: list[str], ctx: Context) -> str:
        for uri in uris:
            await ctx.notify_resource_updated(uri)
        await ctx.notify_tools_changed()
        return "ok"

    hooks = Hooks()
    hooks.tool("announce")(lambda ctx: Decision.allow("announce"))

    @hooks.resource("docs://*")
    def docs(ctx: GovContext) -> Decision:
        if ctx.target == "docs://broken":
            raise RuntimeError("hook bug")
        return Decision.allow("docs")

    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    return server, sink


async def events_until_tools_changed(sub: Any) -> list[ServerEvent]:
    events: list[ServerEvent] = []
    with anyio.fail_after(5):
        async for event in sub:
            events.append(event)
            if isinstance(event, ToolsListChanged):
                break
    return events


async def test_only_the_uris_the_caller_may_subscribe_to_are_acknowledged_and_delivered() -> None:
    server, sink = build()
    asked = ["docs://a", "secret://b", "docs://broken", "docs://a", "docs://c"]
    async with (
        Client(server, mode="auto") as client,
        client.listen(tools_list_changed=True, resource_subscriptions=asked) as sub,
    ):
        assert sub.honored.resource_subscriptions == ["docs://a", "docs://c"]
        await client.call_tool("announce", {"uris": ["secret://b", "docs://broken", "docs://a", "docs://c"]})
        events = await events_until_tools_changed(sub)
    assert events == [ResourceUpdated("docs://a"), ResourceUpdated("docs://c"), ToolsListChanged()]
    decided = [(e.target, e.effect, e.reason) for e in sink.decisions() if e.method == "resources/subscribe"]
    assert decided == [
        ("docs://a", "allow", "allowed"),
        ("secret://b", "deny", "default_deny"),
        ("docs://broken", "deny", "authoriser_error"),
        ("docs://c", "allow", "allowed"),
    ]


async def test_a_listen_with_no_uri_allowed_is_acknowledged_without_resources() -> None:
    server, _ = build()
    async with (
        Client(server, mode="auto") as client,
        client.listen(tools_list_changed=True, resource_subscriptions=["secret://b"]) as sub,
    ):
        assert sub.honored.resource_subscriptions is None
        await client.call_tool("announce", {"uris": ["secret://b"]})
        assert await events_until_tools_changed(sub) == [ToolsListChanged()]
