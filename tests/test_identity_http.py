"""Identity over Streamable HTTP: bearer tokens verified through the SDK's TokenVerifier hook (401 +
WWW-Authenticate from the SDK itself), keys from discovery served by a real local HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp.server.mcpserver import MCPServer

from mcpgov import Auditor, Decision, GovContext, GovernedClient, Hooks, Principal, govern
from mcpgov.identity import IdentityMiddleware, IdentityVerifier, RemoteKeys, server_auth
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, serve_http

pytestmark = pytest.mark.anyio

RESOURCE = "https://mcp.test/mcp"


class Served:
    def __init__(self, issuer: IdentityIssuer, url: str, sink: InMemoryAuditSink, verifier: IdentityVerifier) -> None:
        self.issuer = issuer
        self.url = url
        self.sink = sink
        self.verifier = verifier
        self.ran: list[str] = []
        self.seen: list[Principal | None] = []


@asynccontextmanager
async def served(issuer: IdentityIssuer, **remote: Any) -> AsyncIterator[Served]:
    """The issuer's discovery + JWKS on one local server, a governed MCP server on another."""
    async with issuer.serve() as issuer_url:
        verifier = IdentityVerifier(
            issuer.config(audience=RESOURCE, keys=RemoteKeys(discovery=issuer_url, **remote), tenant_claim="tenant")
        )
        identity = IdentityMiddleware(verifier)
        sink = InMemoryAuditSink()
        auditor = Auditor([sink])
        server = MCPServer(
            "ids", **server_auth(identity, resource_server_url=RESOURCE, authorization_server=issuer_url, audit=auditor)
        )
        hooks = Hooks()
        holder: list[Served] = []

        @server.tool()
        def work() -> str:
            holder[0].ran.append("work")
            return "done"

        @hooks.tool("*")
        def allow(ctx: GovContext) -> Decision:
            if ctx.action == "execute":
                holder[0].seen.append(ctx.principal)
            return Decision.allow("verified")

        govern(server, identity, hooks, audit=auditor)
        async with serve_http(server.streamable_http_app()) as base:
            state = Served(issuer, f"{base}/mcp", sink, verifier)
            holder.append(state)
            yield state


async def test_verified_bearer_identity_over_http(mode: str) -> None:
    issuer = IdentityIssuer(issuer=None, audience=RESOURCE)
    async with served(issuer) as s:
        token = issuer.token("agent-9", tenant="beta")
        async with GovernedClient(s.url, identity=token, mode=mode) as client:
            for _ in range(3):
                assert (await client.call_tool("work", {})).is_error is False
    assert s.ran == ["work"] * 3
    assert [(p.subject, p.tenant) for p in s.seen if p is not None] == [("agent-9", "beta")] * 3
    assert issuer.requests == ["/.well-known/openid-configuration", "/jwks.json"]
    assert s.verifier.signature_checks == 1  # every other request was a cache hit
    assert token not in "\n".join(e.model_dump_json() for e in s.sink.events)


async def _post(url: str, headers: dict[str, str]) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "work", "arguments": {}}}
    async with httpx2.AsyncClient() as http:
        accept = {"Accept": "application/json, text/event-stream"}
        response: httpx2.Response = await http.post(url, json=body, headers={**accept, **headers})
    return response


