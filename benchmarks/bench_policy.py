"""Decision latency of the built-in policy engine and of Cedar (cedarpy), side by side.

For each policy size (10, 100, 1,000, 10,000 rules), the policy has one allow rule per tool
(tenant + a canonical path condition on an argument) plus a few glob rules; decisions are made
for a rotating set of 100 tools with realistic arguments. The same decisions go through the
Cedar engine with an equivalent policy set. Reported: p50 and p99 per decision, in microseconds,
and whether the targets are met (built-in p50 under 10 us at 100 rules, and at 10,000 rules
under twice that).

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

TARGET_P50_AT_100_US = 10.0


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
        ok = results[100] < TARGET_P50_AT_100_US
        failures += not ok
        print(
            f"target p50 < {TARGET_P50_AT_100_US:.0f}us at 100 rules: {results[100]:.2f}us "
            f"-> {'met' if ok else 'MISSED'}"
        )
    if 100 in results and 10_000 in results:
        limit = 2 * TARGET_P50_AT_100_US
        ok = results[10_000] < limit
        failures += not ok
        print(
            f"target p50 < {limit:.0f}us at 10,000 rules: {results[10_000]:.2f}us "
            f"({results[10_000] / results[100]:.2f}x the 100-rule figure) -> {'met' if ok else 'MISSED'}"
        )
    return failures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--cedar-samples", type=int, default=3_000)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    args = parser.parse_args()
    main(args.samples, args.cedar_samples, [int(s) for s in args.sizes.split(",")])
