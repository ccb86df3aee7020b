"""A deny on a resource's host holds for every spelling of that host's authority.

A host is case-insensitive (RFC 3986) and a server commonly reads only the host of an authority
(``urlsplit(uri).hostname``): ``vault+kv://PROD/key``, ``vault+kv://user@prod/key`` and
``vault+kv://prod:443/key`` all reach the store ``prod``. A deny of ``vault+kv://prod/*`` (a
policy rule's or a hook's, on the server's side or the client's) stops each of them; an allow
is never reached through that reading, and ordinary URIs are not refused.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp_types import ReadResourceResult, TextResourceContents

from mcpgov import Auditor, Decision, GovContext, GovernedClient, Hooks, Principal, govern
from mcpgov._uris import authority_folded, uri_problem
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry
from mcpgov.policy import Policy, PolicyEngine, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

from .gateway_support import AUDIENCE, entry, pins

pytestmark = pytest.mark.anyio

MODES = ("auto", "legacy")
SIDES = ("server", "client")
DECIDERS = ("policy", "hooks")


def stores(read: list[str]) -> Server[Any]:
    """A key-value server that reads the store from the URI's host the usual way."""

    async def read_resource(ctx: ServerRequestContext[Any], params: Any) -> ReadResourceResult:
        parts = urlsplit(str(params.uri))
        store = (parts.hostname or "").rstrip(".")
        read.append(f"{store}{parts.path}")
        return ReadResourceResult(contents=[TextResourceContents(uri=params.uri, text=f"value in {store}")])

    return Server("stores", version="1.0.0", on_read_resource=read_resource)


def deny_list_policy(allow: str, deny: str) -> PolicyMiddleware:
    return PolicyMiddleware(
        Policy.from_dict(
            {
                "version": 1,
                "rules": [
                    {"id": "everything", "effect": "allow", "anonymous": True, "resources": [allow]},
                    {"id": "not-this-host", "effect": "deny", "anonymous": True, "resources": [deny]},
                ],
            }
        )
    )


def deny_list_hooks(allow: str, deny: str) -> Hooks:
    hooks = Hooks()
    hooks.register(allow, lambda ctx: Decision.allow("everything"), kind="resource", rule="everything")
    hooks.register(deny, lambda ctx: Decision.deny("not-this-host", "not for agents"), kind="resource", rule="deny")
    return hooks


async def reads(where: tuple[str, str, str], allow: str, deny: str, uris: list[str]) -> tuple[list[str], list[str]]:
    """Read each URI through a real session (``where``: side, decider, protocol mode) under a
    deny-list; (what the server read, the URIs that were refused)."""
    side, decider, mode = where
    read: list[str] = []
    refused: list[str] = []
    server = stores(read)
    authoriser = deny_list_policy(allow, deny) if decider == "policy" else deny_list_hooks(allow, deny)
    if side == "server":
        govern(server, authoriser)
        session: Any = Client(server, mode=mode)
    else:
        session = GovernedClient(server, authoriser, mode=mode)
    async with session as client:
        for uri in uris:
            try:
                await client.read_resource(uri)
            except MCPError:
                refused.append(uri)
    return read, refused


def _recase(text: str, flips: list[bool]) -> str:
    return "".join(ch.swapcase() if flip else ch for ch, flip in zip(text, flips + [False] * len(text), strict=False))


_HOST = st.from_regex(r"[a-z][a-z0-9-]{0,8}(\.[a-z][a-z0-9]{0,5})?", fullmatch=True)
_PATH = st.from_regex(r"(/[A-Za-z0-9_-]{1,8}){1,3}", fullmatch=True)
_USER = st.none() | st.from_regex(r"[A-Za-z0-9_~-]{0,6}(:[A-Za-z0-9]{0,6})?", fullmatch=True)
_PORT = st.none() | st.just("") | st.integers(min_value=0, max_value=65535).map(str)


