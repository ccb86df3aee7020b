"""What the call path reuses stays exact: event ids stay random and unique, a client's reading of
its own identity token is keyed by the token, and a request's events share only its own fields."""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import OctKey
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import (
    AuditEvent,
    CredentialError,
    Decision,
    GovContext,
    GovernedClient,
    Hooks,
    InMemoryStateStore,
    Principal,
    govern,
)
from mcpgov._audit import ContextValues, _next_event_id
from mcpgov._context import META_IDENTITY
from mcpgov.credentials import (
    CompactMemoryStore,
    RevocationList,
)
from mcpgov.credentials._holder import MintingPrincipal, principal_for_minting

from .test_credentials_support import AUDIENCE, FrozenClock, build_governed, call, make_issuer, principal

pytestmark = pytest.mark.anyio

_HEX24 = re.compile(r"[0-9a-f]{24}")


def test_event_ids_are_unique_random_hex() -> None:
    ids = [_next_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(_HEX24.fullmatch(i) for i in ids)
    # No counter shows through: consecutive ids share no long common prefix.
    assert sum(a[:6] == b[:6] for a, b in itertools.pairwise(ids)) < 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_never_hands_out_its_parents_ids() -> None:
    _next_event_id()  # the parent holds a drawn batch now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, "".join(_next_event_id() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    child = {data[i : i + 24].decode() for i in range(0, len(data), 24)}
    parent = {_next_event_id() for _ in range(100)}
    assert len(child) == 100
    assert not child & parent


def _token(claims: dict[str, Any]) -> str:
    payload = json.dumps(claims).encode()
    return jws.serialize_compact({"alg": "HS256"}, payload, OctKey.generate_key(256))


def _minting_ctx(principal: Principal, token: str) -> GovContext:
    return GovContext(side="client", method="tools/call", principal=principal, meta={META_IDENTITY: token})


def test_the_principal_minted_for_is_rechecked_whenever_the_identity_token_changes() -> None:
    creds = MintingPrincipal()
    me = Principal("https://id.example", "agent-1", tenant="acme")
    first = _token({"sub": "agent-1", "iss": "https://id.example", "exp": 2_000_000_000})
    ctx = _minting_ctx(me, first)
    bounded = creds(ctx)
    assert bounded is not None and bounded.claims["exp"] == 2_000_000_000
    assert creds(_minting_ctx(me, first)) is bounded  # same principal, same token: kept
    shorter = _token({"sub": "agent-1", "iss": "https://id.example", "exp": 1_900_000_000})
    again = creds(_minting_ctx(me, shorter))
    assert again is not None and again.claims["exp"] == 1_900_000_000
    intruder = _token({"sub": "mallory", "iss": "https://id.example", "exp": 2_000_000_000})
    with pytest.raises(CredentialError) as caught:
        creds(_minting_ctx(me, intruder))
    assert caught.value.reason == "wrong_principal"
    with pytest.raises(CredentialError):  # and again: a refusal is never kept as an answer
        creds(_minting_ctx(me, intruder))
    other = Principal("https://id.example", "agent-1", tenant="acme")  # equal, but another object
    assert creds(_minting_ctx(other, shorter)) == again


def test_events_of_one_context_share_its_fields_and_nothing_else() -> None:
    me = Principal("https://id.example", "agent-1", tenant="acme")
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="t", principal=me, tenant="acme")
    values = ContextValues(ctx)
    first = AuditEvent.from_values(values, "decision", effect="allow", attributes={"a": 1})
    second = AuditEvent.from_values(values, "outcome", outcome="completed")
    assert first.id != second.id
    assert second.attributes == {} and first.attributes == {"a": 1}
    assert second.effect is None and first.outcome is None
    for event in (first, second):
        rebuilt = AuditEvent.model_validate(event.model_dump())
        assert rebuilt == event
        assert event.principal == me.id and event.tenant == "acme" and event.target == "t"
    expected = AuditEvent.from_context(ctx, "outcome", outcome="completed")
    assert second.model_dump(exclude={"id", "time"}) == expected.model_dump(exclude={"id", "time"})
    assert second.model_fields_set == expected.model_fields_set


