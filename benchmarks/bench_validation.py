"""What strict argument validation costs per governed call, next to the bare SDK.

Three variants of one server in one process, in-process ``Client`` in both protocol modes:

* ``bare``: the SDK ``MCPServer`` alone;
* ``governed``: the same server governed by one allow hook, with strict validation (the default);
* ``unvalidated``: the same governed server with the strict validation step replaced by a
  pass-through (a measurement device only: the library offers no way to turn it off).

Paired, interleaved batches: the variants alternate every ``--batch`` calls and each ratio is taken
within one round, so load on a shared machine moves all variants together. CPU time is reported
beside wall time.

Run: ``python benchmarks/bench_validation.py`` (``--rounds 3 --batch 50`` for a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import anyio
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, GovContext, Hooks, govern
from mcpgov._server import ServerGovernance

ARGS = {"order": 7, "note": "ship it", "tags": ["a", "b", "c"], "limit": 2.5}


def _server() -> MCPServer:
    server = MCPServer("bench")

    @server.tool()
    async def place(order: int, note: str, tags: list[str], limit: float = 1.0) -> str:
        return "ok"

    return server


def _governed(*, validate: bool) -> MCPServer:
    server = _server()
    hooks = Hooks()
    hooks.tool("place")(lambda ctx: Decision.allow("bench"))
    adapter = govern(server, hooks)
    if not validate:
        adapter._strict = _no_validation  # type: ignore[method-assign]
    return server


def _no_validation(ctx: GovContext, raw_arguments: Any) -> GovContext:
    return ctx


async def _batch(client: Client, n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await client.call_tool("place", ARGS)
    return time.perf_counter() - wall, time.process_time() - cpu


async def _run(mode: str, rounds: int, batch: int, batches: int) -> dict[str, Any]:
    variants: dict[str, Callable[[], MCPServer]] = {
        "bare": _server,
        "governed": lambda: _governed(validate=True),
        "unvalidated": lambda: _governed(validate=False),
    }
    per_call: dict[str, list[float]] = {name: [] for name in variants}
    cpu_call: dict[str, list[float]] = {name: [] for name in variants}
    ratios: list[float] = []
    extra_us: list[float] = []
    for _ in range(rounds):
        totals = {name: [0.0, 0.0] for name in variants}
        async with (
            Client(variants["bare"](), mode=mode) as bare,
            Client(variants["governed"](), mode=mode) as governed,
            Client(variants["unvalidated"](), mode=mode) as unvalidated,
        ):
            clients = {"bare": bare, "governed": governed, "unvalidated": unvalidated}
            for client in clients.values():
                await _batch(client, 20)  # warm-up (the SDK client lists tools after a first call)
            for _ in range(batches):
                for name, client in clients.items():
                    wall, cpu = await _batch(client, batch)
                    totals[name][0] += wall
                    totals[name][1] += cpu
        calls = batch * batches
        for name, (wall, cpu) in totals.items():
            per_call[name].append(wall / calls * 1e6)
            cpu_call[name].append(cpu / calls * 1e6)
        ratios.append(totals["bare"][0] / totals["governed"][0])
        extra_us.append((totals["governed"][1] - totals["unvalidated"][1]) / calls * 1e6)
    return {"per_call": per_call, "cpu_call": cpu_call, "ratios": ratios, "validation_cpu_us": extra_us}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    if ServerGovernance._strict is None:  # pragma: no cover - the step the benchmark replaces exists
        raise SystemExit("ServerGovernance has no strict validation step")
    for mode in ("auto", "legacy"):
        result = anyio.run(_run, mode, args.rounds, args.batch, args.batches)
        print(f"== in-process, mode {mode}: {args.rounds} rounds of {args.batches} x {args.batch} calls per variant")
        for name in ("bare", "governed", "unvalidated"):
            wall = statistics.median(result["per_call"][name])
            cpu = statistics.median(result["cpu_call"][name])
            print(f"  {name:<12} {wall:8.1f} us/call wall  {cpu:8.1f} us/call CPU")
        ratios = result["ratios"]
        print(
            f"  governed calls/s vs bare: median {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
        )
        extra = result["validation_cpu_us"]
        print(
            f"  strict validation: {statistics.median(extra):+.1f} us CPU per call "
            f"(min {min(extra):+.1f}, max {max(extra):+.1f})"
        )


if __name__ == "__main__":
    main()
