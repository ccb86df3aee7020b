"""Server adapter: installs a governance chain on an SDK server as a ``ServerMiddleware``."""

from __future__ import annotations

import dataclasses
import secrets
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.context import CallNext as SdkCallNext
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from mcpgov._arguments import ArgumentLimits
from mcpgov._audit import AuditCallback, Auditor
from mcpgov._chain import Listing, ListItem, Middleware
from mcpgov._context import META_CREDENTIAL, META_IDENTITY, GovContext, TargetKind
from mcpgov._errors import ConfigurationError, InvalidRequest, McpGovError
from mcpgov._fastmcp import is_fastmcp, sdk_server
from mcpgov._governor import Governor
from mcpgov._protocol import check_known_target, served
from mcpgov._wire import to_mcp_error

if TYPE_CHECKING:
    from fastmcp import FastMCP

__all__ = ["GovernanceMiddleware", "govern"]

SERVER_REQUEST = "mcpgov.server.request"
"""Key of ``GovContext.extensions`` holding the SDK's ``ServerRequestContext`` (server side)."""

_NO_META: Mapping[str, Any] = MappingProxyType({})

PASS_THROUGH = frozenset({"initialize", "server/discover", "ping"})
"""Methods that are never governed: the handshake and discovery (denying discovery makes the
SDK client silently fall back to the legacy handshake) and liveness. Methods the server does not
serve at the negotiated version also pass, to the SDK's "Method not found" (see ``_protocol``)."""

# method -> (kind, params key that names the target)
_TARGETED: Mapping[str, tuple[TargetKind, str]] = MappingProxyType(
    {
        "tools/call": ("tool", "name"),
        "prompts/get": ("prompt", "name"),
        "resources/read": ("resource", "uri"),
        "resources/subscribe": ("resource", "uri"),
        "resources/unsubscribe": ("resource", "uri"),
    }
)
# list method -> (kind, result key holding the entries, entry key naming each)
LISTINGS: Mapping[str, tuple[TargetKind, str, str]] = MappingProxyType(
    {
        "tools/list": ("tool", "tools", "name"),
        "prompts/list": ("prompt", "prompts", "name"),
        "resources/list": ("resource", "resources", "uri"),
        "resources/templates/list": ("resource", "resourceTemplates", "uriTemplate"),
    }
)
_COMPLETION_REFS: Mapping[str, tuple[TargetKind, str]] = MappingProxyType(
    {"ref/prompt": ("prompt", "name"), "ref/resource": ("resource", "uri")}
)


def describe_request(method: str, params: Mapping[str, Any] | None) -> tuple[TargetKind | None, str | None, Any]:
    """Find the target kind, target name and raw arguments of a request.

    Raises:
        InvalidRequest: the parameters do not have the shape the method requires.
    """
    if params is not None and not isinstance(params, Mapping):
        raise InvalidRequest("request parameters must be an object", reason="params_invalid")
    targeted = _TARGETED.get(method)
    if targeted is not None:
        kind, key = targeted
        target = params.get(key) if params is not None else None
        if not isinstance(target, str) or not target:
            raise InvalidRequest(f"{method} needs a non-empty string {key!r}", reason="params_invalid")
        arguments = params.get("arguments") if params is not None and kind != "resource" else None
        if arguments is not None and not isinstance(arguments, Mapping):
            raise InvalidRequest("arguments must be an object", reason="params_invalid")
        return kind, target, arguments
    if method == "completion/complete":
        ref = params.get("ref") if params is not None else None
        if not isinstance(ref, Mapping) or ref.get("type") not in _COMPLETION_REFS:
            raise InvalidRequest("completion/complete needs a prompt or resource ref", reason="params_invalid")
        kind, key = _COMPLETION_REFS[ref["type"]]
        target = ref.get(key)
        if not isinstance(target, str) or not target:
            raise InvalidRequest("completion ref needs a name or uri", reason="params_invalid")
        return kind, target, params.get("argument") if params is not None else None
    listing = LISTINGS.get(method)
    if listing is not None:
        return listing[0], None, None
    return None, None, None


