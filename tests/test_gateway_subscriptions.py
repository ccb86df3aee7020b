"""Resource subscriptions through the gateway: subscribe forwarded, updates come back renamed."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from mcpgov import Auditor, GovernedClient
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry, snapshot
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

pytestmark = pytest.mark.anyio


def feed_server(subscribed: list[str], sessions: list[Any]) -> Server[Any]:
    """A lowlevel upstream with one subscribable resource and a tool that announces an update."""

    async def list_resources(ctx: ServerRequestContext[Any], params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[types.Resource(uri="feed://news", name="news")])

    async def read_resource(ctx: ServerRequestContext[Any], params: Any) -> types.ReadResourceResult:
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=params.uri, text="headline")])

    async def subscribe(ctx: ServerRequestContext[Any], params: Any) -> types.EmptyResult:
        subscribed.append(str(params.uri))
        sessions.append(ctx.session)
        return types.EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any], params: Any) -> types.EmptyResult:
        subscribed.remove(str(params.uri))
        return types.EmptyResult()

    async def list_tools(ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
        tool = types.Tool(name="publish", description="Publish news.", input_schema={"type": "object"})
        return types.ListToolsResult(tools=[tool])

    async def call_tool(ctx: ServerRequestContext[Any], params: Any) -> types.CallToolResult:
        for session in sessions:
            await session.send_resource_updated("feed://news")
        return types.CallToolResult(content=[types.TextContent(type="text", text="published")])

    return Server(
        "feed",
        version="1.0.0",
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def test_an_update_of_a_subscribed_resource_reaches_the_agent_under_its_gateway_uri() -> None:
    subscribed: list[str] = []
    feed = feed_server(subscribed, [])
    manifest = await snapshot(feed)
    registry = ServerRegistry(
        [
            {
                "id": "feed",
                "owner": "news",
                "tenants": ["acme"],
                "workloads": ["*"],
                "command": "feed",
                "server": {"name": "feed", "version": "==1.0.0"},
                "pin": manifest.model_dump(mode="json", by_alias=True),
            }
        ]
    )
    policy = Policy.from_dict(
        {
            "version": 1,
            "rules": [
                {"id": "news", "effect": "allow", "tenants": ["acme"], "resources": ["feed+feed://*"]},
                {"id": "publish", "effect": "allow", "tenants": ["acme"], "tools": ["feed_publish"]},
            ],
        }
    )
    idp = IdentityIssuer(audience="mcp://gateway")
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "feed", "namespace": {"prefix": "feed_"}})],
        registry,
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(policy),
        audit=Auditor([InMemoryAuditSink()]),
        servers={"feed": feed},
    )
    updated = anyio.Event()
    uris: list[str] = []

    async def on_message(message: object) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            uris.append(message.params.uri)  # type: ignore[attr-defined]
            updated.set()

    token = idp.token("agent", tenant="acme")
    async with gateway, GovernedClient(gateway.server, identity=token, mode="legacy", message_handler=on_message) as a:
        await a.subscribe_resource("feed+feed://news")
        assert subscribed == ["feed://news"]
        await a.call_tool("feed_publish", {})
        with anyio.fail_after(5):
            await updated.wait()
        assert uris == ["feed+feed://news"]
        await a.unsubscribe_resource("feed+feed://news")
        assert subscribed == []
    async with gateway, GovernedClient(gateway.server, identity=idp.token("x", tenant="globex"), mode="legacy") as b:
        with pytest.raises(MCPError) as refused:
            await b.subscribe_resource("feed+feed://news")
        assert refused.value.code == -32003
    assert subscribed == []
