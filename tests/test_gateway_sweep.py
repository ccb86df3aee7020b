"""Whatever the method and whatever refuses it, a refused request reaches no upstream.

The upstream is a stdio server started through a wiretap that records every message it receives,
so "the upstream saw nothing" is checked on the upstream's own wire, for agents of both
protocol eras.
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
import pytest
from mcp import MCPError
from mcp.client.stdio import StdioServerParameters
from mcp_types import PromptReference, ResourceTemplateReference

from mcpgov import META_CREDENTIAL, Auditor, CallNext, GovContext, GovernedClient, Principal
from mcpgov.credentials import CredentialIssuer, CredentialMiddleware, RevocationList, SigningKeySet
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import Manifest, ServerRegistry, snapshot, tool_fingerprint
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

from .gateway_support import drop_cancelled_timers
from .test_credentials_killswitch import FlakyStore

pytestmark = pytest.mark.anyio

WIRETAP = Path(__file__).with_name("gateway_wiretap.py")
SERVER = [sys.executable, str(Path(__file__).with_name("gateway_sweep_server.py"))]
AUDIENCE = "mcp://gateway"
README = "sweep+note://readme"
ALLOWED = ("logging/setLevel", "ping")
PROMPT_REF = PromptReference(type="ref/prompt", name="sweep_greet")
TEMPLATE_REF = ResourceTemplateReference(type="ref/resource", uri="sweep+page://{name}")
POLICY: dict[str, Any] = {
    "version": 1,
    "rules": [
        {"id": "echo", "effect": "allow", "tenants": ["acme"], "tools": ["sweep_echo"]},
        {
            "id": "greet",
            "effect": "allow",
            "tenants": ["acme"],
            "prompts": ["sweep_greet"],
            "when": {"arguments": {"name": {"not_in": ["forbidden"]}}},
        },
        {"id": "readme", "effect": "allow", "tenants": ["acme"], "resources": ["sweep+note://readme"]},
        {"id": "levels", "effect": "allow", "tenants": ["acme"], "methods": ["logging/setLevel"]},
        {"id": "globex-readme", "effect": "allow", "tenants": ["globex"], "resources": ["sweep+note://readme"]},
    ],
}

_PINS: dict[str, Manifest] = {}


async def _pins() -> Manifest:
    if "sweep" not in _PINS:
        _PINS["sweep"] = await snapshot(StdioServerParameters(command=SERVER[0], args=SERVER[1:]))
    return _PINS["sweep"]


class Rig:
    """A gateway over the sweep server, the identity issuer, credential issuer and wire log."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        drift: bool = False,
        tenants: tuple[str, ...] = ("acme",),
        upstream: dict[str, Any] | None = None,
        policy_extra: tuple[dict[str, Any], ...] = (),
    ) -> None:
        self.wire = tmp_path / "sweep.wire"
        self.drift = drift
        self.tenants = tenants
        self.upstream = upstream or {}
        self.policy = {**POLICY, "rules": [*policy_extra, *POLICY["rules"]]}
        self.idp = IdentityIssuer(audience=AUDIENCE)
        self.store = FlakyStore()
        self.issuer = CredentialIssuer(
            "https://credentials.acme.example",
            SigningKeySet.generate("Ed25519"),
            max_ttl=300,
            revocations=RevocationList(self.store, max_ttl=300),
        )
        self.sink = InMemoryAuditSink()

    async def gateway(self, *, credentials: bool) -> Gateway:
        pin = (await _pins()).model_dump(mode="json", by_alias=True)
        if self.drift:
            tool = pin["tools"]["echo"]["tool"]
            tool["description"] = "Echo text (as approved last month)."
            pin["tools"]["echo"]["fingerprint"] = tool_fingerprint(tool)
        entry = {
            "id": "sweep",
            "owner": "platform",
            "tenants": list(self.tenants),
            "workloads": ["*"],
            "command": sys.executable,
            "args": [str(WIRETAP), str(self.wire), *SERVER],
            "server": {"name": "sweep", "version": "==1.0.0"},
            "pin": pin,
        }
        chain: list[Any] = [IdentityMiddleware(self.idp.verifier())]
        if credentials:
            chain.append(CredentialMiddleware(self.issuer.verifier(AUDIENCE)))
        chain.append(PolicyMiddleware(Policy.from_dict(self.policy)))
        settings = {"id": "sweep", "namespace": {"prefix": "sweep_"}, "start_timeout": 60, **self.upstream}
        return Gateway(
            [UpstreamConfig.model_validate(settings)],
            ServerRegistry([entry]),
            *chain,
            audit=Auditor([self.sink]),
        )

    def seen(self) -> list[dict[str, Any]]:
        """Every message the upstream received so far (what the gateway sent it)."""
        if not self.wire.exists():
            return []
        return [json.loads(line) for line in self.wire.read_text().splitlines() if line.strip()]


