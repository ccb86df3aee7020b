"""Resource subscriptions through the gateway: subscribe forwarded, updates come back renamed."""

from __future__ import annotations

import gc
import time
import weakref
from types import MappingProxyType
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from mcpgov import META_CREDENTIAL, Auditor, CallNext, GovContext, GovernedClient, Principal
from mcpgov.credentials import CredentialIssuer, CredentialMiddleware, RevocationList, SigningKeySet
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry, snapshot
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, serve_http

from .gateway_support import drop_cancelled_timers
from .test_credentials_killswitch import FlakyStore, cut_off
from .test_server_listen import jwt_exp

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


def _feed_registry(manifest: Any) -> ServerRegistry:
    return ServerRegistry(
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


FEED_POLICY = {
    "version": 1,
    "rules": [
        {"id": "news", "effect": "allow", "tenants": ["acme"], "resources": ["feed+feed://*"]},
        {"id": "publish", "effect": "allow", "tenants": ["acme"], "tools": ["feed_publish"]},
    ],
}


async def publish(sessions: list[Any]) -> None:
    """The upstream announces an update of its resource (as its own background work would)."""
    for session in sessions:
        await session.send_resource_updated("feed://news")


class _Heard:
    """What one legacy agent hears: every notification's method, and an event per publish seen."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.updates = 0
        self.updated = anyio.Event()

    async def __call__(self, message: object) -> None:
        method = getattr(message, "method", None)
        if isinstance(method, str):
            self.methods.append(method)
        if method == "notifications/resources/updated":
            self.updates += 1
            self.updated.set()

    async def next_update(self) -> None:
        with anyio.fail_after(10):
            await self.updated.wait()
        self.updated = anyio.Event()


async def test_a_legacy_agent_whose_identity_expired_hears_no_more_updates_or_list_changes() -> None:
    """A handshake-era subscription lasts no longer than the identity token that made it: once it
    expired, neither resource updates nor list changes reach that connection (it is audited once)."""
    subscribed: list[str] = []
    sessions: list[Any] = []
    feed = feed_server(subscribed, sessions)
    manifest = await snapshot(feed)
    idp = IdentityIssuer(audience="mcp://gateway")
    sink = InMemoryAuditSink()
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "feed", "namespace": {"prefix": "feed_"}})],
        _feed_registry(manifest),
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(FEED_POLICY)),
        audit=Auditor([sink]),
        servers={"feed": feed},
    )
    short = idp.token("short-lived", tenant="acme", ttl=2)
    heard_a, heard_b = _Heard(), _Heard()
    async with (
        gateway,
        GovernedClient(gateway.server, identity=short, mode="legacy", message_handler=heard_a) as a,
        GovernedClient(
            gateway.server, identity=idp.token("steady", tenant="acme"), mode="legacy", message_handler=heard_b
        ) as b,
    ):
        await a.subscribe_resource("feed+feed://news")
        await b.subscribe_resource("feed+feed://news")
        await b.call_tool("feed_publish", {})
        await heard_a.next_update()
        await heard_b.next_update()
        await anyio.sleep(max(0.0, jwt_exp(short) - time.time()) + 0.05)  # until the identity expired
        heard_a.methods.clear()
        for _ in range(2):
            await b.call_tool("feed_publish", {})
            await heard_b.next_update()
        for session in sessions:
            await session.send_resource_list_changed()
        await b.call_tool("feed_publish", {})
        await heard_b.next_update()
        assert "notifications/resources/list_changed" in heard_b.methods
        await a.send_ping()  # whatever the gateway sent ``a`` before this answer has arrived
        assert heard_a.methods == []
    ended = [(e.type, e.principal) for e in sink.events if e.reason == "expired"]
    assert ended == [("identity.refused", "https://issuer.test#short-lived")], ended


@pytest.mark.parametrize("revoke", ["credential", "task", "principal", "store-down"])
async def test_a_legacy_agent_whose_credential_is_revoked_hears_no_more_updates_or_list_changes(revoke: str) -> None:
    """A handshake-era subscription made with a credential is worth no more than that credential:
    once it (its task, its principal) is revoked, or the revocation store stops answering (fail
    closed), neither resource updates nor list changes reach that connection."""
    subscribed: list[str] = []
    sessions: list[Any] = []
    feed = feed_server(subscribed, sessions)
    manifest = await snapshot(feed)
    idp = IdentityIssuer(audience="mcp://gateway")
    store = FlakyStore()
    issuer = CredentialIssuer(
        "https://credentials.acme.example",
        SigningKeySet.generate("Ed25519"),
        max_ttl=300,
        revocations=RevocationList(store, max_ttl=300),
    )
    sink = InMemoryAuditSink()
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "feed", "namespace": {"prefix": "feed_"}})],
        _feed_registry(manifest),
        IdentityMiddleware(idp.verifier()),
        CredentialMiddleware(issuer.verifier("mcp://gateway")),
        PolicyMiddleware(Policy.from_dict(FEED_POLICY)),
        audit=Auditor([sink]),
        servers={"feed": feed},
    )
    agent = Principal(
        issuer="https://issuer.test", subject="holder", tenant="acme", claims=MappingProxyType({}), auth_method="jwt"
    )
    credential = await issuer.mint(agent, audience="mcp://gateway", tools=["feed_publish"], task_id="t-1", ttl=300)

    async def present(ctx: GovContext, call_next: CallNext) -> Any:
        return await call_next(ctx.replace(meta=MappingProxyType({**ctx.meta, META_CREDENTIAL: credential.token})))

    heard_a, heard_b = _Heard(), _Heard()
    async with (
        gateway,
        GovernedClient(
            gateway.server, present, identity=idp.token("holder", tenant="acme"), mode="legacy", message_handler=heard_a
        ) as a,
        GovernedClient(
            gateway.server, identity=idp.token("steady", tenant="acme"), mode="legacy", message_handler=heard_b
        ) as b,
    ):
        await a.subscribe_resource("feed+feed://news")
        await b.subscribe_resource("feed+feed://news")
        await publish(sessions)
        await heard_a.next_update()
        await heard_b.next_update()
        reason = await cut_off(revoke, issuer, credential, agent, store)
        heard_a.methods.clear()
        for _ in range(2):
            await publish(sessions)
            await heard_b.next_update()
        for session in sessions:
            await session.send_resource_list_changed()
        await publish(sessions)
        await heard_b.next_update()
        assert "notifications/resources/list_changed" in heard_b.methods
        await a.send_ping()  # whatever the gateway sent ``a`` before this answer has arrived
        assert heard_a.methods == []
    refused = [e for e in sink.events if e.type == "credential.refused"]
    assert refused
    assert {(e.reason, e.principal) for e in refused} == {(reason, agent.id)}
    assert credential.token not in repr(sink.events)


async def test_a_subscribe_over_stateless_http_keeps_nothing_it_could_never_deliver() -> None:
    """Stateless Streamable HTTP has no channel to send an update on: a subscribe there is
    acknowledged but wants nothing from the upstream, so any number of agents subscribing to any
    number of URIs leaves no upstream subscription and nothing held in the gateway."""
    subscribed: list[str] = []
    feed = feed_server(subscribed, [])
    manifest = await snapshot(feed)
    idp = IdentityIssuer(audience="mcp://gateway")
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "feed", "namespace": {"prefix": "feed_"}})],
        _feed_registry(manifest),
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(FEED_POLICY)),
        audit=Auditor([InMemoryAuditSink()]),
        servers={"feed": feed},
    )
    app = gateway.http_app(auth=gateway.bearer_auth("http://127.0.0.1/mcp"), stateless=True)
    async with serve_http(app) as base:
        for n in range(3):
            token = idp.token(f"agent-{n}", tenant="acme")
            async with GovernedClient(f"{base}/mcp", identity=token, mode="legacy") as agent:
                for uri in ("feed+feed://news", f"feed+feed://item/{n}"):
                    await agent.subscribe_resource(uri)
        assert subscribed == []
        assert gateway.upstreams["feed"]._wanted == {}
        assert gateway._subscriptions == {}


async def test_the_gateway_keeps_no_agent_connection_alive_once_it_is_gone() -> None:
    """What authorised an agent's subscriptions is kept with its connection, never in the
    gateway's own tables: an agent that could be asked questions (whose decided request reaches
    its connection) is forgotten once it is gone, like any other."""
    subscribed: list[str] = []
    feed = feed_server(subscribed, [])
    manifest = await snapshot(feed)
    idp = IdentityIssuer(audience="mcp://gateway")
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "feed", "namespace": {"prefix": "feed_"}})],
        _feed_registry(manifest),
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(FEED_POLICY)),
        audit=Auditor([InMemoryAuditSink()]),
        servers={"feed": feed},
    )

    async def answer(context: Any, params: Any) -> Any:
        return types.ElicitResult(action="decline")

    gone: list[weakref.ref[Any]] = []
    async with gateway:
        for n in range(5):
            token = idp.token(f"agent-{n}", tenant="acme")
            async with GovernedClient(gateway.server, identity=token, mode="legacy", elicitation_callback=answer) as a:
                await a.subscribe_resource("feed+feed://news")
                gone += [weakref.ref(c) for c in gateway._connections if all(r() is not c for r in gone)]
        await drop_cancelled_timers()
        gc.collect()
        # Every agent's connection is gone: the first (whose request started the upstream
        # connection and subscribed it) and the latest too.
        assert len(gone) == 5
        assert [r() is None for r in gone] == [True] * 5


async def test_a_legacy_subscriber_whose_upstream_approval_is_withdrawn_hears_no_more_updates() -> None:
    """Resource updates, like list changes, reach a handshake-era subscriber only while the
    registry lets the upstream serve it: withdrawn, nothing more is delivered to it, while another
    agent of a tenant still approved hears every update."""
    subscribed: list[str] = []
    sessions: list[Any] = []
    feed = feed_server(subscribed, sessions)
    manifest = await snapshot(feed)
    registry = _feed_registry(manifest)
    entry = registry.get("feed")
    assert entry is not None
    data = entry.model_dump(mode="json", by_alias=True)
    registry.remove("feed")
    registry.add({**data, "tenants": ["acme", "globex"]})
    idp = IdentityIssuer(audience="mcp://gateway")
    rules: list[dict[str, Any]] = FEED_POLICY["rules"]  # type: ignore[assignment]
    policy = {**FEED_POLICY, "rules": [{**rule, "tenants": ["acme", "globex"]} for rule in rules]}
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "feed", "namespace": {"prefix": "feed_"}})],
        registry,
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(policy)),
        audit=Auditor([InMemoryAuditSink()]),
        servers={"feed": feed},
    )
    heard_a, heard_g = _Heard(), _Heard()
    async with (
        gateway,
        GovernedClient(
            gateway.server, identity=idp.token("a", tenant="acme"), mode="legacy", message_handler=heard_a
        ) as a,
        GovernedClient(
            gateway.server, identity=idp.token("g", tenant="globex"), mode="legacy", message_handler=heard_g
        ) as g,
    ):
        await a.subscribe_resource("feed+feed://news")
        await g.subscribe_resource("feed+feed://news")
        await publish(sessions)
        await heard_a.next_update()
        await heard_g.next_update()
        registry.remove("feed")
        registry.add({**data, "tenants": ["acme"]})
        for _ in range(2):
            await publish(sessions)
            await heard_a.next_update()
        await g.send_ping()  # whatever the gateway sent ``g`` before this answer has arrived
        assert heard_g.updates == 1
