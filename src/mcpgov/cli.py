"""The ``mcpgov`` command.

Every subcommand is loaded lazily: this module imports only ``click`` and the table below, so
``mcpgov --help`` and commands that never talk to a server (``audit verify``, ``keys``,
``policy validate``) start without importing the MCP SDK or any other heavy dependency.

To add a subcommand, add ONE line to ``_COMMANDS``::

    "name": ("mcpgov.area._cli:group_object", "One-line help shown by `mcpgov --help`."),

and keep the module it names light at import time: import ``mcp``, pydantic models, crypto or
HTTP clients inside the command functions that use them (``# noqa: PLC0415``), never at the top
of a CLI module. ``tests/test_cli_speed.py`` runs every command's ``--help`` in a subprocess and
fails when one of them imports the SDK; ``benchmarks/bench_cli.py`` measures start-up time.
"""

from __future__ import annotations

import click

from mcpgov import __version__
from mcpgov._cliutil import LazyGroup as _LazyGroup
from mcpgov._public import lazy_names as _lazy_names
from mcpgov._public import retired as _retired

__all__ = ["main"]

_COMMANDS: dict[str, tuple[str, str]] = {
    "audit": ("mcpgov.audit._cli:audit", "Verify and query mcpgov audit logs (hash-chained JSON Lines files)."),
    "demo": ("mcpgov._demo:demo", "Run a governed MCP session in this process and print its audit trail."),
    "gateway": (
        "mcpgov.gateway._cli:gateway",
        "Run a governed MCP gateway in front of the upstream servers of a configuration file.",
    ),
    "keys": ("mcpgov._keys_cli:keys", "Signing keys (Ed25519 or ES256): generate, print the public JWKS."),
    "pin": ("mcpgov.pinning._cli:pin", "Pin server manifests: snapshot, diff, approve, check."),
    "policy": ("mcpgov.policy._cli:policy", "Test, validate and explain policies (YAML/JSON, or Cedar)."),
}
"""Subcommand name -> (``module:attribute`` of its click command, the one-line help)."""


@click.group(
    cls=_LazyGroup,
    lazy_commands=_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="mcpgov")
@click.option(
    "--color/--no-color",
    default=None,
    help="Force colour and tables on or off (default: on when writing to a terminal).",
)
@click.pass_context
def main(ctx: click.Context, color: bool | None) -> None:
    """mcpgov: governed MCP sessions (identity, policy, credentials, audit).

    Output has colour and tables on a terminal and is plain otherwise. Errors are one line on
    stderr; exit status 2 means bad input, 1 a failed check.
    """
    if color is not None:
        ctx.color = color


# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    **_retired(
        {
            "mcpgov.cli:_COMMANDS": ("COMMANDS",),
            "mcpgov._cliutil": ("LazyGroup",),
        }
    ),
}

__getattr__ = _lazy_names(__name__, {}, _DEPRECATED)


if __name__ == "__main__":  # pragma: no cover - `python -m mcpgov.cli`
    main()
