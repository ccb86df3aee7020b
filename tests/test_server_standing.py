"""What a handshake-era session hears on a governed server lasts no longer than what authorised it:
resource updates and list changes sent on the session's own channel stop once the identity token
or credential of its latest allowed request expired or was revoked."""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel

from mcpgov import META_CREDENTIAL, CallNext, Decision, GovContext, GovernedClient, Hooks, Principal, govern
from mcpgov.credentials import CredentialIssuer, CredentialMiddleware, RevocationList, SigningKeySet
from mcpgov.identity import IdentityMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

from .test_credentials_killswitch import AGENT, FlakyStore, cut_off
from .test_credentials_support import AUDIENCE as SUPPORT_AUDIENCE
from .test_credentials_support import FrozenClock, as_principal, identity_from_meta, make_issuer
from .test_server_listen import jwt_exp

pytestmark = pytest.mark.anyio

AUDIENCE = "mcp://notes"


def feed_server(sessions: list[Any]) -> Server[Any]:
    """A lowlevel server that remembers every subscribing session and serves one resource."""

    async def list_resources(ctx: ServerRequestContext[Any], params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[types.Resource(uri="feed://news", name="news")])

    async def read_resource(ctx: ServerRequestContext[Any], params: Any) -> types.ReadResourceResult:
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=params.uri, text="headline")])

    async def subscribe(ctx: ServerRequestContext[Any], params: Any) -> types.EmptyResult:
        sessions.append(ctx.session)
        return types.EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any], params: Any) -> types.EmptyResult:
        return types.EmptyResult()

    return Server(
        "feed",
        version="1.0.0",
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
    )


async def announce(sessions: list[Any]) -> None:
    """The server's own background work: an update of its resource, then a list change."""
    for session in sessions:
        await session.send_resource_updated("feed://news")
        await session.send_resource_list_changed()


class Heard:
    """What one session hears: every notification's method; an event per list change."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.changed = anyio.Event()

    async def __call__(self, message: object) -> None:
        method = getattr(message, "method", None)
        if isinstance(method, str):
            self.methods.append(method)
        if method == "notifications/resources/list_changed":
            self.changed.set()

    async def next_change(self) -> None:
        with anyio.fail_after(10):
            await self.changed.wait()
        self.changed = anyio.Event()


def steady(idp: IdentityIssuer) -> str:
    return idp.token("steady", tenant="acme")


def allow_all() -> Hooks:
    hooks = Hooks()
    hooks.resource("*")(lambda ctx: Decision.allow("feed"))
    return hooks


async def test_a_session_whose_identity_expired_hears_nothing_more_of_the_server() -> None:
    sessions: list[Any] = []
    server = feed_server(sessions)
    idp = IdentityIssuer(audience=AUDIENCE)
    sink = InMemoryAuditSink()
    govern(server, IdentityMiddleware(idp.verifier()), allow_all(), audit=sink)
    short = idp.token("short-lived", tenant="acme", ttl=2)
    heard_a, heard_b = Heard(), Heard()
    async with (
        GovernedClient(server, identity=short, mode="legacy", message_handler=heard_a) as a,
        GovernedClient(
            server, identity=idp.token("steady", tenant="acme"), mode="legacy", message_handler=heard_b
        ) as b,
    ):
        await a.subscribe_resource("feed://news")
        await b.subscribe_resource("feed://news")
        await announce(sessions)
        await heard_a.next_change()
        await heard_b.next_change()
        await anyio.sleep(max(0.0, jwt_exp(short) - time.time()) + 0.05)  # until the identity expired
        heard_a.methods.clear()
        for _ in range(2):
            await announce(sessions)
            await heard_b.next_change()
        await a.send_ping()  # whatever the server sent ``a`` before this answer has arrived
        assert heard_a.methods == []
        assert "notifications/resources/updated" in heard_b.methods
    ended = [(e.type, e.principal) for e in sink.events if e.reason == "expired"]
    assert ended == [("identity.refused", "https://issuer.test#short-lived")], ended


async def test_a_session_that_authenticates_again_hears_the_server_again() -> None:
    """Expiry ends what the session hears until a request of it is allowed again."""
    sessions: list[Any] = []
    server = feed_server(sessions)
    idp = IdentityIssuer(audience=AUDIENCE)
    govern(server, IdentityMiddleware(idp.verifier()), allow_all())
    tokens = [idp.token("agent", tenant="acme", ttl=2)]

    heard = Heard()
    async with GovernedClient(server, identity=lambda: tokens[-1], mode="legacy", message_handler=heard) as a:
        await a.subscribe_resource("feed://news")
        await anyio.sleep(max(0.0, jwt_exp(tokens[0]) - time.time()) + 0.05)
        tokens.append(idp.token("agent", tenant="acme"))
        await a.subscribe_resource("feed://news")  # decided again, with the fresh token
        sessions[1:] = []
        await announce(sessions)
        await heard.next_change()
        assert "notifications/resources/updated" in heard.methods


@pytest.mark.parametrize("revoke", ["credential", "task", "principal", "store-down"])
async def test_a_session_whose_credential_is_revoked_hears_nothing_more_of_the_server(revoke: str) -> None:
    sessions: list[Any] = []
    server = feed_server(sessions)
    idp = IdentityIssuer(audience=AUDIENCE)
    store = FlakyStore()
    issuer = CredentialIssuer(
        "https://credentials.acme.example",
        SigningKeySet.generate("Ed25519"),
        max_ttl=300,
        revocations=RevocationList(store, max_ttl=300),
    )
    sink = InMemoryAuditSink()
    govern(
        server,
        IdentityMiddleware(idp.verifier()),
        CredentialMiddleware(issuer.verifier(AUDIENCE)),
        allow_all(),
        audit=sink,
    )
    agent = Principal(
        issuer="https://issuer.test", subject="holder", tenant="acme", claims=MappingProxyType({}), auth_method="jwt"
    )
    credential = await issuer.mint(agent, audience=AUDIENCE, tools=["none"], task_id="t-1", ttl=300)

    async def present(ctx: GovContext, call_next: CallNext) -> Any:
        return await call_next(ctx.replace(meta=MappingProxyType({**ctx.meta, META_CREDENTIAL: credential.token})))

    heard_a, heard_b = Heard(), Heard()
    async with (
        GovernedClient(
            server, present, identity=idp.token("holder", tenant="acme"), mode="legacy", message_handler=heard_a
        ) as a,
        GovernedClient(
            server, identity=idp.token("steady", tenant="acme"), mode="legacy", message_handler=heard_b
        ) as b,
    ):
        await a.subscribe_resource("feed://news")
        await b.subscribe_resource("feed://news")
        await announce(sessions)
        await heard_a.next_change()
        await heard_b.next_change()
        reason = await cut_off(revoke, issuer, credential, agent, store)
        heard_a.methods.clear()
        for _ in range(2):
            await announce(sessions)
            await heard_b.next_change()
        await a.send_ping()
        assert heard_a.methods == []
    refused = [e for e in sink.events if e.type == "credential.refused"]
    assert refused
    assert {(e.reason, e.principal) for e in refused} == {(reason, agent.id)}
    assert credential.token not in repr(sink.events)


class Worker:
    """A long-running tool: it reports progress and logs, asks the client a question, and reports
    again once told to go on (after the test revoked its credential)."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.go = anyio.Event()
        self.asked: list[str] = []


