"""``completion/complete`` through the gateway: the upstream gets exactly what the chain decided."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import MCPError
from mcp.server.mcpserver import MCPServer
from mcp_types import Completion, PromptReference, ResourceTemplateReference

from mcpgov import Auditor, GovernedClient
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import snapshot
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, serve_http

from .test_gateway_subscriptions import _feed_registry

pytestmark = pytest.mark.anyio

POLICY = {
    "version": 1,
    "rules": [
        {"id": "greet", "effect": "allow", "tenants": ["acme"], "prompts": ["feed_greet"]},
        {"id": "notes", "effect": "allow", "tenants": ["acme"], "resources": ["feed+notes://*"]},
        {
            "id": "no-forbidden",
            "effect": "deny",
            "prompts": ["feed_greet"],
            "resources": ["feed+notes://*"],
            "when": {"arguments": {"name": {"in": ["forbidden"]}}},
        },
    ],
}


def _upstream(seen: list[tuple[str, str, Any]]) -> MCPServer:
    server = MCPServer("feed", version="1.0.0")

    @server.prompt()
    def greet(name: str, greeting: str = "hello") -> str:
        """Greet someone."""
        return f"{greeting} {name}"

    @server.resource("notes://{name}/{part}")
    def note(name: str, part: str) -> str:
        """A note."""
        return name

    @server.completion()  # type: ignore[untyped-decorator,no-untyped-call]  # the SDK's decorator is untyped
    async def complete(ref: Any, argument: Any, context: Any) -> Completion:
        target = getattr(ref, "name", None) or getattr(ref, "uri", None)
        arguments = dict(context.arguments) if context is not None and context.arguments is not None else None
        seen.append((str(target), argument.value, arguments))
        return Completion(values=["a"])

    return server


@pytest.mark.parametrize("kind", ["prompt", "template"])
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_completion_carries_no_filled_argument_the_chain_did_not_decide(kind: str, mode: str) -> None:
    """The already-filled arguments of a completion (``context.arguments``) are not what the
    chain decides (it decides the reference and the argument being completed): none of them
    reaches the upstream, so a value the policy denies for that prompt or template (or any other)
    is never carried there, whatever the agent sends."""
    seen: list[tuple[str, str, Any]] = []
    upstream = _upstream(seen)
    idp = IdentityIssuer(audience="mcp://gateway")
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "feed", "namespace": {"prefix": "feed_"}})],
        _feed_registry(await snapshot(upstream)),
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(POLICY)),
        audit=Auditor([InMemoryAuditSink()]),
        servers={"feed": upstream},
    )
    ref: PromptReference | ResourceTemplateReference
    if kind == "prompt":
        ref, completed = PromptReference(type="ref/prompt", name="feed_greet"), "greeting"
    else:
        ref, completed = ResourceTemplateReference(type="ref/resource", uri="feed+notes://{name}/{part}"), "part"
    token = idp.token("agent", tenant="acme")
    app = gateway.http_app(auth=gateway.bearer_auth("http://127.0.0.1/mcp"))
    # Over HTTP: completion/complete carries no _meta, the agent's identity is its bearer token.
    async with serve_http(app) as base, GovernedClient(f"{base}/mcp", identity=token, mode=mode) as agent:
        for context in ({"name": "forbidden"}, {"name": "ok", "other": "forbidden"}, {"name": "ok"}):
            filled = dict(context)
            await agent.complete(ref, {"name": completed, "value": "h"}, filled)
    target = "greet" if kind == "prompt" else "notes://{name}/{part}"
    assert seen == [(target, "h", None)] * 3


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_completion_the_chain_refuses_reaches_no_upstream(mode: str) -> None:
    """A completion for a prompt or template the policy does not allow (or in another spelling, or
    under another upstream's prefix) is refused with the agent identified, and the upstream sees
    nothing of it; one allowed goes through."""
    seen: list[tuple[str, str, Any]] = []
    upstream = _upstream(seen)

    @upstream.prompt()
    def hidden(name: str) -> str:
        """A prompt no rule allows."""
        return name

    idp = IdentityIssuer(audience="mcp://gateway")
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "feed", "namespace": {"prefix": "feed_"}})],
        _feed_registry(await snapshot(upstream)),
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(POLICY)),
        audit=Auditor([InMemoryAuditSink()]),
        servers={"feed": upstream},
    )
    refs: list[PromptReference | ResourceTemplateReference] = [
        PromptReference(type="ref/prompt", name=name)
        for name in ("feed_hidden", "hidden", "FEED_greet", "feed_gre\u200bet", "other_greet", "feed__greet")
    ]
    refs += [
        ResourceTemplateReference(type="ref/resource", uri=uri)
        for uri in ("notes://{name}/{part}", "FEED+notes://{name}/{part}", "other+notes://{name}/{part}", "feed+")
    ]
    app = gateway.http_app(auth=gateway.bearer_auth("http://127.0.0.1/mcp"))
    token = idp.token("agent", tenant="acme")
    async with serve_http(app) as base, GovernedClient(f"{base}/mcp", identity=token, mode=mode) as agent:
        for ref in refs:
            try:
                await agent.complete(ref, {"name": "name", "value": "a"})
            except MCPError:
                continue
            raise AssertionError(f"allowed: {ref!r}; upstream saw {seen}")
        assert seen == []
        await agent.complete(PromptReference(type="ref/prompt", name="feed_greet"), {"name": "name", "value": "a"})
    assert seen == [("greet", "a", None)]
