"""PolicyMiddleware end to end: a governed server driven by the SDK's in-process Client, both modes."""

from __future__ import annotations

from typing import Any, cast

import pytest
from mcp import Client, MCPError
from mcp_types import RequestParamsMeta

from mcpgov import GovernedClient, InMemoryStateStore, Principal, StateStoreError
from mcpgov.policy import DEFAULT_DENY_RULE, Policy, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink, serve_http

from .policies.support import ACME, TWO_TENANTS, FrozenClock, as_, build_file_server

pytestmark = pytest.mark.anyio


async def _refusal(client: Client, tool: str, args: dict[str, Any], meta: RequestParamsMeta) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await client.call_tool(tool, args, meta=meta)
    return caught.value


# -- list/call consistency ----------------------------------------------------------------------


async def test_listings_show_exactly_what_each_tenant_may_use(mode: str) -> None:
    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        acme_tools = {t.name for t in (await client.list_tools(meta=as_("alice"))).tools}
        globex_tools = {t.name for t in (await client.list_tools(meta=as_("bob"))).tools}
        acme_resources = {str(r.uri) for r in (await client.list_resources(meta=as_("alice"))).resources}
        globex_resources = {str(r.uri) for r in (await client.list_resources(meta=as_("bob"))).resources}
        acme_templates = {
            t.uri_template for t in (await client.list_resource_templates(meta=as_("alice"))).resource_templates
        }
        globex_templates = {
            t.uri_template for t in (await client.list_resource_templates(meta=as_("bob"))).resource_templates
        }
        prompts = {p.name for p in (await client.list_prompts(meta=as_("alice"))).prompts}
        anonymous = {t.name for t in (await client.list_tools()).tools}
    # send_email is hidden: its allow needs the "support" purpose, which is known when listing.
    assert acme_tools == {"read_file", "write_file", "plan_step", "search"}
    assert globex_tools == {"read_file", "plan_step", "search"}
    assert acme_resources == {"docs://readme", "secret://payroll"}
    assert globex_resources == {"docs://readme"}
    assert acme_templates == {"notes://acme/{page}"}
    assert globex_templates == set()
    assert prompts == {"summarise"}
    assert anonymous == set()
    assert fs.ran == []


async def test_every_listed_entry_is_usable_and_every_hidden_one_is_refused(mode: str) -> None:
    fs = build_file_server()
    meta = as_("alice", task="t-consistency")
    args = {
        "read_file": {"path": "/data/acme/a"},
        "write_file": {"path": "/data/acme/a", "content": "x"},
        "plan_step": {"step": "1"},
        "search": {"query": "q"},
        "send_email": {"to": "x@acme.example", "body": "hi"},
        "delete_everything": {},
    }
    async with Client(fs.server, mode=mode) as client:
        listed = {t.name for t in (await client.list_tools(meta=meta)).tools}
        for tool, arguments in args.items():
            code: int | None = None
            try:
                result = await client.call_tool(tool, arguments, meta=meta)
            except MCPError as exc:
                code = exc.code
            if code is None:
                assert tool in listed, f"{tool} is usable but hidden"
                assert result.is_error is False
            else:
                assert tool not in listed, f"{tool} is listed but refused"
                assert code == -32003
        listed_prompts = {p.name for p in (await client.list_prompts(meta=meta)).prompts}
        for prompt in ("summarise", "jailbreak"):
            try:
                await client.get_prompt(prompt, {"text": "t"}, meta=meta)
            except MCPError:
                assert prompt not in listed_prompts
            else:
                assert prompt in listed_prompts
        listed_resources = {str(r.uri) for r in (await client.list_resources(meta=meta)).resources}
        for uri in ("docs://readme", "secret://payroll"):
            assert uri in listed_resources
            assert (await client.read_resource(uri, meta=meta)).contents
    assert "jailbreak" not in fs.ran and "delete_everything" not in fs.ran


# -- tenants -------------------------------------------------------------------------------------


async def test_tenant_b_cannot_use_tenant_a_files_whatever_the_arguments_say(mode: str) -> None:
    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        ok = await client.call_tool("read_file", {"path": "/data/globex/report"}, meta=as_("bob"))
        assert ok.is_error is False
        for args in (
            {"path": "/data/acme/secret"},
            {"path": "/data/acme/secret", "tenant": "acme"},
            {"path": "/data/globex/../acme/secret"},
        ):
            error = await _refusal(
                client, "read_file", args, cast("RequestParamsMeta", {**as_("bob"), "tenant": "acme"})
            )
            # An argument the tool does not declare is refused before any decision.
            assert error.code == (-32602 if "tenant" in args else -32003)
        error = await _refusal(client, "write_file", {"path": "/data/globex/x", "content": "c"}, as_("bob"))
        assert error.code == -32003
    assert fs.ran == ["read_file:/data/globex/report"]


