"""The gateway end to end over real SDK sessions (both protocol modes on the front)."""

from __future__ import annotations

import pytest
from mcp import MCPError
from mcp_types import TextContent

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
