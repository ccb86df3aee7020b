"""Protocol plumbing defaults of a governed server, through real SDK sessions.

* A method the server does not serve at the negotiated version (removed by that version, or
  never registered) reaches the SDK: "Method not found" (-32601; HTTP 404), nothing runs, no
  decision is recorded, whatever its parameters.
* ``logging/setLevel`` and ``subscriptions/listen`` are allowed for any admitted caller unless a
  rule or hook decides about them.
* ``prompts/get`` of a prompt the server does not have is -32602, once the caller may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    EmptyResult,
    SetLevelRequestParams,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)
from mcp_types.methods import SPEC_CLIENT_METHODS

from mcpgov import CallNext, Decision, GovContext, Hooks, IdentityError, Principal, govern
from mcpgov.testing import InMemoryAuditSink, serve_http

from .conftest import raw_request

pytestmark = pytest.mark.anyio

REMOVED_AT_2026 = ("resources/subscribe", "resources/unsubscribe", "logging/setLevel")
CALLER = {"test/as": "alice"}


class RequireCaller:
    """Identity stand-in: admits only requests whose ``_meta`` names a caller."""

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        name = ctx.meta.get("test/as")
        if not isinstance(name, str):
            raise IdentityError("no caller", reason="identity_missing")
        return await call_next(ctx.replace(principal=Principal("https://idp.test", name, tenant="t1")))


@dataclass
class Plumbing:
    server: MCPServer
    hooks: Hooks
    sink: InMemoryAuditSink
    ran: list[str] = field(default_factory=list)


def build(*, identity: bool = False, methods: Mapping[str, Decision] | None = None, governed: bool = True) -> Plumbing:
    """A server with a tool, a prompt, a resource and the log-level and subscribe handlers, governed
    by hooks that allow tools, resources and prompts, and ``methods`` (method -> fixed decision)."""
    server = MCPServer("plumbing")
    ran: list[str] = []

    @server.tool()
    def echo(text: str) -> str:
        ran.append("echo")
        return text

    @server.prompt()
    def greet(name: str) -> str:
        ran.append("greet")
        return f"Hello {name}"

    @server.resource("docs://readme")
    def readme() -> str:
        ran.append("readme")
        return "README"

    async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        ran.append(f"logging/setLevel:{params.level}")
        return EmptyResult()

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        ran.append(f"resources/subscribe:{params.uri}")
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        ran.append(f"resources/unsubscribe:{params.uri}")
        return EmptyResult()

    lowlevel = server._lowlevel_server  # test-only: the SDK has no public API for these handlers
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)

    hooks = Hooks()
    for register in (hooks.tool, hooks.resource, hooks.prompt):
        register("*")(lambda ctx: Decision.allow("targets"))
    for method, decision in (methods or {}).items():
        hooks.method(method)(lambda ctx, d=decision: d)
    sink = InMemoryAuditSink()
    chain = (RequireCaller(), hooks) if identity else (hooks,)
    if governed:
        govern(server, *chain, audit=sink)
    return Plumbing(server, hooks, sink, ran)


def _decisions(sink: InMemoryAuditSink, method: str) -> list[Any]:
    return [e for e in sink.decisions() if e.method == method]


# -- methods the negotiated version removed -------------------------------------------------------


@pytest.mark.parametrize("method", REMOVED_AT_2026)
async def test_methods_removed_at_2026_reach_the_sdk_in_process(method: str) -> None:
    p = build()
    async with Client(p.server, mode="auto") as client:
        with pytest.raises(MCPError) as caught:
            await raw_request(client, method, {"uri": "docs://readme", "level": "debug"})
    assert (caught.value.code, caught.value.data) == (-32601, method)
    assert p.ran == []
    assert _decisions(p.sink, method) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(REMOVED_AT_2026),
    params=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["uri", "level", "name", "arguments", "x"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)),
            max_size=3,
        ),
    ),
)
async def test_removed_methods_are_not_found_whatever_their_params(method: str, params: dict[str, Any] | None) -> None:
    """The SDK's version gate comes first: malformed params of a removed method are -32601, not -32602."""
    p = build()
    async with Client(p.server, mode="auto") as client:
        with pytest.raises(MCPError) as caught:
            await raw_request(client, method, params)
    assert caught.value.code == -32601
    assert p.ran == []
    assert p.sink.decisions() == []


