"""Cost of the governed gateway: one governed hop over loopback against calling the upstream directly.

Four processes, as deployed: an upstream MCP server (Streamable HTTP on loopback), the gateway
(`mcpgov gateway --config ...`: bearer identity, a policy, pinning and registry on the back,
a JSON Lines audit trail, written on the request path; ``--audit queued`` writes it from a
worker thread), a "floor" proxy and this process, the agents. The floor is a plain
SDK proxy with no governance over the same transports (a lowlevel SDK server over Streamable
HTTP in front, one SDK client behind), so the report separates what governance adds from what
the SDK's own two HTTP hops cost. All paths use the same kind of client (``GovernedClient``,
legacy mode, so one session per agent; an identity token for the gateway).

* latency: sequential ``tools/call`` in paired, interleaved batches (direct, floor, gateway, then
  the order rotated), p50 and p99 of each path and the differences, the CPU time per call
  of the proxy and upstream processes (less sensitive to a busy machine than wall time), and
  the TCP connections each hop opened per call (from the sockets left in TIME_WAIT);
* throughput: N concurrent agents through the gateway, then through the floor, for a fixed time,
  calls/s, with the CPU seconds each proxy and the upstream used (from /proc).

Run:  python benchmarks/bench_gateway.py [--calls 400] [--batches 6] [--agents 50] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2
import yaml

from mcpgov import GovernedClient
from mcpgov.pinning import snapshot, write_manifest
from mcpgov.testing import IdentityIssuer

AUDIENCE = "https://gateway.bench/mcp"
ISSUER = "https://id.bench"

UPSTREAM = '''
import sys, uvicorn
from mcp.server.mcpserver import MCPServer
server = MCPServer("bench-upstream", version="1.0.0")

@server.tool()
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
'''


FLOOR = """
import contextlib, sys, uvicorn
from mcp import Client
from mcp.server.lowlevel import Server

upstream = sys.argv[2]
clients = []

async def list_tools(ctx, params):
    return await clients[0].list_tools()

async def call_tool(ctx, params):
    return await clients[0].call_tool(params.name, params.arguments)

server = Server("floor-proxy", on_list_tools=list_tools, on_call_tool=call_tool)
app = server.streamable_http_app(host="127.0.0.1")
inner = app.router.lifespan_context

@contextlib.asynccontextmanager
async def lifespan(a):
    async with Client(upstream, mode="legacy") as client, inner(a):
        clients.append(client)
        yield

app.router.lifespan_context = lifespan
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _closed_connections(port: int) -> int | None:
    """Client sockets to ``port`` on loopback now in TIME_WAIT (Linux /proc; ``None`` elsewhere).

    A client that closes its connection leaves its socket in TIME_WAIT for a minute, so the
    growth of this count over a short batch is the number of connections opened and closed:
    a lower bound, since the kernel may reuse such a socket for a new loopback connection.
    """
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            return None
        for line in lines:
            fields = line.split()
            if fields[3] == "06" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                total += 1
    return total


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: process exited with {process.returncode}")
        try:
            httpx2.get(url, timeout=1.0)
        except httpx2.HTTPError:
            time.sleep(0.1)
        else:
            return
    raise SystemExit(f"{url} did not come up")


async def _timed_calls(client: GovernedClient, tool: str, n: int) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await client.call_tool(tool, {"a": i, "b": 1})
        samples.append(time.perf_counter() - start)
    return samples


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


