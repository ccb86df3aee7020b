"""Short-lived credentials: mint and verify speed against raw joserfc, revocation checks, memory
of a large revocation list, and a full governed session against the bare SDK.

* mint and verify operations per second for Ed25519 and ES256, next to raw ``joserfc`` signing
  (``jwt.encode``) and verification (``jwt.decode``) of the same claims with the same key,
  in the same run (target: at least 80% of raw). "verify" is the whole check a server makes
  of a token it has not seen before: header, signature, claims, lifetime, tool/tenant
  binding and the revocation lookup; "same token again" is a repeat presentation, whose
  signature check is remembered (lifetime, binding and revocation are checked again);
* revocation check latency on the in-memory store and on Redis (a private ``redis-server`` is
  started on a free port; skipped with a message when it is not installed);
* memory held by one million revocation entries (target: at most 100 MB, as in ``bench_session.py``), for the compact
  default store and, for comparison, the cachetools ``InMemoryStateStore``;
* calls per second of a bare SDK session and of a governed one (client credentials, server
  credential verification, one hook, audit), in-process in both protocol modes, and the ratio;
* the kill switch: uses that start after ``revoke()`` returned while 1,000 concurrent uses race
  it through an awaiting authoriser (must be 0 in-process; across replicas the latency is one
  store round trip, the "revocation check redis" figure), and the per-call cost of the last
  check: the default (one lookup, at the gate) against ``check_early=True`` (two lookups), in
  paired, interleaved batches, wall and CPU time per call.

Run:  python benchmarks/bench_credentials.py [--ops 3000] [--revocations 1000000] [--calls 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import secrets
import shutil
import socket
import statistics
import subprocess
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
from joserfc import jwt
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import AuditEvent, Decision, GovContext, GovernedClient, Hooks, InMemoryStateStore, Principal, govern
from mcpgov.credentials import (
    ClientCredentials,
    CompactMemoryStore,
    CredentialIssuer,
    CredentialMiddleware,
    IssuerTokenSource,
    RevocationList,
    SigningKeySet,
)
from mcpgov.credentials._claims import CREDENTIAL_TYP

AUDIENCE = "https://bench.example"
AGENT = Principal(issuer="https://id.example", subject="bench-agent", tenant="acme")


def rate(fn: Callable[[], Any], ops: int, rounds: int) -> float:
    """Median operations per second of ``fn`` over ``rounds`` runs of ``ops`` calls."""
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(ops):
            fn()
        results.append(ops / (time.perf_counter() - start))
    return statistics.median(results)


async def arate(fn: Callable[[], Awaitable[Any]], ops: int, rounds: int) -> float:
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(ops):
            await fn()
        results.append(ops / (time.perf_counter() - start))
    return statistics.median(results)


async def mint_and_verify(ops: int, rounds: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for algorithm in ("Ed25519", "ES256"):
        issuer = CredentialIssuer("https://issuer.example", SigningKeySet.generate(algorithm), max_ttl=300)
        verifier = issuer.verifier(AUDIENCE)
        kid, alg, key = issuer.keys.current
        sample = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t", purpose="p")
        claims = sample.claims.to_payload()
        header = {"alg": alg, "kid": kid, "typ": CREDENTIAL_TYP}
        raw_token = jwt.encode(header, claims, key, algorithms=[alg])

        def raw_sign() -> None:
            jwt.encode(header, claims, key, algorithms=[alg])  # noqa: B023 - used within this iteration

        def raw_verify() -> None:
            jwt.decode(raw_token, key, algorithms=[alg])  # noqa: B023 - used within this iteration

        async def mint() -> None:
            await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t", purpose="p")  # noqa: B023

        async def verify_repeat() -> None:
            await verifier.verify(sample.token, tool="deploy", tenant="acme", principal=AGENT)  # noqa: B023

        tokens = [
            (await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t", purpose="p")).token
            for _ in range(ops)
        ]

        async def verify_fresh() -> float:
            fresh = issuer.verifier(AUDIENCE)  # noqa: B023 - a new verifier: nothing seen before
            start = time.perf_counter()
            for token in tokens:  # noqa: B023
                await fresh.verify(token, tool="deploy", tenant="acme", principal=AGENT)
            return ops / (time.perf_counter() - start)

        # Raw and ours alternate within each round, so a busy machine slows both alike.
        samples: dict[str, list[float]] = {"raw_s": [], "mint": [], "raw_v": [], "verify": []}
        for _ in range(rounds):
            samples["raw_s"].append(rate(raw_sign, ops, 1))
            samples["mint"].append(await arate(mint, ops, 1))
            samples["raw_v"].append(rate(raw_verify, ops, 1))
            samples["verify"].append(await verify_fresh())
        raw_s, ours_m, raw_v, ours_v = (statistics.median(samples[k]) for k in ("raw_s", "mint", "raw_v", "verify"))
        repeat = await arate(verify_repeat, ops, rounds)
        report[algorithm] = {
            "raw_sign": raw_s,
            "mint": ours_m,
            "mint_ratio": ours_m / raw_s,
            "raw_verify": raw_v,
            "verify": ours_v,
            "verify_ratio": ours_v / raw_v,
            "verify_repeat": repeat,
        }
        print(
            f"{algorithm:<8} sign  raw={raw_s:8.0f}/s  mint={ours_m:8.0f}/s  ratio={ours_m / raw_s:.2f}   "
            f"verify raw={raw_v:8.0f}/s  ours={ours_v:8.0f}/s  ratio={ours_v / raw_v:.2f}   "
            f"(same token again: {repeat:8.0f}/s)"
        )
    return report


async def check_latency(revocations: RevocationList, issuer: CredentialIssuer, ops: int) -> float:
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t")
    for _ in range(200):
        await revocations.check(cred.claims)
    samples = []
    for _ in range(ops):
        start = time.perf_counter()
        await revocations.check(cred.claims)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis(binary: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - a fixed local binary with fixed arguments
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def revocation_latency(ops: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    memory = RevocationList(CompactMemoryStore(), max_ttl=300)
    issuer = CredentialIssuer("https://issuer.example", SigningKeySet.generate(), max_ttl=300, revocations=memory)
    for _ in range(10_000):
        await memory.revoke(secrets.token_urlsafe(16), expires_at=time.time() + 300)
    report["memory_us"] = await check_latency(memory, issuer, ops)
    print(f"revocation check  in-memory (10k revoked): median {report['memory_us']:7.1f} us")
    binary = shutil.which("redis-server")
    if binary is None:
        print("revocation check  redis: skipped (redis-server is not installed: apt-get install redis-server)")
        return report
    try:
        from mcpgov.redis import RedisStateStore  # noqa: PLC0415 - the redis extra is optional
    except ImportError:
        print("revocation check  redis: skipped (the 'redis' extra is not installed)")
        return report
    port = _free_port()
    process = _start_redis(binary, port)
    try:
        async with RedisStateStore.from_url(f"redis://127.0.0.1:{port}/0", timeout=1.0) as store:
            for _ in range(100):
                try:
                    await store.get("ping")
                    break
                except Exception:  # noqa: BLE001 - the server is still starting
                    await anyio.sleep(0.05)
            remote = RevocationList(store, max_ttl=300)
            issuer = CredentialIssuer(
                "https://issuer.example", SigningKeySet.generate(), max_ttl=300, revocations=remote
            )
            report["redis_us"] = await check_latency(remote, issuer, ops)
            print(f"revocation check  redis (loopback):   median {report['redis_us']:7.1f} us")
    finally:
        process.terminate()
        process.wait(timeout=10)
    return report


async def revocation_memory(entries: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    now = time.time()
    for name, factory in (
        ("compact", lambda: CompactMemoryStore(maxsize=entries + 1)),
        ("cachetools", lambda: InMemoryStateStore(maxsize=entries + 1)),
    ):
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        store: Any = factory()
        revocations = RevocationList(store, max_ttl=300)
        for i in range(entries):
            # What RevocationList.revoke writes for one credential id.
            await store.put(revocations.jti_key(secrets.token_urlsafe(16)), "1", 60 + (now + i) % 240)
        used = (tracemalloc.get_traced_memory()[0] - base) / 1e6
        tracemalloc.stop()
        report[name] = used
        scaled = used * 1_000_000 / entries
        print(f"revocation memory {name:<10} {entries:>9,} entries: {used:7.1f} MB ({scaled:6.1f} MB per million)")
        del store, revocations
    return report


def make_servers(issuer: CredentialIssuer) -> tuple[MCPServer, MCPServer, list[AuditEvent]]:
    bare = MCPServer("bare")
    governed = MCPServer("governed")
    events: list[AuditEvent] = []
    for server in (bare, governed):

        @server.tool()
        async def add(a: int, b: int) -> int:
            return a + b

    hooks = Hooks()

    @hooks.tool("add")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("bench-allow")

    govern(governed, CredentialMiddleware(issuer.verifier(AUDIENCE)), hooks, audit=events.append)
    return bare, governed, events


async def calls_per_second(client: Client, calls: int) -> float:
    for _ in range(min(200, calls)):
        await client.call_tool("add", {"a": 1, "b": 2})
    start = time.perf_counter()
    for _ in range(calls):
        await client.call_tool("add", {"a": 1, "b": 2})
    return calls / (time.perf_counter() - start)


async def session(calls: int, rounds: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    issuer = CredentialIssuer("https://issuer.example", SigningKeySet.generate(), max_ttl=300)
    bare_server, gov_server, events = make_servers(issuer)
    for mode in ("auto", "legacy"):
        bare: list[float] = []
        governed: list[float] = []
        for _ in range(rounds):
            async with Client(bare_server, mode=mode) as client:
                bare.append(await calls_per_second(client, calls))
            credentials = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
            async with GovernedClient(gov_server, credentials, principal=AGENT, mode=mode) as gclient:
                governed.append(await calls_per_second(gclient, calls))
            events.clear()
        b, g = statistics.median(bare), statistics.median(governed)
        report[mode] = {"bare": b, "governed": g, "ratio": g / b}
        print(
            f"session {mode:<7} bare={b:7.0f} calls/s ({1e6 / b:6.1f} us)  governed={g:7.0f} calls/s "
            f"({1e6 / g:6.1f} us)  ratio={g / b:.2f}"
        )
    return report


async def kill_switch(calls: int, rounds: int) -> dict[str, Any]:
    """Uses admitted after revoke() returned, and the per-call cost of the last check."""
    issuer = CredentialIssuer("https://issuer.example", SigningKeySet.generate(), max_ttl=300)
    server = MCPServer("race")
    started: list[int] = []
    ticks = iter(range(10**9))
    hundred = anyio.Event()

    @server.tool()
    async def work() -> str:
        started.append(next(ticks))
        if len(started) >= 100:
            hundred.set()
        return "ok"

    hooks = Hooks()

    @hooks.tool("*")
    async def allow(ctx: GovContext) -> Decision:
        await anyio.sleep(0.0005)
        return Decision.allow("bench-allow")

    govern(server, CredentialMiddleware(issuer.verifier(AUDIENCE)), hooks)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["work"])
    marks: list[int] = []
    async with Client(server, mode="auto") as client:
        meta: Any = {"io.mcpgov/credential": cred.token}

        async def use(delay: int) -> None:
            for _ in range(delay):
                await anyio.lowlevel.checkpoint()
            with contextlib.suppress(Exception):  # refused uses are expected
                await client.call_tool("work", {}, meta=meta)

        async def revoke() -> None:
            await hundred.wait()
            await issuer.revoke(cred)
            marks.append(next(ticks))

        async with anyio.create_task_group() as tg:
            tg.start_soon(revoke)
            for i in range(1000):
                tg.start_soon(use, i // 4)
    after = sum(1 for t in started if t > marks[0])
    print(f"kill switch in-process: {len(started)} uses ran before revoke() returned, {after} after (must be 0)")
    report: dict[str, Any] = {"admitted_after_revoke": after}
    report.update(await last_check_cost(issuer, calls, rounds))
    return report


async def last_check_cost(issuer: CredentialIssuer, calls: int, rounds: int) -> dict[str, Any]:
    """Per-call cost of the revocation check at the gate only, and early plus at the gate."""

    def build(check_early: bool) -> MCPServer:
        srv = MCPServer("cost")

        @srv.tool()
        async def add(a: int, b: int) -> int:
            return a + b

        h = Hooks()

        @h.tool("add")
        def ok(ctx: GovContext) -> Decision:
            return Decision.allow("bench-allow")

        govern(srv, CredentialMiddleware(issuer.verifier(AUDIENCE), check_early=check_early), h)
        return srv

    servers = {"gate": build(False), "early+gate": build(True)}
    token = (await issuer.mint(AGENT, audience=AUDIENCE, tools=["add"])).token
    wall: dict[str, list[float]] = {k: [] for k in servers}
    cpu: dict[str, list[float]] = {k: [] for k in servers}
    async with Client(servers["gate"], mode="auto") as a, Client(servers["early+gate"], mode="auto") as b:
        clients = {"gate": a, "early+gate": b}
        batch = max(50, calls // 10)
        for _ in range(rounds * 5):
            for name, client in clients.items():  # interleaved, paired batches
                gc.collect()
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(batch):
                    await client.call_tool("add", {"a": 1, "b": 2}, meta={"io.mcpgov/credential": token})  # type: ignore[arg-type]
                wall[name].append((time.perf_counter() - w0) / batch * 1e6)
                cpu[name].append((time.process_time() - c0) / batch * 1e6)
    report: dict[str, Any] = {}
    for name in servers:
        report[name] = {"wall_us": statistics.median(wall[name]), "cpu_us": statistics.median(cpu[name])}
        print(
            f"per call, revocation checked {name:<10}: wall {report[name]['wall_us']:6.1f} us, "
            f"cpu {report[name]['cpu_us']:6.1f} us"
        )
    return report


async def main(ops: int, revocations: int, calls: int, rounds: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    report["kill_switch"] = await kill_switch(calls, rounds)
    report["jose"] = await mint_and_verify(ops, rounds)
    report["revocation_latency"] = await revocation_latency(ops)
    report["revocation_memory_mb"] = await revocation_memory(revocations)
    report["session"] = await session(calls, rounds)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--revocations", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    figures = anyio.run(main, args.ops, args.revocations, args.calls, args.rounds)
    if args.json:
        print(json.dumps(figures, indent=2))
