"""Policy that cannot be walked around: unknown conditions deny, paths are judged in every
spelling a tool could act on, regexes run in linear time, approvals carry their obligations.

Every attack goes through a real session in both protocol modes and checks that nothing ran.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Effect, GovContext, Principal, govern
from mcpgov.approval import ApprovalMiddleware, CallbackApprover
from mcpgov.policy import Policy, PolicyEngine, PolicyError, PolicyMiddleware, canonical_path, path_within
from mcpgov.testing import InMemoryAuditSink

from .policies.support import LookupIdentity, as_

pytestmark = pytest.mark.anyio

DENY_SECRET = """
rules:
  - {id: everything, effect: allow, tools: ["*"]}
  - id: no-secret
    effect: deny
    tools: [read_file]
    when: {arguments: {path: {path: {under: [/secret]}}}}
"""

ALLOW_DATA = """
rules:
  - id: data-only
    effect: allow
    tools: [read_file]
    when: {arguments: {path: {path: {under: [/data]}}}}
"""


class Files:
    """A governed server whose ``read_file`` takes any JSON value, so the policy sees every type."""

    def __init__(self, policy: str, **policy_options: Any) -> None:
        self.server = MCPServer("files")
        self.ran: list[Any] = []
        self.sink = InMemoryAuditSink()

        @self.server.tool()
        def read_file(path: Any) -> str:
            self.ran.append(path)
            return "contents"

        @self.server.tool()
        def run(command: Any) -> str:
            self.ran.append(command)
            return "ran"

        self.policy = PolicyMiddleware(Policy.from_yaml(policy), **policy_options)
        govern(self.server, LookupIdentity(), self.policy, audit=self.sink)


async def _refused(client: Client, tool: str, arguments: dict[str, Any]) -> MCPError:
    with pytest.raises(MCPError) as info:
        await client.call_tool(tool, arguments, meta=as_("alice"))
    return info.value


# Spellings that reach /secret for some tool: traversal, percent (single, double, triple), overlong
# UTF-8, backslashes, NFKC forms (two-dot leader, one-dot leader, fullwidth dot/slash/percent),
# best-fit look-alikes (division slash, yen sign), NUL, relative paths.
INTO_SECRET = [
    "/secret",
    "/secret/",
    "/secret/payroll",
    "//secret//payroll",
    "/./secret/./payroll",
    "/data/../secret/payroll",
    "/data/%2e%2e/secret/payroll",
    "/data/%2E%2E/secret/payroll",
    "/data/%252e%252e/secret/payroll",
    "/data/%25252e%25252e/secret/payroll",
    "%2fsecret%2fpayroll",
    "%252fsecret%252fpayroll",
    "/data/..%2fsecret",
    "/data/..%5csecret",
    "/data/%c0%ae%c0%ae/secret",
    "/data/%e0%80%ae%e0%80%ae/secret",
    "\\secret\\payroll",
    "/data\\..\\secret\\payroll",
    "/data/..\\secret",
    "/data/\u2025/secret/payroll",
    "/data/%e2%80%a5/secret/payroll",
    "/data/\u2024\u2024/secret/payroll",
    "/data/\uff0e\uff0e/secret/payroll",
    "\uff0fsecret\uff0fpayroll",
    "/data\uff0f..\uff0fsecret",
    "/data/\uff052e\uff052e/secret",
    "/data/..\u2215secret",
    "/data/..\u2044secret",
    "/data/..\u00a5secret",
    "/data/..\uff3csecret",
    "/data/x\x00/../../secret",
    "/secret\x00.txt",
    "secret/payroll",
    "../secret/payroll",
    "/SECRET/payroll",
    "/Secret/payroll",
    "/secret./payroll",
    "/secret /payroll",
    "/secret::$DATA/payroll",
    "/SECRET~1/payroll",
    "//data//x",
    "\\\\secret\\payroll",
    "~/../../secret",
    "",
]

OUTSIDE_SECRET = [
    "/data/x",
    "/data/a%20b",
    "/data//x",
    "/data/./x",
    "/secretary/x",
    "/data/secret",
    "/srv/\u00e9t\u00e9",
]


@pytest.mark.parametrize("path", INTO_SECRET)
async def test_deny_under_a_root_refuses_every_spelling_that_may_reach_it(path: str, mode: str) -> None:
    files = Files(DENY_SECRET)
    async with Client(files.server, mode=mode) as client:
        error = await _refused(client, "read_file", {"path": path})
    assert error.code == -32003
    assert files.ran == []
    (decision,) = files.sink.decisions()
    assert (decision.effect, decision.rule) == ("deny", "no-secret")


@pytest.mark.parametrize("value", [3, 2.5, True, None, ["/secret"], {"path": "/secret"}, "x" * 20_000])
async def test_deny_rule_on_a_value_it_cannot_judge_applies(value: Any, mode: str) -> None:
    files = Files(DENY_SECRET)
    async with Client(files.server, mode=mode) as client:
        error = await _refused(client, "read_file", {"path": value})
    assert error.code == -32003
    assert files.ran == []
    (decision,) = files.sink.decisions()
    assert (decision.rule, decision.reason) == ("no-secret", "condition_unevaluable")


@pytest.mark.parametrize("path", OUTSIDE_SECRET)
async def test_paths_clearly_outside_the_denied_root_still_run(path: str, mode: str) -> None:
    files = Files(DENY_SECRET)
    async with Client(files.server, mode=mode) as client:
        result = await client.call_tool("read_file", {"path": path}, meta=as_("alice"))
    assert result.is_error is False
    assert files.ran == [path]


# Spellings that leave /data for some tool (NFKC, best-fit, decoding, separators).
OUT_OF_DATA = [
    "/data/\u2025/etc/passwd",
    "/data/\u2025\uff0fetc",
    "/data/\uff0e\uff0e/etc/passwd",
    "/data\uff0f..\uff0fetc",
    "/data/\u2024\u2024/etc",
    "/data/%e2%80%a5/etc",
    "/data/%ef%bc%8e%ef%bc%8e/etc",
    "/data/..\\etc",
    "/data\\..\\etc",
    "/data/x/%2e%2e/%2e%2e/etc",
    "/data/%252e%252e/etc",
    "/data%2f..%2fetc",
    "/data/..\u2215etc",
    "/data/%c0%ae%c0%ae/etc",
    "/data/x\x00",
    "/data-evil/x",
    "/dat\uff41/x",
    "data/x",
    "/etc/passwd",
]


@pytest.mark.parametrize("path", OUT_OF_DATA)
async def test_allow_under_a_root_refuses_spellings_that_may_leave_it(path: str, mode: str) -> None:
    files = Files(ALLOW_DATA)
    async with Client(files.server, mode=mode) as client:
        error = await _refused(client, "read_file", {"path": path})
    assert error.code == -32003
    assert files.ran == []


@pytest.mark.parametrize("path", ["/data", "/data/x", "/data/a%20b", "/data/r\u00e9sum\u00e9.pdf", "/data/\uff41"])
async def test_allow_under_a_root_admits_paths_inside_it_in_every_spelling(path: str, mode: str) -> None:
    files = Files(ALLOW_DATA)
    async with Client(files.server, mode=mode) as client:
        result = await client.call_tool("read_file", {"path": path}, meta=as_("alice"))
    assert result.is_error is False
    assert files.ran == [path]


def test_canonical_path_is_decoded_normalised_and_resolved_once() -> None:
    assert canonical_path("/data/%2561") == "/data/a"
    assert canonical_path("\uff0fdata\uff0f.\uff0fx") == "/data/x"
    assert canonical_path("/data\\x//y/./") == "/data/x/y"
    for bad, why in (
        ("/data/\u2025/x", "'..'"),
        ("/data/%c0%ae", "not UTF-8"),
        ("/a\x00b", "NUL"),
        ("a/b", "relative"),
        ("/%" + "25" * 40 + "61", "encoding levels"),
        ("/" + "a" * 5000, "longer than"),
    ):
        with pytest.raises(ValueError, match=why):
            canonical_path(bad)


@given(st.text(alphabet="/.%25aefcEF\\\u2025\u2024\uff0e\uff0f\u2215\x00~", max_size=24))
@settings(max_examples=400)
def test_a_path_judged_inside_is_inside_in_every_spelling(value: str) -> None:
    """True means inside for the raw value, each decoding level and its NFKC form."""
    import unicodedata
    from urllib.parse import unquote

    if path_within(value, ("/data",)) is not True:
        return
    forms = {value}
    current = value
    for _ in range(10):
        current = unquote(current)
        forms |= {current, unicodedata.normalize("NFKC", current)}
    for form in forms:
        for spelling in (form, form.replace("\\", "/")):
            parts = [p for p in spelling.split("/") if p not in ("", ".")]
            assert ".." not in parts
            assert "\x00" not in spelling
            assert spelling.startswith("/")
            assert parts[:1] == ["data"]


# -- glob on paths, regex ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        "rules: [{id: a, effect: allow, tools: [t], when: {arguments: {p: {path: {under: /d}, glob: '/d/*'}}}}]",
        """
