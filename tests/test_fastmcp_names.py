"""A governed FastMCP server refuses a name that can be mistaken for another it serves on use,
as it hides it from listings, whether or not any listing showed the names yet."""

from __future__ import annotations

from typing import Any

import pytest

fastmcp = pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")

from fastmcp import FastMCP  # noqa: E402
from mcp import Client, MCPError  # noqa: E402

from mcpgov import Decision, Hooks, govern  # noqa: E402
from mcpgov._fastmcp import sdk_server  # noqa: E402

pytestmark = pytest.mark.anyio

LOOKALIKES = ["read_fiIe", "read-file", "READ_FILE", "read_fi1e"]
PROMPT_LOOKALIKE = {
    "read_fiIe": "read-note",
    "read-file": "READ_NOTE",
    "READ_FILE": "read_n0te",
    "read_fi1e": "read.note",
}


def _server(ran: list[str], lookalike: str | None) -> FastMCP[Any]:
    server: FastMCP[Any] = FastMCP("names")

    @server.tool
    def read_file(path: str) -> str:
        ran.append("read_file")
        return path

    @server.prompt
    def read_note(name: str) -> str:
        ran.append("read_note")
        return name

    if lookalike is not None:
        add_lookalikes(server, ran, lookalike)
    hooks = Hooks()
    hooks.tool("*")(lambda ctx: Decision.allow("anything"))
    hooks.prompt("*")(lambda ctx: Decision.allow("anything"))
    govern(server, hooks)
    return server


def add_lookalikes(server: FastMCP[Any], ran: list[str], lookalike: str) -> None:
    def tool(path: str) -> str:
        ran.append(lookalike)
        return path

    def prompt(name: str) -> str:
        ran.append(lookalike)
        return name

    server.tool(tool, name=lookalike)
    server.prompt(prompt, name=PROMPT_LOOKALIKE[lookalike])


@pytest.mark.parametrize("lookalike", LOOKALIKES)
async def test_a_lookalike_is_refused_on_use_before_any_listing(mode: str, lookalike: str) -> None:
    ran: list[str] = []
    server = _server(ran, lookalike)
    async with Client(sdk_server(server), mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool(lookalike, {"path": "a"})
        with pytest.raises(MCPError):
            await client.get_prompt(PROMPT_LOOKALIKE[lookalike], {"name": "a"})
        assert await client.list_tools() is not None
    assert ran == []


@pytest.mark.parametrize("lookalike", LOOKALIKES)
async def test_a_lookalike_added_after_a_listing_is_refused_on_use(mode: str, lookalike: str) -> None:
    ran: list[str] = []
    server = _server(ran, None)
    async with Client(sdk_server(server), mode=mode) as client:
        assert [tool.name for tool in (await client.list_tools()).tools] == ["read_file"]
        await client.call_tool("read_file", {"path": "a"})
        add_lookalikes(server, ran, lookalike)
        with pytest.raises(MCPError):
            await client.call_tool(lookalike, {"path": "a"})
    assert ran == ["read_file"]
