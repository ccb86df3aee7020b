"""Cedar reads nested arguments as it reads top-level ones: a forbid on ``context.args.opts.mode``
applies to a value a tool reads as the forbidden one (fullwidth letters, another JSON type), and
a nested path the request does not carry is a Cedar error, which denies."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import govern
from mcpgov.policy import CedarPolicy, PolicyMiddleware

from .policies.support import LookupIdentity, as_

pytestmark = pytest.mark.anyio

CEDAR = """
permit(principal, action, resource == Tool::"run");
@id("no-rm")
forbid(principal, action == Action::"execute", resource == Tool::"run")
  when { context.args.opts.mode == "rm" || ["dd", "mkfs"].contains(context.args.opts.mode) };
@id("no-rm-in-a-list")
forbid(principal, action == Action::"execute", resource == Tool::"run")
  when { context.args.opts has cmds && context.args.opts.cmds.contains("rm") };
@id("no-level-zero")
forbid(principal, action == Action::"execute", resource == Tool::"run")
  when { context.args.opts has level && context.args.opts.level == 0 };
"""


def _server(ran: list[Any]) -> MCPServer:
    server = MCPServer("runner")

    @server.tool()
    def run(opts: dict[str, Any]) -> str:
        ran.append(opts)
        return "ran"

    govern(server, LookupIdentity(), PolicyMiddleware(CedarPolicy(CEDAR)))
    return server


async def _admitted(client: Client, opts: Any) -> bool:
    try:
        result = await client.call_tool("run", {"opts": opts}, meta=as_("alice"))
    except MCPError as exc:
        code = exc.code
    else:
        return result.is_error is False
    assert code == -32003
    return False


@pytest.mark.parametrize(
    "opts",
    [
        {"mode": "rm"},
        {"mode": "\uff52\uff4d"},  # fullwidth
        {"mode": "\uff44\uff44"},
        {"mode": "ls", "level": 0},
        {"mode": "ls", "level": "0"},
        {"mode": "ls", "level": False},
        {"mode": "ls", "level": 0.0},
        {"mode": "ls", "cmds": ["ls", "rm"]},
        {"mode": "ls", "cmds": ["ls", "\uff52\uff4d"]},
        {"level": 1},  # no mode: the forbid cannot be evaluated
        {},
    ],
    ids=ascii,
)
async def test_a_nested_forbidden_value_in_any_spelling_is_denied(opts: dict[str, Any], mode: str) -> None:
    ran: list[Any] = []
    server = _server(ran)
    async with Client(server, mode=mode) as client:
        assert not await _admitted(client, opts)
        assert await _admitted(client, {"mode": "ls", "level": 1})
    assert ran == [{"mode": "ls", "level": 1}]