async def latency(
    urls: dict[str, str], token: str, *, calls: int, batches: int, pids: dict[str, int], ports: dict[str, int]
) -> dict[str, dict[str, float]]:
    """Sequential calls on each path in interleaved batches.

    Per path: p50, p99, CPU ms per call of each process, and the TCP connections opened (and
    closed) per call to each server (``conn_<name>``; NaN where /proc cannot tell).
    """
    tools = {"direct": "add", "floor": "add", "gateway": "bench_add"}
    async with (
        GovernedClient(urls["direct"], mode="legacy") as direct,
        GovernedClient(urls["floor"], mode="legacy") as floor,
        GovernedClient(urls["gateway"], identity=token, mode="legacy") as governed,
    ):
        clients = {"direct": direct, "floor": floor, "gateway": governed}
        for path, client in clients.items():
            await _timed_calls(client, tools[path], 50)  # warm up
        samples: dict[str, list[float]] = {path: [] for path in clients}
        cpu: dict[str, dict[str, float]] = {path: dict.fromkeys(pids, 0.0) for path in clients}
        conns: dict[str, dict[str, float]] = {path: dict.fromkeys(ports, 0.0) for path in clients}
        order = list(clients)
        for batch in range(batches):
            rotated = order[batch % 3 :] + order[: batch % 3]
            for path in rotated:
                before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
                closed = {name: _closed_connections(port) for name, port in ports.items()}
                samples[path].extend(await _timed_calls(clients[path], tools[path], calls))
                for name, pid in pids.items():
                    cpu[path][name] += _cpu_seconds(pid) - before[name]
                for name, port in ports.items():
                    was, now = closed[name], _closed_connections(port)
                    conns[path][name] += float("nan") if was is None or now is None else now - was
    n = calls * batches
    return {
        path: {
            "p50": _pct(samples[path], 0.5),
            "p99": _pct(samples[path], 0.99),
            **{f"cpu_{name}_ms": cpu[path][name] / n * 1000.0 for name in pids},
            **{f"conn_{name}": conns[path][name] / n for name in ports},
        }
        for path in clients
    }


async def throughput(url: str, tool: str, tokens: list[str | None], seconds: float) -> tuple[int, float]:
    """Calls completed by ``len(tokens)`` agents in ``seconds``, counted once every session is open.

    Returns:
        The calls, and the seconds it took to open the sessions (not measured).
    """
    done = 0
    opened = 0
    measuring = False
    stop = anyio.Event()
    ready = anyio.Event()
    all_open = anyio.Event()

    async def agent(token: str | None) -> None:
        nonlocal done, opened
        async with GovernedClient(url, identity=token, mode="legacy") as client:
            await client.call_tool(tool, {"a": 1, "b": 1})
            opened += 1
            if opened == len(tokens):
                all_open.set()
            await ready.wait()
            while not stop.is_set():
                await client.call_tool(tool, {"a": 1, "b": 1})
                if measuring:
                    done += 1

    setup = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for token in tokens:
            tg.start_soon(agent, token)
        with anyio.fail_after(300):
            await all_open.wait()
        setup = time.perf_counter() - setup
        ready.set()
        measuring = True
        await anyio.sleep(seconds)
        measuring = False
        stop.set()
    return done, setup


