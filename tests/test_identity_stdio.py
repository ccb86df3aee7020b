"""A real stdio server process: identity from the process environment or ``_meta``; none is refused.

Run as a script, this module is that server (its issuer's public JWKS comes in ``TEST_JWKS``).
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from mcp import MCPError
from mcp.client.stdio import StdioServerParameters
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, GovContext, GovernedClient, Hooks, govern
from mcpgov.identity import IdentityMiddleware, IdentityVerifier, OIDCTrust, StaticKeys
from mcpgov.testing import IdentityIssuer

pytestmark = pytest.mark.anyio

ENV_TOKEN = "MCPGOV_IDENTITY_TOKEN"


def serve() -> None:
    verifier = IdentityVerifier(
        OIDCTrust(
            "https://issuer.test",
            audience="mcp://test-server",
            keys=StaticKeys(json.loads(os.environ["TEST_JWKS"])),
            algorithms=("ES256",),
            tenant_claim="tenant",
        )
    )
    server = MCPServer("stdio-ids")

    @server.tool()
    def whoami() -> str:
        return "ran"

    hooks = Hooks()

    @hooks.tool("whoami")
    def allow(ctx: GovContext) -> Decision:
        assert ctx.principal is not None
        return Decision.allow("who", reason=ctx.principal.subject)

    govern(server, IdentityMiddleware(verifier, env=ENV_TOKEN), hooks)
    server.run("stdio")


def _params(issuer: IdentityIssuer, token: str | None) -> StdioServerParameters:
    env = {"TEST_JWKS": json.dumps(issuer.jwks()), "PATH": os.environ.get("PATH", "")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if token is not None:
        env[ENV_TOKEN] = token
    return StdioServerParameters(command=sys.executable, args=[__file__], env=env)


async def test_stdio_server_takes_identity_from_its_environment() -> None:
    issuer = IdentityIssuer()
    async with GovernedClient(_params(issuer, issuer.token("spawned-agent"))) as client:
        result = await client.call_tool("whoami", {})
    assert result.is_error is False


async def test_stdio_server_without_identity_refuses_never_anonymous() -> None:
    issuer = IdentityIssuer()
    async with GovernedClient(_params(issuer, None)) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("whoami", {})
        assert caught.value.code == -32001
        # The same process accepts a token presented per request in _meta.
    async with GovernedClient(_params(issuer, None), identity=issuer.token()) as client:
        assert (await client.call_tool("whoami", {})).is_error is False


if __name__ == "__main__":
    serve()
