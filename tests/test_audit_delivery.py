"""Delivery guarantees through real SDK sessions: one decision and one outcome per call, failing,
slow and full sinks, strict mode, flush at shutdown, values that cannot be serialised."""

from __future__ import annotations

import errno
import gc
import logging
import os
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

import mcpgov.audit._jsonl
from mcpgov import AuditEvent, Auditor, AuditUnavailable, ConfigurationError, Decision, GovContext, Hooks, govern
from mcpgov.audit import FanOut, JsonlSink, LoggingSink, QueuedSink, read_events, verify_chain
from mcpgov.audit._jsonl import encode_event
from mcpgov.testing import InMemoryAuditSink, serve_http
from tests.conftest import build_demo

pytestmark = pytest.mark.anyio


def build_server(auditor: Auditor | InMemoryAuditSink, *, deadline: float = 0.5) -> tuple[MCPServer, list[str]]:
    """A governed server: ``ok`` (allowed), ``nope`` (denied), ``boom`` (raises), ``hang`` (never returns),
    ``slow_rule`` (its hook outlives the deadline)."""
    server = MCPServer("delivery")
    hooks = Hooks(deadline=deadline)
    ran: list[str] = []

    @server.tool()
    def ok(x: int = 0) -> str:
        ran.append("ok")
        return "fine"

    @server.tool()
    def nope() -> str:
        ran.append("nope")
        return "should not run"

    @server.tool()
    def boom() -> str:
        ran.append("boom")
        raise RuntimeError("internal")

    @server.tool()
    async def hang() -> str:
        ran.append("hang")
        await anyio.sleep(30)
        return "late"

    @server.tool()
    def slow_rule() -> str:
        ran.append("slow_rule")
        return "late"

    @hooks.tool("ok")
    @hooks.tool("boom")
    @hooks.tool("hang")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("allow-listed")

    @hooks.tool("nope")
    def deny(ctx: GovContext) -> Decision:
        return Decision.deny("no-nope", "never", "forbidden")

    @hooks.tool("slow_rule")
    async def slow(ctx: GovContext) -> Decision:
        if ctx.action == "execute":  # listings stay quick
            await anyio.sleep(5)
        return Decision.allow("too-late")

    govern(server, hooks, audit=auditor)
    return server, ran


def per_call(events: list[AuditEvent], target: str) -> list[tuple[str, str | None]]:
    return [(e.type, e.effect or e.outcome) for e in events if e.target == target]


async def wait_for(predicate: Any, seconds: float = 5.0) -> None:
    with anyio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 - polling a worker thread's result
            await anyio.sleep(0.005)


async def exercise(server: MCPServer, mode: str) -> dict[str, int]:
    """Allow, deny, error, authoriser timeout and call timeout; returns the error codes by tool."""
    codes: dict[str, int] = {}
    async with Client(server, mode=mode) as client:
        assert (await client.call_tool("ok", {"x": 1})).is_error is False
        assert (await client.call_tool("boom", {})).is_error is True
        for name in ("nope", "slow_rule"):
            with pytest.raises(MCPError) as caught:
                await client.call_tool(name, {})
            codes[name] = caught.value.error.code
        with pytest.raises(MCPError):
            await client.call_tool("hang", {}, read_timeout_seconds=0.05)
    return codes


@pytest.mark.parametrize("queued", [False, True], ids=["direct", "queued"])
async def test_one_decision_and_one_outcome_per_call_for_allow_deny_error_and_timeout(mode: str, queued: bool) -> None:
    sink = InMemoryAuditSink()
    auditor = Auditor([QueuedSink(sink)]) if queued else Auditor([sink])
    server, ran = build_server(auditor, deadline=0.05)
    codes = await exercise(server, mode)
    # The queued sink is flushed when the server's lifespan ends with the client; the cancelled
    # call's outcome is recorded by the server once the cancellation reaches it.
    await wait_for(lambda: any(e.target == "hang" and e.type == "outcome" for e in sink.events))
    assert codes == {"nope": -32003, "slow_rule": -32003}
    assert per_call(sink.events, "ok") == [("decision", "allow"), ("outcome", "completed")]
    assert per_call(sink.events, "boom") == [("decision", "allow"), ("outcome", "failed")]
    assert per_call(sink.events, "nope") == [("decision", "deny")]
    assert per_call(sink.events, "slow_rule") == [("decision", "deny")]
    assert per_call(sink.events, "hang") == [("decision", "allow"), ("outcome", "cancelled")]
    assert [e.reason for e in sink.events if e.target == "slow_rule"] == ["authoriser_timeout"]
    assert sorted(ran) == ["boom", "hang", "ok"]
    stats = auditor.stats()
    assert stats.lost == 0
    assert stats.emitted == len(sink.events)
    auditor.close()


