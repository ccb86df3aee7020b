"""The ``mcpgov`` command: ``policy test|validate|explain`` exit codes and output, ``demo``, and
``--help`` everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from mcpgov.cli import main

ROOT = Path(__file__).parent.parent
POLICY = str(ROOT / "examples" / "ci" / "policy.yaml")
CASES = str(ROOT / "examples" / "ci" / "cases.yaml")
ANSI = "\x1b["

WRONG_CASE = """
cases:
  - name: a reader deploys (wrong)
    principal: {issuer: https://idp.example.com, subject: reader-7}
    tenant: acme
    tool: deploy
    arguments: {repo: acme, version: "1"}
    expect: allow
  - name: a reader reads
    principal: {issuer: https://idp.example.com, subject: reader-7}
    tenant: acme
    tool: read_file
    arguments: {repo: acme, path: a}
    expect: allow
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def cases_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cases.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


# -- policy test ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_policy_test_passes_the_example_with_full_coverage(mode: str) -> None:
    result = invoke("policy", "test", POLICY, CASES, "--fail-under", "100", "--mode", mode)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "PASS an agent reads its own tenant's repository"
    assert sum(line.startswith("PASS ") for line in lines) == 8
    assert "rule coverage: 100.0% (3 of 3 rules)" in lines
    assert lines[-1] == "8 passed, 0 failed"
    assert ANSI not in result.output  # plain when not on a terminal


def test_a_wrong_case_makes_policy_test_exit_1_with_the_right_message(tmp_path: Path) -> None:
    result = invoke("policy", "test", POLICY, cases_file(tmp_path, WRONG_CASE))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == (
        "FAIL a reader deploys (wrong): expected allow, got deny by rule 'mcpgov:policy:default-deny' "
        "(reason default_deny): no rule of the policy applies to this request"
    )
    assert lines[1] == "    request:  execute tool 'deploy' by https://idp.example.com#reader-7, tenant 'acme'"
    assert any("[     no] require_approval deploy-with-approval: principal does not match" in line for line in lines)
    assert "PASS a reader reads" in lines
    assert "rule coverage: 33.3% (1 of 3 rules)" in lines
    assert "not exercised: deploy-with-approval, tenant-boundary" in lines
    assert lines[-1] == "1 passed, 1 failed"


def test_coverage_under_fail_under_exits_1(tmp_path: Path) -> None:
    path = cases_file(
        tmp_path,
        """
        cases:
          - {name: reads, workload: r, issuer: https://idp.example.com, tenant: acme, tool: read_file,
             arguments: {repo: acme, path: a}, expect: allow}
        """,
    )
    passing = invoke("policy", "test", POLICY, path, "--fail-under", "30")
    assert passing.exit_code == 0, passing.output
    failing = invoke("policy", "test", POLICY, path, "--fail-under", "50")
    assert failing.exit_code == 1
    lines = failing.output.splitlines()
    assert "coverage 33.3% is under --fail-under 50%" in lines
    assert lines[-1] == "1 passed, 0 failed"


def test_junit_xml_is_written(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    result = invoke("policy", "test", POLICY, cases_file(tmp_path, WRONG_CASE), "--junit-xml", str(report))
    assert result.exit_code == 1
    suite = ET.parse(report).getroot().find("testsuite")  # noqa: S314 - XML the command just wrote
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")


def test_on_a_terminal_results_are_a_coloured_table(tmp_path: Path) -> None:
    result = invoke("--color", "policy", "test", POLICY, cases_file(tmp_path, WRONG_CASE))
    assert result.exit_code == 1
    plain = click.unstyle(result.output).splitlines()
    assert plain[0].split() == ["RESULT", "CASE", "EXPECTED", "DECISION", "RULE"]
    assert plain[1].startswith("FAIL    a reader deploys (wrong)")
    assert ANSI + "31m" in result.output  # red
    assert plain[-1] == "1 passed, 1 failed"


BAD_INPUT = [
    (
        "cases: [{name: c, workload: w, tool: read_file, expect: allow}]",
        "case 'c' (cases[0]), field 'tenant': a principal needs a tenant",
    ),
    (
        "cases: [{name: c, workload: w, tenant: acme, tool: delete_everything, expect: deny}]",
        "case 'c' (cases[0]), field 'tool': unknown tool 'delete_everything'",
    ),
    ("cases: [{name: c", "not valid YAML"),
    ("cases: [{name: c, workload: w, tenant: t, tool: read_file, expect: maybe}]", "field 'expect'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_INPUT)
def test_bad_case_files_exit_2_with_one_line_naming_case_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = cases_file(tmp_path, text)
    result = CliRunner().invoke(main, ["policy", "test", POLICY, path])
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {path}: ")
    assert message in line


def test_bad_policies_and_missing_files_exit_2(tmp_path: Path) -> None:
    bad_policy = tmp_path / "policy.yaml"
    bad_policy.write_text("version: 1\nrules:\n  - {id: x, effect: permit, tools: [a]}\n")
    for args in (
        [str(bad_policy), CASES],
        [str(tmp_path / "missing.yaml"), CASES],
        [POLICY, str(tmp_path / "missing.yaml")],
        [POLICY, CASES, "--server", "nocolon"],
        [POLICY, CASES, "--server", "no_such_module_here:server"],
    ):
        result = CliRunner().invoke(main, ["policy", "test", *args])
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    result = CliRunner().invoke(main, ["policy", "test", str(bad_policy), CASES])
    assert "rule 'x' (rules[0]), field 'effect'" in result.stderr


def test_the_inventory_comes_from_the_users_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_app.py").write_text(
        textwrap.dedent(
            """
            from mcp.server.mcpserver import MCPServer

            RAN = []
            mcp = MCPServer("repositories")

            @mcp.tool()
            def read_file(repo: str, path: str) -> str:
                RAN.append("read_file")
                return "x"

            @mcp.tool()
            def deploy(repo: str, version: str) -> str:
                RAN.append("deploy")
                return "x"

            def make():
                return mcp

            not_a_server = 42
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("my_app:mcp", "my_app:make"):
        result = invoke("policy", "test", POLICY, CASES, "--server", spec)
        assert result.exit_code == 0, result.output
    unknown = cases_file(tmp_path, "cases: [{name: c, workload: w, tenant: t, tool: export, expect: deny}]")
    result = CliRunner().invoke(main, ["policy", "test", POLICY, unknown, "--server", "my_app:mcp"])
    assert result.exit_code == 2
    assert "field 'tool': unknown tool 'export': the server does not declare it" in result.stderr
    result = CliRunner().invoke(main, ["policy", "test", POLICY, CASES, "--server", "my_app:not_a_server"])
    assert result.exit_code == 2 and "is a int, not an MCPServer" in result.stderr
    import my_app  # type: ignore[import-not-found]

    assert my_app.RAN == []


def test_the_installed_console_script_exits_with_the_same_codes(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("mcpgov")
    ok = subprocess.run([script, "policy", "test", POLICY, CASES], capture_output=True, text=True, check=False)  # noqa: S603 - the installed script
    assert ok.returncode == 0 and ok.stdout.splitlines()[-1] == "8 passed, 0 failed"
    wrong = subprocess.run(  # noqa: S603 - the installed script
        [script, "policy", "test", POLICY, cases_file(tmp_path, WRONG_CASE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode == 1 and wrong.stdout.splitlines()[-1] == "1 passed, 1 failed"
    bad = subprocess.run(  # noqa: S603 - the installed script
        [script, "policy", "test", POLICY, cases_file(tmp_path, "cases: 3")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


# -- validate and explain --------------------------------------------------------------------------


def test_validate_lists_rules_or_names_the_problem(tmp_path: Path) -> None:
    result = invoke("policy", "validate", POLICY)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith(f"OK: {POLICY}: 3 rule(s), version sha256:")
    assert lines[1] == "rule read-repository: allow tools:read_file (discover,execute)"
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\nrules:\n  - {id: x, effect: deny, tools: [a], actions: [discover]}\n")
    result = CliRunner().invoke(main, ["policy", "validate", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad}: rule 'x' (rules[0])")


def test_explain_prints_every_rule_about_the_target_and_the_decision() -> None:
    result = invoke(
        "policy",
        "explain",
        POLICY,
        "--principal",
        "https://idp.example.com#release-bot",
        "--tenant",
        "acme",
        "--tool",
        "deploy",
        "--arguments",
        '{"repo": "acme", "version": "1"}',
        "--purpose",
        "release",
        "--at",
        "2025-06-16T10:00:00Z",
    )
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == (
        "request:  execute tool 'deploy' by https://idp.example.com#release-bot, tenant 'acme', purpose 'release'"
    )
    assert any("[applies] require_approval deploy-with-approval" in line for line in lines)
    assert lines[-1].startswith("decision: require_approval by deploy-with-approval")
    listing = invoke(
        "policy", "explain", POLICY, "--principal", "reader", "--tenant", "acme", "--tool", "deploy", "--discover"
    )
    assert listing.output.splitlines()[0].startswith("request:  discover tool 'deploy' by https://issuer.test#reader")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tool", "deploy", "--arguments", "[1]"], "error: --arguments: must be a JSON object, got list"),
        (["--tool", "deploy", "--arguments", "{"], "error: --arguments: not valid JSON"),
        (["--tool", "deploy", "--resource", "x://y"], "error: give exactly one of --tool, --resource or --prompt"),
        (["--tool", "deploy", "--at", "noon"], "error: not an ISO 8601 time"),
        (["--tool", "deploy", "--principal", "#"], "error: --principal: expected ISSUER#SUBJECT or SUBJECT"),
    ],
)
def test_explain_bad_input_exits_2(args: list[str], message: str) -> None:
    base = ["policy", "explain", POLICY, "--tenant", "acme"]
    if "--principal" not in args:
        base += ["--principal", "reader"]
    result = CliRunner().invoke(main, [*base, *args])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith(message)


def test_explain_needs_a_tenant() -> None:
    result = CliRunner().invoke(main, ["policy", "explain", POLICY, "--principal", "r", "--tool", "deploy"])
    assert result.exit_code == 2
    assert "Missing option '--tenant'" in result.stderr


# -- demo and --help ---------------------------------------------------------------------------------


def test_demo_runs_the_quickstarts_governed_session() -> None:
    demo = invoke("demo")
    assert demo.exit_code == 0
    quickstart = subprocess.run(  # noqa: S603 - this interpreter on the repository's example
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert demo.output == quickstart.stdout
    assert "delete_repository -> refused: code=-32003" in demo.output


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # the lazily loaded subcommands too
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def test_every_command_has_help() -> None:
    commands = _commands(main)
    assert ("policy", "test") in commands and ("keys", "generate") in commands and ("demo",) in commands
    for path in commands:
        result = invoke(*path, "--help")
        assert result.exit_code == 0, path
        assert result.output.startswith("Usage: ")
        short = invoke(*path, "-h")
        assert short.output == result.output, path


def test_a_cedar_policy_is_tested_but_its_coverage_is_not_measured(tmp_path: Path) -> None:
    pytest.importorskip("cedarpy")
    policy = tmp_path / "policy.cedar"
    policy.write_text(
        '@id("acme-read")\n'
        'permit(principal is Principal, action, resource == Tool::"read_file") when { context.tenant == "acme" };\n'
    )
    path = cases_file(
        tmp_path,
        """
        server: {tools: [read_file]}
        cases:
          - {name: acme reads, workload: r, tenant: acme, tool: read_file, expect: allow, rule: acme-read}
          - {name: globex does not, workload: r, tenant: globex, tool: read_file, expect: deny}
        """,
    )
    result = invoke("policy", "test", str(policy), path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-2:] == ["rule coverage: not measured (Cedar policy)", "2 passed, 0 failed"]
    refused = CliRunner().invoke(main, ["policy", "test", str(policy), path, "--fail-under", "50"])
    assert refused.exit_code == 2
    assert "measured for mcpgov (YAML/JSON) policies only" in refused.stderr


def test_policy_test_shows_case_names_with_terminal_escapes_escaped(tmp_path: Path) -> None:
    """A case name with ESC, CR and LF is shown escaped, even on a terminal: it can neither erase
    its own row nor print a fake PASS line."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n"
        "  - {id: readers, effect: allow, tenants: [acme], tools: ['read_*']}\n"
        "  - {id: deny-del, effect: deny, tools: ['delete_*']}\n"
    )
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "version: 1\n"
        "cases:\n"
        '  - {name: "x\\e[2K\\rPASS all good\\nPASS another", workload: a, tenant: acme, tool: read_file,'
        " expect: allow}\n"
    )
    result = CliRunner().invoke(main, ["--color", "policy", "test", str(policy), str(cases)], color=True)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "\x1b[2K" not in result.output and "\r" not in result.output, result.output
    assert not any(line.startswith("PASS another") for line in lines), lines