BAD: dict[str, tuple[Any, str]] = {
    "expired": (lambda i: i.token(ttl=-120), "expired"),
    "wrong-audience": (lambda i: i.token(audience="https://other.test/mcp"), "wrong_audience"),
    "garbage": (lambda i: "not.a.token", "malformed"),
    "oversized": (lambda i: i.token(claims={"pad": "x" * 9000}), "token_too_large"),
    "tenant-missing": (lambda i: i.token(tenant=None), "tenant_missing"),
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_refused_bearer_gets_401_with_www_authenticate_and_one_event(case: str) -> None:
    issuer = IdentityIssuer(issuer=None, audience=RESOURCE)
    make, reason = BAD[case]
    async with served(issuer) as s:
        token = make(issuer)
        response = await _post(s.url, {"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and "resource_metadata=" in challenge
    assert token not in response.text
    assert s.ran == []
    (event,) = s.sink.events
    assert (event.type, event.effect, event.reason) == ("identity.refused", "deny", reason)
    assert token not in event.model_dump_json()


async def test_missing_bearer_gets_401_and_nothing_runs() -> None:
    issuer = IdentityIssuer(issuer=None, audience=RESOURCE)
    async with served(issuer) as s:
        response = await _post(s.url, {})
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    assert s.ran == []


async def test_governed_client_with_refused_identity_fails_cleanly(mode: str) -> None:
    issuer = IdentityIssuer(issuer=None, audience=RESOURCE)
    async with served(issuer) as s:
        current = {"token": issuer.token()}
        token = issuer.token(ttl=-120)
        async with GovernedClient(s.url, identity=lambda: current["token"], mode=mode) as client:
            current["token"] = token  # the workload's token went stale after connecting
            with pytest.raises(Exception) as caught:  # noqa: PT011 - the SDK surfaces the 401 in its own way
                await client.call_tool("work", {})
    assert token not in repr(caught.value) and token not in str(caught.value)
    assert s.ran == []
    assert {e.reason for e in s.sink.events} == {"expired"}


async def test_token_headers_never_trigger_a_fetch() -> None:
    issuer = IdentityIssuer(issuer=None, audience=RESOURCE)
    attacker = IdentityIssuer("https://attacker.test")
    async with attacker.serve() as evil, served(issuer) as s:
        for header in ({"jku": f"{evil}/jwks.json"}, {"x5u": f"{evil}/cert.pem"}):
            token = issuer.token(header=header)
            response = await _post(s.url, {"Authorization": f"Bearer {token}"})
            assert response.status_code == 401
    assert attacker.requests == []
    assert [e.reason for e in s.sink.events] == ["forbidden_header", "forbidden_header"]
    assert issuer.requests == []  # refused before any key was needed


async def test_key_server_down_fails_closed_with_401() -> None:
    issuer = IdentityIssuer(issuer=None, audience=RESOURCE)
    issuer.available = False
    async with served(issuer) as s:
        token = issuer.token()
        for _ in range(3):
            response = await _post(s.url, {"Authorization": f"Bearer {token}"})
            assert response.status_code == 401
    assert [e.reason for e in s.sink.events] == ["keys_unavailable"] * 3
    assert issuer.requests == ["/.well-known/openid-configuration"]  # one attempt: refetches are rate-limited
    assert s.ran == []


async def test_rotating_token_file_is_reread_over_http(tmp_path: Any) -> None:
    issuer = IdentityIssuer(issuer=None, audience=RESOURCE)
    path = tmp_path / "token"
    from mcpgov.identity import TokenFile

    async with served(issuer) as s:
        path.write_text(issuer.token("agent-1"))
        provider = TokenFile(path, check_interval=0)
        async with GovernedClient(s.url, identity=provider, mode="auto") as client:
            await client.call_tool("work", {})
            path.write_text(issuer.token("agent-2") + "\n")
            await client.call_tool("work", {})
    assert [p.subject for p in s.seen if p is not None] == ["agent-1", "agent-2"]


async def test_requests_outside_governed_calls_carry_the_identity(mode: str) -> None:
    issuer = IdentityIssuer(issuer=None, audience=RESOURCE)
    async with served(issuer) as s:
        token = issuer.token()
        client = GovernedClient(s.url, identity=token, mode=mode)
        assert client.http_auth is not None and client.http_auth.base is not None
        assert client.http_auth.base() == f"Bearer {token}"
        # The handshake (initialize / server/discover) is no governed call: the base credential
        # carries it; without one the SDK's auth middleware answers 401 and connecting fails.
        async with client:
            assert client.protocol_version is not None
    assert [e.type for e in s.sink.events] == []
