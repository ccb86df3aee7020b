"""An empty list (or map) in a policy is never read as "anyone" or as a requirement that holds:
``principals: []`` on an allow, ``scopes: []`` or ``claims: {}`` in a rule's blocks or principal
matchers are refused at load, naming the file, the rule and the field. Before, an allow for
``principals: []`` admitted every principal, and a deny ``unless: {scopes: []}`` never applied."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import govern
from mcpgov.policy import Policy, PolicyError, PolicyMiddleware

from .policies.support import ACME, LookupIdentity, as_

HOLLOW = [
    ("{id: r, effect: allow, tools: [t], principals: []}", "field 'principals'"),
    ("{id: r, effect: require_approval, tools: [t], principals: []}", "field 'principals'"),
    ("{id: r, effect: deny, tools: [t], unless: {scopes: []}}", "field 'unless.scopes'"),
    ("{id: r, effect: deny, tools: [t], unless: {claims: {}}}", "field 'unless.claims'"),
    ("{id: r, effect: allow, tools: [t], when: {scopes: []}}", "field 'when.scopes'"),
    ("{id: r, effect: allow, tools: [t], when: {claims: {}}}", "field 'when.claims'"),
    ("{id: r, effect: allow, tools: [t], principals: [{scopes: []}]}", "field 'principals[0].scopes'"),
    ("{id: r, effect: allow, tools: [t], principals: [{claims: {}}]}", "field 'principals[0].claims'"),
    ("{id: r, effect: allow, tools: [t], principals: [{issuer: 'https://i', claims: {}}]}", "'principals[0].claims'"),
]


@pytest.mark.parametrize(("rule", "field"), HOLLOW)
def test_an_empty_list_read_as_anyone_or_as_nothing_required_is_refused_naming_the_field(rule: str, field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_yaml(f"rules:\n  - {{id: all, effect: allow, tools: [t]}}\n  - {rule}\n", source="p.yaml")
    message = str(caught.value)
    assert message.startswith("p.yaml: rule 'r' (rules[1])"), message
    assert field in message, message
    assert "empty" in message, message


@pytest.mark.parametrize("version", ["true", "1.0", "'1'"])
def test_a_version_that_is_not_the_integer_1_is_refused(version: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_yaml(f"version: {version}\nrules: []\n", source="p.yaml")
    assert "version" in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "hollow",
    [
        "  - {id: alice-only, effect: allow, tools: [echo], principals: []}\n",
        "  - {id: alice-only, effect: allow, tools: [echo]}\n"
        "  - {id: writers-only, effect: deny, tools: [echo], unless: {scopes: []}}\n",
    ],
)
async def test_a_reload_to_an_empty_requirement_keeps_the_policy_in_force(
    hollow: str, tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "rules:\n  - {id: alice-only, effect: allow, tools: [echo], principals: [{issuer: '"
        + ACME
        + "', subject: alice}]}\n"
    )
    middleware = PolicyMiddleware(path)
    server = MCPServer("echo")
    ran: list[str] = []

    @server.tool()
    def echo(text: str) -> str:
        ran.append(text)
        return text

    govern(server, LookupIdentity(), middleware)
    path.write_text("rules:\n" + hollow)
    assert await middleware.reload() is False
    async with Client(server, mode=mode) as client:
        assert (await client.call_tool("echo", {"text": "a"}, meta=as_("alice"))).is_error is False
        with pytest.raises(MCPError) as caught:
            await client.call_tool("echo", {"text": "r"}, meta=as_("reader"))
        assert caught.value.code == -32003
    assert ran == ["a"]


@pytest.mark.parametrize(
    ("window", "problem"),
    [
        ({"before": 20_000_000_000}, "before must be an ISO 8601 instant"),  # read as milliseconds: 1970
        ({"after": 1_700_000_000}, "after must be an ISO 8601 instant"),
        ({"after": 1.7e9}, "after must be an ISO 8601 instant"),
        ({"after": "1700000000"}, "after must be an ISO 8601 instant"),
        ({"before": "2030-01-01"}, "before must be an ISO 8601 instant"),
        ({"after": True}, "after must be an ISO 8601 instant"),
        ({"start": "09:00", "end": "09:00"}, "start equals end"),
    ],
)
def test_a_time_window_read_otherwise_than_written_is_refused(window: dict[str, object], problem: str) -> None:
    rules = [
        {"id": "all", "effect": "allow", "tools": ["t"]},
        {"id": "r", "effect": "deny", "tools": ["t"], "when": {"time": window}},
    ]
    with pytest.raises(PolicyError) as caught:
        Policy.from_dict({"rules": rules}, source="p.json")
    message = str(caught.value)
    assert message.startswith("p.json: rule 'r' (rules[1]), field 'when.time'"), message
    assert problem in message, message


def test_a_time_window_written_as_iso_8601_with_an_offset_loads() -> None:
    policy = Policy.from_yaml(
        "rules:\n  - {id: r, effect: deny, tools: [t], when: {time: "
        "{after: 2026-01-01T00:00:00Z, before: '2027-01-01T00:00:00+02:00', start: '22:00', end: '06:00'}}}\n"
    )
    (rule,) = policy.document.rules
    assert rule.when is not None
    assert rule.when.time is not None
    assert rule.when.time.after is not None
    assert rule.when.time.after.year == 2026
