"""Cedar as an optional engine: same interface, errors deny, and parity with the built-in engine."""

from __future__ import annotations

import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp_types import RequestParamsMeta

from mcpgov import ConfigurationError, Effect, GovContext, Principal, govern
from mcpgov._context import APPROVAL_GRANT
from mcpgov.policy import DEFAULT_DENY_RULE, CedarPolicy, Policy, PolicyError, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

from .policies.support import ACME, LookupIdentity, as_, build_file_server

pytest.importorskip("cedarpy", reason="the Cedar engine needs the cedar extra (cedarpy)")

pytestmark = pytest.mark.anyio

BUILT_IN = Policy.from_yaml(
    """
rules:
  - id: acme-read
    effect: allow
    tenants: [acme]
    tools: [read_file]
    when: {arguments: {path: {glob: "/data/acme/*"}}}
  - {id: globex-read, effect: allow, tenants: [globex], tools: [read_file]}
  - {id: no-big-search, effect: deny, tools: [search], when: {arguments: {query: {equals: drop}}}}
  - {id: search, effect: allow, tools: [search]}
  - {id: support-email, effect: allow, tools: [send_email], when: {purposes: [support]}}
  - {id: approve-delete, effect: require_approval, tools: [delete_everything]}
  - id: delete-for-alice
    effect: allow
    tools: [delete_everything]
    principals: [{issuer: "https://idp.acme.example", subject: alice}]
  - {id: docs, effect: allow, resources: ["docs://readme"]}
""",
    source="parity.yaml",
)

CEDAR = """
@id("acme-read")
permit(principal is Principal, action, resource == Tool::"read_file")
when { context has tenant && context.tenant == "acme" &&
       (action == Action::"discover" || (context.args has path && context.args.path like "/data/acme/*")) };

@id("globex-read")
permit(principal is Principal, action, resource == Tool::"read_file")
when { context has tenant && context.tenant == "globex" };

@id("no-big-search")
forbid(principal is Principal, action == Action::"execute", resource == Tool::"search")
when { context.args has query && context.args.query == "drop" };

@id("search")
permit(principal is Principal, action, resource == Tool::"search");

@id("support-email")
permit(principal is Principal, action, resource == Tool::"send_email")
when { context has purpose && context.purpose == "support" };

@id("approve-delete")
@approval
permit(principal is Principal, action, resource == Tool::"delete_everything");

@id("delete-for-alice")
permit(principal == Principal::"https://idp.acme.example#alice", action, resource == Tool::"delete_everything");

@id("docs")
permit(principal is Principal, action, resource == Resource::"docs://readme");
"""

# (who, purpose, kind, target, arguments)
CASES: list[tuple[str | None, str | None, str, str, dict[str, Any] | None]] = [
    ("alice", None, "tool", "read_file", {"path": "/data/acme/x"}),
    ("alice", None, "tool", "read_file", {"path": "/data/globex/x"}),
    ("alice", None, "tool", "read_file", {"path": 3}),
    ("bob", None, "tool", "read_file", {"path": "/data/acme/x"}),
    (None, None, "tool", "read_file", {"path": "/data/acme/x"}),
    ("alice", None, "tool", "search", {"query": "abc"}),
    ("alice", None, "tool", "search", {"query": "drop"}),
    ("alice", None, "tool", "search", {"query": 7}),
    ("alice", "support", "tool", "send_email", {"to": "a", "body": "b"}),
    ("alice", "sales", "tool", "send_email", {"to": "a", "body": "b"}),
    ("alice", None, "tool", "delete_everything", {}),
    ("bob", None, "tool", "delete_everything", {}),
    ("alice", None, "tool", "write_file", {"path": "/data/acme/x", "content": "c"}),
    ("bob", None, "resource", "docs://readme", None),
    ("bob", None, "resource", "secret://payroll", None),
]


def _comparable(rule: str | None) -> str | None:
    return {DEFAULT_DENY_RULE: "default-deny", "cedar:default-deny": "default-deny"}.get(rule or "", rule)