def _to_listing(kind: TargetKind, entries_key: str, name_key: str, result: Any) -> Listing:
    if isinstance(result, BaseModel):
        result = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    if not isinstance(result, Mapping):
        raise McpGovError("a listing result is not an object", reason="listing_invalid")
    entries = result.get(entries_key) or []
    items: list[ListItem] = []
    for entry in entries:
        name = entry.get(name_key) if isinstance(entry, Mapping) else None
        if not isinstance(name, str):
            raise McpGovError("a listing entry has no name", reason="listing_invalid")
        items.append(ListItem(name, entry))
    return Listing(kind, tuple(items), envelope=result)


def _from_listing(entries_key: str, listing: Listing) -> dict[str, Any]:
    result = dict(listing.envelope)
    result[entries_key] = [item.raw for item in listing.items]
    if "cacheScope" in result:
        # A filtered listing is specific to its caller: never let a shared cache serve it to another.
        result["cacheScope"] = "private"
    return result


_TOKEN_KEYS = frozenset({META_IDENTITY, META_CREDENTIAL})


def _without_tokens(sctx: ServerRequestContext[Any, Any]) -> ServerRequestContext[Any, Any]:
    """The request as the handler should see it: without mcpgov's tokens in ``_meta``."""
    meta = sctx.meta
    if not meta or _TOKEN_KEYS.isdisjoint(meta):
        return sctx
    clean: Any = {k: v for k, v in meta.items() if k not in _TOKEN_KEYS}
    params = dict(sctx.params or {})
    params["_meta"] = clean
    return dataclasses.replace(sctx, params=params, meta=clean)


def _outcome_of(result: Any) -> str:
    if isinstance(result, Mapping) and result.get("isError") is True:
        return "failed"
    return "completed"


class GovernanceMiddleware:
    """The SDK ``ServerMiddleware`` that runs an mcpgov chain. Built by :func:`govern`.

    Attributes:
        governor: the chain runner (its ``auditor`` counts delivered events and sink failures).
    """

    def __init__(self, governor: Governor, server: Server[Any], mcp_server: MCPServer | None) -> None:
        self.governor = governor
        self._server = server
        self._mcp_server = mcp_server
        self._session_ids: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def _session_id(self, sctx: ServerRequestContext[Any, Any]) -> str | None:
        if sctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None  # 2026-07-28 has no sessions: every request stands alone
        connection = getattr(sctx.session, "_connection", None)
        if connection is None:
            return None
        if connection.session_id:
            return str(connection.session_id)
        sid = self._session_ids.get(connection)
        if sid is None:
            sid = secrets.token_hex(8)
            self._session_ids[connection] = sid
        return sid

    def _known_tool(self, ctx: GovContext) -> None:
        check_known_target(self._mcp_server, ctx)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: SdkCallNext) -> HandlerResult:
        sctx = ctx
        method = sctx.method
        if sctx.request_id is None or method in PASS_THROUGH or not served(self._server, method, sctx.protocol_version):
            return await call_next(sctx)
        governor = self.governor
        base: dict[str, Any] = {
            "session_id": self._session_id(sctx),
            "request_id": sctx.request_id,
            "protocol_version": sctx.protocol_version,
            "meta": MappingProxyType(dict(sctx.meta)) if sctx.meta else _NO_META,
            "extensions": MappingProxyType({SERVER_REQUEST: sctx}),
        }
        try:
            kind, target, raw_arguments = describe_request(method, sctx.params)
        except InvalidRequest as exc:
            await governor.refuse(governor.context(method, **base), exc)
            raise to_mcp_error(exc) from None
        listing = LISTINGS.get(method)
        try:
            gctx = await governor.begin(
                method,
                raw_arguments,
                kind=kind,
                target=target,
                action="execute" if target is not None else None,
                **base,
            )
            if listing is not None:
                kind_l, entries_key, name_key = listing

                async def list_terminal(_: GovContext) -> Listing:
                    return _to_listing(kind_l, entries_key, name_key, await call_next(_without_tokens(sctx)))

                result = await governor.run(gctx, list_terminal)
                return _from_listing(entries_key, result)

            async def terminal(_: GovContext) -> HandlerResult:
                # The SDK gets the request exactly as received and decided on, less the identity
                # token and credential in _meta: tool code never sees them.
                return await call_next(_without_tokens(sctx))

            outcome: HandlerResult = await governor.run(
                gctx, terminal, outcome_of=_outcome_of, precheck=self._known_tool
            )
        except Exception as exc:  # noqa: BLE001 - the one place server-side errors become wire errors
            raise to_mcp_error(exc) from None
        return outcome


