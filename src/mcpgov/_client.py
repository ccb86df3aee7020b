"""Client adapter: ``GovernedClient``, a drop-in ``mcp.Client`` that runs a governance chain."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp import Client, MCPError
from mcp.client import Transport
from mcp.client.caching import CacheMode
from mcp.client.stdio import StdioServerParameters
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import (
    CallToolResult,
    GetPromptResult,
    InputResponses,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    ReadResourceResult,
    RequestParamsMeta,
)
from pydantic import BaseModel

from mcpgov._arguments import ArgumentLimits
from mcpgov._audit import AuditCallback, Auditor
from mcpgov._chain import Listing, ListItem, Middleware
from mcpgov._context import GovContext, TargetKind
from mcpgov._governor import Governor
from mcpgov._principal import Principal
from mcpgov._wire import to_mcp_error

__all__ = ["GovernedClient"]


def _listing(kind: TargetKind, result: BaseModel, entries: str, name_attr: str) -> Listing:
    items = tuple(ListItem(str(getattr(entry, name_attr)), entry) for entry in getattr(result, entries))
    return Listing(kind, items, envelope=result)


def _unlisting(listing: Listing, entries: str) -> Any:
    envelope: BaseModel = listing.envelope
    if not listing.hidden:
        return envelope
    return envelope.model_copy(update={entries: [item.raw for item in listing.items]})


class GovernedClient(Client):
    """An ``mcp.Client`` whose tool, resource and prompt operations run a governance chain.

    Takes the same server argument (URL, ``StdioServerParameters``, ``Transport``, in-process
    ``Server``/``MCPServer``) and keyword arguments as :class:`mcp.Client`, plus the chain.
    ``list_tools``, ``call_tool``, ``list_resources``, ``list_resource_templates``,
    ``read_resource``, ``list_prompts`` and ``get_prompt`` are governed: a client-side refusal
    raises :class:`mcp.MCPError` (the same error a server refusal produces, with the local
    :class:`~mcpgov.McpGovError` as its ``__cause__``) before anything is sent.

    Example::

        async with GovernedClient(server, hooks, audit=print) as client:
            await client.call_tool("read_file", {"path": "README.md"})

    Args:
        server: what to connect to, exactly as for ``mcp.Client``.
        middleware: the client-side chain, outermost first.
        audit: an :class:`~mcpgov.Auditor`, or audit callbacks.
        limits: bounds on request arguments.
        principal: who this client acts as (fills ``ctx.principal`` and ``ctx.tenant``).
        purpose: the declared purpose of this client's work.
        task_id: the task this client's requests belong to.
        **kwargs: every keyword argument ``mcp.Client`` accepts.
    """

    def __init__(
        self,
        server: Server[Any] | MCPServer | Transport | StdioServerParameters | str,
        *middleware: Middleware,
        audit: Auditor | Iterable[AuditCallback] | AuditCallback | None = None,
        limits: ArgumentLimits | None = None,
        principal: Principal | None = None,
        purpose: str | None = None,
        task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(server, **kwargs)
        self.governor = Governor("client", middleware, audit=audit, limits=limits)
        self.principal = principal
        self.purpose = purpose
        self.task_id = task_id

    async def _governed(
        self,
        method: str,
        kind: TargetKind,
        target: str | None,
        terminal: Any,
        *,
        raw_arguments: Any = None,
        outcome_of: Any = None,
    ) -> Any:
        principal = self.principal
        try:
            ctx = await self.governor.begin(
                method,
                raw_arguments,
                kind=kind,
                target=target,
                action="execute" if target is not None else None,
                principal=principal,
                tenant=principal.tenant if principal is not None else None,
                purpose=self.purpose,
                task_id=self.task_id,
            )
            return await self.governor.run(ctx, terminal, outcome_of=outcome_of)
        except MCPError:
            raise
        except Exception as exc:
            raise to_mcp_error(exc) from exc

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        read_timeout_seconds: float | None = None,
        progress_callback: ProgressFnT | None = None,
        *,
        input_responses: InputResponses | None = None,
        request_state: str | None = None,
        meta: RequestParamsMeta | None = None,
    ) -> CallToolResult:
        """Call a tool, after the client-side chain allows it (see :meth:`mcp.Client.call_tool`)."""

        async def terminal(_: GovContext) -> CallToolResult:
            return await super(GovernedClient, self).call_tool(
                name,
                arguments,
                read_timeout_seconds,
                progress_callback,
                input_responses=input_responses,
                request_state=request_state,
                meta=meta,
            )

        result: CallToolResult = await self._governed(
            "tools/call",
            "tool",
            name,
            terminal,
            raw_arguments=arguments,
            outcome_of=lambda r: "failed" if getattr(r, "is_error", False) else "completed",
        )
        return result

    async def get_prompt(
        self,
        name: str,
        arguments: dict[str, str] | None = None,
        *,
        input_responses: InputResponses | None = None,
        request_state: str | None = None,
        meta: RequestParamsMeta | None = None,
    ) -> GetPromptResult:
        """Get a prompt, after the client-side chain allows it."""

        async def terminal(_: GovContext) -> GetPromptResult:
            return await super(GovernedClient, self).get_prompt(
                name, arguments, input_responses=input_responses, request_state=request_state, meta=meta
            )

        result: GetPromptResult = await self._governed("prompts/get", "prompt", name, terminal, raw_arguments=arguments)
        return result

    async def read_resource(
        self,
        uri: str,
        *,
        input_responses: InputResponses | None = None,
        request_state: str | None = None,
        meta: RequestParamsMeta | None = None,
        cache_mode: CacheMode = "use",
    ) -> ReadResourceResult:
        """Read a resource, after the client-side chain allows it."""

        async def terminal(_: GovContext) -> ReadResourceResult:
            return await super(GovernedClient, self).read_resource(
                uri, input_responses=input_responses, request_state=request_state, meta=meta, cache_mode=cache_mode
            )

        result: ReadResourceResult = await self._governed("resources/read", "resource", str(uri), terminal)
        return result

    async def list_tools(
        self, *, cursor: str | None = None, meta: RequestParamsMeta | None = None, cache_mode: CacheMode = "use"
    ) -> ListToolsResult:
        """List tools, showing only those the client-side chain lets this client discover."""

        async def terminal(_: GovContext) -> Listing:
            page = await super(GovernedClient, self).list_tools(cursor=cursor, meta=meta, cache_mode=cache_mode)
            return _listing("tool", page, "tools", "name")

        listing: Listing = await self._governed("tools/list", "tool", None, terminal)
        result: ListToolsResult = _unlisting(listing, "tools")
        return result

    async def list_prompts(
        self, *, cursor: str | None = None, meta: RequestParamsMeta | None = None, cache_mode: CacheMode = "use"
    ) -> ListPromptsResult:
        """List prompts, filtered by the client-side chain."""

        async def terminal(_: GovContext) -> Listing:
            page = await super(GovernedClient, self).list_prompts(cursor=cursor, meta=meta, cache_mode=cache_mode)
            return _listing("prompt", page, "prompts", "name")

        listing: Listing = await self._governed("prompts/list", "prompt", None, terminal)
        result: ListPromptsResult = _unlisting(listing, "prompts")
        return result

    async def list_resources(
        self, *, cursor: str | None = None, meta: RequestParamsMeta | None = None, cache_mode: CacheMode = "use"
    ) -> ListResourcesResult:
        """List resources, filtered by the client-side chain."""

        async def terminal(_: GovContext) -> Listing:
            page = await super(GovernedClient, self).list_resources(cursor=cursor, meta=meta, cache_mode=cache_mode)
            return _listing("resource", page, "resources", "uri")

        listing: Listing = await self._governed("resources/list", "resource", None, terminal)
        result: ListResourcesResult = _unlisting(listing, "resources")
        return result

    async def list_resource_templates(
        self, *, cursor: str | None = None, meta: RequestParamsMeta | None = None, cache_mode: CacheMode = "use"
    ) -> ListResourceTemplatesResult:
        """List resource templates, filtered by the client-side chain."""

        async def terminal(_: GovContext) -> Listing:
            page = await super(GovernedClient, self).list_resource_templates(
                cursor=cursor, meta=meta, cache_mode=cache_mode
            )
            return _listing("resource", page, "resource_templates", "uri_template")

        listing: Listing = await self._governed("resources/templates/list", "resource", None, terminal)
        result: ListResourceTemplatesResult = _unlisting(listing, "resource_templates")
        return result
