"""Client adapter: ``GovernedClient``, a drop-in ``mcp.Client`` that runs a governance chain."""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Concatenate, TypeVar, cast

import anyio
import httpx2
from mcp import Client, MCPDeprecationWarning, MCPError
from mcp.client import Transport
from mcp.client.caching import CacheMode
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import (
    CallToolResult,
    CompleteResult,
    EmptyResult,
    GetPromptResult,
    InputResponses,
    ListToolsResult,
    PromptReference,
    ReadResourceResult,
    RequestParamsMeta,
    ResourceTemplateReference,
    Tool,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel
from typing_extensions import ParamSpec, deprecated

from mcpgov._arguments import ArgumentLimits
from mcpgov._audit import AuditCallback, Auditor
from mcpgov._chain import Listing, ListItem, Middleware
from mcpgov._context import (
    CLIENT_SESSION,
    HTTP_AUTHORIZATION,
    LISTING_CURSOR,
    SERVER_INFO,
    SERVER_TARGET,
    GovContext,
    TargetKind,
)
from mcpgov._errors import ConfigurationError, PinningError
from mcpgov._governor import Governor
from mcpgov._keepalive import pooled_transport
from mcpgov._lru import LRU
from mcpgov._methods import LISTEN_SUBSCRIBE_METHOD, LISTINGS
from mcpgov._principal import Principal
from mcpgov._protocols import LISTING_PAGE_CAP, ListChangeListener, SendGate, listing_gate
from mcpgov._sdk import compat
from mcpgov._types import thaw
from mcpgov._wire import to_mcp_error

if TYPE_CHECKING:
    import os

    from mcp.client.session import IncomingMessage, MessageHandlerFnT
    from mcp.client.subscriptions import Subscription

    from mcpgov.credentials import TaskScope
    from mcpgov.identity import IdentitySource

__all__ = ["SERVER_INFO", "GovernedClient", "GovernedHttpAuth"]


_NO_EXTENSIONS: Mapping[str, Any] = MappingProxyType({})

_DESCRIBED: LRU[tuple[str, str], Mapping[str, str]] = LRU(64)
"""Servers' self-descriptions (name, version), one read-only copy shared by the sessions to each."""


def _described(name: str, version: str) -> Mapping[str, str]:
    key = (name, version)
    described = _DESCRIBED.get(key)
    if described is None:
        described = _DESCRIBED[key] = MappingProxyType({"name": name, "version": version})
    return described


_LIST_CHANGED: dict[str, str] = {
    "notifications/tools/list_changed": "tool",
    "notifications/prompts/list_changed": "prompt",
    "notifications/resources/list_changed": "resource",
}

_T = TypeVar("_T")

logger = logging.getLogger("mcpgov.client")

_OUTGOING_AUTHORIZATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mcpgov_outgoing_authorization", default=None
)

_LISTEN_META: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "mcpgov_listen_meta", default=None
)


class _ListenStamp:
    """The SDK's request stamp, adding what the chain attached to a governed ``subscriptions/listen``.

    The SDK's listen driver takes no ``_meta`` of its own: what the chain attached (identity,
    credential) is added to the listen request's ``_meta`` while :meth:`GovernedClient.listen`
    sends it, and to no other request. A slotted callable, not a closure: one is held per open
    session.
    """

    __slots__ = ("_inner",)

    def __init__(self, stamp: Callable[[dict[str, Any], Any], None]) -> None:
        self._inner = stamp

    def __call__(self, data: dict[str, Any], opts: Any) -> None:
        self._inner(data, opts)
        extra = _LISTEN_META.get()
        if not extra or data.get("method") != "subscriptions/listen":
            return
        params = data.get("params")
        if not isinstance(params, dict):
            params = data["params"] = {}
        meta = params.get("_meta")
        params["_meta"] = {**(meta if isinstance(meta, dict) else {}), **extra}


class GovernedHttpAuth(httpx2.Auth):
    """Sets the ``Authorization`` header of the HTTP requests a :class:`GovernedClient` sends.

    A governed request's value comes from its chain (``ctx.extensions[HTTP_AUTHORIZATION]``,
    set by identity or credential middleware). Requests outside a governed call (the SSE
    stream, session teardown) use ``base`` when set: a callable returning the header value.
    """

    def __init__(self) -> None:
        self.base: Callable[[], str | None] | None = None

    def __repr__(self) -> str:
        return "GovernedHttpAuth()"

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        value = _OUTGOING_AUTHORIZATION.get()
        if value is None and self.base is not None:
            value = self.base()
        if value:
            request.headers["Authorization"] = value
        yield request


