"""A value in another JSON type than the one an equality condition names is not a "no": a server
the policy does not govern (behind a client-side policy, or a gateway's upstream) validates
tool arguments leniently (``"1"`` becomes the integer 1, ``"yes"`` the boolean true, ``true`` the
integer 1), so a deny on a value applies to every spelling a tool could receive as that value,
and an allow admits none of them."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import MCPError
from mcp.server.mcpserver import MCPServer
from pydantic import TypeAdapter, ValidationError

from mcpgov import Effect, GovContext, GovernedClient, Principal
from mcpgov.policy import CedarPolicy, Policy, PolicyEngine, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

IDP = "https://idp.example"

DENY_POLICY = """
rules:
  - {id: everything, effect: allow, tools: ["*"]}
  - {id: no-account-zero, effect: deny, tools: [transfer], when: {arguments: {account: {in: [0, 7]}}}}
  - {id: no-forced, effect: deny, tools: [transfer], when: {arguments: {force: {equals: true}}}}
  - {id: no-big-amounts, effect: deny, tools: [transfer], when: {arguments: {amount: {min: 1000}}}}
"""

ALLOW_POLICY = """
rules:
  - id: small-transfers
    effect: allow
    tools: [transfer]
    when:
      arguments:
        account: {not_in: [0]}
        force: {equals: false}
        amount: {max: 100}
"""


def _server() -> tuple[MCPServer, list[tuple[int, bool, float]]]:
    """A server no policy governs: the SDK validates its tools' arguments leniently."""
    server = MCPServer("bank")
    ran: list[tuple[int, bool, float]] = []

    @server.tool()
    def transfer(account: int, force: bool, amount: float) -> str:
        ran.append((account, force, amount))
        return "sent"

    return server, ran


def _client(server: MCPServer, policy: str, sink: InMemoryAuditSink, mode: str) -> GovernedClient:
    return GovernedClient(
        server,
        PolicyMiddleware(Policy.from_yaml(policy)),
        audit=sink,
        principal=Principal(IDP, "alice", tenant="acme"),
        mode=mode,
    )


ACCOUNT_ZERO = ["0", " 0 ", "0.0", "+0", "-0", "0_0", 0.0, False, "7", 7.0, "7.0", True and 7]
FORCED = [1, 1.0, "true", "True", "yes", "on", "1", "t", "y", " true "]


