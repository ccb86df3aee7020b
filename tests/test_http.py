"""Over Streamable HTTP: a governed server served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import pytest
from mcp import MCPError

from mcpgov import ArgumentLimits, GovernedClient

from .conftest import build_demo, serve_http

pytestmark = pytest.mark.anyio


async def test_governed_session_over_streamable_http(mode: str) -> None:
    demo = build_demo()
    app = demo.server.streamable_http_app()
    # The client's own bounds are wide here so that the server's are the ones exercised.
    wide = ArgumentLimits(max_depth=1000)
    async with serve_http(app) as base, GovernedClient(f"{base}/mcp", limits=wide, mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools == {"read_file", "explode"}
        result = await client.call_tool("read_file", {"path": "a"})
        assert result.is_error is False
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "9"})
        assert caught.value.code == -32003
        assert caught.value.message == "Request denied"
        assert set(caught.value.data) == {"code", "event"}
        with pytest.raises(MCPError) as bad:
            await client.call_tool("read_file", {"path": _nested(40)})
        assert bad.value.code == -32602
    assert demo.ran == ["read_file"]
    decisions = [(e.target, e.effect, e.reason) for e in demo.sink.decisions()]
    assert decisions == [
        ("read_file", "allow", "allowed"),
        ("deploy", "deny", "missing_role"),
        ("read_file", "deny", "argument_too_deep"),
    ]
    session_ids = {e.session_id for e in demo.sink.decisions()}
    # Legacy sessions have one HTTP session id; 2026-07-28 requests stand alone.
    assert session_ids == ({None} if mode == "auto" else {next(iter(session_ids))})
    if mode == "legacy":
        assert None not in session_ids


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"x": value}
    return value
