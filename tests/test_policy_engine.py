"""The built-in engine: deny overrides, default deny, conditions, obligations, indexing and explain."""

from __future__ import annotations

from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpgov import Actor, Effect, GovContext, Principal
from mcpgov.policy import (
    DEFAULT_DENY_RULE,
    OBLIGATION_BIND_ARGUMENTS,
    OBLIGATION_MAX_CREDENTIAL_TTL,
    OBLIGATION_RATE_LIMIT,
    OBLIGATION_REDACT,
    Policy,
    PolicyEngine,
    path_within,
)
from mcpgov.policy._history import TaskHistory
from mcpgov.policy._ratelimit import RateLimitSpec

ALICE = Principal("https://idp", "alice", tenant="acme", claims={"scope": "a b", "role": ["admin", "dev"]})


def engine(text: str) -> PolicyEngine:
    return PolicyEngine(Policy.from_yaml(text, source="t.yaml"))


def ctx(
    target: str = "t",
    args: dict[str, Any] | None = None,
    *,
    kind: str = "tool",
    action: str = "execute",
    principal: Principal | None = ALICE,
    tenant: str | None = "acme",
    **fields: Any,
) -> GovContext:
    method = {"tool": "tools/call", "resource": "resources/read", "prompt": "prompts/get"}[kind]
    return GovContext(
        side="server",
        method=method,
        kind=kind,  # type: ignore[arg-type]
        target=target,
        action=action,  # type: ignore[arg-type]
        arguments=MappingProxyType(args) if args is not None else None,
        principal=principal,
        tenant=tenant,
        **fields,
    )


def test_deny_overrides_allow_whatever_the_order() -> None:
    for text in (
        "rules: [{id: a, effect: allow, tools: [t]}, {id: d, effect: deny, tools: ['*']}]",
        "rules: [{id: d, effect: deny, tools: ['*']}, {id: a, effect: allow, tools: [t]}]",
    ):
        decision = engine(text).decide(ctx())
        assert (decision.effect, decision.rule, decision.reason_code) == (Effect.DENY, "d", "policy_deny")


def test_approval_overrides_allow_and_deny_overrides_approval() -> None:
    e = engine(
        """
rules:
  - {id: a, effect: allow, tools: ['*']}
  - {id: ap, effect: require_approval, tools: [t, u]}
  - {id: d, effect: deny, tools: [u]}
"""
    )
    assert (e.decide(ctx("t")).effect, e.decide(ctx("t")).rule) == (Effect.REQUIRE_APPROVAL, "ap")
    assert e.decide(ctx("u")).rule == "d"
    assert e.decide(ctx("v")).rule == "a"


def test_nothing_matching_and_empty_policy_deny_naming_the_default_rule() -> None:
    assert engine("rules: [{id: a, effect: allow, tools: [other]}]").decide(ctx()).rule == DEFAULT_DENY_RULE
    empty = engine("rules: []")
    for c in (ctx(), ctx(kind="resource", target="x://y"), ctx(action="discover")):
        decision = empty.decide(c)
        assert (decision.effect, decision.rule, decision.reason_code) == (
            Effect.DENY,
            DEFAULT_DENY_RULE,
            "default_deny",
        )
    assert "no rules" in str(empty.explain(ctx()))


def test_rules_about_other_targets_are_never_consulted() -> None:
    rules = "\n".join(f"  - {{id: r{i}, effect: allow, tools: [tool{i}]}}" for i in range(2000))
    e = engine(f"rules:\n{rules}\n  - {{id: glob, effect: allow, tools: ['tool1*']}}")
    explanation = e.explain(ctx("tool5"))
    assert explanation.total_rules == 2001
    assert [t.rule for t in explanation.rules] == ["r5"]
    assert [t.rule for t in e.explain(ctx("tool12")).rules] == ["r12", "glob"]


def test_principal_matchers_issuer_subject_spiffe_claims_and_anonymous() -> None:
    e = engine(
        """
rules:
  - id: by-subject
    effect: allow
    tools: [a]
    principals: [{issuer: "https://idp", subject: "ali*"}]
  - id: by-spiffe
    effect: allow
    tools: [b]
    principals: [{spiffe: "spiffe://acme.example/agents/*"}]
  - id: by-claims
    effect: allow
    tools: [c]
    principals: [{claims: {role: admin}, scopes: [a]}]
  - id: anyone
    effect: allow
    tools: [d]
    anonymous: true
"""
    )
    other_issuer = Principal("https://evil", "alice", tenant="acme")
    workload = Principal("spiffe://acme.example", "w", spiffe_id="spiffe://acme.example/agents/x")
    assert e.decide(ctx("a")).allowed
    assert not e.decide(ctx("a", principal=other_issuer)).allowed  # same subject, other issuer
    assert e.decide(ctx("b", principal=workload)).allowed
    assert not e.decide(ctx("b")).allowed
    assert e.decide(ctx("c")).allowed
    assert not e.decide(ctx("c", principal=Principal("https://idp", "x", claims={"role": "dev", "scope": "a"}))).allowed
    assert e.decide(ctx("d", principal=None)).allowed
    assert not e.decide(ctx("a", principal=None)).allowed  # rules need a principal unless anonymous