@pytest.mark.anyio
@pytest.mark.parametrize("account", ACCOUNT_ZERO)
async def test_a_deny_on_a_number_applies_to_every_spelling_the_tool_receives_as_it(account: Any, mode: str) -> None:
    server, ran = _server()
    sink = InMemoryAuditSink()
    async with _client(server, DENY_POLICY, sink, mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("transfer", {"account": account, "force": False, "amount": 1})
        assert caught.value.code == -32003
        ok = await client.call_tool("transfer", {"account": 5, "force": False, "amount": 1})
        assert ok.is_error is False
    assert ran == [(5, False, 1.0)]
    assert [e.rule for e in sink.decisions() if e.effect == "deny"] == ["no-account-zero"]


@pytest.mark.anyio
@pytest.mark.parametrize("force", FORCED)
async def test_a_deny_on_a_boolean_applies_to_every_spelling_the_tool_receives_as_it(force: Any, mode: str) -> None:
    server, ran = _server()
    sink = InMemoryAuditSink()
    async with _client(server, DENY_POLICY, sink, mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("transfer", {"account": 5, "force": force, "amount": 1})
        assert caught.value.code == -32003
    assert ran == []
    assert [e.rule for e in sink.decisions() if e.effect == "deny"] == ["no-forced"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "args",
    [
        {"account": "0", "force": False, "amount": 1},
        {"account": False, "force": False, "amount": 1},
        {"account": 5, "force": 0, "amount": 1},
        {"account": 5, "force": "false", "amount": 1},
        {"account": 5, "force": "no", "amount": 1},
    ],
)
async def test_an_allow_admits_no_spelling_it_cannot_judge(args: dict[str, Any], mode: str) -> None:
    server, ran = _server()
    async with _client(server, ALLOW_POLICY, InMemoryAuditSink(), mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("transfer", args)
        assert caught.value.code == -32003
        ok = await client.call_tool("transfer", {"account": 5, "force": False, "amount": 1})
        assert ok.is_error is False
    assert ran == [(5, False, 1.0)]


def _decide(rules: list[dict[str, Any]], value: Any) -> Effect:
    engine = PolicyEngine(Policy.from_dict({"rules": rules}, source="p.json"))
    ctx = GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="t",
        action="execute",
        arguments=MappingProxyType({"x": value}),
        principal=Principal(IDP, "alice", tenant="acme"),
        tenant="acme",
    )
    return engine.decide(ctx).effect


SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([0.0, 1.0, -0.0, 2.5, math.nan, math.inf]),
    st.sampled_from(["0", "1", " 1", "1.0", "+1", "true", "False", "yes", "off", "t", "n", "x", "", "2.5", "1e0"]),
)
_LENIENT: list[TypeAdapter[Any]] = [TypeAdapter(int), TypeAdapter(float), TypeAdapter(bool), TypeAdapter(str)]


def _received(value: Any) -> list[Any]:
    """What a tool receives for ``value`` in a parameter of each scalar type it validates as."""
    out = []
    for adapter in _LENIENT:
        try:
            out.append(adapter.validate_python(value))
        except ValidationError:
            continue
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return type(a) is type(b) and a == b
    return bool(a == b)


FINITE_SCALARS = SCALARS.filter(lambda v: not (isinstance(v, float) and not math.isfinite(v)))


@settings(max_examples=300, deadline=None)
@given(value=SCALARS, expected=FINITE_SCALARS)
def test_property_equality_is_unknown_whenever_the_tool_could_receive_the_value(value: Any, expected: Any) -> None:
    """For any value a tool could receive as the denied one (in a parameter of any scalar type), the
    deny applies; an allow on equality admits only a value that is the expected one as sent."""
    allow_all = {"id": "all", "effect": "allow", "tools": ["t"]}
    deny = {"id": "refuse", "effect": "deny", "tools": ["t"], "when": {"arguments": {"x": {"equals": expected}}}}
    allow = {"id": "admit", "effect": "allow", "tools": ["t"], "when": {"arguments": {"x": {"in": [expected]}}}}
    if any(_same(r, expected) for r in _received(value)):
        assert _decide([allow_all, deny], value) is Effect.DENY
    if _decide([allow], value) is Effect.ALLOW:
        assert _same(value, expected)


CEDAR_DENY = """
@id("everything")
permit(principal, action, resource);

@id("no-account-zero")
forbid(principal, action == Action::"execute", resource == Tool::"transfer")
when { [0, 7].contains(context.args.account) };

@id("no-forced")
forbid(principal, action == Action::"execute", resource == Tool::"transfer")
when { context.args.force == true };
"""

CEDAR_ALLOW = """
@id("small-transfers")
permit(principal, action == Action::"execute", resource == Tool::"transfer")
when { context.args.account != 0 && context.args.force == false && context.args.amount <= 100 };

@id("listings")
permit(principal, action == Action::"discover", resource);
"""


def _cedar_client(server: MCPServer, text: str, sink: InMemoryAuditSink, mode: str) -> GovernedClient:
    pytest.importorskip("cedarpy", reason="the Cedar engine needs the cedar extra (cedarpy)")
    return GovernedClient(
        server,
        PolicyMiddleware(CedarPolicy(text, source="p.cedar")),
        audit=sink,
        principal=Principal(IDP, "alice", tenant="acme"),
        mode=mode,
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("args", "rule"),
    [
        *(({"account": v, "force": False, "amount": 1}, "no-account-zero") for v in ("0", "7", False, " 0 ", "0.0")),
        *(({"account": 5, "force": v, "amount": 1}, "no-forced") for v in (1, "true", "yes", "on", "1")),
    ],
)
async def test_a_cedar_forbid_on_a_value_applies_to_every_spelling_the_tool_receives_as_it(
    args: dict[str, Any], rule: str, mode: str
) -> None:
    server, ran = _server()
    sink = InMemoryAuditSink()
    async with _cedar_client(server, CEDAR_DENY, sink, mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("transfer", args)
        assert caught.value.code == -32003
        ok = await client.call_tool("transfer", {"account": 5, "force": False, "amount": 1})
        assert ok.is_error is False
    assert ran == [(5, False, 1.0)]
    denied = [(e.rule, e.reason) for e in sink.decisions() if e.effect == "deny"]
    assert denied == [(rule, "condition_unevaluable")]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "args",
    [
        {"account": "0", "force": False, "amount": 1},
        {"account": False, "force": False, "amount": 1},
        {"account": 5, "force": 0, "amount": 1},
        {"account": 5, "force": "false", "amount": 1},
    ],
)
async def test_a_cedar_permit_admits_no_spelling_it_cannot_judge(args: dict[str, Any], mode: str) -> None:
    server, ran = _server()
    async with _cedar_client(server, CEDAR_ALLOW, InMemoryAuditSink(), mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("transfer", args)
        assert caught.value.code == -32003
        ok = await client.call_tool("transfer", {"account": 5, "force": False, "amount": 1})
        assert ok.is_error is False
    assert ran == [(5, False, 1.0)]


@pytest.mark.parametrize(
    ("value", "effect"), [("rm", Effect.DENY), ("\uff52\uff4d", Effect.DENY), ("ls", Effect.ALLOW)]
)
def test_a_cedar_forbid_on_a_string_applies_to_its_compatibility_spellings(value: str, effect: Effect) -> None:
    pytest.importorskip("cedarpy", reason="the Cedar engine needs the cedar extra (cedarpy)")
    from mcpgov.policy import CedarPolicy

    engine = CedarPolicy(
        '@id("all") permit(principal, action, resource);\n'
        '@id("no-rm") forbid(principal, action, resource) when { context.args.x == "rm" };\n',
        source="p.cedar",
    ).compile()
    ctx = GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="t",
        action="execute",
        arguments=MappingProxyType({"x": value}),
        principal=Principal(IDP, "alice", tenant="acme"),
        tenant="acme",
    )
    decision = engine.decide(ctx)
    assert decision.effect is effect
    if effect is Effect.DENY:
        assert decision.rule == "no-rm"
