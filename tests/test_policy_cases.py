"""Policy cases: the case-file format and its errors, the runner (a real session per case), rule
coverage, and JUnit XML."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import anyio
import pytest
from mcp.server.mcpserver import MCPServer

from mcpgov.policy import Policy
from mcpgov.policy._cases import CaseError, TestRun, junit_xml, load_cases, run_cases
from mcpgov.testing import Inventory, inventory_of

EXAMPLES = Path(__file__).parent.parent / "examples" / "ci"
POLICY = Policy.from_file(EXAMPLES / "policy.yaml")


def write(tmp_path: Path, text: str, name: str = "cases.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(policy: Policy, path: Path, *, mode: str = "auto", inventory: Inventory | None = None) -> TestRun:
    suite = load_cases(path)
    return anyio.run(lambda: run_cases(policy, suite, mode=mode, inventory=inventory))


# -- the example -------------------------------------------------------------------------------


def test_the_example_cases_all_pass_with_full_rule_coverage(mode: str) -> None:
    result = run(POLICY, EXAMPLES / "cases.yaml", mode=mode)
    assert [(r.case.name, r.passed) for r in result.results if not r.passed] == []
    assert result.passed == 8 and result.failed == 0
    assert {r.case.expect for r in result.results} == {"allow", "deny", "require_approval"}
    assert result.coverage.percent == 100.0
    assert result.coverage.rules == ("read-repository", "deploy-with-approval", "tenant-boundary")
    assert result.coverage.unexercised == ()


def test_a_deliberately_wrong_case_fails_naming_the_decision_its_rule_and_why(tmp_path: Path, mode: str) -> None:
    path = write(
        tmp_path,
        """
        cases:
          - name: acme reads globex (wrong)
            principal: {issuer: https://idp.example.com, subject: reader-7}
            tenant: acme
            tool: read_file
            arguments: {repo: globex, path: README.md}
            expect: allow
        """,
    )
    result = run(POLICY, path, mode=mode)
    (failed,) = result.results
    assert not failed.passed
    assert failed.effect == "deny" and failed.rule == "tenant-boundary"
    assert failed.message.startswith("expected allow, got deny by rule 'tenant-boundary' (reason policy_deny)")
    assert "[applies] deny             tenant-boundary: requirement not met" in failed.explanation
    assert result.failed == 1


def test_a_case_expecting_the_wrong_rule_fails(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        cases:
          - name: deny, but by the default
            workload: reader-7
            issuer: https://idp.example.com
            tenant: acme
            tool: deploy
            arguments: {repo: acme, version: "1"}
            expect: deny
            rule: tenant-boundary
        """,
    )
    (result,) = run(POLICY, path).results
    assert not result.passed
    assert result.message.startswith(
        "expected deny by rule 'tenant-boundary', got deny by rule 'mcpgov:policy:default-deny'"
    )


