"""An agent runs a release task through a governed deploy server with short-lived credentials.

* the issuer signs credentials with a rotating Ed25519 key set;
* the agent's GovernedClient obtains one credential per tool for the task "release-42"
  (purpose "deploy"), bound to the deploy server's audience, its tenant and that tool;
* the server verifies every call's credential and its policy reads the signed purpose;
* when the task ends, everything it minted is revoked: replaying a credential is refused;
* the audit trail (issuer, server and client events) is printed.

Run:  python examples/credentials_task.py   (exits non-zero if anything behaves unexpectedly)
"""

from __future__ import annotations

import sys
from typing import Any, cast

import anyio
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import META_CREDENTIAL, AuditEvent, Decision, GovContext, GovernedClient, Hooks, Principal, govern
from mcpgov.credentials import (
    TASK_BINDING,
    ClientCredentials,
    Credential,
    CredentialIssuer,
    CredentialMiddleware,
    CredentialRequest,
    IssuerTokenSource,
    SigningKeySet,
    open_task,
)

DEPLOY_SERVER = "https://deploy.example"


class RecordingSource(IssuerTokenSource):
    """The in-process issuer, remembering what it handed out (so the example can replay it)."""

    def __init__(self, issuer: CredentialIssuer) -> None:
        super().__init__(issuer)
        self.handed_out: list[Credential] = []

    async def obtain(self, request: CredentialRequest, principal: Principal | None) -> Credential:
        credential = await super().obtain(request, principal)
        self.handed_out.append(credential)
        return credential


def build_server(issuer: CredentialIssuer, trail: list[AuditEvent], deployed: list[str]) -> MCPServer:
    server = MCPServer("deployer")

    @server.tool()
    async def run_tests(ref: str) -> str:
        return f"tests passed for {ref}"

    @server.tool()
    async def deploy(version: str) -> str:
        deployed.append(version)
        return f"deployed {version}"

    hooks = Hooks()

    @hooks.tool("run_tests")
    def tests_are_fine(ctx: GovContext) -> Decision:
        return Decision.allow("ci-may-test")

    @hooks.tool("deploy")
    def deploys_need_the_deploy_purpose(ctx: GovContext) -> Decision:
        # ctx.purpose comes from the verified credential, never from the arguments. Listings
        # carry no credential: the tool is shown, and the purpose is checked when it is used.
        if ctx.action == "discover" or ctx.purpose == "deploy":
            return Decision.allow("deploy-with-purpose")
        return Decision.deny("deploy-with-purpose", "deploys need the deploy purpose", "purpose")

    govern(server, CredentialMiddleware(issuer.verifier(DEPLOY_SERVER)), hooks, audit=trail.append)
    return server


def line(event: AuditEvent) -> str:
    parts = [f"{event.side:6}", f"{event.type:18}"]
    for name in ("target", "effect", "outcome", "rule", "reason", "task_id", "purpose", "credential_id"):
        value = getattr(event, name)
        if value is not None:
            parts.append(f"{name}={value}")
    return "  ".join(parts)


async def main() -> int:
    trail: list[AuditEvent] = []
    deployed: list[str] = []
    issuer = CredentialIssuer(
        "https://issuer.example", SigningKeySet.generate("Ed25519"), max_ttl=300, audit=trail.append
    )
    server = build_server(issuer, trail, deployed)
    agent = Principal(issuer="https://id.example", subject="release-bot", tenant="acme", auth_method="jwt")
    source = RecordingSource(issuer)
    credentials = ClientCredentials(source, audience=DEPLOY_SERVER, ttl=120)
    problems: list[str] = []

    async with GovernedClient(server, credentials, principal=agent, audit=trail.append) as client:
        async with open_task(client, "release-42", purpose="deploy") as task:
            await client.call_tool("run_tests", {"ref": "v1.4.2"})
            await client.call_tool("deploy", {"version": "1.4.2"})
            await client.call_tool("run_tests", {"ref": "v1.4.2-smoke"})  # reuses the run_tests credential
        per_tool = [c for c in source.handed_out if c.id in task.credential_ids and TASK_BINDING not in c.claims.tools]
        if len(per_tool) != 2:
            problems.append(f"expected one credential per tool, got {len(per_tool)}")
        # Outside any task the purpose is missing: policy refuses the deploy.
        try:
            await client.call_tool("deploy", {"version": "6.6.6"})
            problems.append("a deploy without the deploy purpose ran")
        except MCPError as exc:
            print(f"deploy outside the task refused: {exc.message} ({exc.code})")

    # The task is over: its credentials are revoked; replaying one is refused and nothing runs.
    # (The task also minted a task binding for the SDK's own tools/list: it calls nothing.)
    task_credentials = [
        c for c in source.handed_out if c.id in task.credential_ids and TASK_BINDING not in c.claims.tools
    ]
    async with Client(server) as plain:
        for credential in task_credentials:
            tool = credential.claims.tools[0]
            arguments = {"version": "9.9.9"} if tool == "deploy" else {"ref": "replay"}
            try:
                await plain.call_tool(tool, arguments, meta=cast(Any, {META_CREDENTIAL: credential.token}))
                problems.append(f"a revoked credential for {tool} was accepted")
            except MCPError as exc:
                print(f"replayed {tool} credential after the task refused: {exc.message} ({exc.code})")

    if deployed != ["1.4.2"]:
        problems.append(f"unexpected deploys: {deployed}")
    minted = [e for e in trail if e.type == "credential.minted"]
    revoked = [e for e in trail if e.type == "credential.revoked"]
    if len(revoked) < len(task_credentials) + 1:
        problems.append("the task's credentials were not all revoked")
    tokens = [c.token for c in source.handed_out]
    if any(token in event.model_dump_json() for event in trail for token in tokens):
        problems.append("a token reached the audit trail")

    print(f"\naudit trail ({len(trail)} events, {len(minted)} credentials minted, {len(revoked)} revocations):")
    for event in trail:
        print("  " + line(event))
    if problems:
        for problem in problems:
            print(f"PROBLEM: {problem}", file=sys.stderr)
        return 1
    print("\nok: credentials were minted per tool for the task and revoked when it ended")
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