async def _outcomes(policy: Policy | CedarPolicy, mode: str) -> list[tuple[int | None, str | None, list[str]]]:
    fs = build_file_server(policy)
    out: list[tuple[int | None, str | None, list[str]]] = []
    async with Client(fs.server, mode=mode) as client:
        for who, purpose, kind, target, args in CASES:
            meta = as_(who, purpose=purpose) if who else RequestParamsMeta()
            fs.sink.clear()
            code: int | None = None
            try:
                if kind == "tool":
                    await client.call_tool(target, args, meta=meta)
                else:
                    await client.read_resource(target, meta=meta)
            except MCPError as exc:
                code = exc.code
            decisions = fs.sink.decisions()
            last = decisions[-1] if decisions else None
            if last is not None and last.reason in ("condition_unevaluable", "cedar_error"):
                out.append((code, "unevaluable", []))
            else:
                out.append((code, _comparable(last.rule if last else None), []))
        listed = sorted(t.name for t in (await client.list_tools(meta=as_("alice"))).tools)
        out.append((None, None, listed))
    return out


async def test_cedar_and_the_built_in_engine_agree_on_the_same_cases(mode: str) -> None:
    built_in = await _outcomes(BUILT_IN, mode)
    cedar = await _outcomes(CedarPolicy(CEDAR, source="parity.cedar"), mode)
    assert cedar == built_in
    codes = [code for code, _, _ in built_in[: len(CASES)]]
    assert codes == [
        None,  # acme reads inside its folder
        -32003,  # ... not outside it
        -32602,  # a path that is not a string is refused before any decision (the tool declares a string)
        None,  # globex may read any path (its rule has no path condition)
        -32003,  # no principal
        None,
        -32003,  # the forbidden query
        -32602,  # so is a query of another type
        None,  # email for support
        -32003,  # ... not for sales
        -32004,  # deletes need approval, for alice too
        -32004,
        -32003,  # nothing permits write_file
        None,
        -32003,
    ]
    refused_before_deciding = [rule for code, rule, _ in built_in[: len(CASES)] if code == -32602]
    assert refused_before_deciding == ["mcpgov:invalid_request", "mcpgov:invalid_request"]
    assert built_in[-1][2] == ["delete_everything", "read_file", "search"]


def _ctx(args: dict[str, Any] | None = None, action: str = "execute") -> GovContext:
    return GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="t",
        action=action,  # type: ignore[arg-type]
        arguments=MappingProxyType(args or {}),
        principal=Principal(ACME, "alice", tenant="acme"),
        tenant="acme",
    )


def test_a_cedar_evaluation_error_denies_even_when_a_policy_permits() -> None:
    engine = CedarPolicy(
        """
@id("everyone") permit(principal, action, resource);
@id("limit") forbid(principal, action, resource) when { context.args.n > 10 };
"""
    ).compile()
    assert engine.decide(_ctx({"n": 1})).allowed
    assert engine.decide(_ctx({"n": 11})).rule == "limit"
    decision = engine.decide(_ctx({"n": "eleven"}))
    assert (decision.effect, decision.rule, decision.reason_code) == (
        Effect.DENY,
        "cedar:evaluation-error",
        "cedar_error",
    )
    explanation = engine.explain(_ctx({"n": "eleven"}))
    assert "error" in str(explanation)
    assert (decision.engine, decision.policy_version) == ("cedar", engine.version)


def test_arguments_cedar_cannot_represent_deny() -> None:
    engine = CedarPolicy('@id("all") permit(principal, action, resource);').compile()
    assert engine.decide(_ctx({"x": 1.25})).allowed  # a decimal
    assert engine.decide(_ctx({"x": 2.0})).allowed  # integral
    assert engine.decide(_ctx({"x": 0.123456})).reason_code == "cedar_error"
    only_if_absent = CedarPolicy(
        '@id("a") permit(principal, action, resource) unless { context.args has x };'
    ).compile()
    assert only_if_absent.decide(_ctx({"x": None})).allowed  # null maps to "absent"