Attempt = tuple[str, Callable[[GovernedClient], Awaitable[Any]]]


def _attempts(mode: str, *, listings: bool) -> list[Attempt]:
    """Every request an agent can make through the gateway, in one spelling the chain refuses."""

    attempts: list[Attempt] = [
        ("tools/call", lambda a: a.call_tool("sweep_other", {})),
        ("tools/call", lambda a: a.call_tool("sweep_echo", {"text": "refused"})),
        ("prompts/get", lambda a: a.get_prompt("sweep_greet", {"name": "forbidden"})),
        ("resources/read", lambda a: a.read_resource("sweep+note://secret")),
        ("resources/read", lambda a: a.read_resource("sweep+page://x")),
        ("completion/complete", lambda a: a.complete(PROMPT_REF, {"name": "name", "value": "f"})),
        ("completion/complete", lambda a: a.complete(TEMPLATE_REF, {"name": "name", "value": "x"})),
    ]
    if listings:
        attempts += [
            ("tools/list", lambda a: a.list_tools()),
            ("prompts/list", lambda a: a.list_prompts()),
            ("resources/list", lambda a: a.list_resources()),
            ("resources/templates/list", lambda a: a.list_resource_templates()),
        ]
    if mode == "legacy":
        attempts += [
            ("resources/subscribe", lambda a: a.subscribe_resource("sweep+note://secret")),
            ("resources/unsubscribe", lambda a: a.unsubscribe_resource("sweep+note://secret")),
            ("logging/setLevel", lambda a: a.set_logging_level("debug")),
            ("ping", lambda a: a.send_ping()),
        ]
    else:
        attempts.append(("subscriptions/listen", _listening("sweep+note://secret")))
    return attempts


def _listening(uri: str) -> Callable[[GovernedClient], Awaitable[None]]:
    async def listen(agent: GovernedClient) -> None:
        async with agent.listen(tools_list_changed=True, resource_subscriptions=[uri]):
            pass

    return listen


async def _sweep(rig: Rig, gateway: Gateway, agent: GovernedClient, good: GovernedClient, mode: str, **kw: Any) -> None:
    """Make every attempt through ``agent``; then a call of ``good`` that reaches the upstream
    marks the end of the wire to read (each message reaches the upstream in order)."""
    await good.read_resource(README)
    before = await _mark(rig, 0)
    for _, attempt in _attempts(mode, **kw):
        await _refused(attempt, agent)
    await good.read_resource(README)
    end = await _mark(rig, before)
    sent = rig.seen()[before : end - 1]
    assert sent == [], [m.get("method") for m in sent]


async def _refused(attempt: Callable[[GovernedClient], Awaitable[Any]], agent: GovernedClient) -> None:
    """Make one attempt: refused (an MCP error) or, for what is never forwarded, answered."""
    with anyio.fail_after(30), contextlib.suppress(MCPError):
        await attempt(agent)


async def _mark(rig: Rig, start: int) -> int:
    """How many messages the upstream had received once the next read of the readme (after the
    first ``start``) reached it: what an agent sent before that read reached it before."""
    with anyio.fail_after(30):
        while True:
            for n, message in enumerate(rig.seen()[start:], start + 1):
                if message.get("method") == "resources/read" and message["params"]["uri"] == "note://readme":
                    return n
            await anyio.sleep(0.05)


def _late(gateway: Gateway) -> None:
    assert gateway.upstreams["sweep"].state == "ready", gateway.status()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("who", ["no-identity", "expired", "wrong-audience", "other-tenant"])
