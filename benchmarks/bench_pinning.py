"""Cost of PinningMiddleware: calls and listings with and without it, same process, interleaved.

Client: GovernedClient(server, describe[, PinningMiddleware]) in-process, mode "auto".
Also: fingerprinting a listing of N tools, and the collision check of new names against
--pinned-names pins: the precomputed-skeleton index (what PinningMiddleware uses) beside the
pairwise confusables check it replaced, in paired interleaved batches, wall and CPU time, with
skeleton caches cleared so every new name is computed from scratch.

Run:  python benchmarks/bench_pinning.py [--calls 2000] [--rounds 5] [--tools 100]
          [--pinned-names 1000] [--batches 7] [--batch 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer

from mcpgov import GovContext, GovernedClient, Principal
from mcpgov.pinning import PinningMiddleware, ServerRegistry, snapshot, tool_fingerprint, write_manifest
from mcpgov.pinning._middleware import SERVER_INFO
from mcpgov.pinning._names import NameIndex, find_collision, name_skeleton

AGENT = Principal(issuer="https://id", subject="agent", tenant="acme", spiffe_id="spiffe://acme/agents/a")
INFO = {"name": "bench", "version": "1.0.0"}


async def describe(ctx: GovContext, call_next: Any) -> Any:
    return await call_next(ctx.with_extension(SERVER_INFO, INFO))


def make_server(tools: int) -> MCPServer:
    server = MCPServer("bench", version="1.0.0")

    @server.tool()
    async def add(a: int, b: int) -> int:
        return a + b

    for i in range(tools - 1):
        server.add_tool(lambda x: x, name=f"tool_{i}", description=f"Tool number {i}.")
    return server


async def run(server: MCPServer, pinned: bool, registry: ServerRegistry, calls: int, lists: int) -> tuple[float, float]:
    chain: list[Any] = [describe]
    if pinned:
        chain.append(PinningMiddleware(registry, server_id="bench"))
    async with GovernedClient(server, *chain, principal=AGENT) as client:
        await client.list_tools()
        for _ in range(200):
            await client.call_tool("add", {"a": 1, "b": 2})
        start = time.perf_counter()
        for _ in range(calls):
            await client.call_tool("add", {"a": 1, "b": 2})
        per_call = (time.perf_counter() - start) / calls
        start = time.perf_counter()
        for _ in range(lists):
            await client.list_tools()
        per_list = (time.perf_counter() - start) / lists
    return per_call * 1e6, per_list * 1e6


def _pairwise(name: str, approved: list[str]) -> str | None:
    """The check PinningMiddleware made before skeletons: confusables' pairwise test against every pin."""
    from confusables import is_confusable  # type: ignore[import-untyped]  # noqa: PLC0415 - untyped package

    folded = name.casefold()
    for other in approved:
        if other != name and (folded == other.casefold() or is_confusable(name, other)):
            return other
    return None


def bench_collisions(pinned: int, batches: int, batch: int) -> None:
    """Per-new-name cost of the collision check against ``pinned`` names: index vs pairwise."""
    approved = [f"{verb}_{noun}_{i}" for i in range(pinned // 10 + 1) for verb, noun in _WORDS][:pinned]
    index = NameIndex(approved)
    counter = iter(range(10**9))

    def fresh(n: int) -> list[str]:
        return [f"new-tool.{next(counter)}_Name" for _ in range(n)]

    def timed(check: Any, names: list[str]) -> tuple[float, float]:
        name_skeleton.cache_clear()
        wall, cpu = time.perf_counter(), time.process_time()
        for name in names:
            check(name)
        return (time.perf_counter() - wall) / len(names), (time.process_time() - cpu) / len(names)

    pairwise_batch = max(1, batch // 100)
    index_wall, index_cpu, pair_wall, pair_cpu = [], [], [], []
    for _ in range(batches):  # paired, interleaved: each batch of one is followed by one of the other
        w, c = timed(lambda n: find_collision(n, index), fresh(batch))
        index_wall.append(w)
        index_cpu.append(c)
        w, c = timed(lambda n: _pairwise(n, approved), fresh(pairwise_batch))
        pair_wall.append(w)
        pair_cpu.append(c)
    iw, ic, pw, pc = (statistics.median(x) * 1e3 for x in (index_wall, index_cpu, pair_wall, pair_cpu))
    print(
        f"collision check, one new name against {len(approved)} pinned names ({batches} paired batches):\n"
        f"  skeleton index  wall={iw:8.4f} ms  cpu={ic:8.4f} ms   (budget 1 ms)\n"
        f"  pairwise (old)  wall={pw:8.4f} ms  cpu={pc:8.4f} ms   ratio={pw / iw:,.0f}x"
    )


_WORDS = [
    ("read", "file"),
    ("write", "file"),
    ("list", "invoices"),
    ("refund", "payment"),
    ("send", "email"),
    ("deploy", "service"),
    ("query", "table"),
    ("delete", "record"),
    ("create", "ticket"),
    ("search", "docs"),
]


async def main(calls: int, rounds: int, tools: int) -> None:
    server = make_server(tools)
    with tempfile.TemporaryDirectory() as tmp:
        pin = Path(tmp) / "bench.json"
        manifest = await snapshot(server)
        write_manifest(pin, manifest)
        entry = {
            "id": "bench",
            "owner": "o",
            "tenants": ["acme"],
            "workloads": ["spiffe://acme/agents/*"],
            "command": "bench",
            "server": {"name": "bench", "version": ">=1"},
            "pin": str(pin),
        }
        registry = ServerRegistry([entry])
        bare_c, pin_c, bare_l, pin_l = [], [], [], []
        for _ in range(rounds):
            c, li = await run(server, False, registry, calls, 50)
            bare_c.append(c)
            bare_l.append(li)
            c, li = await run(server, True, registry, calls, 50)
            pin_c.append(c)
            pin_l.append(li)
        bc, pc, bl, pl = (statistics.median(x) for x in (bare_c, pin_c, bare_l, pin_l))
        print(
            f"call_tool   without={bc:7.1f} us  with pinning={pc:7.1f} us  "
            f"ratio={pc / bc:.3f}  overhead={pc - bc:6.1f} us"
        )
        print(
            f"list_tools  without={bl:7.1f} us  with pinning={pl:7.1f} us  ratio={pl / bl:.3f}  "
            f"overhead={pl - bl:6.1f} us  ({tools} tools)"
        )
        listed = await server.list_tools()
        start = time.perf_counter()
        for tool in listed:
            tool_fingerprint(tool)
        print(f"fingerprint {len(listed)} tools: {(time.perf_counter() - start) * 1e3:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tools", type=int, default=100)
    parser.add_argument("--pinned-names", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--batch", type=int, default=200)
    a = parser.parse_args()
    anyio.run(main, a.calls, a.rounds, a.tools)
    bench_collisions(a.pinned_names, a.batches, a.batch)