async def test_a_tenant_cannot_read_the_other_tenants_resources(mode: str) -> None:
    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        assert (await client.read_resource("notes://acme/1", meta=as_("alice"))).contents
        for uri in ("notes://acme/1", "secret://payroll"):
            with pytest.raises(MCPError) as caught:
                await client.read_resource(uri, meta=as_("bob"))
            assert caught.value.code == -32003
        # A URI that resolves elsewhere than it reads is not even decided: it is invalid.
        with pytest.raises(MCPError) as caught:
            await client.read_resource("notes://acme/../globex/1", meta=as_("alice"))
        assert caught.value.code == -32602
    assert fs.ran == ["notes://acme/1"]


async def test_missing_tenant_is_denied(mode: str) -> None:
    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        error = await _refusal(client, "read_file", {"path": "/data/acme/a"}, as_("no-tenant"))
    assert error.code == -32003
    assert fs.ran == []
    (event,) = fs.sink.decisions()
    # The tenant-scoped allows cannot apply to a request without a tenant: the first names the deny.
    assert (event.effect, event.rule, event.reason, event.engine) == (
        "deny",
        "acme-files",
        "condition_unevaluable",
        "policy",
    )


# -- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/data/acme/../globex/x",
        "/data/acme/%2e%2e/globex/x",
        "/data/acme/%2E%2E/globex/x",
        "/data/acme/%252e%252e/globex/x",
        "/data/acme/..%2fglobex",
        "/data/acme-evil/x",
        "/data/acmex",
        "/etc/passwd",
        "data/acme/x",
        "../data/acme/x",
        "/data/acme\\..\\globex",
        "/data/acme/x\x00.txt",
        "",
    ],
)
async def test_path_escapes_are_refused_and_never_run(path: str, mode: str) -> None:
    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        error = await _refusal(client, "read_file", {"path": path}, as_("alice"))
    assert error.code == -32003
    assert fs.ran == []


@pytest.mark.parametrize("path", ["/data/acme", "/data/acme/x", "/data/acme/./x", "/data/acme//x", "/data/acme/a%20b"])
async def test_canonical_paths_inside_the_root_are_allowed(path: str, mode: str) -> None:
    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        result = await client.call_tool("read_file", {"path": path}, meta=as_("alice"))
    assert result.is_error is False
    assert fs.ran == [f"read_file:{path}"]


@pytest.mark.parametrize("value", [3, True, None, ["/data/acme/x"], {"p": "/data/acme/x"}])
async def test_arguments_of_unexpected_type_deny_naming_the_rule(value: Any, mode: str) -> None:
    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        error = await _refusal(client, "read_file", {"path": value}, as_("alice"))
    # The tool declares a string: anything else is refused before any decision, and audited.
    assert error.code == -32602
    assert fs.ran == []
    (event,) = fs.sink.decisions()
    assert (event.effect, event.reason) == ("deny", "arguments_invalid")


async def test_scope_requirement_denies_writes_without_the_scope(mode: str) -> None:
    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        assert "write_file" not in {t.name for t in (await client.list_tools(meta=as_("reader"))).tools}
        error = await _refusal(client, "write_file", {"path": "/data/acme/x", "content": "c"}, as_("reader"))
        assert error.code == -32003
        ok = await client.call_tool("write_file", {"path": "/data/acme/x", "content": "c"}, meta=as_("alice"))
        assert ok.is_error is False
    assert fs.sink.decisions()[0].rule == "writes-need-scope"
    assert fs.ran == ["write_file:/data/acme/x"]


# -- purpose and history -------------------------------------------------------------------------


async def test_purpose_condition_allows_only_the_declared_purpose(mode: str) -> None:
    fs = build_file_server()
    email = {"to": "help@acme.example", "body": "hello"}
    async with Client(fs.server, mode=mode) as client:
        support = as_("alice", task="t1", purpose="support")
        assert "send_email" in {t.name for t in (await client.list_tools(meta=support)).tools}
        assert (await client.call_tool("send_email", email, meta=support)).is_error is False
        error = await _refusal(client, "send_email", email, as_("alice", task="t1", purpose="marketing"))
        assert error.code == -32003
        # The purpose comes from the verified context, never from arguments: a caller who may not
        # see send_email is refused and learns nothing about its arguments.
        error = await _refusal(client, "send_email", {**email, "purpose": "support"}, as_("alice", task="t1"))
        assert error.code == -32003
        # Where the caller may see it, it is told that this is not an argument of the tool.
        error = await _refusal(client, "send_email", {**email, "purpose": "support"}, support)
        assert error.code == -32602
    assert fs.ran == ["send_email:help@acme.example"]


