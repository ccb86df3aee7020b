"""The gateway over Streamable HTTP: bearer identity, health and readiness, HTTP upstreams."""

from __future__ import annotations

import json

import httpx2
import pytest
from mcp import MCPError
from mcp.server.mcpserver import Context, MCPServer

from mcpgov import Auditor, GovernedClient
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry, snapshot
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, serve_http

from .gateway_support import build_world

pytestmark = pytest.mark.anyio


async def test_http_front_verifies_bearer_identity_and_serves_health(mode: str) -> None:
    world, _ = await build_world()
    app = world.gateway.http_app(auth=world.gateway.bearer_auth("http://127.0.0.1/mcp"))
    async with serve_http(app) as base:
        async with httpx2.AsyncClient() as http:
            health = await http.get(f"{base}/healthz")
            ready = await http.get(f"{base}/readyz")
            anonymous = await http.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert health.status_code == 200
        assert ready.status_code == 200 and ready.json()["upstreams"]["files"]["state"] == "ready"
        assert anonymous.status_code == 401
        token = world.idp.token("agent", tenant="acme")
        async with GovernedClient(f"{base}/mcp", identity=token, mode=mode) as agent:
            result = await agent.call_tool("files_read_file", {"path": "/srv/x"})
            assert not result.is_error
            with pytest.raises(MCPError):
                await agent.call_tool("files_delete_everything", {})
    assert world.files.calls == [("read_file", {"path": "/srv/x"})]
    assert token not in str(world.files.metas)


async def test_readyz_is_503_while_draining() -> None:
    world, _ = await build_world()
    async with serve_http(world.gateway.http_app()) as base:
        world.gateway.draining = True
        async with httpx2.AsyncClient() as http:
            ready = await http.get(f"{base}/readyz")
        world.gateway.draining = False
    assert ready.status_code == 503 and ready.json()["ready"] is False


async def test_an_http_upstream_gets_its_own_credential_and_never_the_agents_token() -> None:
    seen: list[dict[str, str]] = []
    upstream = MCPServer("remote", version="3.0.0")

    @upstream.tool()
    def whoami(ctx: Context) -> str:
        """Report nothing secret."""
        request = ctx.request_context.request
        seen.append(dict(request.headers) if request is not None else {})
        return "ok"

    @upstream.tool()
    def fail(ctx: Context) -> str:
        """An upstream error that quotes the credential it was given."""
        request = ctx.request_context.request
        raise MCPError(-32001, f"rejected {request.headers.get('x-api-key') if request is not None else ''}")

    secret = "remote-key-" + "9" * 20
    idp = IdentityIssuer(audience="mcp://gateway")
    async with serve_http(upstream.streamable_http_app()) as upstream_base:
        manifest = await snapshot(f"{upstream_base}/mcp")
        registry = ServerRegistry(
            [
                {
                    "id": "remote",
                    "owner": "o",
                    "tenants": ["acme"],
                    "workloads": ["*"],
                    "url": f"{upstream_base}/mcp",
                    "server": {"name": "remote", "version": ">=3"},
                    "pin": manifest.model_dump(mode="json", by_alias=True),
                }
            ]
        )
        config = UpstreamConfig.model_validate(
            {
                "id": "remote",
                "namespace": {"prefix": "remote_"},
                "headers": {"X-Tenant-Hint": "acme"},
                "secret_headers": {"X-Api-Key": {"env": "REMOTE_KEY"}},
            }
        )
        policy = Policy.from_dict({"version": 1, "rules": [{"id": "all", "effect": "allow", "tools": ["remote_*"]}]})
        sink = InMemoryAuditSink()
        gateway = Gateway(
            [config],
            registry,
            IdentityMiddleware(idp.verifier()),
            PolicyMiddleware(policy),
            audit=Auditor([sink]),
            environ={"REMOTE_KEY": secret},
        )
        token = idp.token("agent", tenant="acme")
        app = gateway.http_app(auth=gateway.bearer_auth("http://127.0.0.1/mcp"))
        async with serve_http(app) as base, GovernedClient(f"{base}/mcp", identity=token, mode="legacy") as agent:
            listing = await agent.list_tools()
            ok = await agent.call_tool("remote_whoami", {})
            with pytest.raises(MCPError) as failed:
                await agent.call_tool("remote_fail", {})
    assert ok.content and not ok.is_error
    assert seen[0]["x-api-key"] == secret and seen[0]["x-tenant-hint"] == "acme"
    assert token not in json.dumps(seen)
    assert "authorization" not in seen[0]
    assert secret not in failed.value.message and "[redacted]" in failed.value.message
    assert secret not in listing.model_dump_json() + ok.model_dump_json()
    assert secret not in json.dumps([e.model_dump(mode="json") for e in sink.events])