def _listing(kind: TargetKind, result: BaseModel, entries: str, name_attr: str) -> Listing:
    items = tuple(ListItem(str(getattr(entry, name_attr)), entry) for entry in getattr(result, entries))
    return Listing(kind, items, envelope=result)


def _unlisting(listing: Listing, entries: str) -> Any:
    envelope: BaseModel = listing.envelope
    if not listing.hidden:
        return envelope
    return envelope.model_copy(update={entries: [item.raw for item in listing.items]})


_SNAKE = {"resourceTemplates": "resource_templates", "uriTemplate": "uri_template"}
"""Wire keys of listings (``LISTINGS``) whose SDK result attribute is spelt otherwise."""


class _GovernedListTools:
    """What the SDK session calls as its ``list_tools`` (see
    :meth:`GovernedClient._govern_internal_listings`); a small object per session, not a closure."""

    __slots__ = ("_client", "_original")

    def __init__(self, client: GovernedClient, original: Callable[..., Awaitable[ListToolsResult]]) -> None:
        self._client = client
        self._original = original

    async def __call__(self, *args: Any, **kwargs: Any) -> ListToolsResult:
        if args or kwargs:  # Client.list_tools always passes params: that is the governed path
            return await self._original(*args, **kwargs)
        try:
            # Every page, as the SDK wants every tool's output schema (it absorbs each page).
            return ListToolsResult(tools=await self._client._walk_tools(needed=False) or [])
        except MCPError as exc:
            logger.info("the governed tools/list for result validation was refused (%s)", exc.code)
            return ListToolsResult(tools=[])


_LISTING_PAGE_CAP = LISTING_PAGE_CAP
"""Page cap for a walk of the tool listing (as the SDK's own re-listing): a server that pages
forever cannot hang a call (the call is then refused: a listing gate verifies nothing of a
walk that reaches the cap)."""

_LISTING_WALKS = 3
"""How many times a walk that a list change interrupted is started again before a call."""


class _ToolSend:
    """One governed ``tools/call`` while the SDK sends it: every send must still be what was decided."""

    __slots__ = ("client", "ctx", "gates", "name", "pins")

    def __init__(self, client: GovernedClient, ctx: GovContext, name: str, gates: tuple[SendGate, ...]) -> None:
        self.client = client
        self.ctx = ctx
        self.name = name
        self.gates = gates
        self.pins = tuple(gate.check_send(name, ctx) for gate in gates)

    def check(self, name: str) -> None:
        if name != self.name:
            raise PinningError(f"the call to {self.name!r} tried to send {name!r}", reason="tool.unverified")
        if tuple(gate.check_send(name, self.ctx) for gate in self.gates) != self.pins:
            raise PinningError(f"tool {name!r} is no longer what the call was decided on", reason="tool.unverified")


_TOOL_SEND: contextvars.ContextVar[_ToolSend | None] = contextvars.ContextVar("mcpgov_tool_send", default=None)


class _CheckedCallTool:
    """What the SDK client calls as its session's ``call_tool``: each send of a governed call is
    checked again (see :class:`~mcpgov._protocols.SendGate`)."""

    __slots__ = ("_client", "_original")

    def __init__(self, client: GovernedClient, original: Callable[..., Awaitable[Any]]) -> None:
        self._client = client
        self._original = original

    async def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        sending = _TOOL_SEND.get()
        if sending is not None and sending.client is self._client:
            sending.check(name)
        return await self._original(name, *args, **kwargs)


_Page = TypeVar("_Page", bound=BaseModel)
_Params = ParamSpec("_Params")


async def _decided(_: GovContext) -> None:
    """The last step of a decision with no effect of its own."""


def _decided_arguments(ctx: GovContext) -> dict[str, Any] | None:
    """A fresh, mutable copy of the arguments the chain decided on."""
    return thaw(ctx.arguments) if ctx.arguments is not None else None