rules:
  - {id: a, effect: allow, tools: [t], when: {arguments: {p: {path: {under: /d}}}}}
  - {id: b, effect: deny, tools: [u], when: {arguments: {p: {glob: '/secret/*'}}}}
""",
        """
rules:
  - {id: a, effect: deny, tools: [t], unless: {arguments: {p: {path: {under: /d}}}}}
  - {id: b, effect: allow, tools: [t], when: {arguments: {p: {glob: '/d/*'}}}}
""",
    ],
)
def test_glob_on_a_path_argument_is_refused_at_load_pointing_to_path(policy: str) -> None:
    with pytest.raises(PolicyError, match=r"glob on .*path.*use path: \{under") as info:
        Policy.from_yaml(policy, source="p.yaml")
    assert "p.yaml" in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a)\\1", "invalid escape"),
        ("(?<=a)b", "invalid perl operator"),
        ("(?=a)", "invalid perl operator"),
        ("(?P<x>a)(?P=x)", ""),
        ("a{1001}", "repetition"),
        ("(", "missing"),
    ],
)
def test_patterns_re2_cannot_run_in_linear_time_are_refused_at_load(pattern: str, reason: str) -> None:
    text = "rules: [{id: r, effect: allow, tools: [t], when: {arguments: {n: {regex: %s}}}}]"
    import json

    with pytest.raises(PolicyError, match="refused by RE2") as info:
        Policy.from_yaml(text % json.dumps(pattern), source="re.yaml")
    assert "re.yaml" in str(info.value)
    assert "rule 'r'" in str(info.value)
    assert reason in str(info.value)


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|a)*$", "(a|aa)+b", "(.*a){20}", "(x+x+)+y", "^(\\w+\\s?)*$"])
async def test_a_backtracking_pattern_cannot_stall_the_server(pattern: str, mode: str) -> None:
    import json

    policy = f"""
