"""The benchmark that decides: a governed MCP session against the bare SDK, in paired batches.

Three variants of one small server (``add(a, b)``) run side by side in one process:

* ``bare``: the SDK alone (``mcp.Client`` against an ungoverned ``MCPServer``);
* ``hooks``: the server governed by one allow hook and an audit callback (two events a call);
* ``full``: the production stack. The client is a ``GovernedClient`` with a workload identity
  token and a per-task credential (``open_task``); the server verifies the identity and the
  credential, decides with a 100-rule policy and writes every event to a hash-chained JSON Lines
  file behind a ``QueuedSink``.

Each scenario (in-process in both protocol modes, sequential and with many concurrent callers on
one session; Streamable HTTP on loopback, sequential and concurrent) keeps one session of each
variant open and alternates the variants every batch (~100 calls), rotating which goes first.
Ratios are taken within a batch, so a noisy neighbour slows all three alike; the p10..p90 spread
of the per-batch ratios is printed with the median, next to p50/p99 latency, calls/s and the
process CPU time per call (all threads: the audit worker included), the context switches per
call and the garbage collector's time per call with its full collections (of the whole heap)
during the variant's batches. Each target is printed as MET or MISSED (the median ratio against
the target).

Further sections: a listing of 1,000 tools (the full stack's added microseconds per entry), a
1 MB argument (added milliseconds), and memory (per open session; the plateau of a server seen
by many distinct agents; a million revocations). ``--chart PATH`` draws calls/s per variant
(matplotlib).

Run:  python benchmarks/bench_session.py                 # the full run (a few minutes)
      python benchmarks/bench_session.py --smoke         # a quick pass of every section (CI)
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import secrets
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import META_CREDENTIAL, AuditEvent, Auditor, Decision, GovContext, GovernedClient, Hooks, Principal, govern
from mcpgov.audit import JsonlSink, QueuedSink
from mcpgov.credentials import (
    ClientCredentials,
    CompactMemoryStore,
    CredentialIssuer,
    CredentialMiddleware,
    IssuerTokenSource,
    RevocationList,
    SigningKeySet,
    open_task,
)
from mcpgov.identity import IdentityMiddleware, server_auth
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, serve_http

AUDIENCE = "https://bench.example/mcp"
TENANT = "acme"
VARIANTS = ("bare", "hooks", "full")

# Targets of the issue "Governance at the speed of the bare SDK".
TARGET_HOOKS_INPROC = 0.90
TARGET_FULL_INPROC = 0.80
TARGET_FULL_HTTP = 0.95
TARGET_LIST_US_PER_ENTRY = 10.0
TARGET_MB_ARG_MS = 2.0
TARGET_SESSION_KB = 5.0
TARGET_REVOCATIONS_MB = 100.0
TARGET_AGENT_BYTES = 8.0  # heap peak growth per distinct agent once every per-agent cache is full

Call = Callable[[Client], Awaitable[Any]]


# --- the servers ------------------------------------------------------------------------------


def policy(tools: Sequence[str] = ("add",), size: int = 100, *, anonymous: bool = False) -> Policy:
    """A policy of ``size`` rules: deny rules, one allow rule per (other) tool with an argument
    condition, and the allow rule of the benchmarked tools last, so a decision reads them all."""
    rules: list[dict[str, Any]] = [
        {"id": "no-admin-tools", "effect": "deny", "tools": ["admin_*"]},
        {
            "id": "no-delegated-deletes",
            "effect": "deny",
            "tools": ["delete_*"],
            "when": {"delegation_depth": {"min": 2}},
        },
    ]
    rules += [
        {
            "id": f"r{i}",
            "effect": "allow",
            "tenants": [TENANT],
            "tools": [f"other{i}"],
            "when": {"arguments": {"path": {"path": {"under": [f"/data/{TENANT}"]}}}},
        }
        for i in range(size - len(rules) - 1)
    ]
    last: dict[str, Any] = {"id": "bench-tools", "effect": "allow", "tenants": [TENANT], "tools": list(tools)}
    if anonymous:  # no identity: the tenant comes from the credential, there is no principal
        last["anonymous"] = True
    rules.append(last)
    return Policy.from_dict({"rules": rules}, source=f"<{size} rules>")


@dataclass
class Stack:
    """What the full variant needs on both sides: identity issuer, credential issuer, a log dir."""

    log_dir: Path
    identities: IdentityIssuer = field(default_factory=lambda: IdentityIssuer("https://id.bench", audience=AUDIENCE))
    credentials: CredentialIssuer = field(
        default_factory=lambda: CredentialIssuer(
            "https://credentials.bench", SigningKeySet.generate("Ed25519"), max_ttl=600
        )
    )
    auditors: list[Auditor] = field(default_factory=list)

    def full_server(
        self, name: str, *, http: bool, without: str = ""
    ) -> tuple[MCPServer, Callable[[MCPServer, Sequence[str]], None]]:
        """A server for the full stack (over HTTP, the SDK's bearer auth verifies the identity
        too) and the function that governs it once its tools are known. ``without`` names one
        part left out (``audit``: an auditor with no sink; ``policy``: an allow hook instead;
        ``credential``; ``identity``: the tenant then comes from the credential)."""
        if without == "audit":
            auditor = Auditor()
        else:
            sink = JsonlSink(self.log_dir / f"audit-{secrets.token_hex(4)}.jsonl", max_bytes=None)
            auditor = Auditor([QueuedSink(sink)])
        self.auditors.append(auditor)
        identity = IdentityMiddleware(self.identities.verifier())
        options: dict[str, Any] = {}
        if http and without != "identity":
            options = dict(server_auth(identity, resource_server_url=AUDIENCE, audit=auditor))

        def governed(server: MCPServer, tools: Sequence[str]) -> None:
            chain: list[Any] = []
            if without != "identity":
                chain.append(identity)
            if without != "credential":
                chain.append(CredentialMiddleware(self.credentials.verifier(AUDIENCE)))
            if without == "policy":
                hooks = Hooks()
                hooks.register("*", _allow, kind="tool")
                chain.append(hooks)
            else:
                chain.append(PolicyMiddleware(policy(tools, anonymous=without == "identity")))
            govern(server, *chain, audit=auditor)

        return MCPServer(name, **options), governed

    @asynccontextmanager
    async def client(
        self, target: Any, mode: str, agent: str = "agent-1", *, without: str = ""
    ) -> AsyncIterator[Client]:
        me = Principal("https://id.bench", agent, tenant=TENANT, auth_method="jwt")
        chain: list[Any] = []
        if without != "credential":
            chain.append(ClientCredentials(IssuerTokenSource(self.credentials), audience=AUDIENCE, ttl=600))
        token = None if without == "identity" else self.identities.token(agent, tenant=TENANT, ttl=3600)
        async with GovernedClient(target, *chain, identity=token, principal=me, mode=mode) as client:
            if without == "credential":
                yield client
            else:
                async with open_task(client, f"task-{agent}", purpose="bench"):
                    yield client

    def close(self) -> None:
        for auditor in self.auditors:
            auditor.close()


def _allow(ctx: GovContext) -> Decision:
    return Decision.allow("bench-allow")


def _numbered(i: int) -> Callable[[int], Awaitable[int]]:
    async def numbered(x: int) -> int:
        return x + i

    return numbered


def make_server(variant: str, stack: Stack, *, tools: int = 0, http: bool = False) -> MCPServer:
    """The benchmarked server: ``add`` and ``size`` (a 1 MB argument), plus ``tools`` more."""
    finish: Callable[[MCPServer, Sequence[str]], None] | None = None
    if variant.startswith("full"):
        server, finish = stack.full_server(f"bench-{variant}", http=http, without=variant.partition("-")[2])
    else:
        server = MCPServer(f"bench-{variant}")

    @server.tool()
    async def add(a: int, b: int) -> int:
        return a + b

    @server.tool()
    async def size(blob: str) -> int:
        return len(blob)

    names = ["add", "size"]
    for i in range(tools):
        name = f"tool_{i:04d}"

        server.add_tool(_numbered(i), name=name, description=f"tool number {i}")
        names.append(name)
    if variant == "hooks":
        hooks = Hooks()

        hooks.register("*", _allow, kind="tool")
        # The callback counts the events by type and keeps the latest, as a metrics callback
        # would: holding thousands of events alive would add the garbage collector's full
        # collections of them to whichever batch happens to trigger one.
        counts: dict[str, int] = {}
        latest: list[AuditEvent] = []

        def keep(event: AuditEvent) -> None:
            counts[event.type] = counts.get(event.type, 0) + 1
            latest[:] = [event]

        govern(server, hooks, audit=keep)
    elif finish is not None:
        finish(server, names)
    return server


def opener(variant: str, target: Any, mode: str, stack: Stack) -> AbstractAsyncContextManager[Client]:
    if variant.startswith("full"):
        return stack.client(target, mode, without=variant.partition("-")[2])
    return Client(target, mode=mode)


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Sample:
    calls: int
    wall: float
    cpu: float
    latencies_ns: list[int]
    switches: int = 0  # the process's context switches during the batch (threads handing the GIL over)
    collecting: float = 0.0  # seconds the garbage collector ran during the batch (any thread)
    full_collections: int = 0  # collections of the oldest generation (the whole heap) during the batch

    @property
    def rate(self) -> float:
        return self.calls / self.wall


async def run_batch(
    client: Client, call: Call, calls: int, concurrency: int, settle: Callable[[], Awaitable[None]] | None = None
) -> Sample:
    """``calls`` calls; then ``settle`` (e.g. waiting for the audit worker to write what the batch
    queued), inside the batch's wall and CPU time but not in any call's latency."""
    latencies: list[int] = []
    clock = time.perf_counter_ns
    switches0 = context_switches()
    collector = _CollectorClock.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if concurrency <= 1:
        for _ in range(calls):
            t = clock()
            await call(client)
            latencies.append(clock() - t)
    else:
        remaining = [calls]

        async def worker() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                t = clock()
                await call(client)
                latencies.append(clock() - t)

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
    if settle is not None:
        await settle()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    collecting, full = collector.stop()
    return Sample(calls, wall, cpu, latencies, context_switches() - switches0, collecting, full)


class _CollectorClock:
    """Time the garbage collector spends during a batch (``gc.callbacks``), and its full collections."""

    def __init__(self) -> None:
        self.total = 0.0
        self.full = 0
        self._began = 0.0

    @classmethod
    def start(cls) -> _CollectorClock:
        clock = cls()
        gc.callbacks.append(clock._observe)
        return clock

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        self.total += time.perf_counter() - self._began
        if info.get("generation") == 2:
            self.full += 1

    def stop(self) -> tuple[float, int]:
        gc.callbacks.remove(self._observe)
        return self.total, self.full


def context_switches() -> int:
    """The process's voluntary and involuntary context switches so far (0 where not counted).

    A count, not a time: it does not depend on how busy the machine is. Each time a thread
    (such as an audit queue's worker) takes the interpreter lock from the event loop's thread,
    both pay a switch."""
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:  # pragma: no cover - Windows
        return 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int(usage.ru_nvcsw + usage.ru_nivcsw)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Result:
    """Per variant, the samples of every batch (same index = same batch round)."""

    name: str
    samples: dict[str, list[Sample]]

    def ratios(self, variant: str) -> list[float]:
        return [v.rate / b.rate for v, b in zip(self.samples[variant], self.samples["bare"], strict=True)]

    def cpu_ratios(self, variant: str) -> list[float]:
        """Bare's CPU time per call over the variant's, per batch: what the calls/s ratio is on a
        machine where this process has a core to itself (time spent waiting for one is left out)."""
        return [
            (b.cpu / b.calls) / (v.cpu / v.calls) if v.cpu > 0 else math.nan
            for v, b in zip(self.samples[variant], self.samples["bare"], strict=True)
        ]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for variant, samples in self.samples.items():
            latencies = [ns / 1000 for s in samples for ns in s.latencies_ns]
            calls = sum(s.calls for s in samples)
            entry: dict[str, Any] = {
                "p50_us": pct(latencies, 0.5),
                "p99_us": pct(latencies, 0.99),
                "calls_per_s": calls / sum(s.wall for s in samples),
                "cpu_us_per_call": 1e6 * sum(s.cpu for s in samples) / calls,
                "switches_per_call": sum(s.switches for s in samples) / calls,
                "gc_us_per_call": 1e6 * sum(s.collecting for s in samples) / calls,
                "full_collections": sum(s.full_collections for s in samples),
            }
            if variant != "bare":
                r = self.ratios(variant)
                entry["ratio"] = {"p10": pct(r, 0.1), "p50": pct(r, 0.5), "p90": pct(r, 0.9)}
                c = self.cpu_ratios(variant)
                entry["cpu_ratio"] = {"p10": pct(c, 0.1), "p50": pct(c, 0.5), "p90": pct(c, 0.9)}
            out[variant] = entry
        return out


async def paired(
    name: str,
    clients: dict[str, Client],
    call: Call,
    *,
    batches: int,
    batch: int,
    concurrency: int = 1,
    patches: dict[str, Callable[[], AbstractContextManager[None]]] | None = None,
    settle: dict[str, Callable[[], Awaitable[None]]] | None = None,
) -> Result:
    """Alternate the variants every batch (rotating the order), after one warm-up batch each.
    A variant with a patch runs its batches inside it (and only its own); one with a ``settle``
    step ends each batch with it (timed with the batch)."""
    order = list(clients)
    patches = patches or {}
    settle = settle or {}

    async def one(variant: str) -> Sample:
        with patches.get(variant, nullcontext)():
            return await run_batch(clients[variant], call, batch, concurrency, settle.get(variant))

    for variant in order:
        await one(variant)
    samples: dict[str, list[Sample]] = {v: [] for v in order}
    for i in range(batches):
        k = i % len(order)
        for variant in order[k:] + order[:k]:
            samples[variant].append(await one(variant))
    return Result(name, samples)


VERDICTS: list[str] = []


def verdict(label: str, value: float, target: float, *, at_least: bool, spread: str = "", unit: str = "") -> None:
    ok = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    line = f"{'MET   ' if ok else 'MISSED'} {label} {sign} {target:g}{unit}: {value:.3g}{unit}{spread}"
    VERDICTS.append(line)
    print("  " + line)


def print_result(result: Result, targets: dict[str, float]) -> dict[str, Any]:
    summary = result.summary()
    print(f"\n{result.name}")
    header = (
        f"{'variant':<15} {'p50 us':>9} {'p99 us':>9} {'calls/s':>9} {'CPU us/call':>12} {'sw/call':>7}"
        f" {'GC us/call':>10} {'full GCs':>8}"
    )
    print(f"  {header}   ratio to bare p10 .. p50 .. p90")
    for variant, s in summary.items():
        ratio, cpu = s.get("ratio"), s.get("cpu_ratio")
        spread = (
            f"   {ratio['p10']:.3f} .. {ratio['p50']:.3f} .. {ratio['p90']:.3f}  (by CPU time {cpu['p50']:.3f})"
            if ratio and cpu
            else ""
        )
        print(
            f"  {variant:<15} {s['p50_us']:9.1f} {s['p99_us']:9.1f} {s['calls_per_s']:9.0f} "
            f"{s['cpu_us_per_call']:12.1f} {s.get('switches_per_call', 0.0):7.2f}"
            f" {s.get('gc_us_per_call', 0.0):10.1f} {s.get('full_collections', 0):8d}{spread}"
        )
    for variant, target in targets.items():
        r = summary[variant]["ratio"]
        c = summary[variant]["cpu_ratio"]
        spread = (
            f" (p10 {r['p10']:.3f} .. p90 {r['p90']:.3f}; by CPU time {c['p50']:.3f}, {c['p10']:.3f} .. {c['p90']:.3f})"
        )
        verdict(f"{result.name}: {variant} / bare", r["p50"], target, at_least=True, spread=spread)
    return summary


async def add_call(client: Client) -> Any:
    return await client.call_tool("add", {"a": 1, "b": 2})


# --- scenarios --------------------------------------------------------------------------------


async def in_process(stack: Stack, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {}
    servers = {v: make_server(v, stack) for v in VARIANTS}
    async with AsyncExitStack() as exits:
        clients = {v: await exits.enter_async_context(opener(v, servers[v], mode, stack)) for v in VARIANTS}
        targets = {"hooks": TARGET_HOOKS_INPROC, "full": TARGET_FULL_INPROC}
        label = "2026-07-28" if mode == "auto" else "legacy"
        seq = await paired(f"in-process {label}, sequential", clients, add_call, batches=args.batches, batch=args.batch)
        report["sequential"] = print_result(seq, targets)
        conc = await paired(
            f"in-process {label}, {args.concurrency} concurrent on one session",
            clients,
            add_call,
            batches=args.batches,
            batch=max(args.batch, 4 * args.concurrency),
            concurrency=args.concurrency,
        )
        report["concurrent"] = print_result(conc, targets)
    return report


async def over_http(stack: Stack, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {}
    servers = {v: make_server(v, stack, http=True) for v in VARIANTS}
    async with AsyncExitStack() as exits:
        urls = {v: await exits.enter_async_context(serve_http(servers[v].streamable_http_app())) for v in VARIANTS}
        clients = {v: await exits.enter_async_context(opener(v, f"{urls[v]}/mcp", mode, stack)) for v in VARIANTS}
        label = "2026-07-28" if mode == "auto" else "legacy"
        targets = {"full": TARGET_FULL_HTTP}
        batches = max(2, args.batches // 2)
        seq = await paired(
            f"Streamable HTTP {label}, sequential", clients, add_call, batches=batches, batch=args.http_batch
        )
        report["sequential"] = print_result(seq, targets)
        conc = await paired(
            f"Streamable HTTP {label}, {args.http_concurrency} concurrent",
            clients,
            add_call,
            batches=batches,
            batch=max(args.http_batch, 2 * args.http_concurrency),
            concurrency=args.http_concurrency,
        )
        report["concurrent"] = print_result(conc, targets)
    return report


# Identity is not separable this way: without it the credential check alone costs more.
COMPONENTS = ("audit", "policy", "credential")


async def components(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Where the full stack's added time goes: the full stack next to variants with one part
    left out, in the same paired batches (in-process, 2026-07-28, sequential). A part's share
    is (full - without it) / (full - bare), per batch."""
    variants = ("bare", "full", *(f"full-{c}" for c in COMPONENTS))
    servers = {v: make_server(v, stack) for v in variants}
    async with AsyncExitStack() as exits:
        clients = {v: await exits.enter_async_context(opener(v, servers[v], "auto", stack)) for v in variants}
        result = await paired(
            "components of the full stack (in-process 2026-07-28)",
            clients,
            add_call,
            batches=args.batches,
            batch=args.batch,
        )
    summary = print_result(result, {})
    # CPU time per call: on a shared machine, time spent waiting for a core is noise here.
    per_call = {v: [s.cpu / s.calls * 1e6 for s in samples] for v, samples in result.samples.items()}
    added = [f - b for f, b in zip(per_call["full"], per_call["bare"], strict=True)]
    print(f"  full stack adds {statistics.median(added):.1f} us of CPU time per call over bare (median of batches)")
    shares: dict[str, Any] = {}
    for part in COMPONENTS:
        saved = [f - w for f, w in zip(per_call["full"], per_call[f"full-{part}"], strict=True)]
        share = [s / a for s, a in zip(saved, added, strict=True) if a > 0]
        shares[part] = {"us": statistics.median(saved), "share_p50": pct(share, 0.5)}
        print(
            f"  {part:<11} {statistics.median(saved):7.1f} us/call  share {pct(share, 0.5):6.1%} "
            f"(p10 {pct(share, 0.1):6.1%} .. p90 {pct(share, 0.9):6.1%})"
        )
    return {"summary": summary, "shares": shares}


def added_verdict(result: Result, scale: float, label: str, target: float) -> float:
    """Print ``result`` and the verdict on what the full stack adds over bare per call, times
    ``scale`` (per batch: wall time, with CPU time beside it); returns the median."""
    pairs = list(zip(result.samples["full"], result.samples["bare"], strict=True))
    wall = [(f.wall / f.calls - b.wall / b.calls) * scale for f, b in pairs]
    cpu = [(f.cpu / f.calls - b.cpu / b.calls) * scale for f, b in pairs]
    print_result(result, {})
    med = statistics.median(wall)
    spread = (
        f" (p10 {pct(wall, 0.1):.3g} .. p90 {pct(wall, 0.9):.3g}; by CPU time "
        f"{statistics.median(cpu):.3g}, {pct(cpu, 0.1):.3g} .. {pct(cpu, 0.9):.3g})"
    )
    verdict(label, med, target, at_least=False, spread=spread)
    return med


async def listing_and_size(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """A 1,000-tool listing and a 1 MB argument, full stack against bare, in-process (2026-07-28).

    ``--tools 0`` leaves the listing out and ``--mb-batch 0`` the 1 MB argument; each runs without the other."""
    report: dict[str, Any] = {}
    n = args.tools
    servers = {v: make_server(v, stack, tools=n) for v in ("bare", "full")}
    blob = "x" * 1_000_000
    async with AsyncExitStack() as exits:
        clients = {v: await exits.enter_async_context(opener(v, servers[v], "auto", stack)) for v in servers}

        async def list_call(client: Client) -> Any:
            result = await client.list_tools()
            assert len(result.tools) == n + 2, len(result.tools)
            return result

        async def big_call(client: Client) -> Any:
            result = await client.call_tool("size", {"blob": blob})
            assert result.structured_content == {"result": len(blob)}, "the 1 MB call did not run"
            return result

        # Both servers' registries of 1,000 tools (and everything else built so far) are made
        # permanent for the collector: a listing that large triggers full collections in every
        # variant, and each would otherwise traverse the registries too, a pause far larger than
        # what the listing itself costs, landing in whichever batch runs.
        gc.collect()
        gc.freeze()
        if n > 0:
            lst = await paired(
                f"listing {n + 2} tools", clients, list_call, batches=args.batches, batch=args.list_batch
            )
            label = f"listing {n + 2} tools: full stack added us per entry"
            med = added_verdict(lst, 1e6 / (n + 2), label, TARGET_LIST_US_PER_ENTRY)
            report["listing"] = {"summary": lst.summary(), "added_us_per_entry": med}

        if args.mb_batch > 0:
            # Long arguments are hashed by the audit worker, off the call path: each full batch
            # ends once its audit events are written, so that work is inside the batch's time.
            big = await paired(
                "a 1 MB argument (each batch ends when its audit events are written)",
                clients,
                big_call,
                batches=args.batches,
                batch=args.mb_batch,
                settle={"full": lambda: flush_audit(stack)},
            )
            med = added_verdict(big, 1e3, "a 1 MB argument: full stack added ms per call", TARGET_MB_ARG_MS)
            report["one_mb"] = {"summary": big.summary(), "added_ms": med}
    gc.unfreeze()
    return report


# --- what the core could still gain: measured by emulating a change, in the same batches --------


@contextmanager
def _patched(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    original = owner.__dict__[name]
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextmanager
def no_events_without_sinks() -> Iterator[None]:
    """Emulates: an auditor with no sink builds and delivers no event (the client side here)."""
    import mcpgov._audit as audit_module  # noqa: PLC0415 - patched in this process only

    built = AuditEvent.from_context.__func__  # type: ignore[attr-defined]
    emit = audit_module.Auditor.emit
    constant = AuditEvent.from_context(GovContext(side="client", method="tools/call"), "decision")

    def from_context(cls: Any, ctx: GovContext, *args: Any, **kwargs: Any) -> AuditEvent:
        if ctx.side == "client":
            return constant
        result: AuditEvent = built(cls, ctx, *args, **kwargs)
        return result

    async def skip_empty(self: Any, event: AuditEvent, *, required: bool | None = None) -> None:
        if self._sinks:
            await emit(self, event, required=required)

    with (
        _patched(AuditEvent, "from_context", classmethod(from_context)),
        _patched(audit_module.Auditor, "emit", skip_empty),
    ):
        yield


@contextmanager
def no_client_hash() -> Iterator[None]:
    """Emulates: the client freezes the arguments but hashes them only when something uses the
    hash (a sink, a credential bound to the arguments); here nothing does."""
    import mcpgov._governor as governor_module  # noqa: PLC0415 - patched in this process only

    begin = governor_module.Governor.begin

    async def begin_without_hash(self: Any, method: str, raw_arguments: Any = None, **fields: Any) -> GovContext:
        if self.side != "client":
            result: GovContext = await begin(self, method, raw_arguments, **fields)
            return result
        from mcpgov._arguments import freeze_arguments  # noqa: PLC0415

        arguments = freeze_arguments(raw_arguments, self.limits) if raw_arguments is not None else None
        return GovContext(side=self.side, method=method, audit=self.auditor, arguments=arguments, **fields)

    with _patched(governor_module.Governor, "begin", begin_without_hash):
        yield


WHAT_IF: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "full+no-client-events": no_events_without_sinks,
    "full+no-client-hash": no_client_hash,
}


async def what_if(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Changes recommended in the core, emulated by patching this process during their own
    batches only, next to the full stack as it is (in-process, 2026-07-28, small and 1 MB calls)."""
    report: dict[str, Any] = {}
    blob = "x" * 1_000_000

    async def big_call(client: Client) -> Any:
        return await client.call_tool("size", {"blob": blob})

    for label, call, batch in (("add(a, b)", add_call, args.batch), ("a 1 MB argument", big_call, args.mb_batch)):
        if batch <= 0:
            continue  # left out (--mb-batch 0)
        variants = ("full", *WHAT_IF)
        servers = {v: make_server("full", stack) for v in variants}
        async with AsyncExitStack() as exits:
            clients = {v: await exits.enter_async_context(opener("full", servers[v], "auto", stack)) for v in variants}
            result = await paired(
                f"what the core could gain, {label} (in-process 2026-07-28)",
                clients,
                call,
                batches=args.batches,
                batch=batch,
                patches=WHAT_IF,
            )
        per_call = {v: [x.cpu / x.calls * 1e6 for x in result.samples[v]] for v in variants}
        print(f"\n{result.name} (CPU time per call)")
        print(f"  full stack as it is: {statistics.median(per_call['full']):.1f} us/call")
        gains: dict[str, float] = {}
        for variant in WHAT_IF:
            saved = [f - w for f, w in zip(per_call["full"], per_call[variant], strict=True)]
            gains[variant] = statistics.median(saved)
            print(
                f"  {variant:<24} saves {statistics.median(saved):8.1f} us/call "
                f"(p10 {pct(saved, 0.1):.1f} .. p90 {pct(saved, 0.9):.1f})"
            )
        report[label] = gains
    return report


@contextmanager
def scope_per_decision() -> Iterator[None]:
    """The policy as it decided before ``decide_now``: every decision through ``decide`` under a
    cancel scope (patched in this process during its own batches only)."""
    with _patched(PolicyMiddleware, "decide_now", lambda self, ctx: None):
        yield


async def scope_cost(stack: Stack, args: argparse.Namespace) -> dict[str, float]:
    """What deciding without a cancel scope per decision saves: the full stack next to the same
    stack with a scope per decision, on a 1,000-tool listing and on calls (CPU time)."""
    variants = ("bare", "full", "full-scoped")
    servers = {v: make_server(v.partition("-")[0], stack, tools=args.tools or 1000) for v in variants}
    n = (args.tools or 1000) + 2
    report: dict[str, float] = {}
    async with AsyncExitStack() as exits:
        clients = {
            v: await exits.enter_async_context(opener(v.partition("-")[0], servers[v], "auto", stack)) for v in variants
        }

        async def list_call(client: Client) -> Any:
            return await client.list_tools()

        patches: dict[str, Callable[[], AbstractContextManager[None]]] = {"full-scoped": scope_per_decision}
        for label, call, batch, per in (
            (f"listing {n} tools, per entry", list_call, args.list_batch, n),
            ("add(a, b), per call", add_call, args.batch, 1),
        ):
            result = await paired(label, clients, call, batches=args.batches, batch=batch, patches=patches)
            cpu = {v: [x.cpu / x.calls * 1e6 / per for x in result.samples[v]] for v in variants}
            added = statistics.median(cpu["full"]) - statistics.median(cpu["bare"])
            scoped = statistics.median(cpu["full-scoped"]) - statistics.median(cpu["bare"])
            saved = [a - f for a, f in zip(cpu["full-scoped"], cpu["full"], strict=True)]
            print(
                f"\ncancel scope per decision, {label} (CPU time): full stack adds {added:.1f} us, "
                f"with a scope per decision {scoped:.1f} us; saved {statistics.median(saved):.1f} us "
                f"(p10 {pct(saved, 0.1):.1f} .. p90 {pct(saved, 0.9):.1f})"
            )
            report[label] = statistics.median(saved)
    return report


# --- memory -----------------------------------------------------------------------------------


async def flush_audit(stack: Stack) -> None:
    """Wait until every queued audit sink of the stack has written what it holds."""
    for auditor in stack.auditors:
        await auditor.aflush()


async def open_session(variant: str, server: MCPServer, stack: Stack, exits: AsyncExitStack) -> Client:
    """One session held open on ``exits``, opened the way an application opens it.

    The full session is what each session of an agent holds: its own identity token and
    principal, a ``GovernedClient`` with ``ClientCredentials``, and an open task. It is entered
    directly (not through :meth:`Stack.client`, whose generator frame is the harness's, not a
    cost of the session)."""
    if variant == "bare":
        return await exits.enter_async_context(Client(server, mode="legacy"))
    me = Principal("https://id.bench", "agent-1", tenant=TENANT, auth_method="jwt")
    credentials = ClientCredentials(IssuerTokenSource(stack.credentials), audience=AUDIENCE, ttl=600)
    token = stack.identities.token("agent-1", tenant=TENANT, ttl=3600)
    client = await exits.enter_async_context(
        GovernedClient(server, credentials, identity=token, principal=me, mode="legacy")
    )
    await exits.enter_async_context(open_task(client, "task-agent-1", purpose="bench"))
    return client


async def memory_per_session(stack: Stack, sessions: int) -> dict[str, float]:
    """Traced memory held per open session (client and server side together), bare and full.

    Each variant first opens and closes one session (imports, compiled schemas, the server's
    caches of its tools), then ``sessions`` more are opened, each making one call, and all held
    open while the traced memory is read: what they hold on both sides, over the warm baseline.
    Queued audit events are delivered before the reading (the sink's queue is bounded and
    drains in the background: it is not state of the open sessions).
    """
    out: dict[str, float] = {}
    for variant in ("bare", "full"):
        server = make_server(variant, stack)
        async with AsyncExitStack() as warm:  # warm every cache and import
            await add_call(await open_session(variant, server, stack, warm))
        await flush_audit(stack)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        async with AsyncExitStack() as exits:
            for _ in range(sessions):
                await add_call(await open_session(variant, server, stack, exits))
            await flush_audit(stack)
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        out[variant] = used / sessions / 1024
    added = out["full"] - out["bare"]
    print(f"\nmemory per open session (legacy mode, {sessions} sessions, client and server sides)")
    print(f"  bare {out['bare']:.1f} KB, full {out['full']:.1f} KB")
    verdict("memory per open session: full stack added KB", added, TARGET_SESSION_KB, at_least=False)
    out["added"] = added
    return out


def rss_mb() -> float:
    """The process's resident memory now (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        import resource  # noqa: PLC0415 - POSIX only

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


AGENTS_FILLED = 65_536
"""The largest per-agent state of the full stack: a credential verifier remembers the ids of the
credentials it has recorded as verified, up to 65,536 live ones (the identity verifier keeps
10,000 tokens, the credential verifier 4,096, the revocation list's key memo 4,096)."""


async def agents_plateau(stack: Stack, agents: int, checkpoints: int) -> dict[str, Any]:
    """A full-stack server called by ``agents`` distinct workloads, one call each with its own
    identity token and credential (2026-07-28 mode: every request verified on its own). Every
    per-agent cache is bounded, so once the largest is full the server's memory stops growing.

    Measured on the Python heap with tracemalloc, traced from before the first agent (so an entry
    a bounded cache drops is subtracted when it is freed). The verdict compares high-water marks:
    the heap's peak over the last 30 % of the agents against its peak over the first 70 %, in
    bytes per agent of the tail. Caches that drop a share of their entries when full make a
    sawtooth; their peaks do not rise once they are bounded, and anything kept per agent (even
    one small object, 32 bytes or more) makes the tail's peak rise with every agent. It is judged
    only when the first 70 % of the agents fill the largest cache (:data:`AGENTS_FILLED`); with
    fewer agents the figure is printed as "still filling". The process's resident memory is
    printed too, for information: it moves by whole allocator pages and arenas, a few MB either
    way, so it is no measure of a per-agent cost."""
    server = make_server("full", stack)
    current: dict[str, str] = {}
    me = Principal("https://id.bench", "agent-0", tenant=TENANT, auth_method="jwt")
    step = max(1, agents // checkpoints)
    head = math.ceil(agents * 0.7)
    marks: list[tuple[int, float, float]] = []
    gc.collect()
    base_rss = rss_mb()
    started = time.perf_counter()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        peak_head = 0
        async with GovernedClient(server, identity=lambda: current["token"], principal=me, mode="auto") as client:
            for i in range(agents):
                agent = Principal("https://id.bench", f"agent-{i}", tenant=TENANT, auth_method="jwt")
                current["token"] = stack.identities.token(agent.subject, tenant=TENANT, ttl=3600)
                credential = await stack.credentials.mint(agent, audience=AUDIENCE, tools=("add",), ttl=600)
                meta: Any = {META_CREDENTIAL: credential.token}
                await client.call_tool("add", {"a": i, "b": 1}, meta=meta)
                if i + 1 == head:
                    await flush_audit(stack)
                    peak_head = tracemalloc.get_traced_memory()[1]
                    tracemalloc.reset_peak()
                if (i + 1) % step == 0:
                    await flush_audit(stack)
                    gc.collect()
                    marks.append((i + 1, (tracemalloc.get_traced_memory()[0] - base) / 1e6, rss_mb() - base_rss))
            await flush_audit(stack)
            peak_tail = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    tail_agents = agents - head
    per_agent = (peak_tail - peak_head) / tail_agents if tail_agents > 0 else 0.0
    print(f"\nmemory of a full-stack server under {agents:,} distinct agents ({elapsed:.0f} s, traced)")
    print("  Python heap MB added after n agents: " + "  ".join(f"{n:,}: {mb:.1f}" for n, mb, _ in marks))
    print("  resident MB added (pages, for information): " + "  ".join(f"{n:,}: {mb:.1f}" for n, _, mb in marks))
    print(f"  heap peak: first 70 % {(peak_head - base) / 1e6:.1f} MB, last 30 % {(peak_tail - base) / 1e6:.1f} MB")
    label = "memory under distinct agents: heap peak growth per agent over the last 30 %"
    if head >= AGENTS_FILLED:
        verdict(label, per_agent, TARGET_AGENT_BYTES, at_least=False, unit=" B")
    else:
        filled = math.ceil(AGENTS_FILLED / 0.7)
        print(f"  {label}: {per_agent:.3g} B (not judged: the caches are still filling below {filled:,} agents)")
    return {"marks": marks, "peak_growth_bytes_per_agent": per_agent, "judged": head >= AGENTS_FILLED}


async def revocations_memory(entries: int) -> float:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    store = CompactMemoryStore(maxsize=entries + 1)
    revocations = RevocationList(store, max_ttl=300)
    now = time.time()
    for i in range(entries):
        await store.put(revocations.jti_key(secrets.token_urlsafe(16)), "1", 60 + (now + i) % 240)
    used = (tracemalloc.get_traced_memory()[0] - base) / 1e6
    tracemalloc.stop()
    scaled = used * 1_000_000 / entries
    print(f"\nrevocations: {entries:,} held in {used:.1f} MB ({scaled:.1f} MB per million)")
    verdict("1,000,000 revocations, MB", scaled, TARGET_REVOCATIONS_MB, at_least=False)
    return scaled


# --- the chart --------------------------------------------------------------------------------


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional (dev extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows: list[tuple[str, dict[str, Any]]] = []
    for scenario in ("in-process/auto", "in-process/legacy", "http/auto", "http/legacy"):
        for shape in ("sequential", "concurrent"):
            if scenario in report:
                label = scenario.replace("auto", "2026-07-28") + ("" if shape == "sequential" else " (concurrent)")
                rows.append((label, report[scenario][shape]))
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(rows) + 1.5))
    colours = {"bare": "#999999", "hooks": "#4c72b0", "full": "#dd8452"}
    height = 0.26
    for j, variant in enumerate(VARIANTS):
        ys = [i + (1 - j) * height for i in range(len(rows))]
        xs = [row[variant]["calls_per_s"] for _, row in rows]
        ax.barh(ys, xs, height=height, color=colours[variant], label=variant)
        for y, (_, row) in zip(ys, rows, strict=True):
            ratio = row[variant].get("ratio")
            if ratio:
                ax.text(row[variant]["calls_per_s"], y, f" {ratio['p50']:.2f}", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("calls/s (labels: median ratio to bare within a batch)")
    ax.set_title("mcpgov: calls/s per variant (benchmarks/bench_session.py)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    if path.suffix == ".svg":  # no timestamp: the committed chart changes only with its figures
        fig.savefig(path, format="svg", metadata={"Date": None})
    else:
        fig.savefig(path)
    print(f"\nchart written to {path}")


# --- main -------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp))
        try:
            for mode in ("auto", "legacy"):
                report[f"in-process/{mode}"] = await in_process(stack, mode, args)
            if args.http_batch > 0:
                for mode in ("auto", "legacy"):
                    report[f"http/{mode}"] = await over_http(stack, mode, args)
            if args.components:
                report["components"] = await components(stack, args)
            if args.what_if:
                report["what_if"] = await what_if(stack, args)
            if args.scope_cost:
                report["scope_cost"] = await scope_cost(stack, args)
            if args.tools > 0 or args.mb_batch > 0:
                report["listing_and_size"] = await listing_and_size(stack, args)
            if args.sessions > 0:
                report["memory_per_session_kb"] = await memory_per_session(stack, args.sessions)
            if args.agents > 0:
                report["agents"] = await agents_plateau(stack, args.agents, 10)
            if args.revocations > 0:
                report["revocations_mb_per_million"] = await revocations_memory(args.revocations)
        finally:
            stack.close()
    print("\nverdicts")
    for line in VERDICTS:
        print("  " + line)
    if args.chart:
        chart(report, Path(args.chart))
    return report


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=30, help="paired batches per scenario")
    parser.add_argument("--batch", type=int, default=100, help="calls per batch in-process")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent callers in-process")
    parser.add_argument("--http-batch", type=int, default=100, help="calls per batch over HTTP (0: skip HTTP)")
    parser.add_argument("--http-concurrency", type=int, default=20)
    parser.add_argument("--tools", type=int, default=1000, help="extra tools in the listing (0: skip)")
    parser.add_argument("--list-batch", type=int, default=5, help="listings per batch")
    parser.add_argument("--mb-batch", type=int, default=5, help="1 MB calls per batch")
    parser.add_argument("--sessions", type=int, default=200, help="open sessions measured (0: skip)")
    parser.add_argument("--agents", type=int, default=100_000, help="distinct agents in the soak (0: skip)")
    parser.add_argument("--revocations", type=int, default=1_000_000, help="(0: skip)")
    parser.add_argument("--components", action="store_true", help="also split the full stack's cost by part")
    parser.add_argument("--what-if", action="store_true", help="also measure changes recommended in the core")
    parser.add_argument("--scope-cost", action="store_true", help="also measure a cancel scope per decision")
    parser.add_argument("--only-inprocess", action="store_true", help="skip everything but the in-process scenarios")
    parser.add_argument("--chart", default="", help="write a chart of calls/s per variant (svg/png)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--chart-from", default="", help="only draw the chart, from the output of a --json run")
    parser.add_argument("--smoke", action="store_true", help="a quick pass of every section (for CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batches, args.batch, args.concurrency = 2, 20, 10
        args.http_batch, args.http_concurrency = 10, 5
        args.tools, args.list_batch, args.mb_batch = 50, 1, 1
        args.sessions, args.agents, args.revocations = 5, 50, 2000
    if args.only_inprocess:
        args.http_batch = args.tools = args.mb_batch = args.sessions = args.agents = args.revocations = 0
        args.components = args.what_if = args.scope_cost = False
    return args


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    arguments = parse()
    if arguments.chart_from:  # redraw the chart from the JSON of an earlier run (its last lines)
        text = Path(arguments.chart_from).read_text()
        chart(json.loads(text[text.index("\n{") + 1 :]), Path(arguments.chart or "docs/performance.svg"))
        sys.exit(0)
    figures = anyio.run(main, arguments)
    if arguments.json:
        json.dump(figures, sys.stdout, indent=2, default=str)
        print()