async def test_queued_events_are_flushed_when_the_http_server_shuts_down(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    auditor = Auditor([QueuedSink(JsonlSink(path))])
    server, _ = build_server(auditor)
    async with serve_http(server.streamable_http_app()) as base, Client(f"{base}/mcp", mode="legacy") as client:
        for _ in range(5):
            await client.call_tool("ok", {})
    # No explicit flush: the app's lifespan ended and flushed the queue.
    events = read_events([path])
    assert Counter(e.type for e in events if e.target == "ok") == {"decision": 5, "outcome": 5}
    assert verify_chain([path]).ok
    assert auditor.close()


async def test_failing_queued_sink_changes_no_decision_and_every_failure_is_counted(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: AuditEvent) -> None:
        raise OSError(28, "No space left on device")

    good = InMemoryAuditSink()
    queue = QueuedSink(broken)
    auditor = Auditor([good, queue])
    server, ran = build_server(auditor)
    with caplog.at_level(logging.ERROR, logger="mcpgov.audit"):
        async with Client(server, mode=mode) as client:
            assert (await client.call_tool("ok", {"x": 41})).is_error is False
            assert (await client.call_tool("ok", {"x": 42})).is_error is False
            with pytest.raises(MCPError) as caught:
                await client.call_tool("nope", {})
            assert caught.value.error.code == -32003
        assert auditor.flush(5.0)
    assert ran == ["ok", "ok"]
    assert queue.failed == queue.enqueued == len(good.events)
    assert auditor.stats().lost == len(good.events)
    assert "ENOSPC" in caplog.text
    assert "42" not in caplog.text.replace(str(queue.failed), "")  # no event content in the logs
    auditor.close()


async def test_strict_mode_refuses_a_call_whose_decision_cannot_be_written(mode: str) -> None:
    good = InMemoryAuditSink()
    down = {"on": True}

    async def flaky(event: AuditEvent) -> None:
        if down["on"]:
            raise ConnectionError("collector unreachable")

    auditor = Auditor([good, flaky], strict=True)
    server, ran = build_server(auditor)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("ok", {})
        assert caught.value.error.code == -32006
        assert caught.value.error.data == {"code": "mcpgov.audit_unavailable", "event": good.events[-1].id}
        down["on"] = False
        assert (await client.call_tool("ok", {})).is_error is False
    assert ran == ["ok"]  # the refused call never ran
    first, second = per_call(good.events, "ok")[:2], per_call(good.events, "ok")[2:]
    # Still exactly one decision and one outcome: the allow that could not be recorded
    # everywhere, and an outcome saying the call did not run.
    assert first == [("decision", "allow"), ("outcome", "failed")]
    refused = good.outcomes()[0]
    assert (refused.reason, refused.error_code, refused.attributes) == (
        "audit_unavailable",
        "mcpgov.audit_unavailable",
        {"executed": False},
    )
    assert second == [("decision", "allow"), ("outcome", "completed")]
    assert auditor.refused == 1


async def test_strict_mode_refuses_calls_while_a_queued_sink_is_failing(mode: str) -> None:
    good = InMemoryAuditSink()
    down = {"on": False}

    def flaky(event: AuditEvent) -> None:
        if down["on"]:
            raise OSError(5, "Input/output error")

    queue = QueuedSink(flaky)
    auditor = Auditor([good, queue], strict=True)
    server, ran = build_server(auditor)
    async with Client(server, mode=mode) as client:
        await client.list_tools()  # the SDK client lists tools once, after its first call otherwise
        assert (await client.call_tool("ok", {})).is_error is False
        assert auditor.flush(5.0)
        down["on"] = True
        # The queue accepts this call's events; its worker then fails to write them.
        assert (await client.call_tool("ok", {})).is_error is False
        assert auditor.flush(5.0)
        assert not queue.healthy
        with pytest.raises(MCPError) as caught:
            await client.call_tool("ok", {})
        assert caught.value.error.code == -32006
        assert auditor.flush(5.0)
        down["on"] = False
        # Still refused until an event is written again: the refusal's own event is the probe.
        with pytest.raises(MCPError):
            await client.call_tool("ok", {})
        assert auditor.flush(5.0)
        assert auditor.available()
        assert (await client.call_tool("ok", {})).is_error is False
    assert ran == ["ok", "ok", "ok"]
    refusals = [(e.rule, e.reason) for e in good.decisions() if e.effect == "deny"]
    assert refusals == [("mcpgov:audit_unavailable", "audit_unavailable")] * 2
    assert auditor.refused == 2
    assert queue.failed == 3  # the second call's decision and outcome, and the first refusal
    auditor.close()


async def _until_unhealthy(queue: QueuedSink) -> None:
    with anyio.fail_after(10):
        while queue.healthy:  # noqa: ASYNC110 - health is a property: polled, as an operator would
            await anyio.sleep(0.02)


@pytest.mark.parametrize("stuck_in", ["write", "write_batch", "async-write", "tick"])
async def test_strict_mode_refuses_once_a_queued_write_hangs_past_max_lag(mode: str, stuck_in: str) -> None:
    """A sink that hangs writes nothing while its queue still has room: past ``max_lag`` the queue
    is unhealthy and strict audit refuses, instead of running calls whose events may never be
    written; healthy again once the write returns."""
    release = threading.Event()
    entered = threading.Event()
    holding = {"on": False}

    def hold() -> None:
        if holding["on"]:
            entered.set()
            release.wait(30)

    class Sink:
        def __call__(self, event: AuditEvent) -> None:
            hold()

    class BatchSink:
        def __call__(self, event: AuditEvent) -> None:
            hold()

        def write_batch(self, events: Sequence[AuditEvent]) -> None:
            hold()

    class AsyncSink:
        async def __call__(self, event: AuditEvent) -> None:
            await anyio.to_thread.run_sync(hold)

    class TickingSink(Sink):
        def tick(self) -> None:
            hold()

    kinds: dict[str, Any] = {"write": Sink, "write_batch": BatchSink, "async-write": AsyncSink, "tick": TickingSink}
    sink = kinds[stuck_in]()
    queue = QueuedSink(sink, max_lag=0.3, linger=0.01)
    auditor = Auditor([queue], strict=True)
    server, ran = build_server(auditor)
    try:
        async with Client(server, mode=mode) as client:
            await client.list_tools()
            assert auditor.flush(5.0)
            holding["on"] = True
            if stuck_in != "tick":
                assert (await client.call_tool("ok", {})).is_error is False  # queued: the worker then hangs on it
            with anyio.fail_after(10):
                await anyio.to_thread.run_sync(entered.wait, 10)
            await _until_unhealthy(queue)
            with pytest.raises(MCPError) as caught:
                await client.call_tool("ok", {})
            assert caught.value.error.code == -32006
            holding["on"] = False
            release.set()
            assert await anyio.to_thread.run_sync(auditor.flush, 10.0)
            assert queue.healthy
            assert (await client.call_tool("ok", {})).is_error is False
    finally:
        release.set()
        auditor.close(5.0)
    assert ran == ["ok", "ok"] if stuck_in != "tick" else ["ok"]
    assert auditor.refused == 1


@pytest.mark.parametrize("strict", [True, False])
async def test_an_async_sink_that_never_answers_holds_no_call(
    mode: str, strict: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A direct asynchronous sink that never returns is cancelled after ``sink_timeout``: under
    strict audit the call is refused and does not run; otherwise it runs and the failure is counted."""
    good = InMemoryAuditSink()

    async def silent(event: AuditEvent) -> None:
        await anyio.sleep_forever()

    auditor = Auditor([good, silent], strict=strict, sink_timeout=0.2)
    server, ran = build_server(auditor)
    with caplog.at_level(logging.ERROR, logger="mcpgov"), anyio.fail_after(20):
        async with Client(server, mode=mode) as client:
            if strict:
                with pytest.raises(MCPError) as caught:
                    await client.call_tool("ok", {})
                assert caught.value.error.code == -32006
            else:
                assert (await client.call_tool("ok", {})).is_error is False
    assert ran == ([] if strict else ["ok"])
    assert auditor.sink_failures >= 1
    assert good.decisions()  # the other sink got the decision
    assert "AuditUnavailable (sink_timeout)" in caplog.text


@pytest.mark.parametrize("bad", [0, -1, 0.0, float("nan"), float("inf"), True, "5", None])
def test_delivery_bounds_must_be_positive_finite_seconds(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_lag"):
        QueuedSink(InMemoryAuditSink(), max_lag=bad)
    with pytest.raises(ConfigurationError, match="sink_timeout"):
        Auditor([InMemoryAuditSink()], sink_timeout=bad)


async def test_full_queue_drops_are_counted_and_logged_and_strict_mode_refuses(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Event()
    gate.set()
    written: list[AuditEvent] = []

    def blocked(event: AuditEvent) -> None:
        gate.wait(10)
        written.append(event)

    queue = QueuedSink(blocked, maxsize=2)
    auditor = Auditor([queue], strict=True)
    server, ran = build_server(auditor)
    codes: list[int] = []
    with caplog.at_level(logging.ERROR, logger="mcpgov.audit"):
        async with Client(server, mode=mode) as client:
            await client.list_tools()
            assert auditor.flush(5.0)
            gate.clear()  # the sink stops writing: the queue fills up
            for _ in range(5):
                try:
                    await client.call_tool("ok", {})
                except MCPError as exc:
                    codes.append(exc.error.code)
                    break
            gate.set()
        assert auditor.flush(5.0)
    assert codes == [-32006]
    assert 1 <= len(ran) <= 3  # the calls before the queue filled up ran; the refused one did not
    stats = auditor.stats()
    assert stats.dropped >= 1
    gaps = [e for e in written if e.type == "audit.gap"]
    assert stats.dropped + len(written) - len(gaps) == stats.emitted  # every event written or counted as dropped
    assert sum(e.attributes["lost"] for e in gaps) == stats.dropped  # and the sink was told what it missed
    assert "dropped an event (queue_full)" in caplog.text
    auditor.close()


async def test_slow_sink_behind_a_queue_does_not_hold_up_calls(mode: str) -> None:
    gate = threading.Event()
    got: list[AuditEvent] = []

    def slow(event: AuditEvent) -> None:
        gate.wait(10)
        got.append(event)

    auditor = Auditor([QueuedSink(slow)])
    server, ran = build_server(auditor)
    async with Client(server, mode=mode) as client:
        for _ in range(10):
            await client.call_tool("ok", {})
        assert ran == ["ok"] * 10
        assert got == []  # the sink has not finished one event, yet every call completed
        gate.set()
    assert auditor.flush(5.0)
    assert Counter(e.type for e in got if e.target == "ok") == {"decision": 10, "outcome": 10}
    auditor.close()


class FullDisk:
    """The ``os`` module as the log sink sees it on a full disk: every write fails with ENOSPC."""

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    @staticmethod
    def write(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_full_disk_never_breaks_the_call_and_is_counted(
    tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = InMemoryAuditSink()
    disk = JsonlSink(tmp_path / "audit.jsonl", max_bytes=None)
    monkeypatch.setattr(mcpgov.audit._jsonl, "os", FullDisk())
    auditor = Auditor([good, disk])
    server, ran = build_server(auditor)
    with caplog.at_level(logging.ERROR, logger="mcpgov.audit"):
        async with Client(server, mode=mode) as client:
            assert (await client.call_tool("ok", {})).is_error is False
    assert ran == ["ok"]
    assert auditor.sink_failures == len(good.events) >= 2
    assert disk.seq == 0 and not disk.last_write_ok  # the chain did not advance over lost lines
    assert "ENOSPC" in caplog.text


async def test_log_file_that_becomes_unwritable_is_counted_and_the_chain_survives(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    good = InMemoryAuditSink()
    auditor = Auditor([good, sink])
    server, _ = build_server(auditor)
    async with Client(server, mode=mode) as client:
        await client.call_tool("ok", {})
        sink.close()
        path.rename(tmp_path / "moved.jsonl")
        path.mkdir()  # the log's path is now a directory: reopening fails
        await client.call_tool("ok", {})
        path.rmdir()
        (tmp_path / "moved.jsonl").rename(path)
        await client.call_tool("ok", {})
    assert auditor.sink_failures == 2  # the second call's decision and outcome
    report = verify_chain([path])
    # The chain is intact and records the loss: one audit.gap line, reported by verify.
    assert [p.kind for p in report.problems] == ["lost"], report.problems
    assert "2 event(s)" in report.problems[0].message
    assert report.lines == len(good.events) - 2 + 1
    assert sink.lost == 2


def test_unopenable_log_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot open audit log"):
        JsonlSink(tmp_path / "missing-dir" / "audit.jsonl")
    garbage = tmp_path / "notes.jsonl"
    garbage.write_text("hello\n")
    with pytest.raises(ConfigurationError, match="no valid chain line"):
        JsonlSink(garbage)


async def test_values_that_cannot_be_serialised_are_written_as_markers_not_lost(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "audit.jsonl"
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    events_logger = logging.getLogger("test.audit.serialise")
    events_logger.addHandler(Keep())
    events_logger.setLevel(logging.INFO)
    events_logger.propagate = False
    memory = InMemoryAuditSink()
    auditor = Auditor([memory, QueuedSink(FanOut(JsonlSink(path), LoggingSink(events_logger)))])

    async def odd_values(ctx: GovContext, call_next: Any) -> Any:
        if ctx.audit is not None:
            await ctx.audit.emit(
                AuditEvent.from_context(
                    ctx,
                    "credential.verified",
                    attributes={
                        "object": object(),
                        "nan": float("nan"),
                        "huge": 2**80,
                        "raw": b"\x00\x01",
                        "tags": {"a"},
                        "lone": "\ud800",
                        "nested": {"deep": [float("inf")]},
                    },
                )
            )
        return await call_next(ctx)

    server = MCPServer("odd")
    hooks = Hooks()

    @server.tool()
    def ok() -> str:
        return "fine"

    @hooks.tool("ok")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("allow")

    govern(server, odd_values, hooks, audit=auditor)
    async with Client(server, mode=mode) as client:
        assert (await client.call_tool("ok", {})).is_error is False
    assert auditor.flush(5.0)
    assert auditor.stats().lost == 0
    (event,) = [e for e in read_events([path]) if e.type == "credential.verified" and e.method == "tools/call"]
    assert event.attributes == {
        "object": "<unserialisable: object>",
        "nan": "nan",
        "huge": str(2**80),
        "raw": "<unserialisable: bytes>",
        "tags": ["a"],
        "lone": "\\ud800",
        "nested": {"deep": ["inf"]},
    }
    assert memory.of_type("credential.verified")[-1].attributes == event.attributes
    assert any(r.__dict__["mcpgov_audit"]["type"] == "credential.verified" for r in records)
    assert verify_chain([path]).ok
    auditor.close()


async def test_existing_callbacks_stay_synchronous_and_deterministic(mode: str) -> None:
    demo = build_demo()
    async with Client(demo.server, mode=mode) as client:
        await client.call_tool("read_file", {"path": "a"})
        # Read right after the call returns: the default delivery is on the call path.
        assert [e.type for e in demo.sink.for_target("read_file")] == ["decision", "outcome"]


def test_auditor_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="strict audit needs at least one sink"):
        Auditor(strict=True)
    with pytest.raises(ConfigurationError):
        Auditor([InMemoryAuditSink()], flush_timeout=0)
    with pytest.raises(ConfigurationError):
        QueuedSink(InMemoryAuditSink(), maxsize=0)
    with pytest.raises(ConfigurationError):
        QueuedSink("not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        FanOut()


async def test_emit_raises_audit_unavailable_only_when_required() -> None:
    def broken(event: AuditEvent) -> None:
        raise ValueError("down")

    from mcpgov import GovContext as Ctx

    auditor = Auditor([broken])
    event = AuditEvent.from_context(Ctx(side="server", method="tools/call"), "decision")
    await auditor.emit(event)  # lenient by default
    with pytest.raises(AuditUnavailable):
        await auditor.emit(event, required=True)
    strict = Auditor([broken], strict=True)
    with pytest.raises(AuditUnavailable):
        await strict.emit(event)
    await strict.emit(event, required=False)
    assert (auditor.sink_failures, strict.sink_failures) == (2, 2)


async def test_closed_queue_refuses_events_and_counts_them() -> None:
    sink = InMemoryAuditSink()
    queue = QueuedSink(sink)
    auditor = Auditor([queue])
    from mcpgov import GovContext as Ctx

    event = AuditEvent.from_context(Ctx(side="server", method="tools/call"), "decision")
    await auditor.emit(event)
    assert await auditor.aclose()
    await auditor.emit(event)
    assert (len(sink.events), queue.dropped, auditor.sink_failures) == (1, 1, 1)
    assert "pending=0" in repr(queue)


async def test_a_busy_event_loop_does_not_starve_the_queued_file_sink(tmp_path: Path, mode: str) -> None:
    """Calls of an async tool back to back in one process keep the event loop's thread on the
    interpreter lock:
    each turn of the loop lets the lock go (polling for I/O) and takes it back before the worker
    thread is even scheduled, and the worker, seeing the lock change hands, never asks for it.
    The queue then filled up and refused events its file could easily take (all 6,000 but the
    first 1,024 here). The thread queuing events now waits for the worker to catch up: nothing
    is dropped, and the log holds every event."""
    path = tmp_path / "audit.jsonl"
    queue = QueuedSink(JsonlSink(path, max_bytes=None), maxsize=1024, batch=128, linger=1.0)
    auditor = Auditor([queue])
    server = MCPServer("busy")

    @server.tool()
    async def look(x: int) -> int:
        return x

    hooks = Hooks()
    hooks.register("look", lambda ctx: Decision.allow("look"))
    govern(server, hooks, audit=auditor)
    calls = 3000
    async with Client(server, mode=mode) as client:
        for _ in range(calls):
            await client.call_tool("look", {"x": 1})
    assert queue.dropped == 0, (queue.stats(), queue.waits)
    assert auditor.flush(10.0)
    stats = queue.stats()
    assert stats["delivered"] == stats["enqueued"] == auditor.events_emitted
    report = verify_chain([path])
    assert report.ok, report
    assert sum(1 for e in read_events([path]) if e.target == "look") == 2 * calls
    auditor.close()


async def test_a_stuck_sink_is_waited_for_once_until_it_writes_again(mode: str) -> None:
    gate = threading.Event()
    got: list[AuditEvent] = []

    def stuck(event: AuditEvent) -> None:
        gate.wait(10)
        got.append(event)

    queue = QueuedSink(stuck, maxsize=64, batch=8, linger=0.05)
    auditor = Auditor([queue])
    server, ran = build_server(auditor)
    async with Client(server, mode=mode) as client:
        for _ in range(40):
            await client.call_tool("ok", {})
        assert ran == ["ok"] * 40  # every call ran; the queue filled up and then refused
        # Once a wait ran out with the worker neither taking nor finishing a batch, no more waits
        # (two at most: the worker may take its first batch during the first one).
        assert 1 <= queue.waits <= 2, (queue.stats(), queue.waits)
        assert queue.dropped > 0
        gate.set()
        assert auditor.flush(5.0)
        for _ in range(20):  # writing again: it is waited on again when it falls behind
            await client.call_tool("ok", {})
    assert auditor.flush(5.0)
    gaps = [e for e in got if e.type == "audit.gap"]
    assert len(got) - len(gaps) == queue.enqueued and queue.enqueued + queue.dropped == auditor.events_emitted
    assert sum(e.attributes["lost"] for e in gaps) == queue.dropped
    auditor.close()


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(st.characters(exclude_categories=()), max_size=20),
    number=st.one_of(st.none(), st.integers(-(2**60), 2**60), st.floats(allow_nan=False, allow_infinity=False)),
    attributes=st.dictionaries(
        st.text(max_size=5),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
            max_leaves=6,
        ),
        max_size=3,
    ),
    actors=st.lists(st.text(max_size=5), max_size=2),
)
def test_property_a_queued_event_reaches_the_sink_equal_to_what_was_queued(
    text: str, number: float | None, attributes: dict[str, Any], actors: list[str]
) -> None:
    ctx = GovContext(side="server", method="tools/call", kind="tool", target=text, purpose=text, request_id=text)
    event = AuditEvent.from_context(
        ctx, "outcome", latency_ms=number, attributes=attributes, actors=tuple(actors), outcome="completed"
    )
    got: list[AuditEvent] = []
    batches: list[list[AuditEvent]] = []

    class Batched:
        def write_batch(self, events: Sequence[AuditEvent]) -> None:
            batches.append(list(events))

        def __call__(self, event: AuditEvent) -> None:
            raise AssertionError("a batch writer gets batches")

    for queue in (QueuedSink(got.append, linger=0.001), QueuedSink(Batched(), linger=0.001)):
        queue(event)
        assert queue.flush(5)
        queue.close()
    for arrived in (got[0], batches[0][0]):
        assert arrived == event
        assert arrived.model_fields_set == event.model_fields_set
        assert arrived.attributes == event.attributes and type(arrived.attributes) is dict
        assert encode_event(arrived) == encode_event(event)


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="the collector's tracking is CPython's")
def test_a_queued_event_of_plain_values_leaves_the_collectors_watch() -> None:
    """Events wait in the queue long enough to outlive the collector's young generations; held
    as objects, each was promoted to the oldest one and a busy server paid a full collection of
    its whole heap every few thousand calls. The queue holds plain tuples the collector drops
    from its watch."""
    got: list[AuditEvent] = []
    queue = QueuedSink(got.append, linger=1.0)  # a partial batch waits: the events stay queued
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="t", request_id=7)
    for attributes in ({}, {"executed": False}):
        queue(AuditEvent.from_context(ctx, "outcome", outcome="failed", latency_ms=1.5, attributes=attributes))
    queue(AuditEvent.from_context(ctx, "decision", effect="allow", rule="r", actors=("a", "b")))
    gc.collect()
    held = list(queue._queue)
    assert len(held) == 3
    assert not gc.is_tracked(held[0])  # plain values only: at the collector's first pass
    for _ in range(2):  # nested attributes and actors: one more pass per level
        gc.collect()
    assert not any(gc.is_tracked(item) for item in held)
    assert queue.flush(5)
    assert [e.type for e in got] == ["outcome", "outcome", "decision"]
    queue.close()


def test_a_queue_delivers_other_events_and_objects_as_given() -> None:
    """Only plain events change form while queued; a subclass or any other object is delivered
    as it was given (the same object)."""

    class Tagged(AuditEvent):
        pass

    ctx = GovContext(side="server", method="tools/call", kind="tool", target="t")
    plain = AuditEvent.from_context(ctx, "outcome", outcome="completed")
    tagged = Tagged.model_validate(plain.model_dump())
    other = {"not": "an event"}
    got: list[Any] = []
    for batched in (False, True):
        got.clear()
        if batched:

            class Writer:
                def write_batch(self, events: Sequence[Any]) -> None:
                    got.extend(events)

                def __call__(self, event: Any) -> None:
                    raise AssertionError("a batch writer gets batches")

            queue = QueuedSink(Writer(), linger=0.001)
        else:
            queue = QueuedSink(got.append, linger=0.001)
        for item in (plain, tagged, other):
            queue(item)  # type: ignore[arg-type]
        assert queue.flush(5)
        queue.close()
        assert got[0] == plain and got[1] is tagged and got[2] is other
