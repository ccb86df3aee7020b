"""``mcpgov policy``: test a policy against a file of cases, validate it, explain one decision.

Exit codes: 0 success; 1 a case failed or rule coverage is under ``--fail-under``; 2 bad input
(an invalid policy, a malformed case file, an unknown tool, a principal without a tenant...).
Errors are one line on stderr. Output has colour and tables on a terminal, plain lines otherwise.

Also home of the small output helpers the other ``mcpgov`` commands share.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from mcpgov._cliutil import EXIT_FAILED, BadInput, choice_option
from mcpgov._errors import McpGovError
from mcpgov._methods import EXECUTE_METHOD
from mcpgov.audit._printable import printable

__all__ = ["BadInput", "emit_table", "fail", "policy", "terminal"]

EFFECT_COLOURS = {"allow": "green", "deny": "red", "require_approval": "yellow", "none": "magenta"}


def fail(message: str) -> NoReturn:
    """Stop with a bad-input error (exit code 2)."""
    raise BadInput(message)


def terminal() -> bool:
    """Whether output goes to a terminal (colour and tables) or not (plain lines).

    ``mcpgov --color``/``--no-color`` (click's ``ctx.color``) overrides the check.
    """
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.color is not None:
        return bool(ctx.color)
    return sys.stdout.isatty()


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[str]], colours: Sequence[str | None] = ()) -> None:
    """Print an aligned table with a bold header; ``colours[i]`` colours row ``i``."""
    # Cells may come from a policy or case file: control and format characters are shown escaped.
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    click.echo(click.style(line(headers), bold=True), color=terminal())
    for index, row in enumerate(rows):
        colour = colours[index] if index < len(colours) else None
        click.echo(click.style(line(row), fg=colour) if colour else line(row), color=terminal())


def _say(text: str, colour: str | None = None, *, bold: bool = False) -> None:
    text = printable(text)  # names from a case or policy file can never print a fake line
    click.echo(click.style(text, fg=colour, bold=bold) if colour or bold else text, color=terminal())


def _guard(action: Callable[[], Any]) -> Any:
    """Run ``action``; mcpgov configuration errors and unreadable files become bad input."""
    try:
        return action()
    except BadInput:
        raise
    except McpGovError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or 'file'}: {exc.strerror or type(exc).__name__}")
    except Exception as exc:  # noqa: BLE001 - whatever a hostile file provokes is bad input, never a traceback
        fail(f"cannot load: {type(exc).__name__}")


def _load_policy(path: str) -> Any:
    from mcpgov.policy._cedar import CedarPolicy  # noqa: PLC0415 - commands load what they use
    from mcpgov.policy._load import Policy  # noqa: PLC0415

    if Path(path).suffix.lower() == ".cedar":
        return _guard(lambda: CedarPolicy.from_file(path))
    return _guard(lambda: Policy.from_file(path))


def _json_object(text: str | None, option: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        fail(f"{option}: not valid JSON ({exc})")
    if not isinstance(value, dict):
        fail(f"{option}: must be a JSON object, got {type(value).__name__}")
    return value


def _import_server(spec: str) -> Any:
    from mcp.server.mcpserver import MCPServer  # noqa: PLC0415 - commands load what they use

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        fail(f"--server: expected module:attribute (e.g. myapp.server:mcp), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure to import the user's module is bad input
        fail(f"--server: cannot import {module_name}: {type(exc).__name__}: {exc}")
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            fail(f"--server: {module_name} has no attribute {attribute!r}")
        found = getattr(found, part)
    if not isinstance(found, MCPServer) and callable(found):
        found = found()
    if not isinstance(found, MCPServer):
        fail(f"--server: {spec} is a {type(found).__name__}, not an MCPServer (or a function returning one)")
    return found


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def policy() -> None:
    """Test, validate and explain policies (YAML/JSON, or Cedar)."""


@policy.command("test")
@click.argument("policy_file", metavar="POLICY")
@click.argument("cases_file", metavar="CASES")
@click.option("--junit-xml", "junit", metavar="FILE", help="Also write the results as JUnit XML to FILE.")
@click.option(
    "--fail-under",
    type=click.FloatRange(0, 100),
    default=0.0,
    show_default=True,
    metavar="PCT",
    help="Fail (exit 1) when rule coverage is below PCT percent.",
)
@click.option("--server", "server_spec", metavar="MODULE:ATTR", help="Take the inventory from this MCPServer.")
@choice_option("--mode", choices=("auto", "legacy"), help="Protocol mode of the sessions.")
@click.option("--quiet", "-q", is_flag=True, help="Print failures, coverage and the summary only.")
def test_command(
    *,
    policy_file: str,
    cases_file: str,
    junit: str | None,
    fail_under: float,
    server_spec: str | None,
    mode: str,
    quiet: bool,
) -> None:
    """Run the CASES file against the POLICY, like `opa test`.

    Every case is a real in-process governed session: a test identity for the case's principal
    and tenant, a credential carrying its purpose, the policy, and the decision read from the
    audit trail. Nothing runs: the server is a stand-in declaring the inventory (from --server,
    the file's `server:` section, or the targets the cases name).

    Prints a line per case, rule coverage (rules no case exercised) and a summary line
    `N passed, N failed`. Exit status: 0 when every case passes and coverage is at least
    --fail-under; 1 otherwise; 2 on bad input.
    """
    import anyio  # noqa: PLC0415 - commands load what they use

    from mcpgov._harness import inventory_of  # noqa: PLC0415
    from mcpgov.policy._cases import load_cases, run_cases, write_junit  # noqa: PLC0415
    from mcpgov.policy._load import Policy  # noqa: PLC0415

    loaded = _load_policy(policy_file)
    if fail_under > 0 and not isinstance(loaded, Policy):
        fail("--fail-under: rule coverage is measured for mcpgov (YAML/JSON) policies only, not Cedar")
    suite = _guard(lambda: load_cases(cases_file))
    inventory = None
    if server_spec is not None:
        server = _import_server(server_spec)
        inventory = _guard(lambda: anyio.run(inventory_of, server))
    run = _guard(lambda: anyio.run(lambda: run_cases(loaded, suite, inventory=inventory, mode=mode)))
    coverage = run.coverage
    if terminal() and not quiet:
        emit_table(
            ("RESULT", "CASE", "EXPECTED", "DECISION", "RULE"),
            [
                (
                    "PASS" if r.passed else "FAIL",
                    r.case.name,
                    r.case.expect + (f" ({r.case.rule})" if r.case.rule else ""),
                    r.effect,
                    r.rule or "-",
                )
                for r in run.results
            ],
            ["green" if r.passed else "red" for r in run.results],
        )
    for result in run.results:
        if result.passed:
            if not quiet and not terminal():
                _say(f"PASS {result.case.name}")
            continue
        _say(f"FAIL {result.case.name}: {result.message}", "red")
        for line in result.explanation.splitlines():
            _say(f"    {line}")
    if coverage.measured:
        _say(f"rule coverage: {coverage.percent:.1f}% ({len(coverage.exercised)} of {len(coverage.rules)} rules)")
        if coverage.unexercised:
            _say(f"not exercised: {', '.join(coverage.unexercised)}", "yellow")
        if coverage.discover_only:
            _say(f"not measured (discovery-only rules): {', '.join(coverage.discover_only)}")
    else:
        _say("rule coverage: not measured (Cedar policy)")
    under = coverage.measured and coverage.percent < fail_under
    if under:
        _say(f"coverage {coverage.percent:.1f}% is under --fail-under {fail_under:g}%", "red")
    if junit is not None:
        _guard(lambda: write_junit(run, junit))
    _say(f"{run.passed} passed, {run.failed} failed", "green" if run.failed == 0 and not under else "red", bold=True)
    if run.failed or under:
        sys.exit(EXIT_FAILED)


@policy.command()
@click.argument("policy_file", metavar="POLICY")
def validate(policy_file: str) -> None:
    """Load and validate the POLICY; list its rules.

    Exit status: 0 when valid, 2 when not (the message names the file, the rule and the field).
    """
    from mcpgov.policy._load import Policy  # noqa: PLC0415 - commands load what they use

    loaded = _load_policy(policy_file)
    if not isinstance(loaded, Policy):
        _say(f"OK: {policy_file}: Cedar policy, version {loaded.version}", "green")
        return
    rules = loaded.document.rules
    _say(f"OK: {policy_file}: {len(rules)} rule(s), version {loaded.version}", "green")
    rows = []
    for rule in rules:
        targets = [
            f"{label}:{','.join(names)}"
            for label, names in (
                ("tools", rule.tools),
                ("resources", rule.resources),
                ("prompts", rule.prompts),
                ("methods", rule.methods),
            )
            if names
        ]
        rows.append((rule.id, rule.effect, " ".join(targets), ",".join(rule.actions)))
    if terminal():
        emit_table(("RULE", "EFFECT", "TARGETS", "ACTIONS"), rows, [EFFECT_COLOURS.get(r[1]) for r in rows])
    else:
        for rule_id, effect, covered, actions in rows:
            _say(f"rule {rule_id}: {effect} {covered} ({actions})")


def _principal(spec: str, tenant: str, claims: dict[str, Any], actors: Sequence[str]) -> Any:
    from mcpgov._harness import DEFAULT_ISSUER  # noqa: PLC0415
    from mcpgov._principal import Actor, Principal  # noqa: PLC0415 - commands load what they use

    if spec.startswith("spiffe://"):
        trust_domain = spec[len("spiffe://") :].partition("/")[0]
        if not trust_domain:
            fail(f"--principal: {spec!r} is not a SPIFFE ID")
        return Principal(
            f"spiffe://{trust_domain}",
            spec,
            tenant=tenant,
            claims=claims,
            spiffe_id=spec,
            actors=tuple(Actor(a) for a in actors),
            auth_method="spiffe-jwt-svid",
        )
    issuer, sep, subject = spec.rpartition("#")
    if not sep:
        issuer, subject = DEFAULT_ISSUER, spec
    if not issuer or not subject:
        fail(f"--principal: expected ISSUER#SUBJECT or SUBJECT, got {spec!r}")
    return Principal(
        issuer, subject, tenant=tenant, claims=claims, actors=tuple(Actor(a) for a in actors), auth_method="jwt"
    )


@policy.command()
@click.argument("policy_file", metavar="POLICY")
@click.option(
    "--principal", required=True, help="ISSUER#SUBJECT, a SPIFFE ID, or SUBJECT (issuer https://issuer.test)."
)
@click.option("--tenant", required=True, help="The principal's verified tenant.")
@click.option("--tool", help="The tool called.")
@click.option("--resource", help="The resource URI read.")
@click.option("--prompt", help="The prompt got.")
@click.option("--arguments", metavar="JSON", help="The arguments, as a JSON object.")
@click.option("--purpose", help="The declared purpose.")
@click.option("--task", "task_id", help="The task id.")
@click.option("--claims", metavar="JSON", help="Further identity claims, as a JSON object.")
@click.option("--scope", "scopes", multiple=True, help="A scope the principal holds (repeatable).")
@click.option("--actor", "actors", multiple=True, help="Who the principal acts for, nearest first (repeatable).")
@click.option("--at", "at", metavar="TIME", help="When (ISO 8601 with a timezone); default now.")
@click.option("--discover", is_flag=True, help="Explain whether the target is listed, not whether it may be used.")
def explain(
    *,
    policy_file: str,
    principal: str,
    tenant: str,
    tool: str | None,
    resource: str | None,
    prompt: str | None,
    arguments: str | None,
    purpose: str | None,
    task_id: str | None,
    claims: str | None,
    scopes: tuple[str, ...],
    actors: tuple[str, ...],
    at: str | None,
    discover: bool,
) -> None:
    """Explain the POLICY's decision about one request: every rule about the target, and why.

    Task history is empty and rate limits are not counted. Exit status: 0 (whatever the
    decision), 2 on bad input.
    """
    import anyio  # noqa: PLC0415 - commands load what they use

    from mcpgov._arguments import ArgumentLimits, freeze_and_hash  # noqa: PLC0415
    from mcpgov._context import GovContext  # noqa: PLC0415
    from mcpgov._harness import FrozenClock  # noqa: PLC0415
    from mcpgov.policy._middleware import PolicyMiddleware  # noqa: PLC0415

    targets = [(k, v) for k, v in (("tool", tool), ("resource", resource), ("prompt", prompt)) if v is not None]
    if len(targets) != 1:
        fail("give exactly one of --tool, --resource or --prompt")
    kind, target = targets[0]
    if not tenant:
        fail("--tenant: a principal needs a tenant")
    args = _json_object(arguments, "--arguments")
    if kind == "resource" and args:
        fail("--arguments: a resource read takes no arguments")
    extra = _json_object(claims, "--claims") or {}
    if scopes:
        extra["scope"] = " ".join(scopes)
    who = _principal(principal, tenant, extra, actors)
    clock = _guard(lambda: FrozenClock(at)) if at is not None else None
    loaded = _load_policy(policy_file)
    middleware = _guard(
        lambda: PolicyMiddleware(loaded, clock=clock) if clock is not None else PolicyMiddleware(loaded)
    )
    frozen, args_hash = _guard(lambda: freeze_and_hash(None if discover else (args or {}), ArgumentLimits()))
    method = EXECUTE_METHOD[kind]  # type: ignore[index]
    ctx = GovContext(
        side="server",
        method=method,
        kind=kind,  # type: ignore[arg-type]
        target=target,
        action="discover" if discover else "execute",
        arguments=frozen,
        args_hash=args_hash,
        principal=who,
        tenant=tenant,
        purpose=purpose,
        task_id=task_id,
    )
    explanation = _guard(lambda: anyio.run(middleware.explain, ctx))
    lines = str(explanation).splitlines()
    for line in lines[:-1]:
        _say(line)
    _say(lines[-1], EFFECT_COLOURS.get(explanation.decision.effect.value), bold=True)


from mcpgov.policy._diff import diff as _diff  # noqa: E402 - registered after the group exists

policy.add_command(_diff)