def test_invalid_cedar_fails_at_load_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"bad\.cedar: invalid Cedar policy"):
        CedarPolicy("permit(principal, action", source="bad.cedar")
    path = tmp_path / "p.cedar"
    path.write_text('@id("x") permit(principal, action, resource);')
    assert PolicyMiddleware(path).engine.engine_name == "cedar"


def test_without_cedarpy_the_engine_is_a_clear_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cedarpy", None)
    with pytest.raises(ConfigurationError, match=r"mcpgov\[cedar\]"):
        CedarPolicy("permit(principal, action, resource);")


# -- arguments Cedar would read as something other than data ---------------------------------------

ESCAPES_CEDAR = """
@id("small-payments") permit(principal, action, resource == Tool::"pay")
when { action == Action::"discover" ||
       (context.args.order has amount && context.args.order.amount.lessThan(decimal("100.0"))) };
@id("own-records") permit(principal, action, resource == Tool::"pay")
when { context has args && context.args.order has owner && context.args.order.owner == principal };
"""

ESCAPED_ORDERS: list[dict[str, Any]] = [
    {"amount": {"__extn": {"fn": "decimal", "arg": "1.0"}}},
    {"amount": {"__extn": {"fn": "decimal", "arg": "1.0"}}, "note": "x"},
    {"owner": {"__entity": {"type": "Principal", "id": f"{ACME}#alice"}}},
    {"owner": {"__expr": f'Principal::"{ACME}#alice"'}},
    {"items": [{"__extn": {"fn": "ip", "arg": "10.0.0.1"}}], "amount": 1.5},
]


@pytest.mark.parametrize("order", ESCAPED_ORDERS)
async def test_an_argument_object_cedar_would_read_as_an_escape_is_refused(order: dict[str, Any], mode: str) -> None:
    server = MCPServer("payments")
    ran: list[Any] = []

    @server.tool()
    def pay(order: dict[str, Any]) -> str:
        ran.append(order)
        return "paid"

    sink = InMemoryAuditSink()
    govern(server, LookupIdentity(), PolicyMiddleware(CedarPolicy(ESCAPES_CEDAR, source="pay.cedar")), audit=sink)
    async with Client(server, mode=mode) as client:
        assert (await client.call_tool("pay", {"order": {"amount": 1.5}}, meta=as_("alice"))).is_error is False
        with pytest.raises(MCPError) as caught:
            await client.call_tool("pay", {"order": order}, meta=as_("alice"))
        assert caught.value.code == -32003
    assert ran == [{"amount": 1.5}]
    assert sink.decisions()[-1].reason == "cedar_error"


class _AskedAbout:
    """A grant chain that was asked about ``rules`` (what an approval middleware passes on)."""

    approver = "alice"

    def __init__(self, *rules: str) -> None:
        self.rules = set(rules)

    def asked_about(self, rule: str) -> bool:
        return rule in self.rules

    def covers(self, ctx: GovContext, decision: Any) -> bool:
        return decision.rule in self.rules


@pytest.mark.parametrize(
    ("asked", "named"), [((), "first"), (("first",), "second"), (("first", "second"), "first"), (("second",), "first")]
)
def test_each_cedar_approval_policy_is_asked_about_in_turn(asked: tuple[str, ...], named: str) -> None:
    engine = CedarPolicy(
        """
@id("first") @approval permit(principal, action, resource);
@id("second") @approval permit(principal, action, resource);
"""
    ).compile()
    ctx = _ctx({"n": 1})
    if asked:
        ctx = ctx.with_extension(APPROVAL_GRANT, _AskedAbout(*asked))
    decision = engine.decide(ctx)
    assert (decision.effect, decision.rule) == (Effect.REQUIRE_APPROVAL, named)


FORBID_NAMES = """
@id("everyone") permit(principal, action, resource);
@id("no-acme") forbid(principal, action, resource) when { context has tenant && context.tenant == "acme" };
@id("no-marketing") forbid(principal, action, resource)
when { context has purpose && ["marketing", "ads"].contains(context.purpose) };
@id("no-test") forbid(principal, action, resource) when { context has tenant && context.tenant like "test-*" };
"""


