"""Compare the conformance suite's results for the bare and the governed everything-server.

Each run of ``conformance server -o DIR`` writes one ``DIR/server-<scenario>-<time>/checks.json``
per scenario. This script reads two such folders and fails (exit 1) when any check's status
differs, unless ``known-differences.yml`` lists that exact difference with its reason; a listed
difference that no longer occurs fails too, so the list cannot go stale. A leg with no results,
or with a different set of checks, fails: an empty comparison proves nothing.

    python tests/conformance/compare.py --leg 2026-07-28 BARE_DIR GOVERNED_DIR

``--differing FILE`` writes the scenarios that differ, so that the caller can run them again
one at a time against both servers and compare those runs with ``--only FILE``: a real
difference reproduces, a scenario disturbed by a loaded machine does not.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

KNOWN_DIFFERENCES = Path(__file__).with_name("known-differences.yml")
_RUN_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")

Check = tuple[str, str]
"""(scenario, check id)"""


class ResultsError(Exception):
    """A results folder or the known-differences file cannot be read."""


def load_results(folder: Path) -> dict[Check, str]:
    """Map every (scenario, check id) in ``folder`` to its status (``SUCCESS``, ``FAILURE``...)."""
    results: dict[Check, str] = {}
    for checks_file in sorted(folder.glob("*/checks.json")):
        match = _RUN_DIR.match(checks_file.parent.name)
        if match is None:
            raise ResultsError(f"{checks_file.parent}: not a conformance scenario folder")
        scenario = match["scenario"]
        try:
            checks = json.loads(checks_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ResultsError(f"{checks_file}: cannot read ({exc})") from None
        if not isinstance(checks, list):
            raise ResultsError(f"{checks_file}: expected a list of checks")
        for check in checks:
            if not isinstance(check, Mapping) or not isinstance(check.get("id"), str):
                raise ResultsError(f"{checks_file}: a check without an id")
            key = (scenario, check["id"])
            status = str(check.get("status"))
            # A check reported twice keeps its worst status.
            results[key] = status if results.get(key, "SUCCESS") == "SUCCESS" else results[key]
    if not results:
        raise ResultsError(f"{folder}: no results (did the suite run?)")
    return results


def load_known(path: Path, leg: str, server: str | None = None) -> dict[Check, tuple[str, str]]:
    """The differences ``path`` expects on ``leg`` for ``server``: (scenario, check) -> (bare, governed) status.

    An entry with ``servers`` applies only to the governed servers it names; one without applies
    to every governed server.
    """
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ResultsError(f"{path}: cannot read ({exc})") from None
    entries = data.get("differences") if isinstance(data, Mapping) else None
    if not isinstance(entries, list):
        raise ResultsError(f"{path}: expected a mapping with a 'differences' list")
    known: dict[Check, tuple[str, str]] = {}
    for index, entry in enumerate(entries):
        fields = ("legs", "scenario", "check", "bare", "governed", "reason")
        if not isinstance(entry, Mapping) or any(not entry.get(f) for f in fields):
            raise ResultsError(f"{path}: difference #{index + 1} needs {', '.join(fields)}")
        if not isinstance(entry["legs"], list) or not all(isinstance(leg_name, str) for leg_name in entry["legs"]):
            raise ResultsError(f"{path}: difference #{index + 1}: 'legs' must be a list of strings (quote dates)")
        servers = entry.get("servers")
        if servers is not None and not isinstance(servers, list):
            raise ResultsError(f"{path}: difference #{index + 1}: 'servers' must be a list of server names")
        if leg in entry["legs"] and (servers is None or server in servers):
            known[(entry["scenario"], entry["check"])] = (entry["bare"], entry["governed"])
    return known


def compare(
    bare: Mapping[Check, str], governed: Mapping[Check, str], known: Mapping[Check, tuple[str, str]]
) -> list[tuple[str, str]]:
    """Every problem found, as (scenario, message): unexpected differences, checks only one side
    ran, known differences that no longer occur."""
    problems: list[tuple[str, str]] = []
    for key in sorted(set(bare) | set(governed)):
        scenario, check = key
        if key not in bare or key not in governed:
            side = "governed" if key not in bare else "bare"
            problems.append((scenario, f"{scenario} / {check}: only the {side} server was checked"))
            continue
        pair = (bare[key], governed[key])
        if pair[0] == pair[1]:
            continue
        if known.get(key) == pair:
            continue
        problems.append((scenario, f"{scenario} / {check}: bare {pair[0]}, governed {pair[1]}"))
    for key, pair in sorted(known.items()):
        if (bare.get(key), governed.get(key)) != pair:
            message = f"{key[0]} / {key[1]}: listed in known-differences.yml but no longer differs as listed"
            problems.append((key[0], message))
    return problems


def _only(results: Mapping[Check, Any], scenarios: set[str]) -> dict[Check, Any]:
    return {key: value for key, value in results.items() if key[0] in scenarios}


def main(argv: list[str] | None = None) -> int:
    """Compare two results folders of one leg; print what differs; 0 when they agree."""
    parser = argparse.ArgumentParser(description="compare bare and governed conformance results")
    parser.add_argument("--leg", required=True, help="the leg's protocol version, or 'default'")
    parser.add_argument("--known", type=Path, default=KNOWN_DIFFERENCES)
    parser.add_argument("--server", help="the governed server's name (for entries that name their servers)")
    parser.add_argument("--differing", type=Path, help="write the scenarios that differ here, one a line")
    parser.add_argument("--only", type=Path, help="compare only the scenarios listed in this file")
    parser.add_argument("bare", type=Path)
    parser.add_argument("governed", type=Path)
    args = parser.parse_args(argv)
    try:
        bare, governed = load_results(args.bare), load_results(args.governed)
        known = load_known(args.known, args.leg, args.server)
        if args.only is not None:
            scenarios = set(args.only.read_text(encoding="utf-8").split())
            bare, governed, known = _only(bare, scenarios), _only(governed, scenarios), _only(known, scenarios)
    except (ResultsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = compare(bare, governed, known)
    statuses = Counter(bare.values())
    summary = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
    print(f"leg {args.leg}: {len(bare)} checks on the bare server ({summary}); {len(known)} known differences")
    for _, problem in problems:
        print(f"  DIFFERENT: {problem}", file=sys.stderr)
    if args.differing is not None:
        args.differing.write_text("".join(f"{s}\n" for s in sorted({s for s, _ in problems})), encoding="utf-8")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
