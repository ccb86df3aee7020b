"""``mcpgov audit prove`` on real governed sessions: a clean task proves all three verdicts;
planted violations (a credential wider than its use, a cross-tenant call a careless policy
allowed, a call after revocation a misconfigured verifier admitted, an expired credential) each
fail the right verdict with the evidence; bad input exits 2, never with a traceback."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
import rfc8785
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import (
    META_CREDENTIAL,
    AuditEvent,
    Auditor,
    ConfigurationError,
    CredentialError,
    Decision,
    GovContext,
    GovernedClient,
    Hooks,
    Principal,
    govern,
)
from mcpgov.audit import JsonlSink, ProofScope, QueuedSink, prove, request_keys
from mcpgov.audit._jsonl import GENESIS, line_hash
from mcpgov.audit._prove import render_html, render_json, render_text
from mcpgov.cli import main
from mcpgov.credentials import (
    ClientCredentials,
    CredentialIssuer,
    CredentialMiddleware,
    CredentialVerifier,
    IssuerTokenSource,
    RevocationList,
    SigningKeySet,
    open_task,
)

pytestmark = pytest.mark.anyio

AUDIENCE = "https://deploy.example"
AGENT = Principal(issuer="https://id.example", subject="release-bot", tenant="acme", auth_method="jwt")


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prove-keys") / "audit.jwks"
    assert CliRunner().invoke(main, ["keys", "generate", "--out", str(path)]).exit_code == 0
    return path


class Stack:
    """A governed deploy server with per-task credentials, writing one signed, hash-chained log."""

    def __init__(self, directory: Path, key_file: Path, *, issuer_clock: Callable[[], float] = time.time) -> None:
        self.log = directory / "audit.jsonl"
        self.auditor = Auditor([QueuedSink(JsonlSink(self.log, checkpoint_key=key_file, checkpoint_every=5))])
        self.issuer = CredentialIssuer(
            "https://issuer.example",
            SigningKeySet.generate("Ed25519"),
            max_ttl=300,
            audit=self.auditor,
            clock=issuer_clock,
        )
        self.verifier: CredentialVerifier = self.issuer.verifier(AUDIENCE)

    def server(self) -> MCPServer:
        server = MCPServer("deployer")
        hooks = Hooks()

        @server.tool()
        def run_tests(ref: str) -> str:
            return f"tests passed for {ref}"

        @server.tool()
        def deploy(version: str) -> str:
            return f"deployed {version}"

        @server.tool()
        def drop_database() -> str:
            return "dropped"

        @hooks.tool("*")
        def careless(ctx: GovContext) -> Decision:  # allows every caller, every tenant
            return Decision.allow("ci-may-do-anything")

        govern(server, request_keys, CredentialMiddleware(self.verifier), hooks, audit=self.auditor)
        return server

    async def close(self) -> None:
        await self.auditor.aclose()


async def clean_task(stack: Stack, server: MCPServer, mode: str) -> None:
    credentials = ClientCredentials(IssuerTokenSource(stack.issuer), audience=AUDIENCE, ttl=120)
    governed = GovernedClient(server, credentials, principal=AGENT, audit=stack.auditor, mode=mode)
    async with governed as client, open_task(client, "release-1", purpose="deploy"):
        await client.call_tool("run_tests", {"ref": "v1"})
        await client.call_tool("deploy", {"version": "1.0"})
        await client.call_tool("run_tests", {"ref": "v1-smoke"})


async def call_with(server: MCPServer, token: str, tool: str, arguments: dict[str, Any], mode: str) -> None:
    async with Client(server, mode=mode) as client:
        result = await client.call_tool(tool, arguments, meta=cast(Any, {META_CREDENTIAL: token}))
        assert result.is_error is False


def verdicts(log: Path, key_file: Path, **scope: Any) -> dict[str, tuple[bool, str]]:
    proof = prove([log], ProofScope(**scope), public_key=key_file)
    assert proof.chain.ok, proof.chain.problems
    return {v.name: (v.holds, " | ".join(v.evidence)) for v in proof.verdicts}


async def test_a_clean_task_proves_all_three_verdicts(tmp_path: Path, key_file: Path, mode: str) -> None:
    stack = Stack(tmp_path, key_file)
    await clean_task(stack, stack.server(), mode)
    await stack.close()
    proof = prove([stack.log], ProofScope(task="release-1"), public_key=key_file)
    assert proof.chain.ok and proof.chain.sealed
    assert proof.proven, [v for v in proof.verdicts if not v.holds]
    server_calls = [c for c in proof.calls if c.side == "server"]
    assert [c.target for c in server_calls] == ["run_tests", "deploy", "run_tests"]
    for call in server_calls:
        assert call.principal == AGENT.id and call.tenant == "acme" and call.purpose == "deploy"
        assert call.credential and call.rule == "ci-may-do-anything" and call.args_hash
        grant = proof.credentials[call.credential]
        assert grant.tools == (call.target,) and grant.audience == AUDIENCE and grant.ttl == 120
    code, out = _cli("audit", "prove", "--task", "release-1", "--public-key", str(key_file), str(stack.log))
    assert code == 0, out
    assert "least-privilege: PROVEN" in out and "tenant-bound: PROVEN" in out and "time-limited: PROVEN" in out


async def test_a_credential_for_more_tools_than_used_fails_least_privilege(
    tmp_path: Path, key_file: Path, mode: str
) -> None:
    stack = Stack(tmp_path, key_file)
    server = stack.server()
    wide = await stack.issuer.mint(
        AGENT, audience=AUDIENCE, tools=["run_tests", "deploy", "drop_database"], task_id="t-wide", ttl=60
    )
    await call_with(server, wide.token, "run_tests", {"ref": "v2"}, mode)
    await stack.close()
    found = verdicts(stack.log, key_file, task="t-wide")
    holds, evidence = found["least-privilege"]
    assert not holds and "deploy" in evidence and "drop_database" in evidence and wide.id in evidence
    assert found["tenant-bound"][0] and found["time-limited"][0]
    code, out = _cli("audit", "prove", "--task", "t-wide", "--format", "json", str(stack.log))
    assert code == 1
    data = json.loads(out)
    assert [v["name"] for v in data["verdicts"] if not v["holds"]] == ["least-privilege"]


async def test_a_cross_tenant_call_fails_tenant_bound(tmp_path: Path, key_file: Path, mode: str) -> None:
    stack = Stack(tmp_path, key_file)
    server = stack.server()
    await clean_task(stack, server, mode)
    stranger = Principal(issuer="https://id.example", subject="globex-bot", tenant="globex")
    foreign = await stack.issuer.mint(stranger, audience=AUDIENCE, tools=["deploy"], task_id="release-1", ttl=60)
    await call_with(server, foreign.token, "deploy", {"version": "6.6.6"}, mode)  # the careless policy allows it
    await stack.close()
    found = verdicts(stack.log, key_file, task="release-1")
    holds, evidence = found["tenant-bound"]
    assert not holds and "tenant acme" in evidence and "tenant globex" in evidence and "globex-bot" in evidence


async def test_a_call_after_revocation_admitted_by_a_misconfigured_verifier_fails_time_limited(
    tmp_path: Path, key_file: Path, mode: str
) -> None:
    stack = Stack(tmp_path, key_file)
    stack.verifier = CredentialVerifier(  # its own, empty revocation list: it never hears of revocations
        issuer="https://issuer.example", audience=AUDIENCE, keys=stack.issuer.keys, revocations=RevocationList()
    )
    server = stack.server()
    credential = await stack.issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t-rev", ttl=60)
    await call_with(server, credential.token, "deploy", {"version": "1"}, mode)
    await stack.issuer.revoke(credential)
    await call_with(server, credential.token, "deploy", {"version": "2"}, mode)
    await stack.close()
    found = verdicts(stack.log, key_file, task="t-rev")
    holds, evidence = found["time-limited"]
    assert not holds and "after it was revoked" in evidence and credential.id in evidence
    assert evidence.count("after it was revoked") == 1  # the call before the revocation is fine
    assert found["least-privilege"][0] and found["tenant-bound"][0]


SUB_AGENT = Principal(issuer="https://id.example", subject="sub-bot", tenant="acme", auth_method="jwt")
OTHER = Principal(issuer="https://id.example", subject="other-bot", tenant="acme", auth_method="jwt")


def blind_verifier(stack: Stack) -> None:
    """A verifier with its own, empty revocation list: it never hears of revocations."""
    stack.verifier = CredentialVerifier(
        issuer="https://issuer.example", audience=AUDIENCE, keys=stack.issuer.keys, revocations=RevocationList()
    )


@pytest.mark.parametrize(
    "revocation",
    ["parent", "grandparent", "tenant_task", "owner_task", "owner_principal", "delegator_principal"],
)
async def test_a_derived_or_task_wide_revocation_a_blind_verifier_ignored_fails_time_limited(
    tmp_path: Path, key_file: Path, revocation: str
) -> None:
    """Every revocation the issuer enforces (a credential and everything derived from it, a task
    of one owner or of the whole tenant, a principal and what it owns or delegated) covers the
    credentials it covers in the proof too: a use after it is never proven."""
    stack = Stack(tmp_path, key_file)
    blind_verifier(stack)
    server = stack.server()
    root = await stack.issuer.mint(
        AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t-derived", ttl=60, may_act=[SUB_AGENT]
    )
    child = await stack.issuer.delegate(root.token, subject=SUB_AGENT, may_act=[OTHER])
    grandchild = await stack.issuer.delegate(child.token, subject=OTHER)
    await call_with(server, grandchild.token, "deploy", {"version": "1"}, "legacy")
    if revocation == "parent":
        await stack.issuer.revoke(child)
    elif revocation == "grandparent":
        await stack.issuer.revoke(root.id)
    elif revocation == "tenant_task":
        await stack.issuer.revoke_tenant_task("acme", "t-derived")
    elif revocation == "owner_task":
        await stack.issuer.revoke_task(AGENT, "t-derived")
    elif revocation == "owner_principal":
        await stack.issuer.revoke_principal(AGENT)
    else:
        await stack.issuer.revoke_principal(SUB_AGENT)
    await call_with(server, grandchild.token, "deploy", {"version": "2"}, "legacy")
    await stack.close()
    with pytest.raises(CredentialError):  # the issuer itself refuses it
        await stack.issuer.verify_own(grandchild.token)
    holds, evidence = verdicts(stack.log, key_file, task="t-derived")["time-limited"]
    assert not holds and "after it was revoked" in evidence and grandchild.id in evidence
    assert evidence.count("after it was revoked") == 1  # the call before the revocation is fine


async def test_a_revocation_of_another_owners_task_or_another_principal_leaves_the_credential_live(
    tmp_path: Path, key_file: Path
) -> None:
    stack = Stack(tmp_path, key_file)
    server = stack.server()
    credential = await stack.issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t-mine", ttl=60)
    await stack.issuer.revoke_task(OTHER, "t-mine")  # another principal's task of the same id
    await stack.issuer.revoke_principal(OTHER)
    await call_with(server, credential.token, "deploy", {"version": "1"}, "legacy")
    await stack.close()
    holds, evidence = verdicts(stack.log, key_file, task="t-mine")["time-limited"]
    assert holds, evidence


async def test_a_revocation_of_a_scope_the_proof_does_not_know_fails_time_limited(
    tmp_path: Path, key_file: Path
) -> None:
    stack = Stack(tmp_path, key_file)
    server = stack.server()
    credential = await stack.issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t-unknown", ttl=60)
    await stack.auditor.emit(
        AuditEvent.from_context(
            GovContext(side="server", method="credentials/revoked", tenant="acme", task_id="t-unknown"),
            "credential.revoked",
            attributes={"scope": "everything", "tenant": "acme"},
        )
    )
    await call_with(server, credential.token, "deploy", {"version": "1"}, "legacy")
    await stack.close()
    holds, evidence = verdicts(stack.log, key_file, task="t-unknown")["time-limited"]
    assert not holds and "after it was revoked" in evidence


async def test_an_expired_credential_fails_time_limited(tmp_path: Path, key_file: Path, mode: str) -> None:
    def past() -> float:
        return time.time() - 1000  # the issuer's (and its verifier's) clock is wrong

    stack = Stack(tmp_path, key_file, issuer_clock=past)
    server = stack.server()
    credential = await stack.issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t-exp", ttl=60)
    await call_with(server, credential.token, "deploy", {"version": "1"}, mode)
    await stack.close()
    holds, evidence = verdicts(stack.log, key_file, task="t-exp")["time-limited"]
    assert not holds and "after it expired" in evidence


async def test_a_call_without_a_credential_is_not_time_limited_and_a_long_ttl_fails(
    tmp_path: Path, key_file: Path
) -> None:
    stack = Stack(tmp_path, key_file)
    credential = await stack.issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t-long", ttl=300)
    await call_with(stack.server(), credential.token, "deploy", {"version": "1"}, "legacy")
    await stack.close()
    proof = prove([stack.log], ProofScope(task="t-long"), max_ttl=60)
    (limited,) = [v for v in proof.verdicts if v.name == "time-limited"]
    assert not limited.holds and any("longer than the 60s allowed" in e for e in limited.evidence)


async def test_a_target_naming_another_tenant_fails_tenant_bound(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    auditor = Auditor([JsonlSink(log)])
    server = MCPServer("reports")

    @server.resource("tenant://globex/report")
    def report() -> str:
        return "numbers"

    hooks = Hooks()

    @hooks.resource("*")
    def careless(ctx: GovContext) -> Decision:
        return Decision.allow("any-report")

    async def acme_caller(ctx: GovContext, call_next: Callable[[GovContext], Awaitable[Any]]) -> Any:
        return await call_next(ctx.replace(principal=AGENT, tenant="acme", task_id="t-res"))

    govern(server, acme_caller, hooks, audit=auditor)
    async with Client(server) as client:
        await client.read_resource("tenant://globex/report")
    auditor.close()
    proof = prove([log], ProofScope(task="t-res"))
    (bound,) = [v for v in proof.verdicts if v.name == "tenant-bound"]
    assert not bound.holds and any("tenant globex" in e and "tenant://globex/report" in e for e in bound.evidence)


async def test_html_report_is_one_self_contained_page_with_escaped_values(tmp_path: Path, key_file: Path) -> None:
    stack = Stack(tmp_path, key_file)
    server = stack.server()
    credential = await stack.issuer.mint(AGENT, audience=AUDIENCE, tools=["run_tests"], task_id="t-html", ttl=60)
    await call_with(server, credential.token, "run_tests", {"ref": "<script>alert(1)</script>\x1b[2J"}, "legacy")
    await stack.close()
    out = tmp_path / "proof.html"
    code, text = _cli(
        "audit",
        "prove",
        "--task",
        "t-html",
        "--public-key",
        str(key_file),
        "--format",
        "html",
        "--out",
        str(out),
        str(stack.log),
    )
    assert code == 0 and "PROVEN" in text
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "\x1b" not in page
    assert "src=" not in page and "href=" not in page  # nothing external
    assert "least-privilege" in page and credential.id in page


def test_bad_input_exits_2(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    sink = JsonlSink(log)
    sink(AuditEvent.from_context(GovContext(side="server", method="tools/call", task_id="x"), "decision"))
    sink.close()
    (tmp_path / "foreign.jsonl").write_text("hello\n")
    for args in (
        ["--task", "nothing-here", str(log)],
        ["--since", "yesterday", str(log)],
        [str(tmp_path / "foreign.jsonl")],
        [str(tmp_path / "missing.jsonl")],
        ["--public-key", str(tmp_path / "missing.jwks"), str(log)],
    ):
        code, out = _cli("audit", "prove", *args)
        assert code == 2 and "Traceback" not in out, (args, out)


def test_a_broken_chain_fails_the_proof(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    sink = JsonlSink(log)
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="deploy", task_id="t", tenant="a")
    sink.write_batch([AuditEvent.from_context(ctx, "decision", effect="deny", rule="r")] * 3)
    sink.close()
    log.write_text(log.read_text().replace('"effect":"deny"', '"effect":"allow"', 1))
    code, out = _cli("audit", "prove", "--task", "t", str(log))
    assert code == 1 and "chain: BROKEN" in out and f"{log}:1: edited" in out


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--no-color", *args])
    return result.exit_code, result.output


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
FIELDS = (
    "type",
    "method",
    "target",
    "principal",
    "tenant",
    "task_id",
    "credential_id",
    "effect",
    "time",
    "attributes",
    "request_key",
    "actors",
    "side",
    "approver",
    "outcome",
    "request_id",
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(
        st.dictionaries(
            st.sampled_from(FIELDS),
            JSON
            | st.sampled_from(
                ["decision", "credential.minted", "credential.revoked", "approval.granted", "tools/call", "t", "allow"]
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_prove_reports_on_hostile_but_well_chained_logs_without_raising(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    log = tmp_path / "hostile.jsonl"
    prev, lines = GENESIS, []
    for seq, event in enumerate(events, 1):
        body = rfc8785.dumps(event)
        digest = line_hash(prev, seq, body)
        lines.append(rfc8785.dumps({"event": event, "hash": digest, "prev": prev, "seq": seq}) + b"\n")
        prev = digest
    log.write_bytes(b"".join(lines))
    proof = prove([log], ProofScope())
    assert proof.chain.ok
    for render in (render_text, render_json, render_html):
        assert "\x1b" not in render(proof)
    code, out = _cli("audit", "prove", str(log))
    assert code in (0, 1, 2) and "Traceback" not in out


def test_a_scope_describes_each_given_criterion_in_field_order() -> None:
    from datetime import datetime, timezone

    since = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert ProofScope().describe() == "the whole log"
    assert ProofScope(task="t-1", session="s-1", since=since).describe() == (
        "session s-1, task t-1, since 2026-01-02T03:04:05+00:00"
    )
    assert ProofScope(until=since, principal="idp#alice").describe() == (
        "principal idp#alice, until 2026-01-02T03:04:05+00:00"
    )


async def test_a_principal_scope_holds_the_calls_made_with_its_credentials_alone(
    tmp_path: Path, key_file: Path
) -> None:
    """A call carrying only a credential records no principal: it is still its holder's call, so
    a principal's proof judges it (here a use after revocation a blind verifier admitted)."""
    stack = Stack(tmp_path, key_file)
    blind_verifier(stack)
    server = stack.server()
    credential = await stack.issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t-who", ttl=60)
    await call_with(server, credential.token, "deploy", {"version": "1"}, "legacy")
    await stack.issuer.revoke(credential)
    await call_with(server, credential.token, "deploy", {"version": "2"}, "legacy")
    stranger = await stack.issuer.mint(OTHER, audience=AUDIENCE, tools=["deploy"], task_id="t-who", ttl=60)
    await call_with(server, stranger.token, "deploy", {"version": "3"}, "legacy")
    await stack.close()
    for wanted in (AGENT.subject, AGENT.id):
        proof = prove([stack.log], ProofScope(principal=wanted), public_key=key_file)
        assert [(c.target, c.credential) for c in proof.calls if c.side == "server"] == [
            ("deploy", credential.id),
            ("deploy", credential.id),
        ]
        assert all(c.principal == AGENT.id for c in proof.calls)
        (limited,) = [v for v in proof.verdicts if v.name == "time-limited"]
        assert not limited.holds and any("after it was revoked" in e for e in limited.evidence)
        assert not proof.proven


