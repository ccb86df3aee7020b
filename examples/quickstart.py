"""A governed MCP session, end to end, in one process.

The server has a harmless tool and a dangerous one. A per-tool hook lets the caller read
and refuses the dangerous tool. The agent lists the tools (it sees one), calls both (one
result, one clean denial) and the audit trail of the whole session is printed.

Run:  python examples/quickstart.py
"""

from __future__ import annotations

import anyio
from mcp import MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import AuditEvent, Decision, GovContext, GovernedClient, Hooks, govern

# --- the server author's side -------------------------------------------------------------
server = MCPServer("repository-tools")
hooks = Hooks(deadline=0.5)


@hooks.tool("read_file")
def anyone_may_read(ctx: GovContext) -> Decision:
    return Decision.allow("readers", "reading the repository is harmless")


def only_release_managers(ctx: GovContext) -> Decision:
    return Decision.deny("release-managers-only", "deleting a repository needs the release-manager role")


@server.tool()
def read_file(path: str) -> str:
    """Read a file of the repository."""
    return f"<contents of {path}>"


@hooks.guard(only_release_managers)
@server.tool()
def delete_repository(name: str) -> str:
    """Delete a whole repository."""
    raise SystemExit("never reached: the governed server refuses before this runs")


trail: list[AuditEvent] = []
govern(server, hooks, audit=trail.append)


# --- the agent developer's side -----------------------------------------------------------
async def main() -> None:
    async with GovernedClient(server) as agent:
        listed = [tool.name for tool in (await agent.list_tools()).tools]
        print(f"tools the agent can see: {listed}")

        result = await agent.call_tool("read_file", {"path": "README.md"})
        print(f"read_file -> {result.content[0].text}")  # type: ignore[union-attr]

        try:
            await agent.call_tool("delete_repository", {"name": "mcpgov"})
        except MCPError as refused:
            print(f"delete_repository -> refused: code={refused.code} message={refused.message!r}")

    print("\naudit trail (server side):")
    for event in trail:
        detail = event.rule or (f"hidden={list(event.hidden)}" if event.type == "list.filtered" else "")
        print(
            f"  {event.type:<14} {event.method:<11} {event.target or '-':<18} "
            f"{event.effect or event.outcome or '':<9} {detail} {event.reason or ''}"
        )
    # CI runs this example: it must fail loudly if the session was not governed as shown.
    if listed != ["read_file"] or [e.effect for e in trail if e.type == "decision"] != ["allow", "deny"]:
        raise SystemExit("the session was not governed as expected")


if __name__ == "__main__":
    anyio.run(main)
