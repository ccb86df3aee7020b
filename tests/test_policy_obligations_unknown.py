"""An allow rule that may apply (a condition unknown) adds its obligations when the request is
admitted by another rule: whether or not it applies, the admitted request runs under at least
what it would owe (a shorter credential, more redaction, argument binding, its rate limit)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import Auditor, Effect, GovContext, Principal, govern
from mcpgov._decision import Decision
from mcpgov.audit import Redactor
from mcpgov.policy import Policy, PolicyEngine, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

from .policies.support import LookupIdentity, as_

POLICY = """
rules:
  - {id: send-anything, effect: allow, tools: [send], obligations: {max_credential_ttl: 600}}
  - id: payroll-mail
    effect: allow
    tools: [send]
    when: {arguments: {kind: {in: [payroll]}}}
    obligations: {redact: [body], max_credential_ttl: 30, bind_arguments: true}
"""


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["payroll", "\uff50ayroll", "\u24dfayroll"])
async def test_an_allow_that_may_apply_still_redacts_what_it_names(kind: str, mode: str) -> None:
    server = MCPServer("mail")
    seen: list[Decision | None] = []

    @server.tool()
    def send(kind: str, body: str) -> str:
        return "sent"

    async def capture(ctx: GovContext, call_next: Any) -> Any:
        if ctx.method == "tools/call":
            seen.append(ctx.decision)
        return await call_next(ctx)

    sink = InMemoryAuditSink()
    govern(
        server,
        LookupIdentity(),
        PolicyMiddleware(Policy.from_yaml(POLICY)),
        capture,
        audit=Auditor([sink], redactor=Redactor(record_arguments=True)),
    )
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("send", {"kind": kind, "body": "SALARY-123"}, meta=as_("alice"))
        assert result.is_error is False
    (decision,) = seen
    assert decision is not None
    assert decision.obligations["redact"] == ("body",)
    assert decision.obligations["max_credential_ttl"] == 30
    assert decision.obligations["bind_arguments"] is True
    assert "SALARY-123" not in "\n".join(e.model_dump_json() for e in sink.events)


_CONDITIONS = ("c0", "c1")
_UNKNOWN = "not a number"


@st.composite
def _policies(draw: st.DrawFn) -> str:
    rules = []
    for i in range(draw(st.integers(1, 4))):
        effect = draw(st.sampled_from(["allow", "allow", "require_approval", "deny"]))
        when = draw(st.lists(st.sampled_from(_CONDITIONS), max_size=2, unique=True))
        rule = f"  - id: r{i}\n    effect: {effect}\n    tools: [t]\n"
        if when:
            rule += "    when: {arguments: {" + ", ".join(f"{c}: {{min: 1}}" for c in when) + "}}\n"
        if effect != "deny":
            ttl = draw(st.sampled_from([10, 60, 600]))
            bind = "true" if draw(st.booleans()) else "false"
            rule += f"    obligations: {{max_credential_ttl: {ttl}, bind_arguments: {bind}, redact: [f{i}]}}\n"
        rules.append(rule)
    return "rules:\n" + "".join(rules)


def _ctx(arguments: dict[str, Any]) -> GovContext:
    return GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="t",
        arguments=arguments,
        principal=Principal("https://idp", "alice", tenant="acme"),
        tenant="acme",
    )


def _at_least_as_strict(decided: Decision, resolved: Decision) -> bool:
    if decided.effect is Effect.DENY or resolved.effect is Effect.DENY:
        return True
    mine, theirs = decided.obligations, resolved.obligations
    return (
        mine.get("max_credential_ttl", float("inf")) <= theirs.get("max_credential_ttl", float("inf"))
        and set(mine.get("redact", ())) >= set(theirs.get("redact", ()))
        and bool(mine.get("bind_arguments")) >= bool(theirs.get("bind_arguments"))
    )


@given(_policies(), st.fixed_dictionaries({c: st.sampled_from([0, 1, _UNKNOWN]) for c in _CONDITIONS}))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_uncertainty_never_loosens_an_obligation(policy: str, arguments: dict[str, Any]) -> None:
    """Admitted with unknown conditions, a request owes at least the obligations it owes under
    every way of resolving them that admits it."""
    engine = PolicyEngine(Policy.from_yaml(policy))
    decided = engine.decide(_ctx(arguments))
    unknown = [c for c, v in arguments.items() if v == _UNKNOWN]
    for resolution in itertools.product((0, 1), repeat=len(unknown)):
        resolved = engine.decide(_ctx({**arguments, **dict(zip(unknown, resolution, strict=True))}))
        assert _at_least_as_strict(decided, resolved), (decided, resolved)
