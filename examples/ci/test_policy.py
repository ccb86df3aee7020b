"""The repository-agents policy, proven through a real governed session of the real server.

Run:  pytest examples/ci

The fixtures come from mcpgov's pytest plugin (installed with mcpgov): ``mcpgov_governed``
governs the server below with ``policy.yaml`` (test identities in any tenant, credentials
carrying the purpose, a frozen clock, a captured audit trail). Each assertion performs the
request and reads the server's decision from the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from mcp.server.mcpserver import MCPServer

from mcpgov.testing import (
    FrozenClock,
    GovernedHarness,
    InMemoryAuditSink,
    assert_allowed,
    assert_denied,
    assert_hidden,
    assert_requires_approval,
    assert_visible,
)

POLICY = Path(__file__).with_name("policy.yaml")
IDP = "https://idp.example.com"
MONDAY_MORNING = "2025-06-16T10:00:00Z"


def build_server() -> MCPServer:
    """The server under test (in a real project: imported from the application)."""
    server = MCPServer("repositories")

    @server.tool()
    def read_file(repo: str, path: str) -> str:
        """Read a file of a repository."""
        return f"<{repo}/{path}>"

    @server.tool()
    def deploy(repo: str, version: str) -> str:
        """Deploy a repository."""
        return f"deployed {repo} {version}"

    return server


@pytest.fixture(params=["auto", "legacy"])
def mcpgov_mode(request: pytest.FixtureRequest) -> str:
    """Run every test in both protocol modes (overrides the plugin's default, "auto")."""
    mode: str = request.param
    return mode


@pytest.fixture
def gov(mcpgov_governed: Callable[..., GovernedHarness], mcpgov_clock: FrozenClock) -> GovernedHarness:
    mcpgov_clock.set(MONDAY_MORNING)
    return mcpgov_governed(build_server(), POLICY)


def test_an_agent_reads_its_own_tenants_repository(gov: GovernedHarness) -> None:
    verdict = assert_allowed(
        gov, "read_file", {"repo": "acme", "path": "README.md"}, tenant="acme", workload="reader-7", issuer=IDP
    )
    assert verdict.rule == "read-repository"  # noqa: S101 - a plain pytest assertion


def test_a_reader_may_not_deploy(gov: GovernedHarness) -> None:
    assert_denied(gov, "deploy", {"repo": "acme", "version": "1.4.2"}, tenant="acme", workload="reader-7", issuer=IDP)


def test_a_release_agent_deploys_only_with_approval(gov: GovernedHarness) -> None:
    assert_requires_approval(
        gov,
        "deploy",
        {"repo": "acme", "version": "1.4.2"},
        rule="deploy-with-approval",
        purpose="release",
        tenant="acme",
        workload="release-bot",
        issuer=IDP,
    )


def test_no_deploy_in_the_evening(gov: GovernedHarness, mcpgov_clock: FrozenClock) -> None:
    mcpgov_clock.advance(12 * 3600)  # 22:00
    assert_denied(
        gov,
        "deploy",
        {"repo": "acme", "version": "1.4.2"},
        purpose="release",
        tenant="acme",
        workload="release-bot",
        issuer=IDP,
    )


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [("read_file", {"repo": "globex", "path": "README.md"}), ("deploy", {"repo": "globex", "version": "1"})],
)
def test_nobody_crosses_tenants(gov: GovernedHarness, tool: str, arguments: dict[str, str]) -> None:
    assert_denied(
        gov,
        tool,
        arguments,
        rule="tenant-boundary",
        purpose="release",
        tenant="acme",
        workload="release-bot",
        issuer=IDP,
    )


def test_a_reader_sees_only_what_it_may_use(gov: GovernedHarness) -> None:
    assert_visible(gov, "read_file", tenant="acme", workload="reader-7", issuer=IDP)
    assert_hidden(gov, "deploy", tenant="acme", workload="reader-7", issuer=IDP)


def test_every_refusal_is_audited(gov: GovernedHarness, mcpgov_audit: InMemoryAuditSink) -> None:
    assert_denied(gov, "deploy", {"repo": "acme", "version": "1"}, tenant="acme", workload="reader-7", issuer=IDP)
    refusals = [e for e in mcpgov_audit.decisions() if e.effect == "deny" and e.target == "deploy"]
    assert [e.principal for e in refusals] == [f"{IDP}#reader-7"]  # noqa: S101 - a plain pytest assertion


@pytest.mark.anyio
async def test_async_tests_await_the_harness(gov: GovernedHarness) -> None:
    await gov.assert_allowed("read_file", {"repo": "acme", "path": "a"}, tenant="acme", workload="reader-7", issuer=IDP)
