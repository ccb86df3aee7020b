"""What a gateway keeps for an agent's session ends with the session, however it ends."""

from __future__ import annotations

import contextvars
import gc
import sys
import time
import types as types_module
import weakref
from types import MappingProxyType
from typing import Any

import anyio
import pytest
from mcp import MCPError

from mcpgov import META_CREDENTIAL, Auditor, CallNext, GovContext, GovernedClient, McpGovError, Principal
from mcpgov.credentials import CredentialIssuer, CredentialMiddleware, RevocationList, SigningKeySet
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry, snapshot
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, serve_http

from .gateway_support import drop_cancelled_timers
from .test_credentials_killswitch import FlakyStore
from .test_gateway_subscriptions import FEED_POLICY, _feed_registry, _Heard, feed_server, publish
from .test_server_listen import jwt_exp

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.anyio

NEWS = "feed+feed://news"


class Gone(BaseException):
    """An error that is not an ``Exception``, ending an agent's session."""


async def _feed_gateway() -> tuple[Gateway, IdentityIssuer, list[str], list[Any]]:
    subscribed: list[str] = []
    sessions: list[Any] = []
    feed = feed_server(subscribed, sessions)
    idp = IdentityIssuer(audience="mcp://gateway")
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "feed", "namespace": {"prefix": "feed_"}})],
        _feed_registry(await snapshot(feed)),
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(FEED_POLICY)),
        audit=Auditor([InMemoryAuditSink()]),
        servers={"feed": feed},
    )
    return gateway, idp, subscribed, sessions


async def _subscribe_then_end(gateway: Gateway, idp: IdentityIssuer, subject: str, how: str) -> None:
    """A handshake-era agent subscribes, then its session ends ``how``."""
    agent = GovernedClient(gateway.server, identity=idp.token(subject, tenant="acme"), mode="legacy")
    subscribed = anyio.Event()

    async def run() -> None:
        async with agent:
            await agent.subscribe_resource(NEWS)
            await agent.subscribe_resource(NEWS)  # twice: still one want
            subscribed.set()
            if how == "error":
                raise Gone
            if how == "cancelled":
                await anyio.sleep_forever()

    if how == "cancelled":
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with anyio.fail_after(10):
                await subscribed.wait()
            tg.cancel_scope.cancel()
    elif how == "error":
        with pytest.raises((Gone, BaseExceptionGroup)) as raised:  # the SDK's task groups may wrap it
            await run()
        leaf: BaseException = raised.value
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        assert isinstance(leaf, Gone), leaf
    else:
        await run()
    assert subscribed.is_set()


@pytest.mark.parametrize("how", ["closed", "cancelled", "error"])
async def test_a_legacy_agent_that_leaves_gives_up_its_upstream_subscription(how: str) -> None:
    """However a handshake-era agent's session ends (closed, cancelled, an error that is not an
    ``Exception``), its subscription is released upstream exactly once: another agent's want of
    the same URI stays until that agent leaves too, and nothing is left in the gateway."""
    gateway, idp, subscribed, sessions = await _feed_gateway()
    heard = _Heard()
    async with gateway:
        staying = GovernedClient(
            gateway.server, identity=idp.token("staying", tenant="acme"), mode="legacy", message_handler=heard
        )
        async with staying:
            await staying.subscribe_resource(NEWS)
            for n in range(3):
                await _subscribe_then_end(gateway, idp, f"leaving-{n}", how)
            # The other agent's want holds: the upstream keeps it, and updates still reach that agent.
            assert subscribed == ["feed://news"]
            assert gateway.upstreams["feed"]._wanted == {"feed://news": 1}
            await publish(sessions)
            await heard.next_update()
            await staying.unsubscribe_resource(NEWS)
            assert subscribed == []
        assert gateway.upstreams["feed"]._wanted == {}
        # The last agent leaving without unsubscribing releases the upstream's subscription too.
        await _subscribe_then_end(gateway, idp, "last", how)
        assert subscribed == []
        assert gateway.upstreams["feed"]._wanted == {}
        assert gateway._subscriptions == {}