def _named(tenant: str | None, purpose: str | None = "support") -> GovContext:
    return _ctx().replace(tenant=tenant, purpose=purpose)


@pytest.mark.parametrize(
    ("tenant", "purpose", "rule"),
    [
        ("ACME", "support", "no-acme"),
        ("Acme", "support", "no-acme"),
        ("acme\u200b", "support", "no-acme"),
        (" acme ", "support", "no-acme"),
        ("\uff41\uff43\uff4d\uff45", "support", "no-acme"),  # fullwidth
        ("\u0430cme", "support", "no-acme"),  # a Cyrillic a
        (None, "support", "no-acme"),
        ("TEST-", "support", "no-test"),
        ("TEST-lab", "support", "no-test"),
        ("\uff54est-lab", "support", "no-test"),
        ("test\u200b-lab", "support", "no-test"),
        ("globex", "Marketing", "no-marketing"),
        ("globex", "ads\u00ad", "no-marketing"),
        ("globex", "\uff21\uff24\uff33", "no-marketing"),
        ("globex", None, "no-marketing"),
        ("globex", "x" * 20_000, "no-marketing"),
    ],
)
def test_cedar_judges_another_spelling_of_a_tenant_or_purpose_as_unknown(
    tenant: str | None, purpose: str | None, rule: str
) -> None:
    engine = CedarPolicy(FORBID_NAMES).compile()
    decision = engine.decide(_named(tenant, purpose))
    assert (decision.effect, decision.rule, decision.reason_code) == (Effect.DENY, rule, "condition_unevaluable")
    assert "unknown" in str(engine.explain(_named(tenant, purpose)))


def test_cedar_judges_exact_names_exactly() -> None:
    engine = CedarPolicy(FORBID_NAMES).compile()
    assert engine.decide(_named("globex")).allowed
    assert engine.decide(_named("acme-corp")).allowed  # not a spelling of a name
    assert engine.decide(_named("test-lab")).reason_code == "policy_deny"
    assert engine.decide(_named("contest-lab")).allowed
    assert engine.decide(_named("acme")).reason_code == "policy_deny"
    assert engine.decide(_named("globex", "marketing")).reason_code == "policy_deny"
    # A permit for a mixed-case name admits that name only; its other spellings are not permitted.
    mixed = CedarPolicy('@id("p") permit(principal, action, resource) when { context.tenant == "Acme" };').compile()
    assert mixed.decide(_named("Acme")).allowed
    for other in ("acme", "ACME", None):
        assert not mixed.decide(_named(other)).allowed


def test_cedar_asks_for_approval_when_a_purpose_could_be_the_one_that_needs_it() -> None:
    engine = CedarPolicy(
        """
@id("everyone") permit(principal, action, resource);
@id("payments") @approval permit(principal, action, resource)
when { context has purpose && context.purpose == "payments" };
"""
    ).compile()
    assert engine.decide(_named("acme", "support")).allowed
    for purpose in ("PAYMENTS", "payments\u200b", None):
        decision = engine.decide(_named("acme", purpose))
        assert (decision.effect, decision.rule) == (Effect.REQUIRE_APPROVAL, "payments")


async def test_a_cedar_forbid_on_a_purpose_holds_for_its_other_spellings_in_a_session(mode: str) -> None:
    fs = build_file_server(CedarPolicy(FORBID_NAMES.replace('context.tenant == "acme"', 'context.tenant == "x"')))
    async with Client(fs.server, mode=mode) as client:
        ok = await client.call_tool("search", {"query": "q"}, meta=as_("alice", purpose="support"))
        assert ok.is_error is False
        for purpose in ("Marketing", "marketing\u200b", "\uff4d\uff41\uff52\uff4b\uff45\uff54\uff49\uff4e\uff47"):
            with pytest.raises(MCPError) as caught:
                await client.call_tool("search", {"query": "q"}, meta=as_("alice", purpose=purpose))
            assert caught.value.code == -32003
    assert [d.rule for d in fs.sink.decisions() if d.effect == "deny"] == ["no-marketing"] * 3


