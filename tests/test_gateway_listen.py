"""2026-07-28 subscriptions through the gateway: ``subscriptions/listen`` served, governed per URI."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import (
    ListenNotSupportedError,
    ResourceUpdated,
    ServerEvent,
    Subscription,
    ToolsListChanged,
)
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcpgov import Auditor, GovernedClient
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry, snapshot
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, serve_http

pytestmark = pytest.mark.anyio

NEWS, SECRET, OTHER = "feed+feed://news", "feed+feed://secret", "feed+feed://other"
URIS = (NEWS, SECRET, OTHER)


@dataclass
class Feed:
    """An upstream that announces changes in both eras: listen streams and handshake-era sessions."""

    bus: InMemorySubscriptionBus = field(default_factory=InMemorySubscriptionBus)
    subscribed: dict[str, list[Any]] = field(default_factory=dict)
    grown: bool = False  # ``grow`` adds a tool that is not in the pin

    def server(self) -> Server[Any]:
        async def list_resources(ctx: ServerRequestContext[Any], params: Any) -> types.ListResourcesResult:
            names = ("news", "secret", "other")
            return types.ListResourcesResult(resources=[types.Resource(uri=f"feed://{n}", name=n) for n in names])

        async def read_resource(ctx: ServerRequestContext[Any], params: Any) -> types.ReadResourceResult:
            return types.ReadResourceResult(contents=[types.TextResourceContents(uri=params.uri, text="x")])

        async def subscribe(ctx: ServerRequestContext[Any], params: Any) -> types.EmptyResult:
            self.subscribed.setdefault(str(params.uri), []).append(ctx.session)
            return types.EmptyResult()

        async def unsubscribe(ctx: ServerRequestContext[Any], params: Any) -> types.EmptyResult:
            self.subscribed.pop(str(params.uri), None)
            return types.EmptyResult()

        async def list_tools(ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
            schema = {"type": "object", "properties": {"uri": {"type": "string"}}}
            tools = [
                types.Tool(name="publish", description="Announce an update.", input_schema=schema),
                types.Tool(name="grow", description="Announce a tool list change.", input_schema={"type": "object"}),
            ]
            if self.grown:
                tools.append(types.Tool(name="extra", description="Not pinned.", input_schema={"type": "object"}))
            return types.ListToolsResult(tools=tools)

        async def call_tool(ctx: ServerRequestContext[Any], params: Any) -> types.CallToolResult:
            modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
            if params.name == "publish":
                uri = str((params.arguments or {})["uri"])
                if modern:
                    await self.bus.publish(ResourceUpdated(uri=uri))
                for session in self.subscribed.get(uri, ()):
                    with contextlib.suppress(Exception):  # a connection that is gone (a restart)
                        await session.send_resource_updated(uri)
            elif params.name == "extra":
                pass
            elif modern:
                self.grown = True
                await self.bus.publish(ToolsListChanged())
            else:
                self.grown = True
                await ctx.session.send_tool_list_changed()
            return types.CallToolResult(content=[types.TextContent(type="text", text="done")])

        return Server(
            "feed",
            version="1.0.0",
            on_list_resources=list_resources,
            on_read_resource=read_resource,
            on_subscribe_resource=subscribe,
            on_unsubscribe_resource=unsubscribe,
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_subscriptions_listen=ListenHandler(self.bus),
        )


@dataclass
class World:
    gateway: Gateway
    idp: IdentityIssuer
    sink: InMemoryAuditSink
    feed: Feed


POLICY: dict[str, Any] = {
    "version": 1,
    "rules": [
        {"id": "acme-news", "effect": "allow", "tenants": ["acme"], "resources": [NEWS, OTHER]},
        {"id": "globex-secret", "effect": "allow", "tenants": ["globex"], "resources": [SECRET, OTHER]},
        {"id": "publish", "effect": "allow", "tools": ["feed_*"]},
    ],
}


async def world(upstream_mode: str = "auto") -> World:
    feed = Feed()
    server = feed.server()
    manifest = await snapshot(server)
    registry = ServerRegistry(
        [
            {
                "id": "feed",
                "owner": "news",
                "tenants": ["acme", "globex"],
                "workloads": ["*"],
                "command": "feed",
                "server": {"name": "feed", "version": "==1.0.0"},
                "pin": manifest.model_dump(mode="json", by_alias=True),
            }
        ]
    )
    idp = IdentityIssuer(audience="mcp://gateway")
    sink = InMemoryAuditSink()
    config = {"id": "feed", "namespace": {"prefix": "feed_"}, "mode": upstream_mode, "restart": {"initial": 0.05}}
    gateway = Gateway(
        [UpstreamConfig.model_validate(config)],
        registry,
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(POLICY)),
        audit=Auditor([sink]),
        servers={"feed": server},
    )
    return World(gateway, idp, sink, feed)


async def collect(sub: Subscription, until: ServerEvent) -> list[ServerEvent]:
    """The events of ``sub`` up to and including ``until`` (within 5 seconds)."""
    events: list[ServerEvent] = []
    with anyio.fail_after(5):
        async for event in sub:
            events.append(event)
            if event == until:
                return events
    return events


@asynccontextmanager
async def listening(agent: Client, uris: list[str]) -> AsyncIterator[Subscription]:
    async with agent.listen(tools_list_changed=True, resource_subscriptions=uris) as sub:
        yield sub


@pytest.mark.parametrize("upstream_mode", ["auto", "legacy"])
async def test_a_listening_agent_hears_list_changes_and_only_the_resources_it_may_subscribe_to(
    upstream_mode: str,
) -> None:
    w = await world(upstream_mode)
    token = w.idp.token("agent", tenant="acme")
    async with (
        w.gateway,
        GovernedClient(w.gateway.server, identity=token, mode="auto") as agent,
        listening(agent, list(URIS)) as sub,
    ):
        assert sub.honored.tools_list_changed is True
        assert sub.honored.resource_subscriptions == [NEWS, OTHER]
        for uri in ("feed://secret", "feed://news", "feed://other"):
            await agent.call_tool("feed_publish", {"uri": uri})
        assert await collect(sub, ResourceUpdated(OTHER)) == [ResourceUpdated(NEWS), ResourceUpdated(OTHER)]
        await agent.call_tool("feed_grow", {})
        assert await collect(sub, ToolsListChanged()) == [ToolsListChanged()]
    refused = [e for e in w.sink.events if e.type == "decision" and e.effect == "deny"]
    assert [(e.method, e.target) for e in refused] == [("resources/subscribe", SECRET)]
    if upstream_mode == "legacy":
        assert set(w.feed.subscribed) == set()  # the stream ended: the gateway unsubscribed upstream


@pytest.mark.parametrize("upstream_mode", ["auto", "legacy"])
async def test_a_tool_list_change_reaches_listeners_after_the_pin_recheck_and_leads_to_no_unpinned_tool(
    upstream_mode: str,
) -> None:
    w = await world(upstream_mode)
    token = w.idp.token("agent", tenant="acme")
    async with (
        w.gateway,
        GovernedClient(w.gateway.server, identity=token, mode="auto") as agent,
        listening(agent, []) as sub,
    ):
        await agent.call_tool("feed_grow", {})
        assert await collect(sub, ToolsListChanged()) == [ToolsListChanged()]
        # The gateway's re-check of the pins was audited before the agent heard of the change.
        rechecked = [
            (e.target, e.reason)
            for e in w.sink.events
            if e.type == "pin.mismatch" and "announced a tool list change" in (e.detail or "")
        ]
        assert rechecked == [("extra", "tool.new")]
        listed = {tool.name for tool in (await agent.list_tools()).tools}
        assert listed == {"feed_publish", "feed_grow"}
        with pytest.raises(MCPError):
            await agent.call_tool("feed_extra", {})


async def test_another_agents_denied_uri_is_never_delivered() -> None:
    w = await world()
    acme = w.idp.token("a", tenant="acme")
    globex = w.idp.token("g", tenant="globex")
    async with (
        w.gateway,
        GovernedClient(w.gateway.server, identity=acme, mode="auto") as a,
        GovernedClient(w.gateway.server, identity=globex, mode="auto") as g,
        listening(a, list(URIS)) as sub_a,
        listening(g, list(URIS)) as sub_g,
    ):
        assert sub_g.honored.resource_subscriptions == [SECRET, OTHER]
        for uri in ("feed://secret", "feed://news", "feed://other"):
            await a.call_tool("feed_publish", {"uri": uri})
        assert await collect(sub_a, ResourceUpdated(OTHER)) == [ResourceUpdated(NEWS), ResourceUpdated(OTHER)]
        assert await collect(sub_g, ResourceUpdated(OTHER)) == [ResourceUpdated(SECRET), ResourceUpdated(OTHER)]


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_a_listen_without_a_valid_identity_is_refused_and_streams_nothing(token: str | None) -> None:
    w = await world()
    async with w.gateway:
        client = (
            Client(w.gateway.server, mode="auto")
            if token is None
            else GovernedClient(w.gateway.server, identity=token, mode="auto")
        )
        async with client as anonymous:
            with pytest.raises(MCPError) as refused:
                async with anonymous.listen(tools_list_changed=True, resource_subscriptions=[NEWS]):
                    pytest.fail("an unidentified listen was acknowledged")
    assert refused.value.code == -32001
    assert not w.gateway.upstreams["feed"].listened  # nothing was wanted from the upstream
    denied = [e for e in w.sink.events if e.type == "decision"]
    assert [(e.method, e.effect) for e in denied] == [("subscriptions/listen", "deny")]


async def test_a_malformed_listen_filter_is_refused() -> None:
    w = await world()
    token = w.idp.token("agent", tenant="acme")
    async with w.gateway, GovernedClient(w.gateway.server, identity=token, mode="auto") as agent:
        with pytest.raises(MCPError) as refused:
            async with agent.listen(resource_subscriptions=[NEWS] * 2 + [f"feed+feed://{n}" for n in range(300)]):
                pytest.fail("an oversized filter was acknowledged")
    assert refused.value.code == types.INVALID_PARAMS


@pytest.mark.parametrize("upstream_mode", ["auto", "legacy"])
async def test_a_legacy_agent_still_gets_its_notifications(upstream_mode: str) -> None:
    w = await world(upstream_mode)
    token = w.idp.token("agent", tenant="acme")
    got: list[tuple[str, str | None]] = []
    both = anyio.Event()

    async def on_message(message: object) -> None:
        method = getattr(message, "method", None)
        if method in ("notifications/resources/updated", "notifications/tools/list_changed"):
            got.append((method, getattr(getattr(message, "params", None), "uri", None)))
            if len(got) == 2:
                both.set()

    async with (
        w.gateway,
        GovernedClient(w.gateway.server, identity=token, mode="legacy", message_handler=on_message) as agent,
    ):
        await agent.subscribe_resource(NEWS)
        await agent.call_tool("feed_publish", {"uri": "feed://secret"})
        await agent.call_tool("feed_publish", {"uri": "feed://news"})
        await agent.call_tool("feed_grow", {})
        with anyio.fail_after(5):
            await both.wait()
        await agent.unsubscribe_resource(NEWS)
    assert sorted(got, key=str) == [
        ("notifications/resources/updated", NEWS),
        ("notifications/tools/list_changed", None),
    ]
    assert w.feed.subscribed == {}


@pytest.mark.parametrize("upstream_mode", ["auto", "legacy"])
async def test_an_upstream_restart_does_not_lose_a_listening_agents_events(upstream_mode: str) -> None:
    w = await world(upstream_mode)
    token = w.idp.token("agent", tenant="acme")
    upstream = w.gateway.upstreams["feed"]
    async with (
        w.gateway,
        GovernedClient(w.gateway.server, identity=token, mode="auto") as agent,
        listening(agent, [NEWS]) as sub,
    ):
        starts = upstream.stats.starts
        assert upstream.listened == ({"feed://news"} if upstream_mode == "auto" else set())
        upstream.mark_dead("restart under test")
        with anyio.fail_after(5):
            # The supervisor's state has no event to wait on: polled briefly. A connection is
            # ready once its listen is acknowledged (2026-07-28) or its subscriptions restored.
            while upstream.stats.starts == starts or upstream.state != "ready":  # noqa: ASYNC110
                await anyio.sleep(0.01)
        if upstream_mode == "legacy":
            assert len(w.feed.subscribed["feed://news"]) == 2  # subscribed again on the new connection
        await agent.call_tool("feed_publish", {"uri": "feed://news"})
        assert await collect(sub, ResourceUpdated(NEWS)) == [ResourceUpdated(NEWS)]
        await agent.call_tool("feed_grow", {})
        assert await collect(sub, ToolsListChanged()) == [ToolsListChanged()]


async def test_over_streamable_http_a_listening_agent_gets_only_its_allowed_updates() -> None:
    w = await world("auto")
    app = w.gateway.http_app(auth=w.gateway.bearer_auth("http://127.0.0.1/mcp"))
    token = w.idp.token("agent", tenant="acme")
    async with serve_http(app) as base, GovernedClient(f"{base}/mcp", identity=token, mode="auto") as agent:
        assert agent.protocol_version in MODERN_PROTOCOL_VERSIONS
        async with listening(agent, list(URIS)) as sub:
            assert sub.honored.resource_subscriptions == [NEWS, OTHER]
            for uri in ("feed://secret", "feed://news", "feed://other"):
                await agent.call_tool("feed_publish", {"uri": uri})
            assert await collect(sub, ResourceUpdated(OTHER)) == [ResourceUpdated(NEWS), ResourceUpdated(OTHER)]
            await agent.call_tool("feed_grow", {})
            assert await collect(sub, ToolsListChanged()) == [ToolsListChanged()]
    assert token not in json.dumps([e.model_dump(mode="json") for e in w.sink.events])


async def test_the_sdks_own_client_listens_over_http_with_a_bearer_identity() -> None:
    w = await world("auto")
    app = w.gateway.http_app(auth=w.gateway.bearer_auth("http://127.0.0.1/mcp"))
    token = w.idp.token("agent", tenant="globex")
    async with (
        serve_http(app) as base,
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="auto") as agent,
        listening(agent, list(URIS)) as sub,
    ):
        assert sub.honored.resource_subscriptions == [SECRET, OTHER]
        for uri in ("feed://news", "feed://secret", "feed://other"):
            await agent.call_tool("feed_publish", {"uri": uri})
        assert await collect(sub, ResourceUpdated(OTHER)) == [ResourceUpdated(SECRET), ResourceUpdated(OTHER)]


_FILTER_URIS = st.sampled_from([*URIS, "feed+feed://elsewhere", "nowhere://x", "feed+feed://news/"])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(uris=st.lists(_FILTER_URIS, max_size=8))
async def test_a_denied_uri_is_never_delivered_whatever_the_filter(uris: list[str]) -> None:
    w = await world("auto")
    token = w.idp.token("agent", tenant="acme")
    allowed = {NEWS, OTHER}
    async with (
        w.gateway,
        GovernedClient(w.gateway.server, identity=token, mode="auto") as agent,
        listening(agent, uris) as sub,
    ):
        assert set(sub.honored.resource_subscriptions or ()) <= allowed
        for uri in ("feed://secret", "feed://news", "feed://news/", "feed://other"):
            await agent.call_tool("feed_publish", {"uri": uri})
        await agent.call_tool("feed_grow", {})
        events = await collect(sub, ToolsListChanged())
    delivered = {e.uri for e in events if isinstance(e, ResourceUpdated)}
    assert delivered == allowed & set(uris)


async def test_a_governed_listen_on_a_handshake_era_session_is_the_sdks_refusal() -> None:
    w = await world()
    token = w.idp.token("agent", tenant="acme")
    async with w.gateway, GovernedClient(w.gateway.server, identity=token, mode="legacy") as agent:
        with pytest.raises(ListenNotSupportedError):
            async with agent.listen(tools_list_changed=True):
                pytest.fail("a listen was opened on a handshake-era session")
    assert not [e for e in w.sink.events if e.method == "subscriptions/listen"]


def _approve(w: World, *tenants: str) -> None:
    """What an operator does: the upstream's approval now names ``tenants`` only."""
    entry = w.gateway.registry.get("feed")
    assert entry is not None
    w.gateway.registry.remove("feed")
    w.gateway.registry.add({**entry.model_dump(mode="json", by_alias=True), "tenants": list(tenants)})


