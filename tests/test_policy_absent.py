"""What a request does not carry is not a "no": an undeclared risk, an absent argument or claim,
a scope claim of the wrong shape never turn a deny into an allow (uncertainty only denies)."""

from __future__ import annotations

from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Effect, GovContext, Principal, govern
from mcpgov.policy import Policy, PolicyDecorators, PolicyEngine, PolicyMiddleware
from mcpgov.policy._engine import DeclaredTarget
from mcpgov.testing import InMemoryAuditSink

from .policies.support import LookupIdentity, as_

IDP = "https://idp.example"
RANK = {Effect.ALLOW: 0, Effect.REQUIRE_APPROVAL: 1, Effect.DENY: 2}

RISKY_POLICY = """
rules:
  - {id: everything, effect: allow, tenants: [acme], tools: ["*"]}
  - {id: no-risky-tools, effect: deny, tools: ["*"], when: {risk: [high, critical]}}
"""


def _risky_server() -> tuple[MCPServer, InMemoryAuditSink, list[str]]:
    server = MCPServer("risky")
    gov = PolicyDecorators(server)
    ran: list[str] = []

    @gov.tool(risk="low")
    def echo(text: str) -> str:
        ran.append("echo")
        return text

    @gov.tool(risk="critical")
    def wipe() -> str:
        ran.append("wipe")
        return "wiped"

    @server.tool()
    def shell(command: str) -> str:  # declared nowhere: its risk is unknown
        ran.append("shell")
        return command

    sink = InMemoryAuditSink()
    govern(server, LookupIdentity(), PolicyMiddleware(Policy.from_yaml(RISKY_POLICY), declarations=gov), audit=sink)
    return server, sink, ran


@pytest.mark.anyio
async def test_a_tool_that_declares_no_risk_does_not_escape_a_deny_on_risk(mode: str) -> None:
    server, sink, ran = _risky_server()
    async with Client(server, mode=mode) as client:
        assert (await client.call_tool("echo", {"text": "hi"}, meta=as_("alice"))).is_error is False
        for tool, args in (("wipe", {}), ("shell", {"command": "rm -rf /"})):
            with pytest.raises(MCPError) as caught:
                await client.call_tool(tool, args, meta=as_("alice"))
            assert caught.value.code == -32003
        listed = {t.name for t in (await client.list_tools(meta=as_("alice"))).tools}
    assert listed == {"echo"}
    assert ran == ["echo"]
    shell = [e for e in sink.decisions() if e.target == "shell"]
    assert shell and all(e.rule == "no-risky-tools" and e.effect == "deny" for e in shell)


def _engine(text: str, risk: str | None = None) -> PolicyEngine:
    declared = {"t": DeclaredTarget(risk=risk)} if risk is not None else None
    return PolicyEngine(Policy.from_yaml(text, source="t.yaml"), declared=declared)


def _ctx(args: dict[str, Any] | None = None, claims: dict[str, Any] | None = None) -> GovContext:
    principal = Principal(IDP, "alice", tenant="acme", claims=claims or {})
    return GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="t",
        action="execute",
        arguments=MappingProxyType(args if args is not None else {}),
        principal=principal,
        tenant="acme",
    )


ALLOW_ALL = "  - {id: all, effect: allow, tools: [t]}\n"


@pytest.mark.parametrize(
    ("rule", "args", "claims"),
    [
        ("{id: x, effect: deny, tools: [t], when: {arguments: {amount: {min: 1000}}}}", {}, {}),
        ("{id: x, effect: deny, tools: [t], when: {arguments: {mode: {equals: delete}}}}", {"other": 1}, {}),
        ("{id: x, effect: deny, tools: [t], when: {claims: {role: contractor}}}", {}, {}),
        ("{id: x, effect: deny, tools: [t], when: {claims: {role: contractor, team: a}}}", {}, {"team": "a"}),
        ("{id: x, effect: deny, tools: [t], principals: [{claims: {role: contractor}}]}", {}, {}),
        ("{id: x, effect: deny, tools: [t], principals: [{issuer: 'https://idp.example', claims: {c: 1}}]}", {}, {}),
        ("{id: x, effect: deny, tools: [t], when: {scopes: [admin]}}", {}, {"scope": 7}),
        ("{id: x, effect: deny, tools: [t], when: {scopes: [admin]}}", {}, {"scp": ["read", 1]}),
        ("{id: x, effect: deny, tools: [t], when: {scopes: [admin]}}", {}, {"scopes": {"admin": True}}),
        ("{id: x, effect: deny, tools: [t], principals: [{scopes: [admin]}]}", {}, {"scope": None}),
        ("{id: x, effect: deny, tools: [t], when: {risk: [critical]}}", {}, {}),
    ],
)
def test_an_absent_or_malformed_input_makes_a_deny_apply(rule: str, args: dict[str, Any], claims: Any) -> None:
    decision = _engine(f"rules:\n{ALLOW_ALL}  - {rule}\n").decide(_ctx(args, claims))
    assert (decision.effect, decision.rule, decision.reason_code) == (Effect.DENY, "x", "condition_unevaluable")


