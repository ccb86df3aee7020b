"""A base class for middleware written per operation: override ``on_call_tool``, ``on_list_tools``...

Every governance stage is an ``async (ctx, call_next) -> result``. Most user middleware cares about
one or two operations; :class:`BaseMiddleware` routes each request to the hook of its operation, so
a subclass overrides only those, and list hooks receive and return a typed :class:`Listing`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from mcpgov._chain import CallNext, ChainResult, Listing
from mcpgov._context import GovContext
from mcpgov._errors import McpGovError

__all__ = ["BaseMiddleware", "ListNext"]

ListNext = Callable[[GovContext], Awaitable[Listing]]
"""Runs the rest of the chain for a list method and returns its :class:`Listing`."""

_Hook = Callable[["BaseMiddleware", GovContext, CallNext], Awaitable[ChainResult]]
_ListHook = Callable[["BaseMiddleware", GovContext, ListNext], Awaitable[Listing]]

_HOOKS: Mapping[str, _Hook] = MappingProxyType(
    {
        "tools/call": lambda mw, ctx, call_next: mw.on_call_tool(ctx, call_next),
        "resources/read": lambda mw, ctx, call_next: mw.on_read_resource(ctx, call_next),
        "prompts/get": lambda mw, ctx, call_next: mw.on_get_prompt(ctx, call_next),
    }
)
_LIST_HOOKS: Mapping[str, _ListHook] = MappingProxyType(
    {
        "tools/list": lambda mw, ctx, call_next: mw.on_list_tools(ctx, call_next),
        "resources/list": lambda mw, ctx, call_next: mw.on_list_resources(ctx, call_next),
        "resources/templates/list": lambda mw, ctx, call_next: mw.on_list_resource_templates(ctx, call_next),
        "prompts/list": lambda mw, ctx, call_next: mw.on_list_prompts(ctx, call_next),
    }
)


def _listing_next(call_next: CallNext) -> ListNext:
    async def listed(ctx: GovContext) -> Listing:
        result = await call_next(ctx)
        if not isinstance(result, Listing):  # a stage further in broke the chain's contract
            raise McpGovError("a list method's chain returned no listing", reason="listing_invalid")
        return result

    return listed


class BaseMiddleware:
    """Middleware with one overridable hook per operation, on the client and the server alike.

    Subclass it and override the hooks you need; every hook not overridden passes the request on
    unchanged. A hook may refuse (raise an :class:`~mcpgov.McpGovError` such as
    :class:`~mcpgov.Denied`), pass a changed context on (``await call_next(ctx.replace(...))``), or
    look at or change the result on the way back. ``ctx.side`` says which end it runs on.

    * :meth:`on_request` runs for every request and routes to the hooks below; override it to see
      other methods (``completion/complete``, ``resources/subscribe``, ``logging/setLevel``...).
    * :meth:`on_call_tool`, :meth:`on_read_resource`, :meth:`on_get_prompt`: a use of a target
      (``ctx.target`` is its name or URI, ``ctx.arguments`` its read-only arguments).
    * :meth:`on_list_tools`, :meth:`on_list_resources`, :meth:`on_list_resource_templates`,
      :meth:`on_list_prompts`: a listing, received and returned as a :class:`~mcpgov.Listing`
      (``listing.keep(...)`` hides entries, which the audit trail records).

    To declare where the stage belongs in a chain, set the class attribute ``stage`` to a
    :class:`~mcpgov.StageSpec`, as for any middleware.
    """

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        return await self.on_request(ctx, call_next)

    async def on_request(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        """Every request: by default, the hook of its operation, or ``call_next`` when it has none."""
        list_hook = _LIST_HOOKS.get(ctx.method)
        if list_hook is not None:
            return await list_hook(self, ctx, _listing_next(call_next))
        hook = _HOOKS.get(ctx.method)
        if hook is not None:
            return await hook(self, ctx, call_next)
        return await call_next(ctx)

    async def on_call_tool(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        """``tools/call``: the result is the SDK's ``CallToolResult`` (client) or its JSON (server)."""
        return await call_next(ctx)

    async def on_read_resource(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        """``resources/read`` (``ctx.target`` is the URI)."""
        return await call_next(ctx)

    async def on_get_prompt(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        """``prompts/get``."""
        return await call_next(ctx)

    async def on_list_tools(self, ctx: GovContext, call_next: ListNext) -> Listing:
        """``tools/list``."""
        return await call_next(ctx)

    async def on_list_resources(self, ctx: GovContext, call_next: ListNext) -> Listing:
        """``resources/list``."""
        return await call_next(ctx)

    async def on_list_resource_templates(self, ctx: GovContext, call_next: ListNext) -> Listing:
        """``resources/templates/list`` (entries are named by their URI template)."""
        return await call_next(ctx)

    async def on_list_prompts(self, ctx: GovContext, call_next: ListNext) -> Listing:
        """``prompts/list``."""
        return await call_next(ctx)
