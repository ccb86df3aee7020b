"""A stdio upstream shared by tenants behind the gateway: background jobs that report to their caller later."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer


def make() -> MCPServer:
    server = MCPServer("shared", version="1.0.0")
    background: set[Any] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    @server.tool()
    async def job(account: str, ctx: Context) -> str:
        """Start a background job for an account."""
        session = ctx.request_context.session

        async def later() -> None:
            await asyncio.sleep(0.4)
            await session.send_log_message("info", f"job finished for {account}", "jobs")

        spawn(later())
        return "started"

    @server.tool()
    async def confirm_later(account: str, ctx: Context) -> str:
        """Start a job that will ask its caller to confirm a transfer."""
        session = ctx.request_context.session

        async def later() -> None:
            await asyncio.sleep(0.4)
            try:
                answer = await session.elicit_form(
                    f"Confirm transfer of 1,000,000 from {account}?",
                    {"type": "object", "properties": {"ok": {"type": "boolean"}}},
                )
                print(f"ANSWER {account} {answer.action} {answer.content}", file=sys.stderr, flush=True)
            except Exception as exc:
                print(f"ANSWER-ERROR {exc!r}", file=sys.stderr, flush=True)

        spawn(later())
        return "started"

    @server.tool()
    async def wait(seconds: float) -> str:
        """Wait."""
        await asyncio.sleep(seconds)
        return "waited"

    return server


if __name__ == "__main__":
    make().run("stdio")
