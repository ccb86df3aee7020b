"""``mcpgov gateway`` in front of the SDK's everything-server, for the official conformance suite.

``.ci/conform.sh`` runs the suite's server legs against the everything-server served directly
and through this gateway (Streamable HTTP front, allow-all chain), and fails on any difference.
The everything-server of ``--everything-dir`` is the gateway's upstream, over Streamable HTTP
(``--upstream-url``) or as a stdio command the gateway starts (``--upstream-stdio``).
Names and URIs are served unprefixed so that the suite finds what it expects::

    python tests/conformance/gateway_everything.py --everything-dir DIR \\
        --upstream-url http://127.0.0.1:3001/mcp -- --port 3002

The upstream is pinned as it is found at start (the registry's pin is its snapshot), and the
front chain gives every request one fixed identity (tenant ``conformance``) and allows it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from mcp.client.stdio import StdioServerParameters

from mcpgov import GovContext, Principal
from mcpgov._chain import CallNext
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.pinning import ServerRegistry, snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere
from tests.conformance.governed_everything import chain, load_everything

TENANT = "conformance"
SUITE = Principal(issuer="conformance", subject="conformance-suite", tenant=TENANT, auth_method="fixed")


async def suite_identity(ctx: GovContext, call_next: CallNext) -> Any:
    """Every request acts for the conformance suite (it sends no identity of its own)."""
    return await call_next(ctx.replace(principal=SUITE, tenant=TENANT))


def stdio_params(everything_dir: Path) -> StdioServerParameters:
    """The everything-server of the sdist as a stdio command."""
    return StdioServerParameters(
        command=sys.executable,
        # Its command line serves Streamable HTTP only; the same server object runs on stdio.
        args=["-c", "from mcp_everything_server.server import mcp; mcp.run('stdio')"],
        env={"PYTHONPATH": str(everything_dir)},
    )


async def build(upstream_url: str | None, everything_dir: Path | None, mode: str) -> Gateway:
    """The gateway over the everything-server, pinned as it is now."""
    target: Any
    connection: dict[str, Any]
    if upstream_url is not None:
        target = upstream_url
        connection = {"url": upstream_url}
    else:
        assert everything_dir is not None
        params = stdio_params(everything_dir)
        target = params
        connection = {"command": params.command, "args": params.args}
    manifest = await snapshot(target)
    entry = {
        "id": "everything",
        "owner": "conformance",
        "tenants": [TENANT],
        "workloads": ["*"],
        **connection,
        "server": {"name": manifest.server.name, "version": f"=={manifest.server.version}"},
        "pin": manifest.model_dump(mode="json", by_alias=True),
    }
    upstream = UpstreamConfig.model_validate(
        {
            "id": "everything",
            "namespace": {"prefix": "", "resource_prefix": ""},
            "start": "eager",
            "mode": mode,
            "env": dict((params.env or {}) if upstream_url is None else {}),
        }
    )
    return Gateway([upstream], ServerRegistry([entry]), suite_identity, chain("allow-all"), name="mcpgov-gateway")


def main(argv: list[str] | None = None) -> None:
    """Build the gateway and serve it over Streamable HTTP on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--everything-dir", type=Path, required=True, help="the sdist's everything-server folder")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--upstream-url", help="the everything-server's Streamable HTTP endpoint")
    where.add_argument("--upstream-stdio", action="store_true", help="start it as a stdio command")
    parser.add_argument(
        "--upstream-mode", choices=("auto", "legacy", "match"), default="match", help="the era spoken to the upstream"
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="-- --port PORT [--log-level LEVEL]")
    args = parser.parse_args(argv)
    served = argparse.ArgumentParser()
    served.add_argument("--port", type=int, required=True)
    served.add_argument("--log-level", default="warning")
    options = served.parse_args([a for a in args.rest if a != "--"])
    gateway = anyio.run(
        build, args.upstream_url, None if args.upstream_url else args.everything_dir, args.upstream_mode
    )
    # Resumable SSE streams on the front, with the event store and retry interval the bare
    # everything-server serves with.
    everything = load_everything(args.everything_dir)
    app = gateway.http_app(event_store=everything.InMemoryEventStore(), retry_interval=100)
    uvicorn.run(app, host="127.0.0.1", port=options.port, log_level=options.log_level)


if __name__ == "__main__":
    main()