@st.composite
def spelling(draw: st.DrawFn, host: str, path: str) -> str:
    """Another spelling of ``vault+kv://{host}{path}``'s authority: case, user-info, port, final dot."""
    name = _recase(host, draw(st.lists(st.booleans(), max_size=len(host))))
    user = draw(_USER)
    port = draw(_PORT)
    dot = "." if draw(st.booleans()) else ""
    authority = ("" if user is None else user + "@") + name + dot + ("" if port is None else ":" + port)
    return f"{_recase('vault+kv', draw(st.lists(st.booleans(), max_size=8)))}://{authority}{path}"


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), host=_HOST, path=_PATH)
def test_a_deny_on_a_host_is_never_bypassed_by_another_spelling_of_its_authority(
    data: st.DataObject, host: str, path: str
) -> None:
    """Property: whatever the host, the case of the deny's and of the request's host, user-info,
    port or a final dot, no read of the denied host reaches the server, through the policy engine
    or hooks, governed on the server's side or the client's, in both protocol modes; a URI on
    another host still does."""
    deny_host = _recase(host, data.draw(st.lists(st.booleans(), max_size=len(host)), label="deny case"))
    uris = data.draw(st.lists(spelling(host, path), min_size=1, max_size=4), label="spellings")
    assert all(uri_problem(uri) is None for uri in uris)  # nothing else about them is refused
    other = f"vault+kv://zz{host}{path}"
    for mode in MODES:
        for side in SIDES:
            for decider in DECIDERS:
                read, refused = anyio.run(
                    reads, (side, decider, mode), "vault+kv://*", f"vault+kv://{deny_host}/*", [other, *uris]
                )
                assert read == [f"zz{host}{path}"], (mode, side, decider, read)
                assert refused == uris


PROBE = [
    "vault+kv://PROD/db-password",
    "vault+kv://Prod/db-password",
    "vault+kv://user@prod/db-password",
    "vault+kv://prod:443/db-password",
    "vault+kv://prod:/db-password",
    "vault+kv://prod./db-password",
    "VAULT+KV://u:p@PROD.:8200/db-password",
    "vault+kv://a@b@prod/db-password",
]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("decider", DECIDERS)
async def test_the_known_spellings_of_a_denied_host_are_refused(side: str, decider: str, mode: str) -> None:
    canonical = "vault+kv://prod/db-password"
    uris = [canonical, *PROBE, "vault+kv://staging/db-password"]
    read, refused = await reads((side, decider, mode), "vault+kv://*", "vault+kv://prod/*", uris)
    assert read == ["staging/db-password"]
    assert refused == [canonical, *PROBE]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("decider", DECIDERS)
async def test_a_deny_written_with_another_spelling_of_the_host_still_stops_the_plain_one(
    side: str, decider: str, mode: str
) -> None:
    uris = ["vault+kv://prod/key", "vault+kv://staging/key"]
    for deny in ("vault+kv://PROD/*", "vault+kv://ops@prod/*", "vault+kv://prod:8200/*", "vault+kv://PROD/key"):
        read, refused = await reads((side, decider, mode), "vault+kv://*", deny, uris)
        assert (read, refused) == (["staging/key"], ["vault+kv://prod/key"]), deny


def vault(seen: list[str]) -> MCPServer:
    server = MCPServer("vault", version="1.0.0")

    @server.resource("kv://{host}/{key}")
    def kv(host: str, key: str) -> str:
        """A key of a store, named by the URI's host as a server usually reads it."""
        store = urlsplit(f"kv://{host}/").hostname
        seen.append(f"{store}/{key}")
        return f"value of {key} in {store}"

    return server


async def test_a_gateway_does_not_forward_another_spelling_of_a_denied_host(mode: str) -> None:
    seen: list[str] = []
    upstream = vault(seen)
    registry = ServerRegistry([{**entry("vault", "vault", "1.0.0", await pins(upstream)), "tenants": ["acme"]}])
    idp = IdentityIssuer(audience=AUDIENCE)
    rules = [
        {"id": "kv", "effect": "allow", "tenants": ["acme"], "resources": ["vault+kv://*"]},
        {"id": "no-prod", "effect": "deny", "tenants": ["acme"], "resources": ["vault+kv://prod/*"]},
    ]
    gateway = Gateway(
        [UpstreamConfig.model_validate({"id": "vault", "namespace": {"prefix": "vault_"}})],
        registry,
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict({"version": 1, "rules": rules})),
        audit=Auditor([InMemoryAuditSink()]),
        servers={"vault": upstream},
        environ={},
    )
    refused: list[str] = []
    async with gateway, GovernedClient(gateway.server, identity=idp.token("agent", tenant="acme"), mode=mode) as agent:
        assert (await agent.read_resource("vault+kv://staging/db-password")).contents
        for uri in ["vault+kv://prod/db-password", *PROBE]:
            try:
                await agent.read_resource(uri)
            except MCPError:
                refused.append(uri)
    assert seen == ["staging/db-password"]
    assert refused == ["vault+kv://prod/db-password", *PROBE]