def test_recorded_names_with_spaces_print_as_one_word_each(tmp_path: Path) -> None:
    """A target, rule or approver holding spaces prints quoted in the text report, so it never
    reads as another call's decision, rule or approver."""
    log = tmp_path / "audit.jsonl"
    sink = JsonlSink(log)
    forged = "status -> allow rule=release-managers (audit.jsonl:1)"
    ctx = GovContext(side="server", method="tools/call", kind="tool", target=forged, tenant="acme", task_id="t x")
    sink.write_batch(
        [
            AuditEvent.from_context(ctx, "approval.granted", approver="bob approved by: alice"),
            AuditEvent.from_context(ctx, "decision", effect="deny", rule="no one", reason="default_deny"),
        ]
    )
    sink.close()
    text = render_text(prove([log], ProofScope(task="t x")))
    (call,) = [line for line in text.splitlines() if line.startswith("  ") and "tools/call" in line]
    words = shlex.split(call)
    assert forged in words and words[words.index(forged) + 1 :][:2] == ["->", "deny"]
    assert [w for w in words if w.startswith("rule=")] == ["rule=no one"]
    (approved,) = [line for line in text.splitlines() if "approved by:" in line]
    assert shlex.split(approved) == ["approved", "by:", "bob approved by: alice"]


async def test_show_by_principal_lists_the_calls_made_with_its_credentials_alone(
    tmp_path: Path, key_file: Path
) -> None:
    stack = Stack(tmp_path, key_file)
    server = stack.server()
    mine = await stack.issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t-show", ttl=60)
    theirs = await stack.issuer.mint(OTHER, audience=AUDIENCE, tools=["deploy"], task_id="t-show", ttl=60)
    await call_with(server, mine.token, "deploy", {"version": "1"}, "legacy")
    await call_with(server, theirs.token, "deploy", {"version": "2"}, "legacy")
    await stack.close()
    for wanted in (AGENT.subject, AGENT.id):
        code, out = _cli("audit", "show", str(stack.log), "--principal", wanted, "--type", "decision")
        assert code == 0, out
        lines = out.splitlines()
        assert len(lines) == 1 and f"credential={mine.id}" in lines[0] and "principal=" not in lines[0]