def test_argument_operators() -> None:
    e = engine(
        """
rules:
  - id: ops
    effect: allow
    tools: [t]
    when:
      arguments:
        mode: {in: [r, ro]}
        count: {min: 1, max: 10}
        name: {regex: "[a-z]+", max_length: 8}
        tag: {glob: "team-*", optional: true}
        flag: {equals: true, optional: true}
        owner: {same_as: tenant, optional: true}
"""
    )
    good = {"mode": "r", "count": 5, "name": "abc"}
    assert e.decide(ctx(args=good)).allowed
    assert e.decide(ctx(args={**good, "tag": "team-x", "flag": True, "owner": "acme"})).allowed
    for bad in (
        {**good, "mode": "rw"},
        {**good, "count": 11},
        {**good, "count": 0.5},
        {**good, "name": "ABC"},
        {**good, "name": "abcdefghij"},
        {**good, "tag": "other"},
        {**good, "flag": False},
        {**good, "owner": "globex"},
        {"mode": "r", "count": 5},
    ):
        assert e.decide(ctx(args=bad)).rule == DEFAULT_DENY_RULE, bad
    for unevaluable in ({**good, "count": "5"}, {**good, "count": True}, {**good, "mode": ("r",)}, {**good, "flag": 1}):
        decision = e.decide(ctx(args=unevaluable))
        assert (decision.rule, decision.reason_code) in {
            ("ops", "condition_unevaluable"),
            (DEFAULT_DENY_RULE, "default_deny"),
        }
        assert not decision.allowed


def test_booleans_never_equal_numbers() -> None:
    e = engine("rules: [{id: a, effect: allow, tools: [t], when: {arguments: {n: {in: [1]}}}}]")
    assert e.decide(ctx(args={"n": 1})).allowed
    assert e.decide(ctx(args={"n": 1.0})).allowed
    assert not e.decide(ctx(args={"n": True})).allowed


def test_unevaluable_condition_in_a_deny_rule_denies() -> None:
    e = engine(
        """
rules:
  - {id: a, effect: allow, tools: [t]}
  - {id: big, effect: deny, tools: [t], when: {arguments: {amount: {min: 1000}}}}
"""
    )
    assert e.decide(ctx(args={"amount": 5})).allowed
    absent = e.decide(ctx(args={}))  # absent: the tool's default could be anything
    assert (absent.effect, absent.rule, absent.reason_code) == (Effect.DENY, "big", "condition_unevaluable")
    decision = e.decide(ctx(args={"amount": {"value": 5000}}))
    assert (decision.effect, decision.rule, decision.reason_code) == (Effect.DENY, "big", "condition_unevaluable")


def test_time_windows_use_the_injected_time() -> None:
    e = engine(
        """
rules:
  - id: office-hours
    effect: allow
    tools: [t]
    when: {time: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00"}}
  - id: night
    effect: allow
    tools: [n]
    when: {time: {start: "22:00", end: "06:00"}}
  - id: campaign
    effect: allow
    tools: [c]
    when: {time: {after: "2025-01-01T00:00:00Z", before: "2025-02-01T00:00:00Z"}}
"""
    )

    def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
        return datetime(year, month, day, hour, minute, tzinfo=timezone.utc).timestamp()

    assert e.decide(ctx("t"), now=at(2025, 6, 2, 10, 0)).allowed  # a Monday
    assert not e.decide(ctx("t"), now=at(2025, 6, 2, 17, 0)).allowed
    assert not e.decide(ctx("t"), now=at(2025, 6, 1, 10, 0)).allowed  # a Sunday
    assert e.decide(ctx("n"), now=at(2025, 6, 1, 23, 30)).allowed
    assert e.decide(ctx("n"), now=at(2025, 6, 1, 5, 59)).allowed
    assert not e.decide(ctx("n"), now=at(2025, 6, 1, 12, 0)).allowed
    assert e.decide(ctx("c"), now=at(2025, 1, 15)).allowed
    assert not e.decide(ctx("c"), now=at(2025, 2, 1)).allowed


