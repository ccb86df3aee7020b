"""``@gov.tool(...)``: server-author declarations registered with the SDK and fed to the same engine."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import ConfigurationError, Effect, GovContext, govern
from mcpgov.policy import OBLIGATION_MAX_CREDENTIAL_TTL, OBLIGATION_REDACT, Policy, PolicyDecorators, PolicyMiddleware
from mcpgov.policy._decorators import META_POLICY
from mcpgov.testing import InMemoryAuditSink

from .policies.support import PRINCIPALS, LookupIdentity, as_

pytestmark = pytest.mark.anyio

FILE_POLICY = Policy.from_yaml(
    """
rules:
  - id: everything-for-acme
    effect: allow
    tenants: [acme]
    tools: ["*"]
  - id: no-critical-for-delegates
    effect: deny
    tools: ["*"]
    when: {risk: [critical], delegation_depth: {min: 1}}
  - id: no-exfiltration
    effect: deny
    tools: [send_report]
    when: {history: {seen_labels: [sensitive]}}
""",
    source="file.yaml",
)


def build() -> tuple[MCPServer, PolicyDecorators, PolicyMiddleware, InMemoryAuditSink, list[str]]:
    server = MCPServer("declared")
    gov = PolicyDecorators(server)
    ran: list[str] = []

    @gov.tool(
        scopes=["files:write"],
        tenants=["acme", "globex"],
        risk="high",
        constraints={"path": {"path": {"under": ["/data"]}}},
        redact=["content"],
        max_credential_ttl=120,
        description="Write a file.",
    )
    def write_file(path: str, content: str) -> str:
        ran.append("write_file")
        return "ok"

    @gov.tool(approval=True, risk="critical")
    def drop_database() -> str:
        ran.append("drop_database")
        return "dropped"

    @gov.tool(labels=["sensitive"])
    def read_payroll() -> str:
        ran.append("read_payroll")
        return "payroll"

    @gov.tool()
    def send_report(to: str) -> str:
        ran.append("send_report")
        return "sent"

    @gov.tool(grant=False)
    def globex_only() -> str:
        ran.append("globex_only")
        return "x"

    mw = PolicyMiddleware(FILE_POLICY, declarations=gov)
    sink = InMemoryAuditSink()
    govern(server, LookupIdentity(), mw, audit=sink)
    return server, gov, mw, sink, ran


async def test_decorator_registers_the_tool_with_its_declaration_in_meta(mode: str) -> None:
    server, *_ = build()
    async with Client(server, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools(meta=as_("alice"))).tools}
    write = tools["write_file"]
    assert write.description == "Write a file."
    assert write.meta is not None
    assert write.meta[META_POLICY] == {
        "scopes": ["files:write"],
        "risk": "high",
        "approval": False,
        "redact": ["content"],
    }
    assert "tenants" not in write.meta[META_POLICY]  # other tenants' names are not published


async def test_declared_requirements_hold_even_when_the_policy_file_allows_everything(mode: str) -> None:
    server, _, _, sink, ran = build()
    async with Client(server, mode=mode) as client:
        ok = await client.call_tool("write_file", {"path": "/data/x", "content": "c"}, meta=as_("alice"))
        assert ok.is_error is False
        for who, args in (
            ("reader", {"path": "/data/x", "content": "c"}),  # lacks the scope
            ("alice", {"path": "/etc/x", "content": "c"}),  # breaks the constraint
            ("alice", {"path": "/data/../etc", "content": "c"}),
        ):
            with pytest.raises(MCPError) as caught:
                await client.call_tool("write_file", args, meta=as_(who))
            assert caught.value.code == -32003
        assert "write_file" not in {t.name for t in (await client.list_tools(meta=as_("reader"))).tools}
    assert ran == ["write_file"]
    assert {e.rule for e in sink.decisions() if e.effect == "deny"} == {"decl:write_file:requires"}


async def test_declared_approval_requires_approval(mode: str) -> None:
    server, _, _, sink, ran = build()
    async with Client(server, mode=mode) as client:
        assert "drop_database" in {t.name for t in (await client.list_tools(meta=as_("alice"))).tools}
        with pytest.raises(MCPError) as caught:
            await client.call_tool("drop_database", {}, meta=as_("alice"))
    assert caught.value.code == -32004
    assert ran == []
    assert sink.decisions()[-1].rule == "decl:drop_database:approval"


async def test_declared_risk_is_visible_to_policy_rules(mode: str) -> None:
    server, _, _, sink, _ = build()
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("drop_database", {}, meta=as_("sub-agent"))
    assert caught.value.code == -32003
    assert sink.decisions()[-1].rule == "no-critical-for-delegates"


async def test_declared_labels_feed_task_history(mode: str) -> None:
    server, _, _, sink, ran = build()
    async with Client(server, mode=mode) as client:
        meta = as_("alice", task="t")
        assert (await client.call_tool("send_report", {"to": "a"}, meta=meta)).is_error is False
        assert (await client.call_tool("read_payroll", {}, meta=meta)).is_error is False
        with pytest.raises(MCPError):
            await client.call_tool("send_report", {"to": "a"}, meta=meta)
    assert ran == ["send_report", "read_payroll"]
    assert sink.decisions()[-1].rule == "no-exfiltration"


async def test_grant_false_leaves_the_grant_to_the_policy_file(mode: str) -> None:
    server, _, _, _, ran = build()
    async with Client(server, mode=mode) as client:
        assert (await client.call_tool("globex_only", {}, meta=as_("alice"))).is_error is False  # file grants acme
        with pytest.raises(MCPError):
            await client.call_tool("globex_only", {}, meta=as_("bob"))
    assert ran == ["globex_only"]


def test_declared_obligations_travel_with_every_allow_of_the_tool() -> None:
    _, _, mw, _, _ = build()
    ctx = GovContext(
        side="server",
        method="tools/call",
        kind="tool",
        target="write_file",
        action="execute",
        arguments=MappingProxyType({"path": "/data/x", "content": "c"}),
        principal=PRINCIPALS["alice"],
        tenant="acme",
    )
    decision = mw.engine.decide(ctx)
    assert (decision.effect, decision.rule) == (Effect.ALLOW, "everything-for-acme")
    assert decision.obligations[OBLIGATION_REDACT] == ("content",)
    assert decision.obligations[OBLIGATION_MAX_CREDENTIAL_TTL] == 120.0
    assert decision.policy_version != FILE_POLICY.version  # declarations are part of the version


async def test_declarations_added_after_the_middleware_are_picked_up(mode: str) -> None:
    server, gov, mw, _, _ = build()
    before = mw.version

    @gov.tool(tenants=["globex"])
    def late() -> str:
        return "late"

    assert mw.version != before
    async with Client(server, mode=mode) as client:
        assert (await client.call_tool("late", {}, meta=as_("bob"))).is_error is False
        with pytest.raises(MCPError):
            await client.call_tool("late", {}, meta=as_("alice"))


def test_invalid_declarations_fail_at_decoration_naming_tool_and_field() -> None:
    gov = PolicyDecorators(MCPServer("s"))
    with pytest.raises(
        ConfigurationError, match=r"tool .bad.: invalid declaration: constraints\.path\.path: .*absolute"
    ):

        @gov.tool(constraints={"path": {"path": {"under": ["relative"]}}})
        def bad(path: str) -> str:
            return path

    with pytest.raises(ConfigurationError, match="greater than or equal to 1"):

        @gov.tool(rate_limit={"limit": 0, "per": 1})
        def worse() -> str:
            return ""

    with pytest.raises(ConfigurationError, match="risk"):
        gov.tool(risk="extreme")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="sequences"):
        gov.tool(scopes="files:write")

    @gov.tool()
    def once() -> str:
        return ""

    with pytest.raises(ConfigurationError, match="declared twice"):
        gov.tool(name="once")(once)
    with pytest.raises(ConfigurationError, match="MCPServer"):
        PolicyDecorators(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("calls", [1, 3])
async def test_a_declaration_that_cannot_be_compiled_with_the_policy_denies_until_it_can(calls: int, mode: str) -> None:
    """A tool declared after the middleware was built whose declaration cannot be compiled with the
    file (a file rule already has its rule id) never runs under the engine compiled before it: every
    request is denied, not only the first, until the declarations compile again."""
    server = MCPServer("late")
    gov = PolicyDecorators(server)
    policy = Policy.from_yaml(
        "rules:\n  - {id: everything, effect: allow, tools: ['*']}\n"
        "  - {id: 'decl:late', effect: allow, tools: [other]}\n",
        source="file.yaml",
    )
    sink = InMemoryAuditSink()
    govern(server, LookupIdentity(), PolicyMiddleware(policy, declarations=gov), audit=sink)
    ran: list[str] = []

    @gov.tool(scopes=["admin"])
    def late() -> str:
        ran.append("late")
        return "ran"

    async with Client(server, mode=mode) as client:
        for _ in range(calls):
            with pytest.raises(MCPError) as caught:
                await client.call_tool("late", {}, meta=as_("alice"))
            assert caught.value.code == -32003
    assert ran == []
    assert [e.effect for e in sink.decisions() if e.target == "late"] == ["deny"] * calls
