"""The test kit cannot pass falsely: every case and assertion names something the server or policy
declares (Cedar policies and lowlevel servers included), expected rules exist, every error names
its case and field, JUnit output is valid XML whatever the names, and production code never
imports the test kit."""

from __future__ import annotations

import ast
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from click.testing import CliRunner
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

import mcpgov
from mcpgov import ConfigurationError
from mcpgov.cli import main
from mcpgov.policy import CedarPolicy, Policy
from mcpgov.policy._cases import CaseError, junit_xml, load_cases, run_cases
from mcpgov.testing import GovernedHarness, Inventory, PolicyAssertionError

pytestmark = pytest.mark.anyio

POLICY = Policy.from_yaml(
    """
rules:
  - {id: reads, effect: allow, tools: [read_file]}
  - {id: no-deploy, effect: deny, tools: [deploy]}
""",
    source="p.yaml",
)

CEDAR = CedarPolicy(
    """
@id("reads")
permit(principal is Principal, action, resource == Tool::"read_file");
""",
    source="p.cedar",
)


def _cases(tmp_path: Path, body: str, name: str = "cases.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def _run(policy: Any, path: Path, inventory: Inventory | None = None) -> Any:
    suite = load_cases(path)
    return anyio.run(lambda: run_cases(policy, suite, inventory=inventory))


CASE = """
cases:
  - name: {name}
    workload: agent
    tenant: acme
    tool: {tool}
    expect: {expect}
{extra}"""


@pytest.mark.parametrize("misspelt", ["read_fle", "Read_file", "read_file ", "deploy"])
def test_a_cedar_case_naming_a_tool_nobody_declares_is_bad_input(tmp_path: Path, misspelt: str) -> None:
    path = _cases(tmp_path, CASE.format(name="typo", tool=f'"{misspelt}"', expect="deny", extra=""))
    with pytest.raises(CaseError, match=r"case 'typo' \(cases\[0\]\), field 'tool'") as info:
        _run(CEDAR, path)
    assert "Cedar" in str(info.value)
    # With the server's inventory, the declared tool runs and the undeclared one is refused.
    inventory = Inventory.of(["read_file"])
    with pytest.raises(CaseError, match="does not declare it"):
        _run(CEDAR, path, inventory)
    ok = _cases(tmp_path, CASE.format(name="ok", tool="read_file", expect="allow", extra=""), "ok.yaml")
    assert _run(CEDAR, ok, inventory).passed == 1


@pytest.mark.parametrize(
    ("rule", "accepted"),
    [
        ("reads", True),
        ("mcpgov:policy:default-deny", True),
        ("mcpgov:identity", True),
        ("mcpgov:policy:bogus", False),
        ("mcpgov:", False),
        ("decl:read_file", False),
        ("Reads", False),
        ("cedar:default-deny", False),
    ],
)
def test_an_expected_rule_must_exist_in_the_policy_or_be_a_stage(tmp_path: Path, rule: str, accepted: bool) -> None:
    path = _cases(tmp_path, CASE.format(name="r", tool="read_file", expect="allow", extra=f"    rule: '{rule}'\n"))
    if accepted:
        _run(POLICY, path)
        return
    with pytest.raises(CaseError, match=rf"case 'r' \(cases\[0\]\), field 'rule': no rule '{rule}'"):
        _run(POLICY, path)


def test_cedar_rule_ids_are_validated_too(tmp_path: Path) -> None:
    inventory = Inventory.of(["read_file"])
    for rule, ok in (("reads", True), ("cedar:default-deny", True), ("nope", False)):
        path = _cases(tmp_path, CASE.format(name="c", tool="read_file", expect="allow", extra=f"    rule: '{rule}'\n"))
        if ok:
            _run(CEDAR, path, inventory)
        else:
            with pytest.raises(CaseError, match="field 'rule'"):
                _run(CEDAR, path, inventory)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ("{many: [" + ", ".join(["1"] * 10_001) + "]}", "too many values"),
        ("{n: 1.0e+400}", ""),
        ("{n: 123456789012345678901234567890}", "interoperable range"),
        ("{deep: " + "[" * 40 + "]" * 40 + "}", "too deeply"),
    ],
)
def test_an_argument_outside_the_limits_names_its_case_and_field(tmp_path: Path, arguments: str, problem: str) -> None:
    path = _cases(
        tmp_path, CASE.format(name="big one", tool="read_file", expect="allow", extra=f"    arguments: {arguments}\n")
    )
    with pytest.raises(CaseError, match=r"case 'big one' \(cases\[0\]\), field 'arguments'") as info:
        _run(POLICY, path)
    assert problem in str(info.value)


@pytest.mark.parametrize("name", ["bell\x07", "nul\x00here", "esc\x1b[31m", "line\x0bbreak", "\ufffe", "ok \\u0007"])
def test_junit_output_is_valid_xml_whatever_the_case_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / "cases.json"
    import json

    case = {"name": name, "workload": "a", "tenant": "acme", "tool": "read_file", "expect": "deny"}
    path.write_text(json.dumps({"cases": [case]}), encoding="utf-8")
    run = _run(POLICY, path)
    xml = junit_xml(run)
    root = ET.fromstring(xml)  # noqa: S314 - our own output
    (testcase,) = root.iter("testcase")
    recorded = testcase.get("name") or ""
    assert all(ch in "\t\n\r" or ord(ch) >= 0x20 for ch in recorded)
    failure = testcase.find("failure")
    assert failure is not None  # read_file is allowed: the case fails, with its message escaped too
    expected = "".join(
        f"\\u{ord(ch):04x}" if (ord(ch) < 0x20 and ch not in "\t\n\r") or ch == "\ufffe" else ch
        for ch in name.replace("\\", "\\\\")
    )
    assert recorded == expected


