"""Identity binding: a server that accepts SPIFFE workloads of one trust domain and OIDC tokens
of one issuer; agents present each, and a token from an unknown issuer is refused.

The trust domain's JWT bundle and the issuer's discovery document + JWKS are served on
127.0.0.1 by the test issuers of ``mcpgov.testing`` (stand-ins for SPIRE and an OIDC provider).

Run:  python examples/identity_workloads.py   (exits non-zero if anything is not as expected)
"""

from __future__ import annotations

import sys

import anyio
from mcp import MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, GovContext, GovernedClient, Hooks, govern
from mcpgov.identity import (
    AcceptPolicy,
    IdentityMiddleware,
    IdentityVerifier,
    OIDCTrust,
    RemoteKeys,
    SpiffeTrustDomain,
)
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, SpiffeIssuer

AUDIENCE = "mcp://reports"


def build_server(bundle_url: str, oidc_url: str) -> tuple[MCPServer, InMemoryAuditSink]:
    verifier = IdentityVerifier(
        SpiffeTrustDomain(
            "prod.example.org",
            audience=AUDIENCE,
            bundle=RemoteKeys(f"{bundle_url}/jwks.json"),
            tenant_pattern="spiffe://prod.example.org/tenant/{tenant}/**",
        ),
        OIDCTrust(oidc_url, audience=AUDIENCE, keys=RemoteKeys(discovery=oidc_url), tenant_claim="tenant"),
    )
    identity = IdentityMiddleware(verifier, accept=AcceptPolicy(static_keys=False))
    server = MCPServer("reports")
    hooks = Hooks()

    @server.tool()
    def monthly_report(month: str) -> str:
        return f"report for {month}"

    @hooks.tool("monthly_report")
    def same_tenant_only(ctx: GovContext) -> Decision:
        # ctx.principal and ctx.tenant come from the verified identity, never from arguments.
        if ctx.tenant == "acme":
            return Decision.allow("acme-reports")
        return Decision.deny("acme-reports", "only acme reads these reports", "wrong_tenant")

    sink = InMemoryAuditSink()
    govern(server, identity, hooks, audit=sink)
    return server, sink


async def main() -> int:
    spire = SpiffeIssuer("prod.example.org", audience=AUDIENCE)
    login = IdentityIssuer(issuer=None, audience=AUDIENCE)  # its URL is where it is served
    stranger = IdentityIssuer("https://unknown.example", audience=AUDIENCE)
    failures: list[str] = []
    async with spire.serve() as bundle_url, login.serve() as oidc_url:
        server, sink = build_server(bundle_url, oidc_url)
        agents = {
            "spiffe workload": spire.svid("/tenant/acme/agent/reporter"),
            "oidc workload": login.token("reporting-bot", tenant="acme", act={"sub": "alice@acme"}),
            "unknown issuer": stranger.token("intruder", tenant="acme"),
        }
        for name, token in agents.items():
            async with GovernedClient(server, identity=token) as agent:
                try:
                    result = await agent.call_tool("monthly_report", {"month": "2026-07"})
                    text = getattr(result.content[0], "text", "")
                    print(f"{name:<16} -> allowed: {text}")
                    if name == "unknown issuer":
                        failures.append("a token from an unknown issuer was accepted")
                except MCPError as exc:
                    print(f"{name:<16} -> refused: {exc.error.message} (code {exc.error.code})")
                    if name != "unknown issuer":
                        failures.append(f"{name} was refused")
        print("\naudit:")
        for event in sink.events:
            print(f"  {event.type:<18} {event.effect or '':<6} {event.principal or '-':<60} {event.reason}")
        refusal = [e for e in sink.decisions() if e.effect == "deny"]
        if [e.reason for e in refusal] != ["unknown_issuer"]:
            failures.append(f"expected one unknown_issuer refusal, got {[e.reason for e in refusal]}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
