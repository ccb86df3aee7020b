"""Start-up cost of the ``mcpgov`` command: import time (``-X importtime``), wall and CPU time.

Each command runs in a fresh interpreter, as a user runs it. The commands are interleaved round
by round (paired batches), so a busy machine slows them all alike; the median of the rounds is
reported. ``import mcp`` (the SDK alone) is measured beside them for scale. The budget for
``mcpgov --help`` and ``mcpgov audit verify`` is 0.3 s of CPU time (wall time on a shared,
busy machine measures the machine; both are printed).

Run:  python benchmarks/bench_cli.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 0.3


def _audit_log(directory: Path) -> Path:
    from mcpgov import AuditEvent, GovContext  # noqa: PLC0415 - the benchmark's own setup
    from mcpgov.audit import JsonlSink  # noqa: PLC0415

    path = directory / "audit.jsonl"
    sink = JsonlSink(path)
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="read_file", tenant="acme")
    for i in range(100):
        sink(AuditEvent.from_context(ctx, "decision", effect="allow", rule=f"rule-{i}"))
    sink.close()
    return path


def _import_ms(stderr: str) -> float:
    """Total import time: the sum of the cumulative times of the top-level imports of ``-X importtime``."""
    total = 0
    for line in stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        if not fields[2].startswith("  "):  # nested imports are indented under their importer
            total += int(fields[1])
    return total / 1000


def _run(argv: list[str], *, importtime: bool) -> tuple[float, float, float]:
    """(wall s, CPU s, import ms) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, *(["-X", "importtime"] if importtime else []), *argv],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{argv} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return wall, cpu, _import_ms(done.stderr) if importtime else 0.0


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = _audit_log(Path(tmp))
        commands = {
            "mcpgov --help": ["-m", "mcpgov.cli", "--help"],
            "mcpgov audit verify": ["-m", "mcpgov.cli", "audit", "verify", str(log)],
            "mcpgov keys --help": ["-m", "mcpgov.cli", "keys", "--help"],
            "mcpgov policy --help": ["-m", "mcpgov.cli", "policy", "--help"],
            "mcpgov pin --help": ["-m", "mcpgov.cli", "pin", "--help"],
            "python -c pass": ["-c", "pass"],
            "python -c 'import mcp'": ["-c", "import mcp"],
        }
        for argv in commands.values():  # warm the file cache once
            _run(argv, importtime=False)
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, argv in commands.items():
                wall, cpu, _ = _run(argv, importtime=False)
                _, _, imported = _run(argv, importtime=True)
                results[name].append((wall, cpu, imported))
    print(f"CLI start-up, median of {rounds} interleaved rounds (budget {BUDGET_S} s CPU for --help and audit verify)")
    print(f"{'command':28} {'wall s':>8} {'cpu s':>8} {'imports ms':>11}")
    for name, runs in results.items():
        wall, cpu, imported = (statistics.median(r[i] for r in runs) for i in range(3))
        flag = ""
        if name in ("mcpgov --help", "mcpgov audit verify"):
            flag = "  ok" if cpu <= BUDGET_S else "  OVER BUDGET"
        print(f"{name:28} {wall:8.3f} {cpu:8.3f} {imported:11.1f}{flag}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    main(parser.parse_args().rounds)
