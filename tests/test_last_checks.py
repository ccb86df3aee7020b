"""What a decision relies on still holds when the request runs, and every executed call is
recorded: a policy's credential obligations, the identity's expiry after an approval wait, each
rule's own approval, and the outcome of a tool body that raises something other than an
``Exception``. Each through real in-process SDK sessions in both protocol modes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import anyio
import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, Hooks, govern
from mcpgov.credentials import CredentialMiddleware
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

from .test_credentials_support import AUDIENCE, call, identity_from_meta, make_issuer, principal

pytestmark = pytest.mark.anyio

AGENT = principal("agent-1", "acme")


# -- 1. audit: an executed call always gets its outcome event ------------------------------------------


class _Boom(BaseException):
    """Raised by a broken tool body: not an ``Exception``, not an exit, not a cancellation."""


async def test_a_tool_body_raising_a_base_exception_still_records_its_outcome(mode: str) -> None:
    """An allowed call whose body raised must have an outcome event (one per decision and outcome)."""
    server = MCPServer("boom")

    @server.tool()
    async def work() -> str:
        raise _Boom("broken")

    @server.tool()
    async def fine() -> str:
        return "fine"

    hooks = Hooks()
    hooks.register("*", lambda ctx: Decision.allow("everyone"))
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("work", {})
        # the session keeps serving
        assert (await client.call_tool("fine", {})).is_error is False
    events = [(e.type, e.effect, e.outcome) for e in sink.for_target("work")]
    assert ("decision", "allow", None) in events
    outcomes = [e for e in sink.for_target("work") if e.type == "outcome"]
    assert len(outcomes) == 1, events
    assert outcomes[0].outcome == "failed"


async def test_a_stray_cancelled_error_from_a_tool_is_not_recorded_as_a_cancellation(mode: str) -> None:
    """Nothing cancelled the request: the outcome is a failure of the tool, not ``cancelled``."""
    server = MCPServer("stray")

    @server.tool()
    async def work() -> str:
        raise asyncio.CancelledError

    hooks = Hooks()
    hooks.register("*", lambda ctx: Decision.allow("everyone"))
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("work", {})
    (outcome,) = [e for e in sink.for_target("work") if e.type == "outcome"]
    assert outcome.outcome == "failed", (outcome.outcome, outcome.reason)


# -- 2. server-side policy obligations on the presented credential -------------------------------------

_POLICY = """
version: 1
rules:
  - id: deploy-bound
    effect: allow
    tools: [deploy]
    obligations: {bind_arguments: true, max_credential_ttl: 30}
  - id: status
    effect: allow
    tools: [status]
"""


def _policy_server(issuer: Any) -> tuple[MCPServer, list[str], InMemoryAuditSink]:
    server = MCPServer("deployer")
    ran: list[str] = []

    @server.tool()
    async def deploy(version: str) -> str:
        ran.append(f"deploy {version}")
        return f"deployed {version}"

    sink = InMemoryAuditSink()
    verifier = issuer.verifier(AUDIENCE)
    policy = PolicyMiddleware(Policy.from_yaml(_POLICY))
    govern(server, identity_from_meta, CredentialMiddleware(verifier), policy, audit=sink)
    return server, ran, sink


async def test_server_policy_bind_arguments_obligation_refuses_an_unbound_credential(mode: str) -> None:
    """The server's policy allows ``deploy`` only with ``bind_arguments``: a credential that is not
    bound to the call's arguments must not run it."""
    issuer = make_issuer()
    server, ran, sink = _policy_server(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], ttl=20)  # not bound to arguments
    async with Client(server, mode=mode) as client:
        with contextlib.suppress(MCPError):
            await call(client, "deploy", {"version": "9.9.9-evil"}, cred.token, AGENT)
    assert ran == []
    refusal = [e for e in sink.for_target("deploy") if e.reason == "args_unbound"]
    assert refusal, [(e.type, e.reason) for e in sink.for_target("deploy")]