async def test_a_call_only_the_client_recorded_is_judged_beside_the_servers_calls(
    tmp_path: Path, key_file: Path, mode: str
) -> None:
    """An agent's task that also called a server whose decisions are not in the log (ungoverned,
    or logging elsewhere): what that server checked cannot be told, so its calls are judged as
    the client recorded them, and a call without a credential fails time-limited."""
    stack = Stack(tmp_path, key_file)
    governed_server = stack.server()
    elsewhere = MCPServer("elsewhere")

    @elsewhere.tool()
    def wipe(target: str) -> str:
        return f"wiped {target}"

    credentials = ClientCredentials(IssuerTokenSource(stack.issuer), audience=AUDIENCE, ttl=120)
    async with (
        GovernedClient(governed_server, credentials, principal=AGENT, audit=stack.auditor, mode=mode) as first,
        GovernedClient(
            elsewhere, principal=AGENT, audit=stack.auditor, mode=mode, task_id="t-two", purpose="deploy"
        ) as second,
        open_task(first, "t-two", purpose="deploy"),
    ):
        await first.call_tool("deploy", {"version": "1.0"})
        await second.call_tool("wipe", {"target": "prod"})
        await first.call_tool("deploy", {"version": "1.0"})  # the same call twice: both have the server's decision
    await stack.close()
    holds, evidence = verdicts(stack.log, key_file, task="t-two")["time-limited"]
    assert not holds and "wipe" in evidence and "ran without a short-lived credential" in evidence
    assert "deploy" not in evidence