def _governed_listing_of(
    method: str, fetch: Callable[Concatenate[Client, _Params], Coroutine[Any, Any, _Page]]
) -> Callable[Concatenate[GovernedClient, _Params], Coroutine[Any, Any, _Page]]:
    """A :class:`GovernedClient` listing method: the SDK's ``fetch`` (same parameters), with the
    entries the client-side chain does not let this client discover taken out."""
    sdk_fetch = cast("Callable[..., Awaitable[_Page]]", fetch)

    async def listing(self: GovernedClient, /, *args: _Params.args, **kwargs: _Params.kwargs) -> _Page:
        params: dict[str, Any] = dict(kwargs)
        meta = params.pop("meta", None)
        cursor = params.get("cursor")
        return await self._governed_listing(
            method, meta, lambda m: sdk_fetch(self, *args, meta=m, **params), cursor=cursor
        )

    functools.update_wrapper(listing, fetch, assigned=("__name__",), updated=())  # the SDK's signature
    listing.__qualname__ = f"GovernedClient.{fetch.__name__}"
    listing.__doc__ = f"``{method}``: one page, showing only what the client-side chain lets this client discover."
    return listing


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
        identity: this workload's identity token source (an
            :class:`~mcpgov.identity.IdentitySource`, a token string, a ``Path`` to a token
            file re-read when it changes, or a callable). It is attached to every request,
            outermost in the chain: as ``Authorization: Bearer`` for URL servers (also on the
            HTTP requests outside governed calls), in ``_meta`` otherwise.
        **kwargs: every keyword argument ``mcp.Client`` accepts.
    """

    # Governance attributes live in slots: in the instance dict they would push it past the
    # size whose keys Python shares between instances, about 1.3 KB more per open session.
    __slots__ = (
        "_extensions",
        "_http_client",
        "_listing_gates",
        "_listing_lock",
        "_send_gates",
        "_server_target",
        "_user_message_handler",
        "governor",
        "http_auth",
        "principal",
        "purpose",
        "task_id",
    )

    def __init__(
        self,
        server: Server[Any] | MCPServer | Transport | StdioServerParameters | str,
        *middleware: Middleware,
        audit: Auditor | Iterable[AuditCallback] | AuditCallback | None = None,
        limits: ArgumentLimits | None = None,
        principal: Principal | None = None,
        purpose: str | None = None,
        task_id: str | None = None,
        identity: IdentitySource | str | os.PathLike[str] | Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._user_message_handler: MessageHandlerFnT | None = kwargs.pop("message_handler", None)
        super().__init__(server, message_handler=self._on_message, **kwargs)
        client_identity = None
        if identity is not None:
            from mcpgov.identity._providers import ClientIdentity, as_identity_provider  # noqa: PLC0415 - optional part

            http = isinstance(server, str)
            client_identity = ClientIdentity(as_identity_provider(identity), http=http)
            middleware = (client_identity, *middleware)
            from mcpgov.credentials._holder import check_client_principal  # noqa: PLC0415 - optional part

            check_client_principal(principal, client_identity.provider.current())
        self.governor = Governor("client", middleware, audit=audit, limits=limits)
        # Middleware that verify listings (tool pinning) ask for a governed listing before calls.
        self._listing_gates = tuple(gate for gate in map(listing_gate, middleware) if gate is not None)
        self._listing_lock: anyio.Lock | None = None
        self._send_gates = tuple(mw for mw in middleware if isinstance(mw, SendGate))
        self._extensions: Mapping[str, Any] = _NO_EXTENSIONS
        self._server_target = server
        """What every request's context carries from the connection (the server's self-description)."""
        self.principal = principal
        self.purpose = purpose
        self.task_id = task_id
        self.http_auth: GovernedHttpAuth | None = None
        """For a URL server: the HTTP auth that carries the chain's ``Authorization`` header."""
        self._http_client: httpx2.AsyncClient | None = None
        if isinstance(server, str):
            # Same transport the SDK would build for a URL, with an auth hook, so a governed call
            # can carry its own credential in the Authorization header.
            self.http_auth = GovernedHttpAuth()
            if client_identity is not None:
                self.http_auth.base = client_identity.authorization
            # The SDK's own defaults: 30 s to connect and write, 300 s to read a held stream.
            # Kept-alive connections: an answer read from an event stream no longer costs a new one.
            self._http_client = httpx2.AsyncClient(
                auth=self.http_auth,
                timeout=httpx2.Timeout(30.0, read=300.0),
                transport=pooled_transport(),
            )
            try:
                compat.connect_through(self, streamable_http_client(server, http_client=self._http_client))
            except TypeError as exc:  # pragma: no cover - guards an SDK change within 2.3.x
                raise ConfigurationError("this mcp SDK version cannot be governed over HTTP") from exc

    @property
    def server_target(self) -> object:
        """What this client connected to, as it was given: a URL, stdio parameters, a transport or
        an in-process server (what the approved-server registry judges)."""
        return self._server_target

    async def __aenter__(self) -> GovernedClient:
        try:
            await super().__aenter__()
        except BaseException:
            if self._http_client is not None:
                await self._http_client.aclose()
            raise
        # A new session: what a listing stage verified of an earlier one (a chain reused to
        # reconnect) says nothing about this one, whose server may be a new build.
        for mw in self.governor.middleware:
            if isinstance(mw, ListChangeListener):
                for kind in dict.fromkeys(_LIST_CHANGED.values()):
                    mw.notify_list_changed(kind)
        info = self.server_info
        if info is not None:
            described = _described(info.name, info.version)
            # What the client actually connected to, for the registry's check (tool pinning).
            self._extensions = MappingProxyType(
                {SERVER_INFO: described, SERVER_TARGET: self._server_target, CLIENT_SESSION: self.session}
            )
        self._govern_internal_listings()
        compat.wrap_request_stamp(self.session, _ListenStamp)
        return self

    def _govern_internal_listings(self) -> None:
        """Route the listings the SDK sends on its own through the governed path.

        After a tool's first call the SDK session lists tools itself (to validate structured
        results), outside any hook: that request would carry none of what the chain attaches
        (identity, credentials). It goes through :meth:`list_tools` instead. If the governed
        listing is refused, the SDK gets an empty listing and skips the validation, rather than
        turning a call that already ran into an error.
        """
        session = self.session
        # Shadows the bound method on this instance.
        setattr(session, "list_tools", _GovernedListTools(self, session.list_tools))  # noqa: B010
        if self._send_gates:
            setattr(session, "call_tool", _CheckedCallTool(self, session.call_tool))  # noqa: B010

    async def __aexit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: Any) -> None:
        try:
            await super().__aexit__(exc_type, exc_val, exc_tb)
        finally:
            if self._http_client is not None:
                await self._http_client.aclose()

    async def _on_message(self, message: IncomingMessage) -> None:
        """Tell middleware about list changes (tool pinning re-checks), then the user's handler."""
        method = getattr(message, "method", None)
        kind = _LIST_CHANGED.get(method) if isinstance(method, str) else None
        if kind is not None:
            for mw in self.governor.middleware:
                if isinstance(mw, ListChangeListener):
                    mw.notify_list_changed(kind)
        if self._user_message_handler is not None:
            await self._user_message_handler(message)

    def task(self, task_id: str, *, purpose: str | None = None) -> AbstractAsyncContextManager[TaskScope]:
        """Run a task: its calls carry credentials minted for it, all revoked on exit (also on error).

        Example::

            async with client.task("release-42", purpose="deploy") as task:
                await client.call_tool("deploy", {"version": "1.2.3"})

        See :func:`mcpgov.credentials.open_task`.
        """
        from mcpgov.credentials import open_task  # noqa: PLC0415 - plain clients never load the issuer side

        return open_task(self, task_id, purpose=purpose)

    def _terminal(
        self, user_meta: RequestParamsMeta | None, send: Callable[[GovContext, Any], Awaitable[_T]]
    ) -> Callable[[GovContext], Awaitable[_T]]:
        """The chain's last step for a use: ``send(decided context, _meta)`` through :meth:`_send`."""

        async def terminal(c: GovContext) -> _T:
            return await self._send(c, user_meta, lambda m: send(c, m))

        return terminal

    async def _send(
        self, ctx: GovContext, user_meta: RequestParamsMeta | None, send: Callable[[Any], Awaitable[_T]]
    ) -> _T:
        """Send with what the chain attached: ``ctx.meta`` into ``_meta``, and the HTTP header."""
        meta: Any = user_meta
        if ctx.meta:
            meta = {**(user_meta or {}), **ctx.meta}
        header = ctx.extension(HTTP_AUTHORIZATION)
        if header is None:
            return await send(meta)
        token = _OUTGOING_AUTHORIZATION.set(header)
        try:
            return await send(meta)
        finally:
            _OUTGOING_AUTHORIZATION.reset(token)

    async def _governed_listing(
        self,
        method: str,
        meta: RequestParamsMeta | None,
        fetch: Callable[[Any], Awaitable[_Page]],
        *,
        cursor: str | None = None,
    ) -> _Page:
        """One page of the listing ``method`` (``fetch`` gets it from the SDK), filtered by the
        client-side chain; a page after the first carries its cursor in ``LISTING_CURSOR``."""
        kind, entries_key, name_key = LISTINGS[method]
        entries, name_attr = _SNAKE.get(entries_key, entries_key), _SNAKE.get(name_key, name_key)

        async def terminal(c: GovContext) -> Listing:
            return _listing(kind, await self._send(c, meta, fetch), entries, name_attr)

        extensions = self._extensions if cursor is None else {**self._extensions, LISTING_CURSOR: cursor}
        listing: Listing = await self._governed(method, kind, None, terminal, extensions=extensions)
        page: _Page = _unlisting(listing, entries)
        return page

    async def _governed(
        self,
        method: str,
        kind: TargetKind | None,
        target: str | None,
        terminal: Any,
        *,
        raw_arguments: Any = None,
        outcome_of: Any = None,
        extensions: Mapping[str, Any] | None = None,
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
                extensions=self._extensions if extensions is None else extensions,
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
        if self._needs_listing():
            # A pinning middleware verifies tools from a governed listing before any is called.
            await self._walk_tools(needed=True)

        async def send(c: GovContext, m: Any) -> CallToolResult:
            # The SDK is sent exactly what the chain decided on: a caller mutating its dict meanwhile
            # changes nothing. It may send more than once (again after re-listing, once per input
            # round): each send is held to what the chain decided.
            sending = _TOOL_SEND.set(_ToolSend(self, c, name, self._send_gates)) if self._send_gates else None
            try:
                return await Client.call_tool(
                    self,
                    name,
                    _decided_arguments(c),
                    read_timeout_seconds,
                    progress_callback,
                    input_responses=input_responses,
                    request_state=request_state,
                    meta=m,
                )
            finally:
                if sending is not None:
                    _TOOL_SEND.reset(sending)

        terminal = self._terminal(meta, send)
        result: CallToolResult = await self._governed(
            "tools/call",
            "tool",
            name,
            terminal,
            raw_arguments=arguments,
            outcome_of=lambda r: "failed" if getattr(r, "is_error", False) else "completed",
        )
        return result

    async def _walk_tools(self, *, needed: bool) -> list[Tool] | None:
        """Walk the governed tool listing, every page, and return its tools.

        With ``needed``, only while a listing gate needs a listing (``None`` when none does).
        A walk a list change interrupted is walked again (a few times at most). One walk at a
        time per client: concurrent calls wait for it rather than interleave their pages.
        """
        if self._listing_lock is None:
            self._listing_lock = anyio.Lock()
        tools: list[Tool] | None = None
        async with self._listing_lock:
            for _ in range(_LISTING_WALKS):
                if needed and not self._needs_listing():
                    break
                tools = []
                cursor: str | None = None
                for _ in range(_LISTING_PAGE_CAP):
                    page = await self.list_tools(cursor=cursor, cache_mode="refresh")
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                if cursor is not None:
                    logger.warning(
                        "the server's tool listing went on past %d pages; it was not read further", _LISTING_PAGE_CAP
                    )
                    break  # a server that pages forever is not walked again
                if not self._needs_listing():
                    break
        return tools

    def _needs_listing(self) -> bool:
        """A listing gate needs a listing of this client's session before a call."""
        session = self._extensions.get(CLIENT_SESSION)
        for gate in self._listing_gates:
            per_session = getattr(gate, "needs_listing_for", None)
            if per_session is not None and session is not None:
                if per_session(session):
                    return True
            elif gate.needs_listing:
                return True
        return False

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

        terminal = self._terminal(
            meta,
            lambda c, m: Client.get_prompt(
                self, name, _decided_arguments(c), input_responses=input_responses, request_state=request_state, meta=m
            ),
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

        terminal = self._terminal(
            meta,
            lambda _, m: Client.read_resource(
                self, uri, input_responses=input_responses, request_state=request_state, meta=m, cache_mode=cache_mode
            ),
        )
        result: ReadResourceResult = await self._governed("resources/read", "resource", str(uri), terminal)
        return result

    # The four listings take the SDK's own parameters; each returns one page, filtered.
    list_tools = _governed_listing_of("tools/list", Client.list_tools)
    list_prompts = _governed_listing_of("prompts/list", Client.list_prompts)
    list_resources = _governed_listing_of("resources/list", Client.list_resources)
    list_resource_templates = _governed_listing_of("resources/templates/list", Client.list_resource_templates)

    async def complete(
        self,
        ref: ResourceTemplateReference | PromptReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None = None,
    ) -> CompleteResult:
        """Complete an argument of a prompt or resource template, after the chain allows it.

        Decided like the server decides it: on the prompt or resource the reference names. What
        is sent is what was decided: a copy of ``ref`` taken before the decision, and the decided
        copy of ``argument`` (a caller changing its objects meanwhile changes nothing).
        """
        ref = ref.model_copy(deep=True)
        context = dict(context_arguments) if context_arguments is not None else None
        kind: TargetKind = "prompt" if isinstance(ref, PromptReference) else "resource"
        target = ref.name if isinstance(ref, PromptReference) else ref.uri

        async def terminal(c: GovContext) -> CompleteResult:
            decided = _decided_arguments(c) or {}
            # The SDK's complete() takes no _meta; only the HTTP header can be attached here.
            return await self._send(c, None, lambda _m: Client.complete(self, ref, decided, context))

        result: CompleteResult = await self._governed(
            "completion/complete", kind, target, terminal, raw_arguments=argument
        )
        return result

    def listen(
        self,
        *,
        tools_list_changed: bool = False,
        prompts_list_changed: bool = False,
        resources_list_changed: bool = False,
        resource_subscriptions: Sequence[str] = (),
    ) -> AbstractAsyncContextManager[Subscription]:
        """Open a ``subscriptions/listen`` stream (2026-07-28), after the client-side chain allows it.

        As :meth:`mcp.Client.listen`, and the request carries what the chain attached (identity,
        credential) like every governed request. A governed server acknowledges, and delivers,
        only the resource URIs the caller may subscribe to: compare ``sub.honored``.
        """
        return self._governed_listen(
            tools_list_changed=tools_list_changed,
            prompts_list_changed=prompts_list_changed,
            resources_list_changed=resources_list_changed,
            resource_subscriptions=tuple(resource_subscriptions),
        )

    @asynccontextmanager
    async def _governed_listen(self, **wanted: Any) -> AsyncIterator[Subscription]:
        if self.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            raise ListenNotSupportedError(self.protocol_version)  # as the SDK's listen, before deciding
        async with AsyncExitStack() as stream:

            async def terminal(c: GovContext) -> Subscription:
                # Each resource URI of the filter is decided as a subscribe of it: only the
                # allowed ones are sent (the stream then acknowledges only those: sub.honored).
                allowed = await self._subscribable(wanted["resource_subscriptions"])

                async def opened(meta: Any) -> Subscription:
                    token = _LISTEN_META.set(meta)
                    try:
                        listen = Client.listen(self, **{**wanted, "resource_subscriptions": allowed})
                        return await stream.enter_async_context(listen)
                    finally:
                        _LISTEN_META.reset(token)

                return await self._send(c, None, opened)

            sub: Subscription = await self._governed("subscriptions/listen", None, None, terminal)
            yield sub

    async def _subscribable(self, uris: Sequence[str]) -> tuple[str, ...]:
        """The URIs of ``uris`` the chain allows this client to subscribe to, each decided (and
        audited) as a ``resources/subscribe`` of it; a URI refused, or whose decision failed, is left out."""
        allowed: list[str] = []
        for uri in dict.fromkeys(uris):
            try:
                await self._governed(LISTEN_SUBSCRIBE_METHOD, "resource", str(uri), _decided)
            except MCPError:
                continue
            allowed.append(uri)
        return tuple(allowed)

    @deprecated(
        "resources/subscribe is removed as of 2026-07-28; use Client.listen() instead.", category=MCPDeprecationWarning
    )
    async def subscribe_resource(self, uri: str, *, meta: RequestParamsMeta | None = None) -> EmptyResult:
        """Subscribe to a resource (2025-era servers), after the chain allows it."""

        async def terminal(c: GovContext) -> EmptyResult:
            return await self._send(c, meta, lambda m: Client.subscribe_resource(self, uri, meta=m))

        result: EmptyResult = await self._governed("resources/subscribe", "resource", str(uri), terminal)
        return result

    @deprecated(
        "resources/unsubscribe is removed as of 2026-07-28; use Client.listen() instead.",
        category=MCPDeprecationWarning,
    )
    async def unsubscribe_resource(self, uri: str, *, meta: RequestParamsMeta | None = None) -> EmptyResult:
        """Unsubscribe from a resource (2025-era servers), after the chain allows it."""

        async def terminal(c: GovContext) -> EmptyResult:
            return await self._send(c, meta, lambda m: Client.unsubscribe_resource(self, uri, meta=m))

        result: EmptyResult = await self._governed("resources/unsubscribe", "resource", str(uri), terminal)
        return result
