"""Decision latency of the built-in policy engine and of Cedar (cedarpy), side by side.

For each policy size (10, 100, 1,000, 10,000 rules), the policy has one allow rule per tool
(tenant + a canonical path condition on an argument) plus a few glob rules; decisions are made
for a rotating set of 100 tools with realistic arguments. The same decisions go through the
Cedar engine with an equivalent policy set. Reported: p50 and p99 per decision, in microseconds,
and whether the targets are met (built-in p50 under 5 us at 100 rules, and at 10,000 rules
under four times that).

Worst case: 100 rules that all apply to one tool, each judging the largest argument a condition
accepts (a path of ``MAX_PATH_LENGTH`` characters full of encodings and look-alikes; a string of
``MAX_CONDITION_STRING`` characters, non-ASCII so every string operator also checks its NFKC
form) with a hostile pattern set (patterns that backtrack exponentially in a backtracking
engine). Reported per decision: wall p50/p99 and CPU time, in batches.

Run:  python benchmarks/bench_policy.py [--samples 20000] [--cedar-samples 3000] [--sizes 10,100,1000,10000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import MappingProxyType
from typing import Any

from mcpgov import GovContext, Principal
from mcpgov.policy import CedarPolicy, Policy, PolicyEngine
from mcpgov.policy._conditions import MAX_CONDITION_STRING, MAX_PATH_LENGTH

TARGET_P50_AT_100_US = 5.0
TARGET_P50_AT_10000_US = 10.0  # the performance issue's figure: p50 at most 10 us at 10,000 rules
HOSTILE_PATTERNS = ["(a+)+$", "(a|aa)+b", "(.*a){20}", "(x+x+)+y", "^(\\w+\\s?)*$", "(a|a)*c", "([a-z]+)*[0-9]"]


def built_in_policy(size: int) -> Policy:
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
            "tenants": ["acme"],
            "tools": [f"tool{i}"],
            "when": {"arguments": {"path": {"path": {"under": ["/data/acme"]}}}},
            "obligations": {"max_credential_ttl": 300},
        }
        for i in range(size - len(rules))
    ]
    return Policy.from_dict({"rules": rules}, source=f"<{size} rules>")


def cedar_text(size: int) -> str:
    parts = [
        '@id("no-admin-tools") forbid(principal, action, resource == Tool::"admin_console");',
        '@id("no-delegated-deletes") forbid(principal, action, resource == Tool::"delete_all") '
        "when { context.delegation_depth >= 2 };",
    ]
    parts += [
        f'@id("r{i}") permit(principal is Principal, action, resource == Tool::"tool{i}") '
        'when { context has tenant && context.tenant == "acme" && context.args has path '
        '&& context.args.path like "/data/acme/*" };'
        for i in range(size - 2)
    ]
    return "\n".join(parts)


def contexts(size: int) -> list[GovContext]:
    principal = Principal("https://idp.acme.example", "agent-7", tenant="acme", claims={"scope": "files:read"})
    return [
        GovContext(
            side="server",
            method="tools/call",
            kind="tool",
            target=f"tool{i % min(size - 2, 100)}",
            action="execute",
            arguments=MappingProxyType({"path": f"/data/acme/reports/{i}.txt"}),
            principal=principal,
            tenant="acme",
        )
        for i in range(100)
    ]


def measure(decide: Any, ctxs: list[GovContext], samples: int) -> tuple[float, float]:
    for c in ctxs:  # warm-up (fills the per-target lookup cache)
        decide(c)
    timings: list[int] = []
    n = len(ctxs)
    perf = time.perf_counter_ns
    for i in range(samples):
        c = ctxs[i % n]
        start = perf()
        decide(c)
        timings.append(perf() - start)
    timings.sort()
    p50 = statistics.median(timings) / 1000
    p99 = timings[int(len(timings) * 0.99) - 1] / 1000
    return p50, p99


def worst_case_policy() -> Policy:
    """100 rules about one tool, each with every expensive operator on the largest arguments."""
    rules: list[dict[str, Any]] = []
    for i in range(100):
        pattern = HOSTILE_PATTERNS[i % len(HOSTILE_PATTERNS)]
        arguments = {
            "path": {"path": {"under": [f"/data/t{i}"]}},
            "text": {"regex": pattern, "not_in": ["\uff41" * 8, f"value-{i}"], "glob": ["*a*b*c*d*"]},
        }
        effect = "deny" if i % 2 else "allow"
        rules.append({"id": f"w{i}", "effect": effect, "tools": ["tool"], "when": {"arguments": arguments}})
    return Policy.from_dict({"rules": rules}, source="<worst case>")


def worst_case_contexts() -> list[GovContext]:
    principal = Principal("https://idp.acme.example", "agent-7", tenant="acme")
    unit = "/data/%252e%252e/\uff0e\uff0e\\\u2025/a%2fb"
    path = ("/data/t1/" + unit * (MAX_PATH_LENGTH // len(unit)))[:MAX_PATH_LENGTH]
    texts = [
        ("a" * (MAX_CONDITION_STRING - 1) + "!"),
        ("\uff41" * (MAX_CONDITION_STRING - 1) + "!"),
        ("a " * (MAX_CONDITION_STRING // 2))[:MAX_CONDITION_STRING],
    ]
    return [
        GovContext(
            side="server",
            method="tools/call",
            kind="tool",
            target="tool",
            action="execute",
            arguments=MappingProxyType({"path": path, "text": text}),
            principal=principal,
            tenant="acme",
        )
        for text in texts
    ]


def measure_worst(decide: Any, ctxs: list[GovContext], batches: int, per_batch: int) -> tuple[float, float, float]:
    """Wall p50/p99 and mean CPU per decision, in microseconds, over interleaved batches."""
    walls: list[float] = []
    cpu_total = 0.0
    count = 0
    for _ in range(batches):
        for c in ctxs:
            wall0, cpu0 = time.perf_counter_ns(), time.process_time_ns()
            for _ in range(per_batch):
                decide(c)
            wall, cpu = time.perf_counter_ns() - wall0, time.process_time_ns() - cpu0
            walls.append(wall / per_batch / 1000)
            cpu_total += cpu / 1000
            count += per_batch
    walls.sort()
    return statistics.median(walls), walls[max(int(len(walls) * 0.99) - 1, 0)], cpu_total / count


def main(samples: int, cedar_samples: int, sizes: list[int]) -> int:
    try:
        CedarPolicy("permit(principal, action, resource);")
        have_cedar = True
    except Exception:  # noqa: BLE001 - report, do not fail, when the cedar extra is absent
        have_cedar = False
    print(f"{'rules':>7}  {'built-in p50':>12} {'p99':>8}   {'cedar p50':>10} {'p99':>8}   {'cedar/built-in':>14}")
    results: dict[int, float] = {}
    for size in sizes:
        engine = PolicyEngine(built_in_policy(size))
        ctxs = contexts(size)
        assert all(engine.decide(c).allowed for c in ctxs), "benchmark decisions must be allows"
        p50, p99 = measure(engine.decide, ctxs, samples)
        results[size] = p50
        line = f"{size:>7}  {p50:>10.2f}us {p99:>6.2f}us"
        if have_cedar:
            cedar = CedarPolicy(cedar_text(size), source=f"<{size} cedar policies>").compile()
            assert all(cedar.decide(c).allowed for c in ctxs), "cedar decisions must agree (allow)"
            c50, c99 = measure(cedar.decide, ctxs, cedar_samples)
            line += f"   {c50:>8.2f}us {c99:>6.2f}us   {c50 / p50:>13.1f}x"
        else:
            line += "   (cedarpy not installed: pip install 'mcpgov[cedar]')"
        print(line)
    failures = 0
    if 100 in results:
        ok = results[100] <= TARGET_P50_AT_100_US
        failures += not ok
        print(
            f"target p50 <= {TARGET_P50_AT_100_US:.0f}us at 100 rules: {results[100]:.2f}us "
            f"-> {'met' if ok else 'MISSED'}"
        )
    if 100 in results and 10_000 in results:
        limit = TARGET_P50_AT_10000_US
        ok = results[10_000] <= limit
        failures += not ok
        print(
            f"target p50 <= {limit:.0f}us at 10,000 rules: {results[10_000]:.2f}us "
            f"({results[10_000] / results[100]:.2f}x the 100-rule figure) -> {'met' if ok else 'MISSED'}"
        )
    engine = PolicyEngine(worst_case_policy())
    ctxs = worst_case_contexts()
    assert all(not engine.decide(c).allowed for c in ctxs), "worst-case inputs must be refused"
    batches = max(samples // 2000, 3)
    p50, p99, cpu = measure_worst(engine.decide, ctxs, batches, 5)
    print(
        f"worst case (100 rules on one tool, {MAX_PATH_LENGTH}-char hostile path, {MAX_CONDITION_STRING}-char "
        f"strings, {len(HOSTILE_PATTERNS)} hostile patterns): p50 {p50:.0f}us p99 {p99:.0f}us cpu {cpu:.0f}us "
        "per decision"
    )
    return failures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--cedar-samples", type=int, default=3_000)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    args = parser.parse_args()
    main(args.samples, args.cedar_samples, [int(s) for s in args.sizes.split(",")])
