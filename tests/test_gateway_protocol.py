"""What passes through the gateway besides calls: input requests, logging levels, templates, floods.

Each test drives a real gateway session (in-process, both protocol eras on the front) over an
upstream that really sends the request or notification, spoken to in both eras on the back.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import MCPError
from mcp.server.context import CallNext, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from mcpgov import Auditor, Decision, GovContext, GovernedClient, Hooks
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink, serve_http

from .gateway_support import AUDIENCE, entry, pins

pytestmark = pytest.mark.anyio

RELAYABLE = ("sampling", "elicitation", "roots")
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


class Name(BaseModel):
    """The answer an upstream asks for."""

    name: str


@dataclass
class Heard:
    """What the upstream got back from the agent, through the gateway."""

    answers: list[str] = field(default_factory=list)
    states: list[str | None] = field(default_factory=list)
    declared: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    """Each 2026-07-28 request's method and the input capabilities its client declared on it."""


def upstream_server(heard: Heard) -> MCPServer:
    server = MCPServer("desk", version="1.0.0")

    async def record_declared(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        caps = (ctx.meta or {}).get(types.CLIENT_CAPABILITIES_META_KEY)
        if ctx.request_id is not None and isinstance(caps, dict):
            heard.declared.append((ctx.method, frozenset(k for k in RELAYABLE if caps.get(k) is not None)))
        return await call_next(ctx)

    server.middleware.append(record_declared)

    @server.tool()
    async def ask_name(ctx: Context) -> str | types.InputRequiredResult:
        """Ask the user's name in a result (2026-07-28) or a request (earlier), as the era allows."""
        responses = ctx.input_responses
        if responses and "name" in responses:
            answer = responses["name"]
            heard.states.append(ctx.request_state)
            name = answer.content.get("name") if isinstance(answer, types.ElicitResult) and answer.content else None
            heard.answers.append(f"name={name}")
            return f"Hello, {name}!"
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            asked = await ctx.elicit("What is your name?", Name)
            heard.states.append("upstream-state-1")  # a legacy session has no state to carry
            heard.answers.append(f"name={getattr(getattr(asked, 'data', None), 'name', None)}")
            return f"Hello, {getattr(getattr(asked, 'data', None), 'name', None)}!"
        ask = types.ElicitRequest(
            params=types.ElicitRequestFormParams(message="What is your name?", requested_schema=NAME_SCHEMA)
        )
        return types.InputRequiredResult(input_requests={"name": ask}, request_state="upstream-state-1")

    @server.tool()
    async def sample_capital(ctx: Context) -> str:
        """Ask the agent's model with a server-to-client request (legacy upstream sessions)."""
        request = types.CreateMessageRequest(
            params=types.CreateMessageRequestParams(
                messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text="Capital?"))],
                max_tokens=10,
            )
        )
        result = await ctx.request_context.session.send_request(
            request,
            types.CreateMessageResult,
            metadata=ServerMessageMetadata(related_request_id=ctx.request_context.request_id),
        )
        text = result.content.text if isinstance(result.content, types.TextContent) else "?"
        heard.answers.append(f"model={text}")
        return f"model said {text}"

    @server.tool()
    async def chatty(ctx: Context) -> str:
        """Log at two levels."""
        await ctx.info("an info line")
        await ctx.warning("a warning line")
        return "logged"

    @server.tool()
    async def flood(count: int, ctx: Context) -> str:
        """Send many progress notifications and log lines in a row."""
        for i in range(count):
            await ctx.report_progress(i, count)
            await ctx.debug(f"line {i}")
        return "flooded"

    @server.tool()
    async def declared(ctx: Context) -> str:
        """Which input capabilities the client declared on this request."""
        caps = ctx.client_capabilities
        return ",".join(k for k in ("sampling", "elicitation", "roots") if getattr(caps, k, None) is not None)

    @server.tool()
    def needs_sampling() -> str:
        """Refuse as a 2026-07-28 server does when the client lacks a capability."""
        raise MCPError(
            types.MISSING_REQUIRED_CLIENT_CAPABILITY,
            "This tool requires the client 'sampling' capability",
            {"requiredCapabilities": {"sampling": {}}, "internal": "upstream-only detail"},
        )

    @server.tool()
    def ping_back() -> str:
        """Answer at once."""
        return "pong"

    @server.resource("desk://notes/{topic}")
    def note(topic: str) -> str:
        """A note about a topic."""
        return f"note about {topic}"

    @server.prompt()
    def brief(topic: str) -> str:
        """A brief about a topic."""
        return f"Brief me on {topic}"

    @server.completion()  # type: ignore[untyped-decorator,no-untyped-call]  # the SDK's decorator is untyped
    async def complete(
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: types.CompletionArgument,
        context: types.CompletionContext | None,
    ) -> types.Completion:
        options = ["gateways", "governance", "pins"]
        return types.Completion(values=[o for o in options if o.startswith(argument.value)])

    return server


