"""The ``mcpgov`` command.

Each area adds its subgroup with one ``main.add_command(...)`` line below.
"""

from __future__ import annotations

import click

from mcpgov import __version__
from mcpgov.audit._cli import audit
from mcpgov.pinning._cli import pin

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcpgov")
def main() -> None:
    """mcpgov: governed MCP sessions (identity, policy, credentials, audit)."""


main.add_command(audit)
main.add_command(pin)


if __name__ == "__main__":  # pragma: no cover - `python -m mcpgov.cli`
    main()
