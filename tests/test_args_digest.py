"""The argument hash is computed when first read, once per side; every check stays at freeze time."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import AuditEvent, Auditor, Decision, GovContext, GovernedClient, Hooks, InvalidRequest, govern
from mcpgov._arguments import ArgsDigest, ArgumentLimits, freeze_lazily
from mcpgov._context import args_hash_source
from mcpgov._governor import Governor
from mcpgov.audit import QueuedSink

pytestmark = pytest.mark.anyio

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(arguments=st.dictionaries(st.text(max_size=8), _JSON, max_size=5))
def test_a_deferred_hash_reads_as_the_canonical_hash(arguments: dict[str, Any]) -> None:
    frozen, digest = freeze_lazily(arguments, ArgumentLimits())
    assert isinstance(digest, ArgsDigest)
    expected = "sha256:" + hashlib.sha256(rfc8785.dumps(arguments)).hexdigest()
    ctx = GovContext(side="server", method="tools/call", arguments=frozen, args_hash=digest)  # type: ignore[arg-type]
    copy = ctx.replace(target="t")
    assert args_hash_source(copy) is digest  # copies keep it deferred
    assert copy.args_hash == expected == ctx.args_hash
    assert args_hash_source(copy) == expected  # kept once read


@pytest.mark.parametrize(
    "arguments",
    [{"a": "\ud800"}, {"a": "x" * 100 + "\udfff"}, {"a": {"\ud800": 1}}, {"a": ["ok", "\udc00"]}],
)
async def test_text_with_no_unicode_form_is_refused_before_anything_is_hashed(arguments: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        freeze_lazily(arguments, ArgumentLimits())
    assert caught.value.reason == "argument_invalid"
    with pytest.raises(InvalidRequest):
        await Governor("client", []).begin("tools/call", arguments)


async def test_a_client_with_no_audit_sink_never_hashes_and_the_server_hashes_once(mode: str) -> None:
    server = MCPServer("digest")
    seen: list[GovContext] = []

    @server.tool()
    async def echo(text: str) -> int:
        return len(text)

    def allow(ctx: GovContext) -> Any:
        seen.append(ctx)
        return Decision.allow("digest")

    hooks = Hooks()
    hooks.register("echo", allow, kind="tool")
    events: list[Any] = []
    govern(server, hooks, audit=events.append)
    client_contexts: list[GovContext] = []

    async def watch(ctx: GovContext, call_next: Any) -> Any:
        client_contexts.append(ctx)
        return await call_next(ctx)

    async with GovernedClient(server, watch, mode=mode) as client:
        result = await client.call_tool("echo", {"text": "hello"})
    assert result.structured_content == {"result": 5}
    (client_ctx,) = [c for c in client_contexts if c.method == "tools/call"]
    assert isinstance(args_hash_source(client_ctx), ArgsDigest)
    assert args_hash_source(client_ctx)._value is None  # type: ignore[union-attr]  # never computed
    expected = "sha256:" + hashlib.sha256(rfc8785.dumps({"text": "hello"})).hexdigest()
    assert [e.args_hash for e in events if e.type in ("decision", "outcome")] == [expected, expected]
    assert seen and seen[0].args_hash == expected


# --- long arguments: hashed by a queued sink's worker, off the call path ---------------------------------


def _canonical_hash(arguments: Any) -> str:
    return "sha256:" + hashlib.sha256(rfc8785.dumps(arguments)).hexdigest()


class _HeldWorker:
    """A sink for a :class:`QueuedSink` whose worker can be held inside a delivery."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self, event: AuditEvent) -> None:
        if event.reason == "hold-worker":
            self.holding.set()
            self.release.wait(30)
            return
        self.events.append(event)


