"""The ``mcpgov`` command.

Every subcommand is loaded lazily: this module imports only ``click`` and the table below, so
``mcpgov --help`` and commands that never talk to a server (``audit verify``, ``keys``,
``policy validate``) start without importing the MCP SDK or any other heavy dependency.

To add a subcommand, add ONE line to :data:`COMMANDS`::

    "name": ("mcpgov.area._cli:group_object", "One-line help shown by `mcpgov --help`."),

and keep the module it names light at import time: import ``mcp``, pydantic models, crypto or
HTTP clients inside the command functions that use them (``# noqa: PLC0415``), never at the top
of a CLI module. ``tests/test_cli_speed.py`` runs every command's ``--help`` in a subprocess and
fails when one of them imports the SDK; ``benchmarks/bench_cli.py`` measures start-up time.
"""

from __future__ import annotations

import importlib

import click

from mcpgov import __version__

__all__ = ["COMMANDS", "LazyGroup", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
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


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when they are run (or their help shown).

    Args:
        lazy_commands: name -> (``module:attribute``, one-line help), as :data:`COMMANDS`.
        **kwargs: passed to :class:`click.Group`.
    """

    def __init__(self, *args: object, lazy_commands: dict[str, tuple[str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every subcommand name, sorted (none is imported)."""
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The subcommand ``cmd_name``, importing its module now."""
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.lazy_commands:
            return command
        module_name, _, attribute = self.lazy_commands[cmd_name][0].partition(":")
        value = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(value, click.Command):  # pragma: no cover - a wrong table entry
            raise TypeError(f"{self.lazy_commands[cmd_name][0]} is not a click command")
        self.add_command(value, cmd_name)
        return value

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the subcommands with their one-line help from the table, importing none of them."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(formatter.width)))
            else:
                rows.append((name, self.lazy_commands[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
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


if __name__ == "__main__":  # pragma: no cover - `python -m mcpgov.cli`
    main()
