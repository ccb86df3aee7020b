"""A stand-in server that declares an inventory (tools, resources, prompts) and runs nothing.

``mcpgov policy test`` governs one of these with the policy under test, so every case goes
through a real session (identity, credential, policy, audit) without running a real tool.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer

from mcpgov._errors import ConfigurationError

__all__ = ["Inventory", "generic_server", "inventory_of"]

_OPEN_SCHEMA: Mapping[str, Any] = {"type": "object"}
_TEMPLATE_VAR = re.compile(r"\{[^{}]+\}")


def _template_regex(template: str) -> re.Pattern[str]:
    """A URI template (simple ``{name}`` variables) as a regex matching the URIs it expands to."""
    parts = _TEMPLATE_VAR.split(template)
    return re.compile("[^/]+".join(re.escape(p) for p in parts) + r"\Z")


@dataclass(frozen=True)
class Inventory:
    """What a server declares: tool names (with their input schemas), resources, templates, prompts."""

    tools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    resources: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        tools: Iterable[str] = (),
        resources: Iterable[str] = (),
        prompts: Iterable[str] = (),
        templates: Iterable[str] = (),
    ) -> Inventory:
        """An inventory of plain names (every tool takes any object of arguments)."""
        return cls(
            dict.fromkeys(tools, _OPEN_SCHEMA),
            tuple(dict.fromkeys(resources)),
            tuple(dict.fromkeys(templates)),
            tuple(dict.fromkeys(prompts)),
        )

    def has_tool(self, name: str) -> bool:
        """Whether ``name`` is a declared tool."""
        return name in self.tools

    def has_prompt(self, name: str) -> bool:
        """Whether ``name`` is a declared prompt."""
        return name in self.prompts

    def has_resource(self, uri: str) -> bool:
        """Whether ``uri`` is a declared resource or expands one of the declared templates."""
        return uri in self.resources or any(_template_regex(t).match(uri) for t in self.templates)


async def inventory_of(server: MCPServer) -> Inventory:
    """The inventory an ``MCPServer`` declares (its tools keep their input schemas).

    Raises:
        ConfigurationError: ``server`` is not an ``MCPServer``.
    """
    if not isinstance(server, MCPServer):
        raise ConfigurationError(f"expected an MCPServer, got {type(server).__name__}")
    tools = {tool.name: dict(tool.input_schema or _OPEN_SCHEMA) for tool in await server.list_tools()}
    resources = tuple(str(r.uri) for r in await server.list_resources())
    templates = tuple(t.uri_template for t in await server.list_resource_templates())
    prompts = tuple(p.name for p in await server.list_prompts())
    return Inventory(tools, resources, templates, prompts)


def generic_server(inventory: Inventory, *, name: str = "mcpgov-policy-test") -> Server[Any]:
    """A lowlevel server declaring ``inventory``: calls, reads and prompts answer a fixed text.

    Tools declare no output schema (so a client never expects structured content), and nothing
    a request asks for is ever executed.
    """

    async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
        return types.ListToolsResult(
            tools=[types.Tool(name=n, input_schema=dict(schema)) for n, schema in inventory.tools.items()]
        )

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        if not inventory.has_tool(params.name):
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"{params.name}: not executed")])

    async def list_resources(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
        return types.ListResourcesResult(resources=[types.Resource(uri=u, name=u) for u in inventory.resources])

    async def list_templates(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
        return types.ListResourceTemplatesResult(
            resource_templates=[types.ResourceTemplate(uri_template=t, name=t) for t in inventory.templates]
        )

    async def read_resource(ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams) -> Any:
        uri = str(params.uri)
        if not inventory.has_resource(uri):
            raise MCPError(types.INVALID_PARAMS, f"Unknown resource: {uri}")
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, text="not read", mime_type="text/plain")]
        )

    async def list_prompts(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
        return types.ListPromptsResult(prompts=[types.Prompt(name=n) for n in inventory.prompts])

    async def get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> Any:
        if not inventory.has_prompt(params.name):
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")
        message = types.PromptMessage(role="user", content=types.TextContent(type="text", text="not rendered"))
        return types.GetPromptResult(messages=[message])

    return Server(
        name,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )
