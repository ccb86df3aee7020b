"""``@hooks.guard`` on a FastMCP server: a tool that runs a guarded function under a name its
guard does not name (renamed, mounted under a namespace, transformed) is refused on use."""

from __future__ import annotations

from typing import Any

import pytest

fastmcp = pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")

from fastmcp import FastMCP  # noqa: E402
from fastmcp.tools import Tool  # noqa: E402
from fastmcp.tools.function_tool import FunctionTool  # noqa: E402
from mcp import Client, MCPError  # noqa: E402

from mcpgov import Decision, GovContext, Hooks, govern  # noqa: E402
from mcpgov._fastmcp import sdk_server  # noqa: E402
from mcpgov.testing import InMemoryAuditSink  # noqa: E402

pytestmark = pytest.mark.anyio


def frozen(ctx: GovContext) -> Decision:
    return Decision.deny("deploys-frozen", "deploys are frozen")


def build(spelling: str, ran: list[str]) -> tuple[FastMCP[Any], str, InMemoryAuditSink]:
    """A governed FastMCP server every tool of which is allowed but ``deploy``, whose guard denies;
    the guarded function is also served as the returned tool name."""
    server: FastMCP[Any] = FastMCP("deployer")
    hooks = Hooks()
    hooks.tool("*")(lambda ctx: Decision.allow("open"))

    @hooks.guard(frozen)
    def deploy() -> str:
        ran.append("deploy")
        return "deployed"

    if spelling == "renamed":
        server.tool(deploy, name="deploy_prod")
        name = "deploy_prod"
    elif spelling == "mounted":
        child: FastMCP[Any] = FastMCP("child")
        child.tool(deploy)
        server.mount(child, namespace="ops")
        name = "ops_deploy"
    elif spelling == "transformed":
        server.add_tool(Tool.from_tool(FunctionTool.from_function(deploy), name="ship"))
        name = "ship"
    else:
        raise AssertionError(spelling)
    server.tool(deploy)  # also served under the name it is guarded as
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    return server, name, sink


@pytest.mark.parametrize("spelling", ["renamed", "mounted", "transformed"])
async def test_a_guarded_function_served_under_another_name_is_refused(mode: str, spelling: str) -> None:
    ran: list[str] = []
    server, name, sink = build(spelling, ran)
    async with Client(sdk_server(server), mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool(name, {})
        assert caught.value.error.code == -32602
        with pytest.raises(MCPError) as guarded:
            await client.call_tool("deploy", {})  # where the guard is asked, it denies
        assert guarded.value.error.code == -32003
    assert ran == []
    reasons = {(e.target, e.reason) for e in sink.decisions()}
    assert (name, "guard_not_applied") in reasons
