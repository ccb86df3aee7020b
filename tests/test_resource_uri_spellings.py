"""A resource URI that reads one way and resolves another is never allowed by a prefix.

``file:///public/../secret`` matches the glob ``file:///public/*`` as text, and names the secret
once a server resolves the path. A governed server refuses such URIs (dot segments, backslashes,
encoded dots or separators) before any decision; a glob hook or rule never matches them, on
either side; the handler never receives them.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ReadResourceResult, TextResourceContents

from mcpgov import Decision, GovContext, GovernedClient, Hooks, Principal, govern
from mcpgov._uris import uri_problem
from mcpgov.policy import Policy, PolicyEngine, PolicyMiddleware
from mcpgov.testing import InMemoryAuditSink

pytestmark = pytest.mark.anyio

HOSTILE = [
    "file:///public/../secret.txt",
    "file:///public/a/../../secret.txt",
    "file:///public/..",
    "file:///public/./../secret.txt",
    "file:///public/..\\secret.txt",
    "file:///public\\..\\secret.txt",
    "file:///public/%2e%2e/secret.txt",
    "file:///public/%2E%2E%2Fsecret.txt",
    "file:///public/.%2e/secret.txt",
    "file:///public/..%5csecret.txt",
    "notes://public/../secret",
    "file:///public/%72eadme.txt",
    "file:///public/\uff52eadme.txt",
]


def files(read: list[str]) -> Server[Any]:
    """A server that resolves whatever path a URI names, as file servers do."""

    async def read_resource(ctx: ServerRequestContext[Any], params: Any) -> ReadResourceResult:
        read.append(str(params.uri))
        return ReadResourceResult(contents=[TextResourceContents(uri=params.uri, text="contents")])

    return Server("files", version="1.0.0", on_read_resource=read_resource)


def public_only() -> Hooks:
    hooks = Hooks()

    @hooks.resource("file:///public/*")
    @hooks.resource("notes://public/*")
    def public(ctx: GovContext) -> Decision:
        return Decision.allow("public-files")

    return hooks


@pytest.mark.parametrize("uri", HOSTILE)
async def test_a_governed_server_refuses_a_uri_that_resolves_elsewhere_before_any_decision(uri: str, mode: str) -> None:
    read: list[str] = []
    sink = InMemoryAuditSink()
    server = files(read)
    govern(server, public_only(), audit=sink)
    async with Client(server, mode=mode) as client:
        assert (await client.read_resource("file:///public/readme.txt")).contents
        with pytest.raises(MCPError) as refused:
            await client.read_resource(uri)
    assert refused.value.code == -32602
    assert read == ["file:///public/readme.txt"]  # the handler never saw the hostile spelling
    (event,) = [e for e in sink.events if e.target == uri]
    assert event.reason == "uri_invalid"
    assert "secret" not in refused.value.message and "readme" not in refused.value.message


@pytest.mark.parametrize("uri", HOSTILE)
async def test_a_client_side_glob_hook_never_allows_such_a_uri_to_an_ungoverned_server(uri: str, mode: str) -> None:
    read: list[str] = []
    client_sink = InMemoryAuditSink()
    async with GovernedClient(files(read), public_only(), audit=client_sink, mode=mode) as client:
        assert (await client.read_resource("file:///public/readme.txt")).contents
        with pytest.raises(MCPError) as refused:
            await client.read_resource(uri)
    assert refused.value.code == -32003  # denied on the agent's side: nothing was sent
    assert read == ["file:///public/readme.txt"]
    (decision,) = [e for e in client_sink.decisions() if e.target == uri]
    assert decision.effect == "deny" and decision.rule == "mcpgov:default-deny"


def test_a_hook_registered_for_the_exact_uri_still_decides_it() -> None:
    """Only globs stop matching: a hook named for that very spelling is an explicit choice."""
    hooks = public_only()
    hooks.register("file:///public/../secret.txt", lambda ctx: Decision.deny("named"), kind="resource", rule="named")
    names = [h.rule for h in hooks._matching("resource", "file:///public/../secret.txt")]
    assert names == ["named"]


AGENT = Principal("https://id.example", "agent", tenant="acme")
POLICY = Policy.from_yaml(
    """
    version: 1
    rules:
      - {id: public, effect: allow, resources: ["file:///public/*"]}
    """
)
_segment = st.text(alphabet="ab.%2eEfF5cC\\/", min_size=1, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_segment, min_size=1, max_size=5))
def test_no_glob_allows_a_uri_with_a_dot_segment_in_hooks_or_policy(segments: list[str]) -> None:
    """Property: whatever the path, if it has a dot segment (in any spelling the checks know),
    neither a glob hook nor a glob policy rule matches it, so the default deny stands."""
    uri = "file:///public/" + "/".join(segments)
    hooks = public_only()
    engine = PolicyEngine(POLICY)
    has_dot_segment = any(part in (".", "..") for part in uri.split("://", 1)[1].split("/"))
    hook_rules = [h.rule for h in hooks._matching("resource", uri)]
    ctx = GovContext(
        side="server", method="resources/read", kind="resource", target=uri, action="execute", principal=AGENT
    )
    decision = engine.decide(ctx)
    if has_dot_segment or "\\" in uri or "%2e" in uri.lower() or "%2f" in uri.lower() or "%5c" in uri.lower():
        assert hook_rules == []
        assert decision.effect.value != "allow", decision
    elif all(ch in "ab/" for ch in "/".join(segments)):  # plainly under the prefix: both allow
        assert hook_rules == ["hook:public_only.<locals>.public"]
        assert decision.effect.value == "allow", decision


DENY_LIST_SPELLINGS = [
    "file:///sec%72et.txt",  # an unreserved letter percent-encoded: a server decodes it
    "file:///%73ecret.txt",
    "file:///\uff53ecret.txt",  # a fullwidth letter: NFKC folds it
    "file:///secret.txt\x00",
    "FILE:///secret.txt",
    "File:///secret.txt",
    "file:///public/../secret.txt",
    "file:///public/..\\secret.txt",
    "file:///public/%2e%2e/secret.txt",
]


def deny_list() -> Hooks:
    """Everything but the secret: a deny-list, the shape that other spellings attack."""
    hooks = Hooks()

    @hooks.resource("*")
    def everything(ctx: GovContext) -> Decision:
        return Decision.allow("everything")

    @hooks.resource("file:///secret*")
    def not_the_secret(ctx: GovContext) -> Decision:
        return Decision.deny("no-secret", "the secret is not for agents")

    return hooks


@pytest.mark.parametrize("uri", DENY_LIST_SPELLINGS)
async def test_a_deny_list_of_hooks_is_not_walked_around_by_another_spelling(uri: str, mode: str) -> None:
    read: list[str] = []
    async with GovernedClient(files(read), deny_list(), mode=mode) as client:
        assert (await client.read_resource("file:///public/readme.txt")).contents
        with pytest.raises(MCPError) as refused:
            await client.read_resource(uri)
    assert refused.value.code == -32003
    assert read == ["file:///public/readme.txt"]


@pytest.mark.parametrize("uri", DENY_LIST_SPELLINGS)
def test_a_deny_list_policy_is_not_walked_around_by_another_spelling(uri: str) -> None:
    engine = PolicyEngine(
        Policy.from_yaml(
            """
            version: 1
            rules:
              - {id: everything, effect: allow, resources: ["*"]}
              - {id: no-secret, effect: deny, resources: ["file:///secret*"]}
            """
        )
    )
    ctx = GovContext(
        side="client", method="resources/read", kind="resource", target=uri, action="execute", principal=AGENT
    )
    assert engine.decide(ctx).effect.value == "deny"
    plain = ctx.replace(target="file:///public/readme.txt")
    assert engine.decide(plain).effect.value == "allow"


async def test_a_resource_registered_under_an_upper_case_scheme_is_still_served(mode: str) -> None:
    """A scheme is case-insensitive, not malformed: a server's own ``Config://`` resources (or a
    gateway upstream whose id is ``Docs``, served as ``Docs+...``) stay readable when allowed."""
    server = MCPServer("settings")

    @server.resource("Config://settings")
    def settings_text() -> str:
        return "answer=42"

    hooks = Hooks()
    hooks.register("Config://*", lambda ctx: Decision.allow("config"), kind="resource", rule="config")
    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        result = await client.read_resource("Config://settings")
    assert isinstance(result.contents[0], TextResourceContents)
    assert result.contents[0].text == "answer=42"
    assert [e.rule for e in sink.decisions()] == ["config"]
    assert uri_problem("Docs+file:///readme") is None


@pytest.mark.parametrize("uri", ["FILE:///public/readme.txt", "File:///public/readme.txt"])
def test_an_upper_case_scheme_is_the_same_uri_for_an_allow_and_for_a_deny(uri: str) -> None:
    hooks = public_only()
    assert [h.rule for h in hooks._matching("resource", uri)] == ["hook:public_only.<locals>.public"]
    ctx = GovContext(
        side="client", method="resources/read", kind="resource", target=uri, action="execute", principal=AGENT
    )
    assert PolicyEngine(POLICY).decide(ctx).effect.value == "allow"


# -- spellings a server reading only the path resolves to the same path ---------------------------

PATH_SPELLINGS = [
    "vault://prod//key",  # an empty segment
    "vault://prod/key/",  # a trailing slash
    "vault://prod/key//",
    "vault://prod/key?",  # an empty query or fragment
    "vault://prod/key#",
    "vault://prod/key?version=2",  # a query the server does not read
    "vault://prod/key#section",
    "vault://PROD//key/",  # with the host in another case
    "file:////secret.txt",  # an extra slash before the path: no glob on file:///secret* met it
    "file://///secret.txt",
    "file:///secret.txt/",
]


def exact_deny_list() -> Hooks:
    hooks = Hooks()

    @hooks.resource("*")
    def everything(ctx: GovContext) -> Decision:
        return Decision.allow("everything")

    @hooks.resource("vault://prod/key")
    def not_the_key(ctx: GovContext) -> Decision:
        return Decision.deny("no-key", "the production key is not for agents")

    @hooks.resource("file:///secret*")
    def not_the_secret(ctx: GovContext) -> Decision:
        return Decision.deny("no-secret", "the secret is not for agents")

    return hooks


@pytest.mark.parametrize("uri", PATH_SPELLINGS)
async def test_a_deny_hook_holds_for_every_spelling_of_the_path(uri: str, mode: str) -> None:
    read: list[str] = []
    async with GovernedClient(files(read), exact_deny_list(), mode=mode) as client:
        assert (await client.read_resource("vault://prod/other")).contents
        with pytest.raises(MCPError) as refused:
            await client.read_resource(uri)
    assert refused.value.code == -32003
    assert read == ["vault://prod/other"]


@pytest.mark.parametrize("uri", PATH_SPELLINGS)
def test_a_deny_rule_holds_for_every_spelling_of_the_path(uri: str) -> None:
    engine = PolicyEngine(
        Policy.from_yaml(
            """
            rules:
              - {id: everything, effect: allow, resources: ["*"]}
              - {id: no-key, effect: deny, resources: ["vault://prod/key/"]}
              - {id: no-secret, effect: deny, resources: ["file:///secret*"]}
            """
        )
    )
    ctx = GovContext(
        side="client", method="resources/read", kind="resource", target=uri, action="execute", principal=AGENT
    )
    assert engine.decide(ctx).effect.value == "deny"
    for other in ("vault://prod/other", "vault://prod/keys", "vault://prod/key2", "file:///public/secret.txt"):
        assert engine.decide(ctx.replace(target=other)).effect.value == "allow"


def test_an_allow_is_never_matched_through_the_path_reading() -> None:
    engine = PolicyEngine(Policy.from_yaml("rules:\n  - {id: key, effect: allow, resources: ['vault://prod/key']}\n"))
    for uri in ("vault://prod//key", "vault://prod/key/", "vault://prod/key?x=1"):
        ctx = GovContext(
            side="client", method="resources/read", kind="resource", target=uri, action="execute", principal=AGENT
        )
        assert engine.decide(ctx).effect.value == "deny"


@pytest.mark.parametrize("by", [["tool"], ["principal", "tool"]])
async def test_a_rate_limit_counts_every_spelling_of_a_uri_as_one_resource(by: list[str], mode: str) -> None:
    read: list[str] = []
    policy = Policy.from_yaml(
        f"""
        rules:
          - id: vault
            effect: allow
            resources: ["vault://*"]
            obligations: {{rate_limit: {{limit: 2, per: 3600, by: {by}}}}}
        """
    )
    async with GovernedClient(files(read), PolicyMiddleware(policy), principal=AGENT, mode=mode) as client:
        for uri in ("vault://prod/key", "vault://prod/key"):
            assert (await client.read_resource(uri)).contents
        for uri in ("vault://prod/key?v=1", "vault://prod//key", "vault://prod/key/", "vault://PROD/key#x"):
            with pytest.raises(MCPError) as refused:
                await client.read_resource(uri)
            assert refused.value.code == -32003
        assert (await client.read_resource("vault://prod/other")).contents  # another resource: its own count
    assert read == ["vault://prod/key", "vault://prod/key", "vault://prod/other"]


@pytest.mark.parametrize(
    "spelling", ["vault://prod//key", "vault://prod/key/", "vault://prod/key?v=1", "vault://PROD/key"]
)
async def test_a_history_condition_on_a_resource_holds_for_every_spelling_the_task_read(
    spelling: str, mode: str
) -> None:
    read: list[str] = []
    policy = Policy.from_yaml(
        """
        rules:
          - {id: vault, effect: allow, resources: ["vault://*"]}
          - {id: send, effect: allow, tools: [send]}
          - {id: no-send-after-key, effect: deny, tools: [send], when: {history: {called: ["resource:vault://prod/key"]}}}
          - {id: no-send-right-after-key, effect: deny, tools: [send],
             when: {history: {last_called: ["resource:vault://prod/key"]}}}
          - {id: send-only-before-key, effect: allow, tools: [send2],
             when: {history: {not_called: ["resource:vault://prod/key"]}}}
        """
    )

    async def read_resource(ctx: ServerRequestContext[Any], params: Any) -> ReadResourceResult:
        read.append(str(params.uri))
        return ReadResourceResult(contents=[TextResourceContents(uri=params.uri, text="contents")])

    async def call_tool(ctx: ServerRequestContext[Any], params: Any) -> CallToolResult:
        read.append(params.name)
        return CallToolResult(content=[])

    server = Server("files", version="1.0.0", on_read_resource=read_resource, on_call_tool=call_tool)
    async with GovernedClient(server, PolicyMiddleware(policy), principal=AGENT, task_id="t-1", mode=mode) as client:
        assert (await client.read_resource(spelling)).contents
        for tool in ("send", "send2"):
            with pytest.raises(MCPError) as refused:
                await client.call_tool(tool, {})
            assert refused.value.code == -32003
    assert read == [spelling]
