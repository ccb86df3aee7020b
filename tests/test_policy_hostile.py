"""Hostile policy files: refused with a PolicyError naming the problem; a reload keeps the last good
policy and records ``policy.reload_failed``; the watcher outlives anything a reload meets."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError

from mcpgov import Effect, GovContext, Principal
from mcpgov.policy import Policy, PolicyEngine, PolicyError, PolicyMiddleware
from mcpgov.policy._load import MAX_POLICY_BYTES, MAX_POLICY_DEPTH
from mcpgov.testing import InMemoryAuditSink

from .policies.support import as_, build_file_server

pytestmark = pytest.mark.anyio

GOOD = "rules:\n  - {id: reads, effect: allow, tools: [read_file]}\n"
OTHER = "rules:\n  - {id: searches, effect: allow, tools: [search]}\n"


def _bomb(levels: int, fan: int = 10) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * fan) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]" for i in range(1, levels)]
    lines.append(f"rules: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def _deep_alias() -> str:
    # Each level is shallow in the text, but aliases nest: depth grows with every level.
    lines = ["x0: &x0 [[[[1]]]]"]
    lines += [f"x{i}: &x{i} [[[[*x{i - 1}]]]]" for i in range(1, 40)]
    return "\n".join(lines) + "\nrules: []\n"


HOSTILE_YAML: dict[str, tuple[str, str]] = {
    "flow-sequences": ("rules: " + "[" * 20_000 + "]" * 20_000, "nesting"),
    "flow-mappings": ("rules: " + "{a: " * 5_000 + "1" + "}" * 5_000, "nesting"),
    "block-lists": ("rules:\n" + "".join(" " * i + "- \n" for i in range(300)), "nesting"),
    "block-mappings": ("".join(" " * i + "k:\n" for i in range(300)) + " " * 300 + "v", "nesting"),
    "billion-laughs": (_bomb(9), "alias"),
    "alias-depth": (_deep_alias(), "nesting"),
    "recursive-alias": ("a: &a [*a]\nrules: []\n", "nesting"),
    "deep-inside-a-rule": (
        "rules: [{id: r, effect: allow, tools: [t], when: {arguments: {a: {in: " + "[" * 100 + "]" * 100 + "}}}}]",
        "nesting",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_YAML))
def test_hostile_yaml_is_one_policy_error_naming_the_problem(name: str) -> None:
    text, problem = HOSTILE_YAML[name]
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(text, source=f"{name}.yaml")
    message = str(info.value)
    assert message.startswith(f"{name}.yaml: ")
    assert problem in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"rules": ' + "[" * 100_000 + "]" * 100_000 + "}", "nesting deeper"),
        ('{"rules": ' + "[" * 200 + "]" * 200 + "}", "nesting deeper"),
        ('{"rules": [], "x": ' + "{" * 70 + '"a": 1' + "}" * 70 + "}", "invalid JSON"),
        ('{"rules": ' + '{"a": ' * 100 + "1" + "}" * 100 + "}", "nesting deeper"),
    ],
)
def test_hostile_json_is_one_policy_error_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(PolicyError, match=problem) as info:
        Policy.from_json(text, source="p.json")
    assert str(info.value).startswith("p.json: ")


def test_oversized_policies_are_refused_before_parsing(tmp_path: Path) -> None:
    huge = "#" * (MAX_POLICY_BYTES + 1)
    with pytest.raises(PolicyError, match="exceeds"):
        Policy.from_yaml(huge)
    path = tmp_path / "huge.yaml"
    path.write_text(huge)
    with pytest.raises(PolicyError, match=r"huge\.yaml: policy file exceeds"):
        Policy.from_file(path)


def test_nesting_up_to_the_limit_loads() -> None:
    nested = "[" * (MAX_POLICY_DEPTH - 8) + "1" + "]" * (MAX_POLICY_DEPTH - 8)
    text = json.dumps({"rules": [], "labels": {}}).replace('"labels": {}', f'"name": "x", "x-unused": {nested}')
    with pytest.raises(PolicyError, match="x-unused"):  # an unknown field, not a depth error
        Policy.from_json(text)


@pytest.mark.parametrize("name", ["billion-laughs", "flow-sequences", "recursive-alias", "alias-depth"])
async def test_reload_of_a_hostile_file_keeps_the_last_good_policy(tmp_path: Path, name: str, mode: str) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(GOOD)
    fs = build_file_server(policy_file)
    good = fs.policy.version
    async with Client(fs.server, mode=mode) as client:
        policy_file.write_text(HOSTILE_YAML[name][0])
        assert await fs.policy.reload() is False
        assert await fs.policy.check_for_changes() is False  # the same broken content is not retried
        assert fs.policy.version == good
        assert (await client.call_tool("read_file", {"path": "/x"}, meta=as_("alice"))).is_error is False
        with pytest.raises(MCPError):
            await client.call_tool("search", {"query": "q"}, meta=as_("alice"))
    (event,) = fs.sink.of_type("policy.reload_failed")
    assert (event.outcome, event.reason, event.policy_version) == ("failed", "reload_failed", good)
    assert str(policy_file) in (event.detail or "")
    assert fs.sink.of_type("policy.reloaded") == []


async def test_reload_survives_unexpected_errors_while_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = InMemoryAuditSink()
    mw = PolicyMiddleware(Policy.from_yaml(GOOD), audit=sink)
    good = mw.version
    policy_file = tmp_path / "other.yaml"
    policy_file.write_text(OTHER)

    def explode(*_args: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("mcpgov.policy._reload.load_policy", explode)
    monkeypatch.setattr("mcpgov.policy._reload.load_file_content", explode)
    assert await mw.reload(Policy.from_yaml(OTHER)) is False
    assert await mw.reload(policy_file) is False
    assert mw.version == good
    assert [event.detail for event in sink.of_type("policy.reload_failed")] == [
        "RecursionError while loading the policy"
    ] * 2


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("the watcher did not reload within 5 seconds")


class Boom(BaseException):
    """Not an Exception: escapes ``except Exception``."""


def _raising(exc: Callable[[], BaseException]) -> Callable[[object], None]:
    def sink(_event: object) -> None:
        raise exc()

    return sink


@pytest.mark.parametrize("exc", [Boom, RuntimeError, asyncio.CancelledError, GeneratorExit])
async def test_the_watcher_survives_anything_a_reload_meets(tmp_path: Path, exc: type[BaseException]) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(GOOD)
    mw = PolicyMiddleware(policy_file, audit=_raising(exc))
    first = mw.version
    async with anyio.create_task_group() as tg:
        tg.start_soon(mw.watch, 0.01)
        policy_file.write_text(HOSTILE_YAML["billion-laughs"][0])
        await anyio.sleep(0.1)
        assert mw.version == first
        policy_file.write_text(OTHER)
        await _until(lambda: mw.version != first)
        second = mw.version
        policy_file.write_text(GOOD)
        await _until(lambda: mw.version != second)
        tg.cancel_scope.cancel()
    assert mw.version == first


async def test_the_watcher_survives_a_load_that_raises_a_base_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(GOOD)
    mw = PolicyMiddleware(policy_file)
    calls: list[int] = []
    real = mw.check_for_changes

    async def flaky() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise Boom
        return await real()

    monkeypatch.setattr(mw, "check_for_changes", flaky)
    policy_file.write_text(OTHER)
    first = mw.version
    async with anyio.create_task_group() as tg:
        tg.start_soon(mw.watch, 0.01)
        await _until(lambda: mw.version != first)
        tg.cancel_scope.cancel()
    assert len(calls) >= 3


async def test_the_watcher_still_stops_when_cancelled(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(GOOD)
    mw = PolicyMiddleware(policy_file)
    with anyio.move_on_after(0.1) as scope:
        await mw.watch(0.01)
    assert scope.cancelled_caught


# -- names spelled differently: purposes and tenants ----------------------------------------------

NAME_SPELLINGS = (
    "Marketing",
    "MARKETING",
    "\uff4d\uff41\uff52\uff4b\uff45\uff54\uff49\uff4e\uff47",  # fullwidth
    "marketing ",
    " marketing",
    "marketing\u200b",  # zero-width space
    "mar\u00adketing",  # soft hyphen
    "m\u0430rketing",  # Cyrillic a
    "\uff4darketing",  # one fullwidth letter
    "marketin\u0261",  # Latin small script g
)

PURPOSE_POLICY = """
rules:
  - {id: mail, effect: allow, tools: [send_email]}
  - {id: no-marketing-mail, effect: deny, tools: [send_email], when: {purposes: [marketing]}}
