"""What every ``mcpgov`` command shares: one way to report bad input."""

from __future__ import annotations

from typing import IO, Any

import click

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "BadInput"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class BadInput(click.ClickException):
    """Bad input (a file, an option, a case): one line ``error: ...`` on stderr, exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: <message>`` on one line."""
        click.echo(f"error: {self.format_message()}", err=True)