rules:
  - {{id: everything, effect: allow, tools: ["*"]}}
  - {{id: weird, effect: deny, tools: [run], when: {{arguments: {{command: {{regex: {json.dumps(pattern)}}}}}}}}}
"""
    files = Files(policy)
    hostile = "a" * 25 + "!" if "\\w" not in pattern else "a " * 30 + "!"
    async with Client(files.server, mode=mode) as client:
        start = time.perf_counter()
        for value in (hostile, "x" * 30 + "!", hostile * (16_000 // len(hostile))):  # up to the size bound
            result = await client.call_tool("run", {"command": value}, meta=as_("alice"))
            assert result.is_error is False
        elapsed = time.perf_counter() - start
    assert elapsed < 5.0  # a backtracking engine takes minutes on these inputs
    assert len(files.ran) == 3


# -- Unicode look-alikes in string operators ------------------------------------------------------


@pytest.mark.parametrize("value", ["\uff52\uff4d", "r\uff4d", "\u24e1\u24dc", "\U0001d42b\U0001d426"])
async def test_a_deny_on_a_string_also_applies_to_its_nfkc_look_alikes(value: str, mode: str) -> None:
    policy = """
rules:
  - {id: everything, effect: allow, tools: ["*"]}
  - {id: no-rm, effect: deny, tools: [run], when: {arguments: {command: {in: [rm, shutdown]}}}}
  - {id: no-rm-glob, effect: deny, tools: [run], when: {arguments: {command: {glob: ["rm*"]}}}}
  - {id: no-rm-re, effect: deny, tools: [run], when: {arguments: {command: {regex: "rm.*"}}}}
