"""The ``mcpgov`` command.

Each area adds its subgroup with one ``main.add_command(...)`` line below.
"""

from __future__ import annotations

import click

from mcpgov import __version__
from mcpgov._demo import demo
from mcpgov._keys_cli import keys
from mcpgov.audit._cli import audit
from mcpgov.gateway._cli import gateway
from mcpgov.pinning._cli import pin
from mcpgov.policy._cli import policy

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


main.add_command(audit)
main.add_command(pin)
main.add_command(policy)
main.add_command(keys)
main.add_command(demo)
main.add_command(gateway)


if __name__ == "__main__":  # pragma: no cover - `python -m mcpgov.cli`
    main()