def _reaches(roots: list[Any], needle: str, limit: int = 200_000) -> bool:
    """Whether any object reachable from ``roots`` is a string holding ``needle``."""
    seen: set[int] = set()
    todo = list(roots)
    while todo and len(seen) < limit:
        item = todo.pop()
        if id(item) in seen or isinstance(item, type | types_module.ModuleType):
            continue
        if type(item).__module__.startswith("opentelemetry"):
            # Tracing is process-wide (a provider, its processors and exporters hold every span
            # ended so far): it is no part of the agent's request, and leads to the whole heap.
            continue
        seen.add(id(item))
        if isinstance(item, str):
            if needle in item:
                return True
            continue
        if isinstance(item, bytes):
            if needle.encode() in item:
                return True
            continue
        todo.extend(gc.get_referents(item))
    return False


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_in_process_upstream_runs_with_nothing_of_the_agents_request(mode: str) -> None:
    """An in-process upstream's handlers run in the gateway's own context, never in that of the
    agent's request they serve: nothing of that request (its identity token, its session, what
    the chain decided) is reachable from them, and nothing of a first agent, whose request started
    a lazy upstream, stays referenced once it is gone."""
    from mcp.server.mcpserver import MCPServer

    reached: list[list[Any]] = []
    modes = {"mode": mode}
    upstream = MCPServer("feed", version="1.0.0")

    @upstream.tool()
    def publish() -> str:
        """Publish news."""
        context = contextvars.copy_context()
        reached.append([value for _, value in context.items()])
        return "published"

    idp = IdentityIssuer(audience="mcp://gateway")
    registry = _feed_registry(await snapshot(upstream))
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "feed", "namespace": {"prefix": "feed_"}, "start": "lazy", **modes})],
        registry,
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(FEED_POLICY)),
        audit=Auditor([InMemoryAuditSink()]),
        servers={"feed": upstream},
    )
    sessions: list[weakref.ref[Any]] = []
    original = gateway._front

    def front(sctx: Any) -> Any:
        sessions.append(weakref.ref(sctx.session))
        return original(sctx)

    gateway._front = front  # type: ignore[method-assign]
    async with gateway:
        for n in range(2):
            token = idp.token(f"agent-{n}", tenant="acme")
            async with GovernedClient(gateway.server, identity=token, mode="legacy") as agent:
                await agent.call_tool("feed_publish", {})
            assert len(reached) == n + 1
            assert not _reaches(reached[-1], token)
            assert not _reaches(reached[-1], f"agent-{n}")
        reached.clear()
        await drop_cancelled_timers()
        gc.collect()
        assert sessions and all(ref() is None for ref in sessions)


@pytest.mark.parametrize(
    ("failure", "unsubscribed"),
    [
        (McpGovError("refused by the back chain", reason="upstream_refused"), False),
        (MCPError(-32603, "the upstream's own error"), False),
        (MCPError(-32001, "timed out"), True),
        (anyio.BrokenResourceError(), True),
    ],
)
async def test_a_subscribe_that_failed_is_taken_back_and_undone_only_if_it_may_have_reached_the_upstream(
    failure: BaseException, unsubscribed: bool
) -> None:
    """A subscribe the back chain refused (never sent) or the upstream refused leaves nothing to
    undo: the upstream hears nothing more of it. One that may have reached the upstream (timed
    out, connection lost) is undone with an unsubscribe. The want is taken back either way."""
    gateway, _, _, _ = await _feed_gateway()
    upstream = gateway.upstreams["feed"]
    undone: list[str] = []

    async def unsubscribe(uri: str) -> None:
        undone.append(uri)

    class Failing:
        protocol_version = "2025-11-25"

        async def subscribe_resource(self, uri: str) -> None:
            raise failure

    upstream.unsubscribe = unsubscribe  # type: ignore[method-assign]
    with pytest.raises(type(failure)):
        await upstream.want(Failing(), "feed://news")  # type: ignore[arg-type]
    assert upstream._wanted == {}
    assert undone == (["feed://news"] if unsubscribed else [])