async def test_server_policy_max_credential_ttl_obligation_refuses_a_longer_credential(mode: str) -> None:
    """The server's policy caps credentials for ``deploy`` at 30 s: a 300 s credential (bound to
    the arguments, so only the TTL is at issue) must not run it."""
    from mcpgov import arguments_hash

    issuer = make_issuer()
    server, ran, sink = _policy_server(issuer)
    args = {"version": "1.0.0"}
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], ttl=300, args_hash=arguments_hash(args))
    async with Client(server, mode=mode) as client:
        with contextlib.suppress(MCPError):
            await call(client, "deploy", args, cred.token, AGENT)
    assert ran == []
    assert any(e.reason == "ttl_exceeded" for e in sink.for_target("deploy"))


@pytest.mark.parametrize("bound_to", [{"version": "1.0.0"}, {"version": "1.0.0 "}, {}])
async def test_a_credential_honouring_the_obligations_runs_and_only_for_its_arguments(
    mode: str, bound_to: dict[str, Any]
) -> None:
    """Bound to exactly these arguments and short enough: it runs; bound to other arguments: no."""
    from mcpgov import arguments_hash

    issuer = make_issuer()
    server, ran, _sink = _policy_server(issuer)
    args = {"version": "1.0.0"}
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], ttl=30, args_hash=arguments_hash(bound_to))
    async with Client(server, mode=mode) as client:
        with contextlib.suppress(MCPError):
            await call(client, "deploy", args, cred.token, AGENT)
    assert ran == (["deploy 1.0.0"] if bound_to == args else [])


# -- 3. checked too early: the identity that authorised a call must still be valid at the gate ----------


class _Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _wire_after_approval(mode: str, answered_after: float) -> tuple[list[str], InMemoryAuditSink, Any]:
    """A 60 s identity token, a call that waits ``answered_after`` seconds for a person's approval.
    Returns what ran, the audit trail, and the error the client got (or ``None``)."""
    from mcpgov import META_IDENTITY
    from mcpgov.approval import ApprovalMiddleware, CallbackApprover
    from mcpgov.identity import IdentityMiddleware
    from mcpgov.testing import IdentityIssuer

    clock = _Clock()
    issuer = IdentityIssuer(alg="ES256", clock=clock, ttl=60)
    token = issuer.token("agent-1", tenant="acme")
    server = MCPServer("bank")
    ran: list[str] = []

    @server.tool()
    async def wire_money(amount: int) -> str:
        ran.append(f"wire {amount}")
        return "sent"

    hooks = Hooks()
    hooks.register("wire_money", lambda ctx: Decision.require_approval("big-wire", "wires need a person"))

    def person(request: Any) -> bool:
        clock.now += answered_after
        return True

    sink = InMemoryAuditSink()
    govern(
        server,
        IdentityMiddleware(issuer.verifier(clock=clock)),
        ApprovalMiddleware(CallbackApprover(person, name="ops")),
        hooks,
        audit=sink,
    )
    failed: MCPError | None = None
    async with Client(server, mode=mode) as client:
        try:
            await client.call_tool("wire_money", {"amount": 10_000}, meta=cast(Any, {META_IDENTITY: token}))
        except MCPError as exc:
            failed = exc
    return ran, sink, failed


async def test_an_identity_that_expired_while_the_call_awaited_approval_does_not_run_it(mode: str) -> None:
    """Identity is verified when the request arrives; the call then waits for an approval. When
    the person answers an hour later, the token expired long before the body would start: it
    does not run, and the refusal is audited with the caller."""
    ran, sink, _ = await _wire_after_approval(mode, answered_after=3600)
    assert ran == []
    refused = [e for e in sink.for_target("wire_money") if e.reason == "expired"]
    assert refused and refused[0].principal is not None


async def test_an_identity_still_valid_after_the_approval_runs_the_call(mode: str) -> None:
    """The same wait, answered within the token's lifetime: the call runs (the SDK's client then
    lists the tools without an identity to check the result, which is refused)."""
    ran, _sink, failed = await _wire_after_approval(mode, answered_after=10)
    assert ran == ["wire 10000"]
    assert failed is not None and "Unauthenticated" in failed.message