async def _http_answers(p: Plumbing, requests: list[tuple[str, Any]]) -> list[tuple[int, int, Any]]:
    """(HTTP status, error code, error data) of each request POSTed at 2026-07-28, well enveloped."""
    answers: list[tuple[int, int, Any]] = []
    async with serve_http(p.server.streamable_http_app()) as base, httpx2.AsyncClient() as http:
        for index, (method, params) in enumerate(requests):
            body_params = dict(params or {})
            body_params["_meta"] = {PROTOCOL_VERSION_META_KEY: "2026-07-28", CLIENT_CAPABILITIES_META_KEY: {}}
            response = await http.post(
                f"{base}/mcp",
                json={"jsonrpc": "2.0", "id": index + 1, "method": method, "params": body_params},
                headers={
                    "Accept": "application/json, text/event-stream",
                    "MCP-Protocol-Version": "2026-07-28",
                    "Mcp-Method": method,
                },
            )
            error = response.json()["error"]
            answers.append((response.status_code, error["code"], error.get("data")))
        async with Client(f"{base}/mcp", mode="auto") as client:  # the governed methods still work
            assert (await client.call_tool("echo", {"text": "hi"})).content[0].text == "hi"  # type: ignore[union-attr]
    return answers


async def test_methods_removed_at_2026_are_404_over_streamable_http() -> None:
    requests: list[tuple[str, Any]] = [(m, {"uri": "docs://readme", "level": "debug"}) for m in REMOVED_AT_2026]
    p = build()
    answers = await _http_answers(p, requests)
    assert answers == [(404, -32601, m) for m, _ in requests]
    assert p.ran == ["echo"]
    assert [e.method for e in p.sink.decisions()] == ["tools/call"]


async def test_removed_and_unknown_methods_answer_exactly_as_the_bare_server_over_http() -> None:
    requests: list[tuple[str, Any]] = [
        *((m, {"uri": 7}) for m in REMOVED_AT_2026),
        *((m, None) for m in REMOVED_AT_2026),
        ("x/unknown", {"name": "echo", "arguments": {"text": "x"}}),
        ("tasks/list", {}),
    ]
    governed = build()
    assert await _http_answers(governed, requests) == await _http_answers(build(governed=False), requests)
    assert governed.ran == ["echo"]
    assert [e.method for e in governed.sink.decisions()] == ["tools/call"]


async def test_the_same_methods_are_governed_where_the_version_has_them() -> None:
    """On a 2025-11-25 session resources/subscribe is served, so the resource's hooks decide it."""
    p = build()
    p.hooks.resource("secret://*")(lambda ctx: Decision.deny("no-secrets", "secret"))
    async with Client(p.server, mode="legacy") as client:
        await client.subscribe_resource("docs://readme")
        await client.unsubscribe_resource("docs://readme")
        with pytest.raises(MCPError) as caught:
            await client.subscribe_resource("secret://keys")
        assert caught.value.code == -32003
        with pytest.raises(MCPError) as caught:
            await raw_request(client, "resources/subscribe", {"uri": 7})
        assert caught.value.code == -32602
    assert p.ran == ["resources/subscribe:docs://readme", "resources/unsubscribe:docs://readme"]
    rules = [(e.method, e.effect, e.rule) for e in p.sink.decisions()]
    assert ("resources/subscribe", "deny", "no-secrets") in rules


# -- unknown methods ---------------------------------------------------------------------------

