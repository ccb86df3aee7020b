"""Loading policy files: YAML and JSON, validated, with errors naming the file, the rule and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpgov import ConfigurationError
from mcpgov.policy import Policy, PolicyError, PolicyMiddleware, load_policy

from .policies.support import POLICIES, TWO_TENANTS


def _error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        Policy.from_yaml(text, source="p.yaml")
    return caught.value


def test_yaml_and_json_files_load_into_the_same_model() -> None:
    yaml_policy = load_policy(TWO_TENANTS)
    json_policy = load_policy(POLICIES / "two_tenants.json")
    assert yaml_policy.document.name == "files-two-tenants"
    assert len(yaml_policy.document.rules) == 11
    assert json_policy.document.rules[0].when is not None
    assert json_policy.document.rules[0].when.arguments["path"].path is not None


def test_version_is_a_digest_that_ignores_formatting_but_not_content() -> None:
    a = Policy.from_yaml("rules: [{id: r, effect: allow, tools: [x]}]")
    b = Policy.from_json('{"rules": [{"tools": ["x"], "effect": "allow", "id": "r"}]}')
    c = Policy.from_yaml("rules: [{id: r, effect: allow, tools: [y]}]")
    assert a.version == b.version != c.version
    assert a.version.startswith("sha256:")


def test_invalid_rule_in_a_file_names_file_rule_and_field() -> None:
    path = POLICIES / "invalid_rule.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    error = caught.value
    assert isinstance(error, ConfigurationError)
    assert str(path) in str(error)
    assert "rule 'broken-path'" in str(error)
    assert "when.arguments.path.path" in str(error)
    assert (error.rule, error.field, error.source) == ("broken-path", "when.arguments.path.path", str(path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [{id: a, effect: allow}]", "must name what it applies to"),
        ("rules: [{id: a, effect: maybe, tools: [x]}]", "field 'effect'"),
        ("rules: [{id: a, effect: allow, tools: [x], colour: red}]", "field 'colour'"),
        ("rules: [{id: a, effect: allow, tools: [x]}, {id: a, effect: deny, tools: [y]}]", "duplicate rule id 'a'"),
        ("rules: [{id: a, effect: allow, tools: [x], unless: {tenants: [t]}}]", "unless is only for deny"),
        ("rules: [{id: a, effect: deny, tools: [x], obligations: {bind_arguments: true}}]", "no obligations"),
        ("rules: [{id: a, effect: deny, tools: [x], actions: [discover]}]", "must cover execute"),
        ("rules: [{id: 'bad id', effect: allow, tools: [x]}]", "id must be"),
        ("rules: [{id: a, effect: allow, tools: [x], when: {arguments: {n: {}}}}]", "at least one operator"),
        ("rules: [{id: a, effect: allow, tools: [x], when: {arguments: {n: {regex: '('}}}}]", "refused by RE2"),
        ("rules: [{id: a, effect: allow, tools: [x], when: {arguments: {n: {min: 5, max: 1}}}}]", "min is greater"),
        ("rules: [{id: a, effect: allow, tools: [x], when: {arguments: {n: {min: '5'}}}}]", "when.arguments.n.min"),
        ("rules: [{id: a, effect: allow, tools: [x], when: {arguments: {p: {path: {under: /a/../b}}}}}]", "'..'"),
        ("rules: [{id: a, effect: allow, tools: [x], when: {arguments: {p: {path: {under: /a/}}}}}]", "normalised"),
        ("rules: [{id: a, effect: allow, tools: [x], when: {time: {start: 17:00, end: '18:00'}}}]", "quoted"),
        ("rules: [{id: a, effect: allow, tools: [x], when: {time: {days: [funday]}}}]", "when.time.days[0]"),
        (
            "rules: [{id: a, effect: allow, tools: [x], when: {time: {days: [mon], timezone: Mars/Olympus}}}]",
            "unknown timezone",
        ),
        ("rules: [{id: a, effect: allow, tools: [x], when: {history: {calls_below: 0}}}]", "calls_below"),
        ("rules: [{id: a, effect: allow, tools: [x], principals: [{subject: bob}]}]", "subject needs issuer"),
        ("rules: [{id: a, effect: allow, tools: [x], obligations: {rate_limit: {limit: 0, per: 1}}}]", "rate_limit"),
        ("rules: [{id: a, effect: allow, tools: ['']}]", "must not be empty"),
        ("version: 2\nrules: []", "field 'version'"),
        ("- just a list", "must be a mapping"),
        ("rules: [{id: a, effect: allow, tools: [x]}]\nrules: []", "duplicate key 'rules'"),
        ("rules: [{id: a, effect: allow, tools: [x]", "invalid YAML"),
    ],
)
def test_bad_policies_fail_at_load_with_a_message_naming_the_place(text: str, expected: str) -> None:
    error = _error(text)
    assert expected in str(error)
    assert str(error).startswith("p.yaml: ")


def test_json_duplicate_keys_and_syntax_errors_are_refused() -> None:
    with pytest.raises(PolicyError, match="duplicate key"):
        Policy.from_json('{"rules": [], "rules": []}', source="p.json")
    with pytest.raises(PolicyError, match=r"p\.json: invalid JSON"):
        Policy.from_json("{", source="p.json")


def test_unreadable_and_unknown_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    other = tmp_path / "policy.txt"
    other.write_text("rules: []")
    with pytest.raises(PolicyError, match=r"\.yaml, \.yml or \.json"):
        load_policy(other)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(binary)


def test_an_empty_file_is_a_policy_without_rules(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_policy(empty).document.rules == []


def test_middleware_refuses_an_unloadable_policy_at_construction(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        PolicyMiddleware(POLICIES / "invalid_rule.yaml")
    with pytest.raises(ConfigurationError, match="on_load_error"):
        PolicyMiddleware(TWO_TENANTS, on_load_error="ignore")
    with pytest.raises(ConfigurationError, match="a policy must be"):
        PolicyMiddleware(42)  # type: ignore[arg-type]


def test_reprs_name_source_and_version_only() -> None:
    policy = load_policy(TWO_TENANTS)
    assert repr(policy) == f"Policy(source={str(TWO_TENANTS)!r}, version={policy.version!r}, rules=11)"
    assert "PolicyEngine" in repr(PolicyMiddleware(policy))
