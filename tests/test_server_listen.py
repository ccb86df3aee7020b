"""``subscriptions/listen`` on a governed server: each resource URI of the filter is decided."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated, ServerEvent, ToolsListChanged
from mcp.server.mcpserver import Context, MCPServer

from mcpgov import Decision, GovContext, GovernedClient, Hooks, govern
from mcpgov.identity import IdentityMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

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


async def test_a_listen_stream_ends_gracefully_when_the_identity_that_opened_it_expires() -> None:
    """A stream outlives its request, never the token that allowed it: at the token's ``exp`` the
    stream ends with its final result (the agent re-listens, and is decided again)."""
    issuer = IdentityIssuer(audience="mcp://notes")
    server = MCPServer("notes")

    @server.tool()
    async def announce(uris: list[str], ctx: Context) -> str:
        await ctx.notify_tools_changed()
        return "ok"

    hooks = Hooks()
    hooks.tool("announce")(lambda ctx: Decision.allow("announce"))
    sink = InMemoryAuditSink()
    govern(server, IdentityMiddleware(issuer.verifier()), hooks, audit=sink)
    token = issuer.token("agent", ttl=3)
    started = time.time()
    events: list[ServerEvent] = []
    async with (
        GovernedClient(server, identity=token, mode="auto") as client,
        client.listen(tools_list_changed=True) as sub,
    ):
        await client.call_tool("announce", {"uris": []})
        with anyio.fail_after(10):
            events.extend([event async for event in sub])  # ends when the stream does
    ended = time.time()
    assert events == [ToolsListChanged()]
    expires = jwt_exp(token)
    assert expires - 0.5 <= ended <= expires + 3, (started, expires, ended)
    ended_at_expiry = [(e.type, e.reason, e.principal) for e in sink.events if e.reason == "expired"]
    assert ended_at_expiry == [("identity.refused", "expired", "https://issuer.test#agent")]
    assert token not in repr(sink.events)


def jwt_exp(token: str) -> float:
    payload = token.split(".")[1]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


async def test_a_listen_stream_with_no_expiring_authority_is_not_cut() -> None:
    """Without identity or credential there is no expiry to bound the stream by: it stays open."""
    server, _ = build()
    async with Client(server, mode="auto") as client, client.listen(tools_list_changed=True) as sub:
        with anyio.move_on_after(1.5) as scope:
            async for _ in sub:
                break
        assert scope.cancelled_caught  # still open, nothing delivered


def test_the_authority_expiry_is_the_earlier_of_the_identity_and_the_credential() -> None:
    from mcpgov import Principal
    from mcpgov._server import authority_expiry

    who = Principal("https://idp", "agent", claims={"exp": 2_000_000_100})
    base = GovContext(side="server", method="subscriptions/listen")
    assert authority_expiry(base) is None
    assert authority_expiry(base.replace(principal=who)) == 2_000_000_100.0
    assert authority_expiry(base.replace(principal=who, credential={"exp": 2_000_000_050.5})) == 2_000_000_050.5
    assert authority_expiry(base.replace(credential={"exp": 2_000_000_200})) == 2_000_000_200.0
    # A claim that is not a finite number bounds nothing (the verifiers already refused such tokens).
    for odd in (True, "2000000000", float("nan"), None):
        assert authority_expiry(base.replace(credential={"exp": odd})) is None


HOSTILE_SPELLINGS = [
    "secret://%62",  # percent-encoded "b"
    "SECRET://b",  # another case of the scheme
    "docs://a/../../secret://b",  # dot segments out of an allowed prefix
    "docs://%2e%2e/secret://b",
    "docs://a\u2024\u2024/secret",  # one-dot leaders that NFKC folds into ".."
    "docs://a\x00secret://b",
    "docs://\uff41",  # a fullwidth letter (NFKC: "docs://a")
    "docs://a ",
]


async def test_a_listen_filter_in_another_spelling_never_delivers_what_its_canonical_form_would_not() -> None:
    """The filter's URIs are decided as spelt, and events match them exactly as spelt: a spelling
    that only resolves to a denied resource, or only folds into an allowed one, is refused or
    hears nothing, and nothing of the denied resource is ever delivered."""
    server, sink = build()
    async with (
        Client(server, mode="auto") as client,
        client.listen(tools_list_changed=True, resource_subscriptions=HOSTILE_SPELLINGS) as sub,
    ):
        honored = sub.honored.resource_subscriptions or []
        assert all(uri.startswith("docs://") for uri in honored), honored  # only what the hooks allow
        # Spellings that are not canonical are refused before any decision.
        for refused_spelling in ("secret://%62", "docs://%2e%2e/secret://b", "docs://\uff41", "docs://a\x00secret://b"):
            assert refused_spelling not in honored
        await client.call_tool("announce", {"uris": ["secret://b", "docs://a", *HOSTILE_SPELLINGS]})
        events = await events_until_tools_changed(sub)
    delivered = [e.uri for e in events if isinstance(e, ResourceUpdated)]
    assert all(uri in honored for uri in delivered), (delivered, honored)
    assert "secret://b" not in delivered  # the denied resource itself, whatever was asked for
    assert "docs://a" not in delivered  # not asked for in its canonical spelling
    # Every spelling left out was refused and audited (a deny decision, or an invalid request).
    refused = {e.target for e in sink.events if e.method == "resources/subscribe" and e.effect == "deny"}
    assert set(HOSTILE_SPELLINGS) - set(honored) <= refused, (set(HOSTILE_SPELLINGS) - set(honored)) - refused
