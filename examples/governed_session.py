"""A governed MCP session, end to end: identity, policy, credentials, approval and audit.

A release-tools server serves two tenants. Every request must carry a verified workload
identity; a policy decides at request time; each call carries a short-lived credential
minted for the task; a deploy waits for a human; everything lands in a hash-chained audit
log, which is verified at the end.

* the acme release agent lists tools, reads a file of its own tenant, is refused a path
  outside it, and deploys after a release manager approves that exact deploy;
* when its task ends, every credential minted for it is revoked;
* a globex agent sees nothing and may do nothing on acme's server;
* an agent with no identity is refused before anything is decided.

Run:  python examples/governed_session.py   (exits non-zero if anything behaves unexpectedly)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import anyio
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import AuditEvent, Auditor, GovernedClient, Principal, govern
from mcpgov.approval import ApprovalMiddleware, ApprovalRequest, CallbackApprover
from mcpgov.audit import JsonlSink, verify_chain
from mcpgov.credentials import (
    ClientCredentials,
    CredentialIssuer,
    CredentialMiddleware,
    IssuerTokenSource,
    SigningKeySet,
)
from mcpgov.identity import IdentityMiddleware
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

SERVER = "mcp://release-tools"

POLICY = """
version: 1
name: release-tools
rules:
  - id: acme-reads-own-files
    effect: allow
    tenants: [acme]
    tools: [read_file]
    when:
      arguments:
        path: {path: {under: /srv/acme}}
  - id: acme-sees-deploy
    effect: allow
    actions: [discover]     # listings carry no credential, so no purpose: show the tool...
    tenants: [acme]
    tools: [deploy]
  - id: acme-deploys-with-approval
    effect: require_approval
    tenants: [acme]
    tools: [deploy]
    when:
      purposes: [deploy]    # ...and decide its use on the purpose the signed credential carries
"""


def build_server(idp: IdentityIssuer, issuer: CredentialIssuer, auditor: Auditor) -> MCPServer:
    server = MCPServer("release-tools")

    @server.tool()
    def read_file(path: str) -> str:
        """Read a file of the release workspace."""
        return f"<contents of {path}>"

    @server.tool()
    def deploy(version: str) -> str:
        """Deploy a version to production."""
        return f"deployed {version}"

    def release_manager(request: ApprovalRequest) -> bool:
        print(f"  release manager is asked: {request.describe()}")
        return request.target == "deploy" and request.purpose == "deploy"

    govern(
        server,
        IdentityMiddleware(idp.verifier()),  # who is calling, and for which tenant
        CredentialMiddleware(issuer.verifier(SERVER)),  # the call's short-lived credential
        ApprovalMiddleware(CallbackApprover(release_manager, name="rita@acme.example")),
        PolicyMiddleware(Policy.from_yaml(POLICY)),  # the decision
        audit=auditor,
    )
    return server


def show(event: AuditEvent) -> str:
    who = f"{event.principal or '-'} ({event.tenant})" if event.tenant else event.principal or "-"
    fields = [f"{event.type:<19}", f"{who:<40}", f"{event.target or '-':<10}"]
    for name in ("effect", "outcome", "rule", "reason", "approver", "task_id", "credential_id"):
        value = getattr(event, name)
        if value:
            fields.append(f"{name}={value}")
    return "  ".join(fields)


async def acme_release(
    server: MCPServer, idp: IdentityIssuer, credentials: ClientCredentials, problems: list[str]
) -> None:
    """The acme release agent: reads in its tenant, is refused outside it, deploys with approval."""
    release_bot = Principal(issuer="https://idp.example", subject="release-bot", tenant="acme")
    token = idp.token("release-bot", tenant="acme")
    async with GovernedClient(server, credentials, identity=token, principal=release_bot) as agent:
        async with agent.task("release-42", purpose="deploy") as task:
            tools = sorted(t.name for t in (await agent.list_tools()).tools)
            print(f"acme release-bot sees: {tools}")
            if tools != ["deploy", "read_file"]:
                problems.append(f"acme saw {tools}")
            result = await agent.call_tool("read_file", {"path": "/srv/acme/CHANGELOG.md"})
            print(f"read_file /srv/acme/CHANGELOG.md -> {result.content[0].text}")  # type: ignore[union-attr]
            try:
                await agent.call_tool("read_file", {"path": "/srv/acme/../globex/secrets"})
                problems.append("a path outside the tenant's folder was read")
            except MCPError as refused:
                print(f"read_file /srv/acme/../globex/secrets -> refused ({refused.code} {refused.message})")
            deployed = await agent.call_tool("deploy", {"version": "2.4.0"})
            print(f"deploy 2.4.0 -> {deployed.content[0].text}")  # type: ignore[union-attr]
        print(f"task over: {len(task.credential_ids)} credentials minted for it, all revoked")


async def globex_intruder(
    server: MCPServer, idp: IdentityIssuer, credentials: ClientCredentials, problems: list[str]
) -> None:
    """An agent of the other tenant: sees nothing, may do nothing."""
    rival = idp.token("release-bot", tenant="globex")
    rival_principal = Principal(issuer="https://idp.example", subject="release-bot", tenant="globex")
    async with GovernedClient(server, credentials, identity=rival, principal=rival_principal) as intruder:
        seen = [t.name for t in (await intruder.list_tools()).tools]
        print(f"globex release-bot sees: {seen}")
        if seen:
            problems.append(f"globex saw {seen}")
        try:
            async with intruder.task("raid-1", purpose="deploy"):
                await intruder.call_tool("deploy", {"version": "6.6.6"})
            problems.append("a globex agent deployed on acme's server")
        except MCPError as refused:
            print(f"globex deploy -> refused ({refused.code} {refused.message})")


async def main(workdir: Path) -> list[str]:
    problems: list[str] = []
    log = workdir / "audit.jsonl"
    trail = InMemoryAuditSink()
    auditor = Auditor([JsonlSink(log), trail])  # one trail for the server and the credential issuer
    idp = IdentityIssuer("https://idp.example", audience=SERVER)
    keys = SigningKeySet.generate("Ed25519")
    issuer = CredentialIssuer("https://credentials.example", keys, max_ttl=120, audit=auditor)
    server = build_server(idp, issuer, auditor)
    credentials = ClientCredentials(IssuerTokenSource(issuer), audience=SERVER, ttl=60)

    await acme_release(server, idp, credentials, problems)
    await globex_intruder(server, idp, credentials, problems)

    async with Client(server) as anonymous:
        try:
            await anonymous.call_tool("read_file", {"path": "/srv/acme/x"})
            problems.append("an anonymous call was served")
        except MCPError as refused:
            print(f"no identity -> refused ({refused.code} {refused.message})")

    print("\naudit trail:")
    for event in trail.events:
        print("  " + show(event))
    report = verify_chain([log])
    print(f"\nhash-chained log {log.name}: {len(trail.events)} events, intact={report.ok}")
    if not report.ok:
        problems.append("the audit log does not verify")
    if not any(e.type == "credential.revoked" for e in trail.events):
        problems.append("the task's credentials were not revoked")
    approvals = [e.approver for e in trail.events if e.type == "approval.granted"]
    if approvals != ["rita@acme.example"]:
        problems.append(f"approvals recorded: {approvals}")
    if "eyJ" in log.read_text():  # every JWT (identity token or credential) starts with this
        problems.append("a token reached the audit log")
    return problems


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        found = anyio.run(main, Path(tmp))
    for problem in found:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
