"""Rename the confusing public names across the repository (re-runnable: it only rewrites old names).

    python tools/rename_surface.py [ROOT]

Each old name keeps working for one release through its package's ``_DEPRECATED`` table, whose
lines (``**_renamed(...)`` entries included), the changelog, and the test that reads old names on
purpose this leaves alone.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# (old, new, public module, files the rename is limited to: None for everywhere)
RENAMES: list[tuple[str, str, str, tuple[str, ...] | None]] = [
    ("GovernanceMiddleware", "ServerGovernance", "mcpgov", None),
    ("OIDCIssuer", "OIDCTrust", "mcpgov.identity", None),
    ("IdentityProvider", "IdentitySource", "mcpgov.identity", None),
    # mcpgov.identity.IdentityVerifier (the class) keeps its name; the exchange's callable type changes.
    (
        "IdentityVerifier",
        "SubjectTokenVerifier",
        "mcpgov.credentials",
        ("src/mcpgov/credentials/_exchange.py", "src/mcpgov/credentials/__init__.py"),
    ),
]

AREAS = ("src", "tests", "docs", "examples", "benchmarks", "README.md")
SKIP = {"tests/test_house_deprecations.py", "tests/vectors/public_api.txt", "tools/rename_surface.py"}
TABLE_LINE = re.compile(r'^\s*("\w+": \("mcpgov|\*\*_renamed\()')  # a line of a _DEPRECATED table


def files(root: Path) -> list[Path]:
    """The text files the renames apply to."""
    found: list[Path] = []
    for area in AREAS:
        path = root / area
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        found += [p for p in candidates if p.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".json"}]
    return [p for p in found if p.relative_to(root).as_posix() not in SKIP]


def rename(text: str, relative: str) -> str:
    """``text`` with every old name that applies to ``relative`` replaced, table lines kept."""
    lines = text.splitlines(keepends=True)
    for old, new, _module, only in RENAMES:
        if only is not None and relative not in only:
            continue
        pattern = re.compile(rf"\b{old}\b")
        lines = [line if TABLE_LINE.match(line) else pattern.sub(new, line) for line in lines]
    return "".join(lines)


def main(root: Path) -> int:
    """Rewrite the files under ``root``; print the ones changed."""
    for path in files(root):
        relative = path.relative_to(root).as_posix()
        text = path.read_text("utf-8")
        renamed = rename(text, relative)
        if renamed != text:
            path.write_text(renamed, "utf-8")
            print(relative)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent))