async def test_a_governed_call_records_two_events_with_the_same_caller_and_distinct_ids(mode: str) -> None:
    server = MCPServer("events")

    @server.tool()
    async def add(a: int, b: int) -> int:
        return a + b

    hooks = Hooks()
    hooks.register("*", lambda ctx: Decision.allow("ok"), kind="tool")
    events: list[AuditEvent] = []
    govern(server, hooks, audit=events.append)
    async with GovernedClient(server, mode=mode) as client:
        for i in range(3):
            result = await client.call_tool("add", {"a": i, "b": 1})
            assert result.structured_content == {"result": i + 1}
    server_events = [e for e in events if e.side == "server" and e.method == "tools/call"]
    assert [e.type for e in server_events] == ["decision", "outcome"] * 3
    assert len({e.id for e in server_events}) == 6
    for decision, outcome in zip(server_events[::2], server_events[1::2], strict=True):
        assert decision.request_key == outcome.request_key
        assert decision.args_hash == outcome.args_hash
        assert decision.effect == "allow" and outcome.outcome == "completed"
    assert len({e.request_key for e in server_events}) == 3


_REVOKE_WAYS = ("credential", "task", "tenant task", "principal")


@pytest.mark.parametrize("store_kind", ["compact", "memory"])
@pytest.mark.parametrize("way", _REVOKE_WAYS)
async def test_a_credential_checked_many_times_is_refused_once_revoked(mode: str, way: str, store_kind: str) -> None:
    clock = FrozenClock()
    store: Any = CompactMemoryStore(clock=clock) if store_kind == "compact" else InMemoryStateStore(clock=clock)
    revocations = RevocationList(store, max_ttl=300, clock=clock)
    issuer = make_issuer(clock, revocations=revocations)
    governed = build_governed(issuer, revocations=revocations)
    agent = principal("agent-1", "acme")
    cred = await issuer.mint(agent, audience=AUDIENCE, tools=["status"], task_id="t1")
    async with Client(governed.server, mode=mode) as client:
        for _ in range(5):  # the same credential, checked again and again
            await call(client, "status", {}, cred.token, agent)
        if way == "credential":
            await issuer.revoke(cred)
        elif way == "task":
            await issuer.revoke_task(agent, "t1")
        elif way == "tenant task":
            await issuer.revoke_tenant_task("acme", "t1")
        else:
            await issuer.revoke_principal(agent)
        for _ in range(3):
            with pytest.raises(MCPError):
                await call(client, "status", {}, cred.token, agent)
    assert governed.ran == ["status"] * 5


_SUBJECTS = ("agent-1", "agent-2", "mallory")
_PRINCIPALS = [Principal("https://id.example", s, tenant="acme") for s in _SUBJECTS[:2]]
_IDENTITY_TOKENS = [
    _token({"sub": s, "iss": "https://id.example", "exp": exp})
    for s in _SUBJECTS
    for exp in (1_900_000_000, 2_000_000_000)
]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, len(_IDENTITY_TOKENS) - 1)), min_size=1, max_size=12))
def test_the_kept_principal_always_equals_a_fresh_check(steps: list[tuple[int, int]]) -> None:
    creds = MintingPrincipal()
    for who, which in steps:
        ctx = _minting_ctx(_PRINCIPALS[who], _IDENTITY_TOKENS[which])
        try:
            expected: Any = principal_for_minting(ctx)
        except CredentialError as exc:
            expected = exc.reason
        try:
            got: Any = creds(ctx)
        except CredentialError as exc:
            got = exc.reason
        assert got == expected


