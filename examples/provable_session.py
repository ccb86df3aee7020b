"""Provable session: an agent runs a release task with per-tool credentials; the server writes a
signed, hash-chained audit log; `prove` then shows the task was least-privilege, tenant-bound
and time-limited, and a planted over-broad credential fails least-privilege.

Runs in-process, writes only under a temporary directory, exits non-zero if anything is off.

Run:  python examples/provable_session.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, cast

import anyio
from click.testing import CliRunner
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import META_CREDENTIAL, Auditor, Decision, GovContext, GovernedClient, Hooks, Principal, govern
from mcpgov.audit import JsonlSink, ProofScope, QueuedSink, prove
from mcpgov.cli import main as mcpgov_cli
from mcpgov.credentials import (
    ClientCredentials,
    CredentialIssuer,
    CredentialMiddleware,
    IssuerTokenSource,
    SigningKeySet,
    open_task,
)

AUDIENCE = "https://deploy.example"


async def run(directory: Path) -> list[str]:
    problems: list[str] = []
    key = directory / "audit-key.jwks"  # what `mcpgov keys generate` writes
    CliRunner().invoke(mcpgov_cli, ["keys", "generate", "--out", str(key)])
    log = directory / "audit.jsonl"
    auditor = Auditor([QueuedSink(JsonlSink(log, checkpoint_key=key, checkpoint_every=50))], strict=True)
    issuer = CredentialIssuer("https://issuer.example", SigningKeySet.generate("Ed25519"), audit=auditor)

    server = MCPServer("deployer")
    hooks = Hooks()

    @server.tool()
    def run_tests(ref: str) -> str:
        return f"tests passed for {ref}"

    @server.tool()
    def deploy(version: str) -> str:
        return f"deployed {version}"

    @hooks.tool("*")
    def release_bot_only(ctx: GovContext) -> Decision:
        return Decision.allow("release-bot")

    govern(server, CredentialMiddleware(issuer.verifier(AUDIENCE)), hooks, audit=auditor)
    agent = Principal(issuer="https://id.example", subject="release-bot", tenant="acme")
    credentials = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE, ttl=120)
    async with GovernedClient(server, credentials, principal=agent) as client, open_task(client, "release-7"):
        await client.call_tool("run_tests", {"ref": "v7"})
        await client.call_tool("deploy", {"version": "7.0"})
    # A credential for more than it is used for, used once.
    wide = await issuer.mint(agent, audience=AUDIENCE, tools=["run_tests", "deploy"], task_id="hotfix-1", ttl=60)
    async with Client(server) as plain:
        await plain.call_tool("run_tests", {"ref": "hotfix"}, meta=cast(Any, {META_CREDENTIAL: wide.token}))
    await auditor.aclose()

    clean = prove([log], ProofScope(task="release-7"), public_key=key)
    print(f"release-7: chain {'intact and sealed' if clean.chain.sealed else 'NOT sealed'}")
    for verdict in clean.verdicts:
        print(f"  {verdict.name}: {'PROVEN' if verdict.holds else 'FAILED'}  ({verdict.evidence[0]})")
    if not clean.proven:
        problems.append("the clean task was not proven")
    hotfix = prove([log], ProofScope(task="hotfix-1"), public_key=key)
    (least,) = [v for v in hotfix.verdicts if v.name == "least-privilege"]
    print(f"hotfix-1: least-privilege {'PROVEN' if least.holds else 'FAILED'}: {least.evidence[0]}")
    if least.holds or "deploy" not in least.evidence[0]:
        problems.append("the over-broad credential was not found")
    return problems


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        failures = anyio.run(run, Path(tmp))
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    sys.exit(1 if failures else 0)