"""
    files = Files(policy)
    async with Client(files.server, mode=mode) as client:
        error = await _refused(client, "run", {"command": value})
    assert error.code == -32003
    assert files.ran == []
    (decision,) = files.sink.decisions()
    assert decision.reason == "condition_unevaluable"


async def test_an_allow_list_does_not_admit_nfkc_look_alikes(mode: str) -> None:
    policy = "rules: [{id: ls, effect: allow, tools: [run], when: {arguments: {command: {in: [ls], not_in: [rm]}}}}]"
    files = Files(policy)
    async with Client(files.server, mode=mode) as client:
        for value in ("\uff4c\uff53", "\u24db\u24e2"):
            await _refused(client, "run", {"command": value})
        assert (await client.call_tool("run", {"command": "ls"}, meta=as_("alice"))).is_error is False
    assert files.ran == ["ls"]


def test_explain_names_the_unknown_condition_and_why() -> None:
    engine = PolicyEngine(Policy.from_yaml(DENY_SECRET))
    ctx = GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="read_file",
        arguments={"path": "/data/\u2025/secret"},
        principal=Principal("https://idp", "alice", tenant="acme"),
        tenant="acme",
    )
    explanation = engine.explain(ctx)
    assert (explanation.decision.rule, explanation.decision.reason_code) == ("no-secret", "condition_unevaluable")
    text = str(explanation)
    assert "when.arguments.path is unknown" in text
    assert "'..' segment" in text
    assert "counts as matching" in text
    assert "uncertainty only ever denies" in text


# -- uncertainty never loosens a decision ---------------------------------------------------------

_STRICTNESS = {Effect.ALLOW: 0, Effect.REQUIRE_APPROVAL: 1, Effect.DENY: 2}
_CONDITIONS = ("c0", "c1", "c2")
_UNKNOWN = "not a number"


@st.composite
def _policies(draw: st.DrawFn) -> str:
    rules = []
    for i in range(draw(st.integers(1, 5))):
        effect = draw(st.sampled_from(["allow", "deny", "require_approval"]))
        when = draw(st.lists(st.sampled_from(_CONDITIONS), max_size=2, unique=True))
        unless = draw(st.lists(st.sampled_from(_CONDITIONS), max_size=2, unique=True)) if effect == "deny" else []
        rule = f"  - id: r{i}\n    effect: {effect}\n    tools: [t]\n"
        if when:
            rule += "    when: {arguments: {" + ", ".join(f"{c}: {{min: 1}}" for c in when) + "}}\n"
        if unless:
            rule += "    unless: {arguments: {" + ", ".join(f"{c}: {{min: 1}}" for c in unless) + "}}\n"
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


@given(_policies(), st.fixed_dictionaries({c: st.sampled_from([0, 1, _UNKNOWN]) for c in _CONDITIONS}))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_uncertainty_never_turns_a_deny_into_an_allow(policy: str, arguments: dict[str, Any]) -> None:
    """With unknown conditions, the decision is at least as strict as under every way of resolving them."""
    engine = PolicyEngine(Policy.from_yaml(policy))
    decided = engine.decide(_ctx(arguments)).effect
    unknown = [c for c, v in arguments.items() if v == _UNKNOWN]
    strictest = 0
    for resolution in itertools.product((0, 1), repeat=len(unknown)):
        resolved = {**arguments, **dict(zip(unknown, resolution, strict=True))}
        strictest = max(strictest, _STRICTNESS[engine.decide(_ctx(resolved)).effect])
    assert _STRICTNESS[decided] >= strictest
    if not unknown:
        assert _STRICTNESS[decided] == strictest


@given(st.sampled_from([*INTO_SECRET, 3, None, ["x"]]), st.sampled_from(["auto", "legacy"]))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_uncertain_paths_never_run_under_a_deny_through_sessions(value: Any, protocol: str) -> None:
    files = Files(DENY_SECRET)
    async with Client(files.server, mode=protocol) as client:
        await _refused(client, "read_file", {"path": value})
    assert files.ran == []


# -- obligations on every path to an allow ---------------------------------------------------------


async def test_rate_limit_on_an_approval_rule_limits_approved_calls(mode: str) -> None:
    policy = """
rules:
  - id: deploys
    effect: require_approval
    tools: [run]
    obligations: {rate_limit: {limit: 2, per: 3600}, redact: [command]}
