"""Core types without the SDK: decisions, context, chain order, arguments, errors on the wire."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st
from mcp import MCPError
from pydantic import BaseModel, ValidationError

import mcpgov
from mcpgov import (
    ArgumentLimits,
    AuditEvent,
    ConfigurationError,
    Decision,
    Denied,
    Effect,
    GovContext,
    Hooks,
    IdentityError,
    InvalidRequest,
    McpGovError,
    arguments_hash,
    compose,
    to_mcp_error,
)
from mcpgov._arguments import freeze_and_hash, freeze_arguments

pytestmark = pytest.mark.anyio

# --- decisions --------------------------------------------------------------------------------


def test_deny_overrides_approval_overrides_allow() -> None:
    allow, approve, deny = Decision.allow("a"), Decision.require_approval("b"), Decision.deny("c")
    assert allow.combine(approve) is approve
    assert approve.combine(allow) is approve
    assert approve.combine(deny) is deny
    assert deny.combine(allow) is deny
    assert allow.combine(None) is allow


def test_two_allows_merge_obligations_and_keep_the_first_rule() -> None:
    merged = Decision.allow("first", max_ttl=60).combine(Decision.allow("second", redact=("token",)))
    assert merged.rule == "first"
    assert dict(merged.obligations) == {"max_ttl": 60, "redact": ("token",)}
    assert merged.allowed


def test_decision_is_immutable() -> None:
    decision = Decision.allow("r", max_ttl=5)
    with pytest.raises(AttributeError):
        decision.rule = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        decision.obligations["max_ttl"] = 9  # type: ignore[index]


# --- context ----------------------------------------------------------------------------------


def test_context_replace_copies_and_refuses_unknown_fields() -> None:
    ctx = GovContext(side="server", method="tools/call", target="a")
    changed = ctx.replace(target="b", purpose="triage")
    assert (ctx.target, changed.target, changed.purpose, changed.method) == ("a", "b", "triage", "tools/call")
    with pytest.raises(TypeError):
        ctx.replace(nonsense=1)
    with pytest.raises(AttributeError):
        ctx.target = "c"  # type: ignore[misc]


def test_a_context_built_by_the_governor_equals_the_dataclass_one() -> None:
    """The governors' cheap constructor gives the same context as ``GovContext(**fields)``,
    defaults included, and refuses what the dataclass refuses."""
    from mcpgov._context import new_context

    for fields in (
        {"side": "server", "method": "tools/call"},
        {"side": "client", "method": "tools/call", "target": "a", "kind": "tool", "request_id": 7, "purpose": "p"},
    ):
        built, reference = new_context(dict(fields)), GovContext(**fields)
        assert built == reference and built.__dict__ == reference.__dict__
        assert built.final_checks == () and built.meta == {} and built.extensions == {}
        with pytest.raises(AttributeError):
            built.target = "c"  # type: ignore[misc]
    with pytest.raises(TypeError):
        new_context({"side": "server", "method": "tools/call", "nonsense": 1})
    with pytest.raises(TypeError):
        new_context({"side": "server"})


def test_discovery_context_drops_arguments_and_decision() -> None:
    ctx = GovContext(
        side="server", method="tools/list", arguments={"x": 1}, args_hash="h", decision=Decision.allow("r")
    )
    probe = ctx.for_discovery("tool", "deploy")
    assert (probe.method, probe.kind, probe.target, probe.action) == ("tools/call", "tool", "deploy", "discover")
    assert probe.arguments is None and probe.args_hash is None and probe.decision is None


# --- chain ------------------------------------------------------------------------------------


async def test_chain_runs_outermost_first_and_unwinds_in_reverse() -> None:
    order: list[str] = []

    def make(name: str) -> Any:
        async def mw(ctx: GovContext, call_next: Any) -> Any:
            order.append(f"{name}>")
            result = await call_next(ctx.replace(purpose=(ctx.purpose or "") + name))
            order.append(f"<{name}")
            return result

        return mw

    async def terminal(ctx: GovContext) -> Mapping[str, Any]:
        order.append("terminal")
        return {"purpose": ctx.purpose}

    chain = compose([make("a"), make("b"), make("c")], terminal)
    assert await chain(GovContext(side="client", method="tools/call")) == {"purpose": "abc"}
    assert order == ["a>", "b>", "c>", "terminal", "<c", "<b", "<a"]


# --- arguments --------------------------------------------------------------------------------


def test_frozen_arguments_are_deeply_read_only() -> None:
    frozen = freeze_arguments({"a": {"b": [1, {"c": 2}]}}, ArgumentLimits())
    assert frozen is not None
    with pytest.raises(TypeError):
        frozen["a"]["b"] = []
    assert isinstance(frozen["a"]["b"], tuple)
    with pytest.raises(TypeError):
        frozen["a"]["b"][1]["c"] = 3


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"a": float("nan")}, "argument_invalid"),
        ({"a": 2**60}, "argument_invalid"),
        ({"a": object()}, "argument_invalid"),
        ({1: "x"}, "argument_invalid"),
        ({"a": "x" * 11}, "argument_too_large"),
        ({"a": list(range(30))}, "argument_too_large"),
        ({"a": [[[[[[]]]]]]}, "argument_too_deep"),
    ],
)
def test_limits_refuse(value: Any, reason: str) -> None:
    limits = ArgumentLimits(max_depth=4, max_nodes=20, max_string=10, max_total_chars=100)
    with pytest.raises(InvalidRequest) as caught:
        freeze_arguments(value, limits)
    assert caught.value.reason == reason


def test_arguments_must_be_an_object() -> None:
    with pytest.raises(InvalidRequest):
        freeze_arguments(["a"], ArgumentLimits())
    assert freeze_arguments(None, ArgumentLimits()) is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_limits_are_validated_at_construction(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        ArgumentLimits(max_depth=bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
json_values_with_floats = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text() | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


def _rfc8785_hash(value: dict[str, Any]) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(rfc8785.dumps(value)).hexdigest()


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_hash_is_rfc8785_for_any_json_object(value: dict[str, Any]) -> None:
    """The one-walk hash equals SHA-256 over the rfc8785 library's canonical form."""
    try:
        expected = _rfc8785_hash(value)
    except Exception:  # values rfc8785 itself refuses (lone surrogates) are not JSON text
        return
    frozen, digest = freeze_and_hash(value, ArgumentLimits(max_nodes=10_000))
    assert digest == expected
    assert arguments_hash(frozen) == expected


