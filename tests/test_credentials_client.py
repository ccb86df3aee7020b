"""Client side: ClientCredentials obtains, caches and attaches credentials; task scopes revoke."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client, MCPError

from mcpgov import CallNext, Decision, GovContext, GovernedClient, Hooks, Principal
from mcpgov.credentials import (
    ClientCredentials,
    Credential,
    CredentialRefused,
    CredentialRequest,
    IssuerTokenSource,
    TaskScope,
    current_task,
    open_task,
)
from mcpgov.testing import serve_http

from .test_credentials_support import AUDIENCE, FrozenClock, as_principal, build_governed, call, make_issuer, principal

pytestmark = pytest.mark.anyio

AGENT = principal("agent-1", "acme")


def identify(p: Principal) -> Any:
    """Client middleware standing in for identity binding: names the caller to the test server."""

    async def mw(ctx: GovContext, call_next: CallNext) -> Any:
        return await call_next(ctx.replace(meta={**ctx.meta, **as_principal(p)}))

    return mw


def _client_policy(**obligations: Any) -> Hooks:
    hooks = Hooks()

    @hooks.tool("*")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("agent-policy", **(obligations if ctx.target == "deploy" else {}))

    return hooks


async def test_credentials_are_cached_per_task_and_tool_within_their_ttl(mode: str) -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    governed = build_governed(issuer)
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE, ttl=60, clock=clock)
    async with GovernedClient(governed.server, identify(AGENT), creds, principal=AGENT, mode=mode) as client:
        await client.call_tool("deploy", {"version": "1"})
        await client.call_tool("deploy", {"version": "2"})
        await client.call_tool("status", {})
        assert creds.minted == 2
        clock.advance(56)  # less than refresh_before (5 s) left: a fresh one
        await client.call_tool("status", {})
        assert creds.minted == 3
        async with open_task(client, "release-42", purpose="deploy"):
            await client.call_tool("status", {})
        assert creds.minted == 4
    assert governed.ran == ["deploy 1", "deploy 2", "status", "status", "status"]
    jtis = [s[4] for s in governed.seen]
    assert jtis[0] == jtis[1] != jtis[2]
    assert len(set(jtis)) == 4


async def test_argument_binding_demanded_by_policy_mints_per_call(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer, bind_arguments={"deploy"})
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
    policy = _client_policy(bind_arguments=True, max_credential_ttl=20)
    async with GovernedClient(governed.server, identify(AGENT), policy, creds, principal=AGENT, mode=mode) as client:
        await client.call_tool("deploy", {"version": "1"})
        await client.call_tool("deploy", {"version": "1"})
        await client.call_tool("status", {})
        await client.call_tool("status", {})
    assert creds.minted == 3  # two bound deploys, one cached status credential
    assert governed.ran == ["deploy 1", "deploy 1", "status", "status"]
    minted = {s[4] for s in governed.seen}
    assert len(minted) == 3


async def test_without_binding_a_server_demanding_it_refuses(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer, bind_arguments={"deploy"})
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
    async with GovernedClient(governed.server, identify(AGENT), creds, principal=AGENT, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy", {"version": "1"})
    assert caught.value.code == -32002
    assert governed.ran == []


async def test_task_scope_carries_task_and_purpose_and_revokes_on_exit(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
    async with GovernedClient(governed.server, identify(AGENT), creds, principal=AGENT, mode=mode) as client:
        async with client.task("release-42", purpose="deploy") as task:
            assert current_task() is task
            await client.call_tool("deploy", {"version": "1.4.2"})
            await client.call_tool("status", {})
            minted = task.credential_ids
        assert current_task() is None
        assert task.revoked
        assert len(minted) == 3  # deploy, status, and the task binding of the SDK's own tools/list
        assert [s[2:4] for s in governed.seen] == [("release-42", "deploy")] * 2
        # Everything the task minted is now refused, even replayed by hand.
        async with Client(governed.server, mode=mode) as plain:
            for token in list(governed.tokens):
                with pytest.raises(MCPError):
                    await call(plain, "status", {}, token, AGENT)
        # A new call outside the task gets a fresh credential.
        await client.call_tool("status", {})
    assert creds.minted == 4


async def test_task_scope_revokes_on_error_and_lets_the_error_through(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    source = IssuerTokenSource(issuer)
    creds = ClientCredentials(source, audience=AUDIENCE)
    verifier = issuer.verifier(AUDIENCE)
    async with GovernedClient(governed.server, identify(AGENT), creds, principal=AGENT, mode=mode) as client:
        scopes: list[TaskScope] = []

        async def failing_task() -> None:
            async with open_task(client, "release-43", purpose="deploy") as scope:
                scopes.append(scope)
                await client.call_tool("status", {})
                raise RuntimeError("deploy went wrong")

        with pytest.raises(RuntimeError, match="deploy went wrong"):
            await failing_task()
    (task,) = scopes
    assert task.revoked
    assert task.credential_ids
    for jti in task.credential_ids:
        assert await issuer.revocations.store.get(issuer.revocations.jti_key(jti)) is not None
    assert verifier is not None


def test_open_task_validates_its_arguments() -> None:
    from mcpgov import ConfigurationError

    issuer = make_issuer()
    governed = build_governed(issuer)
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
    client = GovernedClient(governed.server, creds, principal=AGENT)
    bare = GovernedClient(governed.server, principal=AGENT)

    async def enter(target: Any, task_id: Any, purpose: Any = None) -> None:
        async with open_task(target, task_id, purpose=purpose):
            pass

    import anyio

    for target, task_id, purpose in ((client, "", None), (client, "t", ""), (client, 42, None), (bare, "t", None)):
        with pytest.raises(ConfigurationError):
            anyio.run(enter, target, task_id, purpose)


async def test_cache_is_not_shared_across_principals(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
    other = principal("agent-2", "acme")
    for who in (AGENT, other):
        async with GovernedClient(governed.server, identify(who), creds, principal=who, mode=mode) as client:
            await client.call_tool("status", {})
    assert creds.minted == 2
    assert governed.seen[0][4] != governed.seen[1][4]


async def test_no_principal_means_no_credential_and_nothing_is_sent(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
    async with GovernedClient(governed.server, creds, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("status", {})
    assert caught.value.code == -32002
    assert governed.sink.events == []


async def test_credentials_travel_in_meta_over_streamable_http(mode: str) -> None:
    issuer = make_issuer()
    governed = build_governed(issuer)
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
    async with (
        serve_http(governed.server.streamable_http_app()) as base,
        GovernedClient(f"{base}/mcp", identify(AGENT), creds, principal=AGENT, mode=mode) as client,
        open_task(client, "release-42", purpose="deploy"),
    ):
        result = await client.call_tool("deploy", {"version": "2.0"})
    assert result.is_error is False
    assert governed.seen == [("deploy", "acme", "release-42", "deploy", governed.seen[0][4])]


def test_client_credentials_configuration_is_validated() -> None:
    from mcpgov import ConfigurationError

    source = IssuerTokenSource(make_issuer())
    for kwargs in ({"audience": ""}, {"audience": AUDIENCE, "scope": "a b"}, {"audience": AUDIENCE, "ttl": 0}):
        with pytest.raises(ConfigurationError):
            ClientCredentials(source, **kwargs)
    with pytest.raises(ConfigurationError):
        ClientCredentials(object(), audience=AUDIENCE)  # type: ignore[arg-type]


async def test_an_approved_action_gets_a_credential_bound_to_exactly_its_arguments(mode: str) -> None:
    from mcpgov.approval import ApprovalMiddleware, CallbackApprover

    issuer = make_issuer()
    governed = build_governed(issuer)
    hooks = Hooks()
    hooks.register("deploy", lambda ctx: Decision.require_approval("deploys-need-approval"))
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
    approval = ApprovalMiddleware(CallbackApprover(lambda request: True, name="rita"))
    chain = (identify(AGENT), approval, hooks, creds)
    async with GovernedClient(governed.server, *chain, principal=AGENT, mode=mode) as client:
        await client.call_tool("deploy", {"version": "1.0"})
        token = governed.tokens[-1]
        # The same credential cannot carry other arguments: it is bound to the approved call.
        async with Client(governed.server, mode=mode) as plain:
            with pytest.raises(MCPError) as caught:
                await call(plain, "deploy", {"version": "6.6.6"}, token, AGENT)
    assert caught.value.code == -32002
    assert governed.ran == ["deploy 1.0"]


async def test_the_credential_cache_is_never_shared_across_tenants(mode: str) -> None:
    """One ClientCredentials, one subject in two tenants: each tenant gets its own credential."""
    issuer = make_issuer()
    governed = build_governed(issuer)
    creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
    in_acme = principal("agent-1", "acme")
    in_globex = principal("agent-1", "globex")
    assert in_acme.key == in_globex.key  # the same principal key: only the tenant differs
    for who in (in_acme, in_globex, in_acme):
        async with GovernedClient(governed.server, identify(who), creds, principal=who, mode=mode) as client:
            assert (await client.call_tool("status", {})).is_error is False
    assert creds.minted == 2
    assert [s[1] for s in governed.seen] == ["acme", "globex", "acme"]
    assert len({s[4] for s in governed.seen}) == 2  # two credential ids, the acme one reused


class _HeldSource(IssuerTokenSource):
    """Mints only once released: a credential requested while its task was open arrives after it ended."""

    def __init__(self, issuer: Any) -> None:
        super().__init__(issuer)
        self.entered = anyio.Event()
        self.release = anyio.Event()
        self.minted: list[Credential] = []

    async def obtain(self, request: CredentialRequest, principal: Principal | None) -> Credential:
        if request.tools == ("status",):
            self.entered.set()
            await self.release.wait()
        credential = await super().obtain(request, principal)
        self.minted.append(credential)
        return credential


async def test_a_credential_that_arrives_after_its_task_ended_is_revoked_and_never_sent(mode: str) -> None:
    clock = FrozenClock()
    issuer = make_issuer(clock)
    governed = build_governed(issuer)
    source = _HeldSource(issuer)
    creds = ClientCredentials(source, audience=AUDIENCE, clock=clock)
    failures: list[BaseException] = []

    async def late_call(client: GovernedClient) -> None:
        for _ in range(2):  # the second starts once the task has ended: nothing is even minted
            try:
                await client.call_tool("status", {})
            except Exception as exc:  # what the call raised is asserted below
                failures.append(exc)

    async with (
        GovernedClient(governed.server, identify(AGENT), creds, principal=AGENT, mode=mode) as client,
        anyio.create_task_group() as tg,
    ):
        async with open_task(client, "release-44", purpose="deploy") as scope:
            tg.start_soon(late_call, client)  # runs in the task's context
            await source.entered.wait()
        assert scope.revoked
        clock.advance(1)  # minted after the task's revocation: its time does not cover it
        source.release.set()
    assert len(failures) == 2
    assert all(isinstance(f, MCPError) and f.code == -32002 for f in failures)
    assert governed.ran == []
    late = [c for c in source.minted if c.claims.tools == ("status",)]
    assert len(late) == 1
    for credential in source.minted:
        with pytest.raises(CredentialRefused) as caught:
            await issuer.verify_own(credential.token)
        assert caught.value.reason == "revoked"


async def test_the_clients_audit_names_the_credential_each_request_carried(mode: str) -> None:
    """The agent's own trail records, per request, the id of the credential it presented (the
    one the server verified), so the two trails join on it; never the token."""
    from mcpgov.testing import InMemoryAuditSink

    issuer = make_issuer()
    governed = build_governed(issuer)
    tokens: list[str] = []

    class Recording(IssuerTokenSource):
        async def obtain(self, request: Any, principal: Any) -> Any:
            credential = await super().obtain(request, principal)
            tokens.append(credential.token)
            return credential

    creds = ClientCredentials(Recording(issuer), audience=AUDIENCE)
    sink = InMemoryAuditSink()
    async with GovernedClient(
        governed.server, _client_policy(), identify(AGENT), creds, principal=AGENT, mode=mode, audit=sink
    ) as client:
        await client.call_tool("status", {})
        async with open_task(client, "release-45", purpose="deploy"):
            await client.call_tool("deploy", {"version": "3"})
    mine = [(e.type, e.target, e.credential_id) for e in sink.events if e.type in ("decision", "outcome")]
    theirs = {(e.type, e.target, e.credential_id) for e in governed.sink.events if e.type in ("decision", "outcome")}
    assert [(kind, target) for kind, target, _ in mine] == [
        ("decision", "status"),
        ("outcome", "status"),
        ("decision", "deploy"),
        ("outcome", "deploy"),
    ]
    assert all(jti for _, _, jti in mine)
    assert mine[0][2] != mine[2][2]  # one credential per tool (and per task)
    assert set(mine) <= theirs
    assert all(jti in {s[4] for s in governed.seen} for _, _, jti in mine)
    assert len(tokens) >= 2
    written = repr([e.model_dump() for e in sink.events])
    assert not any(token in written or token.split(".")[2] in written for token in tokens)
