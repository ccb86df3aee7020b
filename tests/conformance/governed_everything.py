"""The SDK's everything-server, governed by mcpgov, for the official conformance suite.

``.ci/conform.sh`` runs the suite's server legs against the everything-server of the pinned
``mcp`` sdist twice, bare and through this launcher, and fails on any difference. The server
module is imported from the sdist unchanged and governed in place before it starts::

    python tests/conformance/governed_everything.py --everything-dir DIR --chain allow-all -- --port 3001

``--chain allow-all`` allows every tool, resource, prompt and method; ``--chain targets`` allows
tools, resources and prompts but no other method, so the protocol plumbing defaults
(``logging/setLevel``, ``subscriptions/listen``, methods unknown at the negotiated version)
are what the suite exercises.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from mcpgov import Decision, GovContext, Hooks, govern

CHAINS = ("allow-all", "targets")


def allow(ctx: GovContext) -> Decision:
    """Allow whatever it is asked about."""
    return Decision.allow("conformance:allow")


def chain(name: str) -> Hooks:
    """The hooks of the chain called ``name`` (one of :data:`CHAINS`)."""
    if name not in CHAINS:
        raise ValueError(f"unknown chain {name!r}; expected one of {', '.join(CHAINS)}")
    hooks = Hooks()
    hooks.tool("*")(allow)
    hooks.resource("*")(allow)
    hooks.prompt("*")(allow)
    if name == "allow-all":
        hooks.method("*")(allow)
    return hooks


def load_everything(everything_dir: Path) -> Any:
    """Import ``mcp_everything_server.server`` from the sdist's ``examples/servers/everything-server``."""
    if not (everything_dir / "mcp_everything_server" / "server.py").is_file():
        raise SystemExit(f"error: {everything_dir} does not hold mcp_everything_server/server.py")
    sys.path.insert(0, str(everything_dir))
    return importlib.import_module("mcp_everything_server.server")


def main(argv: list[str] | None = None) -> None:
    """Govern the everything-server with the chosen chain and run it (its own CLI options follow ``--``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--everything-dir", type=Path, required=True, help="the sdist's everything-server folder")
    parser.add_argument("--chain", choices=CHAINS, default="allow-all")
    parser.add_argument("server_args", nargs=argparse.REMAINDER, help="options for the everything-server itself")
    args = parser.parse_args(argv)
    server_args = [a for a in args.server_args if a != "--"]
    everything = load_everything(args.everything_dir)
    govern(everything.mcp, chain(args.chain))
    everything.main(server_args, standalone_mode=True)


if __name__ == "__main__":
    main()