@pytest.mark.parametrize(
    "value", [None, ["contractor", None], {"__entity": {"type": "X", "id": "y"}}, 0.1234567, 2**70]
)
def test_a_claim_the_policies_read_but_cedar_cannot_hold_denies(value: Any) -> None:
    engine = CedarPolicy(
        """
@id("everyone") permit(principal, action, resource);
@id("no-contractors") forbid(principal, action, resource)
when { context.claims has role && context.claims.role.contains("contractor") };
"""
    ).compile()
    ctx = _ctx().replace(principal=Principal(ACME, "alice", tenant="acme", claims={"role": value, "other": None}))
    decision = engine.decide(ctx)
    assert (decision.effect, decision.reason_code) == (Effect.DENY, "cedar_error")
    unread = ctx.replace(principal=Principal(ACME, "alice", tenant="acme", claims={"role": ["dev"], "other": value}))
    assert engine.decide(unread).allowed  # a claim no policy reads is left out
    whole = CedarPolicy('@id("p") permit(principal, action, resource) unless { context.claims == {} };').compile()
    assert whole.decide(unread).reason_code == "cedar_error"


@pytest.mark.parametrize("claims", [{"scope": 7}, {"scp": ["admin", 1]}, {"scopes": {"admin": True}}])
def test_a_scope_claim_of_the_wrong_shape_denies_when_the_policies_read_the_scopes(claims: dict[str, Any]) -> None:
    ctx = _ctx().replace(principal=Principal(ACME, "alice", tenant="acme", claims=claims))
    reads = CedarPolicy(
        """
@id("everyone") permit(principal, action, resource);
@id("no-admins") forbid(principal, action, resource) when { context.scopes.contains("admin") };
"""
    ).compile()
    assert (reads.decide(ctx).effect, reads.decide(ctx).reason_code) == (Effect.DENY, "cedar_error")
    assert CedarPolicy('@id("everyone") permit(principal, action, resource);').compile().decide(ctx).allowed


CLAIM_POLICY = """
@id("everyone") permit(principal, action, resource);
@id("no-contractors") forbid(principal, action, resource)
when { context.claims has role && context.claims.role == "contractor" };
@id("no-contractor-groups") forbid(principal, action, resource)
when { context.claims has groups && context.claims.groups.contains("contractors") };
"""


@pytest.mark.parametrize(
    ("claims", "rule"),
    [
        ({"role": "Contractor", "groups": []}, "no-contractors"),
        ({"role": "contractor\u200b", "groups": []}, "no-contractors"),
        ({"role": "\uff43ontractor", "groups": []}, "no-contractors"),
        ({"groups": []}, "no-contractors"),
        ({"role": "dev", "groups": ["dev", "CONTRACTORS"]}, "no-contractor-groups"),
        ({"role": "dev"}, "no-contractor-groups"),
    ],
)
def test_cedar_judges_another_spelling_of_a_compared_claim_or_its_absence_as_unknown(
    claims: dict[str, Any], rule: str
) -> None:
    engine = CedarPolicy(CLAIM_POLICY).compile()
    decision = engine.decide(_ctx().replace(principal=Principal(ACME, "alice", tenant="acme", claims=claims)))
    assert (decision.effect, decision.rule, decision.reason_code) == (Effect.DENY, rule, "condition_unevaluable")


@pytest.mark.parametrize(
    ("claims", "allowed"),
    [
        ({"role": "dev", "groups": ["dev", "ops"]}, True),
        ({"role": "contractor", "groups": []}, False),
        ({"role": "dev", "groups": ["contractors"]}, False),
    ],
)
def test_cedar_judges_compared_claims_exactly(claims: dict[str, Any], allowed: bool) -> None:
    engine = CedarPolicy(CLAIM_POLICY).compile()
    ctx = _ctx().replace(principal=Principal(ACME, "alice", tenant="acme", claims=claims))
    assert engine.decide(ctx).allowed is allowed
