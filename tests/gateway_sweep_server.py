"""A stdio upstream with one of each thing an agent can reach through the gateway."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import Completion


def make() -> MCPServer:
    server = MCPServer("sweep", version="1.0.0")

    @server.tool()
    def echo(text: str) -> str:
        """Echo text."""
        return text

    @server.tool()
    def other() -> str:
        """Something no rule allows."""
        return "other"

    @server.prompt()
    def greet(name: str) -> str:
        """Greet someone."""
        return f"Hello {name}"

    @server.resource("note://readme")
    def readme() -> str:
        """The readme."""
        return "read me"

    @server.resource("note://secret")
    def secret() -> str:
        """A secret."""
        return "secret"

    @server.resource("page://{name}")
    def page(name: str) -> str:
        """A page."""
        return name

    @server.completion()  # type: ignore[untyped-decorator,no-untyped-call]  # the SDK's decorator is untyped
    async def complete(ref: Any, argument: Any, context: Any) -> Completion:
        return Completion(values=["a"])

    return server


if __name__ == "__main__":
    make().run("stdio")
