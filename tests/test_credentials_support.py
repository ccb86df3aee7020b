"""Shared pieces of the credential tests: a frozen clock, test principals, a governed server."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult

from mcpgov import META_CREDENTIAL, CallNext, Decision, GovContext, Hooks, Principal, govern
from mcpgov.credentials import (
    CredentialIssuer,
    CredentialMiddleware,
    CredentialVerifier,
    RevocationList,
    SigningKeySet,
)
from mcpgov.testing import InMemoryAuditSink

__all__ = [
    "AUDIENCE",
    "ISSUER",
    "FrozenClock",
    "Governed",
    "as_principal",
    "build_governed",
    "call",
    "make_issuer",
    "principal",
    "refusals",
]

ISSUER = "https://issuer.example"
AUDIENCE = "https://deploy.example"
META_SUBJECT = "io.example/test-subject"
META_TENANT = "io.example/test-tenant"


class FrozenClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def principal(subject: str = "agent-1", tenant: str | None = "acme", **claims: Any) -> Principal:
    """A verified workload principal as identity binding would produce it."""
    return Principal(
        issuer="https://id.example", subject=subject, tenant=tenant, claims=MappingProxyType(claims), auth_method="jwt"
    )


def as_principal(p: Principal) -> dict[str, str]:
    """``_meta`` entries that make the test identity middleware establish ``p``."""
    return {META_SUBJECT: p.subject, META_TENANT: p.tenant or ""}


async def identity_from_meta(ctx: GovContext, call_next: CallNext) -> Any:
    """Stands in for identity binding in these tests: the principal named in ``_meta``."""
    subject = ctx.meta.get(META_SUBJECT)
    if isinstance(subject, str):
        p = principal(subject, ctx.meta.get(META_TENANT) or None)
        ctx = ctx.replace(principal=p, tenant=p.tenant)
    return await call_next(ctx)


def make_issuer(clock: FrozenClock | None = None, **options: Any) -> CredentialIssuer:
    clock = clock or FrozenClock()
    algorithm = options.pop("algorithm", "Ed25519")
    keys = options.pop("keys", None) or SigningKeySet.generate(algorithm, clock=clock)
    options.setdefault("max_ttl", 300)
    return CredentialIssuer(ISSUER, keys, clock=clock, **options)


@dataclass
class Governed:
    """A governed server whose tools need credentials, and what it saw."""

    server: MCPServer
    issuer: CredentialIssuer
    verifier: CredentialVerifier
    sink: InMemoryAuditSink
    ran: list[str] = field(default_factory=list)
    seen: list[tuple[Any, ...]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)


def build_governed(
    issuer: CredentialIssuer,
    *,
    audience: str = AUDIENCE,
    revocations: RevocationList | None = None,
    with_identity: bool = True,
    bind_arguments: Any = False,
    **verifier_options: Any,
) -> Governed:
    server = MCPServer("deployer")
    sink = InMemoryAuditSink()
    if revocations is None:
        verifier = issuer.verifier(audience, **verifier_options)
    else:
        verifier = CredentialVerifier(
            issuer=issuer.issuer,
            audience=audience,
            keys=issuer.keys,
            revocations=revocations,
            clock=issuer._clock,
            **verifier_options,
        )
    governed = Governed(server, issuer, verifier, sink)

    @server.tool()
    async def deploy(version: str) -> str:
        governed.ran.append(f"deploy {version}")
        return f"deployed {version}"

    @server.tool()
    async def status() -> str:
        governed.ran.append("status")
        return "green"

    @server.tool()
    async def rollback(version: str) -> str:
        governed.ran.append(f"rollback {version}")
        return f"rolled back to {version}"

    hooks = Hooks()

    @hooks.tool("*")
    def allow(ctx: GovContext) -> Decision:
        if ctx.action == "execute":
            jti = ctx.credential.get("jti") if ctx.credential is not None else None
            governed.seen.append((ctx.target, ctx.tenant, ctx.task_id, ctx.purpose, jti))
            governed.tokens.append(ctx.meta[META_CREDENTIAL])
        return Decision.allow("allow-all")

    chain: list[Any] = [identity_from_meta] if with_identity else []
    chain += [CredentialMiddleware(verifier, bind_arguments=bind_arguments), hooks]
    govern(server, *chain, audit=sink)
    return governed


async def call(
    client: Client, tool: str, args: dict[str, Any] | None, token: str | None, who: Principal | None = None
) -> CallToolResult:
    """Call ``tool`` presenting ``token`` (and the test identity of ``who``)."""
    meta: dict[str, Any] = dict(as_principal(who)) if who is not None else {}
    if token is not None:
        meta[META_CREDENTIAL] = token
    result: CallToolResult = await client.call_tool(tool, args, meta=meta)  # type: ignore[arg-type]
    return result


def refusals(sink: Any) -> list[Any]:
    """The refusals a server recorded: deny decisions, and outcomes of calls stopped at the gate
    (a final check refused them after the allow was recorded)."""
    return [
        e
        for e in sink.events
        if (e.type == "decision" and e.effect == "deny")
        or (e.type == "outcome" and (e.attributes or {}).get("executed") is False)
    ]