"""


@pytest.mark.parametrize("purpose", NAME_SPELLINGS)
async def test_a_deny_on_a_purpose_applies_to_every_spelling_of_it(purpose: str, mode: str) -> None:
    fs = build_file_server(Policy.from_yaml(PURPOSE_POLICY, source="p.yaml"))
    email = {"to": "a@acme.example", "body": "b"}
    async with Client(fs.server, mode=mode) as client:
        assert (await client.call_tool("send_email", email, meta=as_("alice", purpose="support"))).is_error is False
        with pytest.raises(MCPError) as caught:
            await client.call_tool("send_email", email, meta=as_("alice", purpose=purpose))
        assert caught.value.code == -32003
    assert fs.ran == ["send_email:a@acme.example"]
    denied = fs.sink.decisions()[-1]
    assert denied.rule == "no-marketing-mail"
    assert denied.reason == "condition_unevaluable"


def _tenant_ctx(tenant: str, purpose: str | None = None) -> GovContext:
    return GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="t",
        action="execute",
        arguments=MappingProxyType({}),
        principal=Principal("https://idp", "alice", tenant=tenant),
        tenant=tenant,
        purpose=purpose,
    )


@pytest.mark.parametrize("spelling", [s.replace("marketing", "evil") for s in NAME_SPELLINGS if "marketing" in s])
@pytest.mark.parametrize(
    "deny",
    [
        "{id: d, effect: deny, tools: [t], tenants: [evil]}",
        "{id: d, effect: deny, tools: [t], when: {tenants: [evil]}}",
        "{id: d, effect: deny, tools: [t], unless: {tenants: [good]}}",
    ],
)
def test_a_deny_scoped_to_a_tenant_applies_to_every_spelling_of_it(spelling: str, deny: str) -> None:
    engine = PolicyEngine(Policy.from_yaml(f"rules:\n  - {{id: a, effect: allow, tools: [t]}}\n  - {deny}\n"))
    decision = engine.decide(_tenant_ctx(spelling))
    assert decision.effect is Effect.DENY
    assert decision.rule == "d"
    assert "tenant" in str(engine.explain(_tenant_ctx(spelling)))


@pytest.mark.parametrize("spelling", ["ACME", "\uff41\uff43\uff4d\uff45", "acme ", "acme\u200b"])
def test_an_allow_for_a_tenant_admits_only_its_exact_spelling(spelling: str) -> None:
    engine = PolicyEngine(
        Policy.from_yaml(
            "rules:\n  - {id: a, effect: allow, tools: [t], tenants: [acme]}\n"
            "  - {id: b, effect: allow, tools: [t], when: {tenants: [acme], purposes: [support]}}\n"
        )
    )
    assert engine.decide(_tenant_ctx("acme")).effect is Effect.ALLOW
    assert engine.decide(_tenant_ctx(spelling, "support")).effect is Effect.DENY
    assert engine.decide(_tenant_ctx("acme", "Support")).rule == "a"


def test_other_names_are_not_affected() -> None:
    engine = PolicyEngine(
        Policy.from_yaml(
            "rules:\n  - {id: a, effect: allow, tools: [t]}\n"
            "  - {id: d, effect: deny, tools: [t], tenants: [evil], when: {purposes: [marketing]}}\n"
        )
    )
    for tenant, purpose in (("evilcorp", "marketing"), ("evil", "marketing-research"), ("devil", "Marketingx")):
        assert engine.decide(_tenant_ctx(tenant, purpose)).rule == "a"


# -- YAML 1.1 readings of unquoted values ----------------------------------------------------------

AMBIGUOUS_SCALARS = [
    ("no", "false"),  # YAML 1.1 reads it as false: a deny on the country code "no" would never apply
    ("NO", "false"),
    ("off", "false"),
    ("On", "true"),
    ("yes", "true"),
    ("010", "8"),  # octal
    ("0b11", "3"),
    ("0x1F", "31"),
    ("1_000", "1000"),
    ("1:30", "90"),  # base 60
    ("1_000.5", "1000.5"),
    ("1:30.0", "90.0"),
    ("1e3", "1e3"),  # a string to YAML 1.1, the number 1000 to YAML 1.2 and JSON
]


@pytest.mark.parametrize(("text", "reading"), AMBIGUOUS_SCALARS)
def test_an_unquoted_value_yaml_versions_read_differently_is_refused(text: str, reading: str) -> None:
    rule = f"{{id: r, effect: deny, tools: [t], when: {{arguments: {{country: {{in: [se, {text}]}}}}}}}}"
    with pytest.raises(PolicyError) as caught:
        Policy.from_yaml(f"rules:\n  - {rule}\n", source="p.yaml")
    message = str(caught.value)
    assert message.startswith("p.yaml: ")
    assert f"{text!r}" in message
    assert "line 2" in message
    assert "quote" in message
    assert f"read as {reading}" in message or f'read as "{reading}"' in message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'no'", "no"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("10", 10),
        ("-3", -3),
        ("0", 0),
        ("1.5", 1.5),
        ("-2.0e+3", -2000.0),
        ("'010'", "010"),
        ('"1e3"', "1e3"),
        ("se", "se"),
    ],
)
def test_unambiguous_values_load_as_written(text: str, value: object) -> None:
    rule = f"{{id: r, effect: deny, tools: [t], when: {{arguments: {{a: {{in: [{text}]}}}}}}}}"
    policy = Policy.from_yaml(f"rules:\n  - {rule}\n", source="p.yaml")
    loaded = policy.document.rules[0].when
    assert loaded is not None
    assert loaded.arguments["a"].in_ == [value]


async def test_a_deny_on_the_country_code_no_refuses_it(mode: str) -> None:
    policy = Policy.from_yaml(
        "rules:\n  - {id: all, effect: allow, tools: [search]}\n"
        "  - {id: no-nordics, effect: deny, tools: [search], when: {arguments: {query: {in: ['no', 'se']}}}}\n",
        source="p.yaml",
    )
    fs = build_file_server(policy)
    async with Client(fs.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("search", {"query": "no"}, meta=as_("alice"))
        assert caught.value.code == -32003
    assert fs.ran == []


# -- a reload enforces exactly the content it compared ---------------------------------------------

FULL = (
    "rules:\n"
    "  - {id: reads, effect: allow, tools: [read_file]}\n"
    "  - {id: searches, effect: allow, tools: [search]}\n"
    "  - {id: no-drop, effect: deny, tools: [search], when: {arguments: {query: {equals: drop}}}}\n"
)
PREFIX = FULL[: FULL.index("  - {id: no-drop")]  # a valid policy: what a reader sees mid-write


async def test_a_file_rewritten_while_it_is_read_never_leaves_its_prefix_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    fs = build_file_server(path)
    path.write_text(FULL)
    # A writer rewriting the same content in place: one read during the check sees it half-written.
    opens = 0
    real_open = Path.open

    def open_mid_write(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        nonlocal opens
        if self == path:
            opens += 1
            if opens == 2:
                return io.BytesIO(PREFIX.encode())
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_mid_write)
    for _ in range(3):
        await fs.policy.check_for_changes()
    monkeypatch.setattr(Path, "open", real_open)
    assert fs.policy.version == Policy.from_yaml(FULL, source=str(path)).version
    async with Client(fs.server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("search", {"query": "drop"}, meta=as_("alice"))
    assert fs.ran == []


async def test_a_file_still_being_written_is_reloaded_once_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    fs = build_file_server(path)
    good = fs.policy.version
    with path.open("w") as fh:
        fh.write(PREFIX)
        fh.flush()

        async def finish() -> None:
            await anyio.sleep(0.01)
            fh.write(FULL[len(PREFIX) :])
            fh.flush()

        async with anyio.create_task_group() as tg:
            tg.start_soon(finish)
            assert await fs.policy.check_for_changes() is False  # still changing: not reloaded
    assert fs.policy.version == good
    assert await fs.policy.check_for_changes() is True
    assert fs.policy.version == Policy.from_yaml(FULL, source=str(path)).version


# -- claims a deny cannot judge --------------------------------------------------------------------


def _claims_ctx(claims: dict[str, Any]) -> GovContext:
    principal = Principal("https://idp", "alice", tenant="acme", claims=claims)
    return GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="t",
        action="execute",
        arguments=MappingProxyType({}),
        principal=principal,
        tenant="acme",
    )


CLAIM_SPELLINGS: list[dict[str, Any]] = [
    {"role": "Contractor"},
    {"role": "CONTRACTOR "},
    {"role": ["dev", "contractor\u200b"]},
    {"role": {"name": "contractor"}},  # an object where a scalar is expected
    {"role": ["dev", {"name": "contractor"}]},
    {"level": "3"},  # a number sent as text
    {"level": [3.0]},
]


@pytest.mark.parametrize("claims", CLAIM_SPELLINGS)
@pytest.mark.parametrize(
    "deny",
    [
        "{id: d, effect: deny, tools: [t], principals: [{claims: {role: contractor}}, {claims: {level: 3}}]}",
        "{id: d, effect: deny, tools: [t], when: {claims: {role: contractor}}}\n"
        "  - {id: d2, effect: deny, tools: [t], when: {claims: {level: 3}}}",
    ],
)
def test_a_deny_on_a_claim_applies_to_values_it_cannot_tell_apart(claims: dict[str, Any], deny: str) -> None:
    engine = PolicyEngine(Policy.from_yaml(f"rules:\n  - {{id: a, effect: allow, tools: [t]}}\n  - {deny}\n"))
    decision = engine.decide(_claims_ctx(claims))
    assert decision.effect is Effect.DENY
    assert decision.rule in ("d", "d2")


def test_claims_that_match_or_clearly_differ_decide_as_before() -> None:
    engine = PolicyEngine(
        Policy.from_yaml(
            "rules:\n  - {id: a, effect: allow, tools: [t], principals: [{claims: {role: admin}}]}\n"
            "  - {id: d, effect: deny, tools: [t], when: {claims: {role: contractor}}}\n"
        )
    )
    assert engine.decide(_claims_ctx({"role": "admin"})).rule == "a"
    assert engine.decide(_claims_ctx({"role": ["admin", "dev"]})).rule == "a"
    assert engine.decide(_claims_ctx({"role": ["admin", "contractor"]})).rule == "d"
    assert engine.decide(_claims_ctx({"role": "Admin"})).effect is Effect.DENY  # an allow admits the exact value only
    # The allow's value is there, but the deny cannot tell whether the object is a contractor role.
    unjudged = engine.decide(_claims_ctx({"role": ["admin", {"x": 1}]}))
    assert (unjudged.rule, unjudged.reason_code) == ("d", "condition_unevaluable")


async def test_a_deny_on_a_purpose_applies_when_no_purpose_is_declared(mode: str) -> None:
    fs = build_file_server(Policy.from_yaml(PURPOSE_POLICY, source="p.yaml"))
    email = {"to": "a@acme.example", "body": "b"}
    async with Client(fs.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("send_email", email, meta=as_("alice"))
        assert caught.value.code == -32003
        assert (await client.call_tool("send_email", email, meta=as_("alice", purpose="support"))).is_error is False
    assert fs.ran == ["send_email:a@acme.example"]
    denied = fs.sink.decisions()[0]
    assert (denied.rule, denied.reason) == ("no-marketing-mail", "condition_unevaluable")


def test_a_deny_scoped_to_tenants_applies_to_a_request_without_one() -> None:
    engine = PolicyEngine(
        Policy.from_yaml(
            "rules:\n  - {id: a, effect: allow, tools: [t], anonymous: true}\n"
            "  - {id: d, effect: deny, tools: [t], anonymous: true, tenants: [evil]}\n"
            "  - {id: acme-only, effect: allow, tools: [u], tenants: [acme]}\n"
        )
    )
    no_tenant = _tenant_ctx("acme").replace(tenant=None, principal=None)
    assert engine.decide(no_tenant).rule == "d"
    assert engine.decide(no_tenant.replace(target="u")).effect is Effect.DENY
    assert engine.decide(_tenant_ctx("good")).rule == "a"


_INVISIBLE = ("\u200b", "\u00ad", "\u200d", "\ufeff", "\u2060")


@st.composite
def _respelled(draw: st.DrawFn) -> tuple[str, str]:
    """A name and another spelling of it a reader takes for the same name."""
    name = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20))
    chars = []
    for ch in name:
        how = draw(st.sampled_from(["same", "upper", "fullwidth", "invisible-after"]))
        if how == "upper":
            chars.append(ch.upper())
        elif how == "fullwidth":
            chars.append(chr(ord(ch) + 0xFEE0))
        elif how == "invisible-after":
            chars.append(ch + draw(st.sampled_from(_INVISIBLE)))
        else:
            chars.append(ch)
    spelling = draw(st.sampled_from(["", " ", "\u3000"])) + "".join(chars) + draw(st.sampled_from(["", " ", "\t"]))
    return name, spelling


@given(_respelled(), st.sampled_from(["rule-tenants", "tenants", "purposes", "claims", "matcher"]))
@settings(max_examples=200, deadline=None)
def test_property_a_deny_on_a_name_applies_to_every_spelling_of_it(pair: tuple[str, str], where: str) -> None:
    name, spelling = pair
    deny = {
        "rule-tenants": f"tenants: ['{name}']",
        "tenants": f"when: {{tenants: ['{name}']}}",
        "purposes": f"when: {{purposes: ['{name}']}}",
        "claims": f"when: {{claims: {{group: '{name}'}}}}",
        "matcher": f"principals: [{{claims: {{group: '{name}'}}}}]",
    }[where]
    engine = PolicyEngine(
        Policy.from_yaml(
            f"rules:\n  - {{id: a, effect: allow, tools: [t]}}\n  - {{id: d, effect: deny, tools: [t], {deny}}}\n"
        )
    )
    ctx = GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="t",
        action="execute",
        arguments=MappingProxyType({}),
        principal=Principal("https://idp", "alice", tenant=spelling, claims={"group": spelling}),
        tenant=spelling,
        purpose=spelling,
    )
    assert engine.decide(ctx).rule == "d"