def test_the_handler_request_copy_equals_dataclasses_replace() -> None:
    """The handler's request context is copied without re-running the SDK dataclass's __init__:
    the copy equals what ``dataclasses.replace`` gives, and the original is untouched."""
    import dataclasses

    from mcp.server.context import ServerRequestContext

    from mcpgov._sdk import request as sdk_request

    assert sdk_request._REPLACE_BY_INIT is False  # the installed SDK's class has the plain shape
    meta: Any = {META_IDENTITY: "secret-token", "k": 1}
    original: ServerRequestContext[Any, Any] = ServerRequestContext(
        session=None,  # type: ignore[arg-type]
        lifespan_context={},
        protocol_version="2026-07-28",
        method="tools/call",
        params={"name": "add", "arguments": {"a": 1}, "_meta": {META_IDENTITY: "secret-token", "k": 1}},
        request_id=3,
        meta=meta,
    )
    before = dict(original.__dict__)
    copy = sdk_request.handler_request(original, arguments_key="arguments", arguments={"a": 2})
    clean: Any = {"k": 1}
    expected = dataclasses.replace(
        original, params={"name": "add", "arguments": {"a": 2}, "_meta": clean}, meta=clean, request=None
    )
    assert copy == expected and copy.__dict__ == expected.__dict__
    assert type(copy) is ServerRequestContext and copy is not original
    assert original.__dict__ == before


def test_event_ids_stay_unique_when_threads_draw_at_once() -> None:
    """No lock guards the id pool: each drawn id is still handed out exactly once, refills included."""
    drawn: list[list[str]] = [[] for _ in range(6)]
    start = threading.Barrier(len(drawn))

    def draw(into: list[str]) -> None:
        start.wait()
        into.extend(_next_event_id() for _ in range(3_000))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads swap as often as possible, also inside refills
    try:
        threads = [threading.Thread(target=draw, args=(ids,)) for ids in drawn]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    every = [i for ids in drawn for i in ids]
    assert len(every) == 18_000
    assert len(set(every)) == len(every)
    assert all(_HEX24.fullmatch(i) for i in every)


_CONTEXT_FIELDS = {
    "schema_version",
    "id",
    "type",
    "time",
    "side",
    "method",
    "kind",
    "target",
    "principal",
    "tenant",
    "actors",
    "session_id",
    "request_id",
    "request_key",
    "task_id",
    "task_owner",
    "purpose",
    "credential_id",
    "args_hash",
    "auth_method",
}


async def test_the_events_of_a_governed_call_are_exactly_what_validation_would_build(mode: str) -> None:
    """The decision and outcome events built on the call path equal fully validated events, with
    the same fields marked as set, and share no mutable value."""
    server = MCPServer("events")

    @server.tool()
    async def add(a: int, b: int) -> int:
        return a + b

    hooks = Hooks()
    hooks.register("*", lambda ctx: Decision.allow("ok", "fine"), kind="tool")
    events: list[AuditEvent] = []
    govern(server, hooks, audit=events.append)
    async with Client(server, mode=mode) as client:
        await client.call_tool("add", {"a": 1, "b": 2})
    decision, outcome = (e for e in events if e.method == "tools/call")
    stamped = {"trace_id", "span_id"}  # set when a tracer provider gave the request a span context
    for event in (decision, outcome):
        assert AuditEvent.model_validate(event.model_dump()) == event
        assert (event.trace_id is None) == (event.span_id is None) == stamped.isdisjoint(event.model_fields_set)
    assert decision.model_fields_set - stamped == _CONTEXT_FIELDS | {
        "effect",
        "rule",
        "reason",
        "detail",
        "args_hash",
        "engine",
        "policy_version",
        "attributes",
        "approver",
    }
    assert outcome.model_fields_set - stamped == _CONTEXT_FIELDS | {
        "outcome",
        "latency_ms",
        "args_hash",
        "reason",
        "error_code",
        "attributes",
    }
    assert (decision.effect, decision.rule, decision.reason, decision.detail) == ("allow", "ok", "allowed", "fine")
    assert (outcome.outcome, outcome.reason, outcome.effect) == ("completed", None, None)
    assert decision.attributes == {} and outcome.attributes == {}
    assert decision.attributes is not outcome.attributes
    assert decision.model_fields_set is not outcome.model_fields_set
    assert decision.__dict__ is not outcome.__dict__
