"""Shared fixtures: protocol modes, a governed demo server, raw requests, a local HTTP server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, GovContext, Hooks, ServerGovernance, govern
from mcpgov.testing import InMemoryAuditSink, serve_http

# Properties are about what is decided, never about how fast: no per-example deadline, so a
# busy machine cannot fail one (speed is measured in benchmarks/, paired and interleaved).
settings.register_profile("mcpgov", deadline=None)
settings.load_profile("mcpgov")

__all__ = ["Demo", "build_demo", "raw_request", "serve_http"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every end-to-end test runs in both protocol modes."""
    value: str = request.param
    return value


@dataclass
class Demo:
    """A governed server with a harmless and a dangerous tool, and what ran."""

    server: MCPServer
    hooks: Hooks
    sink: InMemoryAuditSink
    middleware: ServerGovernance
    ran: list[str] = field(default_factory=list)


def build_demo(**govern_kwargs: Any) -> Demo:
    server = MCPServer("demo")
    hooks = Hooks(deadline=0.5)
    ran: list[str] = []

    @server.tool()
    def read_file(path: str) -> str:
        ran.append("read_file")
        return f"contents of {path}"

    @hooks.guard(lambda ctx: Decision.deny("no-deploys", "deploys need the release role", "missing_role"))
    @server.tool()
    def deploy(version: str) -> str:
        ran.append("deploy")
        return f"deployed {version}"

    @server.tool()
    def explode() -> str:
        ran.append("explode")
        raise RuntimeError("tool failure with internal detail")

    @server.resource("docs://readme")
    def readme() -> str:
        ran.append("readme")
        return "README"

    @server.resource("secret://keys")
    def keys() -> str:
        ran.append("keys")
        return "KEYS"

    @server.resource("docs://pages/{page}")
    def page(page: str) -> str:
        ran.append("page")
        return f"page {page}"

    @server.prompt()
    def summarise(text: str) -> str:
        ran.append("summarise")
        return f"Summarise: {text}"

    @server.prompt()
    def jailbreak(text: str) -> str:
        ran.append("jailbreak")
        return text

    @hooks.tool("read_*")
    @hooks.tool("explode")
    def allow_tools(ctx: GovContext) -> Decision:
        return Decision.allow("allow-read")

    @hooks.resource("docs://*")
    def allow_docs(ctx: GovContext) -> Decision:
        return Decision.allow("allow-docs")

    @hooks.prompt("summarise")
    def allow_summarise(ctx: GovContext) -> Decision:
        return Decision.allow("allow-summarise")

    sink = InMemoryAuditSink()
    audit = govern_kwargs.pop("audit", sink)
    mw = govern(server, hooks, audit=audit, **govern_kwargs)
    return Demo(server, hooks, sink, mw, ran)


@pytest.fixture
def demo() -> Demo:
    return build_demo()


async def raw_request(client: Client, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Send a request exactly as given, bypassing the client's own parameter models."""
    dispatcher = client.session._dispatcher  # test-only: inject malformed requests
    result: dict[str, Any] = await dispatcher.send_raw_request(method, params, {})
    return result