def test_history_conditions_read_the_snapshot() -> None:
    e = engine(
        """
rules:
  - {id: a, effect: allow, tools: [t]}
  - id: seq
    effect: deny
    tools: [t]
    unless: {history: {last_called: [prepare], not_called: ["resource:secret://x"]}}
"""
    )
    assert e.decide(ctx(), history=TaskHistory(last="tool:prepare")).allowed
    assert e.decide(ctx(), history=TaskHistory(last="tool:other")).rule == "seq"
    assert (
        e.decide(ctx(), history=TaskHistory(last="tool:prepare", called=frozenset({"resource:secret://x"}))).rule
        == "seq"
    )
    assert e.decide(ctx(), history=None).reason_code == "condition_unevaluable"
    needs = e.history_needs(ctx())
    assert needs.last and needs.targets == frozenset({"resource:secret://x"})
    assert not e.history_needs(ctx(action="discover"))


# Each history field: its condition, a history in which it holds, one in which it does not.
_HISTORY_CASES = [
    ("seen_labels: [pii]", TaskHistory(labels=frozenset({"pii"})), TaskHistory()),
    ("not_seen_labels: [pii]", TaskHistory(), TaskHistory(labels=frozenset({"pii"}))),
    ("called: [prepare]", TaskHistory(called=frozenset({"tool:prepare"})), TaskHistory()),
    ('not_called: ["resource:secret://x"]', TaskHistory(), TaskHistory(called=frozenset({"resource:secret://x"}))),
    ("last_called: [prepare]", TaskHistory(last="tool:prepare"), TaskHistory(last="tool:other")),
    ("calls_below: 3", TaskHistory(calls=2), TaskHistory(calls=3)),
    ("calls_at_least: 3", TaskHistory(calls=3), TaskHistory(calls=2)),
]


def test_every_history_field_has_a_case() -> None:
    from mcpgov.policy._model import HistoryCondition

    assert {case.split(":")[0] for case, _, _ in _HISTORY_CASES} == set(HistoryCondition.model_fields)


@pytest.mark.parametrize(("condition", "holds", "fails"), _HISTORY_CASES)
def test_each_history_condition_decides_on_its_own_field(
    condition: str, holds: TaskHistory, fails: TaskHistory
) -> None:
    e = engine(f"rules:\n  - {{id: h, effect: allow, tools: [t], when: {{history: {{{condition}}}}}}}\n")
    assert e.decide(ctx(), history=holds).allowed
    assert not e.decide(ctx(), history=fails).allowed
    assert e.decide(ctx(), history=None).reason_code == "condition_unevaluable"
    assert e.history_needs(ctx())


def test_allow_obligations_merge_strictest_first() -> None:
    e = engine(
        """
rules:
  - id: broad
    effect: allow
    tools: ["*"]
    obligations: {max_credential_ttl: 600, redact: [password], rate_limit: {limit: 100, per: 60}}
  - id: narrow
    effect: allow
    tools: [t]
    obligations: {max_credential_ttl: 60, bind_arguments: true, redact: [token]}
"""
    )
    decision = e.decide(ctx())
    assert decision.rule == "broad"
    ob = decision.obligations
    assert ob[OBLIGATION_MAX_CREDENTIAL_TTL] == 60.0
    assert ob[OBLIGATION_BIND_ARGUMENTS] is True
    assert ob[OBLIGATION_REDACT] == ("password", "token")
    assert ob[OBLIGATION_RATE_LIMIT] == (RateLimitSpec("broad", 100, 60.0, ("principal", "tool")),)
    assert (decision.engine, decision.policy_version) == ("policy", e.version)


def test_delegation_depth_and_purpose() -> None:
    e = engine("rules: [{id: a, effect: allow, tools: [t], when: {delegation_depth: {max: 1}, purposes: [support]}}]")
    one = Principal("https://idp", "s", actors=(Actor("alice"),))
    two = Principal("https://idp", "s", actors=(Actor("b"), Actor("alice")))
    assert e.decide(ctx(principal=one, purpose="support")).allowed
    assert not e.decide(ctx(principal=two, purpose="support")).allowed
    assert not e.decide(ctx(principal=one, purpose="other")).allowed
    assert not e.decide(ctx(principal=one)).allowed


def test_discovery_treats_arguments_and_history_as_unknown() -> None:
    e = engine(
        """
rules:
  - {id: a, effect: allow, tools: [t, u, w], when: {arguments: {p: {equals: x}}}}
  - {id: d-args, effect: deny, tools: [t], when: {arguments: {p: {equals: y}}}}
  - {id: d-hist, effect: deny, tools: [u], when: {history: {seen_labels: [s]}}}
  - {id: d-tenant, effect: deny, tools: [w], when: {tenants: [acme]}}
  - {id: only-list, effect: allow, tools: [v], actions: [discover]}
"""
    )
    assert e.decide(ctx("t", action="discover")).allowed
    assert e.decide(ctx("u", action="discover")).allowed
    assert e.decide(ctx("w", action="discover")).rule == "d-tenant"
    assert e.decide(ctx("v", action="discover")).allowed
    assert e.decide(ctx("v", args={})).rule == DEFAULT_DENY_RULE  # a discover-only allow never executes