def allow(ctx: GovContext) -> Decision:
    return Decision.allow("tests:allow")


async def desk_gateway(heard: Heard, *, back_mode: str = "auto") -> tuple[Gateway, IdentityIssuer, InMemoryAuditSink]:
    """A gateway over the desk upstream, names unprefixed, every request of a verified agent allowed."""
    server = upstream_server(heard)
    registry = ServerRegistry([entry("desk", "desk", "1.0.0", await pins(server))])
    idp = IdentityIssuer(audience=AUDIENCE)
    hooks = Hooks()
    hooks.tool("*")(allow)
    hooks.resource("*")(allow)
    hooks.prompt("*")(allow)
    hooks.method("*")(allow)
    sink = InMemoryAuditSink()
    upstream = UpstreamConfig.model_validate(
        {"id": "desk", "mode": back_mode, "namespace": {"prefix": "", "resource_prefix": ""}}
    )
    gateway = Gateway(
        [upstream],
        registry,
        IdentityMiddleware(idp.verifier()),
        hooks,
        audit=Auditor([sink]),
        servers={"desk": server},
    )
    return gateway, idp, sink


def agent(gateway: Gateway, idp: IdentityIssuer, mode: str, **kwargs: Any) -> GovernedClient:
    return GovernedClient(gateway.server, identity=idp.token("agent", tenant="acme"), mode=mode, **kwargs)


@pytest.fixture(params=["auto", "legacy"])
def back_mode(request: pytest.FixtureRequest) -> str:
    """The era the gateway speaks to its upstream."""
    return str(request.param)


