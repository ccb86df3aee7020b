"""The typed extension points: one method table that agrees with the SDK's, and side protocols
that real sinks and middleware satisfy (and that an object without them does not)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp_types.methods import SPEC_CLIENT_METHODS

from mcpgov import AuditEvent, Auditor
from mcpgov._methods import (
    ARGUMENT_METHODS,
    COMPLETION_REFS,
    EXECUTE_METHOD,
    EXECUTE_METHODS,
    LIST_METHOD,
    LIST_METHODS,
    LISTINGS,
    NAMED_METHODS,
    TARGETED,
)
from mcpgov._protocols import (
    BatchWriter,
    ClosableSink,
    FlushableSink,
    HealthReporting,
    ListChangeListener,
    StatsReporting,
    Ticking,
    listing_gate,
    stats_of,
)
from mcpgov.audit import FanOut, JsonlSink, QueuedSink
from mcpgov.pinning import PinningMiddleware, ServerRegistry


def test_every_governed_method_is_a_client_method_of_the_sdk() -> None:
    """A method the SDK renamed or dropped shows here first, not as a silently ungoverned request."""
    named = set(TARGETED) | LIST_METHODS | {"completion/complete"}
    assert named <= SPEC_CLIENT_METHODS, sorted(named - SPEC_CLIENT_METHODS)


def test_the_method_tables_agree_with_each_other() -> None:
    assert {TARGETED[method][0] for method in EXECUTE_METHODS} == {"tool", "resource", "prompt"}
    assert all(TARGETED[method][0] == kind for kind, method in EXECUTE_METHOD.items())
    assert all(LISTINGS[method][0] == kind for kind, method in LIST_METHOD.items())
    assert all(TARGETED[method][0] == kind for method, kind in NAMED_METHODS.items())
    assert ARGUMENT_METHODS <= EXECUTE_METHODS
    assert {kind for kind, _ in COMPLETION_REFS.values()} == {"prompt", "resource"}
    assert not LIST_METHODS & set(TARGETED)


def test_sinks_satisfy_the_side_protocols_they_implement(tmp_path: Path) -> None:
    jsonl = JsonlSink(tmp_path / "audit.jsonl")
    queued = QueuedSink(jsonl)
    fan = FanOut(queued)
    try:
        assert isinstance(jsonl, BatchWriter)
        assert isinstance(jsonl, ClosableSink)
        for sink in (queued, fan):
            assert isinstance(sink, HealthReporting)
            assert isinstance(sink, StatsReporting)
            assert isinstance(sink, FlushableSink)
            assert isinstance(sink, ClosableSink)
        assert stats_of(fan) is not None
    finally:
        fan.close(5.0)


def test_a_plain_callable_satisfies_none_of_them() -> None:
    def sink(event: AuditEvent) -> None:
        del event

    for protocol in (BatchWriter, ClosableSink, FlushableSink, HealthReporting, StatsReporting, Ticking):
        assert not isinstance(sink, protocol)
    assert stats_of(sink) is None
    auditor = Auditor([sink])
    assert auditor.available()
    assert auditor.stats().sinks == {}
    assert auditor.flush(1.0)


class _Unhealthy:
    healthy = False

    def __call__(self, event: AuditEvent) -> None:
        del event


def test_a_sink_reporting_ill_health_makes_strict_audit_unavailable() -> None:
    auditor = Auditor([_Unhealthy()], strict=True)
    assert not auditor.available()
    assert not FanOut(_Unhealthy()).healthy


def test_pinning_is_a_listing_gate_and_hears_list_changes() -> None:
    entry = {
        "id": "s",
        "owner": "o",
        "tenants": ["acme"],
        "workloads": ["*"],
        "url": "https://x.example",
        "server": {"name": "s", "version": ">=0"},
        "pin": "absent.json",
    }
    pinning = PinningMiddleware(ServerRegistry([entry]), server_id="s")
    gate = listing_gate(pinning)
    assert gate is pinning
    assert isinstance(pinning, ListChangeListener)
    assert gate.needs_listing


@pytest.mark.parametrize("middleware", [object(), _Unhealthy()])
def test_other_objects_are_no_listing_gate(middleware: object) -> None:
    assert listing_gate(middleware) is None
