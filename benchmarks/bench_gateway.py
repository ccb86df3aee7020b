"""Cost of the governed gateway: one governed hop over loopback against calling the upstream directly.

Three processes, as deployed: an upstream MCP server (Streamable HTTP on loopback), the gateway
(`mcpgov gateway --config ...`: bearer identity, a policy, pinning and registry on the back,
a JSON Lines audit trail) and this process, the agents. Both paths use the same kind of client
(``GovernedClient`` with an identity token, legacy mode, so one session per agent).

* latency: sequential ``tools/call`` in paired, interleaved batches (direct, gateway, direct...),
  p50 and p99 of each path and the difference (what the gateway adds), and the CPU time per
  call of the gateway and upstream processes (less sensitive to a busy machine than wall time);
* throughput: N concurrent agents through the gateway for a fixed time, calls/s, with the CPU
  seconds the gateway and upstream processes used (from /proc).

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


async def _timed_calls(client: GovernedClient, n: int) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await client.call_tool("add" if client.direct else "bench_add", {"a": i, "b": 1})  # type: ignore[attr-defined]
        samples.append(time.perf_counter() - start)
    return samples


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


async def latency(
    direct_url: str, gateway_url: str, token: str, *, calls: int, batches: int, gateway_pid: int, upstream_pid: int
) -> dict[str, float]:
    async with (
        GovernedClient(direct_url, mode="legacy") as direct,
        GovernedClient(gateway_url, identity=token, mode="legacy") as governed,
    ):
        direct.direct = True  # type: ignore[attr-defined]
        governed.direct = False  # type: ignore[attr-defined]
        await _timed_calls(direct, 50)
        await _timed_calls(governed, 50)
        d: list[float] = []
        g: list[float] = []
        gateway_cpu = upstream_cpu_direct = upstream_cpu_gateway = 0.0
        for batch in range(batches):
            order = (direct, governed) if batch % 2 == 0 else (governed, direct)
            for client in order:
                cpu_g, cpu_u = _cpu_seconds(gateway_pid), _cpu_seconds(upstream_pid)
                (d if client is direct else g).extend(await _timed_calls(client, calls))
                if client is direct:
                    upstream_cpu_direct += _cpu_seconds(upstream_pid) - cpu_u
                else:
                    gateway_cpu += _cpu_seconds(gateway_pid) - cpu_g
                    upstream_cpu_gateway += _cpu_seconds(upstream_pid) - cpu_u
    n = calls * batches
    return {
        "gateway_cpu_ms": gateway_cpu / n * 1000.0,
        "upstream_cpu_direct_ms": upstream_cpu_direct / n * 1000.0,
        "upstream_cpu_gateway_ms": upstream_cpu_gateway / n * 1000.0,
        "direct_p50": _pct(d, 0.5),
        "direct_p99": _pct(d, 0.99),
        "gateway_p50": _pct(g, 0.5),
        "gateway_p99": _pct(g, 0.99),
    }


async def throughput(gateway_url: str, tokens: list[str], seconds: float) -> int:
    done = 0
    stop = anyio.Event()

    async def agent(token: str) -> None:
        nonlocal done
        async with GovernedClient(gateway_url, identity=token, mode="legacy") as client:
            await client.call_tool("bench_add", {"a": 1, "b": 1})
            await ready.wait()
            while not stop.is_set():
                await client.call_tool("bench_add", {"a": 1, "b": 1})
                done += 1

    ready = anyio.Event()
    async with anyio.create_task_group() as tg:
        for token in tokens:
            tg.start_soon(agent, token)
        await anyio.sleep(2.0)  # sessions open
        ready.set()
        await anyio.sleep(seconds)
        stop.set()
    return done


async def main(args: argparse.Namespace) -> None:
    idp = IdentityIssuer(ISSUER, audience=AUDIENCE)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "upstream.py").write_text(UPSTREAM)
        up_port, gw_port = _port(), _port()
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
                "audit": {"jsonl": "audit.jsonl"},
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
            _wait_http(f"http://127.0.0.1:{gw_port}/readyz", gateway)
            gateway_url = f"http://127.0.0.1:{gw_port}/mcp"
            token = idp.token("agent-0", tenant="acme", ttl=3600)

            lat = await latency(
                upstream_url,
                gateway_url,
                token,
                calls=args.calls,
                batches=args.batches,
                gateway_pid=gateway.pid,
                upstream_pid=upstream.pid,
            )
            added50 = lat["gateway_p50"] - lat["direct_p50"]
            added99 = lat["gateway_p99"] - lat["direct_p99"]
            print(
                f"latency ({args.batches} interleaved batches of {args.calls} calls each path): "
                f"direct p50={lat['direct_p50']:.2f} ms p99={lat['direct_p99']:.2f} ms | "
                f"gateway p50={lat['gateway_p50']:.2f} ms p99={lat['gateway_p99']:.2f} ms | "
                f"added p50={added50:.2f} ms p99={added99:.2f} ms"
            )
            print(
                f"CPU per call: gateway process {lat['gateway_cpu_ms']:.2f} ms; upstream "
                f"{lat['upstream_cpu_direct_ms']:.2f} ms direct, "
                f"{lat['upstream_cpu_gateway_ms']:.2f} ms via the gateway "
                f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
            )
            tokens = [idp.token(f"agent-{i}", tenant="acme", ttl=3600) for i in range(args.agents)]
            cpu_gw, cpu_up = _cpu_seconds(gateway.pid), _cpu_seconds(upstream.pid)
            wall = time.perf_counter()
            calls = await throughput(gateway_url, tokens, args.seconds)
            wall = time.perf_counter() - wall - 2.0
            cpu_gw, cpu_up = _cpu_seconds(gateway.pid) - cpu_gw, _cpu_seconds(upstream.pid) - cpu_up
            print(
                f"throughput: {args.agents} concurrent agents, {calls} calls in {args.seconds:.0f} s = "
                f"{calls / args.seconds:.0f} calls/s through the gateway "
                f"(CPU over {wall:.1f} s wall: gateway {cpu_gw:.1f} s, upstream {cpu_up:.1f} s; "
                f"{os.cpu_count()} cores shared with the agents)"
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
    anyio.run(main, parser.parse_args())