async def test_an_agent_leaving_a_stateful_http_session_gives_up_its_upstream_subscription() -> None:
    """Over stateful Streamable HTTP, a session ends when the agent closes it (or the gateway
    reaps it once idle): its subscriptions are released as for any other session."""
    gateway, idp, subscribed, _ = await _feed_gateway()
    ended = [anyio.Event()]
    session_ended = gateway._session_ended

    async def seen_ending(connection: Any) -> None:
        await session_ended(connection)
        ended[0].set()

    gateway._session_ended = seen_ending  # type: ignore[method-assign]

    async def next_end() -> None:
        with anyio.fail_after(10):  # the session ends once the gateway saw it closed
            await ended[0].wait()
        ended[0] = anyio.Event()

    app = gateway.http_app(auth=gateway.bearer_auth("http://127.0.0.1/mcp"))
    async with serve_http(app) as base:
        staying = GovernedClient(f"{base}/mcp", identity=idp.token("staying", tenant="acme"), mode="legacy")
        async with staying:
            await staying.subscribe_resource(NEWS)
            for n in range(2):
                token = idp.token(f"leaving-{n}", tenant="acme")
                async with GovernedClient(f"{base}/mcp", identity=token, mode="legacy") as leaving:
                    await leaving.subscribe_resource(NEWS)
                await next_end()
                assert gateway.upstreams["feed"]._wanted == {"feed://news": 1}
            assert subscribed == ["feed://news"]
        await next_end()
        assert subscribed == []
        assert gateway.upstreams["feed"]._wanted == {}
        assert gateway._subscriptions == {}


async def test_concurrent_subscribes_of_one_session_hold_one_want() -> None:
    """Subscribes of one session to one resource, sent together, hold one want between them:
    one unsubscribe gives it up, and the upstream is unsubscribed."""
    gateway, idp, subscribed, _ = await _feed_gateway()
    async with gateway:
        agent = GovernedClient(gateway.server, identity=idp.token("agent", tenant="acme"), mode="legacy")
        async with agent:
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(agent.subscribe_resource, NEWS)
            assert gateway.upstreams["feed"]._wanted == {"feed://news": 1}
            await agent.unsubscribe_resource(NEWS)
            assert subscribed == []
            assert gateway.upstreams["feed"]._wanted == {}