# -- guarantees that hold already, kept as regression checks ------------------------------------------


async def test_a_single_use_credential_raced_by_concurrent_calls_runs_once(mode: str) -> None:
    from .test_credentials_support import build_governed

    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], single_use=True)
    outcomes: list[str] = []
    async with Client(governed.server, mode=mode) as client:

        async def one(i: int) -> None:
            try:
                await call(client, "deploy", {"version": f"v{i}"}, cred.token, AGENT)
                outcomes.append("ran")
            except MCPError:
                outcomes.append("refused")

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(one, i)
    assert len(governed.ran) == 1
    assert outcomes.count("ran") == 1


async def test_an_args_bound_credential_does_not_run_other_arguments(mode: str) -> None:
    from mcpgov import arguments_hash

    from .test_credentials_support import build_governed

    issuer = make_issuer()
    governed = build_governed(issuer)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], args_hash=arguments_hash({"version": "1.0.0"}))
    async with Client(governed.server, mode=mode) as client:
        for other in ({"version": "1.0.0 "}, {"version": "1.0.0\u200b"}, {"version": "\uff11.0.0"}, {}):
            with pytest.raises(MCPError):
                await call(client, "deploy", other, cred.token, AGENT)
        await call(client, "deploy", {"version": "1.0.0"}, cred.token, AGENT)
    assert governed.ran == ["deploy 1.0.0"]


@pytest.mark.parametrize(
    "spelling", ["Deploy", "deploy ", "de\u200bploy", "\uff44\uff45\uff50\uff4c\uff4f\uff59", "deploy\x00", "DEPLOY"]
)
async def test_a_denied_tool_cannot_be_reached_by_another_spelling(mode: str, spelling: str) -> None:
    server = MCPServer("names")
    ran: list[str] = []

    @server.tool()
    def deploy() -> str:
        ran.append("deploy")
        return "deployed"

    hooks = Hooks()
    hooks.register("*", lambda ctx: Decision.allow("everyone"))
    hooks.register("deploy", lambda ctx: Decision.deny("no-deploys"))
    govern(server, hooks)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool(spelling, {})
        with pytest.raises(MCPError):
            await client.call_tool("deploy", {})
    assert ran == []


# -- 4. approval: a grant covers the rule its approver was asked about ---------------------------------


async def test_an_approval_for_one_rule_does_not_satisfy_another_rules_approval(mode: str) -> None:
    """Two authorisers each require approval, for different rules (finance, security): the
    approver is asked about each rule, and the call runs only when both are approved."""
    from mcpgov.approval import ApprovalMiddleware, CallbackApprover

    server = MCPServer("bank")
    ran: list[str] = []

    @server.tool()
    async def wire_money(amount: int) -> str:
        ran.append(f"wire {amount}")
        return "sent"

    finance = Hooks()
    finance.register("wire_money", lambda ctx: Decision.require_approval("finance-limit", "over the finance limit"))
    security = Hooks()
    security.register("wire_money", lambda ctx: Decision.require_approval("security-review", "new payee"))
    asked: list[str] = []
    approves = {"finance-limit"}

    def person(request: Any) -> bool:
        asked.append(request.rule)
        return request.rule in approves

    sink = InMemoryAuditSink()
    govern(server, ApprovalMiddleware(CallbackApprover(person, name="ops")), finance, security, audit=sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("wire_money", {"amount": 10_000})
        assert asked == ["finance-limit", "security-review"]
        assert ran == []
        approves.add("security-review")
        asked.clear()
        await client.call_tool("wire_money", {"amount": 10_000})
    assert asked == ["finance-limit", "security-review"]
    assert ran == ["wire 10000"]
    granted = [str(e.rule) for e in sink.events if e.type == "approval.granted"]
    assert sorted(granted[-2:]) == ["finance-limit", "security-review"]