def test_coverage_names_the_rules_no_case_exercised(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults: {issuer: https://idp.example.com, tenant: acme}
        cases:
          - {name: reads, workload: r, tool: read_file, arguments: {repo: acme, path: a}, expect: allow}
          - {name: no deploy, workload: r, tool: deploy, arguments: {repo: acme, version: "1"}, expect: deny}
        """,
    )
    coverage = run(POLICY, path).coverage
    assert coverage.exercised == ("read-repository",)
    assert coverage.unexercised == ("deploy-with-approval", "tenant-boundary")
    assert round(coverage.percent, 1) == 33.3


def test_discovery_only_rules_are_reported_apart_and_not_counted(tmp_path: Path) -> None:
    policy = Policy.from_yaml(
        """
        version: 1
        rules:
          - {id: see-deploy, effect: allow, tools: [deploy], actions: [discover]}
          - {id: read, effect: allow, tools: [read_file]}
        """
    )
    path = write(tmp_path, "cases: [{name: r, workload: w, tenant: t, tool: read_file, expect: allow}]")
    coverage = run(policy, path).coverage
    assert coverage.rules == ("read",) and coverage.percent == 100.0
    assert coverage.discover_only == ("see-deploy",)


def test_cases_are_independent_of_each_other(tmp_path: Path) -> None:
    policy = Policy.from_yaml(
        """
        version: 1
        rules:
          - id: search
            effect: allow
            tools: [search]
            obligations: {rate_limit: {limit: 1, per: 3600}}
        """
    )
    cases = "\n".join(
        f"  - {{name: search {i}, workload: w, tenant: t, tool: search, expect: allow}}" for i in range(3)
    )
    result = run(policy, write(tmp_path, "cases:\n" + cases))
    assert [r.passed for r in result.results] == [True, True, True]  # one rate-limit window each


def test_resources_prompts_scopes_actors_and_tasks(tmp_path: Path) -> None:
    policy = Policy.from_yaml(
        """
        version: 1
        rules:
          - {id: docs, effect: allow, resources: ["docs://*"]}
          - {id: summarise, effect: allow, prompts: [summarise], tenants: [acme]}
          - id: writes
            effect: allow
            tools: [write_file]
            when: {scopes: ["files:write"], delegation_depth: {max: 1}}
        """
    )
    path = write(
        tmp_path,
        """
        defaults: {workload: agent, tenant: acme}
        cases:
          - {name: docs, resource: "docs://readme", expect: allow, rule: docs}
          - {name: secrets, resource: "secret://keys", expect: deny}
          - {name: prompt, prompt: summarise, arguments: {text: hi}, expect: allow}
          - {name: prompt in another tenant, prompt: summarise, tenant: globex, expect: deny}
          - {name: scoped, tool: write_file, scopes: ["files:write"], actors: [alice], task_id: t-1, expect: allow}
          - {name: too deep, tool: write_file, scopes: ["files:write"], actors: [bot, alice], expect: deny}
          - {name: unscoped, tool: write_file, expect: deny}
        """,
    )
    inventory = Inventory.of(["write_file"], ["docs://readme", "secret://keys"], ["summarise"])
    result = run(policy, path, inventory=inventory)
    assert [(r.case.name, r.passed, r.effect) for r in result.results if not r.passed] == []


def test_an_inventory_from_a_real_server_is_used_and_nothing_runs(tmp_path: Path) -> None:
    ran: list[str] = []
    server = MCPServer("repositories")

    @server.tool()
    def read_file(repo: str, path: str) -> str:
        ran.append("read_file")
        return "x"

    @server.tool()
    def deploy(repo: str, version: str) -> str:
        ran.append("deploy")
        return "x"

    @server.resource("notes://{tenant}/{page}")
    def notes(tenant: str, page: str) -> str:
        return "x"

    inventory = anyio.run(inventory_of, server)
    assert set(inventory.tools) == {"read_file", "deploy"}
    assert inventory.has_resource("notes://acme/1") and not inventory.has_resource("notes://acme/1/2")
    result = run(POLICY, EXAMPLES / "cases.yaml", inventory=inventory)
    assert result.failed == 0
    assert ran == []


# -- bad input -------------------------------------------------------------------------------------

BAD_CASES = [
    (
        "cases: [{name: c, workload: w, tool: read_file, expect: allow}]",
        "case 'c' (cases[0]), field 'tenant': a principal needs a tenant",
    ),
    (
        "cases: [{name: c, workload: w, tenant: t, tool: read_file, expect: permit}]",
        "case 'c' (cases[0]), field 'expect': Input should be 'allow', 'deny' or 'require_approval'",
    ),
    (
        "cases: [{name: c, workload: w, tenant: t, tool: read_file, expect: allow, colour: red}]",
        "case 'c' (cases[0]), field 'colour': unknown field",
    ),
    (
        "cases: [{name: c, tenant: t, tool: read_file, expect: allow}]",
        "field 'principal': give exactly one of 'principal' (issuer and subject) or 'workload'",
    ),
    (
        "cases: [{name: c, workload: w, principal: {issuer: i, subject: s}, tenant: t, tool: x, expect: allow}]",
        "field 'principal': give exactly one",
    ),
    (
        "cases: [{name: c, principal: {issuer: i}, tenant: t, tool: read_file, expect: allow}]",
        "case 'c' (cases[0]), field 'principal.subject': Field required",
    ),
    ("cases: [{name: c, workload: w, tenant: t, expect: allow}]", "field 'tool': give exactly one of"),
    (
        "cases: [{name: c, workload: w, tenant: t, tool: a, prompt: b, expect: allow}]",
        "field 'tool': give exactly one of",
    ),
    (
        "cases: [{name: c, workload: w, tenant: t, resource: 'docs://x', arguments: {a: 1}, expect: allow}]",
        "field 'arguments': a resource read takes no arguments",
    ),
    (
        "cases: [{name: c, workload: w, tenant: t, prompt: p, purpose: support, expect: allow}]",
        "case 'c' (cases[0]), field 'purpose': only a tool call carries a purpose and task",
    ),
    (
        "cases: [{name: c, workload: w, tenant: t, tool: read_file, expect: allow, at: tomorrow}]",
        "case 'c' (cases[0]), field 'at': not an ISO 8601 time",
    ),
    (
        "cases: [{name: c, workload: w, tenant: 5, tool: read_file, expect: allow}]",
        "case 'c' (cases[0]), field 'tenant': Input should be a valid string",
    ),
    (
        "cases:\n  - {name: c, workload: w, tenant: t, tool: read_file, expect: allow}\n"
        "  - {name: c, workload: w, tenant: t, tool: read_file, expect: deny}",
        "case 'c' (cases[1]), field 'name': another case (cases[0]) has this name",
    ),
    ("cases: [{workload: w, tenant: t, tool: read_file, expect: allow}]", "cases[0], field 'name': Field required"),
    ("cases: [just a string]", "cases[0]: a case is a mapping"),
    ("cases: []", "field 'cases': must be a non-empty list"),
    ("- a list", "a case file is a mapping with a 'cases' list"),
    ("cases: [{name: c, name: d}]", "duplicate key 'name'"),
    ("cases: [{name: c", "not valid YAML"),
    ("version: 2\ncases: []", "field 'version': only version 1 exists"),
    ("tests: []", "unknown top-level field(s) ['tests']"),
    ("defaults: {tool: x}\ncases: []", "field 'defaults.tool': only"),
    ("server: {tools: read_file}\ncases: []", "field 'server.tools': Input should be a valid list"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CASES)
def test_malformed_case_files_are_refused_naming_the_case_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CaseError) as caught:
        load_cases(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_an_unreadable_case_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match="cannot read the case file"):
        load_cases(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(CaseError, match="not UTF-8"):
        load_cases(tmp_path / "bad.yaml")


def test_json_case_files_are_read_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"cases": [{"name": "c", "workload": "w", "tenant": "t", "tool": "read_file", "expect": "deny"}]}',
        "cases.json",
    )
    assert load_cases(path).cases[0].expect == "deny"
    dup = write(tmp_path, '{"cases": [], "cases": []}', "dup.json")
    with pytest.raises(CaseError, match="duplicate key"):
        load_cases(dup)


@pytest.mark.parametrize(
    ("server", "case", "message"),
    [
        ("", "tool: raed_file", "field 'tool': unknown tool 'raed_file': no rule of the policy names it"),
        ("server: {tools: [read_file]}", "tool: deploy", "field 'tool': unknown tool 'deploy': the server does not"),
        ("", "resource: 'docs://x'", "field 'resource': unknown resource 'docs://x'"),
        ("", "tool: read_file\n    rule: tenant-boundry", "field 'rule': no rule 'tenant-boundry'"),
    ],
)
def test_cases_naming_unknown_tools_or_rules_are_bad_input(
    tmp_path: Path, server: str, case: str, message: str
) -> None:
    path = write(
        tmp_path,
        f"""
{server}
cases:
  - name: c
    workload: w
    tenant: acme
    expect: deny
    {case}
""",
    )
    with pytest.raises(CaseError) as caught:
        run(POLICY, path)
    assert "case 'c' (cases[0]), " + message in str(caught.value)


def test_defaults_fill_cases_and_a_principal_brings_its_own_issuer(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults: {issuer: https://idp.example.com, tenant: acme, workload: reader}
        cases:
          - {name: a, tool: read_file, expect: allow}
          - {name: b, principal: {issuer: https://other.example, subject: s}, tool: read_file, expect: deny}
        """,
    )
    first, second = load_cases(path).cases
    assert (first.issuer, first.workload, first.tenant) == ("https://idp.example.com", "reader", "acme")
    assert second.issuer is None and second.workload is None and second.principal is not None


# -- JUnit XML -------------------------------------------------------------------------------------


def test_junit_xml_has_one_testcase_per_case_with_failures_and_coverage(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults: {issuer: https://idp.example.com, tenant: acme, workload: r}
        cases:
          - {name: reads, tool: read_file, arguments: {repo: acme, path: a}, expect: allow}
          - {name: "wrong <one>", tool: read_file, arguments: {repo: globex, path: a}, expect: allow}
        """,
    )
    result = run(POLICY, path)
    root = ET.fromstring(junit_xml(result))  # noqa: S314 - XML this process produced
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["reads", "wrong <one>"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("expected allow, got deny by rule 'tenant-boundary'")
    assert "[applies] deny" in (failure.text or "")
    properties = {str(p.get("name")): p.get("value") for p in suite.iter("property")}
    assert properties["coverage.percent"] == "66.7"
    assert properties["coverage.unexercised"] == "deploy-with-approval"