@pytest.mark.parametrize(
    ("mode", "back_mode"),
    [("auto", "auto"), ("legacy", "auto"), ("legacy", "legacy"), ("auto", "match"), ("legacy", "match")],
    ids=[
        "modern-agent-modern-upstream",
        "legacy-agent-modern-upstream",
        "legacy-agent-legacy-upstream",
        "modern-agent-matched-upstream",
        "legacy-agent-matched-upstream",
    ],
)
async def test_an_upstreams_input_request_reaches_the_agents_callback_and_the_answer_comes_back(
    mode: str, back_mode: str
) -> None:
    """2026-07-28 agents get the upstream's input_required result; legacy agents a request."""
    heard = Heard()
    asked: list[str] = []

    async def answer(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    gateway, idp, _ = await desk_gateway(heard, back_mode=back_mode)
    async with gateway, agent(gateway, idp, mode, elicitation_callback=answer) as client:
        result = await client.call_tool("ask_name", {})
    assert asked == ["What is your name?"]
    assert isinstance(result.content[0], types.TextContent) and result.content[0].text == "Hello, Ada!"
    assert heard.answers == ["name=Ada"]
    # The upstream's own request state went to the agent and came back unchanged.
    assert heard.states == ["upstream-state-1"]


async def test_a_server_request_of_a_legacy_upstream_is_a_clean_error_for_a_modern_agent() -> None:
    """A 2026-07-28 agent cannot receive requests: the upstream hears a refusal, the agent a clean error."""
    heard = Heard()
    asked: list[str] = []

    async def answer(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    gateway, idp, _ = await desk_gateway(heard, back_mode="legacy")
    async with gateway, agent(gateway, idp, "auto", elicitation_callback=answer) as client:
        with anyio.fail_after(10), pytest.raises(MCPError, match="not available through the gateway"):
            await client.call_tool("ask_name", {})
        assert not (await client.call_tool("ping_back", {})).is_error
    assert asked == [] and heard.answers == []


async def test_matched_mode_serves_each_agent_on_a_connection_of_its_own_era() -> None:
    """Legacy agents on the handshake-era connection (server requests work), modern ones on a 2026-07-28 one."""
    heard = Heard()

    async def model(context: object, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="Rome"), model="m"
        )

    async def answer(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Grace"})

    gateway, idp, _ = await desk_gateway(heard, back_mode="match")
    async with gateway:
        legacy_upstream = gateway.upstreams["desk"]
        assert legacy_upstream.config.mode == "legacy"
        async with agent(gateway, idp, "legacy", sampling_callback=model) as legacy:
            sampled = await legacy.call_tool("sample_capital", {})
        assert gateway.status()["desk"]["state"] == "ready"
        async with agent(gateway, idp, "auto", elicitation_callback=answer) as modern:
            asked = await modern.call_tool("ask_name", {})
        modern_client = gateway._modern_upstreams["desk"]._client
        assert modern_client is not None and modern_client.protocol_version == "2026-07-28"
        legacy_client = legacy_upstream._client
        assert legacy_client is not None and legacy_client.protocol_version != "2026-07-28"
    assert isinstance(sampled.content[0], types.TextContent) and sampled.content[0].text == "model said Rome"
    assert isinstance(asked.content[0], types.TextContent) and asked.content[0].text == "Hello, Grace!"
    assert heard.answers == ["model=Rome", "name=Grace"]
    assert heard.states == ["upstream-state-1"]


async def test_an_upstreams_sampling_request_reaches_the_agents_model_and_comes_back() -> None:
    heard = Heard()
    prompts: list[str] = []

    async def model(context: object, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        content = params.messages[0].content
        prompts.append(content.text if isinstance(content, types.TextContent) else "?")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="Paris"), model="test-model"
        )

    gateway, idp, _ = await desk_gateway(heard, back_mode="legacy")
    async with gateway, agent(gateway, idp, "legacy", sampling_callback=model) as client:
        result = await client.call_tool("sample_capital", {})
    assert prompts == ["Capital?"]
    assert isinstance(result.content[0], types.TextContent) and result.content[0].text == "model said Paris"
    assert heard.answers == ["model=Paris"]


async def test_sampling_for_an_agent_without_a_sampling_callback_is_a_clean_error() -> None:
    heard = Heard()
    gateway, idp, _ = await desk_gateway(heard, back_mode="legacy")
    async with gateway, agent(gateway, idp, "legacy") as client:
        with anyio.fail_after(10), pytest.raises(MCPError) as refused:
            await client.call_tool("sample_capital", {})
        # The gateway keeps serving the agent.
        assert not (await client.call_tool("ping_back", {})).is_error
    assert refused.value.message == "Sampling not supported"  # the agent's own answer, relayed
    assert heard.answers == []


async def test_the_agents_log_level_applies_to_relayed_log_messages(back_mode: str) -> None:
    heard = Heard()
    lines: list[tuple[str, object]] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        lines.append((params.level, params.data))

    gateway, idp, _ = await desk_gateway(heard, back_mode=back_mode)
    app = gateway.http_app(auth=gateway.bearer_auth("http://127.0.0.1/mcp"))
    token = idp.token("agent", tenant="acme")
    async with (
        serve_http(app) as base,
        GovernedClient(f"{base}/mcp", identity=token, mode="legacy", logging_callback=on_log) as client,
    ):
        await client.call_tool("chatty", {})
        assert lines == [("info", "an info line"), ("warning", "a warning line")]
        lines.clear()
        await client.set_logging_level("warning")
        await client.call_tool("chatty", {})
    assert lines == [("warning", "a warning line")]


async def test_a_modern_agent_gets_logs_at_the_level_its_request_asks_for(back_mode: str) -> None:
    heard = Heard()
    lines: list[str] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        lines.append(params.level)

    gateway, idp, _ = await desk_gateway(heard, back_mode=back_mode)
    async with gateway, agent(gateway, idp, "auto", logging_callback=on_log, log_level="warning") as client:
        await client.call_tool("chatty", {})
    assert lines == ["warning"]


async def test_resource_templates_prompts_and_completions_pass_through(mode: str, back_mode: str) -> None:
    heard = Heard()
    gateway, idp, _ = await desk_gateway(heard, back_mode=back_mode)
    app = gateway.http_app(auth=gateway.bearer_auth("http://127.0.0.1/mcp"))
    token = idp.token("agent", tenant="acme")
    # Over HTTP: completion/complete carries no _meta, the agent's identity is its bearer token.
    async with serve_http(app) as base, GovernedClient(f"{base}/mcp", identity=token, mode=mode) as client:
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["desk://notes/{topic}"]
        read = await client.read_resource("desk://notes/pins")
        assert getattr(read.contents[0], "text", None) == "note about pins"
        prompt = await client.get_prompt("brief", {"topic": "audit"})
        assert "Brief me on audit" in str(prompt.messages[0].content)
        ref = types.PromptReference(type="ref/prompt", name="brief")
        completed = await client.complete(ref, {"name": "topic", "value": "g"})
        assert completed.completion.values == ["gateways", "governance"]
        template_ref = types.ResourceTemplateReference(type="ref/resource", uri="desk://notes/{topic}")
        completed = await client.complete(template_ref, {"name": "topic", "value": "p"})
        assert completed.completion.values == ["pins"]


async def test_an_upstream_flooding_notifications_neither_hangs_the_gateway_nor_starves_other_calls(
    mode: str,
) -> None:
    heard = Heard()
    reported: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append(progress)

    gateway, idp, _ = await desk_gateway(heard)
    async with gateway, agent(gateway, idp, mode, log_level="debug") as client:
        pongs: list[bool] = []

        async def flood() -> None:
            result = await client.call_tool("flood", {"count": 2000}, progress_callback=on_progress)
            assert not result.is_error

        async def others() -> None:
            for _ in range(20):
                pong = await client.call_tool("ping_back", {})
                pongs.append(not pong.is_error)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(flood)
                tg.start_soon(others)
        assert pongs == [True] * 20
    assert reported and reported[-1] == 1999


async def test_an_input_request_with_no_agent_to_answer_it_is_a_clean_error() -> None:
    """A legacy agent without an elicitation callback: the upstream hears a refusal, the agent an error."""
    heard = Heard()
    gateway, idp, _ = await desk_gateway(heard, back_mode="auto")
    async with gateway, agent(gateway, idp, "legacy") as client:
        with anyio.fail_after(10), pytest.raises(MCPError):
            await client.call_tool("ask_name", {})
        assert not (await client.call_tool("ping_back", {})).is_error
    assert heard.answers == []


async def test_a_missing_resource_is_reported_with_the_uri_the_agent_asked_for(mode: str) -> None:
    heard = Heard()
    gateway, idp, _ = await desk_gateway(heard)
    async with gateway, agent(gateway, idp, mode) as client:
        with pytest.raises(MCPError) as missing:
            await client.read_resource("desk://nowhere")
        assert client.server_info is not None and client.server_info.version  # the gateway names its version
    assert missing.value.data == {"uri": "desk://nowhere"}


async def test_a_modern_upstream_hears_only_the_input_capabilities_the_agent_declared() -> None:
    heard = Heard()

    async def answer(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    gateway, idp, _ = await desk_gateway(heard, back_mode="auto")
    async with gateway:
        async with agent(gateway, idp, "auto", elicitation_callback=answer) as asks:
            elicits = await asks.call_tool("declared", {})
        async with agent(gateway, idp, "auto") as plain:
            nothing = await plain.call_tool("declared", {})
    assert isinstance(elicits.content[0], types.TextContent) and elicits.content[0].text == "elicitation"
    assert isinstance(nothing.content[0], types.TextContent) and nothing.content[0].text == ""


async def test_a_missing_capability_error_keeps_only_the_capabilities_it_requires(mode: str) -> None:
    heard = Heard()
    gateway, idp, _ = await desk_gateway(heard)
    async with gateway, agent(gateway, idp, mode) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("needs_sampling", {})
    assert refused.value.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY
    assert refused.value.data == {"requiredCapabilities": {"sampling": {}}}


async def test_the_gateways_own_requests_declare_no_capability_it_cannot_relay() -> None:
    """A request with no agent's request behind it (the pin re-check's listing) declares no sampling,
    elicitation or roots to a 2026-07-28 upstream, while an agent's request declares the agent's own."""
    heard = Heard()

    async def answer(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    gateway, idp, _ = await desk_gateway(heard, back_mode="auto")
    async with gateway:
        async with agent(gateway, idp, "auto", elicitation_callback=answer) as asks:
            await asks.call_tool("declared", {})
        assert ("tools/call", frozenset({"elicitation"})) in heard.declared
        heard.declared.clear()
        assert await gateway.upstreams["desk"].recheck_pins() == 0
    assert heard.declared and {method for method, _ in heard.declared} == {"tools/list"}
    assert all(declared == frozenset() for _, declared in heard.declared)


async def test_the_health_probe_of_a_modern_http_upstream_declares_no_capability_it_cannot_relay() -> None:
    heard = Heard()
    server = upstream_server(heard)
    manifest = await pins(server)
    async with serve_http(server.streamable_http_app()) as base:
        desk = {**entry("desk", "desk", "1.0.0", manifest), "url": f"{base}/mcp"}
        desk.pop("command")
        upstream = UpstreamConfig.model_validate(
            {"id": "desk", "mode": "auto", "namespace": {"prefix": ""}, "health": {"interval": 0.05}}
        )
        hooks = Hooks()
        hooks.method("*")(allow)
        gateway = Gateway([upstream], ServerRegistry([desk]), IdentityMiddleware(IdentityIssuer().verifier()), hooks)
        async with gateway:
            with anyio.fail_after(10):
                while sum(method == "server/discover" for method, _ in heard.declared) < 4:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
    probes = [declared for method, declared in heard.declared if method == "server/discover"][1:]  # after connecting
    assert probes and all(declared == frozenset() for declared in probes)
    assert gateway.upstreams["desk"].stats.starts == 1  # answered probes keep the connection


@pytest.mark.parametrize("back_mode", ["auto", "match"])
async def test_a_relayed_input_round_is_audited_as_input_required_not_failed(back_mode: str) -> None:
    """The round a 2026-07-28 agent answers for the upstream is recorded as what it is, on both sides,
    and the retry carrying the answers is a request of its own that completes."""
    heard = Heard()

    async def answer(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    gateway, idp, sink = await desk_gateway(heard, back_mode=back_mode)
    async with gateway, agent(gateway, idp, "auto", elicitation_callback=answer) as client:
        result = await client.call_tool("ask_name", {})
    assert isinstance(result.content[0], types.TextContent) and result.content[0].text == "Hello, Ada!"
    outcomes = [(e.side, e.outcome, e.reason) for e in sink.outcomes() if e.target == "ask_name"]
    assert outcomes == [
        ("client", "input_required", "input_relayed"),
        ("server", "input_required", None),
        ("client", "completed", None),
        ("server", "completed", None),
    ]
    assert not [e for e in sink.events if e.outcome == "failed"]


def legacy_only(server: MCPServer) -> MCPServer:
    """``server`` as a handshake-era-only server: it does not know ``server/discover``."""

    async def no_discover(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        if ctx.method == "server/discover":
            raise MCPError(types.METHOD_NOT_FOUND, "Method not found")
        return await call_next(ctx)

    server.middleware.insert(0, no_discover)
    return server


@pytest.mark.parametrize("front", ["in-process", "http"])
@pytest.mark.parametrize("back_mode", ["legacy", "auto", "match"])
async def test_a_legacy_only_upstream_asking_a_modern_agent_mid_call_is_a_clean_error_naming_why(
    back_mode: str, front: str
) -> None:
    """Whatever era the gateway asks for, a handshake-era-only upstream asks with a request in the
    middle of a call: a 2026-07-28 agent gets a clean, fast error saying so, never a hang, and its
    callbacks are never run with a question nobody can carry back."""
    heard = Heard()
    server = legacy_only(upstream_server(heard))
    desk = entry("desk", "desk", "1.0.0", await pins(server))
    idp = IdentityIssuer(audience=AUDIENCE)
    hooks = Hooks()
    hooks.method("*")(allow)
    hooks.tool("*")(allow)
    upstream = UpstreamConfig.model_validate({"id": "desk", "mode": back_mode, "namespace": {"prefix": ""}})
    asked: list[str] = []

    async def answer(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append("elicitation")
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def model(context: object, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append("sampling")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="Rome"), model="m"
        )

    token = idp.token("agent", tenant="acme")
    async with AsyncExitStack() as stack:
        # Over HTTP, as a remote server that does not speak 2026-07-28 is met (era probe, then fallback).
        desk["url"] = f"{await stack.enter_async_context(serve_http(server.streamable_http_app()))}/mcp"
        del desk["command"]
        gateway = Gateway([upstream], ServerRegistry([desk]), IdentityMiddleware(idp.verifier()), hooks)
        target: Any = gateway.server
        if front == "http":  # the app's lifespan enters the gateway
            app = gateway.http_app(auth=gateway.bearer_auth("http://127.0.0.1/mcp"))
            target = f"{await stack.enter_async_context(serve_http(app))}/mcp"
        else:
            await stack.enter_async_context(gateway)
        client = await stack.enter_async_context(
            GovernedClient(target, identity=token, mode="auto", elicitation_callback=answer, sampling_callback=model)
        )
        assert client.protocol_version in MODERN_PROTOCOL_VERSIONS
        for tool, what in (("ask_name", "Elicitation"), ("sample_capital", "Sampling")):
            with anyio.fail_after(5), pytest.raises(MCPError) as refused:
                await client.call_tool(tool, {})
            assert refused.value.message == (
                f"{what} is not available through the gateway: the upstream asked in the middle of a call, "
                "which cannot reach a 2026-07-28 agent"
            )
        assert not (await client.call_tool("ping_back", {})).is_error
        connected = [u._client for u in (gateway.upstreams["desk"], *gateway._modern_upstreams.values())]
        versions = {c.protocol_version for c in connected if c is not None}
        assert versions and not versions & set(MODERN_PROTOCOL_VERSIONS)  # every connection fell back
    assert asked == [] and heard.answers == []
