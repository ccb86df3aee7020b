"""Hot reload (a failed reload keeps the last good policy), shadow mode, and fail-closed engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError

from mcpgov import ConfigurationError, Decision, GovContext
from mcpgov.policy import Policy, PolicyError, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

from .policies.support import TWO_TENANTS, as_, build_file_server

pytestmark = pytest.mark.anyio

ALLOW_READS = """
rules:
  - {id: reads-v1, effect: allow, tools: [read_file]}
"""
ALLOW_SEARCH = """
rules:
  - {id: search-v2, effect: allow, tools: [search]}
"""


async def test_reload_swaps_the_policy_and_records_it(tmp_path: Path, mode: str) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(ALLOW_READS)
    fs = build_file_server(policy_file)
    first = fs.policy.version
    async with Client(fs.server, mode=mode) as client:
        assert (await client.call_tool("read_file", {"path": "/x"}, meta=as_("alice"))).is_error is False
        policy_file.write_text(ALLOW_SEARCH)
        assert await fs.policy.check_for_changes() is True
        assert await fs.policy.check_for_changes() is False  # unchanged since
        with pytest.raises(MCPError):
            await client.call_tool("read_file", {"path": "/x"}, meta=as_("alice"))
        assert (await client.call_tool("search", {"query": "q"}, meta=as_("alice"))).is_error is False
    (event,) = fs.sink.of_type("policy.reloaded")
    assert (event.outcome, event.reason, event.policy_version) == ("loaded", "reloaded", fs.policy.version)
    assert event.attributes["previous_version"] == first != fs.policy.version


async def test_failed_reload_keeps_the_last_good_policy(tmp_path: Path, mode: str) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(ALLOW_READS)
    fs = build_file_server(policy_file)
    good = fs.policy.version
    async with Client(fs.server, mode=mode) as client:
        for broken in ("rules: [{id: x, effect: allow}]", "rules: [", ""):
            policy_file.write_text(broken) if broken else policy_file.unlink()
            assert await fs.policy.reload() is False
            assert fs.policy.version == good
            assert (await client.call_tool("read_file", {"path": "/x"}, meta=as_("alice"))).is_error is False
    assert fs.sink.of_type("policy.reloaded") == []
    events = fs.sink.of_type("policy.reload_failed")
    assert [(e.outcome, e.reason, e.policy_version) for e in events] == [("failed", "reload_failed", good)] * 3
    assert "must name what it applies to" in (events[0].detail or "")
    assert "cannot read" in (events[2].detail or "")


async def test_reload_events_go_to_an_explicit_auditor_at_once() -> None:
    sink = InMemoryAuditSink()
    mw = PolicyMiddleware(Policy.from_yaml(ALLOW_READS), audit=sink)
    assert await mw.reload(Policy.from_yaml(ALLOW_SEARCH)) is True
    assert await mw.reload(Path("/nonexistent/policy.yaml")) is False
    assert [e.outcome for e in sink.of_type("policy.reloaded")] == ["loaded"]
    assert [e.outcome for e in sink.of_type("policy.reload_failed")] == ["failed"]
    with pytest.raises(ConfigurationError, match="not given a policy file"):
        await mw.reload()


async def test_unloadable_policy_in_deny_all_mode_denies_everything_until_a_good_reload(
    tmp_path: Path, mode: str
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("rules: [{id: broken}]")
    fs = build_file_server(policy_file, on_load_error="deny_all")
    async with Client(fs.server, mode=mode) as client:
        assert (await client.list_tools(meta=as_("alice"))).tools == []
        with pytest.raises(MCPError):
            await client.call_tool("read_file", {"path": "/x"}, meta=as_("alice"))
        policy_file.write_text(ALLOW_READS)
        assert await fs.policy.reload() is True
        assert (await client.call_tool("read_file", {"path": "/x"}, meta=as_("alice"))).is_error is False
    deny = fs.sink.decisions()[0]
    assert (deny.rule, deny.reason) == ("mcpgov:policy:unloadable", "policy_unloadable")
    assert [e.outcome for e in fs.sink.of_type("policy.reload_failed")] == ["failed"]
    assert [e.outcome for e in fs.sink.of_type("policy.reloaded")] == ["loaded"]


async def test_shadow_policy_records_differences_and_is_never_enforced(mode: str) -> None:
    candidate = Policy.from_yaml(
        """
rules:
  - {id: acme-files-v2, effect: allow, tenants: [acme], tools: [read_file]}
  - {id: lock-writes, effect: deny, tools: [write_file]}
