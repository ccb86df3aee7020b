"""Where the governed session's per-call cost goes, measured inside a live in-process session.

Runs the same governed server as bench_session.py (one allow hook, one audit callback) with one
stage at a time replaced by a constant, next to the bare SDK and the full governed session, and
prints each stage's share of the added cost: building the audit events, delivering them,
freezing and hashing the arguments, and the hook. Stages are patched in this process only.

Run:  python benchmarks/bench_session_stages.py [--calls 2000] [--rounds 5]

Each variant's fastest round is used; the stages' shares need not add up to exactly 100 %.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from bench_session import calls_per_second, make_server

import mcpgov._audit as audit_module
import mcpgov._governor as governor_module
from mcpgov import AuditEvent, Decision, GovContext, Hooks

_DECISION = Decision.allow("bench-allow")
_EVENT = AuditEvent.from_context(GovContext(side="server", method="tools/call"), "decision")


async def _no_emit(self: Any, event: Any, *, required: bool | None = None) -> None:
    return None


async def _constant_decision(self: Any, ctx: Any) -> Decision:
    return _DECISION


def _constant_event(cls: Any, *args: Any, **kwargs: Any) -> AuditEvent:
    return _EVENT


STAGES: dict[str, tuple[Any, str, Any]] = {
    "build the audit events": (AuditEvent, "from_context", classmethod(_constant_event)),
    "deliver the audit events": (audit_module.Auditor, "emit", _no_emit),
    "freeze and hash the arguments": (governor_module, "freeze_and_hash", lambda raw, limits: (raw, None)),
    "decide (the hook)": (Hooks, "evaluate", _constant_decision),
}


@contextmanager
def without(stage: str | None) -> Iterator[None]:
    if stage is None:
        yield
        return
    owner, name, replacement = STAGES[stage]
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


async def per_call(governed: bool, stage: str | None, calls: int) -> float:
    with without(stage):
        server, _ = make_server(governed)
        return 1e6 / await calls_per_second(server, "auto", calls)


async def main(calls: int, rounds: int) -> None:
    variants: list[tuple[str, Callable[[], Any]]] = [
        ("bare SDK", lambda: per_call(False, None, calls)),
        ("governed", lambda: per_call(True, None, calls)),
        *((f"governed without: {s}", (lambda s=s: per_call(True, s, calls))) for s in STAGES),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(rounds):
        for name, run in variants:
            samples[name].append(await run())
    # The fastest round of each variant: interference from the rest of the machine only adds time.
    us = {name: min(values) for name, values in samples.items()}
    added = us["governed"] - us["bare SDK"]
    print(f"bare SDK {us['bare SDK']:.1f} us/call, governed {us['governed']:.1f} us/call, added {added:.1f} us")
    for stage in STAGES:
        share = us["governed"] - us[f"governed without: {stage}"]
        print(f"  {stage:<32} {share:5.1f} us/call  ({share / added:5.0%} of the added cost)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    anyio.run(main, args.calls, args.rounds)
