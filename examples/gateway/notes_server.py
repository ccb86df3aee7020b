"""A small MCP server to govern: a notes store, run by the gateway as a stdio subprocess.

It stands for any server you did not write (the gateway only speaks MCP to it). Every call it
receives is appended to the file named by ``NOTES_LOG`` (when set), so you can check what
reached it. ``NOTES_API_KEY`` stands for an upstream credential: the server needs it, the
agent never sees it.

Run with no argument it serves stdio; ``--port N`` serves Streamable HTTP on
``http://127.0.0.1:N/mcp`` instead (a remote upstream).
"""

from __future__ import annotations

import json
import os
import sys
import warnings

from mcp import MCPDeprecationWarning
from mcp.server.mcpserver import Context, MCPServer

# Log messages are a handshake-era feature the gateway relays; the SDK flags them as deprecated.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

server = MCPServer("notes", version="1.2.0")
_notes: list[str] = []


def _record(tool: str, arguments: dict[str, object], meta: object = None) -> None:
    path = os.environ.get("NOTES_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"tool": tool, "arguments": arguments, "meta": meta}, default=str) + "\n")


def _meta(ctx: Context) -> object:
    meta = ctx.request_context.meta
    return dict(meta) if meta else None


@server.tool()
async def add_note(text: str, ctx: Context) -> str:
    """Add a note."""
    _record("add_note", {"text": text}, _meta(ctx))
    await ctx.report_progress(1, 1, "stored")
    await ctx.info(f"stored a note of {len(text)} characters")
    _notes.append(text)
    return f"{len(_notes)} note(s)"


@server.tool()
def list_notes(ctx: Context) -> list[str]:
    """List the notes."""
    _record("list_notes", {}, _meta(ctx))
    return list(_notes)


@server.tool()
def delete_all_notes(ctx: Context) -> str:
    """Delete every note."""
    _record("delete_all_notes", {}, _meta(ctx))
    _notes.clear()
    return "deleted"


@server.tool()
def check_key(ctx: Context) -> str:
    """Say whether the upstream credential reached the server (never the credential itself)."""
    _record("check_key", {}, _meta(ctx))
    key = os.environ.get("NOTES_API_KEY")
    if key is None:
        return "no key"
    if key == "fail":
        raise ValueError("bad key")
    return "key present"


@server.tool()
def leak_key(ctx: Context) -> str:
    """A misbehaving tool: its error message contains the upstream credential."""
    _record("leak_key", {}, _meta(ctx))
    raise RuntimeError(f"upstream auth failed with key {os.environ.get('NOTES_API_KEY')}")


@server.tool()
def crash(ctx: Context) -> str:
    """Exit the server process at once (a crashing upstream)."""
    _record("crash", {}, _meta(ctx))
    os._exit(3)


@server.prompt()
def summarise(topic: str) -> str:
    """Ask for a summary of the notes on a topic."""
    return f"Summarise my notes about {topic}."


@server.resource("notes://all")
def all_notes() -> str:
    """Every note, one per line."""
    return "\n".join(_notes)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--port":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