_unknown_methods = st.from_regex(r"[a-z]{1,8}(/[a-zA-Z_]{1,8}){0,2}", fullmatch=True).filter(
    lambda m: m not in SPEC_CLIENT_METHODS and m not in ("initialize", "ping", "server/discover")
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=_unknown_methods, mode=st.sampled_from(["auto", "legacy"]))
async def test_unknown_methods_reach_the_sdk(method: str, mode: str) -> None:
    p = build()
    async with Client(p.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await raw_request(client, method, {"name": "echo", "arguments": {"text": "x"}})
    assert (caught.value.code, caught.value.data) == (-32601, method)
    assert p.ran == []
    assert p.sink.decisions() == []


async def test_a_method_the_server_serves_is_governed_even_when_registered_after_govern(mode: str) -> None:
    p = build()

    async def custom(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        p.ran.append("x/custom")
        return EmptyResult()

    p.server._lowlevel_server.add_request_handler("x/custom", SetLevelRequestParams, custom)
    async with Client(p.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await raw_request(client, "x/custom", {"level": "debug"})
        assert caught.value.code == -32003  # served, and no hook allows it: default deny
        assert p.ran == []
        p.hooks.method("x/custom")(lambda ctx: Decision.allow("custom-ok"))
        await raw_request(client, "x/custom", {"level": "debug"})
    assert p.ran == ["x/custom"]
    assert [(e.effect, e.rule) for e in _decisions(p.sink, "x/custom")] == [
        ("deny", "mcpgov:default-deny"),
        ("allow", "custom-ok"),
    ]


# -- logging/setLevel and subscriptions/listen --------------------------------------------------


async def test_set_level_is_allowed_by_default_for_an_admitted_caller() -> None:
    p = build(identity=True)
    async with Client(p.server, mode="legacy") as client:
        await client.set_logging_level("warning", meta=CALLER)  # type: ignore[arg-type]
        with pytest.raises(MCPError) as caught:
            await client.set_logging_level("debug")  # no caller: identity refuses first
        assert caught.value.code == -32001
    assert p.ran == ["logging/setLevel:warning"]
    allowed, refused = _decisions(p.sink, "logging/setLevel")
    assert (allowed.effect, allowed.rule, allowed.principal) == (
        "allow",
        "mcpgov:protocol-default",
        "https://idp.test#alice",
    )
    assert (refused.effect, refused.reason) == ("deny", "identity_missing")


@pytest.mark.parametrize(
    ("decision", "code"),
    [
        (Decision.deny("no-log-levels", "callers may not change the log level"), -32003),
        (Decision.require_approval("log-levels-need-approval"), -32004),
    ],
)
async def test_a_rule_about_set_level_decides(decision: Decision, code: int) -> None:
    p = build(methods={"logging/setLevel": decision})
    async with Client(p.server, mode="legacy") as client:
        with pytest.raises(MCPError) as caught:
            await client.set_logging_level("debug")
    assert caught.value.code == code
    assert p.ran == []
    assert [e.rule for e in _decisions(p.sink, "logging/setLevel")] == [decision.rule]


async def test_a_failing_hook_about_set_level_still_denies() -> None:
    p = build()

    @p.hooks.method("logging/*")
    def broken(ctx: GovContext) -> Decision:
        raise RuntimeError("hook bug")

    async with Client(p.server, mode="legacy") as client:
        with pytest.raises(MCPError) as caught:
            await client.set_logging_level("debug")
    assert caught.value.code == -32003
    assert p.ran == []
    assert [e.reason for e in _decisions(p.sink, "logging/setLevel")] == ["authoriser_error"]


async def test_listen_is_allowed_by_default() -> None:
    p = build()
    async with Client(p.server, mode="auto") as client, client.listen(tools_list_changed=True) as sub:
        assert sub.honored is not None
    assert [(e.effect, e.rule) for e in _decisions(p.sink, "subscriptions/listen")] == [
        ("allow", "mcpgov:protocol-default")
    ]


async def test_a_rule_about_listen_decides() -> None:
    p = build(methods={"subscriptions/listen": Decision.deny("no-streams", "no standing streams")})
    async with Client(p.server, mode="auto") as client:
        with pytest.raises(MCPError) as caught:
            async with client.listen(tools_list_changed=True):
                pass
    assert caught.value.code == -32003
    assert [e.rule for e in _decisions(p.sink, "subscriptions/listen")] == ["no-streams"]


async def test_listen_does_not_exist_on_a_2025_session() -> None:
    p = build()
    async with Client(p.server, mode="legacy") as client:
        with pytest.raises(MCPError) as caught:
            await raw_request(client, "subscriptions/listen", {"filter": {"toolsListChanged": True}})
    assert caught.value.code == -32601
    assert p.sink.decisions() == []


async def test_set_level_and_listen_over_streamable_http() -> None:
    p = build()
    async with serve_http(p.server.streamable_http_app()) as base:
        async with Client(f"{base}/mcp", mode="legacy") as client:
            await client.set_logging_level("error")
        async with Client(f"{base}/mcp", mode="auto") as client, client.listen(prompts_list_changed=True):
            pass
    assert p.ran == ["logging/setLevel:error"]
    assert {e.method: e.rule for e in p.sink.decisions()} == {
        "logging/setLevel": "mcpgov:protocol-default",
        "subscriptions/listen": "mcpgov:protocol-default",
    }


# -- unknown prompts -----------------------------------------------------------------------------

_prompt_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20).filter(
    lambda n: n != "greet"
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_prompt_names, mode=st.sampled_from(["auto", "legacy"]))
async def test_unknown_prompts_are_invalid_params(name: str, mode: str) -> None:
    p = build()
    async with Client(p.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.get_prompt(name, {"name": "x"})
        assert caught.value.code == -32602
        assert caught.value.data["code"] == "mcpgov.invalid_request"
        assert (await client.get_prompt("greet", {"name": "Ada"})).messages
    assert p.ran == ["greet"]
    # unknown, or (a name breaking the MCP naming rule or mistakable for "greet") refused as such
    assert _decisions(p.sink, "prompts/get")[0].reason in ("unknown_prompt", "name_refused")


async def test_unknown_prompts_over_streamable_http() -> None:
    p = build()
    async with serve_http(p.server.streamable_http_app()) as base:
        for mode in ("auto", "legacy"):
            async with Client(f"{base}/mcp", mode=mode) as client:
                with pytest.raises(MCPError) as caught:
                    await client.get_prompt("nope", {})
                assert caught.value.code == -32602
    assert p.ran == []


# -- the same defaults under a policy ----------------------------------------------------------


@pytest.mark.parametrize(
    ("extra_rule", "expected"),
    [
        ("", ("allow", "mcpgov:protocol-default")),
        (
            "  - {id: no-log-levels, effect: deny, methods: [logging/setLevel]}\n",
            ("deny", "no-log-levels"),
        ),
        (
            "  - {id: log-levels-for-acme, effect: allow, tenants: [acme], methods: ['logging/*']}\n",
            ("allow", "log-levels-for-acme"),
        ),
    ],
    ids=["no-rule", "deny-rule", "allow-rule"],
)
async def test_policy_rules_about_set_level_decide_and_no_rule_allows(
    extra_rule: str, expected: tuple[str, str]
) -> None:
    from mcpgov.policy import Policy, PolicyMiddleware

    from .policies.support import LookupIdentity, as_

    server = MCPServer("policy-plumbing")
    ran: list[str] = []

    async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        ran.append(params.level)
        return EmptyResult()

    server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    policy = Policy.from_yaml("rules:\n  - {id: tools, effect: allow, tools: ['*']}\n" + extra_rule, source="p.yaml")
    sink = InMemoryAuditSink()
    govern(server, LookupIdentity(), PolicyMiddleware(policy), audit=sink)
    async with Client(server, mode="legacy") as client:
        if expected[0] == "allow":
            await client.set_logging_level("info", meta=as_("alice"))
        else:
            with pytest.raises(MCPError) as caught:
                await client.set_logging_level("info", meta=as_("alice"))
            assert caught.value.code == -32003
    assert ran == (["info"] if expected[0] == "allow" else [])
    assert [(e.effect, e.rule) for e in _decisions(sink, "logging/setLevel")] == [expected]


async def test_a_hook_that_denies_set_level_in_the_default_deny_words_still_denies() -> None:
    """Only the authorisers' own "no rule applied" turns into the protocol default, not a hook's deny."""
    p = build(methods={"logging/setLevel": Decision.deny("my-rule", "no", "default_deny")})
    async with Client(p.server, mode="legacy") as client:
        with pytest.raises(MCPError) as caught:
            await client.set_logging_level("debug")
    assert caught.value.code == -32003
    assert p.ran == []


def test_the_no_rule_applied_rules_are_the_authorisers_own() -> None:
    from mcpgov._authorize import _NO_RULE_APPLIED
    from mcpgov._hooks import DEFAULT_DENY_RULE as HOOKS_DEFAULT
    from mcpgov.policy._cedar import CEDAR_DEFAULT_DENY
    from mcpgov.policy._engine import DEFAULT_DENY_RULE as POLICY_DEFAULT

    assert {HOOKS_DEFAULT, POLICY_DEFAULT, CEDAR_DEFAULT_DENY} == _NO_RULE_APPLIED