async def test_a_request_of_an_unverified_agent_reaches_no_upstream(tmp_path: Path, mode: str, who: str) -> None:
    rig = Rig(tmp_path)
    gateway = await rig.gateway(credentials=False)
    good_token = rig.idp.token("good", tenant="acme")
    if who == "no-identity":
        agent = GovernedClient(gateway.server, mode=mode)
    elif who == "expired":
        agent = GovernedClient(gateway.server, identity=rig.idp.token("late", tenant="acme", ttl=-60), mode=mode)
    elif who == "wrong-audience":
        other = IdentityIssuer(audience="mcp://elsewhere")
        agent = GovernedClient(gateway.server, identity=other.token("elsewhere", tenant="acme"), mode=mode)
    else:
        agent = GovernedClient(gateway.server, identity=rig.idp.token("globex", tenant="globex"), mode=mode)
    async with gateway, GovernedClient(gateway.server, identity=good_token, mode=mode) as good, agent:
        _late(gateway)
        await _sweep(rig, gateway, agent, good, mode, listings=True)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_request_the_policy_denies_reaches_no_upstream(tmp_path: Path, mode: str) -> None:
    rig = Rig(tmp_path)
    gateway = await rig.gateway(credentials=False)
    token = rig.idp.token("agent", tenant="acme")
    async with gateway, GovernedClient(gateway.server, identity=token, mode=mode) as agent:
        _late(gateway)
        await agent.list_tools()  # what the agent may call is verified against the pin
        # Every attempt but the allowed call of sweep_echo (the second), setLevel and ping.
        attempts = [a for n, a in enumerate(_attempts(mode, listings=False)) if n != 1 and a[0] not in ALLOWED]
        await agent.read_resource(README)
        before = await _mark(rig, 0)
        for _, attempt in attempts:
            await _refused(attempt, agent)
        await agent.read_resource(README)
        end = await _mark(rig, before)
        sent = rig.seen()[before : end - 1]
        assert sent == [], [m.get("method") for m in sent]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("revoke", ["credential", "store-down"])
