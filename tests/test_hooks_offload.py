"""A synchronous hook that blocks cannot stall other sessions beyond its deadline when offloaded."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, GovContext, Hooks, govern
from mcpgov.testing import InMemoryAuditSink

pytestmark = pytest.mark.anyio


async def test_an_offloaded_sync_hook_that_blocks_is_denied_at_its_deadline_and_others_proceed(mode: str) -> None:
    server = MCPServer("s")
    sink = InMemoryAuditSink()
    hooks = Hooks(deadline=0.2, offload=True)
    release = threading.Event()

    @hooks.tool("slow")
    def blocks(ctx: GovContext) -> Decision:
        release.wait(5.0)  # a hook stuck on a slow dependency
        return Decision.allow("late")

    @hooks.tool("fast")
    def quick(ctx: GovContext) -> Decision:
        return Decision.allow("quick")

    @server.tool()
    def slow() -> str:
        return "slow ran"

    @server.tool()
    def fast() -> str:
        return "fast ran"

    govern(server, hooks, audit=sink)
    finished: list[float] = []
    async with Client(server, mode=mode) as stuck, Client(server, mode=mode) as other:
        start = time.perf_counter()

        async def call_slow() -> None:
            with pytest.raises(MCPError):
                await stuck.call_tool("slow", {})
            finished.append(time.perf_counter() - start)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call_slow)
            await anyio.sleep(0.05)
            result = await other.call_tool("fast", {})
            fast_done = time.perf_counter() - start
        release.set()
    assert result.is_error is False
    assert fast_done < 2.0  # served while the slow hook was still blocked (inline it would wait 5 s)
    assert finished and finished[0] < 2.0  # denied at the deadline, not when the hook returned
    refusal = [e for e in sink.decisions() if e.effect == "deny"]
    assert [(e.target, e.reason) for e in refusal] == [("slow", "authoriser_timeout")]
