"""Property tests of the policy engine and middleware over generated policies and requests.

* no request is allowed without an allow rule that applies to it (and no deny that applies);
* adding a deny rule never turns a deny into an allow;
* listing filtering agrees with call decisions.
"""

from __future__ import annotations

import fnmatch
from types import MappingProxyType
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpgov import Effect, GovContext, Listing, ListItem, Principal
from mcpgov.policy import Policy, PolicyEngine, PolicyMiddleware

TOOLS = ("a", "ab", "b")
PRINCIPALS = {
    "alice": Principal("https://idp", "alice", tenant="acme", claims={"scope": "s"}),
    "bob": Principal("https://idp", "bob", tenant="globex"),
}


@st.composite
def rules(
    draw: st.DrawFn, *, with_arguments: bool = True, effects: tuple[str, ...] = ("allow", "deny", "require_approval")
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "effect": draw(st.sampled_from(effects)),
        "tools": draw(st.lists(st.sampled_from(["a", "ab", "b", "*", "a*"]), min_size=1, max_size=2)),
    }
    if draw(st.booleans()):
        rule["tenants"] = draw(st.lists(st.sampled_from(["acme", "globex"]), min_size=1, max_size=2))
    if draw(st.booleans()):
        rule["anonymous"] = True
    when: dict[str, Any] = {}
    if draw(st.booleans()):
        when["purposes"] = ["support"]
    if with_arguments and draw(st.booleans()):
        when["arguments"] = {"n": {"max": 5}}
    if when:
        rule["when"] = when
    if rule["effect"] == "deny" and draw(st.booleans()):
        rule["unless"] = {"scopes": ["s"]}
    return rule


def policy_of(drawn: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rules": [{"id": f"r{i}", **r} for i, r in enumerate(drawn)]}


requests = st.fixed_dictionaries(
    {
        "tool": st.sampled_from(TOOLS),
        "who": st.sampled_from(["alice", "bob", None]),
        "purpose": st.sampled_from(["support", None]),
        "n": st.one_of(st.none(), st.integers(0, 10), st.just("x")),
    }
)


def context(req: dict[str, Any], action: str = "execute") -> GovContext:
    principal = PRINCIPALS.get(req["who"]) if req["who"] else None
    args = None if action == "discover" else MappingProxyType({} if req["n"] is None else {"n": req["n"]})
    return GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target=req["tool"],
        action=action,  # type: ignore[arg-type]
        arguments=args,
        principal=principal,
        tenant=principal.tenant if principal else None,
        purpose=req["purpose"],
    )


def applies(rule: dict[str, Any], req: dict[str, Any]) -> bool:
    """An independent oracle: does ``rule`` apply to ``req`` (for execute)?"""
    if not any(fnmatch.fnmatchcase(req["tool"], p) for p in rule["tools"]):
        return False
    principal = PRINCIPALS.get(req["who"]) if req["who"] else None
    if principal is None and not rule.get("anonymous"):
        return False
    tenant = principal.tenant if principal else None
    if "tenants" in rule and tenant not in rule["tenants"]:
        return False
    when = rule.get("when", {})
    if "purposes" in when and req["purpose"] not in when["purposes"]:
        return False
    if "arguments" in when:
        n = req["n"]
        if not isinstance(n, int) or n > 5:
            return False
    if "unless" in rule:
        holds = principal is not None and "s" in principal.claims.get("scope", "").split()
        return not holds
    return True


@settings(max_examples=300, deadline=None)
@given(st.lists(rules(), max_size=6), requests)
def test_no_request_is_allowed_without_an_applying_allow_rule(drawn: list[dict[str, Any]], req: dict[str, Any]) -> None:
    policy = policy_of(drawn)
    decision = PolicyEngine(Policy.from_dict(policy)).decide(context(req))
    by_id = {r["id"]: r for r in policy["rules"]}
    if decision.allowed:
        assert by_id[decision.rule]["effect"] == "allow"
        assert applies(by_id[decision.rule], req)
    applying = [r for r in policy["rules"] if applies(r, req)]
    if any(r["effect"] == "deny" for r in applying):
        assert decision.effect is Effect.DENY
    if not any(r["effect"] == "allow" for r in applying):
        assert not decision.allowed


@settings(max_examples=300, deadline=None)
@given(st.lists(rules(), max_size=6), rules(effects=("deny",)), st.integers(0, 6), requests)
def test_adding_a_deny_rule_never_turns_a_deny_into_an_allow(
    drawn: list[dict[str, Any]], extra: dict[str, Any], position: int, req: dict[str, Any]
) -> None:
    before = PolicyEngine(Policy.from_dict(policy_of(drawn))).decide(context(req))
    widened = list(drawn)
    widened.insert(min(position, len(widened)), extra)
    after = PolicyEngine(Policy.from_dict(policy_of(widened))).decide(context(req))
    if not before.allowed:
        assert not after.allowed
    if after.allowed:
        assert before.allowed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rules(with_arguments=False), max_size=6), requests)
def test_listing_filtering_agrees_with_call_decisions(drawn: list[dict[str, Any]], req: dict[str, Any]) -> None:
    middleware = PolicyMiddleware(Policy.from_dict(policy_of(drawn)))
    listing = Listing("tool", tuple(ListItem(name, {"name": name}) for name in TOOLS))
    base = context({**req, "n": None})
    list_ctx = base.replace(method="tools/list", kind="tool", target=None, action=None, arguments=None)

    async def run() -> tuple[set[str], set[str]]:
        shown = await middleware.filter(list_ctx, listing)
        usable = set()
        for name in TOOLS:
            decision = await middleware.evaluate(base.replace(target=name))
            if decision.effect is not Effect.DENY:
                usable.add(name)
        return {item.name for item in shown.items}, usable

    shown, usable = anyio.run(run)
    assert shown == usable