def test_policy_validate_on_hostile_files_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    files = {
        "deep.yaml": "rules: " + "[" * 50_000 + "]" * 50_000,
        "bomb.yaml": "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
        + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
        + "rules: *i\n",
        "deep.json": '{"rules": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "rec.yaml": "a: &a [*a]\nrules: []\n",
        "bad.cedar": "permit(" * 10_000,
    }
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text)
        result = CliRunner().invoke(main, ["policy", "validate", str(path)])
        assert result.exit_code == 2, (name, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, (name, result.output)
        assert lines[0].startswith("error: ") and name in lines[0]
        assert "Traceback" not in result.output


def test_policy_test_on_a_hostile_case_file_exits_2_naming_it(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rules: [{id: reads, effect: allow, tools: [read_file]}]\n")
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases: " + "[" * 20_000 + "]" * 20_000)
    result = CliRunner().invoke(main, ["policy", "test", str(policy), str(cases)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "cases.yaml" in result.output


# -- lowlevel servers -----------------------------------------------------------------------------


def _lowlevel(tools: list[str]) -> Server[Any]:
    async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
        return types.ListToolsResult(tools=[types.Tool(name=n, input_schema={"type": "object"}) for n in tools])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        return types.CallToolResult(content=[types.TextContent(type="text", text="ran")])

    return Server("low", on_list_tools=list_tools, on_call_tool=call_tool)


async def test_assertions_on_a_lowlevel_server_refuse_undeclared_tools(mode: str) -> None:
    harness = GovernedHarness(_lowlevel(["read_file", "deploy"]), POLICY, mode=mode)
    await harness.assert_allowed("read_file", workload="a", tenant="acme")
    await harness.assert_denied("deploy", workload="a", tenant="acme")
    await harness.assert_hidden("deploy", workload="a", tenant="acme")
    for check in (harness.assert_denied, harness.assert_hidden, harness.assert_visible, harness.assert_allowed):
        with pytest.raises(ConfigurationError, match="unknown tool 'delpoy'"):
            await check("delpoy", workload="a", tenant="acme")
    with pytest.raises(PolicyAssertionError):
        await harness.assert_visible("deploy", workload="a", tenant="acme")


async def test_a_lowlevel_server_governed_by_its_own_chain_needs_an_inventory(mode: str) -> None:
    from mcpgov.policy import PolicyMiddleware
    from mcpgov.testing import FrozenClock, IdentityIssuer

    clock = FrozenClock()
    issuer = IdentityIssuer("https://issuer.test", audience="mcp://test-server", clock=clock)
    server = _lowlevel(["read_file"])
    mcpgov.govern(server, mcpgov.identity.IdentityMiddleware(issuer.verifier()), PolicyMiddleware(POLICY))
    harness = GovernedHarness(server, identities=issuer, clock=clock, mode=mode)
    with pytest.raises(ConfigurationError, match="pass inventory="):
        await harness.assert_denied("read_fle", workload="a", tenant="acme")
    declared = GovernedHarness(server, identities=issuer, clock=clock, mode=mode, inventory=Inventory.of(["read_file"]))
    with pytest.raises(ConfigurationError, match="unknown tool 'read_fle'"):
        await declared.assert_denied("read_fle", workload="a", tenant="acme")
    await declared.assert_allowed("read_file", workload="a", tenant="acme")


# -- production code does not depend on the test kit ----------------------------------------------

_TEST_KIT = ("mcpgov.testkit", "mcpgov.testing", "mcpgov.pytest_plugin", "pytest", "hypothesis")
_KIT_MODULES = ("testkit/", "testing.py", "pytest_plugin.py")


def _imported(node: ast.AST) -> list[str]:
    """What an import statement loads, ``from mcpgov import testing`` included."""
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return []


def _is_kit(name: str) -> bool:
    return any(name == kit or name.startswith(kit + ".") for kit in _TEST_KIT)


def test_production_modules_never_import_the_test_kit() -> None:
    """Not even inside a function: the policy case runner uses ``mcpgov._harness``, never the kit."""
    root = Path(mcpgov.__file__).parent
    offenders = []
    checked = 0
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(_KIT_MODULES):
            continue
        checked += 1
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            offenders += [f"{relative}: {name}" for name in _imported(node) if _is_kit(name)]
    assert checked > 50
    assert offenders == []


def test_the_import_check_sees_every_spelling() -> None:
    spellings = ["import mcpgov.testing", "from mcpgov import testing", "from mcpgov.testkit import Verdict"]
    for source in spellings:
        (node,) = ast.parse(source).body
        assert any(_is_kit(name) for name in _imported(node)), source
    for source in ["from mcpgov import testing_tools_of_mine", "import pytest_asyncio", "from mcpgov import _harness"]:
        (node,) = ast.parse(source).body
        assert not any(_is_kit(name) for name in _imported(node)), source
