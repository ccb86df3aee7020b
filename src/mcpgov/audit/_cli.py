"""``mcpgov audit``: verify a hash-chained log and show what happened."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from mcpgov._cliutil import BadInput

if TYPE_CHECKING:
    from mcpgov._audit import AuditEvent

__all__ = ["audit"]

_STYLE = {
    "allow": "green",
    "completed": "green",
    "deny": "red",
    "failed": "red",
    "cancelled": "yellow",
    "require_approval": "yellow",
}


def _check_files(files: Sequence[str]) -> None:
    for name in files:
        if not os.path.isfile(name):
            reason = "is a directory" if os.path.isdir(name) else "no such file"
            raise BadInput(f"cannot read {name}: {reason}")


def _styled(event: AuditEvent, line: str) -> str:
    color = _STYLE.get(event.effect or event.outcome or "")
    return click.style(line, fg=color) if color else line


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def audit() -> None:
    """Verify and query mcpgov audit logs (hash-chained JSON Lines files)."""


@audit.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--partial", is_flag=True, help="Accept a chain that starts mid-way (older files archived).")
@click.option("--head", metavar="HASH", help="Expected hash of the last line (detects lines removed from the end).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing; only the exit status tells.")
def verify(files: tuple[str, ...], partial: bool, head: str | None, quiet: bool) -> None:
    """Check the hash chain of an audit log given as one or more files (any order).

    Detects an edited, deleted, inserted or reordered line, and says where. Exit status: 0 when
    the chain is intact, 1 when a problem was found, 2 on a usage error.
    """
    from mcpgov.audit._jsonl import verify_chain  # noqa: PLC0415 - commands load what they use (a fast CLI)

    _check_files(files)
    try:
        report = verify_chain(files, partial=partial, head=head)
    except OSError as exc:
        raise BadInput(f"cannot read {exc.filename}: {exc.strerror}") from None
    if report.ok:
        if not quiet:
            span = f"seq {report.first_seq}..{report.last_seq}" if report.first_seq is not None else "empty"
            click.echo(f"OK: {report.lines} line(s) in {len(report.files)} file(s), {span}, head {report.head}")
        return
    if not quiet:
        for problem in report.problems:
            click.echo(click.style(str(problem), fg="red"))
        click.echo(
            f"FAILED: {len(report.problems)} problem(s) in {report.lines} line(s) of {len(report.files)} file(s)"
        )
    raise SystemExit(1)


@audit.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--task", help="Only this task; prints the task's trail (requests, decisions, approvals, credentials).")
@click.option("--principal", help="Only this caller (issuer#subject, or the subject alone).")
@click.option("--tenant", help="Only this tenant.")
@click.option("--tool", help="Only this tool, prompt or resource.")
@click.option("--credential", help="Only events naming this credential id.")
@click.option("--type", "types", multiple=True, help="Only these event types (repeatable; 'approval.' for a family).")
@click.option("--json", "as_json", is_flag=True, help="Print matching events as JSON Lines.")
@click.option("--flat", is_flag=True, help="With --task: one event per line instead of grouped by request.")
def show(
    *,
    files: tuple[str, ...],
    task: str | None,
    principal: str | None,
    tenant: str | None,
    tool: str | None,
    credential: str | None,
    types: tuple[str, ...],
    as_json: bool,
    flat: bool,
) -> None:
    """Print events from audit log files, filtered; with --task, that task's trail.

    Output is plain text when not writing to a terminal. Does not check the chain: run
    `mcpgov audit verify` for that.
    """
    from mcpgov.audit._codec import event_to_dict  # noqa: PLC0415 - commands load what they use (a fast CLI)
    from mcpgov.audit._query import (  # noqa: PLC0415
        EventFilter,
        category,
        format_event,
        iter_lines,
        read_events,
        task_trail,
    )

    _check_files(files)
    skipped: list[str] = []
    try:
        events = read_events(files, skipped=skipped)
    except OSError as exc:
        raise BadInput(f"cannot read {exc.filename}: {exc.strerror}") from None
    chosen = EventFilter(
        task=task, principal=principal, tenant=tenant, tool=tool, credential=credential, types=types
    ).select(events)
    if as_json:
        for event in chosen:
            click.echo(json.dumps(event_to_dict(event), sort_keys=True, ensure_ascii=False))
    elif task is not None and not flat:
        trail = task_trail(chosen, task)
        if not trail.events:
            click.echo(f"task {task}: no matching events")
        else:
            for item, line in iter_lines(trail):
                click.echo(_styled(item, line) if item is not None else click.style(line, bold=True))
    else:
        for event in chosen:
            click.echo(_styled(event, f"[{category(event)}] {format_event(event)}"))
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable line(s): {', '.join(skipped[:5])}", err=True)