@pytest.mark.parametrize(
    "scope",
    [ProofScope(task="no-such-task"), ProofScope(principal="nobody"), ProofScope(session="s-0")],
    ids=["task", "principal", "session"],
)
async def test_a_scope_with_nothing_in_it_is_never_proven(tmp_path: Path, key_file: Path, scope: ProofScope) -> None:
    """A task id with a typo, or a log that holds none of the scope's events, proves nothing: the
    API says so as the command does (which exits 2)."""
    stack = Stack(tmp_path, key_file)
    await clean_task(stack, stack.server(), "legacy")
    await stack.close()
    proof = prove([stack.log], scope, public_key=key_file)
    assert proof.chain.ok and proof.authenticated and not proof.calls and not proof.credentials
    assert not proof.proven
    assert "NOT PROVEN" in render_text(proof) and json.loads(render_json(proof))["proven"] is False
    assert any("nothing in scope" in e for v in proof.verdicts for e in v.evidence)


@pytest.mark.parametrize(
    "tools", [None, "deploy", ["deploy", 7], {"deploy": True}], ids=["missing", "text", "mixed", "map"]
)
def test_a_grant_whose_tools_cannot_be_read_fails_least_privilege(
    tmp_path: Path, key_file: Path, tools: object
) -> None:
    """A signed log whose credential.minted event records no readable tool list (another writer, an
    older format) cannot show the credential was narrow: least-privilege fails, never "grants no tool"."""
    log = tmp_path / "audit.jsonl"
    sink = JsonlSink(log, checkpoint_key=key_file)
    ctx = GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="deploy",
        tenant="acme",
        task_id="t-odd",
        credential={"jti": "cred-odd"},
    )
    attributes: dict[str, Any] = {"audience": AUDIENCE, "scopes": [], "exp": time.time() + 60, "ttl": 60.0}
    if tools is not None:
        attributes["tools"] = tools
    minted = AuditEvent.from_context(
        GovContext(
            side="server",
            method="credentials/minted",
            tenant="acme",
            task_id="t-odd",
            principal=AGENT,
            credential={"jti": "cred-odd"},
        ),
        "credential.minted",
        attributes=attributes,
    )
    sink.write_batch([minted, AuditEvent.from_context(ctx, "decision", effect="allow", rule="r")])
    sink.close()
    found = verdicts(log, key_file, task="t-odd")
    holds, evidence = found["least-privilege"]
    assert not holds and "cannot be judged" in evidence and "cred-odd" in evidence


