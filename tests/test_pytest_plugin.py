"""The pytest plugin, as users meet it: user-style test files run by pytester (pass, fail, messages),
the entry point that activates it, ``-p no:mcpgov`` that disables it, and a light load."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EXAMPLE_POLICY = Path(__file__).parent.parent / "examples" / "ci" / "policy.yaml"

HEADER = """
from pathlib import Path

import pytest
from mcp.server.mcpserver import MCPServer

from mcpgov.testing import (
    assert_allowed,
    assert_denied,
    assert_hidden,
    assert_requires_approval,
    assert_visible,
)

POLICY = Path(__file__).with_name("policy.yaml")
IDP = "https://idp.example.com"
ACME = {"tenant": "acme", "issuer": IDP}
ran = []


def build_server():
    server = MCPServer("repositories")

    @server.tool()
    def read_file(repo: str, path: str) -> str:
        ran.append(("read_file", repo, path))
        return f"<{repo}/{path}>"

    @server.tool()
    def deploy(repo: str, version: str) -> str:
        ran.append(("deploy", repo, version))
        return "deployed"

    return server


@pytest.fixture
def gov(mcpgov_governed, mcpgov_clock):
    mcpgov_clock.set("2025-06-16T10:00:00Z")
    return mcpgov_governed(build_server(), POLICY)
"""


def _entry_point_registered() -> bool:
    return any(ep.name == "mcpgov" for ep in importlib.metadata.entry_points(group="pytest11"))


def _plugin_args() -> list[str]:
    """Load the plugin explicitly unless the installed package already registers it."""
    return [] if _entry_point_registered() else ["-p", "mcpgov.pytest_plugin"]


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's project: strict warnings, the example policy, no conftest."""
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n    ignore::mcp.MCPDeprecationWarning\n")
    pytester.makefile(".yaml", policy=EXAMPLE_POLICY.read_text(encoding="utf-8"))
    return pytester