def test_resource_globs_never_match_dot_segments_or_encoded_separators() -> None:
    e = engine("rules: [{id: docs, effect: allow, resources: ['docs://*']}]")
    assert e.decide(ctx("docs://a/b", kind="resource")).allowed
    for uri in ("docs://a/../../secret", "docs://%2e%2e/secret", "docs://a/./b", "docs://a\\b"):
        assert e.decide(ctx(uri, kind="resource")).rule == DEFAULT_DENY_RULE, uri


def test_explain_names_every_rule_about_the_target_and_why() -> None:
    e = engine(
        """
rules:
  - {id: reads, effect: allow, tools: [read], tenants: [acme], when: {arguments: {path: {path: {under: /data}}}}}
  - {id: globex, effect: allow, tools: [read], tenants: [globex]}
  - {id: scoped, effect: deny, tools: [read], unless: {scopes: [files]}}
"""
    )
    explanation = e.explain(ctx("read", {"path": "/data/x"}))
    assert explanation.decision == e.decide(ctx("read", {"path": "/data/x"}))
    assert explanation.decision.rule == "scoped"
    assert explanation.applied == ("reads", "scoped")
    text = str(explanation)
    assert "tenant 'acme' is not one of the rule's" in text
    assert "requirement not met: principal holds scopes ['files']" in text
    assert "deny overrides allow" in text
    assert "execute tool 'read' by https://idp#alice" in text
    bad = e.explain(ctx("read", {"path": 5}))
    assert (bad.decision.rule, bad.decision.reason_code) == ("scoped", "policy_deny")
    assert "when.arguments.path is unknown: expected a path string, got a number" in str(bad)


@pytest.mark.parametrize(
    ("value", "inside"),
    [
        ("/data", True),
        ("/data/a/b", True),
        ("/data/./a", True),
        ("/data//a", True),
        ("///data//a", None),  # two leading separators: a network share on Windows
        ("//data/a", None),
        ("\\\\data\\a", None),
        ("/DATA/a", None),  # the same directory on a case-insensitive file system
        ("/Data/a", None),
        ("/data./a", None),  # Windows drops trailing dots and spaces
        ("/data /a", None),
        ("/data::$DATA/a", None),  # a stream of /data on NTFS
        ("/DATA~1/a", None),  # may be a Windows short name
        ("/DATA-evil/a", False),
        ("/data/a%20b", True),
        ("/data/..", None),
        ("/data/a/../../etc", None),
        ("/data/a/../b", None),
        ("/data/%2e%2e/etc", None),
        ("/data/%252e%252e/etc", None),
        ("/data%2fa", None),
        ("/data-evil", False),
        ("/dat", False),
        ("/", False),
        ("data/a", None),
        ("/data\\..\\etc", None),
        ("/data/\x00", None),
        ("/data/%25252525252e", True),  # every decoding level is inside
    ],
)
def test_path_within_compares_canonical_paths(value: str, inside: bool | None) -> None:
    """True inside, False outside, None (unknown) when it cannot be canonicalised or spellings disagree."""
    assert path_within(value, ("/data",)) is inside


def test_relative_paths_resolve_against_the_root_only_when_allowed() -> None:
    assert path_within("a/b", ("/data",)) is None
    # A drive letter or a network share is absolute on Windows, never relative to the root.
    for value in ("C:\\secret", "c:/secret", "\\\\host\\share"):
        assert path_within(value, ("/data",), allow_relative=True) is None
    assert path_within("a/b", ("/data",), allow_relative=True) is True
    assert path_within("../etc", ("/data",), allow_relative=True) is None


@given(st.text(alphabet="/.%2eEfa\\", max_size=30))
def test_a_path_inside_the_root_never_normalises_outside_it(value: str) -> None:
    import posixpath
    from urllib.parse import unquote

    if path_within(value, ("/data",)) is True:
        for form in (value, unquote(value), unquote(unquote(value))):
            norm = posixpath.normpath("/" + form.lstrip("/"))
            assert norm == "/data" or norm.startswith("/data/")
            assert ".." not in form.split("/")


def test_only_a_segment_shaped_as_a_windows_short_name_is_unknown_as_one() -> None:
    for value in ("/DATA~1/a", "/PROGRA~1/a", "/SECRE~12.TXT"):
        assert path_within(value, ("/data",)) is None
    for value in ("/data/notes.txt~1", "/data/a~b", "/data/backup~"):
        assert path_within(value, ("/data",)) is True