@pytest.mark.parametrize(
    "rule",
    [
        "{id: x, effect: require_approval, tools: [t], when: {arguments: {amount: {min: 1000}}}}",
        "{id: x, effect: require_approval, tools: [t], when: {risk: [high]}}",
        "{id: x, effect: require_approval, tools: [t], when: {claims: {role: contractor}}}",
    ],
)
def test_an_absent_input_makes_an_approval_apply(rule: str) -> None:
    decision = _engine(f"rules:\n{ALLOW_ALL}  - {rule}\n").decide(_ctx())
    assert (decision.effect, decision.rule) == (Effect.REQUIRE_APPROVAL, "x")


@pytest.mark.parametrize(
    "rule",
    [
        "{id: x, effect: allow, tools: [t], when: {claims: {role: admin}}}",
        "{id: x, effect: allow, tools: [t], when: {arguments: {mode: {equals: read}}}}",
        "{id: x, effect: allow, tools: [t], when: {risk: [low]}}",
        "{id: x, effect: allow, tools: [t], principals: [{claims: {role: admin}}]}",
    ],
)
def test_an_absent_input_never_lets_an_allow_apply(rule: str) -> None:
    assert not _engine(f"rules:\n  - {rule}\n").decide(_ctx()).allowed
    deny = f"rules:\n{ALLOW_ALL}  - {{id: y, effect: deny, tools: [t], unless: {{risk: [low]}}}}\n"
    assert _engine(deny).decide(_ctx()).rule == "y"


def test_what_is_carried_is_still_judged_exactly() -> None:
    text = f"""rules:
{ALLOW_ALL}  - {{id: x, effect: deny, tools: [t], when: {{arguments: {{amount: {{min: 1000}}}}, claims: {{role: c}}}}}}
  - {{id: y, effect: deny, tools: [t], when: {{arguments: {{n: {{min: 1, optional: true}}}}}}}}
  - {{id: z, effect: deny, tools: [t], when: {{risk: [critical]}}}}
"""
    e = _engine(text, risk="low")
    assert e.decide(_ctx({"amount": 5, "n": 0}, {"role": "c"})).allowed
    assert e.decide(_ctx({"amount": 5000, "n": 0}, {"role": "x"})).allowed
    assert e.decide(_ctx({"amount": 5000, "n": 0}, {"role": "c"})).rule == "x"
    assert e.decide(_ctx({"amount": 5}, {"role": "c"})).rule == "y"  # optional: absence holds
    assert _engine(text, risk="critical").decide(_ctx({"amount": 5, "n": 0}, {"role": "c"})).rule == "z"
    assert e.decide(_ctx({"amount": 5, "n": 0}, {"role": "c", "scope": "a b"})).allowed


# -- property: an unknown input is at least as strict as every value it could have -----------

CONDITIONS: list[dict[str, Any]] = [
    {"risk": ["high", "critical"]},
    {"risk": ["low"]},
    {"arguments": {"a": {"min": 1000}}},
    {"arguments": {"a": {"in": [1]}}},
    {"arguments": {"a": {"equals": "x"}}},
    {"claims": {"role": "admin"}},
    {"claims": {"role": ["admin", "contractor"]}},
    {"scopes": ["s1"]},
    {"scopes": ["s1", "s2"]},
]
MATCHERS: list[list[dict[str, Any]]] = [[{"claims": {"role": "contractor"}}], [{"scopes": ["s2"]}]]

# Each input: its unknown value and the values it could stand for.
RISKS: tuple[str | None, list[str | None]] = (None, ["low", "medium", "high", "critical"])
ARGS: tuple[Any, list[Any]] = ("<absent>", [1, 5000, "x"])
ROLES: tuple[Any, list[Any]] = ("<absent>", ["admin", "contractor"])
SCOPES: tuple[Any, list[Any]] = (7, ["", "s1", "s2", "s1 s2"])


