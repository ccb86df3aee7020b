"""Inside a task, what a listing shows is exactly what the task may call: a property over
purposes, tenants, tools and conditions, through real sessions in both protocol modes."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import CallNext, Decision, GovContext, GovernedClient, Hooks, govern
from mcpgov.credentials import ClientCredentials, CredentialMiddleware, IssuerTokenSource

from .test_credentials_support import AUDIENCE, as_principal, identity_from_meta, make_issuer, principal

PURPOSES = ["audit", "deploy", "triage", "billing"]
TENANTS = ["acme", "globex"]
TOOLS = ["read_log", "deploy", "rollback", "bill", "search"]

conditions = st.fixed_dictionaries(
    {
        tool: st.tuples(
            st.frozensets(st.sampled_from([*PURPOSES, None]), max_size=3),  # purposes allowed (None: outside a task)
            st.frozensets(st.sampled_from(TENANTS), min_size=1),  # tenants allowed
        )
        for tool in TOOLS
    }
)


def _server(rules: dict[str, tuple[frozenset[str | None], frozenset[str]]]) -> tuple[MCPServer, Any]:
    issuer = make_issuer()
    server = MCPServer("property")
    for name in TOOLS:

        def body(name: str = name) -> str:
            return name

        server.tool(name=name)(body)
    hooks = Hooks()

    @hooks.tool("*")
    def decide(ctx: GovContext) -> Decision:
        purposes, tenants = rules[ctx.target or ""]
        if ctx.purpose in purposes and ctx.tenant in tenants:
            return Decision.allow("fits")
        return Decision.deny("does-not-fit", "purpose or tenant not allowed")

    govern(server, identity_from_meta, CredentialMiddleware(issuer.verifier(AUDIENCE)), hooks)
    return server, issuer


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=conditions,
    tenant=st.sampled_from(TENANTS),
    purpose=st.sampled_from([*PURPOSES, None]),
    in_task=st.booleans(),
    mode=st.sampled_from(["auto", "legacy"]),
)
def test_a_listing_inside_a_task_shows_exactly_what_the_task_may_call(
    rules: dict[str, tuple[frozenset[str | None], frozenset[str]]],
    tenant: str,
    purpose: str | None,
    in_task: bool,
    mode: str,
) -> None:
    server, issuer = _server(rules)
    me = principal("agent-1", tenant)

    async def identify(ctx: GovContext, call_next: CallNext) -> Any:
        return await call_next(ctx.replace(meta={**ctx.meta, **as_principal(me)}))

    async def scenario() -> tuple[set[str], set[str]]:
        creds = ClientCredentials(IssuerTokenSource(issuer), audience=AUDIENCE)
        async with GovernedClient(server, identify, creds, principal=me, mode=mode) as client:

            async def probe() -> tuple[set[str], set[str]]:
                listed = {t.name for t in (await client.list_tools()).tools}
                callable_: set[str] = set()
                for name in TOOLS:
                    try:
                        await client.call_tool(name, {})
                    except MCPError:
                        continue
                    callable_.add(name)
                return listed, callable_

            if not in_task:
                return await probe()
            async with client.task("t-1", purpose=purpose):
                return await probe()

    listed, callable_ = anyio.run(scenario)
    effective = purpose if in_task else None
    expected = {t for t, (purposes, tenants) in rules.items() if effective in purposes and tenant in tenants}
    assert listed == callable_ == expected
