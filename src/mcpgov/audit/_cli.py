"""``mcpgov audit``: verify a hash-chained log and show what happened."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import click

from mcpgov._cliutil import BadInput, choice_option
from mcpgov._errors import ConfigurationError
from mcpgov.audit._jsonl import _iter_file, verify_chain
from mcpgov.audit._printable import printable

if TYPE_CHECKING:  # commands load what they use: `audit verify` loads neither pydantic nor the SDK
    from mcpgov._audit import AuditEvent

__all__ = ["audit"]

_STYLE = {
    "allow": "green",
    "completed": "green",
    "deny": "red",
    "failed": "red",
    "cancelled": "yellow",
    "input_required": "yellow",
    "require_approval": "yellow",
}


def _check_files(files: Sequence[str]) -> None:
    """Bad input (exit 2) unless every file is readable and at least one holds chain lines.

    A file of foreign lines among real log files is reported by verification (tampering, exit
    1); only input that holds no audit log at all is refused as bad input."""
    foreign: list[str] = []
    found = False
    for name in files:
        if not os.path.isfile(name):
            if os.path.isdir(name):
                reason = "is a directory"
            elif os.path.exists(name):
                reason = "is not a regular file (a FIFO, socket or device)"
            else:
                reason = "no such file"
            raise BadInput(f"cannot read {printable(name)}: {reason}")
        try:
            first_problem: str | None = None
            for number, _, record, why in _iter_file(name):
                if record is not None:
                    found = True
                    first_problem = None
                    break
                if first_problem is None:
                    first_problem = f"line {number}: {why}"
        except OSError as exc:
            raise BadInput(f"cannot read {printable(name)}: {exc.strerror or type(exc).__name__}") from None
        if first_problem is not None:
            foreign.append(f"{printable(name)} is not an mcpgov audit log ({first_problem})")
    if foreign and not found:
        raise BadInput(foreign[0])


def _refuse_overwriting_a_log(out: str, files: Sequence[str]) -> None:
    """Bad input when ``out`` names one of ``files`` or any file holding audit log lines (a report
    written there would destroy the evidence it reports on)."""
    if not os.path.exists(out):
        return
    reason = ""
    try:
        if any(os.path.samefile(out, name) for name in files):
            reason = "is one of the log files"
        elif os.path.isfile(out) and any(record is not None for _, _, record, _ in _first_lines(out)):
            reason = "holds an audit log"
    except OSError as exc:
        raise BadInput(f"cannot write {printable(out)}: {exc.strerror or type(exc).__name__}") from None
    if reason:
        raise BadInput(f"--out {printable(out)} {reason}: refusing to overwrite it")


def _first_lines(name: str, count: int = 8) -> list[tuple[int, bytes, dict[str, object] | None, str]]:
    lines = []
    for item in _iter_file(name):
        lines.append(item)
        if len(lines) >= count:
            break
    return lines


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
                if report.unclaimed:
                    sealed += f", {report.unclaimed} event line(s) no checkpoint claims yet"
            if report.sealed is None and head is None:
                sealed = (
                    f", {report.checkpoints} checkpoint(s) not checked" if report.checkpoints else ""
                ) + "; hash chain only: not authenticated (--public-key or --head also detects a rewritten log)"
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
@click.option("--task-owner", "task_owner", help="Only tasks of this owner (issuer#subject, or the subject alone).")
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
    task_owner: str | None,
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
        raise BadInput(f"cannot read {printable(exc.filename)}: {exc.strerror}") from None
    chosen = EventFilter(
        task=task,
        task_owner=task_owner,
        principal=principal,
        tenant=tenant,
        tool=tool,
        credential=credential,
        types=types,
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


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{option}: {printable(value)!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


@audit.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--session", help="Prove this session.")
@click.option("--task", help="Prove this task.")
@click.option(
    "--task-owner",
    "task_owner",
    help="With --task: the task's owner (issuer#subject, or the subject alone) when its id names several tasks.",
)
@click.option("--principal", help="Prove this caller's calls (issuer#subject, or the subject alone).")
@click.option("--since", metavar="TIME", help="Window start (ISO 8601).")
@click.option("--until", metavar="TIME", help="Window end (ISO 8601).")
@click.option("--public-key", "public_key", metavar="KEYFILE", help="Check signed checkpoints with this key.")
@click.option(
    "--head", metavar="HASH", help="Expected hash of the last line (kept where the log's writer cannot rewrite it)."
)
@click.option("--partial", is_flag=True, help="Accept a log whose older files were archived.")
@click.option("--live", is_flag=True, help="Accept a log still being written.")
@click.option(
    "--max-ttl",
    type=float,
    default=None,
    help="Longest credential lifetime in seconds (default: 3600).",
)
@choice_option("--format", "fmt", choices=("text", "json", "html"))
@click.option(
    "--out", metavar="FILE", help="Write the report to FILE instead of standard output (never over an audit log)."
)
def prove(
    *,
    files: tuple[str, ...],
    session: str | None,
    task: str | None,
    task_owner: str | None,
    principal: str | None,
    since: str | None,
    until: str | None,
    public_key: str | None,
    head: str | None,
    partial: bool,
    live: bool,
    max_ttl: float | None,
    fmt: str,
    out: str | None,
) -> None:
    """Prove a session, task, principal or time window least-privilege, tenant-bound and time-limited.

    Verifies the chain and authenticates it (its signed checkpoints with --public-key, or its
    last line with --head: without either nothing is proven), then reports every call in scope:
    who, what, the deciding rule, the credential and its delegation chain, who approved; and the
    three verdicts with their evidence. Exit status: 0 proven, 1 a verdict or the chain fails,
    2 bad input (unreadable or foreign files, a bad key, nothing in scope).
    """
    from mcpgov.audit._prove import (  # noqa: PLC0415 - commands load what they use (a fast CLI)
        DEFAULT_MAX_TTL,
        ProofScope,
        render_html,
        render_json,
        render_text,
    )
    from mcpgov.audit._prove import prove as prove_log  # noqa: PLC0415

    _check_files(files)
    if out is not None:
        _refuse_overwriting_a_log(out, files)
    if max_ttl is None:
        max_ttl = DEFAULT_MAX_TTL
    if max_ttl <= 0:
        raise BadInput("--max-ttl must be positive")
    if task_owner is not None and task is None:
        raise BadInput("--task-owner names the owner of the task given with --task")
    scope = ProofScope(
        session=session,
        task=task,
        task_owner=task_owner,
        principal=principal,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
    )
    try:
        proof = prove_log(files, scope, public_key=public_key, head=head, partial=partial, live=live, max_ttl=max_ttl)
    except OSError as exc:
        raise BadInput(f"cannot read {printable(exc.filename)}: {exc.strerror}") from None
    except ConfigurationError as exc:
        raise BadInput(printable(exc.detail)) from None
    if not proof.calls and not proof.credentials:
        raise BadInput(f"nothing in scope ({printable(scope.describe())}): no call or credential matches")
    rendered = {"text": render_text, "json": render_json, "html": render_html}[fmt](proof)
    if out is not None:
        try:
            with open(out, "w", encoding="utf-8") as handle:
                handle.write(rendered)
        except OSError as exc:
            raise BadInput(f"cannot write {printable(out)}: {exc.strerror}") from None
        click.echo(f"{'PROVEN' if proof.proven else 'NOT PROVEN'}: report written to {printable(out)}")
    elif fmt == "text":
        for line in rendered.splitlines():
            color = "green" if line.endswith("PROVEN") and "NOT" not in line else None
            if line.endswith(("FAILED", "NOT PROVEN")) or line.startswith(("chain: BROKEN", "chain: NOT")):
                color = "red"
            click.echo(click.style(line, fg=color) if color else line)
    else:
        click.echo(rendered, nl=False)
    if not proof.proven:
        raise SystemExit(1)


@audit.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--policy", "policy_path", required=True, metavar="POLICY", help="The policy file whose grants to check.")
@click.option("--since", metavar="TIME", help="Window start (ISO 8601).")
@click.option("--until", metavar="TIME", help="Window end (ISO 8601).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def unused(*, files: tuple[str, ...], policy_path: str, since: str | None, until: str | None, as_json: bool) -> None:
    """List the grants of POLICY that no call in the log used (least-privilege suggestions).

    A grant is an allow rule; it counts as used when an allowed decision in the window names it.
    Exit status: 0 (also when grants are unused: these are suggestions), 2 bad input.
    """
    from mcpgov.audit._query import read_events  # noqa: PLC0415 - the command loads what it uses
    from mcpgov.policy._diff import load_grants  # noqa: PLC0415

    _check_files(files)
    grants = load_grants(policy_path)
    start, end = _when(since, "--since"), _when(until, "--until")
    used: dict[str, int] = {}
    try:
        events = read_events(files)
    except OSError as exc:
        raise BadInput(f"cannot read {printable(exc.filename)}: {exc.strerror}") from None
    for event in events:
        if event.type != "decision" or event.effect != "allow" or not event.rule:
            continue
        if (start is not None and event.time < start) or (end is not None and event.time > end):
            continue
        used[event.rule] = used.get(event.rule, 0) + 1
    idle = [g for g in grants if used.get(g.rule_id, 0) == 0]
    if as_json:
        click.echo(
            json.dumps(
                {"unused": [g.as_dict() for g in idle], "used": used}, indent=2, sort_keys=True, ensure_ascii=True
            )
        )
        return
    if not idle:
        click.echo(f"every one of the {len(grants)} grant(s) was used")
        return
    click.echo(f"{len(idle)} of {len(grants)} grant(s) unused; consider removing or narrowing them:")
    for grant in idle:
        click.echo(f"  {printable(grant.describe())}")
