"""Malformed, unknown, oversized and hostile requests: a clean error, nothing run, one event."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, MCPError

from .conftest import Demo, raw_request

pytestmark = pytest.mark.anyio


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


async def _refused(demo: Demo, client: Client, method: str, params: dict[str, Any] | None) -> MCPError:
    before = len(demo.sink.events)
    with pytest.raises(MCPError) as caught:
        await raw_request(client, method, params)
    events = demo.sink.events[before:]
    assert len(events) == 1, events
    assert events[0].effect == "deny"
    assert demo.ran == []
    return caught.value


@pytest.mark.parametrize(
    "params",
    [
        {"name": 42, "arguments": {}},
        {"name": "", "arguments": {}},
        {"arguments": {}},
        {"name": "read_file", "arguments": ["not", "an", "object"]},
        {"name": "read_file", "arguments": "path"},
    ],
    ids=["name-not-string", "name-empty", "name-missing", "arguments-array", "arguments-string"],
)
async def test_malformed_tool_call_params(demo: Demo, mode: str, params: dict[str, Any]) -> None:
    async with Client(demo.server, mode=mode) as client:
        error = await _refused(demo, client, "tools/call", params)
    assert error.code == -32602
    assert error.data["code"] == "mcpgov.invalid_request"


async def test_unknown_tool_even_when_a_wildcard_allows(demo: Demo, mode: str) -> None:
    async with Client(demo.server, mode=mode) as client:
        error = await _refused(demo, client, "tools/call", {"name": "read_everything", "arguments": {}})
    assert error.code == -32602
    assert demo.sink.events[-1].reason == "unknown_tool"


async def test_unknown_tool_without_a_hook_is_simply_denied(demo: Demo, mode: str) -> None:
    async with Client(demo.server, mode=mode) as client:
        error = await _refused(demo, client, "tools/call", {"name": "nonexistent", "arguments": {}})
    assert error.code == -32003  # a caller without rights learns nothing about what exists


@pytest.mark.parametrize("method", ["custom/evil", "completion/complete"])
async def test_methods_the_server_does_not_serve_are_not_found(demo: Demo, mode: str, method: str) -> None:
    # Governance decides what the server serves; anything else is the SDK's own "Method not found"
    # (protocol plumbing: tests/test_protocol_plumbing.py).
    params = {"ref": {"type": "ref/prompt", "name": "jailbreak"}, "argument": {"name": "text", "value": "x"}}
    async with Client(demo.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await raw_request(client, method, params)
    # The SDK's own answer (its params check or "Method not found"), not a governance refusal.
    assert caught.value.code in (-32601, -32602)
    assert not isinstance(caught.value.data, dict)
    assert demo.ran == []


async def test_deeply_nested_arguments(demo: Demo, mode: str) -> None:
    async with Client(demo.server, mode=mode) as client:
        error = await _refused(demo, client, "tools/call", {"name": "read_file", "arguments": {"path": _nested(40)}})
    assert error.code == -32602
    assert demo.sink.events[-1].reason == "argument_too_deep"


async def test_oversized_arguments(demo: Demo, mode: str) -> None:
    huge = "x" * 1_000_001
    async with Client(demo.server, mode=mode) as client:
        error = await _refused(demo, client, "tools/call", {"name": "read_file", "arguments": {"path": huge}})
    assert error.code == -32602
    assert demo.sink.events[-1].reason == "argument_too_large"


async def test_too_many_values(demo: Demo, mode: str) -> None:
    many = list(range(20_000))
    async with Client(demo.server, mode=mode) as client:
        error = await _refused(demo, client, "tools/call", {"name": "read_file", "arguments": {"path": many}})
    assert error.code == -32602


async def test_oversized_integer(demo: Demo, mode: str) -> None:
    async with Client(demo.server, mode=mode) as client:
        error = await _refused(demo, client, "tools/call", {"name": "read_file", "arguments": {"path": 2**80}})
    assert error.code == -32602


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
async def test_non_finite_numbers_in_process(demo: Demo, value: float) -> None:
    # Only the direct in-process path carries Python floats untouched; JSON transports reject them earlier.
    async with Client(demo.server, mode="auto") as client:
        error = await _refused(demo, client, "tools/call", {"name": "read_file", "arguments": {"path": value}})
    assert error.code == -32602


async def test_resource_read_without_uri(demo: Demo, mode: str) -> None:
    async with Client(demo.server, mode=mode) as client:
        error = await _refused(demo, client, "resources/read", {"uri": 7})
    assert error.code == -32602