def govern(
    server: MCPServer | Server[Any] | FastMCP[Any],
    *middleware: Middleware,
    audit: Auditor | Iterable[AuditCallback] | AuditCallback | None = None,
    limits: ArgumentLimits | None = None,
) -> GovernanceMiddleware:
    """Govern ``server``: every request passes through ``middleware`` (outermost first).

    Installs one SDK ``ServerMiddleware`` on an ``MCPServer``, a lowlevel ``Server`` or a
    FastMCP 4 server (``mcpgov[fastmcp]``; see ``docs/fastmcp.md``). It sees
    every request: tool, resource and prompt listings are filtered by the same decisions
    that gate ``tools/call``, ``resources/read`` and ``prompts/get``; other methods the
    server serves must be allowed explicitly, except ``logging/setLevel`` and
    ``subscriptions/listen`` (allowed unless a rule decides); methods the server does not serve
    at the negotiated version get the SDK's "Method not found". ``initialize``, ``server/discover``, ``ping``
    and notifications pass untouched. Refusals reach the client as clean ``MCPError``s.
    When the server's lifespan ends (an HTTP app shutting down, an in-process client
    disconnecting), queued audit sinks are flushed (up to ``Auditor.flush_timeout``).

    Args:
        server: the SDK server, or a ``fastmcp.FastMCP`` server (FastMCP 4.x).
        middleware: the governance chain; at least one authoriser (e.g. :class:`Hooks`).
        audit: an :class:`Auditor`, or audit callbacks (sync or async).
        limits: bounds on request arguments (depth, size, count).

    Returns:
        The installed middleware, whose ``governor.auditor`` exposes delivery counters.

    Raises:
        ConfigurationError: no authoriser in the chain, the server is already governed, or it
            is a FastMCP server of an unsupported version.
    """
    if is_fastmcp(server):
        server = sdk_server(server)
    if isinstance(server, MCPServer):
        lowlevel: Server[Any] = server._lowlevel_server
        mcp_server: MCPServer | None = server
    elif isinstance(server, Server):
        lowlevel, mcp_server = server, None
    else:
        raise ConfigurationError(
            f"govern() takes an MCPServer, a lowlevel Server or a FastMCP 4 server, got {type(server).__name__}"
        )
    if any(isinstance(mw, GovernanceMiddleware) for mw in lowlevel.middleware):
        raise ConfigurationError("this server is already governed; compose one chain instead of calling govern() twice")
    governor = Governor("server", middleware, audit=audit, limits=limits, require_authorizer=True)
    adapter = GovernanceMiddleware(governor, lowlevel, mcp_server)
    lowlevel.middleware.append(adapter)
    _flush_audit_on_shutdown(lowlevel, governor.auditor)
    return adapter


def _flush_audit_on_shutdown(lowlevel: Server[Any], auditor: Auditor) -> None:
    """Wrap the server's lifespan so queued audit sinks are flushed when it ends."""
    original: Callable[[Server[Any]], AbstractAsyncContextManager[Any]] = lowlevel.lifespan

    @asynccontextmanager
    async def lifespan(app: Server[Any]) -> AsyncIterator[Any]:
        async with original(app) as state:
            try:
                yield state
            finally:
                with anyio.CancelScope(shield=True):
                    await auditor.aflush()

    lowlevel.lifespan = lifespan
