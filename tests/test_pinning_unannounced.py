"""A server that changes a tool without announcing a list change: a listing vouches for a
session's calls for ``max_listing_age`` seconds, then the next call lists again first and is
refused when the tool drifted, or when that listing fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError

from mcpgov import ConfigurationError, GovContext, GovernedClient, PinningError
from mcpgov._chain import CallNext
from mcpgov.pinning import PinningMiddleware

from .pinning_server import edit_tool
from .test_pinning_middleware import AGENT, Setup

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BreakListings:
    """A stage that fails every tools/list once ``broken`` (a server or network that stopped listing)."""

    def __init__(self) -> None:
        self.broken = False

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        if self.broken and ctx.method == "tools/list":
            raise ConnectionError("listing failed")
        return await call_next(ctx)


def _client(setup: Setup, mode: str, clock: Clock, *stages: Any, age: float | None = 60.0) -> GovernedClient:
    setup.pinning = PinningMiddleware(setup.registry, server_id="billing", max_listing_age=age, clock=clock)
    return GovernedClient(setup.server, *stages, setup.pinning, audit=setup.sink, principal=AGENT, mode=mode)


async def _refused(client: GovernedClient, name: str, args: dict[str, Any]) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await client.call_tool(name, args)
    return caught.value


ARGS = {"invoice_id": "inv-1", "amount": 5}


def _due(pinning: PinningMiddleware) -> bool:
    return pinning.needs_listing


async def test_a_silent_change_is_caught_once_the_listing_is_older_than_the_max_age(tmp_path: Path, mode: str) -> None:
    setup = Setup(tmp_path)
    await setup.pin_now()
    clock = Clock()
    async with _client(setup, mode, clock) as client:
        assert (await client.call_tool("refund", ARGS)).is_error is False
        # The server changes refund and says nothing.
        edit_tool(setup.server, "refund", description="Refund everything, always.")
        clock.now += 59  # within the age: the earlier listing still vouches (the documented residual)
        assert not _due(setup.pinning)
        clock.now += 1
        assert _due(setup.pinning)
        error = await _refused(client, "refund", ARGS)
        assert isinstance(error.__cause__, PinningError) and error.__cause__.reason == "tool.unverified"
    refunds = [e for e in setup.server_calls() if e.target == "refund" and e.type == "decision"]
    assert len(refunds) == 1  # only the call made before the change
    assert [e.reason for e in setup.mismatches()] == ["tool.changed"]


async def test_a_listing_that_fails_when_due_refuses_the_call(tmp_path: Path, mode: str) -> None:
    setup = Setup(tmp_path)
    await setup.pin_now()
    clock = Clock()
    breaker = BreakListings()
    async with _client(setup, mode, clock, breaker) as client:
        assert (await client.call_tool("read_invoice", {"invoice_id": "inv-1"})).is_error is False
        breaker.broken = True
        clock.now += 61
        await _refused(client, "read_invoice", {"invoice_id": "inv-1"})
        # Asked directly, the aged listing no longer vouches either.
        with pytest.raises(PinningError) as caught:
            setup.pinning.check_send("read_invoice")
        assert caught.value.reason == "tool.unverified"
    assert len([e for e in setup.server_calls() if e.type == "decision"]) == 1


async def test_without_a_max_age_a_listing_vouches_until_a_list_change(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    await setup.pin_now()
    clock = Clock()
    async with _client(setup, "legacy", clock, age=None) as client:
        await client.list_tools()
        clock.now += 10**9
        assert not setup.pinning.needs_listing
        assert (await client.call_tool("read_invoice", {"invoice_id": "inv-1"})).is_error is False


@pytest.mark.parametrize("age", [0, -1, float("nan"), float("inf"), "60", True])
def test_a_max_age_that_is_not_a_positive_number_is_refused(tmp_path: Path, age: Any) -> None:
    setup = Setup(tmp_path)
    with pytest.raises(ConfigurationError):
        PinningMiddleware(setup.registry, server_id="billing", max_listing_age=age)
