"""A FastMCP 4 server, governed.

The server is written the FastMCP way (``@mcp.tool``, ``@mcp.resource``, ``@mcp.prompt``);
``govern(mcp, hooks)`` puts every request through mcpgov. ``hooks.guard`` sits next to
FastMCP's decorator. The example starts the server over stdio in a subprocess, as an MCP host
would, connects with the SDK client in both protocol modes, and shows what a caller sees.

Run:  python examples/fastmcp_server.py          (client and server)
      python examples/fastmcp_server.py --stdio  (only the server, on stdio)
Needs: pip install 'mcpgov[fastmcp]'
"""

from __future__ import annotations

import os
import sys

import anyio
from fastmcp import FastMCP
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import get_default_environment

from mcpgov import Decision, GovContext, Hooks, govern

mcp = FastMCP("notes")
hooks = Hooks(deadline=0.5)
NOTES = {"welcome": "Hello from a governed FastMCP server."}


@hooks.tool("read_*")
@hooks.resource("notes://*")
@hooks.prompt("summarise")
def readers(ctx: GovContext) -> Decision:
    return Decision.allow("readers")


@mcp.tool
def read_note(name: str) -> str:
    """Read one note."""
    return NOTES.get(name, "(no such note)")


@hooks.guard(lambda ctx: Decision.deny("notes-are-read-only", "this deployment is read-only"))
@mcp.tool
def delete_note(name: str) -> str:
    """Delete a note (refused by policy here: it never runs)."""
    NOTES.pop(name, None)
    return f"deleted {name}"


@mcp.resource("notes://welcome")
def welcome() -> str:
    return NOTES["welcome"]


@mcp.prompt
def summarise(name: str) -> str:
    return f"Summarise the note {name!r}."


governed = govern(mcp, hooks)


async def show(mode: str) -> None:
    env = get_default_environment()
    if "PYTHONPATH" in os.environ:  # a checkout run with PYTHONPATH=src: the server needs it too
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    params = StdioServerParameters(command=sys.executable, args=[__file__, "--stdio"], env=env)
    async with Client(params, mode=mode) as client:
        tools = [tool.name for tool in (await client.list_tools()).tools]
        print(f"[{mode}] tools listed: {tools}")
        result = await client.call_tool("read_note", {"name": "welcome"})
        print(f"[{mode}] read_note ->", result.content[0].text if result.content else None)  # type: ignore[union-attr]
        try:
            await client.call_tool("delete_note", {"name": "welcome"})
        except MCPError as exc:
            print(f"[{mode}] delete_note refused: {exc.error.code} {exc.error.message}")
        else:
            raise SystemExit("delete_note should have been refused")
        resource = await client.read_resource("notes://welcome")
        print(f"[{mode}] notes://welcome ->", resource.contents[0].text)  # type: ignore[union-attr]
        if tools != ["read_note"]:
            raise SystemExit(f"unexpected listing {tools}")


async def main() -> None:
    for mode in ("auto", "legacy"):
        await show(mode)


if __name__ == "__main__":
    if "--stdio" in sys.argv:
        mcp.run(transport="stdio", show_banner=False)
    else:
        anyio.run(main)
