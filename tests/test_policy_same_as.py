"""``same_as`` compares an argument with a name of the request (tenant, subject, task, purpose) as
names are compared everywhere else: a value that is not the name but reads as it (another case,
a Unicode compatibility form, invisible characters, whitespace, look-alike letters) is unknown,
so a deny on "the argument is the caller itself" applies to every spelling of the caller."""

from __future__ import annotations

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import govern
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

from .policies.support import LookupIdentity, as_

POLICY = """
rules:
  - {id: everything, effect: allow, tools: [approve, mail]}
  - id: no-self-approval
    effect: deny
    tools: [approve]
    when: {arguments: {approver: {same_as: subject}}}
  - id: own-tenant-only
    effect: deny
    tools: [mail]
    unless: {arguments: {mailbox: {same_as: tenant}}}
"""

SELF = ["alice", "Alice", "ALICE", "alice ", " alice", "\uff41lice", "al\u200bice", "\u0430lice"]


def _server() -> tuple[MCPServer, InMemoryAuditSink, list[str]]:
    server = MCPServer("approvals")
    ran: list[str] = []

    @server.tool()
    def approve(approver: str) -> str:
        ran.append(f"approve:{approver}")
        return "approved"

    @server.tool()
    def mail(mailbox: str) -> str:
        ran.append(f"mail:{mailbox}")
        return "sent"

    sink = InMemoryAuditSink()
    govern(server, LookupIdentity(), PolicyMiddleware(Policy.from_yaml(POLICY)), audit=sink)
    return server, sink, ran


@pytest.mark.anyio
@pytest.mark.parametrize("approver", SELF)
async def test_a_deny_on_same_as_applies_to_every_spelling_of_the_caller(approver: str, mode: str) -> None:
    server, sink, ran = _server()
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("approve", {"approver": approver}, meta=as_("alice"))
        assert caught.value.code == -32003
        assert (await client.call_tool("approve", {"approver": "bob"}, meta=as_("alice"))).is_error is False
    assert ran == ["approve:bob"]
    assert [e.rule for e in sink.decisions() if e.effect == "deny"] == ["no-self-approval"]


@pytest.mark.anyio
@pytest.mark.parametrize("mailbox", ["ACME", "acme ", "\uff41cme", "globex"])
async def test_same_as_admits_only_the_exact_name(mailbox: str, mode: str) -> None:
    server, _sink, ran = _server()
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("mail", {"mailbox": mailbox}, meta=as_("alice"))
        assert caught.value.code == -32003
        assert (await client.call_tool("mail", {"mailbox": "acme"}, meta=as_("alice"))).is_error is False
    assert ran == ["mail:acme"]
