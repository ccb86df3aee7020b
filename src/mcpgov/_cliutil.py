"""What every ``mcpgov`` command shares: one way to report bad input, and the lazily loading command group."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import IO, Any, TypeVar

import click

from mcpgov.audit._printable import printable

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "BadInput", "LazyGroup", "choice_option"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class BadInput(click.ClickException):
    """Bad input (a file, an option, a case): one line ``error: ...`` on stderr, exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        # The message may quote what a server, a client or a file said: shown escaped, on one line.
        super().__init__(printable(" ".join(message.split())))

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: <message>`` on one line."""
        click.echo(f"error: {self.format_message()}", err=True)


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when they are run (or their help shown).

    Args:
        lazy_commands: name -> (``module:attribute``, one-line help), as ``mcpgov.cli._COMMANDS``.
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


_F = TypeVar("_F", bound=Callable[..., Any])


def choice_option(*names: str, choices: Sequence[str], help: str | None = None) -> Callable[[_F], _F]:  # noqa: A002 - click's own name
    """A command option taking one of ``choices``, the first by default (shown in ``--help``).

    ``names`` as for :func:`click.option` (``"--format", "fmt"``).
    """
    return click.option(*names, type=click.Choice(list(choices)), default=choices[0], show_default=True, help=help)
