"""End to end: a governed MCPServer driven by the SDK's own in-process Client, in both modes."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import ConfigurationError, Decision, GovContext, Hooks, govern
from mcpgov.testing import InMemoryAuditSink

from .conftest import Demo, build_demo

pytestmark = pytest.mark.anyio


async def test_allowed_tool_runs_and_is_audited_once_each(demo: Demo, mode: str) -> None:
    async with Client(demo.server, mode=mode) as client:
        result = await client.call_tool("read_file", {"path": "a.txt"})
    assert result.is_error is False
    assert demo.ran == ["read_file"]
    calls = demo.sink.for_target("read_file")
    assert [(e.type, e.effect, e.outcome) for e in calls] == [
        ("decision", "allow", None),
        ("outcome", None, "completed"),
    ]
    decision = calls[0]
    assert decision.rule == "allow-read"
    assert decision.args_hash is not None and decision.args_hash.startswith("sha256:")
    assert calls[1].latency_ms is not None and calls[1].latency_ms >= 0


async def test_denied_tool_never_runs_and_error_reveals_nothing(demo: Demo, mode: str) -> None:
    async with Client(demo.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1.2.3"})
    assert demo.ran == []
    error = caught.value
    assert error.code == -32003
    assert error.message == "Request denied"
    assert set(error.data) == {"code", "event"}
    assert error.data["code"] == "mcpgov.denied"
    # Neither the rule, nor its reason, reaches the caller.
    assert "no-deploys" not in repr(error.error) and "release role" not in repr(error.error)
    events = demo.sink.for_target("deploy")
    assert len(events) == 1
    (event,) = events
    assert (event.type, event.effect, event.rule, event.reason) == ("decision", "deny", "no-deploys", "missing_role")
    assert event.id == error.data["event"]


async def test_unmatched_tool_is_default_denied(mode: str) -> None:
    server = MCPServer("s")
    ran: list[str] = []

    @server.tool()
    def unguarded() -> str:
        ran.append("unguarded")
        return "x"

    hooks = Hooks()
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        assert (await client.list_tools()).tools == []
        with pytest.raises(MCPError) as caught:
            await client.call_tool("unguarded", {})
    assert caught.value.code == -32003
    assert ran == []
    assert sink.decisions()[0].rule == "mcpgov:default-deny"


async def test_listings_agree_with_use(demo: Demo, mode: str) -> None:
    async with Client(demo.server, mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert tools == {"read_file", "explode"}
        assert resources == {"docs://readme"}
        assert templates == {"docs://pages/{page}"}
        assert prompts == {"summarise"}
        # What is listed can be used; what is hidden cannot.
        assert (await client.read_resource("docs://readme")).contents
        assert (await client.read_resource("docs://pages/intro")).contents
        assert (await client.get_prompt("summarise", {"text": "t"})).messages
        for call in (
            client.read_resource("secret://keys"),
            client.get_prompt("jailbreak", {"text": "t"}),
            client.call_tool("deploy", {"version": "1"}),
        ):
            with pytest.raises(MCPError) as caught:
                await call
            assert caught.value.code == -32003
    assert "keys" not in demo.ran and "jailbreak" not in demo.ran and "deploy" not in demo.ran
    filtered = demo.sink.of_type("list.filtered")
    assert [e.method for e in filtered] == ["tools/list", "resources/list", "resources/templates/list", "prompts/list"]
    assert filtered[0].hidden == ("deploy",)
    assert filtered[1].hidden == ("secret://keys",)


async def test_hook_sees_discover_then_execute(mode: str) -> None:
    server = MCPServer("s")
    seen: list[tuple[str | None, Any]] = []

    @server.tool()
    def search(query: str) -> str:
        return query

    hooks = Hooks()

    @hooks.tool("search")
    def only_short_queries(ctx: GovContext) -> Decision:
        seen.append((ctx.action, ctx.arguments))
        if ctx.action == "discover":
            return Decision.allow("search-visible")
        query = ctx.arguments["query"] if ctx.arguments else ""
        return Decision.allow("short") if len(query) < 5 else Decision.deny("long", "query too long")

    govern(server, hooks)
    async with Client(server, mode=mode) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["search"]
        await client.call_tool("search", {"query": "ok"})
        with pytest.raises(MCPError):
            await client.call_tool("search", {"query": "far too long"})
    assert seen[0] == ("discover", None)
    assert ("execute", {"query": "ok"}) in [(a, dict(x) if x else x) for a, x in seen]


async def test_hook_cannot_change_the_arguments_that_run(mode: str) -> None:
    server = MCPServer("s")
    received: list[str] = []

    @server.tool()
    def echo(text: str) -> str:
        received.append(text)
        return text

    hooks = Hooks()

    @hooks.tool("echo")
    def tamper(ctx: GovContext) -> Decision:
        assert ctx.arguments is not None
        with pytest.raises(TypeError):
            ctx.arguments["text"] = "tampered"  # type: ignore[index]
        return Decision.allow("echo")

    govern(server, hooks)
    async with Client(server, mode=mode) as client:
        await client.call_tool("echo", {"text": "original"})
    assert received == ["original"]


@pytest.mark.parametrize(
    ("hook_kind", "reason"),
    [("raises", "authoriser_error"), ("returns_bool", "authoriser_invalid"), ("returns_none", "authoriser_invalid")],
)
async def test_broken_hooks_deny(mode: str, hook_kind: str, reason: str) -> None:
    server = MCPServer("s")
    ran: list[str] = []

    @server.tool()
    def work() -> str:
        ran.append("work")
        return "done"

    def broken(ctx: GovContext) -> Any:
        if hook_kind == "raises":
            raise RuntimeError("hook internals: db password hunter2")
        return True if hook_kind == "returns_bool" else None

    hooks = Hooks()
    hooks.register("work", broken, rule="broken-hook")
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        # A broken hook hides the tool and refuses the call.
        assert (await client.list_tools()).tools == []
        with pytest.raises(MCPError) as caught:
            await client.call_tool("work", {})
    assert ran == []
    assert caught.value.code == -32003
    assert "hunter2" not in str(caught.value.error)
    (event,) = sink.decisions()
    assert (event.effect, event.rule, event.reason) == ("deny", "broken-hook", reason)
    assert "hunter2" not in event.model_dump_json()


async def test_async_hook_past_its_deadline_denies_and_its_late_allow_is_discarded(mode: str) -> None:
    server = MCPServer("s")
    ran: list[str] = []
    finished: list[bool] = []

    @server.tool()
    def work() -> str:
        ran.append("work")
        return "done"

    hooks = Hooks(deadline=0.05)

    @hooks.tool("work")
    async def slow(ctx: GovContext) -> Decision:
        if ctx.action == "discover":
            return Decision.allow("visible")
        await anyio.sleep(1)
        finished.append(True)
        return Decision.allow("too-late")

    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        started = time.perf_counter()
        with pytest.raises(MCPError) as caught:
            await client.call_tool("work", {})
        assert time.perf_counter() - started < 0.9  # refused at the deadline, not after the hook
    assert caught.value.code == -32003
    assert ran == [] and finished == []
    assert sink.decisions()[0].reason == "authoriser_timeout"


async def test_sync_hook_past_its_deadline_denies(mode: str) -> None:
    server = MCPServer("s")
    ran: list[str] = []

    @server.tool()
    def work() -> str:
        ran.append("work")
        return "done"

    hooks = Hooks(deadline=0.02)

    @hooks.tool("work")
    def slow(ctx: GovContext) -> Decision:
        time.sleep(0.05)
        return Decision.allow("late")

    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("work", {})
    assert ran == []
    assert sink.decisions()[-1].reason == "authoriser_timeout"


async def test_failing_audit_callbacks_change_nothing_and_are_counted(mode: str) -> None:
    def sync_broken(event: object) -> None:
        raise OSError("disk full")

    async def async_broken(event: object) -> None:
        raise ValueError("sink down")

    good = InMemoryAuditSink()
    demo = build_demo(audit=[sync_broken, async_broken, good])
    async with Client(demo.server, mode=mode) as client:
        assert (await client.call_tool("read_file", {"path": "x"})).is_error is False
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.code == -32003
    assert demo.ran == ["read_file"]
    auditor = demo.middleware.governor.auditor
    # Every event the good sink got (allow, outcome, deny, and the SDK client's own tools/list
    # after a first call) failed in each of the two broken sinks, and was counted.
    assert [e.effect for e in good.decisions()] == ["allow", "deny"]
    assert auditor.sink_failures == 2 * len(good.events)
    assert auditor.events_emitted == len(good.events)


async def test_tool_failure_is_an_outcome_not_a_leak(demo: Demo, mode: str) -> None:
    async with Client(demo.server, mode=mode) as client:
        result = await client.call_tool("explode", {})
    assert result.is_error is True
    events = demo.sink.for_target("explode")
    assert [(e.type, e.outcome) for e in events] == [("decision", None), ("outcome", "failed")]


async def test_a_broken_middleware_fails_closed_without_leaking(mode: str) -> None:
    server = MCPServer("s")
    ran: list[str] = []

    @server.tool()
    def work() -> str:
        ran.append("work")
        return "done"

    async def broken_middleware(ctx: GovContext, call_next: Any) -> Any:
        raise RuntimeError("internal secret sk-live-123")

    hooks = Hooks()
    hooks.register("*", lambda ctx: Decision.allow("all"))
    sink = InMemoryAuditSink()
    govern(server, broken_middleware, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("work", {})
    assert ran == []
    assert caught.value.message == "Internal error"
    assert "sk-live" not in str(caught.value.error)
    (event,) = sink.decisions()
    assert (event.effect, event.reason) == ("deny", "middleware_error")


async def test_handshake_discovery_and_ping_pass_untouched(mode: str) -> None:
    server = MCPServer("s")
    hooks = Hooks()  # denies everything
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        if mode == "legacy":  # ping is gone from the 2026-07-28 protocol
            await client.send_ping()
        assert client.server_info is not None
    assert sink.events == []


def test_govern_refuses_a_chain_that_cannot_decide() -> None:
    with pytest.raises(ConfigurationError):
        govern(MCPServer("s"))


def test_govern_refuses_to_govern_twice() -> None:
    server = MCPServer("s")
    govern(server, Hooks())
    with pytest.raises(ConfigurationError):
        govern(server, Hooks())


def test_govern_refuses_what_is_not_a_server() -> None:
    with pytest.raises(ConfigurationError):
        govern(object(), Hooks())  # type: ignore[arg-type]


async def test_a_cancelled_call_is_audited_as_cancelled(mode: str) -> None:
    server = MCPServer("s")
    started = anyio.Event()
    finished: list[bool] = []

    @server.tool()
    async def slow() -> str:
        started.set()
        await anyio.sleep(10)
        finished.append(True)
        return "late"

    hooks = Hooks()
    hooks.register("slow", lambda ctx: Decision.allow("slow-ok"))
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        with anyio.move_on_after(5):
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    await client.call_tool("slow", {})

                tg.start_soon(call)
                await started.wait()
                tg.cancel_scope.cancel()
        with anyio.fail_after(5):
            while not sink.outcomes():  # noqa: ASYNC110 - legacy cancellation reaches the server as a notification
                await anyio.sleep(0.01)
    assert finished == []
    assert [(e.type, e.effect, e.outcome) for e in sink.for_target("slow")] == [
        ("decision", "allow", None),
        ("outcome", None, "cancelled"),
    ]
