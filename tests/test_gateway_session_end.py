"""What a gateway keeps for an agent's session ends with the session, however it ends."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

from mcpgov import Auditor, GovernedClient
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import snapshot
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

from .test_gateway_subscriptions import FEED_POLICY, _feed_registry, _Heard, feed_server, publish

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
