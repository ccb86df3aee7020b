"""Shared pieces of the gateway tests: upstream servers that record what they saw, a registry, a chain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
from mcp.server.mcpserver import Context, MCPServer

from mcpgov import Auditor, GovernedClient
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import Manifest, ServerRegistry
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

AUDIENCE = "mcp://gateway"

POLICY: dict[str, Any] = {
    "version": 1,
    "name": "gateway-tests",
    "rules": [
        {"id": "acme-reads", "effect": "allow", "tenants": ["acme"], "tools": ["files_read_file", "files_slow"]},
        {
            "id": "acme-echo-safe",
            "effect": "allow",
            "tenants": ["acme"],
            "tools": ["clock_echo"],
            "when": {"arguments": {"text": {"not_in": ["forbidden"]}}},
        },
        {
            "id": "acme-clock",
            "effect": "allow",
            "tenants": ["acme"],
            "tools": ["clock_now", "clock_ask", "clock_announce"],
        },
        {"id": "acme-prompts", "effect": "allow", "tenants": ["acme"], "prompts": ["files_greet"]},
        {"id": "acme-resources", "effect": "allow", "tenants": ["acme"], "resources": ["files+note://*"]},
    ],
}


@dataclass
class Seen:
    """What an upstream received."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    metas: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


def files_server(seen: Seen) -> MCPServer:
    server = MCPServer("files", version="1.0.0")

    @server.tool()
    async def read_file(path: str, ctx: Context) -> str:
        """Read a file."""
        seen.calls.append(("read_file", {"path": path}))
        seen.metas.append(dict(ctx.request_context.meta or {}) if ctx.request_context.meta else {})
        await ctx.report_progress(1, 2, "half")
        await ctx.info(f"reading {path}")
        return f"contents of {path}"

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep."""
        import anyio

        seen.calls.append(("slow", {"seconds": seconds}))
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            seen.cancelled.append("slow")
            raise
        return "done"

    @server.tool()
    def delete_everything() -> str:
        """Delete everything."""
        seen.calls.append(("delete_everything", {}))
        return "deleted"

    @server.prompt()
    def greet(name: str) -> str:
        """Greet someone."""
        seen.calls.append(("greet", {"name": name}))
        return f"Hello {name}"

    @server.resource("note://readme")
    def readme() -> str:
        """The readme."""
        seen.calls.append(("readme", {}))
        return "read me"

    return server


def clock_server(seen: Seen) -> MCPServer:
    server = MCPServer("clock", version="2.1.0")

    @server.tool()
    def now(timezone: str) -> str:
        """The time now."""
        seen.calls.append(("now", {"timezone": timezone}))
        return f"12:00 {timezone}"

    @server.tool()
    def echo(text: str, count: int = 1) -> str:
        """Echo text."""
        seen.calls.append(("echo", {"text": text, "count": count}))
        return text * max(0, min(count, 3))

    @server.tool()
    async def announce(ctx: Context) -> str:
        """Tell clients the tool list changed."""
        seen.calls.append(("announce", {}))
        await ctx.request_context.session.send_tool_list_changed()
        return "announced"

    @server.tool()
    async def ask(ctx: Context) -> str:
        """Ask the user something."""
        from pydantic import BaseModel

        class Answer(BaseModel):
            answer: str

        result = await ctx.elicit("What is your name?", Answer)
        seen.calls.append(("ask", {"action": result.action}))
        return f"answer: {getattr(getattr(result, 'data', None), 'answer', None)}"

    return server


def entry(server_id: str, name: str, version: str, manifest: Manifest) -> dict[str, Any]:
    return {
        "id": server_id,
        "owner": "platform-team",
        "tenants": ["acme"],
        "workloads": ["*"],
        "command": f"{server_id}-server",
        "server": {"name": name, "version": f"=={version}"},
        "pin": manifest.model_dump(mode="json", by_alias=True),
    }


@dataclass
class World:
    """A gateway over two in-process upstreams, an identity issuer and the audit it writes."""

    gateway: Gateway
    idp: IdentityIssuer
    sink: InMemoryAuditSink
    files: Seen
    clock: Seen
    registry: ServerRegistry

    def agent(self, mode: str, *, tenant: str = "acme", subject: str = "agent", **kwargs: Any) -> GovernedClient:
        token = self.idp.token(subject, tenant=tenant)
        return GovernedClient(self.gateway.server, identity=token, mode=mode, **kwargs)


async def pins(server: MCPServer) -> Manifest:
    from mcpgov.pinning import snapshot

    return await snapshot(server)


async def build_world(
    *,
    files_config: dict[str, Any] | None = None,
    clock_config: dict[str, Any] | None = None,
    extra_front: list[Any] | None = None,
    files_tenants: list[str] | None = None,
    policy_extra: list[dict[str, Any]] | None = None,
) -> tuple[World, dict[str, MCPServer]]:
    files_seen, clock_seen = Seen(), Seen()
    files, clock = files_server(files_seen), clock_server(clock_seen)
    files_entry = entry("files", "files", "1.0.0", await pins(files))
    if files_tenants is not None:
        files_entry["tenants"] = files_tenants
    registry = ServerRegistry([files_entry, entry("clock", "clock", "2.1.0", await pins(clock))])
    policy = {**POLICY, "rules": [*POLICY["rules"], *(policy_extra or [])]}
    idp = IdentityIssuer(audience=AUDIENCE)
    sink = InMemoryAuditSink()
    auditor = Auditor([sink])
    upstreams = [
        UpstreamConfig.model_validate({"id": "files", "namespace": {"prefix": "files_"}, **(files_config or {})}),
        UpstreamConfig.model_validate({"id": "clock", "namespace": {"prefix": "clock_"}, **(clock_config or {})}),
    ]
    gateway = Gateway(
        upstreams,
        registry,
        IdentityMiddleware(idp.verifier()),
        *(extra_front or []),
        PolicyMiddleware(Policy.from_dict(policy)),
        audit=auditor,
        servers={"files": files, "clock": clock},
    )
    world = World(gateway, idp, sink, files_seen, clock_seen, registry)
    return world, {"files": files, "clock": clock}


async def drop_cancelled_timers() -> None:
    """Make asyncio drop the cancelled timers it still holds (each with the context it was set in,
    the SDK's per-request deadlines included) rather than wait for their deadlines: it rebuilds
    its timer queue once most of the timers in it are cancelled."""
    import asyncio

    loop = asyncio.get_running_loop()
    handles = [loop.call_later(3600, lambda: None) for _ in range(1000)]
    for handle in handles:
        handle.cancel()
    await anyio.lowlevel.checkpoint()  # the loop's next turn drops them
    await anyio.lowlevel.checkpoint()
