"""OpenTelemetry: audit on the SDK's own server span (no second span, nothing repeated), decision
counters as metrics, trace ids on events, and no dependence on sampling. Checked with the
OpenTelemetry SDK's in-memory exporter and metric reader (the ``otel`` extra)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from mcpgov import Auditor, ConfigurationError, Decision, GovContext, Hooks, Principal, govern
from mcpgov.audit import OTelSink, QueuedSink
from mcpgov.testing import InMemoryAuditSink

pytestmark = pytest.mark.anyio

_EXPORTER: InMemorySpanExporter | None = None


def span_exporter() -> InMemorySpanExporter:
    """The process's in-memory span exporter (installs an SDK tracer provider once, or joins the
    one already installed)."""
    global _EXPORTER  # noqa: PLW0603 - one global tracer provider per process
    if _EXPORTER is None:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            trace.set_tracer_provider(TracerProvider())
            provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        _EXPORTER = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    return _EXPORTER


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = span_exporter()
    exporter.clear()
    return exporter


def server_spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER and s.name == name]


def metric_points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], int]]:
    data = reader.get_metrics_data()
    out: list[tuple[dict[str, Any], int]] = []
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    out.extend((dict(p.attributes or {}), int(p.value)) for p in metric.data.data_points)  # type: ignore[union-attr]
    return out


def identify(ctx: GovContext, call_next: Any) -> Any:
    """A stand-in identity stage: a fixed caller, tenant, task and credential."""
    principal = Principal(issuer="https://idp.example", subject="agent-7", tenant="acme")
    return call_next(
        ctx.replace(
            principal=principal, tenant="acme", task_id="task-9", purpose="release", credential={"jti": "cred-1"}
        )
    )


def build(auditor: Auditor) -> MCPServer:
    server = MCPServer("otel")
    hooks = Hooks()

    @server.tool()
    def deploy(version: str) -> str:
        return f"deployed {version}"

    @server.tool()
    def wipe() -> str:
        return "wiped"

    @hooks.tool("deploy")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("release-managers")

    @hooks.tool("wipe")
    def deny(ctx: GovContext) -> Decision:
        return Decision.deny("no-wipes", "never", "forbidden")

    govern(server, identify, hooks, audit=auditor)
    return server


async def test_audit_enriches_the_sdk_server_span_without_a_second_span(spans: InMemorySpanExporter, mode: str) -> None:
    reader = InMemoryMetricReader()
    memory = InMemoryAuditSink()
    server = build(Auditor([memory, OTelSink(meter_provider=MeterProvider(metric_readers=[reader]))]))
    async with Client(server, mode=mode) as client:
        await client.call_tool("deploy", {"version": "1.2"})
        with pytest.raises(MCPError):
            await client.call_tool("wipe", {})

    (span,) = server_spans(spans, "tools/call deploy")
    # Only SDK spans exist: mcpgov opened none of its own.
    assert all(s.instrumentation_scope is not None for s in spans.get_finished_spans())
    assert {s.instrumentation_scope.name for s in spans.get_finished_spans() if s.instrumentation_scope} == {
        "mcp-python-sdk"
    }
    attrs = dict(span.attributes or {})
    assert attrs["mcpgov.principal"] == "https://idp.example#agent-7"
    assert (attrs["mcpgov.tenant"], attrs["mcpgov.task_id"], attrs["mcpgov.purpose"]) == ("acme", "task-9", "release")
    assert (attrs["mcpgov.decision.effect"], attrs["mcpgov.decision.rule"]) == ("allow", "release-managers")
    assert attrs["mcpgov.credential.id"] == "cred-1"
    assert str(attrs["mcpgov.args_hash"]).startswith("sha256:")
    assert attrs["gen_ai.tool.name"] == "deploy"  # the SDK's own, not repeated by mcpgov
    assert not {"mcpgov.method", "mcpgov.target", "mcpgov.request_id"} & attrs.keys()

    decision, _ = (e for e in memory.events if e.target == "deploy")
    assert [ev.name for ev in span.events] == ["mcpgov.decision", "mcpgov.outcome"]
    ev_decision, ev_outcome = span.events
    assert dict(ev_decision.attributes or {})["mcpgov.event.id"] == decision.id
    assert dict(ev_outcome.attributes or {})["mcpgov.outcome"] == "completed"
    assert "mcpgov.principal" not in dict(ev_decision.attributes or {})  # on the span, not repeated per event
    # The audit events carry the span's ids.
    context = span.get_span_context()
    assert context is not None
    assert (decision.trace_id, decision.span_id) == (format(context.trace_id, "032x"), format(context.span_id, "016x"))

    (denied,) = server_spans(spans, "tools/call wipe")
    assert dict(denied.attributes or {})["mcpgov.decision.effect"] == "deny"
    assert [ev.name for ev in denied.events] == ["mcpgov.decision"]
    assert dict(denied.events[0].attributes or {})["mcpgov.reason"] == "forbidden"

    decisions = metric_points(reader, "mcpgov.decisions")
    by_effect = {(a["mcpgov.decision.effect"], a["mcpgov.decision.rule"]): v for a, v in decisions}
    assert by_effect == {("allow", "release-managers"): 1, ("deny", "no-wipes"): 1}
    assert metric_points(reader, "mcpgov.outcomes") == [
        ({"mcpgov.outcome": "completed", "mcp.method.name": "tools/call", "mcpgov.side": "server"}, 1)
    ]


async def test_audit_does_not_depend_on_trace_sampling(spans: InMemorySpanExporter, mode: str) -> None:
    reader = InMemoryMetricReader()
    memory = InMemoryAuditSink()
    server = build(Auditor([memory, OTelSink(meter_provider=MeterProvider(metric_readers=[reader]))]))
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    parent = SpanContext(trace_id, 0x00F067AA0BA902B7, is_remote=True, trace_flags=TraceFlags(0))
    async with Client(server, mode=mode) as client:
        with trace.use_span(NonRecordingSpan(parent)):  # the caller's trace is not sampled
            await client.call_tool("deploy", {"version": "1"})
    assert server_spans(spans, "tools/call deploy") == []  # the caller said: do not sample
    events = [e for e in memory.events if e.target == "deploy"]
    assert [e.type for e in events] == ["decision", "outcome"]  # audit still complete
    assert {e.trace_id for e in events} == {format(trace_id, "032x")}  # and still correlated with the trace
    assert sum(v for _, v in metric_points(reader, "mcpgov.decisions")) == 1


async def test_delivery_counters_are_exported_as_metrics() -> None:
    reader = InMemoryMetricReader()
    sink = OTelSink(meter_provider=MeterProvider(metric_readers=[reader]))

    def broken(event: object) -> None:
        raise ValueError("down")

    auditor = Auditor([sink, broken])
    sink.observe(auditor)
    server = build(auditor)
    async with Client(server, mode="legacy") as client:
        await client.call_tool("deploy", {"version": "1"})
    (lost,) = metric_points(reader, "mcpgov.audit.lost")
    assert lost[1] == auditor.sink_failures >= 2


def test_otel_sink_cannot_be_queued_since_it_needs_the_request_span() -> None:
    with pytest.raises(ConfigurationError, match="must not be queued"):
        QueuedSink(OTelSink())


async def test_events_without_a_span_have_no_trace_ids(mode: str) -> None:
    memory = InMemoryAuditSink()
    auditor = Auditor([memory])
    from mcpgov import AuditEvent
    from mcpgov import GovContext as Ctx

    await auditor.emit(AuditEvent.from_context(Ctx(side="client", method="tools/call"), "decision"))
    assert (memory.events[0].trace_id, memory.events[0].span_id) == (None, None)