async def test_no_email_leaves_a_task_that_read_something_sensitive(mode: str) -> None:
    fs = build_file_server()
    email = {"to": "help@acme.example", "body": "hello"}
    async with Client(fs.server, mode=mode) as client:
        task_a = as_("alice", task="task-a", purpose="support")
        task_b = as_("alice", task="task-b", purpose="support")
        assert (await client.call_tool("send_email", email, meta=task_a)).is_error is False
        assert (await client.read_resource("secret://payroll", meta=task_a)).contents
        error = await _refusal(client, "send_email", email, task_a)
        assert error.code == -32003
        # Another task is unaffected. A listing inside a task sees its history exactly as a call
        # does: task-a no longer sees send_email, task-b still does.
        assert (await client.call_tool("send_email", email, meta=task_b)).is_error is False
        assert "send_email" not in {t.name for t in (await client.list_tools(meta=task_a)).tools}
        assert "send_email" in {t.name for t in (await client.list_tools(meta=task_b)).tools}
    assert fs.ran == ["send_email:help@acme.example", "secret://payroll", "send_email:help@acme.example"]
    refusal = [e for e in fs.sink.decisions() if e.effect == "deny"]
    assert [(e.rule, e.task_id) for e in refusal] == [("no-exfiltration", "task-a")]


async def test_history_condition_without_a_task_denies(mode: str) -> None:
    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        error = await _refusal(
            client, "send_email", {"to": "a@acme.example", "body": "b"}, as_("alice", purpose="support")
        )
    assert error.code == -32003
    assert fs.sink.decisions()[0].reason == "condition_unevaluable"


async def test_refused_requests_are_not_recorded_in_history(mode: str) -> None:
    """A sensitive read that was refused leaves no mark: globex cannot read payroll, so email still works."""
    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        meta = as_("bob", task="t", purpose="support")
        with pytest.raises(MCPError):
            await client.read_resource("secret://payroll", meta=meta)
        ok = await client.call_tool("send_email", {"to": "x@acme.example", "body": "b"}, meta=meta)
        assert ok.is_error is False


async def test_task_call_limit_and_delegation_depth(mode: str) -> None:
    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        meta = as_("alice", task="limited")
        for step in ("1", "2", "3"):
            assert (await client.call_tool("plan_step", {"step": step}, meta=meta)).is_error is False
        error = await _refusal(client, "plan_step", {"step": "4"}, meta)
        assert error.code == -32003
        # Delegation: one actor is fine, two are too deep (and the tool is hidden from them).
        assert (await client.call_tool("plan_step", {"step": "d1"}, meta=as_("sub-agent", task="d"))).is_error is False
        deep = as_("sub-sub-agent", task="d2")
        assert "plan_step" not in {t.name for t in (await client.list_tools(meta=deep)).tools}
        error = await _refusal(client, "plan_step", {"step": "d2"}, deep)
        assert error.code == -32003
    assert fs.ran == ["plan_step:1", "plan_step:2", "plan_step:3", "plan_step:d1"]


# -- rate limits ---------------------------------------------------------------------------------


async def test_rate_limit_per_principal_and_tool_with_a_frozen_clock(mode: str) -> None:
    clock = FrozenClock()
    fs = build_file_server(clock=clock)
    async with Client(fs.server, mode=mode) as client:
        for _ in range(2):
            assert (await client.call_tool("search", {"query": "q"}, meta=as_("alice"))).is_error is False
        # Listings never count against the limit.
        for _ in range(5):
            assert "search" in {t.name for t in (await client.list_tools(meta=as_("alice"))).tools}
        error = await _refusal(client, "search", {"query": "q"}, as_("alice"))
        assert error.code == -32003
        # Another principal has its own counter; the next window starts afresh.
        assert (await client.call_tool("search", {"query": "q"}, meta=as_("bob"))).is_error is False
        clock.now += 60
        assert (await client.call_tool("search", {"query": "q"}, meta=as_("alice"))).is_error is False
    denied = [e for e in fs.sink.decisions() if e.effect == "deny"]
    assert [(e.rule, e.reason, e.principal) for e in denied] == [("search", "rate_limited", f"{ACME}#alice")]
    assert fs.ran.count("search:q") == 4


