"""Revocation as a kill switch: the last check sits at the gate, revocation cascades, a credential
cannot change hands, unrecorded revocations are kept, task revocation is its owner's, and tokens
never reach log records."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import (
    META_CREDENTIAL,
    CallNext,
    CredentialError,
    Decision,
    GovContext,
    GovernedClient,
    Hooks,
    Principal,
    govern,
)
from mcpgov.credentials import (
    TASK_BINDING,
    ClientCredentials,
    CompactMemoryStore,
    Credential,
    CredentialIssuer,
    CredentialMiddleware,
    CredentialRefused,
    Grant,
    IssuancePolicy,
    IssuerTokenSource,
    RevocationList,
)
from mcpgov.testing import InMemoryAuditSink

from .test_credentials_support import (
    AUDIENCE,
    FrozenClock,
    as_principal,
    build_governed,
    call,
    make_issuer,
    principal,
    refusals,
)

pytestmark = pytest.mark.anyio

AGENT = principal("agent-1", "acme")
PEER = principal("agent-2", "acme")
SUB = principal("sub-agent", "acme")
SERVER_ID = principal("deployer", "acme")
THIEF = principal("mallory", "acme")
REGISTRY = "https://registry.example"


# -- the last check sits at the gate ------------------------------------------------------------


async def _slow_authorizer_hooks(delay: float) -> Hooks:
    # The deadline is far beyond any delay here: these tests are about what happens around a slow
    # authoriser, not about its deadline, which a loaded machine could otherwise reach.
    hooks = Hooks(deadline=60.0)

    @hooks.tool("*")
    async def allow(ctx: GovContext) -> Decision:
        await anyio.sleep(delay)  # an authoriser that awaits: a policy store, a rate limiter
        return Decision.allow("allow")

    return hooks


async def slow_stage(ctx: GovContext, call_next: CallNext) -> Any:
    """A plain async stage (an async audit sink, a rate-limit store) after the credential check."""
    await anyio.sleep(0.001)
    return await call_next(ctx)


def _inline_allow() -> Hooks:
    hooks = Hooks()

    @hooks.tool("*")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("allow")

    return hooks


CHAINS: dict[str, Callable[[CredentialMiddleware, Hooks], list[Any]]] = {
    "credential-then-inline-authoriser": lambda cred, hooks: [cred, _inline_allow()],
    "credential-then-slow-authoriser": lambda cred, hooks: [cred, hooks],
    "credential-then-slow-stage-then-authoriser": lambda cred, hooks: [cred, slow_stage, hooks],
    # (An authoriser before the credential check is refused at construction: see test_boundary.)
    "credential-then-authoriser-then-slow-stage": lambda cred, hooks: [cred, hooks, slow_stage],
    "credential-checked-early-then-slow-authoriser": lambda cred, hooks: [
        CredentialMiddleware(cred.verifier, check_early=True),
        hooks,
    ],
}


@pytest.mark.parametrize("order", sorted(CHAINS))
async def test_no_tool_body_starts_after_revoke_returns_whatever_awaits_after_the_check(mode: str, order: str) -> None:
    issuer = make_issuer(FrozenClock())
    server = MCPServer("race")
    ticks = itertools.count()
    starts: list[int] = []
    hundred_started = anyio.Event()

    @server.tool()
    async def work() -> str:
        starts.append(next(ticks))
        if len(starts) >= 100:
            hundred_started.set()
        await anyio.lowlevel.checkpoint()
        return "ok"

    hooks = await _slow_authorizer_hooks(0.001)
    govern(server, *CHAINS[order](CredentialMiddleware(issuer.verifier(AUDIENCE)), hooks))
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["work"])
    codes: set[int] = set()
    outcomes: dict[str, int] = {"ok": 0, "refused": 0}
    revoked_at: list[int] = []

    async with Client(server, mode=mode) as client:
        await call(client, "work", {}, cred.token)  # warm-up: the client's own first tools/list
        starts.clear()

        async def use(delay: int) -> None:
            for _ in range(delay):  # spread the uses over many scheduling rounds
                await anyio.lowlevel.checkpoint()
            try:
                await call(client, "work", {}, cred.token)
                outcomes["ok"] += 1
            except MCPError as exc:
                codes.add(exc.code)
                outcomes["refused"] += 1

        async def revoke() -> None:
            await hundred_started.wait()
            await issuer.revoke(cred)
            revoked_at.append(next(ticks))

        async with anyio.create_task_group() as tg:
            tg.start_soon(revoke)
            for i in range(1000):
                tg.start_soon(use, i // 4)

    (mark,) = revoked_at
    assert codes == {-32002}
    assert starts, "some uses ran before the revocation"
    assert max(starts) < mark, "a tool body started after revoke() returned"
    assert outcomes["ok"] == len(starts)
    assert outcomes["refused"] == 1000 - len(starts) > 0


REVOCATIONS: dict[str, Callable[[Any, Any, FrozenClock], Any]] = {
    "credential": lambda issuer, cred, clock: issuer.revoke(cred),
    "task": lambda issuer, cred, clock: issuer.revoke_task(AGENT, "release-42"),
    "principal": lambda issuer, cred, clock: issuer.revoke_principal(AGENT),
}


@pytest.mark.parametrize("how", [*sorted(REVOCATIONS), "expiry"])
async def test_a_call_that_waited_is_re_verified_right_before_it_runs(mode: str, how: str) -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    server = MCPServer("waits")
    ran: list[str] = []
    waiting, release = anyio.Event(), anyio.Event()
    sink = InMemoryAuditSink()

    @server.tool()
    async def deploy() -> str:
        ran.append("deploy")
        return "ok"

    hooks = Hooks()

    @hooks.tool("deploy")
    async def approve(ctx: GovContext) -> Decision:
        waiting.set()
        await release.wait()  # stands for a human approval that takes minutes
        return Decision.allow("approved")

    govern(server, CredentialMiddleware(issuer.verifier(AUDIENCE)), hooks, audit=sink)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="release-42", ttl=60)
    outcome: list[Any] = []

    async with Client(server, mode=mode) as client:

        async def use() -> None:
            try:
                outcome.append(await call(client, "deploy", {}, cred.token))
            except MCPError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(use)
            await waiting.wait()
            if how == "expiry":
                clock.advance(60 + issuer.verifier(AUDIENCE).leeway + 1)
            else:
                await REVOCATIONS[how](issuer, cred, clock)
            release.set()

    (error,) = outcome
    assert isinstance(error, MCPError)
    assert error.code == -32002
    assert ran == []
    (event,) = refusals(sink)
    assert (event.reason, event.credential_id) == ("expired" if how == "expiry" else "revoked", cred.id)
    assert cred.token not in repr(sink.events)


# -- cascading revocation -----------------------------------------------------------------------


@pytest.mark.parametrize("revoke", ["owner", "delegator", "credential"])
async def test_revocation_reaches_every_credential_derived_from_it(revoke: str) -> None:
    issuer = make_issuer(downstream={AUDIENCE: [REGISTRY]})
    root = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], task_id="t", may_act=[SUB, SERVER_ID])
    child = await issuer.delegate(root.token, subject=SUB, may_act=[SERVER_ID])
    downstream = await issuer.exchange(child.token, audience=REGISTRY, tools=["tag"], actor=SERVER_ID)
    direct = await issuer.exchange(root.token, audience=REGISTRY, tools=["tag"], actor=SERVER_ID)
    here, there = issuer.verifier(AUDIENCE), issuer.verifier(REGISTRY)
    for token, verifier, tool in ((child.token, here, "deploy"), (downstream.token, there, "tag")):
        await verifier.verify(token, tool=tool)
    if revoke == "owner":
        await issuer.revoke_principal(AGENT)
        gone = [(child.token, here, "deploy"), (downstream.token, there, "tag"), (direct.token, there, "tag")]
        kept: list[Any] = []
    elif revoke == "delegator":
        await issuer.revoke_principal(SUB)  # what the sub-agent holds or passed on, not the root's other uses
        gone = [(child.token, here, "deploy"), (downstream.token, there, "tag")]
        kept = [(direct.token, there, "tag"), (root.token, here, "deploy")]
    else:
        await issuer.revoke(child)
        gone = [(child.token, here, "deploy"), (downstream.token, there, "tag")]
        kept = [(direct.token, there, "tag"), (root.token, here, "deploy")]
    for token, verifier, tool in gone:
        with pytest.raises(CredentialRefused) as caught:
            await verifier.verify(token, tool=tool)
        assert caught.value.reason == "revoked"
    for token, verifier, tool in kept:
        await verifier.verify(token, tool=tool)


# -- holder binding -----------------------------------------------------------------------------


async def test_a_stolen_credential_cannot_be_laundered_into_another_name() -> None:
    issuer = make_issuer(downstream={AUDIENCE: [REGISTRY]})
    victim = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], may_act=[SERVER_ID])
    attempts = [
        issuer.delegate(victim.token, subject=THIEF),
        issuer.exchange(victim.token, audience=REGISTRY, tools=["tag"], actor=THIEF),
        issuer.exchange(victim.token, audience=AUDIENCE, tools=["deploy"], actor=THIEF),
        issuer.delegate(
            victim.token,
            subject=principal("deployer", "acme", role="x").__class__(
                issuer="https://other-idp.example", subject="deployer", tenant="acme"
            ),
        ),  # same subject name, another identity issuer: another principal
    ]
    for attempt in attempts:
        with pytest.raises(CredentialError) as caught:
            await attempt
        assert caught.value.reason == "may_not_act"
    # The named actor may; what it gets is in its own name, with the victim in the actor chain.
    ok = await issuer.exchange(victim.token, audience=REGISTRY, tools=["tag"], actor=SERVER_ID)
    assert (ok.claims.subject, ok.claims.actors[0][0], ok.claims.owner_key) == ("deployer", "agent-1", AGENT.key)


async def test_the_issuance_policy_refuses_what_no_grant_gives() -> None:
    policy = IssuancePolicy(
        [
            Grant(
                principals=["https://id.example#agent-*"],
                audiences=[AUDIENCE],
                tools=["deploy", "status"],
                scopes=["deploy:*"],
                may_act=["https://id.example#deployer"],
            ),
            Grant(principals=["https://id.example#deployer"], audiences=[REGISTRY], tools=["tag"]),
        ]
    )
    issuer = make_issuer(policy=policy, downstream={AUDIENCE: [REGISTRY]})
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], scope=["deploy:write"])
    assert cred.claims.may_act == (SERVER_ID.key,)
    refused: list[dict[str, Any]] = [
        {"tools": ["rollback"]},
        {"tools": ["deploy"], "scope": ["admin"]},
        {"tools": ["deploy"], "audience": REGISTRY},
        {"tools": ["deploy"], "may_act": [THIEF]},
    ]
    for request in refused:
        options = {"audience": AUDIENCE, **request}
        with pytest.raises(CredentialError) as caught:
            await issuer.mint(AGENT, **options)
        assert caught.value.reason == "not_granted", request
    with pytest.raises(CredentialError) as caught:
        await issuer.mint(THIEF, audience=AUDIENCE, tools=["deploy"])
    assert caught.value.reason == "not_granted"
    with pytest.raises(CredentialError) as caught:  # the parent's scopes are not the deployer's to hold
        await issuer.exchange(cred.token, audience=REGISTRY, tools=["tag"], actor=SERVER_ID)
    assert caught.value.reason == "not_granted"
    downstream = await issuer.exchange(cred.token, audience=REGISTRY, tools=["tag"], actor=SERVER_ID, scope=[])
    assert downstream.claims.subject == "deployer"
    with pytest.raises(CredentialError) as caught:
        await issuer.exchange(cred.token, audience=REGISTRY, tools=["delete"], actor=SERVER_ID, scope=[])
    assert caught.value.reason == "not_granted"


# -- durable revocation -------------------------------------------------------------------------


class StoreBroke(BaseException):
    """A failure that is not an ``Exception`` (as a driver or an interrupt may raise)."""


class FlakyStore(CompactMemoryStore):
    """A shared in-memory store that can be taken down (raising ``failure``) and brought back."""

    down = False
    failure: Callable[[], BaseException] = staticmethod(lambda: ConnectionError("store down"))

    async def put(self, key: str, value: str, ttl: float) -> None:
        if self.down:
            raise self.failure()
        await super().put(key, value, ttl)

    async def get_many(self, keys: list[str]) -> list[str | None]:
        if self.down:
            raise self.failure()
        return await super().get_many(keys)


async def cut_off(
    how: str, issuer: CredentialIssuer, credential: Credential, agent: Principal, store: FlakyStore
) -> str:
    """End ``credential``'s authority the way ``how`` names: revoke the credential, its task
    (``t-1``) or its principal, or (anything else) take the revocation store down. Returns the
    reason the refusal must give."""
    if how == "credential":
        await issuer.revoke(credential)
    elif how == "task":
        await issuer.revoke_task(agent, "t-1")
    elif how == "principal":
        await issuer.revoke_principal(agent)
    else:
        store.down = True
        return "revocation_unavailable"
    return "revoked"


async def test_a_revocation_the_store_missed_is_kept_retried_and_reported() -> None:
    clock = FrozenClock()
    store = FlakyStore(clock=clock)
    issuer = make_issuer(clock, revocations=RevocationList(store, max_ttl=300, clock=clock))
    replica = RevocationList(store, max_ttl=300, clock=clock)
    here = issuer.verifier(AUDIENCE)
    there = issuer.verifier(AUDIENCE).__class__(
        issuer=issuer.issuer, audience=AUDIENCE, keys=issuer.keys, revocations=replica, clock=clock
    )
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="t", ttl=300)
    store.down = True
    with pytest.raises(CredentialError) as caught:
        await issuer.revoke(cred)
    assert caught.value.reason == "revocation_failed"
    with pytest.raises(CredentialError):
        await issuer.revoke_task(AGENT, "t")
    assert issuer.revocations.pending == 2
    store.down = False
    clock.advance(30)  # long after "recent" revocations used to be forgotten
    for verifier in (here, there):
        # Here: refused from the local record and the retried store entry. There: from the store.
        with pytest.raises(CredentialRefused) as refused:
            await verifier.verify(cred.token, tool="status")
        assert refused.value.reason == "revoked"
    assert issuer.revocations.pending == 0
    later = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="t")
    await there.verify(later.token, tool="status")  # the task revocation covers what was issued before it


async def test_revocation_entries_outlive_every_verifier_leeway() -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    verifier = issuer.verifier(AUDIENCE, leeway=60)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], ttl=10)
    await issuer.revoke(cred)
    clock.advance(10 + 59)  # expired, but within the verifier's leeway: only revocation refuses it
    with pytest.raises(CredentialRefused) as caught:
        await verifier.verify(cred.token, tool="status")
    assert caught.value.reason == "revoked"
    with pytest.raises(Exception, match="outlive"):
        issuer.verifier(AUDIENCE, leeway=30).__class__(
            issuer=issuer.issuer,
            audience=AUDIENCE,
            keys=issuer.keys,
            revocations=RevocationList(max_ttl=300, leeway=10),
            leeway=30,
        )


# -- task revocation is the owner's -------------------------------------------------------------


async def test_ending_one_principals_task_leaves_another_principals_task_of_the_same_id(mode: str) -> None:
    issuer = make_issuer()
    mine = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="shared", may_act=[SUB])
    theirs = await issuer.mint(PEER, audience=AUDIENCE, tools=["status"], task_id="shared")
    delegated = await issuer.delegate(mine.token, subject=SUB)
    await issuer.revoke_task(AGENT, "shared")
    verifier = issuer.verifier(AUDIENCE)
    await verifier.verify(theirs.token, tool="status")
    for token in (mine.token, delegated.token):
        with pytest.raises(CredentialRefused):
            await verifier.verify(token, tool="status")
    await issuer.revoke_tenant_task("acme", "shared")  # the explicit administrative form
    with pytest.raises(CredentialRefused):
        await verifier.verify(theirs.token, tool="status")


# -- task context on every request of a task ----------------------------------------------------


def _task_server(issuer: Any, sink: InMemoryAuditSink, seen: list[tuple[Any, ...]]) -> MCPServer:
    server = MCPServer("tasks")

    @server.tool()
    def audit_log() -> str:
        return "log"

    @server.tool()
    def deploy() -> str:
        return "deployed"

    @server.resource("payroll://2026")
    def payroll() -> str:
        return "salaries"

    @server.prompt()
    def summary(topic: str) -> str:
        return f"summarise {topic}"

    hooks = Hooks()

    async def identity(ctx: GovContext, call_next: CallNext) -> Any:
        return await call_next(ctx.replace(principal=AGENT, tenant=AGENT.tenant))

    def decide(ctx: GovContext) -> Decision:
        seen.append((ctx.method, ctx.action, ctx.target, ctx.task_id, ctx.purpose))
        if ctx.target == "audit_log" and ctx.purpose != "audit":
            return Decision.deny("audit-only", "only audit tasks read the audit log")
        return Decision.allow("allow")

    hooks.tool("*")(decide)
    hooks.resource("*")(decide)
    hooks.prompt("*")(decide)
    govern(server, identity, CredentialMiddleware(issuer.verifier(AUDIENCE)), hooks, audit=sink)
    return server


async def test_every_request_of_a_task_carries_its_credential_and_listings_show_what_it_may_call(
    mode: str,
) -> None:
    issuer = make_issuer()
    sink = InMemoryAuditSink()
    seen: list[tuple[Any, ...]] = []
    server = _task_server(issuer, sink, seen)
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
    async with GovernedClient(server, creds, principal=AGENT, mode=mode) as client:
        outside = {t.name for t in (await client.list_tools()).tools}
        async with client.task("audit-7", purpose="audit") as task:
            inside = {t.name for t in (await client.list_tools()).tools}
            await client.read_resource("payroll://2026")
            await client.get_prompt("summary", {"topic": "q3"})
            await client.list_resources()
            await client.call_tool("audit_log", {})
        assert task.credential_ids
    assert "audit_log" not in outside
    assert inside == {"audit_log", "deploy"}
    in_task = [s for s in seen if s[3] == "audit-7"]
    assert {s[0] for s in in_task} >= {"tools/call", "resources/read", "prompts/get"}
    assert {s[4] for s in in_task} == {"audit"}
    read = [e for e in sink.events if e.type == "decision" and e.target == "payroll://2026"]
    assert read
    assert all(e.task_id == "audit-7" and e.credential_id is not None for e in read)


async def test_a_task_credential_calls_nothing_and_a_revoked_one_binds_nothing(mode: str) -> None:
    issuer = make_issuer()
    sink = InMemoryAuditSink()
    server = _task_server(issuer, sink, [])
    binding = await issuer.mint(AGENT, audience=AUDIENCE, tools=[TASK_BINDING], task_id="t", purpose="audit")
    async with Client(server, mode=mode) as client:
        for tool in ("deploy", TASK_BINDING):
            with pytest.raises(MCPError) as caught:
                await call(client, tool, {}, binding.token)
            assert caught.value.code in {-32002, -32602}
        await issuer.revoke(binding)
        with pytest.raises(MCPError) as caught:
            await client.list_tools(meta={"io.mcpgov/credential": binding.token})  # type: ignore[arg-type]
        assert caught.value.code == -32002


# -- no token in any log record -----------------------------------------------------------------


@pytest.mark.parametrize("over_http", [False, True])
async def test_no_token_reaches_any_log_record_at_debug(
    mode: str, over_http: bool, caplog: pytest.LogCaptureFixture
) -> None:
    from mcpgov.testing import serve_http

    issuer = make_issuer()
    sink = InMemoryAuditSink()
    server = _task_server(issuer, sink, [])
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
    caplog.set_level(logging.DEBUG)
    for name in ("mcp", "httpx", "httpcore", "httpx2", "uvicorn", "starlette"):
        caplog.set_level(logging.DEBUG, logger=name)

    async def session(target: Any) -> None:
        client = GovernedClient(target, creds, principal=AGENT, mode=mode)
        async with client, client.task("t1", purpose="audit") as task:
            await client.call_tool("deploy", {})
            await client.read_resource("payroll://2026")
            ids.extend(task.credential_ids)

    ids: list[str] = []
    if over_http:
        async with serve_http(server.streamable_http_app()) as base:
            await session(f"{base}/mcp")
    else:
        await session(server)
    minted = [e for e in sink.events if e.credential_id in ids]
    assert minted, "the calls ran with credentials"
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert caplog.records
    assert "eyJ" not in text  # no compact JWS (credential or identity token) in any record


# -- the principal comes from the verified identity ----------------------------------------------


class RecordingSource(IssuerTokenSource):
    """An in-process token source that remembers what it minted."""

    def __init__(self, issuer: Any) -> None:
        super().__init__(issuer)
        self.minted: list[Any] = []

    async def obtain(self, request: Any, principal: Any) -> Any:
        credential = await super().obtain(request, principal)
        self.minted.append(credential)
        return credential


async def test_a_principal_the_identity_token_does_not_name_is_a_configuration_error() -> None:
    from mcpgov import ConfigurationError
    from mcpgov.testing import IdentityIssuer

    ids = IdentityIssuer("https://id.example")
    server = _task_server(make_issuer(), InMemoryAuditSink(), [])
    for configured in (
        principal("someone-else", "acme"),
        principal("agent-1", "acme").__class__(issuer="https://other-idp.example", subject="agent-1", tenant="acme"),
    ):
        with pytest.raises(ConfigurationError, match="principal"):
            GovernedClient(server, principal=configured, identity=ids.token("agent-1"))
    GovernedClient(server, principal=ids.principal("agent-1"), identity=ids.token("agent-1"))


async def test_credentials_never_outlive_the_identity_token_and_follow_its_subject(mode: str) -> None:
    import time as _time

    from mcpgov.testing import IdentityIssuer

    ids = IdentityIssuer("https://id.example")
    issuer = make_issuer(FrozenClock(_time.time()), max_ttl=300)
    server = _task_server(issuer, InMemoryAuditSink(), [])
    source = RecordingSource(issuer)
    creds = ClientCredentials(source, audience=AUDIENCE, ttl=300)
    token = ids.token("agent-1", ttl=30)
    exp = ids_claims_exp(token)
    me = ids.principal("agent-1")
    async with GovernedClient(server, creds, principal=me, identity=token, mode=mode) as client:
        await client.call_tool("deploy", {})
    assert source.minted
    assert all(c.expires_at <= exp for c in source.minted)
    current = {"token": ids.token("agent-1")}
    async with GovernedClient(server, creds, principal=me, identity=lambda: current["token"], mode=mode) as client:
        current["token"] = ids.token("intruder")  # the identity changed hands; the principal did not
        before = len(source.minted)
        with pytest.raises(MCPError):
            await client.call_tool("deploy", {"x": 1} if False else {})
        assert len(source.minted) == before


def ids_claims_exp(token: str) -> float:
    from mcpgov.credentials._holder import identity_claims

    claims = identity_claims(token)
    assert claims is not None
    return float(claims["exp"])


# -- laundering at the exchange endpoint and through Downstream ----------------------------------


@pytest.mark.parametrize(
    "attempt",
    [
        {"actor_token": "id:mallory:acme"},  # delegate to itself
        {"actor_token": "id:mallory:acme", "audience": REGISTRY, "tool": "tag"},  # downstream in its name
        {"actor_token": "id:agent-1:globex"},  # the victim's subject in another tenant
        {},  # no actor at all: a credential alone proves nothing
    ],
)
async def test_the_exchange_endpoint_refuses_to_launder_a_stolen_credential(attempt: dict[str, str]) -> None:
    import httpx2

    from mcpgov.credentials import token_exchange_app
    from mcpgov.credentials._claims import CREDENTIAL_TOKEN_TYPE
    from mcpgov.credentials._exchange import GRANT_TYPE
    from mcpgov.testing import serve_http

    from .test_credentials_exchange import JWT_TYPE, verify_identity

    issuer = make_issuer(downstream={AUDIENCE: [REGISTRY]})
    victim = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], may_act=[SERVER_ID])
    form: dict[str, str] = {
        "grant_type": GRANT_TYPE,
        "subject_token": victim.token,
        "subject_token_type": CREDENTIAL_TOKEN_TYPE,
        **attempt,
    }
    if "actor_token" in form:
        form["actor_token_type"] = JWT_TYPE
    async with serve_http(token_exchange_app(issuer, verify_identity)) as base, httpx2.AsyncClient() as http:
        response = await http.post(f"{base}/token", data=form)
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_grant", "invalid_request"}
    assert "access_token" not in response.text
    assert victim.token not in response.text


async def test_downstream_refuses_a_server_the_inbound_credential_does_not_name(mode: str) -> None:
    from mcpgov.credentials import Downstream

    issuer = make_issuer(downstream={AUDIENCE: [REGISTRY]})
    server = MCPServer("deployer")
    outcomes: list[str] = []
    downstream = Downstream(issuer, actor=THIEF)  # a server the caller never named in may_act

    @server.tool()
    async def deploy() -> str:
        try:
            await downstream.credential(audience=REGISTRY, tools=["tag"])
        except CredentialError as exc:
            outcomes.append(exc.reason)
            return "refused"
        outcomes.append("granted")
        return "granted"

    hooks = Hooks()

    @hooks.tool("*")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("allow")

    govern(server, CredentialMiddleware(issuer.verifier(AUDIENCE)), hooks)
    cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["deploy"], may_act=[SERVER_ID])
    async with Client(server, mode=mode) as client:
        await call(client, "deploy", {}, cred.token)
    assert outcomes == ["may_not_act"]


# -- cascade: a property over derivation trees ---------------------------------------------------

_PEOPLE = ["agent-1", "agent-2", "sub-a", "sub-b"]


@settings(max_examples=60, deadline=None)
@given(
    tree=st.lists(st.tuples(st.integers(min_value=0, max_value=20), st.sampled_from(_PEOPLE)), max_size=8),
    root_owner=st.sampled_from(_PEOPLE[:2]),
    target=st.one_of(
        st.tuples(st.just("credential"), st.integers(min_value=0, max_value=20)),
        st.tuples(st.just("principal"), st.sampled_from(_PEOPLE)),
        st.tuples(st.just("task"), st.sampled_from(_PEOPLE)),
    ),
)
def test_revocation_reaches_exactly_what_descends_from_what_was_revoked(
    tree: list[tuple[int, str]], root_owner: str, target: tuple[str, Any]
) -> None:
    people = {name: principal(name, "acme") for name in _PEOPLE}
    everyone = list(people.values())
    reasons: set[str] = set()

    async def scenario() -> None:
        issuer = make_issuer(max_delegation_depth=8)
        root = await issuer.mint(people[root_owner], audience=AUDIENCE, tools=["t"], task_id="job", may_act=everyone)
        nodes = [(root, [root_owner])]  # credential, the subjects on its path from the root
        for parent_index, holder in tree:
            parent, path = nodes[parent_index % len(nodes)]
            if len(path) > 8:
                continue
            child = await issuer.delegate(parent.token, subject=people[holder], may_act=everyone)
            nodes.append((child, [*path, holder]))
        kind, which = target
        if kind == "credential":
            index = which % len(nodes)
            await issuer.revoke(nodes[index][0])
            revoked_ids = {nodes[index][0].id}
            gone = [c.id in revoked_ids or nodes[index][0].id in c.claims.chain for c, _ in nodes]
        elif kind == "principal":
            await issuer.revoke_principal(people[which])
            gone = [which in path for _, path in nodes]
        else:
            await issuer.revoke_task(people[which], "job")  # only the task's owner's task ends
            gone = [which == root_owner for _ in nodes]
        verifier = issuer.verifier(AUDIENCE)
        seen: list[bool] = []
        for credential, _ in nodes:
            try:
                await verifier.verify(credential.token, tool="t")
            except CredentialRefused as exc:
                reasons.add(exc.reason)
                seen.append(True)
            else:
                seen.append(False)
        assert seen == gone, "revocation reached more or less than what descends from what was revoked"
        assert reasons <= {"revoked"}

    anyio.run(scenario)


# -- a standing stream ends when its credential is revoked -------------------------------------------


@pytest.mark.parametrize(
    "revoke", ["credential", "task", "principal", "store-down", "store-base-exception", "store-stray-cancel"]
)
async def test_a_listen_stream_opened_with_a_credential_ends_once_it_is_revoked(revoke: str) -> None:
    """A ``subscriptions/listen`` stream outlives its request: the credential that opened it is
    re-checked while it lasts (lifetime and revocation), and the kill switch ends it gracefully,
    audited with the caller, within about one check interval. A revocation store that stops
    answering ends it too (fail closed), whatever it raises: an ``Exception``, a ``BaseException``
    subclass, or a ``CancelledError`` while nothing cancelled the stream."""
    clock = FrozenClock()
    store = FlakyStore(clock=clock)
    if revoke == "store-base-exception":
        store.failure = lambda: StoreBroke("driver gave up")
    elif revoke == "store-stray-cancel":
        store.failure = asyncio.CancelledError
    issuer = make_issuer(clock, revocations=RevocationList(store, max_ttl=300, clock=clock))
    governed = build_governed(issuer)
    credential = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], task_id="t-1", ttl=300)

    async def present(ctx: GovContext, call_next: CallNext) -> Any:
        meta = {**ctx.meta, **as_principal(AGENT), META_CREDENTIAL: credential.token}
        return await call_next(ctx.replace(meta=MappingProxyType(meta)))

    async with (
        GovernedClient(governed.server, present, mode="auto") as client,
        client.listen(tools_list_changed=True) as sub,
    ):
        with anyio.move_on_after(1.5) as still_open:
            async for _ in sub:
                break
        assert still_open.cancelled_caught  # not revoked: the stream stays open
        reason = await cut_off(revoke, issuer, credential, AGENT, store)
        with anyio.fail_after(5):
            events = [event async for event in sub]  # ends when the stream does
    assert events == []
    refused = [e for e in governed.sink.events if e.type == "credential.refused"]
    assert [(e.reason, e.principal, e.tenant) for e in refused] == [(reason, AGENT.id, "acme")]
    assert credential.token not in repr(governed.sink.events)
