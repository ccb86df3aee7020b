"""Calls per second of a bare SDK session and of the same session governed by the mcpgov core.

Governed means: one allow hook and one audit callback (so a decision event and an outcome
event per call). Measured in-process in both protocol modes and over loopback Streamable
HTTP; bare and governed run in the same process, interleaved, and the median of several
rounds is reported with the ratio.

Run:  python benchmarks/bench_session.py [--calls 2000] [--rounds 5] [--http-calls 300]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any

import anyio
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import AuditEvent, Decision, GovContext, Hooks, govern
from mcpgov.testing import serve_http


def make_server(governed: bool) -> tuple[MCPServer, list[AuditEvent]]:
    server = MCPServer("bench")
    events: list[AuditEvent] = []

    @server.tool()
    async def add(a: int, b: int) -> int:
        return a + b

    if governed:
        hooks = Hooks()

        @hooks.tool("add")
        def allow(ctx: GovContext) -> Decision:
            return Decision.allow("bench-allow")

        govern(server, hooks, audit=events.append)
    return server, events


async def calls_per_second(server: MCPServer | str, mode: str, calls: int) -> float:
    async with Client(server, mode=mode) as client:
        for _ in range(min(200, calls)):  # warm-up (also the client's own first tools/list)
            await client.call_tool("add", {"a": 1, "b": 2})
        start = time.perf_counter()
        for _ in range(calls):
            await client.call_tool("add", {"a": 1, "b": 2})
        return calls / (time.perf_counter() - start)


def _line(label: str, b: float, g: float) -> str:
    return (
        f"{label:<14} bare={b:8.0f} calls/s ({1e6 / b:7.1f} us/call)  "
        f"governed={g:8.0f} calls/s ({1e6 / g:7.1f} us/call)  ratio={g / b:.3f}  "
        f"overhead={1e6 / g - 1e6 / b:5.1f} us/call"
    )


async def over_http(mode: str, calls: int, rounds: int) -> tuple[float, float]:
    bare_server, _ = make_server(governed=False)
    gov_server, _ = make_server(governed=True)
    bare: list[float] = []
    governed: list[float] = []
    async with (
        serve_http(bare_server.streamable_http_app()) as b_url,
        serve_http(gov_server.streamable_http_app()) as g_url,
    ):
        for _ in range(rounds):
            bare.append(await calls_per_second(f"{b_url}/mcp", mode, calls))
            governed.append(await calls_per_second(f"{g_url}/mcp", mode, calls))
    return statistics.median(bare), statistics.median(governed)


async def main(calls: int, rounds: int, http_calls: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for mode in ("auto", "legacy"):
        bare_server, _ = make_server(governed=False)
        gov_server, events = make_server(governed=True)
        bare: list[float] = []
        governed: list[float] = []
        for _ in range(rounds):
            bare.append(await calls_per_second(bare_server, mode, calls))
            governed.append(await calls_per_second(gov_server, mode, calls))
            events.clear()
        b, g = statistics.median(bare), statistics.median(governed)
        report[mode] = (b, g, g / b)
        print(_line(f"in-process/{mode}", b, g))
    for mode in ("auto", "legacy") if http_calls > 0 else ():
        # 2026-07-28 requests over loopback HTTP wait on the SDK transport (~44 ms a call here),
        # so fewer of them are measured.
        n = max(5, http_calls // 10) if mode == "auto" else http_calls
        b, g = await over_http(mode, n, rounds)
        report[f"http/{mode}"] = (b, g, g / b)
        print(_line(f"http/{mode}", b, g))
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--http-calls", type=int, default=300)
    args = parser.parse_args()
    anyio.run(main, args.calls, args.rounds, args.http_calls)