@given(st.dictionaries(st.text(max_size=8), json_values_with_floats, max_size=6))
def test_hash_is_rfc8785_with_floats(value: dict[str, Any]) -> None:
    try:
        expected = _rfc8785_hash(value)
    except Exception:
        return
    assert freeze_and_hash(value, ArgumentLimits(max_nodes=10_000))[1] == expected


@given(st.dictionaries(st.text(max_size=5), st.integers(0, 9), min_size=2, max_size=6))
def test_hash_ignores_key_order(value: dict[str, int]) -> None:
    reordered = dict(reversed(list(value.items())))
    assert arguments_hash(value) == arguments_hash(reordered)


def test_hash_changes_with_any_value() -> None:
    assert arguments_hash({"a": 1}) != arguments_hash({"a": 2})
    assert arguments_hash({"a": [1, 2]}) != arguments_hash({"a": [2, 1]})
    assert arguments_hash(None) == arguments_hash({})


# --- errors and the wire -----------------------------------------------------------------------


def test_error_codes_are_stable_and_distinct() -> None:
    classes: list[type[McpGovError]] = [
        mcpgov.McpGovError,
        mcpgov.ConfigurationError,
        mcpgov.InvalidRequest,
        mcpgov.IdentityError,
        mcpgov.CredentialError,
        mcpgov.Denied,
        mcpgov.ApprovalRequired,
        mcpgov.PinningError,
        mcpgov.AuditUnavailable,
    ]
    codes = [c.code for c in classes]
    assert len(set(codes)) == len(codes)
    assert all(code.startswith("mcpgov.") for code in codes)
    assert issubclass(mcpgov.ApprovalRequired, mcpgov.Denied)
    assert all(issubclass(c, McpGovError) for c in classes)


def test_to_mcp_error_reveals_only_the_code_and_event() -> None:
    denied = Denied(Decision.deny("secret-rule", "the reason mentions sk-live-1"))
    denied.event_id = "ev1"
    wire = to_mcp_error(denied)
    assert (wire.code, wire.message, wire.data) == (-32003, "Request denied", {"code": "mcpgov.denied", "event": "ev1"})
    identity = to_mcp_error(IdentityError("token expired at 12:00 for sub=alice"))
    assert identity.message == "Unauthenticated" and "alice" not in json.dumps(identity.data)