def _run(project: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    project.makepyfile(test_user=HEADER + textwrap.dedent(body))
    return project.runpytest(*_plugin_args(), *args)


def test_a_user_suite_asserting_what_the_policy_does_passes(user_project: pytest.Pytester) -> None:
    result = _run(
        user_project,
        """
        def test_reads(gov):
            verdict = assert_allowed(gov, "read_file", {"repo": "acme", "path": "a"}, workload="reader", **ACME)
            assert verdict.rule == "read-repository"
            assert ("read_file", "acme", "a") in ran

        def test_reader_cannot_deploy(gov):
            assert_denied(gov, "deploy", {"repo": "acme", "version": "1"}, workload="reader", **ACME)
            assert not [r for r in ran if r[0] == "deploy"]

        def test_release_needs_approval(gov):
            assert_requires_approval(
                gov, "deploy", {"repo": "acme", "version": "1"}, purpose="release", workload="release-bot", **ACME
            )
            assert not [r for r in ran if r[0] == "deploy"]

        def test_tenant_boundary(gov):
            assert_denied(
                gov, "read_file", {"repo": "globex", "path": "a"}, rule="tenant-boundary", workload="r", **ACME
            )

        def test_listing(gov):
            assert_visible(gov, "read_file", workload="reader", **ACME)
            assert_hidden(gov, "deploy", workload="reader", **ACME)
        """,
    )
    result.assert_outcomes(passed=5)


def test_a_wrong_expectation_fails_showing_decision_rule_and_explanation(user_project: pytest.Pytester) -> None:
    result = _run(
        user_project,
        """
        def test_wrong(gov):
            assert_allowed(gov, "read_file", {"repo": "globex", "path": "a"}, workload="reader", **ACME)
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*PolicyAssertionError: expected allow, got deny by rule 'tenant-boundary'",
            "*request:  tools/call 'read_file' by https://idp.example.com#reader (tenant 'acme')",
            "*decision: deny by rule 'tenant-boundary' (reason policy_deny): a repository argument must name*",
            "*explanation:",
            "*[[]applies] deny*tenant-boundary: requirement not met: argument 'repo'*",
            "*decision: deny by tenant-boundary: a deny rule applies (deny overrides allow)",
        ]
    )
    # pytest points at the user's line, not into the plugin.
    result.stdout.fnmatch_lines(["*test_user.py:*: PolicyAssertionError"])


def test_an_expected_rule_that_did_not_decide_fails(user_project: pytest.Pytester) -> None:
    result = _run(
        user_project,
        """
        def test_wrong_rule(gov):
            assert_denied(gov, "deploy", {"repo": "acme", "version": "1"}, rule="tenant-boundary",
                          workload="reader", **ACME)
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*expected deny by rule 'tenant-boundary', got deny by rule 'mcpgov:policy:default-deny'"]
    )


def test_a_wrong_listing_expectation_fails_showing_the_listing(user_project: pytest.Pytester) -> None:
    result = _run(
        user_project,
        """
        def test_wrong_listing(gov):
            assert_visible(gov, "deploy", workload="reader", **ACME)
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*expected 'deploy' visible in the listing, but it is not listed",
            "*listed:   read_file",
            "*hidden:   deploy",
            "*request:  discover tool 'deploy'*",
        ]
    )


def test_the_clock_and_audit_fixtures_are_the_sessions_own(user_project: pytest.Pytester) -> None:
    result = _run(
        user_project,
        """
        def test_evening(gov, mcpgov_clock, mcpgov_audit):
            assert_requires_approval(gov, "deploy", {"repo": "acme", "version": "1"}, purpose="release",
                                     workload="release-bot", **ACME)
            mcpgov_clock.advance(8 * 3600)  # 18:00: outside office hours
            assert_denied(gov, "deploy", {"repo": "acme", "version": "1"}, purpose="release",
                          workload="release-bot", **ACME)
            effects = [e.effect for e in mcpgov_audit.decisions() if e.target == "deploy"]
            assert effects == ["require_approval", "deny"]
            assert all(e.purpose == "release" for e in mcpgov_audit.decisions() if e.target == "deploy")
        """,
    )
    result.assert_outcomes(passed=1)


def test_both_protocol_modes_through_the_mode_fixture(user_project: pytest.Pytester) -> None:
    result = _run(
        user_project,
        """
        @pytest.mark.parametrize("mcpgov_mode", ["auto", "legacy"])
        def test_modes(gov, mcpgov_mode):
            assert gov.mode == mcpgov_mode
            assert_allowed(gov, "read_file", {"repo": "acme", "path": "a"}, workload="reader", **ACME)
            assert_hidden(gov, "deploy", workload="reader", **ACME)
        """,
    )
    result.assert_outcomes(passed=2)


def test_async_tests_await_the_harness_and_sync_assertions_say_so(user_project: pytest.Pytester) -> None:
    result = _run(
        user_project,
        """
        @pytest.mark.anyio
        async def test_awaits(gov):
            await gov.assert_allowed("read_file", {"repo": "acme", "path": "a"}, workload="reader", **ACME)
            await gov.assert_hidden("deploy", workload="reader", **ACME)

        @pytest.mark.anyio
        async def test_sync_inside_async(gov):
            assert_allowed(gov, "read_file", {"repo": "acme", "path": "a"}, workload="reader", **ACME)
        """,
        "-p",
        "anyio",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*inside an async test, await the harness's method instead*"])


def test_a_server_governed_with_the_users_own_chain(user_project: pytest.Pytester) -> None:
    result = _run(
        user_project,
        """
        from mcpgov import Decision, Hooks, govern
        from mcpgov.identity import IdentityMiddleware

        @pytest.fixture
        def own(mcpgov_governed, mcpgov_identities):
            server = build_server()
            hooks = Hooks()

            @hooks.tool("read_file")
            def readers(ctx):
                return Decision.allow("readers")

            govern(server, IdentityMiddleware(mcpgov_identities.verifier()), hooks)
            return mcpgov_governed(server)

        def test_own_chain(own):
            assert_allowed(own, "read_file", {"repo": "x", "path": "a"}, tenant="acme", workload="w", rule="readers")
            assert_denied(own, "deploy", {"repo": "x", "version": "1"}, tenant="acme", workload="w")

        def test_own_chain_failure_has_no_policy_to_explain(own):
            assert_allowed(own, "deploy", {"repo": "x", "version": "1"}, tenant="acme", workload="w")
        """,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*expected allow, got deny by rule 'mcpgov:default-deny'",
            "*explanation: none: the server's chain has no PolicyMiddleware to explain it*",
        ]
    )


def test_bad_usage_is_a_clear_error(user_project: pytest.Pytester) -> None:
    result = _run(
        user_project,
        """
        from mcpgov import ConfigurationError

        def test_no_tenant(gov):
            with pytest.raises(ConfigurationError, match="needs a tenant"):
                assert_allowed(gov, "read_file", {"repo": "acme", "path": "a"}, workload="reader")

        def test_unknown_issuer(gov):
            with pytest.raises(ConfigurationError, match="cannot mint identities for issuer"):
                assert_allowed(gov, "read_file", {}, tenant="acme", workload="r", issuer="https://nowhere.example")
        """,
    )
    result.assert_outcomes(passed=2)


# -- activation through the entry point -----------------------------------------------------------


def _fake_distribution(root: Path) -> Path:
    """A distribution registering the plugin under the ``pytest11`` entry point ``mcpgov``."""
    dist = root / "site" / "mcpgov_pytest_entry-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mcpgov-pytest-entry\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\nmcpgov = mcpgov.pytest_plugin\n")
    return root / "site"


def test_the_entry_point_activates_the_plugin_and_no_mcpgov_disables_it(
    user_project: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = _fake_distribution(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(site))
    user_project.makepyfile(
        test_user=HEADER
        + textwrap.dedent(
            """
            def test_plain():
                assert 1 + 1 == 2

            def test_uses_plugin(gov):
                assert_allowed(gov, "read_file", {"repo": "acme", "path": "a"}, workload="reader", **ACME)
            """
        )
    )
    active = user_project.runpytest_subprocess()
    active.assert_outcomes(passed=2)
    disabled = user_project.runpytest_subprocess("-p", "no:mcpgov")
    disabled.assert_outcomes(passed=1, errors=1)
    disabled.stdout.fnmatch_lines(["*fixture 'mcpgov_governed' not found*"])


def test_loading_the_plugin_imports_nothing_beyond_mcpgov_itself() -> None:
    probe = textwrap.dedent(
        """
        import sys
        import pytest, mcpgov
        before = set(sys.modules)
        import mcpgov.pytest_plugin
        print(sorted(set(sys.modules) - before))
        """
    )
    out = subprocess.run(  # noqa: S603 - runs this interpreter on a fixed script
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "['mcpgov.pytest_plugin']"
