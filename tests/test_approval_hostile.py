"""Human approval against hostile approvers, answers and prompts, through real sessions."""

from __future__ import annotations

import hashlib
import json
import sys
import unicodedata
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.client.context import ClientRequestContext
from mcp.server.mcpserver import MCPServer
from mcp_types import ElicitRequestParams, ElicitResult, ErrorData

from mcpgov import ConfigurationError, Decision, GovContext, Hooks, InMemoryStateStore, govern
from mcpgov._arguments import canonical_json
from mcpgov._state import StateStoreError
from mcpgov.approval import (
    ApprovalAnswer,
    ApprovalMiddleware,
    ApprovalQueue,
    ApprovalRequest,
    CallbackApprover,
    ElicitationApprover,
)
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

from .redis_support import redis_server

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.anyio


class Deploys:
    """A server whose deploy tool requires approval, with what ran and the audit trail."""

    def __init__(self, approver: Any, **middleware_options: Any) -> None:
        self.server = MCPServer("deployer")
        self.ran: list[Any] = []
        self.sink = InMemoryAuditSink()
        hooks = Hooks()

        @hooks.tool("deploy")
        def needs_approval(ctx: GovContext) -> Decision:
            return Decision.require_approval("deploys-need-approval", "production change")

        @self.server.tool()
        def deploy(version: str, note: str = "") -> str:
            self.ran.append((version, note))
            return f"deployed {version}"

        govern(self.server, ApprovalMiddleware(approver, **middleware_options), hooks, audit=self.sink)