async def main(args: argparse.Namespace) -> None:
    idp = IdentityIssuer(ISSUER, audience=AUDIENCE)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "upstream.py").write_text(UPSTREAM)
        up_port, gw_port, floor_port = _port(), _port(), _port()
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        # Started once, before anything is measured: blocking here costs nothing that is timed.
        upstream = subprocess.Popen([sys.executable, str(work / "upstream.py"), str(up_port)], env=env)  # noqa: S603, ASYNC220
        processes = [upstream]
        try:
            upstream_url = f"http://127.0.0.1:{up_port}/mcp"
            _wait_http(upstream_url, upstream)
            write_manifest(work / "pin.json", await snapshot(upstream_url))
            registry = {
                "servers": [
                    {
                        "id": "bench",
                        "owner": "bench",
                        "tenants": ["acme"],
                        "workloads": ["*"],
                        "url": upstream_url,
                        "server": {"name": "bench-upstream", "version": ">=1"},
                        "pin": "pin.json",
                    }
                ]
            }
            policy = {
                "version": 1,
                "rules": [{"id": "allow", "effect": "allow", "tenants": ["acme"], "tools": ["bench_*"]}],
            }
            config = {
                "version": 1,
                "registry": "registry.yaml",
                "policy": "policy.yaml",
                "identity": {
                    "issuers": [
                        {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": "jwks.json", "tenant_claim": "tenant"}
                    ]
                },
                "audit": {"jsonl": "audit.jsonl", "queued": args.audit == "queued"},
                "http": {"host": "127.0.0.1", "port": gw_port},
                "upstreams": [{"id": "bench", "namespace": {"prefix": "bench_"}, "concurrency": 256}],
            }
            (work / "registry.yaml").write_text(yaml.safe_dump(registry))
            (work / "policy.yaml").write_text(yaml.safe_dump(policy))
            (work / "jwks.json").write_text(json.dumps(idp.jwks()))
            (work / "gateway.yaml").write_text(yaml.safe_dump(config))
            gateway = subprocess.Popen(  # noqa: S603, ASYNC220 - our own CLI, started before timing
                [sys.executable, "-m", "mcpgov.cli", "gateway", "--config", str(work / "gateway.yaml")],
                env=env,
                stderr=subprocess.DEVNULL,
            )
            processes.append(gateway)
            (work / "floor.py").write_text(FLOOR)
            floor = subprocess.Popen(  # noqa: S603, ASYNC220 - the plain SDK proxy, started before timing
                [sys.executable, str(work / "floor.py"), str(floor_port), upstream_url], env=env
            )
            processes.append(floor)
            _wait_http(f"http://127.0.0.1:{gw_port}/readyz", gateway)
            _wait_http(f"http://127.0.0.1:{floor_port}/mcp", floor)
            gateway_url = f"http://127.0.0.1:{gw_port}/mcp"
            floor_url = f"http://127.0.0.1:{floor_port}/mcp"
            token = idp.token("agent-0", tenant="acme", ttl=3600)
            pids = {"upstream": upstream.pid, "floor": floor.pid, "gateway": gateway.pid}

            lat = await latency(
                {"direct": upstream_url, "floor": floor_url, "gateway": gateway_url},
                token,
                calls=args.calls,
                batches=args.batches,
                pids=pids,
                ports={"upstream": up_port, "floor": floor_port, "gateway": gw_port},
            )
            d, f, g = lat["direct"], lat["floor"], lat["gateway"]
            print(
                f"latency ({args.batches} interleaved batches of {args.calls} calls each path), ms: "
                f"direct p50={d['p50']:.2f} p99={d['p99']:.2f} | "
                f"floor p50={f['p50']:.2f} p99={f['p99']:.2f} | "
                f"gateway p50={g['p50']:.2f} p99={g['p99']:.2f}"
            )
            print(
                f"added p50 / p99, ms: gateway vs direct {g['p50'] - d['p50']:.2f} / {g['p99'] - d['p99']:.2f} "
                f"(floor vs direct {f['p50'] - d['p50']:.2f} / {f['p99'] - d['p99']:.2f}; "
                f"governance = gateway vs floor {g['p50'] - f['p50']:.2f} / {g['p99'] - f['p99']:.2f})"
            )
            print(
                f"CPU ms per call: gateway process {g['cpu_gateway_ms']:.2f}, floor process {f['cpu_floor_ms']:.2f}; "
                f"upstream {d['cpu_upstream_ms']:.2f} direct, {f['cpu_upstream_ms']:.2f} via the floor, "
                f"{g['cpu_upstream_ms']:.2f} via the gateway "
                f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
            )
            print(
                f"TCP connections opened per call: direct {d['conn_upstream']:.2f}; "
                f"floor: agent to floor {f['conn_floor']:.2f}, floor to upstream {f['conn_upstream']:.2f}; "
                f"gateway: agent to gateway {g['conn_gateway']:.2f}, gateway to upstream {g['conn_upstream']:.2f}"
            )
            anonymous: list[str | None] = [None] * args.agents
            tokens: list[str | None] = [idp.token(f"agent-{i}", tenant="acme", ttl=3600) for i in range(args.agents)]
            for name, url, tool, agents in (
                ("gateway", gateway_url, "bench_add", tokens),
                ("floor", floor_url, "add", anonymous),
            ):
                cpu_px, cpu_up = _cpu_seconds(pids[name]), _cpu_seconds(upstream.pid)
                calls, setup = await throughput(url, tool, agents, args.seconds)
                cpu_px, cpu_up = _cpu_seconds(pids[name]) - cpu_px, _cpu_seconds(upstream.pid) - cpu_up
                print(
                    f"throughput {name}: {args.agents} concurrent agents, {calls} calls in {args.seconds:.0f} s = "
                    f"{calls / args.seconds:.0f} calls/s (CPU incl. {setup:.1f} s of session set-up: "
                    f"{name} {cpu_px:.1f} s, upstream {cpu_up:.1f} s; {os.cpu_count()} cores shared with the agents)"
                )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400, help="calls per batch and path")
    parser.add_argument("--batches", type=int, default=6, help="interleaved batches per path")
    parser.add_argument("--agents", type=int, default=50, help="concurrent agents for throughput")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput measuring time")
    parser.add_argument(
        "--audit",
        choices=("queued", "direct"),
        default="direct",
        help="the gateway's JSON Lines audit: each event written on the request path, or by a worker thread",
    )
    anyio.run(main, parser.parse_args())