@st.composite
def _blocks(draw: st.DrawFn) -> dict[str, Any]:
    block: dict[str, Any] = {}
    for cond in draw(st.lists(st.sampled_from(CONDITIONS), min_size=1, max_size=2)):
        block.update(cond)
    return block


@st.composite
def _rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"effect": draw(st.sampled_from(["allow", "deny", "require_approval"])), "tools": ["t"]}
    if draw(st.booleans()):
        rule["when"] = draw(_blocks())
    if rule["effect"] == "deny" and draw(st.booleans()):
        rule["unless"] = draw(_blocks())
    if draw(st.booleans()):
        rule["principals"] = draw(st.sampled_from(MATCHERS))
    return rule


def _decide(policy: Policy, risk: Any, arg: Any, role: Any, scope: Any) -> Effect:
    declared = {"t": DeclaredTarget(risk=risk)} if risk is not None else None
    claims: dict[str, Any] = {"scope": scope}
    if role != "<absent>":
        claims["role"] = role
    args = {"a": arg} if arg != "<absent>" else {}
    return PolicyEngine(policy, declared=declared).decide(_ctx(args, claims)).effect


@settings(max_examples=300)
@given(
    drawn=st.lists(_rules(), min_size=1, max_size=4),
    which=st.sampled_from(["risk", "arg", "role", "scope"]),
    known=st.fixed_dictionaries(
        {
            "risk": st.sampled_from(RISKS[1]),
            "arg": st.sampled_from(ARGS[1]),
            "role": st.sampled_from(ROLES[1]),
            "scope": st.sampled_from(SCOPES[1]),
        }
    ),
)
def test_an_unknown_input_never_turns_a_deny_into_an_allow(
    drawn: list[dict[str, Any]], which: str, known: dict[str, Any]
) -> None:
    policy = Policy.from_dict({"rules": [{"id": f"r{i}", **r} for i, r in enumerate(drawn)]})
    unknown, values = {"risk": RISKS, "arg": ARGS, "role": ROLES, "scope": SCOPES}[which]
    strictest = max(RANK[_decide(policy, **{**known, which: value})] for value in values)
    assert RANK[_decide(policy, **{**known, which: unknown})] >= strictest


def test_a_value_the_request_does_not_carry_is_unknown_to_same_as_and_to_anonymous_claims() -> None:
    rule = "{id: x, effect: deny, tools: [t], when: {arguments: {owner: {same_as: purpose}}}}"
    same = _engine(f"rules:\n{ALLOW_ALL}  - {rule}\n")
    assert same.decide(_ctx({"owner": "ops"}).replace(purpose="billing")).allowed
    assert same.decide(_ctx({"owner": "ops"}).replace(purpose="ops")).rule == "x"
    decision = same.decide(_ctx({"owner": "ops"}))  # no purpose declared: the owner could be it
    assert (decision.rule, decision.reason_code) == ("x", "condition_unevaluable")
    anonymous = _engine(
        """rules:
  - {id: all, effect: allow, tools: [t], anonymous: true}
  - {id: x, effect: deny, tools: [t], anonymous: true, when: {claims: {role: contractor}}}
"""
    )
    decision = anonymous.decide(_ctx().replace(principal=None, tenant=None))
    assert (decision.rule, decision.reason_code) == ("x", "condition_unevaluable")


@pytest.mark.parametrize("now", [float("nan"), float("inf"), float("-inf"), 1e300])
def test_a_time_the_clock_cannot_give_is_unknown_to_time_windows(now: float) -> None:
    text = f"""rules:
{ALLOW_ALL}  - {{id: x, effect: deny, tools: [t], when: {{time: {{before: "2030-01-01T00:00:00Z"}}}}}}
  - {{id: y, effect: deny, tools: [t], when: {{time: {{start: "09:00", end: "17:00"}}}}}}
  - {{id: campaign, effect: allow, tools: [c], when: {{time: {{after: "2025-01-01T00:00:00Z"}}}}}}
"""
    e = _engine(text)
    decision = e.decide(_ctx(), now=now)
    assert (decision.effect, decision.reason_code) == (Effect.DENY, "condition_unevaluable")
    if now != 1e300:  # a time past every calendar is still after 2025
        assert not e.decide(_ctx().replace(target="c"), now=now).allowed
    night = datetime(2030, 6, 1, 3, 0, tzinfo=timezone.utc).timestamp()  # after 2030, outside 09-17
    assert e.decide(_ctx(), now=night).allowed