class _BrokenStore(InMemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    async def get_many(self, keys: list[str]) -> list[str | None]:
        if self.broken:
            raise StateStoreError("down", reason="unavailable")
        return await super().get_many(keys)

    async def incr(self, key: str, ttl: float, amount: int = 1) -> int:
        if self.broken:
            raise StateStoreError("down", reason="unavailable")
        return await super().incr(key, ttl, amount)

    async def put(self, key: str, value: str, ttl: float) -> None:
        if self.broken:
            raise StateStoreError("down", reason="unavailable")
        await super().put(key, value, ttl)


async def test_a_failing_state_store_denies_history_and_rate_limited_requests(mode: str) -> None:
    store = _BrokenStore()
    fs = build_file_server(state=store)
    async with Client(fs.server, mode=mode) as client:
        store.broken = True
        for tool, args in (
            ("search", {"query": "q"}),
            ("send_email", {"to": "a@acme.example", "body": "b"}),
            ("plan_step", {"step": "1"}),
        ):
            error = await _refusal(client, tool, args, as_("alice", task="t", purpose="support"))
            assert error.code == -32003
        # A request that needs no state is unaffected, but its result is withheld when its history
        # cannot be recorded (a later decision must never see an incomplete history).
        with pytest.raises(MCPError) as caught:
            await client.read_resource("secret://payroll", meta=as_("alice", task="t"))
        assert caught.value.code == -32603
        assert "PAYROLL" not in repr(caught.value.error)
        ok = await client.call_tool("read_file", {"path": "/data/acme/x"}, meta=as_("alice"))
        assert ok.is_error is False
    assert fs.ran == ["secret://payroll", "read_file:/data/acme/x"]
    assert {e.rule for e in fs.sink.decisions() if e.effect == "deny"} == {"mcpgov:policy:state-unavailable"}


# -- decisions and audit -------------------------------------------------------------------------


async def test_decisions_name_rule_engine_and_policy_version(mode: str) -> None:
    fs = build_file_server()
    version = Policy.from_file(TWO_TENANTS).version
    async with Client(fs.server, mode=mode) as client:
        await client.call_tool("read_file", {"path": "/data/acme/x"}, meta=as_("alice"))
        await _refusal(client, "delete_everything", {}, as_("alice"))
    allow, deny = fs.sink.decisions()
    assert (allow.effect, allow.rule, allow.engine, allow.policy_version) == ("allow", "acme-files", "policy", version)
    assert (deny.effect, deny.rule, deny.reason, deny.policy_version) == (
        "deny",
        DEFAULT_DENY_RULE,
        "default_deny",
        version,
    )


async def test_empty_policy_denies_everything(mode: str) -> None:
    from .policies.support import POLICIES

    fs = build_file_server(POLICIES / "empty.yaml")
    async with Client(fs.server, mode=mode) as client:
        assert (await client.list_tools(meta=as_("alice"))).tools == []
        assert (await client.list_resources(meta=as_("alice"))).resources == []
        error = await _refusal(client, "read_file", {"path": "/data/acme/x"}, as_("alice"))
    assert error.code == -32003
    assert fs.ran == []


async def test_policy_over_streamable_http() -> None:
    fs = build_file_server()
    async with serve_http(fs.server.streamable_http_app()) as base, Client(f"{base}/mcp") as client:
        assert {t.name for t in (await client.list_tools(meta=as_("bob"))).tools} == {
            "read_file",
            "plan_step",
            "search",
        }
        assert (await client.call_tool("read_file", {"path": "/data/globex/x"}, meta=as_("bob"))).is_error is False
        with pytest.raises(MCPError) as caught:
            await client.call_tool("read_file", {"path": "/data/acme/x"}, meta=as_("bob"))
        assert caught.value.code == -32003
    assert fs.ran == ["read_file:/data/globex/x"]


# -- client side ---------------------------------------------------------------------------------


async def test_client_side_policy_refuses_before_anything_is_sent(mode: str) -> None:
    fs = build_file_server()
    agent_policy = Policy.from_yaml(
        """
rules:
  - id: agent-reads-only
    effect: allow
    tools: [read_file, search]
    when:
      purposes: [research]
      arguments:
        path: {path: {under: /data/acme/public}, optional: true}
""",
        source="agent.yaml",
    )
    client_sink = InMemoryAuditSink()
    agent = Principal(ACME, "alice", tenant="acme")
    async with GovernedClient(
        fs.server,
        PolicyMiddleware(agent_policy),
        audit=client_sink,
        principal=agent,
        purpose="research",
        task_id="agent-task",
        mode=mode,
    ) as client:
        listed = {t.name for t in (await client.list_tools(meta=as_("alice"))).tools}
        assert listed == {"read_file", "search"}
        with pytest.raises(MCPError) as caught:
            await client.call_tool("write_file", {"path": "/data/acme/public/x", "content": "c"}, meta=as_("alice"))
        assert caught.value.code == -32003
        with pytest.raises(MCPError):
            await client.call_tool("read_file", {"path": "/data/acme/private"}, meta=as_("alice"))
        ok = await client.call_tool("read_file", {"path": "/data/acme/public/x"}, meta=as_("alice"))
        assert ok.is_error is False
    # The server saw only the allowed call (and the listing).
    assert fs.ran == ["read_file:/data/acme/public/x"]
    assert [e.target for e in fs.sink.decisions()] == ["read_file"]
    client_denies = [(e.side, e.rule) for e in client_sink.decisions() if e.effect == "deny"]
    assert client_denies == [("client", DEFAULT_DENY_RULE), ("client", DEFAULT_DENY_RULE)]


async def test_unknown_tools_and_other_methods_are_default_denied(mode: str) -> None:
    """An unknown tool is default-denied; methods this server does not serve are the SDK's "Method
    not found", with no decision (protocol defaults: tests/test_protocol_plumbing.py)."""
    from .conftest import raw_request

    fs = build_file_server()
    async with Client(fs.server, mode=mode) as client:
        error = await _refusal(client, "no_such_tool", {}, as_("alice"))
        assert error.code == -32003
        with pytest.raises(MCPError) as caught:
            await raw_request(client, "logging/setLevel", {"level": "debug", "_meta": dict(as_("alice"))})
        assert caught.value.code == -32601
        with pytest.raises(MCPError) as caught:
            await raw_request(
                client,
                "completion/complete",
                {
                    "ref": {"type": "ref/prompt", "name": "jailbreak"},
                    "argument": {"name": "text", "value": "x"},
                    "_meta": dict(as_("alice")),
                },
            )
        # The SDK's own answer: its surface check of the params, or "Method not found".
        assert caught.value.code in (-32601, -32602)
        assert caught.value.data in ("completion/complete", "")
    rules = [(e.method, e.rule) for e in fs.sink.decisions()]
    assert rules == [("tools/call", DEFAULT_DENY_RULE)]


async def test_a_cancelled_sensitive_read_leaves_no_mark_in_task_history(mode: str) -> None:
    """A request cancelled while it runs is not recorded: the task's history holds only what completed."""
    import anyio
    from mcp.server.mcpserver import MCPServer

    from mcpgov import govern

    from .policies.support import LookupIdentity

    policy = Policy.from_yaml(
        """
version: 1
labels:
  sensitive: {resources: ["secret://*"]}
rules:
  - {id: read-secrets, effect: allow, tenants: [acme], resources: ["secret://*"]}
  - {id: email, effect: allow, tenants: [acme], tools: [send_email]}
  - id: no-exfiltration
    effect: deny
    tools: [send_email]
    when: {history: {seen_labels: [sensitive]}}
"""
    )
    server = MCPServer("files")
    started = anyio.Event()
    sent: list[str] = []

    @server.resource("secret://slow-report")
    async def slow_report() -> str:
        started.set()
        await anyio.sleep(10)
        return "REPORT"

    @server.tool()
    def send_email(to: str) -> str:
        sent.append(to)
        return "sent"

    sink = InMemoryAuditSink()
    govern(server, LookupIdentity(), PolicyMiddleware(policy), audit=sink)
    meta = as_("alice", task="t-cancel", purpose="support")
    async with Client(server, mode=mode) as client:
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                await client.read_resource("secret://slow-report", meta=meta)

            tg.start_soon(read)
            await started.wait()
            tg.cancel_scope.cancel()
        with anyio.fail_after(5):
            while not sink.outcomes():  # noqa: ASYNC110 - legacy cancellation arrives as a notification
                await anyio.sleep(0.01)
        # The read never completed, so the task has not "seen" anything sensitive.
        result = await client.call_tool("send_email", {"to": "help@acme.example"}, meta=meta)
    assert result.is_error is False
    assert sent == ["help@acme.example"]
    assert [e.outcome for e in sink.outcomes() if e.target == "secret://slow-report"] == ["cancelled"]