async def test_a_request_with_a_revoked_credential_reaches_no_upstream(tmp_path: Path, mode: str, revoke: str) -> None:
    rig = Rig(tmp_path)
    gateway = await rig.gateway(credentials=True)
    holder = Principal(
        issuer="https://issuer.test", subject="holder", tenant="acme", claims=MappingProxyType({}), auth_method="jwt"
    )
    credential = await rig.issuer.mint(holder, audience=AUDIENCE, tools=["sweep_echo"], task_id="t-1", ttl=300)

    async def present(ctx: GovContext, call_next: CallNext) -> Any:
        return await call_next(ctx.replace(meta=MappingProxyType({**ctx.meta, META_CREDENTIAL: credential.token})))

    token = rig.idp.token("holder", tenant="acme")
    good = GovernedClient(gateway.server, identity=rig.idp.token("good", tenant="acme"), mode=mode)
    async with gateway, good, GovernedClient(gateway.server, present, identity=token, mode=mode) as agent:
        _late(gateway)
        await agent.call_tool("sweep_echo", {"text": "before"})  # the credential works
        if revoke == "credential":
            await rig.issuer.revoke(credential)
        else:
            rig.store.down = True
        await _sweep(rig, gateway, agent, good, mode, listings=True)
    assert credential.token not in rig.wire.read_text()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_request_to_an_upstream_not_approved_for_the_agent_reaches_it_not(tmp_path: Path, mode: str) -> None:
    """The policy allows the agent, the registry does not approve the upstream for its tenant."""
    rig = Rig(tmp_path, tenants=("globex",))
    gateway = await rig.gateway(credentials=False)
    token = rig.idp.token("agent", tenant="acme")
    marker = GovernedClient(gateway.server, identity=rig.idp.token("globex", tenant="globex"), mode=mode)
    async with gateway, marker, GovernedClient(gateway.server, identity=token, mode=mode) as agent:
        _late(gateway)
        await marker.read_resource(README)
        before = await _mark(rig, 0)
        attempts: list[Attempt] = [
            *_attempts(mode, listings=True),
            ("tools/call", lambda a: a.call_tool("sweep_echo", {"text": "not approved"})),
            ("resources/read", lambda a: a.read_resource(README)),
            ("prompts/get", lambda a: a.get_prompt("sweep_greet", {"name": "ok"})),
        ]
        if mode == "legacy":
            attempts.append(("resources/subscribe", lambda a: a.subscribe_resource(README)))
        else:
            attempts.append(("subscriptions/listen", _listening(README)))
        for _, attempt in attempts:
            await _refused(attempt, agent)
        await marker.read_resource(README)
        end = await _mark(rig, before)
    sent = [m.get("method") for m in rig.seen()[before : end - 1]]
    assert sent == [], sent


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_call_of_a_tool_that_drifted_from_its_pin_reaches_no_upstream(tmp_path: Path, mode: str) -> None:
    rig = Rig(tmp_path, drift=True)
    gateway = await rig.gateway(credentials=False)
    token = rig.idp.token("agent", tenant="acme")
    async with gateway, GovernedClient(gateway.server, identity=token, mode=mode) as agent:
        _late(gateway)
        assert "sweep_echo" not in {t.name for t in (await agent.list_tools()).tools}
        for _ in range(2):
            with pytest.raises(MCPError) as refused:
                await agent.call_tool("sweep_echo", {"text": "drifted"})
            assert refused.value.code == -32005
        await agent.read_resource(README)
        await _mark(rig, 0)
    assert [m for m in rig.seen() if m.get("method") == "tools/call"] == []


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_no_meta_spelling_carries_the_agents_token_upstream(tmp_path: Path, mode: str) -> None:
    """An allowed request whose ``_meta`` holds the agent's identity token and credential under
    any key reaches the upstream without either."""
    rig = Rig(tmp_path)
    gateway = await rig.gateway(credentials=True)
    holder = Principal(
        issuer="https://issuer.test", subject="holder", tenant="acme", claims=MappingProxyType({}), auth_method="jwt"
    )
    credential = await rig.issuer.mint(holder, audience=AUDIENCE, tools=["sweep_echo"], task_id="t-1", ttl=300)
    token = rig.idp.token("holder", tenant="acme")
    spellings = {
        META_CREDENTIAL: credential.token,
        "authorization": f"Bearer {token}",
        "Authorization": f"Bearer {credential.token}",
        "io.mcpgov/Identity": token,
        "x-credential": {"token": credential.token},
        "progressToken": "p-1",
    }

    async def present(ctx: GovContext, call_next: CallNext) -> Any:
        return await call_next(ctx.replace(meta=MappingProxyType({**ctx.meta, **spellings})))

    async with gateway, GovernedClient(gateway.server, present, identity=token, mode=mode) as agent:
        _late(gateway)
        await agent.call_tool("sweep_echo", {"text": "carried"})
        await agent.read_resource(README)
        await agent.get_prompt("sweep_greet", {"name": "ok"})
        await agent.list_tools()
        await _mark(rig, 0)
    wire = rig.wire.read_text()
    assert '"carried"' in wire
    assert token not in wire and credential.token not in wire
    assert token.split(".")[1] not in wire and credential.token.split(".")[-1] not in wire


async def test_a_lazy_stdio_upstream_keeps_nothing_of_the_agent_that_started_it(tmp_path: Path) -> None:
    """The agent whose request starts a lazy upstream is forgotten once it is gone, like any other."""
    rig = Rig(tmp_path)
    gateway = await rig.gateway(credentials=False)
    lazy = gateway.upstreams["sweep"]
    lazy.config = lazy.config.model_copy(update={"start": "lazy"})
    sessions: list[weakref.ref[Any]] = []
    front = gateway._front

    def remembered(sctx: Any) -> Any:
        sessions.append(weakref.ref(sctx.session))
        return front(sctx)

    gateway._front = remembered  # type: ignore[method-assign]
    async with gateway:
        assert lazy.state == "stopped"
        for n in range(2):
            async with GovernedClient(gateway.server, identity=rig.idp.token(f"a-{n}", tenant="acme")) as agent:
                await agent.call_tool("sweep_echo", {"text": f"from {n}"})
                await agent.read_resource(README)
        assert gateway.status()["sweep"]["state"] == "ready"
        await drop_cancelled_timers()
        gc.collect()
        assert sessions and [ref() for ref in sessions] == [None] * len(sessions)


