"""The gateway over Streamable HTTP: bearer identity, health and readiness, subscriptions."""

from __future__ import annotations

import httpx2
import pytest
from mcp import MCPError

from mcpgov import GovernedClient
from mcpgov.testing import serve_http

from .gateway_support import build_world

pytestmark = pytest.mark.anyio


async def test_http_front_verifies_bearer_identity_and_serves_health() -> None:
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
        async with GovernedClient(f"{base}/mcp", identity=token, mode="legacy") as agent:
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
