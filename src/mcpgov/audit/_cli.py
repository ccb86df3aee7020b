"""``mcpgov audit``: verify a hash-chained log and show what happened."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import click

from mcpgov._audit import AuditEvent
from mcpgov._cliutil import BadInput
from mcpgov._errors import ConfigurationError
from mcpgov.audit._codec import event_to_dict
from mcpgov.audit._jsonl import _iter_file, verify_chain
from mcpgov.audit._query import EventFilter, category, format_event, iter_lines, printable, read_events, task_trail

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
    """Bad input (exit 2) unless every file is readable and at least looks like an audit log."""
    for name in files:
        if not os.path.isfile(name):
            reason = "is a directory" if os.path.isdir(name) else "no such file"
            raise BadInput(f"cannot read {printable(name)}: {reason}")
        try:
            first_problem: str | None = None
            for number, _, record, why in _iter_file(name):
                if record is not None:
                    first_problem = None
                    break
                if first_problem is None:
                    first_problem = f"line {number}: {why}"
        except OSError as exc:
            raise BadInput(f"cannot read {printable(name)}: {exc.strerror or type(exc).__name__}") from None
        if first_problem is not None:
            raise BadInput(f"{printable(name)} is not an mcpgov audit log ({first_problem})")


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
@click.option(
    "--public-key",
    "public_key",
    metavar="KEYFILE",
    help="Check signed checkpoints with this key (the file `mcpgov keys generate` wrote, or its "
    "public JWKS): detects truncation, deleted files and rebuilt chains.",
)
@click.option("--live", is_flag=True, help="The log is still being written: accept lines after the last checkpoint.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing; only the exit status tells.")
def verify(
    files: tuple[str, ...], *, partial: bool, head: str | None, public_key: str | None, live: bool, quiet: bool
) -> None:
    """Check the hash chain of an audit log given as one or more files (any order).

    Every line must be the exact canonical bytes of its content; detects an edited, deleted,
    inserted or reordered line, a duplicated key, and with --public-key a forged checkpoint, a
    truncated log, a deleted file or a rebuilt chain, and says where. Exit status: 0 when the
    chain is intact, 1 when a problem was found, 2 on bad input (unreadable, not a log, bad key).
    """
    _check_files(files)
    try:
        report = verify_chain(files, partial=partial, head=head, public_key=public_key, live=live)
    except OSError as exc:
        raise BadInput(f"cannot read {printable(exc.filename)}: {exc.strerror}") from None
    except ConfigurationError as exc:
        raise BadInput(printable(exc.detail)) from None
    if report.ok:
        if not quiet:
            span = f"seq {report.first_seq}..{report.last_seq}" if report.first_seq is not None else "empty"
            sealed = ""
            if report.sealed is not None:
                sealed = f", {report.checkpoints} signed checkpoint(s), " + (
                    "closed" if report.sealed else f"live ({report.unsealed} line(s) after the last checkpoint)"
                )
            click.echo(f"OK: {report.lines} line(s) in {len(report.files)} file(s), {span}, head {report.head}{sealed}")
        return
    if not quiet:
        for problem in report.problems:
            click.echo(click.style(printable(str(problem)), fg="red"))
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
            click.echo(json.dumps(event_to_dict(event), sort_keys=True, ensure_ascii=True))
    elif task is not None and not flat:
        trail = task_trail(chosen, task)
        if not trail.events:
            click.echo(f"task {printable(task)}: no matching events")
        else:
            for item, line in iter_lines(trail):
                click.echo(_styled(item, line) if item is not None else click.style(line, bold=True))
    else:
        for event in chosen:
            click.echo(_styled(event, f"[{category(event)}] {format_event(event)}"))
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable line(s): {printable(', '.join(skipped[:5]))}", err=True)