async def test_an_answer_given_after_the_deadline_does_not_approve(mode: str) -> None:
    """An approver that ignores the deadline's cancellation and approves late approves nothing."""

    async def late(request: ApprovalRequest) -> bool:
        try:
            await anyio.sleep(5)
        except anyio.get_cancelled_exc_class():
            return True  # swallows the cancellation and answers yes, too late
        return True

    d = Deploys(CallbackApprover(late, name="late-approver"), deadline=0.05)
    async with Client(d.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.code == -32004
    assert d.ran == []
    assert d.sink.decisions()[0].reason == "approval_timeout"
    assert d.sink.of_type("approval.granted") == []


# Characters a terminal or a form may act on or hide rather than show: controls, format
# characters (bidirectional overrides, zero-width), separators other than the plain space,
# private use, unassigned and surrogates.
_HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _hides_something(text: str) -> bool:
    return any(unicodedata.category(ch) in _HIDDEN or (ch.isspace() and ch != " ") for ch in text)


_hostile_text = st.lists(
    st.one_of(
        st.sampled_from(
            ["\x1b[2K", "\x1b]8;;http://x\x07", "\u202e", "\u2066", "\u200b", "\ufeff", "\n", "\r", "\\", '"']
        ),
        st.characters(codec="utf-8", exclude_categories=["Cs"]),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(
    principal=_hostile_text,
    tenant=_hostile_text,
    task=_hostile_text,
    purpose=_hostile_text,
    target=_hostile_text,
    value=_hostile_text,
)
def test_the_prompt_escapes_everything_the_caller_chose(
    *, principal: str, tenant: str, task: str, purpose: str, target: str, value: str
) -> None:
    """What a person is shown has no character that hides or restyles text, and names each
    client-chosen value (arguments included) in a form that reads back to exactly that value."""
    request = ApprovalRequest(
        id="r1",
        action=("tools/call", "tool", target, "sha256:x", "iss", principal, tenant, task, f"iss#{principal}", None),
        method="tools/call",
        kind="tool",
        target=target,
        args_hash="sha256:x",
        principal=principal,
        tenant=tenant,
        task_id=task,
        purpose=purpose,
        rule="r",
        reason="why",
        requested_at=0.0,
        expires_at=1.0,
        arguments={"value": value},
    )
    shown = request.describe()
    assert not _hides_something(shown)
    for text in (principal, tenant, task, purpose, target):
        if text:
            assert json.loads(ApprovalRequest.quoted(text)) == text
            assert ApprovalRequest.quoted(text) in shown
    arguments = request.shown_arguments()
    assert f" with arguments {arguments}. " in shown
    assert json.loads(arguments) == {"value": value}


async def test_the_elicitation_prompt_shows_the_arguments_that_run(mode: str) -> None:
    """The client's user sees the arguments themselves, escaped, not only their hash."""
    asked: list[str] = []

    async def answer(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"approve": True})

    d = Deploys(ElicitationApprover(), deadline=5)
    hostile = "2.0\x1b[1A\x1b[2K\u202eok\u200b"
    async with Client(d.server, mode=mode, elicitation_callback=answer) as client:
        result = await client.call_tool("deploy", {"version": hostile, "note": "rm -rf /"})
    assert result.is_error is False
    assert d.ran == [(hostile, "rm -rf /")]
    (prompt,) = asked
    assert not _hides_something(prompt)
    assert '{"note":"rm -rf /","version":"2.0\\u001b[1A\\u001b[2K\\u202eok\\u200b"}' in prompt


class _Clock:
    """A clock the test moves forward."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_grant_that_expires_before_the_effect_runs_nothing(mode: str) -> None:
    """A stage after the authorisers that waits past the grant's lifetime: the grant is checked
    again right before the tool runs, and an expired one runs nothing."""
    clock = _Clock()
    server = MCPServer("deployer")
    ran: list[str] = []
    sink = InMemoryAuditSink()
    hooks = Hooks()

    @hooks.tool("deploy")
    def needs_approval(ctx: GovContext) -> Decision:
        return Decision.require_approval("deploys-need-approval", "production change")

    async def slow_stage(ctx: GovContext, call_next: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        clock.now += 61  # past grant_ttl, after the authorisers accepted the grant
        return await call_next(ctx)

    @server.tool()
    def deploy(version: str) -> str:
        ran.append(version)
        return version

    approver = CallbackApprover(lambda r: True, name="alice")
    govern(server, ApprovalMiddleware(approver, grant_ttl=60, clock=clock), hooks, slow_stage, audit=sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.code == -32003
    assert ran == []
    assert [d.reason for d in sink.decisions()][-1] == "approval_expired"
    assert sink.of_type("approval.granted") == []  # refused at the gate: never recorded as granted


_APPROVE = {"mcpgov.approval": ElicitResult(action="accept", content={"approve": True})}


async def _accept(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
    return ElicitResult(action="accept", content={"approve": True})


class _FailingDelete(InMemoryStateStore):
    """A store whose delete fails (a store that goes down between the single-use mark and the cleanup)."""

    async def delete(self, key: str) -> None:
        raise StateStoreError("store down", reason="unavailable")


class _Garbled(InMemoryStateStore):
    """A store that gives back a garbled pending approval."""

    def __init__(self, garbage: str) -> None:
        super().__init__()
        self.garbage = garbage

    async def get(self, key: str) -> str | None:
        return self.garbage if await super().get(key) is not None else None


async def _retry(client: Client, arguments: dict[str, Any], state: str) -> Any:
    return await client.session.call_tool(
        "deploy",
        arguments,
        input_responses=_APPROVE,  # type: ignore[arg-type]
        request_state=state,
        allow_input_required=True,
    )


async def test_a_store_failing_after_the_single_use_mark_neither_loses_nor_repeats_the_approval() -> None:
    d = Deploys(ElicitationApprover(store=_FailingDelete()), deadline=5)
    async with Client(d.server, mode="auto", elicitation_callback=_accept) as client:
        first = await client.session.call_tool("deploy", {"version": "7"}, allow_input_required=True)
        state = getattr(first, "request_state", None)
        assert isinstance(state, str)
        ok = await _retry(client, {"version": "7"}, state)
        assert getattr(ok, "is_error", None) is False
        with pytest.raises(MCPError) as caught:
            await _retry(client, {"version": "7"}, state)
        assert caught.value.code == -32003
    assert d.ran == [("7", "")]


@pytest.mark.parametrize(
    "garbage",
    ["not json", "[]", "{}", '{"action": [1,2,3,4,5,6,7,8]}', '{"action": null}', '"x"', "1e999"],
)
async def test_a_garbled_pending_approval_refuses_cleanly(garbage: str) -> None:
    d = Deploys(ElicitationApprover(store=_Garbled(garbage)), deadline=5)
    async with Client(d.server, mode="auto", elicitation_callback=_accept) as client:
        first = await client.session.call_tool("deploy", {"version": "7"}, allow_input_required=True)
        state = getattr(first, "request_state", None)
        assert isinstance(state, str)
        with pytest.raises(MCPError) as caught:
            await _retry(client, {"version": "7"}, state)
        assert caught.value.code == -32003
    assert d.ran == []
    assert d.sink.decisions()[-1].effect == "deny"


@pytest.mark.parametrize(
    "other",
    [
        {"version": 7},  # the same value as another type
        {"version": "7", "note": ""},  # an extra key holding the default
        {"version": "7 "},
        {"version": "\uff17"},  # a fullwidth seven (NFKC: "7")
        {"version": "7", "note": "x"},
    ],
)
async def test_an_elicitation_approval_is_for_exactly_its_arguments(other: dict[str, Any]) -> None:
    """A retry with other arguments than the approved ones is refused and does not use the
    approval up: the approved arguments still run, once."""
    d = Deploys(ElicitationApprover(store=InMemoryStateStore()), deadline=5)
    async with Client(d.server, mode="auto", elicitation_callback=_accept) as client:
        first = await client.session.call_tool("deploy", {"version": "7"}, allow_input_required=True)
        state = getattr(first, "request_state", None)
        assert isinstance(state, str)
        with pytest.raises(MCPError):
            await _retry(client, other, state)
        ok = await _retry(client, {"version": "7"}, state)
        assert getattr(ok, "is_error", None) is False
    assert d.ran == [("7", "")]


async def test_concurrent_retries_of_one_approval_on_a_shared_redis_run_once() -> None:
    pytest.importorskip("redis.asyncio", reason="the 'redis' extra is not installed")
    from mcpgov.redis import RedisStateStore

    with redis_server() as (url, _process):
        async with RedisStateStore.from_url(url, prefix="approvals:") as store:
            d = Deploys(ElicitationApprover(store=store), deadline=5)
            outcomes: list[str] = []
            async with Client(d.server, mode="auto", elicitation_callback=_accept) as client:
                first = await client.session.call_tool("deploy", {"version": "9"}, allow_input_required=True)
                state = getattr(first, "request_state", None)
                assert isinstance(state, str)

                async def attempt() -> None:
                    try:
                        result = await _retry(client, {"version": "9"}, state)
                    except MCPError:
                        outcomes.append("refused")
                    else:
                        outcomes.append("ran" if getattr(result, "is_error", None) is False else "error")

                async with anyio.create_task_group() as tg:
                    for _ in range(6):
                        tg.start_soon(attempt)
    assert sorted(outcomes) == ["ran"] + ["refused"] * 5
    assert d.ran == [("9", "")]


@pytest.mark.parametrize(
    ("action", "content"),
    [
        ("accept", None),
        ("accept", {}),
        ("accept", {"approve": "true"}),
        ("accept", {"approve": 1}),
        ("accept", {"approve": "yes"}),
        ("accept", {"Approve": True}),
        ("decline", {"approve": True}),
        ("cancel", {"approve": True}),
    ],
)
async def test_an_answer_that_only_looks_like_yes_approves_nothing(mode: str, action: str, content: Any) -> None:
    async def answer(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        return ElicitResult.model_construct(action=action, content=content)

    d = Deploys(ElicitationApprover(), deadline=5)
    async with Client(d.server, mode=mode, elicitation_callback=answer) as client:
        with pytest.raises(MCPError):
            await client.call_tool("deploy", {"version": "8"})
    assert d.ran == []
    assert d.sink.of_type("approval.granted") == []
    assert d.sink.decisions()[-1].effect == "deny"


class _Boom(BaseException):
    """A BaseException subclass that is not an exit."""


@pytest.mark.parametrize("raised", ["base", "cancelled", "group"])
async def test_an_approver_raising_a_base_exception_refuses_and_the_session_keeps_serving(
    mode: str, raised: str
) -> None:
    async def approver(request: ApprovalRequest) -> bool:
        if raised == "base":
            raise _Boom
        if raised == "cancelled":
            raise anyio.get_cancelled_exc_class()
        raise BaseExceptionGroup("several", [_Boom(), ValueError()])

    d = Deploys(CallbackApprover(approver, name="x"), deadline=5)
    async with Client(d.server, mode=mode) as client:
        for _ in range(2):  # the session survives and refuses again
            with pytest.raises(MCPError) as caught:
                await client.call_tool("deploy", {"version": "1"})
            assert caught.value.code == -32004
    assert d.ran == []
    assert [e.reason for e in d.sink.decisions()] == ["approval_timeout", "approval_timeout"]


def _two_approval_policy() -> Policy:
    return Policy.from_dict(
        {
            "version": 1,
            "rules": [
                {"id": "deploy-ok", "effect": "allow", "tools": ["deploy"], "anonymous": True},
                {"id": "release-manager", "effect": "require_approval", "tools": ["deploy"], "anonymous": True},
                {"id": "big-change", "effect": "require_approval", "tools": ["deploy"], "anonymous": True},
            ],
        }
    )


@pytest.mark.parametrize("refused", [None, "release-manager", "big-change"])
async def test_every_approval_rule_of_a_policy_is_asked_about(mode: str, refused: str | None) -> None:
    """Two require_approval rules of one policy apply: the approver is asked about each, and a
    refusal of either runs nothing (an approval asked under one rule does not stand for another)."""
    asked: list[str] = []

    def approve(request: ApprovalRequest) -> bool:
        asked.append(request.rule)
        return request.rule != refused

    server = MCPServer("deployer")
    ran: list[str] = []
    sink = InMemoryAuditSink()

    @server.tool()
    def deploy(version: str) -> str:
        ran.append(version)
        return version

    approver = CallbackApprover(approve, name="alice")
    govern(server, ApprovalMiddleware(approver), PolicyMiddleware(_two_approval_policy()), audit=sink)
    async with Client(server, mode=mode) as client:
        if refused is None:
            result = await client.call_tool("deploy", {"version": "1"})
            assert result.is_error is False
        else:
            with pytest.raises(MCPError):
                await client.call_tool("deploy", {"version": "1"})
    assert ran == ([] if refused else ["1"])
    expected = ["release-manager"] if refused == "release-manager" else ["release-manager", "big-change"]
    assert asked == expected


@pytest.mark.parametrize("refused", [None, "maybe-marketing"])
async def test_an_approval_rule_that_may_apply_is_asked_about_too(mode: str, refused: str | None) -> None:
    """Beside an approval rule that applies, one whose condition is unknown (no purpose declared)
    is asked about as well: uncertainty never lets a call skip an approval."""
    policy = Policy.from_dict(
        {
            "version": 1,
            "rules": [
                {"id": "deploy-ok", "effect": "allow", "tools": ["deploy"], "anonymous": True},
                {"id": "release-manager", "effect": "require_approval", "tools": ["deploy"], "anonymous": True},
                {
                    "id": "maybe-marketing",
                    "effect": "require_approval",
                    "tools": ["deploy"],
                    "anonymous": True,
                    "when": {"purposes": ["marketing"]},
                },
            ],
        }
    )
    asked: list[str] = []

    def approve(request: ApprovalRequest) -> bool:
        asked.append(request.rule)
        return request.rule != refused

    server = MCPServer("deployer")
    ran: list[str] = []

    @server.tool()
    def deploy(version: str) -> str:
        ran.append(version)
        return version

    govern(server, ApprovalMiddleware(CallbackApprover(approve, name="alice")), PolicyMiddleware(policy))
    async with Client(server, mode=mode) as client:
        if refused is None:
            assert (await client.call_tool("deploy", {"version": "1"})).is_error is False
        else:
            with pytest.raises(MCPError):
                await client.call_tool("deploy", {"version": "1"})
    assert asked == ["release-manager", "maybe-marketing"]
    assert ran == ([] if refused else ["1"])


@pytest.mark.parametrize("refused", [None, "finance-limit", "security-review"])
async def test_every_approval_hook_of_one_hooks_object_is_asked_about(mode: str, refused: str | None) -> None:
    """Two hooks of one Hooks object require approval under their own rules: each is asked about."""
    asked: list[str] = []

    def approve(request: ApprovalRequest) -> bool:
        asked.append(request.rule)
        return request.rule != refused

    server = MCPServer("bank")
    ran: list[int] = []
    hooks = Hooks()
    hooks.register("wire", lambda ctx: Decision.require_approval("finance-limit", "over the limit"))
    hooks.register("wire", lambda ctx: Decision.require_approval("security-review", "new payee"))

    @server.tool()
    def wire(amount: int) -> int:
        ran.append(amount)
        return amount

    govern(server, ApprovalMiddleware(CallbackApprover(approve, name="alice")), hooks)
    async with Client(server, mode=mode) as client:
        if refused is None:
            assert (await client.call_tool("wire", {"amount": 5})).is_error is False
        else:
            with pytest.raises(MCPError):
                await client.call_tool("wire", {"amount": 5})
    assert ran == ([] if refused else [5])
    assert refused in asked if refused else sorted(asked) == ["finance-limit", "security-review"], (asked, ran)


async def test_an_approver_cannot_change_the_arguments_it_approves(mode: str) -> None:
    """The approver is handed the arguments read-only: it cannot make another call run than the
    one it was asked about (nested values included)."""
    tried: list[str] = []

    def meddle(request: ApprovalRequest) -> bool:
        arguments: Any = request.arguments
        attempts: tuple[Callable[[], object], ...] = (
            lambda: arguments.__setitem__("version", "evil"),
            lambda: arguments["note"].__setitem__(0, "evil"),
            lambda: arguments["note"].append("evil"),
            lambda: arguments["meta"].__setitem__("k", "evil"),
        )
        for attempt in attempts:
            try:
                attempt()
            except Exception as exc:
                tried.append(type(exc).__name__)
            else:
                tried.append("changed")
        return True

    server = MCPServer("deployer")
    ran: list[Any] = []
    hooks = Hooks()
    hooks.register("deploy", lambda ctx: Decision.require_approval("needs-approval", "production change"))

    @server.tool()
    def deploy(version: str, note: list[str], meta: dict[str, str]) -> str:
        ran.append((version, note, meta))
        return version

    govern(server, ApprovalMiddleware(CallbackApprover(meddle, name="alice")), hooks)
    async with Client(server, mode=mode) as client:
        await client.call_tool("deploy", {"version": "1", "note": ["a"], "meta": {"k": "v"}})
    assert "changed" not in tried
    assert ran == [("1", ["a"], {"k": "v"})]


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.text(max_size=8),
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=25, deadline=None)
@given(payload=_json_value, approve=st.booleans())
def test_property_what_runs_is_what_was_approved(payload: Any, approve: bool) -> None:
    """For any arguments: a call runs only when approved, and then with exactly the arguments the
    approver was shown (their canonical JSON) and their hash."""
    approved: list[ApprovalRequest] = []

    def approver(request: ApprovalRequest) -> bool:
        approved.append(request)
        return approve

    server = MCPServer("store")
    ran: list[Any] = []
    hooks = Hooks()
    hooks.register("put", lambda ctx: Decision.require_approval("writes", "a write"))

    @server.tool()
    def put(payload: Any = None) -> str:
        ran.append(payload)
        return "ok"

    govern(server, ApprovalMiddleware(CallbackApprover(approver, name="alice")), hooks)

    async def main() -> None:
        async with Client(server, mode="legacy") as client:
            try:
                await client.call_tool("put", {"payload": payload})
            except MCPError:
                assert not approve

    anyio.run(main)
    (request,) = approved
    assert json.loads(request.shown_arguments()) == {"payload": payload}
    if approve:
        assert ran == [payload]
        assert request.args_hash == "sha256:" + hashlib.sha256(canonical_json({"payload": payload})).hexdigest()
    else:
        assert ran == []


async def test_an_approval_given_under_one_policy_version_does_not_stand_under_another(mode: str) -> None:
    """The policy is reloaded while the approver decides (the rule keeps its id, its terms
    change): the grant was given under the old policy and does not let the call run under the new."""
    old = _two_approval_policy()
    new = Policy.from_dict(
        {
            "version": 1,
            "rules": [
                {"id": "deploy-ok", "effect": "allow", "tools": ["deploy"], "anonymous": True},
                {
                    "id": "release-manager",
                    "effect": "require_approval",
                    "tools": ["deploy"],
                    "anonymous": True,
                    "description": "now: two release managers",
                },
            ],
        }
    )
    policy = PolicyMiddleware(old)
    asked: list[tuple[str, str]] = []

    async def approve(request: ApprovalRequest) -> bool:
        asked.append((request.rule, request.reason))
        if len(asked) == 1:
            assert await policy.reload(new)
        return True

    server = MCPServer("deployer")
    ran: list[str] = []

    @server.tool()
    def deploy(version: str) -> str:
        ran.append(version)
        return version

    govern(server, ApprovalMiddleware(CallbackApprover(approve, name="alice")), policy)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("deploy", {"version": "1"})
    assert ran == []


@pytest.mark.parametrize(("approved", "approver"), [("no", "bob"), ("false", "bob"), (1, "bob"), (True, ""), (True, 7)])
async def test_an_answer_of_the_wrong_types_approves_nothing(mode: str, approved: Any, approver: Any) -> None:
    """An answer whose ``approved`` is not a bool, or with no approver's name, is no answer."""

    def answer(request: ApprovalRequest) -> ApprovalAnswer:
        return ApprovalAnswer(request.id, approved, approver)

    d = Deploys(CallbackApprover(answer, name="x"), deadline=5)
    async with Client(d.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.code == -32004
    assert d.ran == []
    assert d.sink.decisions()[-1].reason == "approval_timeout"


async def test_an_answer_changed_after_it_was_made_approves_nothing(mode: str) -> None:
    """An approver that forges a well-formed answer's fields afterwards gives no answer."""

    class Forging:
        async def __call__(self, request: ApprovalRequest, ctx: GovContext) -> ApprovalAnswer:
            answer = ApprovalAnswer(request.id, False, "bob")
            object.__setattr__(answer, "approved", "yes")
            return answer

    d = Deploys(Forging(), deadline=5)
    async with Client(d.server, mode=mode) as client:
        with pytest.raises(MCPError):
            await client.call_tool("deploy", {"version": "1"})
    assert d.ran == []


@pytest.mark.parametrize("approved", ["no", "false", 1, 0, None])
async def test_the_queue_refuses_an_answer_that_is_not_a_bool(mode: str, approved: Any) -> None:
    """``queue.answer(approved="no")`` is refused with a clear error, never read as a truthy yes."""
    queue = ApprovalQueue()
    d = Deploys(queue, deadline=0.5)
    errors: list[str] = []

    async def operator() -> None:
        request = await queue.next_request()
        try:
            queue.answer(request.id, approved=approved, approver="carol")
        except ConfigurationError as exc:
            errors.append(str(exc))

    async with Client(d.server, mode=mode) as client, anyio.create_task_group() as tg:
        tg.start_soon(operator)
        with pytest.raises(MCPError):
            await client.call_tool("deploy", {"version": "1"})
    assert d.ran == []
    assert errors and "approved" in errors[0]