def working_server(worker: Worker) -> MCPServer:
    server = MCPServer("worker")

    @server.tool()
    async def work(ctx: Context) -> str:
        await ctx.report_progress(1, 3, "before")
        await ctx.log("info", "before")
        worker.started.set()
        with anyio.fail_after(10):
            await worker.go.wait()
        await ctx.report_progress(2, 3, "after")
        await ctx.log("info", "after")
        try:
            await ctx.elicit("after?", schema=Answer)
        except Exception as exc:
            worker.asked.append(type(exc).__name__)
        else:
            worker.asked.append("answered")
        return "done"

    return server


class Answer(BaseModel):
    ok: bool


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("revoke", ["credential", "store-down"])
async def test_a_running_tool_sends_its_caller_nothing_once_the_credential_is_revoked(revoke: str, mode: str) -> None:
    """The tool body started before the revocation and runs on; what it sends its caller from then
    on (progress, log messages, an elicitation) does not reach it."""
    worker = Worker()
    server = working_server(worker)
    clock = FrozenClock()
    store = FlakyStore(clock=clock)
    issuer = make_issuer(clock, revocations=RevocationList(store, max_ttl=300, clock=clock))
    verifier = issuer.verifier(SUPPORT_AUDIENCE)
    hooks = Hooks()
    hooks.tool("*")(lambda ctx: Decision.allow("work"))
    sink = InMemoryAuditSink()
    govern(server, identity_from_meta, CredentialMiddleware(verifier), hooks, audit=sink)
    credential = await issuer.mint(AGENT, audience=SUPPORT_AUDIENCE, tools=["work"], task_id="t-1", ttl=300)
    progress: list[str | None] = []
    logs: list[Any] = []
    elicited: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    async def on_log(params: Any) -> None:
        logs.append(params.data)

    async def on_elicit(context: Any, params: Any) -> Any:
        elicited.append(params.message)
        return types.ElicitResult(action="accept", content={"ok": True})

    results: list[Any] = []
    async with (
        GovernedClient(server, mode=mode, logging_callback=on_log, elicitation_callback=on_elicit) as a,
        anyio.create_task_group() as tg,
    ):

        async def run() -> None:
            meta = {**as_principal(AGENT), META_CREDENTIAL: credential.token}
            results.append(await a.call_tool("work", {}, progress_callback=on_progress, meta=meta))  # type: ignore[arg-type]

        tg.start_soon(run)
        with anyio.fail_after(10):
            await worker.started.wait()
        if revoke == "credential":
            await issuer.revoke(credential)
        else:
            store.down = True
        worker.go.set()
    # The call's result comes after everything sent on its request.
    assert [r.content[0].text for r in results] == ["done"]
    assert progress == ["before"]
    assert logs == (["before"] if mode == "legacy" else [])  # 2026-07-28: logs only when asked for
    assert elicited == []
    assert worker.asked and worker.asked != ["answered"]