def test_to_mcp_error_hides_unexpected_exceptions() -> None:
    wire = to_mcp_error(RuntimeError("connection string postgres://u:p@h"))
    assert (wire.code, wire.message) == (-32603, "Internal error")
    assert "postgres" not in json.dumps(wire.data)


def test_to_mcp_error_maps_validation_errors_without_values() -> None:
    class Model(BaseModel):
        n: int

    with pytest.raises(ValidationError) as caught:
        Model.model_validate({"n": "secret-value"})
    wire = to_mcp_error(caught.value)
    assert wire.code == -32602 and "secret-value" not in str(wire.error)


def test_sdk_errors_pass_unchanged() -> None:
    original = MCPError(-32601, "Method not found")
    assert to_mcp_error(original) is original


def test_error_repr_has_no_detail() -> None:
    assert "hunter2" not in repr(IdentityError("password hunter2 rejected"))


# --- hooks configuration ----------------------------------------------------------------------


@pytest.mark.parametrize("deadline", [0, -1, float("nan"), float("inf"), "1", True])
def test_hook_deadline_must_be_positive(deadline: Any) -> None:
    with pytest.raises(ConfigurationError):
        Hooks(deadline=deadline)


def test_hook_registration_is_validated() -> None:
    hooks = Hooks()
    with pytest.raises(ConfigurationError):
        hooks.register("", lambda ctx: Decision.allow("x"))
    with pytest.raises(ConfigurationError):
        hooks.register("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        hooks.register("x", lambda ctx: Decision.allow("x"), kind="widget")  # type: ignore[arg-type]


async def test_every_matching_hook_must_allow() -> None:
    hooks = Hooks()
    hooks.register("deploy*", lambda ctx: Decision.allow("glob", max_ttl=30))
    hooks.register("deploy_prod", lambda ctx: Decision.require_approval("prod-needs-approval"))
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="deploy_prod", action="execute")
    decision = await hooks.evaluate(ctx)
    assert decision.effect is Effect.REQUIRE_APPROVAL and decision.rule == "prod-needs-approval"
    staging = await hooks.evaluate(ctx.replace(target="deploy_staging"))
    assert staging.allowed and dict(staging.obligations) == {"max_ttl": 30}


async def test_a_registration_after_a_lookup_is_seen() -> None:
    hooks = Hooks()
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="t", action="execute")
    assert not (await hooks.evaluate(ctx)).allowed
    hooks.register("t", lambda c: Decision.allow("late"))
    assert (await hooks.evaluate(ctx)).allowed


# --- audit events -----------------------------------------------------------------------------


def test_fast_event_equals_a_validated_event() -> None:
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="t", args_hash="sha256:00")
    event = AuditEvent.from_context(ctx, "decision", effect="allow", rule="r")
    validated = AuditEvent.model_validate(event.model_dump())
    assert validated == event
    assert json.loads(event.model_dump_json())["schema_version"] == "1"


def test_event_ids_are_unique() -> None:
    ctx = GovContext(side="server", method="tools/call")
    ids = {AuditEvent.from_context(ctx, "decision").id for _ in range(1000)}
    assert len(ids) == 1000
    # Ids reach peers in error data: they are random, not a counter that reveals traffic volume.
    assert len({i[:6] for i in ids}) > 900


# --- public surface ---------------------------------------------------------------------------


def test_public_surface_is_sorted_and_importable() -> None:
    names = [n for n in mcpgov.__all__ if n != "__version__"]
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in mcpgov.__all__:
        assert hasattr(mcpgov, name), name


any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=1e-5, max_value=1e17)
    | st.sampled_from([0.0, -0.0, 1.0, 1e-4, 1e16, 123.0, 0.1, 1e15 + 0.5, 2.5e-4]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)


@given(any_json)
def test_canonical_json_is_the_rfc8785_librarys_bytes(value: Any) -> None:
    """Whichever encoder canonical_json picks, its bytes are rfc8785's (or both refuse)."""
    from mcpgov._arguments import canonical_json

    try:
        expected = rfc8785.dumps(value)
    except Exception:
        with pytest.raises(Exception):  # noqa: B017, PT011 - the same refusal, whatever its type
            canonical_json(value)
        return
    assert canonical_json(value) == expected