@pytest.mark.parametrize("upstream_mode", ["auto", "legacy"])
async def test_a_listener_whose_upstream_approval_is_withdrawn_hears_nothing_more_of_it(upstream_mode: str) -> None:
    """Resource updates, like list changes, reach a listening agent only while the registry lets
    the upstream serve it: withdrawn, nothing more of it is delivered (another agent still hears),
    and the stream's upstream wants are given up."""
    w = await world(upstream_mode)
    async with (
        w.gateway,
        GovernedClient(w.gateway.server, identity=w.idp.token("a", tenant="acme"), mode="auto") as a,
        GovernedClient(w.gateway.server, identity=w.idp.token("g", tenant="globex"), mode="auto") as g,
        listening(a, [OTHER]) as sub_a,
        listening(g, [SECRET, OTHER]) as sub_g,
    ):
        await a.call_tool("feed_publish", {"uri": "feed://other"})
        for sub in (sub_a, sub_g):
            assert await collect(sub, ResourceUpdated(OTHER)) == [ResourceUpdated(OTHER)]
        _approve(w, "acme")
        for _ in range(2):
            await a.call_tool("feed_publish", {"uri": "feed://other"})
            assert await collect(sub_a, ResourceUpdated(OTHER)) == [ResourceUpdated(OTHER)]
            # The first update relayed since gave up what globex's stream held of the upstream, once.
            assert w.gateway.upstreams["feed"]._wanted == {"feed://other": 1}
        _approve(w, "acme", "globex")
        # Approved again, globex's agent listens anew (the withdrawn stream wants nothing upstream).
        async with listening(g, [SECRET]) as again:
            await a.call_tool("feed_publish", {"uri": "feed://secret"})
            assert await collect(again, ResourceUpdated(SECRET)) == [ResourceUpdated(SECRET)]
            # Whatever reached the agent of globex while its approval was withdrawn comes before this.
            assert await collect(sub_g, ResourceUpdated(SECRET)) == [ResourceUpdated(SECRET)]