DENIED: dict[str, Any] = {
    "id": "nothing-for-denied",
    "effect": "deny",
    "principals": [{"issuer": "https://issuer.test", "subject": "denied"}],
    "tools": ["*"],
    "prompts": ["*"],
    "resources": ["*"],
    "methods": ["*"],
}


def _every_request(mode: str) -> list[Attempt]:
    """Every kind of request an agent can make, in spellings a chain would allow an admitted agent."""
    attempts: list[Attempt] = [
        ("tools/list", lambda a: a.list_tools()),
        ("prompts/list", lambda a: a.list_prompts()),
        ("resources/list", lambda a: a.list_resources()),
        ("resources/templates/list", lambda a: a.list_resource_templates()),
        ("tools/call", lambda a: a.call_tool("sweep_echo", {"text": "hello"})),
        ("resources/read", lambda a: a.read_resource(README)),
        ("prompts/get", lambda a: a.get_prompt("sweep_greet", {"name": "ok"})),
        ("completion/complete", lambda a: a.complete(PROMPT_REF, {"name": "name", "value": "f"})),
        ("completion/complete", lambda a: a.complete(TEMPLATE_REF, {"name": "name", "value": "x"})),
        ("ping", lambda a: a.send_ping()),
    ]
    if mode == "legacy":
        attempts += [
            ("resources/subscribe", lambda a: a.subscribe_resource(README)),
            ("resources/unsubscribe", lambda a: a.unsubscribe_resource(README)),
            ("logging/setLevel", lambda a: a.set_logging_level("debug")),
        ]
    else:
        attempts.append(("subscriptions/listen", _listening(README)))
    return attempts


@pytest.mark.parametrize("upstream_mode", ["legacy", "match"])
@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("who", ["no-identity", "expired", "not-approved", "policy-denies"])
async def test_a_lazy_upstream_is_not_started_for_an_agent_the_chain_does_not_admit(
    tmp_path: Path, mode: str, upstream_mode: str, who: str
) -> None:
    """Starting a third-party process is an effect: a request the chain or the registry does not
    admit (of any kind) starts no upstream; the first admitted request that needs it does."""
    upstream = {"start": "lazy", "mode": upstream_mode}
    rig = Rig(tmp_path, tenants=("acme",), upstream=upstream, policy_extra=(DENIED,))
    gateway = await rig.gateway(credentials=False)
    if who == "no-identity":
        agent = GovernedClient(gateway.server, mode=mode)
    elif who == "expired":
        agent = GovernedClient(gateway.server, identity=rig.idp.token("late", tenant="acme", ttl=-60), mode=mode)
    elif who == "not-approved":  # the policy lets globex read the readme; the registry serves only acme
        agent = GovernedClient(gateway.server, identity=rig.idp.token("globex", tenant="globex"), mode=mode)
    else:
        agent = GovernedClient(gateway.server, identity=rig.idp.token("denied", tenant="acme"), mode=mode)
    connections = gateway._all_upstreams()
    async with gateway, agent:
        attempts = _every_request(mode)
        if who == "policy-denies":  # listings are admitted (their entries filtered), the rest refused
            attempts = [a for a in attempts if not a[0].endswith("/list")]
        for _, attempt in attempts:
            await _refused(attempt, agent)
        assert [(u.state, u.stats.starts) for u in connections] == [("stopped", 0)] * len(connections)
        assert not rig.wire.exists()
        if who == "not-approved":  # audited with the caller, as the back chain audits its own refusals
            refused = [e for e in rig.sink.events if e.type == "decision" and e.reason == "server.refused"]
            assert refused and all(e.side == "client" and e.tenant == "globex" for e in refused)
        # The first admitted request that needs it starts it (the marker above can be seen).
        async with GovernedClient(gateway.server, identity=rig.idp.token("good", tenant="acme"), mode=mode) as good:
            await good.read_resource(README)
        assert rig.wire.exists()