"""
    files_server = MCPServer("deploy")
    ran: list[str] = []
    sink = InMemoryAuditSink()

    @files_server.tool()
    def run(command: str) -> str:
        ran.append(command)
        return "ok"

    approvals: list[str] = []

    def approve(request: Any) -> bool:
        approvals.append(request.target)
        return True

    govern(
        files_server,
        LookupIdentity(),
        ApprovalMiddleware(CallbackApprover(approve, name="ops")),
        PolicyMiddleware(Policy.from_yaml(policy)),
        audit=sink,
    )
    async with Client(files_server, mode=mode) as client:
        for n in range(2):
            result = await client.call_tool("run", {"command": f"v{n}"}, meta=as_("alice"))
            assert result.is_error is False
        with pytest.raises(MCPError):
            await client.call_tool("run", {"command": "v2"}, meta=as_("alice"))
    assert ran == ["v0", "v1"]
    refusal = [e for e in sink.decisions() if e.effect == "deny"]
    assert [(e.rule, e.reason) for e in refusal] == [("deploys", "rate_limited")]


def test_approval_carries_the_obligations_of_every_applying_rule() -> None:
    engine = PolicyEngine(
        Policy.from_yaml(
            """
rules:
  - {id: base, effect: allow, tools: [t], obligations: {max_credential_ttl: 30, redact: [a]}}
  - {id: gate, effect: require_approval, tools: [t], obligations: {max_credential_ttl: 300, redact: [b]}}
"""
        )
    )
    decision = engine.decide(_ctx({}))
    assert (decision.effect, decision.rule) == (Effect.REQUIRE_APPROVAL, "gate")
    assert decision.obligations["max_credential_ttl"] == 30
    assert decision.obligations["redact"] == ("a", "b")


def test_an_unknown_approval_rule_asks_for_approval_but_never_grants_alone() -> None:
    engine = PolicyEngine(
        Policy.from_yaml(
            """
rules:
  - {id: base, effect: allow, tools: [t], when: {arguments: {c0: {min: 1}}}}
  - {id: big, effect: require_approval, tools: [t], when: {arguments: {amount: {min: 1000}}}}
"""
        )
    )
    unsure = engine.decide(_ctx({"c0": 1, "amount": "lots"}))
    assert (unsure.effect, unsure.rule) == (Effect.REQUIRE_APPROVAL, "big")
    assert "amount is unknown" in unsure.reason
    alone = engine.decide(_ctx({"c0": 0, "amount": "lots"}))
    assert alone.effect is Effect.DENY
    assert engine.decide(_ctx({"c0": 1, "amount": 5})).effect is Effect.ALLOW


@given(st.text(alphabet="ab*?[]!-/.\\^&~|", max_size=9), st.text(alphabet="ab/.-!^[]\\\n&", max_size=8))
@settings(max_examples=1000)
def test_globs_run_on_re2_with_exactly_fnmatch_semantics(pattern: str, value: str) -> None:
    import fnmatch

    from mcpgov.policy._regex import compile_regex, glob_to_regex

    compiled = compile_regex(glob_to_regex(pattern))
    assert (compiled.fullmatch(value) is not None) == fnmatch.fnmatchcase(value, pattern)


# -- listings decide every condition they can know exactly as calls do ----------------------------

_PURPOSES = ("audit", "support", None)
_TENANTS = ("acme", "globex")


@st.composite
def _context_policies(draw: st.DrawFn) -> str:
    """Rules over conditions a listing carries (tenant, purpose, scopes, history inside a task)."""
    rules = []
    for i in range(draw(st.integers(1, 4))):
        effect = draw(st.sampled_from(["allow", "deny", "require_approval"]))
        when: list[str] = []
        if draw(st.booleans()):
            when.append(f"purposes: [{draw(st.sampled_from(['audit', 'support']))}]")
        if draw(st.booleans()):
            when.append(f"tenants: [{draw(st.sampled_from(_TENANTS))}]")
        if draw(st.booleans()):
            when.append("scopes: [files]")
        if draw(st.booleans()):
            when.append(f"history: {{{draw(st.sampled_from(['seen_labels', 'not_seen_labels']))}: [sensitive]}}")
        block = f"    when: {{{', '.join(when)}}}\n" if when else ""
        rules.append(f"  - id: r{i}\n    effect: {effect}\n    tools: [t]\n{block}")
    return "labels: {sensitive: {tools: [s]}}\nrules:\n" + "".join(rules)


@given(
    _context_policies(),
    st.sampled_from(_PURPOSES),
    st.sampled_from(_TENANTS),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=300)
def test_a_listing_shows_a_tool_exactly_when_a_call_would_not_be_denied(
    policy: str, purpose: str | None, tenant: str, scoped: bool, seen: bool
) -> None:
    from mcpgov.policy._history import TaskHistory

    engine = PolicyEngine(Policy.from_yaml(policy))
    principal = Principal("https://idp", "alice", tenant=tenant, claims={"scope": "files"} if scoped else {})
    base = GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="t",
        arguments={},
        principal=principal,
        tenant=tenant,
        purpose=purpose,
        task_id="task-1",
    )
    history = TaskHistory(labels=frozenset({"sensitive"}) if seen else frozenset())
    listing = base.for_discovery("tool", "t")
    assert listing.task_id == "task-1" and listing.purpose == purpose
    assert engine.history_needs(listing) == engine.history_needs(base)
    called = engine.decide(base, history=history).effect
    listed = engine.decide(listing, history=history).effect
    assert (listed is not Effect.DENY) == (called is not Effect.DENY)


# -- resource URIs --------------------------------------------------------------------------------

RESOURCE_POLICY = """
labels:
  sensitive: {resources: ["secret://payroll*"]}