""",
        source="candidate.yaml",
    )
    fs = build_file_server(TWO_TENANTS, shadow=candidate)
    async with Client(fs.server, mode=mode) as client:
        # Enforced policy allows; shadow denies (no rule for search): allowed, mismatch recorded.
        assert (await client.call_tool("search", {"query": "q"}, meta=as_("alice"))).is_error is False
        # Enforced denies the path; shadow would allow: still denied.
        with pytest.raises(MCPError):
            await client.call_tool("read_file", {"path": "/etc/passwd"}, meta=as_("alice"))
        # Both allow, by different rules: recorded too.
        assert (await client.call_tool("read_file", {"path": "/data/acme/x"}, meta=as_("alice"))).is_error is False
    assert sorted(fs.ran) == ["read_file:/data/acme/x", "search:q"]
    mismatches = [
        (e.target, e.effect, e.rule, e.attributes["shadow_effect"], e.attributes["shadow_rule"])
        for e in fs.sink.of_type("policy.shadow_mismatch")
        if e.attributes["action"] == "execute"
    ]
    assert mismatches == [
        ("search", "allow", "search", "deny", "mcpgov:policy:default-deny"),
        ("read_file", "deny", "mcpgov:policy:default-deny", "allow", "acme-files-v2"),
        ("read_file", "allow", "acme-files", "allow", "acme-files-v2"),
    ]
    assert all(e.attributes["shadow_version"] == candidate.version for e in fs.sink.of_type("policy.shadow_mismatch"))


async def test_a_shadow_engine_that_raises_never_affects_enforcement(mode: str) -> None:
    fs = build_file_server(TWO_TENANTS)
    fs.policy.set_shadow(Policy.from_yaml(ALLOW_READS))

    def explode(*args: Any, **kwargs: Any) -> Decision:
        raise RuntimeError("broken candidate")

    assert fs.policy._shadow is not None
    fs.policy._shadow.decide = explode  # type: ignore[method-assign]
    async with Client(fs.server, mode=mode) as client:
        assert (await client.call_tool("read_file", {"path": "/data/acme/x"}, meta=as_("alice"))).is_error is False
    (event,) = [e for e in fs.sink.of_type("policy.shadow_mismatch") if e.attributes["action"] == "execute"]
    assert event.attributes["shadow_rule"] == "mcpgov:policy:shadow-error"
    fs.policy.set_shadow(None)
    assert fs.policy._shadow is None


class _RaisingEngine:
    engine_name = "policy"
    version = "v"
    source = "<test>"

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    def decide(self, ctx: GovContext, **kwargs: Any) -> Any:
        if self.behaviour == "raise":
            raise RuntimeError("engine bug")
        return "allow"  # not a Decision

    def history_needs(self, ctx: GovContext) -> Any:
        from mcpgov.policy._history import HistoryNeeds

        return HistoryNeeds()

    def labels_for(self, kind: Any, target: Any) -> frozenset[str]:
        return frozenset()


@pytest.mark.parametrize(("behaviour", "reason"), [("raise", "authoriser_error"), ("junk", "authoriser_invalid")])
async def test_an_engine_that_raises_or_returns_junk_denies(behaviour: str, reason: str, mode: str) -> None:
    fs = build_file_server(TWO_TENANTS)
    fs.policy._engine = _RaisingEngine(behaviour)  # type: ignore[assignment]
    async with Client(fs.server, mode=mode) as client:
        assert (await client.list_tools(meta=as_("alice"))).tools == []
        with pytest.raises(MCPError) as caught:
            await client.call_tool("read_file", {"path": "/data/acme/x"}, meta=as_("alice"))
    assert caught.value.code == -32003
    assert fs.ran == []
    assert fs.sink.decisions()[-1].reason == reason


async def test_a_decision_past_the_deadline_denies(mode: str) -> None:
    fs = build_file_server(TWO_TENANTS, deadline=0.05)

    async def slow_snapshot(*args: Any, **kwargs: Any) -> Any:
        await anyio.sleep(1)

    fs.policy.history.snapshot = slow_snapshot  # type: ignore[method-assign]
    async with Client(fs.server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("plan_step", {"step": "1"}, meta=as_("alice", task="t"))
    assert fs.ran == []
    assert fs.sink.decisions()[-1].reason == "authoriser_timeout"


def test_policy_error_is_a_configuration_error() -> None:
    assert issubclass(PolicyError, ConfigurationError)


async def test_reloads_that_overlap_enforce_the_one_asked_for_last(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload still loading when a later one is asked for never lands after it: the policy in
    force at the end is the one asked for last, never an older one that finished loading later."""
    from mcpgov.policy import _reload

    middleware = PolicyMiddleware(Policy.from_yaml(ALLOW_READS, source="v1.yaml"))
    older = Policy.from_yaml("rules:\n  - {id: older, effect: allow, tools: ['*']}\n", source="older.yaml")
    newer = Policy.from_yaml(ALLOW_SEARCH, source="newer.yaml")
    loading = anyio.Event()
    release = anyio.Event()
    real = _reload.load_policy

    def load(policy: Any) -> Any:
        if policy is older:
            anyio.from_thread.run_sync(loading.set)
            anyio.from_thread.run(release.wait)
        return real(policy)

    monkeypatch.setattr(_reload, "load_policy", load)
    results: list[bool] = []

    async def reload(policy: Policy) -> None:
        results.append(await middleware.reload(policy))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reload, older)
        with anyio.fail_after(30):
            await loading.wait()
        tg.start_soon(reload, newer)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert results == [True, True]
    assert middleware.version == newer.version
