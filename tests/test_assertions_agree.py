"""The assertion helpers agree with production, and the harness they run on behaves as documented.

The property test drives random principals, tenants, tools, arguments, purposes and times through
both the assertion helpers and an independently built governed session (identity middleware,
credential middleware, policy, a GovernedClient with an identity token and credentials), and
checks that exactly one helper passes and that it names what production did.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from mcp import MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Actor, ConfigurationError, Decision, GovContext, GovernedClient, Hooks, Principal, govern
from mcpgov.approval import ApprovalMiddleware, ApprovalRequest, CallbackApprover
from mcpgov.credentials import (
    ClientCredentials,
    CredentialIssuer,
    CredentialMiddleware,
    IssuerTokenSource,
    SigningKeySet,
)
from mcpgov.identity import IdentityMiddleware, IdentityVerifier
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import (
    FrozenClock,
    GovernedHarness,
    IdentityIssuer,
    InMemoryAuditSink,
    PolicyAssertionError,
    assert_allowed,
    assert_denied,
    assert_hidden,
    assert_requires_approval,
    assert_visible,
)

POLICY = Policy.from_file(Path(__file__).parent.parent / "examples" / "ci" / "policy.yaml")
IDP = "https://idp.example.com"
OTHER = "https://idp.other.example"
AUDIENCE = "mcp://test-server"
TOOLS = ("read_file", "deploy", "export")
CLOCK = FrozenClock()
ISSUERS = {url: IdentityIssuer(url, audience=AUDIENCE, clock=CLOCK) for url in (IDP, OTHER, "https://issuer.test")}
CREDENTIALS = CredentialIssuer("https://credentials.test", SigningKeySet.generate("Ed25519", clock=CLOCK), clock=CLOCK)


def build_server(ran: list[str]) -> MCPServer:
    server = MCPServer("repositories")

    @server.tool()
    def read_file(repo: str, path: str) -> str:
        ran.append("read_file")
        return f"<{repo}/{path}>"

    @server.tool()
    def deploy(repo: str, version: str) -> str:
        ran.append("deploy")
        return "deployed"

    @server.tool()
    def export(repo: str) -> str:
        ran.append("export")
        return "exported"

    return server


async def production(
    *,
    mode: str,
    issuer: str,
    subject: str,
    tenant: str | None,
    tool: str,
    arguments: dict[str, Any],
    purpose: str | None,
) -> tuple[str, set[str]]:
    """What a deployment does: its own governed server, its own client; no harness code involved."""
    ran: list[str] = []
    server = build_server(ran)
    verifier = IdentityVerifier(*(i.config() for i in ISSUERS.values()), clock=CLOCK)
    govern(
        server,
        IdentityMiddleware(verifier),
        CredentialMiddleware(CREDENTIALS.verifier(AUDIENCE)),
        PolicyMiddleware(POLICY, clock=CLOCK),
    )
    token = ISSUERS[issuer].token(subject, tenant=tenant)
    me = Principal(issuer, subject, tenant=tenant, claims={"exp": CLOCK() + 300})
    credentials = ClientCredentials(IssuerTokenSource(CREDENTIALS), audience=AUDIENCE, clock=CLOCK)
    outcome = "allow"
    listed: set[str] = set()
    async with GovernedClient(server, credentials, identity=token, principal=me, purpose=purpose, mode=mode) as client:
        try:
            listed = {t.name for t in (await client.list_tools()).tools}
        except MCPError:
            listed = set()
        try:
            await client.call_tool(tool, arguments)
        except MCPError as exc:
            outcome = "require_approval" if exc.code == -32004 else "deny"
    if tool in ran:
        outcome = "allow"  # the tool ran: whatever the client saw afterwards, the server allowed it
    return outcome, listed


def helpers_say(harness: GovernedHarness, tool: str, arguments: dict[str, Any], **who: Any) -> list[str]:
    passed = []
    checks: dict[str, Callable[..., Any]] = {
        "allow": assert_allowed,
        "deny": assert_denied,
        "require_approval": assert_requires_approval,
    }
    for effect, check in checks.items():
        try:
            check(harness, tool, arguments, **who)
        except PolicyAssertionError:
            continue
        passed.append(effect)
    return passed


# A request the policy requires approval for, and changes to it: each change may flip the decision
# (another issuer, a reader, another tenant or none, another repository or a malformed one, another
# purpose, outside office hours), so every effect occurs and so do their boundaries.
BASE: dict[str, Any] = {
    "issuer": IDP,
    "subject": "release-bot",
    "tenant": "acme",
    "repo": "own",
    "purpose": "release",
    "at": "2025-06-16T10:00:00Z",
}
CHANGES = [
    ("issuer", OTHER),
    ("subject", "reader-7"),
    ("subject", "release-x"),
    ("tenant", "globex"),
    ("tenant", None),
    ("repo", "globex"),
    ("repo", 7),
    ("repo", None),
    ("purpose", None),
    ("purpose", "experiment"),
    ("at", "2025-06-16T22:00:00Z"),
    ("at", "2025-06-15T10:00:00Z"),
]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@settings(max_examples=60, deadline=None)
@given(
    tool=st.sampled_from(["read_file", "deploy", "deploy", "export"]),
    changes=st.lists(st.sampled_from(CHANGES), max_size=3),
)
@example(tool="deploy", changes=[])  # require_approval
@example(tool="read_file", changes=[])  # allow
@example(tool="deploy", changes=[("tenant", None)])  # refused at identity
def test_assertion_helpers_agree_with_a_real_governed_session(
    mode: str, tool: str, changes: list[tuple[str, Any]]
) -> None:
    request = {**BASE, **dict(changes)}
    issuer, subject, tenant, purpose = request["issuer"], request["subject"], request["tenant"], request["purpose"]
    CLOCK.set(request["at"])
    arguments: dict[str, Any] = {"path": "a", "version": "1"} if tool != "export" else {}
    if request["repo"] is not None:
        arguments["repo"] = (tenant or "acme") if request["repo"] == "own" else request["repo"]
    expected, listed = anyio.run(
        lambda: production(
            mode=mode, issuer=issuer, subject=subject, tenant=tenant, tool=tool, arguments=arguments, purpose=purpose
        )
    )
    event(f"production: {expected}")

    harness = GovernedHarness(
        build_server([]), POLICY, identities=ISSUERS.values(), credentials=CREDENTIALS, clock=CLOCK, mode=mode
    )
    who = {"workload": subject, "issuer": issuer, "tenant": tenant}
    assert helpers_say(harness, tool, arguments, purpose=purpose, **who) == [expected]
    for name in TOOLS:
        if name in listed:
            assert_visible(harness, name, **who)
            with pytest.raises(PolicyAssertionError):
                assert_hidden(harness, name, **who)
        else:
            assert_hidden(harness, name, **who)
            with pytest.raises(PolicyAssertionError):
                assert_visible(harness, name, **who)


# -- the harness ---------------------------------------------------------------------------------


def _harness(mode: str, **options: Any) -> tuple[GovernedHarness, list[str]]:
    ran: list[str] = []
    clock = options.pop("clock", FrozenClock("2025-06-16T10:00:00Z"))
    return GovernedHarness(build_server(ran), POLICY, clock=clock, mode=mode, **options), ran


def test_purpose_and_task_reach_the_server_in_the_signed_credential(mode: str) -> None:
    harness, ran = _harness(mode)
    verdict = assert_requires_approval(
        harness,
        "deploy",
        {"repo": "acme", "version": "1"},
        purpose="release",
        task_id="rel-42",
        tenant="acme",
        workload="release-bot",
        issuer=IDP,
    )
    assert verdict.event is not None
    assert (verdict.event.purpose, verdict.event.task_id) == ("release", "rel-42")
    assert verdict.event.credential_id is not None  # a credential carried them
    assert verdict.error is not None and verdict.error.code == -32004
    assert ran == []
    # An argument claiming a purpose is just an argument: policy never reads purpose from there.
    assert_denied(
        harness, "deploy", {"repo": "acme", "version": "1", "purpose": "release"}, tenant="acme",
        workload="release-bot", issuer=IDP,
    )  # fmt: skip


def test_the_verdict_carries_the_result_rule_and_audit_events(mode: str) -> None:
    harness, ran = _harness(mode)
    verdict = assert_allowed(
        harness, "read_file", {"repo": "acme", "path": "x"}, tenant="acme", workload="r", issuer=IDP
    )
    assert verdict.rule == "read-repository"
    assert verdict.result.content[0].text == "<acme/x>"
    binding = ("identity.verified", "session.bound")  # the first request of a connection carries these
    trail = [e.type for e in verdict.events if e.target == "read_file" and e.type not in binding]
    assert trail == ["credential.verified", "decision", "outcome"]
    assert ran == ["read_file"]
    assert verdict.describe().startswith("allow by rule 'read-repository'")


def test_a_principal_object_and_its_claims_and_actors_are_minted_into_the_token(mode: str) -> None:
    harness, _ = _harness(mode)
    alice = Principal(IDP, "release-bot", tenant="acme", actors=(Actor("alice", IDP),), claims={"scope": "deploy"})
    verdict = assert_requires_approval(
        harness, "deploy", {"repo": "acme", "version": "1"}, principal=alice, purpose="release"
    )
    assert verdict.event is not None
    assert verdict.event.principal == f"{IDP}#release-bot"
    assert verdict.event.actors == ("alice",)
    with pytest.raises(ConfigurationError, match="contradicts"):
        assert_denied(harness, "deploy", {}, principal=alice, tenant="globex")


def test_a_principal_without_a_tenant_is_refused_by_the_servers_identity_check(mode: str) -> None:
    harness, ran = _harness(mode)
    verdict = assert_denied(harness, "read_file", {"repo": "acme", "path": "a"}, tenant=None, workload="r", issuer=IDP)
    assert verdict.reason == "tenant_missing"
    assert verdict.rule == "mcpgov:identity"
    assert ran == []
    assert_hidden(harness, "read_file", tenant=None, workload="r", issuer=IDP)  # the listing is refused too


def test_the_frozen_clock_decides_time_windows(mode: str) -> None:
    clock = FrozenClock("2025-06-16T16:59:00Z")
    harness, _ = _harness(mode, clock=clock)
    deploy = {"repo": "acme", "version": "1"}
    who: dict[str, Any] = {"purpose": "release", "tenant": "acme", "workload": "release-bot", "issuer": IDP}
    assert_requires_approval(harness, "deploy", deploy, **who)
    clock.advance(60)  # 17:00: office hours are over (end is exclusive)
    assert_denied(harness, "deploy", deploy, **who)


def test_an_approval_middleware_asking_someone_counts_as_requiring_approval(mode: str) -> None:
    asked: list[str] = []

    def approver(request: ApprovalRequest) -> bool:
        asked.append(f"{request.target} by {request.rule}")
        return True

    approvals = ApprovalMiddleware(CallbackApprover(approver, name="alice@example.com"))
    harness, ran = _harness(mode, middleware=[approvals])
    who: dict[str, Any] = {"purpose": "release", "tenant": "acme", "workload": "release-bot", "issuer": IDP}
    verdict = assert_requires_approval(harness, "deploy", {"repo": "acme", "version": "1"}, **who)
    assert verdict.approval_requested and verdict.effect == "allow"
    assert asked == ["deploy by deploy-with-approval"]
    assert ran == ["deploy"]


def test_an_already_governed_server_uses_its_own_chain(mode: str) -> None:
    ran: list[str] = []
    server = build_server(ran)
    hooks = Hooks()

    @hooks.tool("read_file")
    def readers(ctx: GovContext) -> Decision:
        return Decision.allow("readers")

    identities = IdentityIssuer(clock=CLOCK)
    govern(server, IdentityMiddleware(identities.verifier()), hooks)
    CLOCK.set("2025-06-16T10:00:00Z")
    harness = GovernedHarness(server, identities=identities, clock=CLOCK, mode=mode)
    assert_allowed(harness, "read_file", {"repo": "x", "path": "y"}, tenant="acme", workload="w", rule="readers")
    with pytest.raises(PolicyAssertionError, match="no PolicyMiddleware") as failed:
        assert_allowed(harness, "deploy", {"repo": "x", "version": "1"}, tenant="acme", workload="w")
    assert failed.value.verdict is not None and failed.value.verdict.rule == "mcpgov:default-deny"
    with pytest.raises(ConfigurationError, match="purpose travels in a signed credential"):
        assert_allowed(harness, "read_file", {"repo": "x", "path": "y"}, tenant="acme", workload="w", purpose="p")
    assert ran == ["read_file"]


def test_misconfigured_harnesses_are_refused_at_construction() -> None:
    server = build_server([])
    with pytest.raises(ConfigurationError, match="not governed"):
        GovernedHarness(server)
    with pytest.raises(ConfigurationError, match="mode must be"):
        GovernedHarness(server, POLICY, mode="modern")
    governed = build_server([])
    identities = IdentityIssuer()
    govern(governed, IdentityMiddleware(identities.verifier()), Hooks())
    with pytest.raises(ConfigurationError, match="already governed"):
        GovernedHarness(governed, POLICY)
    with pytest.raises(ConfigurationError, match="needs identities"):
        GovernedHarness(governed)
    with pytest.raises(ConfigurationError, match="does not trust"):
        GovernedHarness(governed, identities=IdentityIssuer("https://elsewhere.example"))
    with_credentials = build_server([])
    credential_check = CredentialMiddleware(CREDENTIALS.verifier(AUDIENCE))
    govern(with_credentials, IdentityMiddleware(identities.verifier()), credential_check, Hooks())
    with pytest.raises(ConfigurationError, match="verifies credentials"):
        GovernedHarness(with_credentials, identities=identities)


def test_bad_requests_are_clear_errors() -> None:
    harness, _ = _harness("auto")
    with pytest.raises(ConfigurationError, match="needs a tenant"):
        assert_allowed(harness, "read_file", {}, workload="r")
    with pytest.raises(ConfigurationError, match="say who calls"):
        assert_allowed(harness, "read_file", {}, tenant="acme")
    with pytest.raises(ConfigurationError, match="takes no arguments"):
        assert_allowed(harness, "docs://x", {"a": 1}, kind="resource", tenant="acme", workload="r")
    with pytest.raises(ConfigurationError, match="only a tool call carries a purpose"):
        assert_allowed(harness, "docs://x", kind="resource", purpose="p", tenant="acme", workload="r")
    with pytest.raises(ConfigurationError, match=r"unknown tool 'raed_file': the server declares \['deploy', 'export'"):
        assert_denied(harness, "raed_file", {}, tenant="acme", workload="r")
    with pytest.raises(ConfigurationError, match="unknown tool 'deply'"):
        assert_hidden(harness, "deply", tenant="acme", workload="r")
    with pytest.raises(ConfigurationError, match="unknown prompt 'summarise'"):
        assert_denied(harness, "summarise", kind="prompt", tenant="acme", workload="r")
    with pytest.raises(ConfigurationError, match="GovernedHarness"):
        assert_allowed("not a harness", "read_file", tenant="acme", workload="r")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_sync_assertions_refuse_to_run_inside_an_event_loop() -> None:
    harness, _ = _harness("auto")
    with pytest.raises(ConfigurationError, match="await the harness's method"):
        assert_allowed(harness, "read_file", {"repo": "acme", "path": "a"}, tenant="acme", workload="r", issuer=IDP)
    arguments = {"repo": "acme", "path": "a"}
    verdict = await harness.assert_allowed("read_file", arguments, tenant="acme", workload="r", issuer=IDP)
    assert verdict.effect == "allow"


def test_the_captured_audit_trail_is_the_one_given(mode: str) -> None:
    sink = InMemoryAuditSink()
    harness, _ = _harness(mode, audit=sink)
    assert_denied(harness, "export", {"repo": "acme"}, tenant="acme", workload="r", issuer=IDP)
    assert [(e.target, e.effect, e.rule) for e in sink.decisions()] == [
        ("export", "deny", "mcpgov:policy:default-deny")
    ]


def test_frozen_clock() -> None:
    clock = FrozenClock("2025-06-16T10:00:00+02:00")
    assert clock() == 1750060800.0
    assert clock.advance(30) == 1750060830.0
    assert clock.set(5) == 5.0
    assert clock.isoformat() == "1970-01-01T00:00:05+00:00"
    for bad in ("yesterday", "2025-06-16T10:00:00", float("nan"), True):
        with pytest.raises(ConfigurationError):
            FrozenClock(bad)
    with pytest.raises(ConfigurationError, match="only moves forward"):
        clock.advance(-1)
