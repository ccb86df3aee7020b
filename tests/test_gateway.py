"""The gateway end to end over real SDK sessions (both protocol modes on the front)."""

from __future__ import annotations

import pytest
from mcp import MCPError
from mcp_types import ElicitRequestParams, ElicitResult, TextContent

from .gateway_support import build_world

pytestmark = pytest.mark.anyio


async def test_allowed_call_is_forwarded_and_denied_call_never_reaches_upstream(mode: str) -> None:
    world, _ = await build_world()
    async with world.gateway, world.agent(mode) as agent:
        names = sorted(t.name for t in (await agent.list_tools()).tools)
        assert names == ["clock_ask", "clock_echo", "clock_now", "files_read_file", "files_slow"]
        result = await agent.call_tool("files_read_file", {"path": "/srv/a.txt"})
        assert isinstance(result.content[0], TextContent)
        assert result.content[0].text == "contents of /srv/a.txt"
        with pytest.raises(MCPError) as refused:
            await agent.call_tool("files_delete_everything", {})
        assert refused.value.code == -32003
        with pytest.raises(MCPError):
            await agent.call_tool("clock_echo", {"text": "forbidden"})
    assert world.files.calls == [("read_file", {"path": "/srv/a.txt"})]
    assert world.clock.calls == []


async def test_progress_and_logging_come_back_through_the_gateway(mode: str) -> None:
    world, _ = await build_world()
    progress: list[tuple[float, float | None, str | None]] = []
    logs: list[object] = []

    async def on_log(params: object) -> None:
        logs.append(getattr(params, "data", None))

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with world.gateway, world.agent(mode, logging_callback=on_log, log_level="debug") as agent:
        await agent.call_tool("files_read_file", {"path": "/srv/a.txt"}, progress_callback=on_progress)
    assert progress == [(1, 2, "half")]
    assert logs == ["reading /srv/a.txt"]


async def test_elicitation_from_an_upstream_reaches_the_agent_and_comes_back(mode: str) -> None:
    """Legacy agents answer an upstream's elicitation; a 2026-07-28 agent has no channel for it: a clean tool error."""
    world, _ = await build_world()
    asked: list[str] = []

    async def answer(context: object, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"answer": "Ada"})

    async with world.gateway, world.agent(mode, elicitation_callback=answer) as agent:
        if mode == "legacy":
            result = await agent.call_tool("clock_ask", {})
            assert asked == ["What is your name?"]
            assert isinstance(result.content[0], TextContent)
            assert result.content[0].text == "answer: Ada"
        else:
            with pytest.raises(MCPError, match="not available through the gateway"):
                await agent.call_tool("clock_ask", {})
            assert asked == []