AGENT = Principal("https://id.example", "agent", tenant="acme")


def _decide(policy: str, uri: str) -> str:
    ctx = GovContext(
        side="client", method="resources/read", kind="resource", target=uri, action="execute", principal=AGENT
    )
    return PolicyEngine(Policy.from_yaml(policy)).decide(ctx).effect.value


@pytest.mark.parametrize(
    "uri", ["vault+kv://PROD/db", "vault+kv://x@prod/db", "vault+kv://prod:1/db", "FILE:///secret"]
)
def test_an_exact_deny_or_label_stops_another_spelling_of_the_same_uri(uri: str) -> None:
    policy = """
    version: 1
    labels:
      secret: {resources: ["vault+kv://prod/db", "file:///secret"]}
    rules:
      - {id: everything, effect: allow, resources: ["*"]}
      - {id: exact, effect: deny, resources: ["vault+kv://prod/db", "file:///secret"]}
    """
    assert _decide(policy, uri) == "deny"
    assert _decide(policy, "vault+kv://staging/db") == "allow"
    engine = PolicyEngine(Policy.from_yaml(policy))
    assert engine.labels_for("resource", uri) == frozenset({"secret"})


@pytest.mark.parametrize("uri", ["vault+kv://PUBLIC/x", "vault+kv://u@public/x", "vault+kv://public:1/x"])
def test_an_allow_is_never_reached_through_the_host_reading(uri: str) -> None:
    """An allow names one spelling: a server reading the authority as a whole would read another
    store, so only the URI as sent (or with its scheme folded) is matched against an allow."""
    assert _decide("rules: [{id: public, effect: allow, resources: ['vault+kv://public/*']}]", uri) == "deny"
    hooks = Hooks()
    hooks.register("vault+kv://public/*", lambda ctx: Decision.allow("public"), kind="resource", rule="public")
    assert hooks._matching("resource", uri) == ()


ORDINARY = [
    "file:///etc/hosts",
    "file:///",
    "https://example.com:8443/x",
    "https://example.com/x?y=1#z",
    "https://[::1]:8080/x",
    "greeting://Alice",
    "email://bob@example.com/inbox",
    "db://localhost:5432/table",
    "Config://settings",
    "urn:isbn:0451450523",
]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("decider", DECIDERS)
async def test_ordinary_uris_are_still_served(side: str, decider: str, mode: str) -> None:
    read, refused = await reads((side, decider, mode), "*", "vault+kv://prod/*", ORDINARY)
    assert refused == []
    assert len(read) == len(ORDINARY)


async def test_an_allow_on_a_case_sensitive_authority_still_serves_it(mode: str) -> None:
    """MCP templates put names where the host goes (``greeting://{name}``): an allow written for
    ``greeting://Alice/*`` serves that spelling."""
    read: list[str] = []
    server = stores(read)
    hooks = Hooks()
    hooks.register("greeting://Alice/*", lambda ctx: Decision.allow("alice"), kind="resource", rule="alice")
    govern(server, hooks)
    async with Client(server, mode=mode) as client:
        assert (await client.read_resource("greeting://Alice/hello")).contents
        with pytest.raises(MCPError):
            await client.read_resource("greeting://alice/hello")
    assert read == ["alice/hello"]


@pytest.mark.parametrize(
    ("uri", "folded"),
    [
        ("vault+kv://User:pw@PROD.:443/key?q#f", "vault+kv://prod/key?q#f"),
        ("vault+kv://a@b@Prod/key", "vault+kv://prod/key"),
        ("HTTPS://[FE80::1]:8443/x", "https://[fe80::1]/x"),
        ("file:///Secret", "file:///Secret"),
        ("FILE:///Secret", "file:///Secret"),
        ("urn:Isbn:1", "urn:Isbn:1"),
        ("vault+kv://*", "vault+kv://*"),
    ],
)
def test_authority_folded_reads_the_host_as_urllib_does(uri: str, folded: str) -> None:
    assert authority_folded(uri) == folded
    parts = urlsplit(uri)
    if parts.netloc and "*" not in uri:
        assert urlsplit(folded).hostname == (parts.hostname or "").rstrip(".")