rules:
  - {id: everything, effect: allow, resources: ["*"]}
  - {id: no-payroll, effect: deny, resources: ["secret://payroll*"]}
"""


@pytest.mark.parametrize(
    "uri",
    [
        "secret://payroll",
        "secret://pay%72oll",
        "secret://%70ayroll/2025",
        "secret://pay%2572oll",
        "secret://\uff50ayroll",
        "secret://payr\u2134ll",
    ],
)
def test_a_resource_deny_glob_matches_every_spelling_of_the_uri(uri: str) -> None:
    engine = PolicyEngine(Policy.from_yaml(RESOURCE_POLICY))
    ctx = GovContext(
        side="server",
        method="resources/read",
        kind="resource",
        target=uri,
        principal=Principal("https://idp", "alice", tenant="acme"),
        tenant="acme",
    )
    decision = engine.decide(ctx)
    assert (decision.effect, decision.rule) == (Effect.DENY, "no-payroll"), uri
    assert engine.labels_for("resource", uri) == frozenset({"sensitive"})


def test_a_resource_allow_glob_needs_every_spelling_to_match() -> None:
    engine = PolicyEngine(Policy.from_yaml("rules: [{id: docs, effect: allow, resources: ['docs://*']}]"))
    principal = Principal("https://idp", "alice", tenant="acme")
    for uri, allowed in (("docs://a", True), ("docs://a%20b", True), ("docs:%2f%2fa", False), ("docs://%ff", False)):
        ctx = GovContext(
            side="server", method="resources/read", kind="resource", target=uri, principal=principal, tenant="acme"
        )
        assert engine.decide(ctx).allowed is allowed, uri


@pytest.mark.parametrize("name", ["payroll", "pay%72oll", "pay%2572oll", "\uff50ayroll", "%70ayroll"])
async def test_a_resource_deny_holds_for_every_spelling_through_sessions(name: str, mode: str) -> None:
    server = MCPServer("records")
    read: list[str] = []
    sink = InMemoryAuditSink()

    @server.resource("secret://{name}")
    def secret(name: str) -> str:
        read.append(name)
        return "contents"

    policy = PolicyMiddleware(Policy.from_yaml(RESOURCE_POLICY))
    govern(server, LookupIdentity(), policy, audit=sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as info:
            await client.read_resource(f"secret://{name}", meta=as_("alice"))
        # A non-canonical URI is refused before any decision (-32602); the canonical one by the rule.
        assert info.value.code == (-32003 if name == "payroll" else -32602)
        assert (await client.read_resource("secret://holidays", meta=as_("alice"))).contents
    assert read == ["holidays"]
    refused = [e for e in sink.decisions() if e.effect == "deny"]
    assert [e.rule for e in refused] == ["no-payroll" if name == "payroll" else "mcpgov:invalid_request"]
