"""A ``regex`` condition cannot be walked around with a line break: a value the pattern matches
only when ``.`` also matches a line break is unknown, so a deny applies to it and an allow does
not admit it (``rm .*`` refuses ``"rm -rf\\n/"``, which a shell runs as ``rm -rf``)."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Effect, GovContext, Principal, govern
from mcpgov.policy import Policy, PolicyEngine, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

from .policies.support import LookupIdentity, as_

POLICY = """
rules:
  - {id: everything, effect: allow, tools: [run]}
  - {id: no-rm, effect: deny, tools: [run], when: {arguments: {command: {regex: "rm .*"}}}}
  - {id: no-secrets, effect: deny, tools: [run], when: {arguments: {command: {regex: ".*secret.*"}}}}
"""


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("command", "rule"),
    [
        ("rm -rf\n/", "no-rm"),
        ("rm \n", "no-rm"),
        ("rm -rf /\n", "no-rm"),
        ("rm -rf\r\n/", "no-rm"),
        ("cat a\nsecret", "no-secrets"),
        ("\nsecret\n", "no-secrets"),
    ],
)
async def test_a_deny_regex_applies_whatever_line_breaks_the_value_holds(command: str, rule: str, mode: str) -> None:
    server = MCPServer("shell")
    ran: list[str] = []

    @server.tool()
    def run(command: str) -> str:
        ran.append(command)
        return "ok"

    sink = InMemoryAuditSink()
    govern(server, LookupIdentity(), PolicyMiddleware(Policy.from_yaml(POLICY)), audit=sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("run", {"command": command}, meta=as_("alice"))
        assert caught.value.code == -32003
        assert (await client.call_tool("run", {"command": "ls\n-l"}, meta=as_("alice"))).is_error is False
    assert ran == ["ls\n-l"]
    denied = [(e.rule, e.reason) for e in sink.decisions() if e.effect == "deny"]
    assert denied == [(rule, "condition_unevaluable")]


PATTERNS = ["rm .*", ".*secret.*", "a.b", "[a-z]+", "(?i)rm.*x", "a.*", ".", "a\\nb", "(a|b.)+"]


def _decide(rules: list[dict[str, Any]], value: str) -> Effect:
    engine = PolicyEngine(Policy.from_dict({"rules": rules}, source="p.json"))
    ctx = GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="t",
        action="execute",
        arguments=MappingProxyType({"x": value}),
        principal=Principal("https://idp.example", "alice", tenant="acme"),
        tenant="acme",
    )
    return engine.decide(ctx).effect


@settings(max_examples=300, deadline=None)
@given(pattern=st.sampled_from(PATTERNS), value=st.text(alphabet="rm sectxab\n\r", max_size=12))
def test_property_a_regex_decides_alike_whether_or_not_dot_matches_line_breaks(pattern: str, value: str) -> None:
    """A deny applies whenever the pattern matches the value with ``.`` matching line breaks or
    not; an allow admits the value only when it matches both ways."""
    plain = re.fullmatch(pattern, value) is not None
    dotall = re.fullmatch(pattern, value, re.DOTALL) is not None
    allow_all = {"id": "all", "effect": "allow", "tools": ["t"]}
    deny = {"id": "refuse", "effect": "deny", "tools": ["t"], "when": {"arguments": {"x": {"regex": pattern}}}}
    allow = {"id": "admit", "effect": "allow", "tools": ["t"], "when": {"arguments": {"x": {"regex": pattern}}}}
    if plain or dotall:
        assert _decide([allow_all, deny], value) is Effect.DENY
    else:
        assert _decide([allow_all, deny], value) is Effect.ALLOW
    assert (_decide([allow], value) is Effect.ALLOW) is (plain and dotall)
