"""``mcpgov demo``: the quickstart's governed session, end to end, in one process.

The same session as ``examples/quickstart.py``: a server with a harmless tool and a dangerous
one, a per-tool hook that lets the caller read and refuses the dangerous tool; the agent lists
the tools (it sees one), calls both (one result, one clean denial), and the server's audit trail
is printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

__all__ = ["demo", "run_demo"]


async def run_demo(say: Callable[[str], None]) -> bool:
    """Run the governed session, reporting through ``say``; True when it was governed as expected."""
    from mcp import MCPError  # noqa: PLC0415 - the command loads what it uses
    from mcp.server.mcpserver import MCPServer  # noqa: PLC0415

    from mcpgov import AuditEvent, Decision, GovContext, GovernedClient, Hooks, govern  # noqa: PLC0415

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
        raise RuntimeError("never reached: the governed server refuses before this runs")

    trail: list[AuditEvent] = []
    govern(server, hooks, audit=trail.append)

    async with GovernedClient(server) as agent:
        listed = [tool.name for tool in (await agent.list_tools()).tools]
        say(f"tools the agent can see: {listed}")
        result = await agent.call_tool("read_file", {"path": "README.md"})
        say(f"read_file -> {getattr(result.content[0], 'text', '')}")
        try:
            await agent.call_tool("delete_repository", {"name": "mcpgov"})
        except MCPError as refused:
            say(f"delete_repository -> refused: code={refused.code} message={refused.message!r}")

    say("\naudit trail (server side):")
    for event in trail:
        detail = event.rule or (f"hidden={list(event.hidden)}" if event.type == "list.filtered" else "")
        say(
            f"  {event.type:<14} {event.method:<11} {event.target or '-':<18} "
            f"{event.effect or event.outcome or '':<9} {detail} {event.reason or ''}"
        )
    return listed == ["read_file"] and [e.effect for e in trail if e.type == "decision"] == ["allow", "deny"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def demo() -> None:
    """Run a governed MCP session in this process and print its audit trail.

    A server with a harmless and a dangerous tool, governed by a per-tool hook: the agent sees
    one tool, reads a file, is refused the dangerous call. Exit status 1 if the session was
    not governed as shown.
    """
    import anyio  # noqa: PLC0415 - the command loads what it uses

    from mcpgov.policy._cli import terminal  # noqa: PLC0415

    colours = {"allow": "green", "completed": "green", "deny": "red", "refused": "red"}

    def say(line: str) -> None:
        colour = next((c for word, c in colours.items() if f" {word} " in f" {line} "), None)
        click.echo(click.style(line, fg=colour) if colour else line, color=terminal())

    if not anyio.run(run_demo, say):
        click.echo("error: the session was not governed as expected", err=True)
        sys.exit(1)