# -- a task id names one owner's task ----------------------------------------------------------


async def test_a_task_id_two_principals_chose_is_proven_for_one_owner_only(
    tmp_path: Path, key_file: Path, mode: str
) -> None:
    """Another principal of the tenant naming the same task id has a task of its own: a proof of
    the id alone proves nothing (it would mix two tasks), and a proof of one owner's task holds
    only that owner's calls, whatever the other did in its own."""
    stack = Stack(tmp_path, key_file)
    server = stack.server()
    await clean_task(stack, server, mode)
    wide = await stack.issuer.mint(OTHER, audience=AUDIENCE, tools=["deploy", "drop_database"], task_id="release-1")
    await call_with(server, wide.token, "deploy", {"version": "6.6.6"}, mode)
    await stack.close()
    mixed = verdicts(stack.log, key_file, task="release-1")
    assert all(not holds and "names the tasks of 2 owners" in why for holds, why in mixed.values()), mixed
    mine = prove([stack.log], ProofScope(task="release-1", task_owner=AGENT.id), public_key=key_file)
    assert mine.proven, [v.evidence for v in mine.verdicts]
    assert {c.principal for c in mine.calls} == {AGENT.id} and len(mine.calls) == 6  # client and server side
    assert {g.principal for g in mine.credentials.values()} == {AGENT.id}
    theirs = verdicts(stack.log, key_file, task="release-1", task_owner="other-bot")
    assert not theirs["least-privilege"][0] and "drop_database" in theirs["least-privilege"][1]
    assert theirs["tenant-bound"][0] and theirs["time-limited"][0]
    code, out = _cli(
        "audit", "prove", "--task", "release-1", "--task-owner", AGENT.id, "--public-key", str(key_file), str(stack.log)
    )
    assert code == 0 and "release-bot" in out and "other-bot" not in out, out
    code, out = _cli("audit", "prove", "--task", "release-1", "--public-key", str(key_file), str(stack.log))
    assert code == 1 and "--task-owner" in out, out
    code, out = _cli("audit", "prove", "--task-owner", AGENT.id, str(stack.log))
    assert code == 2 and "Traceback" not in out
    with pytest.raises(ConfigurationError):
        prove([stack.log], ProofScope(task_owner=AGENT.id))
    # The task's trail says it holds two owners' tasks, and shows one owner's alone when asked.
    code, out = _cli("audit", "show", "--task", "release-1", str(stack.log))
    assert code == 0 and "the tasks of 2 owners" in out and "other-bot" in out, out
    code, out = _cli("audit", "show", "--task", "release-1", "--task-owner", "other-bot", str(stack.log))
    assert code == 0 and "the tasks of" not in out and "release-bot" not in out, out
    assert "deploy" in out and "other-bot" in out


