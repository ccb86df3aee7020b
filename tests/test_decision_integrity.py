"""What is decided is exactly what runs, and nothing inside a request can crash or bypass governance.

Every test drives real SDK sessions (in-process in both protocol modes; Streamable HTTP where the
transport matters) the way an attacker would: the same value in other types and encodings, stages
that try to rewrite the request after a decision, stages raising what is not an ``Exception``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, Denied, GovContext, GovernedClient, Hooks, McpGovError, govern
from mcpgov.identity import IdentityMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, serve_http

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.anyio


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_thaw(v) for v in value]
    return value


class _Order:
    """A server whose ``cancel`` tool a hook denies for order 0, and whose ``run`` tool blocks ``rm``."""

    def __init__(self) -> None:
        self.server = MCPServer("orders")
        self.sink = InMemoryAuditSink()
        self.ran: list[Any] = []
        self.decided: list[Any] = []
        hooks = Hooks()

        @self.server.tool()
        def cancel(order: int, note: str = "") -> str:
            self.ran.append(("cancel", order, note))
            return "cancelled"

        @self.server.tool()
        def run(commands: list[str]) -> str:
            self.ran.append(("run", commands))
            return "ran"

        @self.server.tool()
        def refund(order: int = 0) -> str:
            self.ran.append(("refund", order))
            return "refunded"

        @hooks.tool("cancel")
        @hooks.tool("refund")
        def no_order_zero(ctx: GovContext) -> Decision:
            if ctx.action == "discover":
                return Decision.allow("orders are listed")
            assert ctx.arguments is not None
            self.decided.append(_thaw(ctx.arguments))
            if ctx.arguments.get("order") == 0:
                return Decision.deny("no-order-zero")
            return Decision.allow("orders")

        @hooks.tool("run")
        def no_rm(ctx: GovContext) -> Decision:
            if ctx.action == "discover":
                return Decision.allow("commands are listed")
            assert ctx.arguments is not None
            commands = ctx.arguments.get("commands")
            if isinstance(commands, (list, tuple)) and "rm" in commands:
                return Decision.deny("no-rm")
            return Decision.allow("commands")

        govern(self.server, hooks, audit=self.sink)


@pytest.mark.parametrize(
    "spelling",
    ["0", False, 0.0, "00", " 0", "0.0", "-0", [0], {"v": 0}, None, "1e-9999", True],
    ids=repr,
)
async def test_a_deny_on_a_value_cannot_be_walked_around_by_another_type(mode: str, spelling: Any) -> None:
    orders = _Order()
    async with Client(orders.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("cancel", {"order": spelling})
        # The session keeps serving: the honest value is decided on as sent.
        with pytest.raises(MCPError) as denied:
            await client.call_tool("cancel", {"order": 0})
        ok = await client.call_tool("cancel", {"order": 7})
    assert caught.value.code == -32602
    assert denied.value.code == -32003
    assert ok.is_error is False
    assert orders.ran == [("cancel", 7, "")]
    refusals = [e for e in orders.sink.for_target("cancel") if e.type == "decision" and e.effect == "deny"]
    assert refusals[0].reason in {"arguments_invalid", "arguments_converted"}


@pytest.mark.parametrize(
    "spelling", ['["rm"]', '["ls", "rm"]', ' ["rm"]', "rm", ["rm", 1], [["rm"]], {"0": "rm"}], ids=repr
)
async def test_a_block_list_over_a_list_cannot_be_bypassed_by_json_in_a_string(mode: str, spelling: Any) -> None:
    orders = _Order()
    async with Client(orders.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("run", {"commands": spelling})
    assert caught.value.code == -32602
    assert orders.ran == []


async def test_defaults_are_decided_on_as_they_will_run(mode: str) -> None:
    orders = _Order()
    async with Client(orders.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("refund", {})
        await client.call_tool("refund", {"order": 3})
    assert caught.value.code == -32003
    assert orders.decided == [{"order": 0}, {"order": 3}]
    assert orders.ran == [("refund", 3)]


@pytest.mark.parametrize("extra", [{"order": 1, "Order": 0}, {"order": 1, "admin": True}, {"order": 1, "__proto__": 0}])
async def test_unknown_arguments_are_refused(mode: str, extra: dict[str, Any]) -> None:
    orders = _Order()
    async with Client(orders.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("cancel", extra)
    assert caught.value.code == -32602
    assert orders.ran == []


async def test_invalid_arguments_are_refused_over_http_and_audited_with_the_caller(mode: str) -> None:
    orders = _Order()
    async with (
        serve_http(orders.server.streamable_http_app()) as base,
        Client(f"{base}/mcp", mode=mode) as client,
    ):
        with pytest.raises(MCPError) as caught:
            await client.call_tool("cancel", {"order": "0"})
        await client.call_tool("cancel", {"order": 5})
    assert caught.value.code == -32602
    assert "0" not in caught.value.message
    assert orders.ran == [("cancel", 5, "")]
    (refusal,) = [e for e in orders.sink.for_target("cancel") if e.effect == "deny"]
    assert refusal.reason in {"arguments_invalid", "arguments_converted"}


# -- middleware cannot reach live SDK objects nor swap what was decided ---------------------------------


async def test_no_stage_can_reach_the_sdk_request_or_swap_the_arguments(mode: str) -> None:
    server = MCPServer("s")
    ran: list[Any] = []
    seen: list[Any] = []

    @server.tool()
    def transfer(amount: int) -> str:
        ran.append(amount)
        return "ok"

    hooks = Hooks()
    hooks.tool("transfer")(
        lambda ctx: Decision.allow("small") if ctx.arguments["amount"] < 10 else Decision.deny("big")
    )

    async def rewriter(ctx: GovContext, call_next: Any) -> Any:
        seen.append(sorted(ctx.extensions))
        assert ctx.transport is not None
        with pytest.raises((AttributeError, TypeError)):
            ctx.transport.kind = "http"  # type: ignore[misc]
        with pytest.raises(TypeError):
            ctx.arguments["amount"] = 10_000  # type: ignore[index]
        # A stage after the decision swaps in other arguments: refused, nothing runs.
        return await call_next(ctx.replace(arguments=MappingProxyType({"amount": 10_000})))

    sink = InMemoryAuditSink()
    govern(server, hooks, rewriter, audit=sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("transfer", {"amount": 5})
    assert ran == []
    assert seen == [[]]
    assert caught.value.code != -32003 or caught.value.data["code"] != "mcpgov.allowed"
    (refusal,) = [e for e in sink.for_target("transfer") if e.effect == "deny"]
    assert refusal.reason == "arguments_changed"


# -- containment: anything short of an interpreter exit is a clean, audited refusal ---------------------


class Rogue(BaseException):
    """Not an ``Exception``: ``except Exception`` does not contain it."""


def _raiser(kind: str) -> Any:
    def raise_it() -> None:
        if kind == "base":
            raise Rogue("boom")
        if kind == "cancelled":
            raise asyncio.CancelledError
        if kind == "anyio-cancelled":
            raise anyio.get_cancelled_exc_class()("stray")
        if kind == "group":
            raise BaseExceptionGroup("g", [Rogue("a"), ValueError("b")])
        if kind == "stop":
            raise StopAsyncIteration
        raise RuntimeError(kind)

    return raise_it


_KINDS = ["base", "cancelled", "anyio-cancelled", "group", "stop", "runtime"]


def _contained_server(kind: str, where: str) -> tuple[MCPServer, InMemoryAuditSink, list[str]]:
    server = MCPServer("s")
    ran: list[str] = []
    sink = InMemoryAuditSink()

    @server.tool()
    def bad() -> str:
        ran.append("bad")
        return "bad"

    @server.tool()
    def good() -> str:
        ran.append("good")
        return "good"

    hooks = Hooks()
    raise_it = _raiser(kind)

    if where == "async-hook":

        @hooks.tool("bad")
        async def hook(ctx: GovContext) -> Decision:
            await anyio.lowlevel.checkpoint()
            raise_it()
            return Decision.allow("never")

    elif where == "sync-hook":

        @hooks.tool("bad")
        def sync_hook(ctx: GovContext) -> Decision:
            raise_it()
            return Decision.allow("never")

    hooks.tool("good")(lambda ctx: Decision.allow("good"))
    chain: list[Any] = [hooks]
    if where == "middleware":
        hooks.tool("bad")(lambda ctx: Decision.allow("bad"))

        async def stage(ctx: GovContext, call_next: Any) -> Any:
            if ctx.target == "bad":
                await anyio.lowlevel.checkpoint()
                raise_it()
            return await call_next(ctx)

        chain.append(stage)
    govern(server, *chain, audit=sink)
    return server, sink, ran


@pytest.mark.parametrize("where", ["sync-hook", "async-hook", "middleware"])
@pytest.mark.parametrize("kind", _KINDS)
async def test_any_stage_exception_is_a_clean_audited_deny_and_the_session_keeps_serving(
    mode: str, kind: str, where: str
) -> None:
    server, sink, ran = _contained_server(kind, where)
    async with Client(server, mode=mode) as client:
        for _ in range(2):
            with pytest.raises(MCPError) as caught:
                await client.call_tool("bad", {})
            assert caught.value.code in {-32003, -32603}
            assert "boom" not in repr(caught.value.error) and "Rogue" not in repr(caught.value.error)
        assert (await client.call_tool("good", {})).is_error is False
    assert ran == ["good"]
    refusals = [e for e in sink.for_target("bad") if e.type == "decision"]
    assert len(refusals) == 2
    assert all(e.effect == "deny" for e in refusals)


@pytest.mark.parametrize("kind", ["base", "cancelled", "group"])
async def test_a_rogue_stage_cannot_take_down_an_http_server(mode: str, kind: str) -> None:
    server, sink, ran = _contained_server(kind, "middleware")
    async with serve_http(server.streamable_http_app()) as base:
        for _ in range(2):
            async with Client(f"{base}/mcp", mode=mode) as client:
                with pytest.raises(MCPError):
                    await client.call_tool("bad", {})
                assert (await client.call_tool("good", {})).is_error is False
    assert ran == ["good", "good"]
    assert len([e for e in sink.for_target("bad") if e.effect == "deny"]) == 2


async def test_the_callers_own_cancellation_still_cancels(mode: str) -> None:
    server = MCPServer("s")
    started = anyio.Event()

    @server.tool()
    def slow() -> str:
        return "never"

    hooks = Hooks(deadline=30)

    @hooks.tool("slow")
    async def wait(ctx: GovContext) -> Decision:
        started.set()
        await anyio.sleep(30)
        return Decision.allow("late")

    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        with anyio.move_on_after(0.3):
            await client.call_tool("slow", {})
        assert started.is_set()
    # Nothing ran; whatever was recorded is not an allow.
    assert all(e.effect != "allow" for e in sink.for_target("slow"))


@pytest.mark.parametrize("sink_kind", ["sync", "async"])
async def test_a_final_check_refuses_right_before_the_effect(mode: str, sink_kind: str) -> None:
    server = MCPServer("s")
    ran: list[str] = []
    revoked = False

    @server.tool()
    def act() -> str:
        ran.append("act")
        return "done"

    hooks = Hooks()

    @hooks.tool("act")
    async def allow(ctx: GovContext) -> Decision:
        nonlocal revoked
        revoked = True  # something changes after the check was scheduled...
        return Decision.allow("act")

    async def last_moment(ctx: GovContext) -> None:
        if revoked:
            raise McpGovError("revoked meanwhile", reason="revoked")

    async def checker(ctx: GovContext, call_next: Any) -> Any:
        return await call_next(ctx.replace(final_checks=(*ctx.final_checks, last_moment)))

    sink = InMemoryAuditSink()

    async def async_sink(event: Any) -> None:
        await anyio.lowlevel.checkpoint()
        sink(event)

    govern(server, checker, hooks, audit=sink if sink_kind == "sync" else async_sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("act", {})
    assert ran == []
    events = [(e.type, e.effect, e.outcome, e.reason) for e in sink.for_target("act")]
    if sink_kind == "sync":
        # Recording cannot suspend: the last check runs before the decision is recorded, and the
        # refusal is the one decision.
        assert events == [("decision", "deny", None, "revoked")]
    else:
        # An asynchronous sink may suspend: the check runs after the allow was recorded, and the
        # outcome says the request did not run.
        assert events == [("decision", "allow", None, "allowed"), ("outcome", None, "failed", "revoked")]
        assert sink.for_target("act")[1].attributes.get("executed") is False


# -- property: refused before any decision, or the handler gets exactly what was decided ----------------

_TYPES = {
    "int": "int",
    "float": "float",
    "str": "str",
    "bool": "bool",
    "list_str": "list[str]",
    "dict_int": "dict[str, int]",
    "opt_int": "int | None",
    "union": "str | list[str]",
}

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=8)
    | st.sampled_from(["0", "1", "true", "[]", '["a"]', '{"a": 1}', "1.5", "null"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def _tool_and_arguments(draw: st.DrawFn) -> tuple[list[tuple[str, str, bool]], dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, min_size=1, max_size=3))
    params = [(n, draw(st.sampled_from(sorted(_TYPES))), draw(st.booleans())) for n in names]
    arguments: dict[str, Any] = {}
    for name, _, _ in params:
        if draw(st.booleans()):
            arguments[name] = draw(_json)
    if draw(st.integers(0, 9)) == 0:
        arguments["zz"] = draw(_json)
    return params, arguments


def _build_tool(params: list[tuple[str, str, bool]], received: list[dict[str, Any]]) -> Any:
    ordered = sorted(params, key=lambda p: p[2])  # required first
    signature = ", ".join(f"{n}: {_TYPES[t]}" + (" = None" if d else "") for n, t, d in ordered)
    namespace: dict[str, Any] = {"received": received}
    body = "    received.append(dict(locals()))\n    return 'ok'\n"
    exec(f"def tool({signature}) -> str:\n{body}", namespace)  # noqa: S102 - a generated test tool
    return namespace["tool"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_tool_and_arguments())
def test_property_handler_receives_exactly_what_was_decided(case: tuple[list[Any], dict[str, Any]]) -> None:
    params, arguments = case
    received: list[dict[str, Any]] = []
    decided: list[Any] = []
    server = MCPServer("p")
    server.tool(name="t")(_build_tool(params, received))
    hooks = Hooks()

    @hooks.tool("t")
    def record(ctx: GovContext) -> Decision:
        if ctx.action == "execute":
            decided.append(_thaw(ctx.arguments))
        return Decision.allow("record")

    govern(server, hooks)

    async def main() -> None:
        async with Client(server, mode="auto") as client:
            try:
                result = await client.call_tool("t", arguments)
            except MCPError as exc:
                code = exc.code
            else:
                code = 0
            if code:
                assert code == -32602
                assert decided == []  # refused before any decision to run it
                return
            assert decided, "an allowed call was decided on"
            if result.is_error:
                assert received == []
                return
            (got,) = received
            want = decided[0]
            assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
            for key, value in want.items():
                assert type(got[key]) is type(value), (key, got[key], value)

    anyio.run(main)


# -- a refusal from any stage names the caller known at that point ----------------------------------


@pytest.mark.parametrize("how", ["denied", "mcpgov-error", "rogue"])
async def test_a_refusal_after_identity_names_the_caller(mode: str, how: str) -> None:
    issuer = IdentityIssuer(audience="urn:orders")
    server = MCPServer("orders")
    server.add_tool(lambda: "x", name="act")
    hooks = Hooks()
    hooks.tool("*")(lambda ctx: Decision.allow("all"))

    async def refuser(ctx: GovContext, call_next: Any) -> Any:
        if ctx.target == "act":
            if how == "denied":
                raise Denied(Decision.deny("quota", "over quota", "quota"))
            if how == "mcpgov-error":
                raise McpGovError("nope", reason="nope")
            raise Rogue("boom")
        return await call_next(ctx)

    sink = InMemoryAuditSink()
    govern(server, IdentityMiddleware(issuer.verifier(tenant_claim="tenant")), refuser, hooks, audit=sink)
    token = issuer.token("agent-7", tenant="acme")
    async with GovernedClient(server, identity=token, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("act", {})
    (refusal,) = [e for e in sink.for_target("act") if e.type == "decision"]
    assert refusal.effect == "deny"
    assert refusal.tenant == "acme"
    assert refusal.principal is not None and "agent-7" in str(refusal.principal)


# -- a blocking synchronous hook, offloaded, does not stall anyone else ----------------------------------


async def test_an_offloaded_blocking_hook_does_not_stall_other_requests(mode: str) -> None:
    import threading

    server = MCPServer("s")
    release = threading.Event()
    ran: list[str] = []

    @server.tool()
    def slow() -> str:
        ran.append("slow")
        return "slow"

    @server.tool()
    def fast() -> str:
        ran.append("fast")
        return "fast"

    hooks = Hooks(deadline=0.5, offload=True)

    @hooks.tool("slow")
    def blocking(ctx: GovContext) -> Decision:
        release.wait(30)  # blocks its thread until the other requests were served
        return Decision.allow("late")

    hooks.tool("fast")(lambda ctx: Decision.allow("fast"))
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    outcome: list[Any] = []
    async with Client(server, mode=mode) as slow_client, Client(server, mode=mode) as fast_client:

        async def call_slow() -> None:
            try:
                await slow_client.call_tool("slow", {})
            except MCPError as exc:
                outcome.append(exc.code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call_slow)
            for _ in range(10):
                assert (await fast_client.call_tool("fast", {})).is_error is False
            served_while_blocked = not release.is_set()
        release.set()
    assert served_while_blocked
    assert outcome == [-32003]  # past its deadline: denied, its late answer discarded
    assert ran.count("fast") == 10 and "slow" not in ran
    (refusal,) = [e for e in sink.for_target("slow") if e.type == "decision"]
    assert refusal.reason == "authoriser_timeout"


async def test_a_caller_mutating_its_arguments_mid_chain_changes_nothing_sent(mode: str) -> None:
    server = MCPServer("s")
    received: list[str] = []

    @server.tool()
    def read(path: str) -> str:
        received.append(path)
        return path

    hooks = Hooks()
    hooks.tool("*")(lambda ctx: Decision.allow("all"))
    govern(server, hooks)
    arguments: dict[str, Any] = {"path": "/data/public"}
    entered = anyio.Event()
    proceed = anyio.Event()
    client_hooks = Hooks(deadline=5)

    @client_hooks.tool("read")
    async def check(ctx: GovContext) -> Decision:
        entered.set()
        await proceed.wait()
        assert ctx.arguments is not None
        return Decision.allow("public") if ctx.arguments["path"].startswith("/data/public") else Decision.deny("p")

    async with GovernedClient(server, client_hooks, mode=mode) as client, anyio.create_task_group() as tg:
        tg.start_soon(client.call_tool, "read", arguments)
        await entered.wait()
        arguments["path"] = "/etc/shadow"  # after the chain froze it, before it decided
        proceed.set()
    assert received == ["/data/public"]


@pytest.mark.parametrize("kind", ["base", "cancelled", "group"])
async def test_a_rogue_audit_sink_or_approver_is_contained(mode: str, kind: str) -> None:
    from mcpgov.approval import ApprovalMiddleware

    raise_it = _raiser(kind)
    server = MCPServer("s")
    ran: list[str] = []

    def plain() -> str:
        ran.append("plain")
        return "ok"

    def risky() -> str:
        ran.append("risky")
        return "ok"

    server.add_tool(plain)
    server.add_tool(risky)
    hooks = Hooks()
    hooks.tool("plain")(lambda ctx: Decision.allow("plain"))
    hooks.tool("risky")(lambda ctx: Decision.require_approval("risky", "needs a person"))

    def rogue_sink(event: Any) -> None:
        raise_it()

    async def rogue_approver(request: Any, ctx: GovContext) -> Any:
        raise_it()

    sink = InMemoryAuditSink()
    govern(server, ApprovalMiddleware(rogue_approver, deadline=2), hooks, audit=[rogue_sink, sink])
    async with Client(server, mode=mode) as client:
        assert (await client.call_tool("plain", {})).is_error is False
        with pytest.raises(MCPError) as caught:
            await client.call_tool("risky", {})
        assert (await client.call_tool("plain", {})).is_error is False
    # Refused cleanly: denied, or (its approval request could not be recorded) audit unavailable.
    assert caught.value.code in {-32003, -32004, -32006}
    assert ran == ["plain", "plain"]
    assert [e.effect for e in sink.for_target("risky") if e.type == "decision"][-1] == "deny"