async def test_long_arguments_are_hashed_by_the_queued_worker_not_on_the_call_path(mode: str) -> None:
    held = _HeldWorker()
    queued = QueuedSink(held, linger=0.01)
    auditor = Auditor([queued])
    server = MCPServer("long")
    contexts: list[GovContext] = []

    @server.tool()
    async def size(blob: dict[str, Any]) -> int:
        blob["text"] = "changed by the tool"  # the tool's own copy: what was decided is recorded
        return 1

    def allow(ctx: GovContext) -> Decision:
        contexts.append(ctx)
        return Decision.allow("long")

    hooks = Hooks()
    hooks.register("size", allow, kind="tool")
    govern(server, hooks, audit=auditor)
    arguments = {"blob": {"text": 'é"\\\n' * 20_000, "n": [1, 2.5, None]}}
    try:
        await auditor.emit(AuditEvent._trusted({"id": "hold", "type": "decision", "reason": "hold-worker"}))
        assert await anyio.to_thread.run_sync(held.holding.wait, 30)  # the worker is held in a delivery
        async with Client(server, mode=mode) as client:
            result = await client.call_tool("size", arguments)
        assert result.structured_content == {"result": 1}
        (ctx,) = [c for c in contexts if c.method == "tools/call" and c.action == "execute"]
        digest = args_hash_source(ctx)
        assert isinstance(digest, ArgsDigest) and digest.deferrable
        assert not digest.computed  # the call returned; nothing on its path hashed the arguments
    finally:
        held.release.set()
    assert await auditor.aflush()
    recorded = [e for e in held.events if e.target == "size" and e.type in ("decision", "outcome")]
    assert [e.type for e in recorded] == ["decision", "outcome"]
    assert {e.args_hash for e in recorded} == {_canonical_hash(arguments)}
    auditor.close()


async def test_a_sink_on_the_call_path_never_sees_a_deferred_hash(mode: str) -> None:
    # One direct sink beside a queued one: the hash is computed before any sink gets the event.
    direct: list[AuditEvent] = []
    behind: list[AuditEvent] = []
    auditor = Auditor([QueuedSink(behind.append), direct.append])
    server = MCPServer("mixed")

    @server.tool()
    async def size(blob: str) -> int:
        return len(blob)

    hooks = Hooks()
    hooks.register("size", lambda ctx: Decision.allow("mixed"), kind="tool")
    govern(server, hooks, audit=auditor)
    blob = "x" * 40_000
    async with Client(server, mode=mode) as client:
        await client.call_tool("size", {"blob": blob})
    assert await auditor.aflush()
    auditor.close()
    expected = _canonical_hash({"blob": blob})
    for events in (direct, behind):
        hashes = [e.args_hash for e in events if e.target == "size" and e.type in ("decision", "outcome")]
        assert hashes == [expected, expected]
        assert all(type(e.__dict__["args_hash"]) is str for e in events if e.args_hash is not None)


_LONG_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=25, deadline=None)
@given(
    extra=st.dictionaries(st.text(max_size=6), _LONG_JSON, max_size=3),
    filler=st.text(min_size=1, max_size=3),
    repeat=st.integers(8_000, 40_000),
)
async def test_what_a_queued_sink_records_is_the_hash_of_what_was_decided(
    extra: dict[str, Any], filler: str, repeat: int
) -> None:
    arguments = {**extra, "long": filler * repeat}
    frozen, digest = freeze_lazily(arguments, ArgumentLimits())
    assert digest is not None and frozen is not None
    events: list[AuditEvent] = []
    auditor = Auditor([QueuedSink(events.append)])
    governor = Governor("server", [], audit=auditor)
    ctx = await governor.begin("tools/call", arguments, kind="tool", target="t", action="execute")
    arguments.clear()  # the caller's dict changing afterwards changes nothing recorded

    async def terminal(c: GovContext) -> str:
        return "ran"

    assert await governor.run(ctx, terminal) == "ran"
    assert await auditor.aflush()
    auditor.close()
    expected = _canonical_hash({**extra, "long": filler * repeat})
    assert [e.args_hash for e in events if e.type in ("decision", "outcome")] == [expected, expected]