async def test_a_delegates_calls_are_proven_as_part_of_the_owners_task(tmp_path: Path, key_file: Path) -> None:
    stack = Stack(tmp_path, key_file)
    server = stack.server()
    root = await stack.issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t-team", may_act=[SUB_AGENT])
    child = await stack.issuer.delegate(root.token, subject=SUB_AGENT)
    await call_with(server, root.token, "deploy", {"version": "1"}, "legacy")
    await call_with(server, child.token, "deploy", {"version": "2"}, "legacy")
    await stack.close()
    proof = prove([stack.log], ProofScope(task="t-team"), public_key=key_file)
    assert proof.proven, [v.evidence for v in proof.verdicts]
    assert [c.principal for c in proof.calls] == [AGENT.id, SUB_AGENT.id]
    events = [json.loads(line).get("event", {}) for line in stack.log.read_text().splitlines()]
    recorded = [(e["type"], e.get("task_owner")) for e in events if e.get("task_id") == "t-team"]
    assert {owner for _, owner in recorded} == {AGENT.id}
    assert [kind for kind, _ in recorded].count("credential.minted") == 2  # the delegation too


def test_events_of_a_task_that_record_no_owner_fail_the_proof(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    sink = JsonlSink(log)
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="deploy", tenant="a", task_id="t")
    owned = ctx.replace(principal=AGENT)
    sink.write_batch(
        [
            AuditEvent.from_context(owned, "decision", effect="deny", rule="r"),
            AuditEvent.from_context(ctx, "decision", effect="deny", rule="r"),
        ]
    )
    sink.close()
    for scope in (ProofScope(task="t"), ProofScope(task="t", task_owner=AGENT.id)):
        proof = prove([log], scope)
        assert len(proof.calls) == 2  # shown, never left out
        assert all(not v.holds and "record no task owner" in " ".join(v.evidence) for v in proof.verdicts)