@pytest.mark.parametrize("found_by", ["update", "standing-check"])
@pytest.mark.parametrize("lapse", ["workload-withdrawn", "credential-revoked", "identity-expired"])
async def test_a_legacy_agent_whose_authority_lapsed_gives_up_its_upstream_subscription(
    lapse: str, found_by: str
) -> None:
    """Once what let a handshake-era agent's subscription stand lapses (the registry no longer
    approves the upstream for it, its credential is revoked, its identity expired), the gateway
    releases its upstream want, exactly once, while another agent's want of the same URI stays:
    found by the next update relayed from the upstream, or by the gateway's standing check when
    the upstream says nothing."""
    subscribed: list[str] = []
    sessions: list[Any] = []
    feed = feed_server(subscribed, sessions)
    registry = _feed_registry(await snapshot(feed))
    idp = IdentityIssuer(audience="mcp://gateway")
    issuer = CredentialIssuer(
        "https://credentials.acme.example",
        SigningKeySet.generate("Ed25519"),
        max_ttl=300,
        revocations=RevocationList(FlakyStore(), max_ttl=300),
    )
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "feed", "namespace": {"prefix": "feed_"}})],
        registry,
        IdentityMiddleware(idp.verifier()),
        CredentialMiddleware(issuer.verifier("mcp://gateway")),
        PolicyMiddleware(Policy.from_dict(FEED_POLICY)),
        audit=Auditor([InMemoryAuditSink()]),
        servers={"feed": feed},
    )
    holder = Principal(
        issuer="https://issuer.test", subject="leaving", tenant="acme", claims=MappingProxyType({}), auth_method="jwt"
    )
    credential = await issuer.mint(holder, audience="mcp://gateway", tools=["feed_publish"], task_id="t-1", ttl=300)

    async def present(ctx: GovContext, call_next: CallNext) -> Any:
        return await call_next(ctx.replace(meta=MappingProxyType({**ctx.meta, META_CREDENTIAL: credential.token})))

    heard = _Heard()
    upstream = gateway.upstreams["feed"]
    released = anyio.Event()
    release = upstream.release

    def releasing(uri: str) -> bool:
        last = release(uri)
        released.set()
        return last

    upstream.release = releasing  # type: ignore[method-assign]
    identity = idp.token("leaving", tenant="acme", ttl=2 if lapse == "identity-expired" else 300)
    async with (
        gateway,
        GovernedClient(gateway.server, present, identity=identity, mode="legacy") as leaving,
        GovernedClient(
            gateway.server, identity=idp.token("staying", tenant="acme"), mode="legacy", message_handler=heard
        ) as staying,
    ):
        await leaving.subscribe_resource(NEWS)
        await staying.subscribe_resource(NEWS)
        assert upstream._wanted == {"feed://news": 2}
        if lapse == "credential-revoked":
            await issuer.revoke(credential)
        elif lapse == "identity-expired":
            await anyio.sleep(max(0.0, jwt_exp(identity) - time.time()) + 0.05)  # until it expired
        else:
            entry = registry.get("feed")
            assert entry is not None
            registry.remove("feed")
            registry.add({**entry.model_dump(mode="json", by_alias=True), "workloads": ["staying"]})
        if found_by == "update":
            await publish(sessions)  # the first update relayed after the lapse finds it
            await heard.next_update()
        else:
            with anyio.fail_after(30):
                await released.wait()
        for _ in range(2):  # relayed one after the other: the first one's release is done, once
            await publish(sessions)
            await heard.next_update()
            assert upstream._wanted == {"feed://news": 1}
            assert subscribed == ["feed://news"]
            assert len(gateway._subscriptions[NEWS]) == 1
        await staying.unsubscribe_resource(NEWS)
        assert upstream._wanted == {}
        assert subscribed == []
        assert gateway._subscriptions == {}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_http_upstream_keeps_nothing_of_the_agents_request(mode: str) -> None:
    """An HTTP upstream's connection is the gateway's: once an agent's request through it ended
    (the first one, whose request started the lazy upstream, and the latest), nothing of that
    request (its session, and with it its identity and what was decided for it) stays referenced."""
    from mcp.server.mcpserver import MCPServer

    upstream = MCPServer("feed", version="1.0.0")

    @upstream.tool()
    def publish() -> str:
        """Publish news."""
        return "published"

    idp = IdentityIssuer(audience="mcp://gateway")
    async with serve_http(upstream.streamable_http_app()) as base:
        url = f"{base}/mcp"
        entry = _feed_registry(await snapshot(url)).get("feed")
        assert entry is not None
        registry = ServerRegistry([{**entry.model_dump(mode="json", by_alias=True), "command": None, "url": url}])
        gateway = Gateway(
            [
                UpstreamConfig.model_validate(
                    {"id": "feed", "namespace": {"prefix": "feed_"}, "start": "lazy", "mode": mode}
                )
            ],
            registry,
            IdentityMiddleware(idp.verifier()),
            PolicyMiddleware(Policy.from_dict(FEED_POLICY)),
            audit=Auditor([InMemoryAuditSink()]),
        )
        sessions: list[weakref.ref[Any]] = []
        original = gateway._front

        def front(sctx: Any) -> Any:
            sessions.append(weakref.ref(sctx.session))
            return original(sctx)

        gateway._front = front  # type: ignore[method-assign]
        async with gateway:
            for n in range(2):
                token = idp.token(f"agent-{n}", tenant="acme")
                async with GovernedClient(gateway.server, identity=token, mode="legacy") as agent:
                    await agent.call_tool("feed_publish", {})
            await drop_cancelled_timers()
            gc.collect()
            assert gateway.upstreams["feed"].state == "ready"
            assert sessions and [ref() for ref in sessions] == [None] * len(sessions)


@pytest.mark.parametrize("failure", ["base-exception", "stray-cancel", "error"])
async def test_a_standing_check_that_breaks_neither_ends_the_checks_nor_the_gateway(
    mode: str, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round of the gateway's standing checks that raises (an ``Exception``, a ``BaseException``
    subclass, a ``CancelledError`` nothing asked for) is contained: the next rounds run, and the
    gateway keeps serving its agents."""
    import asyncio

    from .gateway_support import build_world
    from .test_credentials_killswitch import StoreBroke

    monkeypatch.setattr("mcpgov.gateway._gateway.STANDING_CHECK_INTERVAL", 0.01)
    world, _ = await build_world()
    rounds: list[int] = []
    more = anyio.Event()

    async def breaking() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            if failure == "base-exception":
                raise StoreBroke("a store gave up")
            if failure == "stray-cancel":
                raise asyncio.CancelledError
            raise RuntimeError("a check failed")
        if len(rounds) >= 3:
            more.set()

    monkeypatch.setattr(world.gateway, "_release_lapsed", breaking)
    async with world.gateway, world.agent(mode) as agent:
        with anyio.fail_after(10):
            await more.wait()
        listed = await agent.list_tools()
        assert listed.tools
    assert len(rounds) >= 3
