"""Server adapter: installs a governance chain on an SDK server as a ``ServerMiddleware``."""

from __future__ import annotations

import contextvars
import copy
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio
from mcp import MCPError
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.context import CallNext as SdkCallNext
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.shared.inbound import MCP_PARAM_HEADER_PREFIX, validate_mcp_param_headers
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import INVALID_REQUEST, ClientCapabilities, ElicitationCapability, SubscriptionsListenResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel
from starlette.requests import Request

from mcpgov._arguments import ArgumentLimits, freeze_arguments
from mcpgov._audit import AuditCallback, AuditEvent, Auditor, EventType
from mcpgov._chain import Listing, ListItem, Middleware
from mcpgov._contain import contained
from mcpgov._context import STANDING_CHECKS, Elicit, GovContext, SessionAnchor, TargetKind, Transport
from mcpgov._errors import ConfigurationError, InvalidRequest, McpGovError
from mcpgov._fastmcp import (
    addressed_by_identity,
    check_converted_text,
    check_guards,
    check_no_version_chosen,
    decided_tool_arguments,
    governed_only,
    is_fastmcp,
    sdk_server,
    served_names,
)
from mcpgov._governor import Governor
from mcpgov._hooks import any_guards, guard_problem, refuse_unguarded
from mcpgov._hygiene import NamePolicy, NameRules
from mcpgov._methods import (
    ARGUMENT_METHODS,
    COMPLETION_REFS,
    EXECUTE_METHODS,
    LISTEN_METHOD,
    LISTEN_SUBSCRIBE_METHOD,
    LISTINGS,
    MAX_LISTEN_URIS,
    NAMED_METHODS,
    TARGETED,
)
from mcpgov._protocol import check_known_target, served
from mcpgov._sdk import compat
from mcpgov._sdk.request import handler_request, hide_tokens, restore_tokens
from mcpgov._sdk.validation import RequestValidator, check_uri, same_json
from mcpgov._validate import is_number
from mcpgov._wire import to_mcp_error

if TYPE_CHECKING:
    from fastmcp import FastMCP

__all__ = ["ServerGovernance", "govern"]

logger = logging.getLogger("mcpgov.server")

_NO_META: Mapping[str, Any] = MappingProxyType({})

PASS_THROUGH = frozenset({"initialize", "server/discover", "ping"})
"""Methods that are never governed: the handshake and discovery (denying discovery makes the
SDK client silently fall back to the legacy handshake) and liveness. Methods the server does not
serve at the negotiated version also pass, to the SDK's "Method not found" (see ``_protocol``)."""


def describe_request(method: str, params: Mapping[str, Any] | None) -> tuple[TargetKind | None, str | None, Any]:
    """Find the target kind, target name and raw arguments of a request.

    Raises:
        InvalidRequest: the parameters do not have the shape the method requires.
    """
    if params is not None and type(params) is not dict and not isinstance(params, Mapping):
        raise InvalidRequest("request parameters must be an object", reason="params_invalid")
    targeted = TARGETED.get(method)
    if targeted is not None:
        kind, key = targeted
        target = params.get(key) if params is not None else None
        if not isinstance(target, str) or not target:
            raise InvalidRequest(f"{method} needs a non-empty string {key!r}", reason="params_invalid")
        arguments = params.get("arguments") if params is not None and kind != "resource" else None
        if arguments is not None and type(arguments) is not dict and not isinstance(arguments, Mapping):
            raise InvalidRequest("arguments must be an object", reason="params_invalid")
        return kind, target, arguments
    if method == "completion/complete":
        ref = params.get("ref") if params is not None else None
        if not isinstance(ref, Mapping) or ref.get("type") not in COMPLETION_REFS:
            raise InvalidRequest("completion/complete needs a prompt or resource ref", reason="params_invalid")
        kind, key = COMPLETION_REFS[ref["type"]]
        target = ref.get(key)
        if not isinstance(target, str) or not target:
            raise InvalidRequest("completion ref needs a name or uri", reason="params_invalid")
        return kind, target, params.get("argument") if params is not None else None
    listing = LISTINGS.get(method)
    if listing is not None:
        return listing[0], None, None
    return None, None, None


def listen_uris(params: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The resource URIs a ``subscriptions/listen`` filter names (each once, in order).

    Raises:
        InvalidRequest: the filter does not have the shape the method requires, or names more
            than :data:`~mcpgov._methods.MAX_LISTEN_URIS` URIs.
    """
    if params is not None and not isinstance(params, Mapping):
        raise InvalidRequest("request parameters must be an object", reason="params_invalid")
    notifications = params.get("notifications") if params is not None else None
    if not isinstance(notifications, Mapping):
        raise InvalidRequest(f"{LISTEN_METHOD} needs a notifications filter object", reason="params_invalid")
    uris = notifications.get("resourceSubscriptions")
    if uris is None:
        return ()
    if not isinstance(uris, list) or not all(isinstance(uri, str) and uri for uri in uris):
        raise InvalidRequest("resourceSubscriptions must be a list of non-empty strings", reason="params_invalid")
    unique = tuple(dict.fromkeys(uris))
    if len(unique) > MAX_LISTEN_URIS:
        raise InvalidRequest(f"a listen filter names at most {MAX_LISTEN_URIS} resources", reason="params_invalid")
    return unique


def _listen_params(params: Mapping[str, Any] | None, allowed: list[str]) -> dict[str, Any]:
    """``params`` of a ``subscriptions/listen`` whose filter names only the ``allowed`` URIs (a copy)."""
    out = dict(params or {})
    notifications = dict(out.get("notifications") or {})
    if allowed:
        notifications["resourceSubscriptions"] = list(allowed)
    else:
        notifications.pop("resourceSubscriptions", None)
    out["notifications"] = notifications
    return out


async def _allowed(_: GovContext) -> bool:
    """The terminal of a decision that has no effect of its own (a listen filter's URI)."""
    return True


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


def _current_bearer() -> str | None:
    token = get_access_token()
    return token.token if token is not None else None


_ELICITATION = ClientCapabilities(elicitation=ElicitationCapability())  # read only: built once


def _can_elicit(sctx: ServerRequestContext[Any, Any]) -> bool:
    try:
        return bool(sctx.session.check_client_capability(_ELICITATION))
    except Exception:  # noqa: BLE001 - no capability information: cannot elicit
        return False


def _elicitor(sctx: ServerRequestContext[Any, Any]) -> Elicit:
    session = sctx.session
    related = sctx.request_id

    async def elicit(message: str, schema: Mapping[str, Any]) -> tuple[str, Any]:
        result = await session.elicit_form(message, dict(schema), related_request_id=related)
        return str(result.action), result.content

    return elicit


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(copy.deepcopy(dict(value)))


def authority_expiry(ctx: GovContext) -> float | None:
    """When what authorised ``ctx`` expires: the earlier ``exp`` of its identity token and of its
    credential (seconds since the epoch), or ``None`` when neither carries one."""
    times = []
    if ctx.principal is not None:
        times.append(ctx.principal.claims.get("exp"))
    if ctx.credential is not None:
        times.append(ctx.credential.get("exp"))
    known = [float(t) for t in times if is_number(t)]
    return min(known) if known else None


async def authority_lapsed(ctx: GovContext) -> str | None:
    """Why what authorised ``ctx`` no longer does: ``"expired"`` (the earlier ``exp`` of its
    identity token and credential has passed) or ``"refused"`` (one of its ``STANDING_CHECKS``,
    a credential's lifetime and revocation, refused or failed: fail closed; the check audited
    why); ``None`` while it still does."""
    expires = authority_expiry(ctx)
    if expires is not None and time.time() >= expires:
        return "expired"
    for check in ctx.extension(STANDING_CHECKS) or ():
        try:
            await check()
        except BaseException as exc:
            if not await contained(exc):
                raise
            return "refused"
    return None


async def audit_expiry(ctx: GovContext, detail: str) -> None:
    """Audit, with the caller, that what ``ctx``'s authority allowed was ended at its expiry:
    ``credential.refused`` when the credential expired first, else ``identity.refused``."""
    if ctx.audit is None:
        return
    credential_exp = ctx.credential.get("exp") if ctx.credential is not None else None
    expired: EventType = "credential.refused" if credential_exp == authority_expiry(ctx) else "identity.refused"
    await ctx.audit.emit(AuditEvent.from_context(ctx, expired, reason="expired", detail=detail))


class StandingChannel:
    """A channel to the client open only while what authorised ``decided`` lasts: the standalone
    channel of a governed handshake-era connection (what the server sends outside any request:
    resource updates, list changes, log messages, requests of its own), bound to the
    connection's latest allowed request; or the back-channel of an allowed request (its
    progress, log messages, elicitation and sampling), bound to that request.

    Once that identity token or credential expired (audited once), or the credential, its task
    or its principal is revoked or the revocation check fails, notifications are dropped and
    requests refused (on the standalone channel, until another request of the connection is
    allowed). A tool body that started before keeps running; its caller hears nothing more of it
    but its result.
    """

    def __init__(self, inner: Any, decided: GovContext | None = None) -> None:
        self.inner = inner
        self.decided = decided
        self._lapsed: GovContext | None = None

    async def _open(self) -> bool:
        decided = self.decided
        if decided is None:
            return True  # nothing was decided on this connection: nothing ungoverned to end
        if decided is self._lapsed:
            return False
        lapsed = await authority_lapsed(decided)
        if lapsed is None:
            return True
        if self._lapsed is not decided:
            self._lapsed = decided
            if lapsed == "expired":
                await audit_expiry(decided, "what the server sends the session was ended at its expiry")
        return False

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> None:
        if not await self._open():
            logger.debug("dropped %s: what authorised the session expired or was revoked", method)
            return
        await self.inner.notify(method, params, opts)

    async def send_raw_request(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> dict[str, Any]:
        if not await self._open():
            raise MCPError(code=INVALID_REQUEST, message="what authorised the session expired or was revoked")
        result: dict[str, Any] = await self.inner.send_raw_request(method, params, opts)
        return result

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if not await self._open():
            logger.debug("dropped a progress notification: what authorised the request expired or was revoked")
            return
        await self.inner.progress(progress, total, message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _for_handler(
    sctx: ServerRequestContext[Any, Any],
    decided: GovContext,
    *,
    arguments_key: str | None,
    arguments: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None = None,
) -> ServerRequestContext[Any, Any]:
    """The handler's copy of ``sctx`` (see :func:`handler_request`) for the allowed ``decided``:
    its session's back-channel is open only while what authorised ``decided`` lasts, and so is
    the standalone channel of its handshake-era connection (bound to ``decided`` as the
    connection's latest allowed request; see :class:`StandingChannel`)."""
    connection = compat.connection_of(sctx.session)
    # 2026-07-28: changes reach a client only on its listen streams, which end on their own.
    if (
        sctx.protocol_version not in MODERN_PROTOCOL_VERSIONS
        and connection is not None
        and getattr(connection, "has_standalone_channel", False)
    ):
        channel = connection.outbound
        if not isinstance(channel, StandingChannel):
            channel = StandingChannel(channel)
            connection.outbound = channel
        channel.decided = decided
    session = compat.with_request_channel(sctx.session, lambda inner: StandingChannel(inner, decided))
    return handler_request(sctx, arguments_key=arguments_key, arguments=arguments, params=params, session=session)


STANDING_CHECK_INTERVAL = 1.0
"""Seconds between two runs of a standing stream's checks (``STANDING_CHECKS``: revocation...)."""


async def _until_authority_expires(
    ctx: GovContext, sctx: ServerRequestContext[Any, Any], stream: Awaitable[HandlerResult]
) -> HandlerResult:
    """Serve a standing stream (``subscriptions/listen``) no longer than what authorised it lasts.

    A stream outlives the request that opened it; the identity token or credential that allowed
    it does not. The stream is ended the graceful way (its final ``SubscriptionsListenResult``,
    stamped with the subscription id), so the agent re-listens and is decided again: at the
    earlier of their expiries, or as soon as one of the context's standing checks (a credential's
    revocation, re-checked every ``STANDING_CHECK_INTERVAL`` seconds) refuses or fails.
    """
    expires = authority_expiry(ctx)
    checks = ctx.extension(STANDING_CHECKS) or ()
    if expires is None and not checks:
        return await stream
    scope = anyio.CancelScope()
    if expires is not None:
        scope.deadline = anyio.current_time() + (expires - time.time())

    refused = False

    async def watch() -> None:
        nonlocal refused
        while True:
            await anyio.sleep(STANDING_CHECK_INTERVAL)
            for check in checks:
                try:
                    await check()
                except BaseException as exc:
                    # Refused (the check recorded why) or failed, whatever it raised: fail closed.
                    if not await contained(exc):
                        raise
                    refused = True
                    scope.cancel()
                    return

    result: HandlerResult = None
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        if checks:
            tg.start_soon(watch)
        with scope:
            try:
                result = await stream
            except Exception as exc:  # noqa: BLE001 - re-raised as it is, outside the task group
                failure = exc
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if scope.cancelled_caught:
        logger.info("a listen stream ended: what authorised it expired or was refused")
        if not refused:
            await audit_expiry(ctx, "the listen stream it opened was ended at its expiry")
        return SubscriptionsListenResult(_meta={SUBSCRIPTION_ID_META_KEY: sctx.request_id})
    return result


COMPLETION_METHOD = "completion/complete"

_ARGUMENTS_KEYS = {**dict.fromkeys(ARGUMENT_METHODS, "arguments"), COMPLETION_METHOD: "argument"}
"""Method -> the params key holding what the handler gets as decided: a completion is decided on
its reference and the argument being completed (see :func:`_decided_params`)."""


def _decided_params(method: str, sctx: ServerRequestContext[Any, Any]) -> Mapping[str, Any] | None:
    """The params of a completion without what a client claims as already filled in
    (``context``), which the chain does not decide on: its handler gets exactly the decided
    argument, as a gateway forwards it. ``None`` (the request's own) for any other request."""
    params = sctx.params
    if method != COMPLETION_METHOD or params is None or "context" not in params:
        return None
    return {key: value for key, value in params.items() if key != "context"}


_CONVERTED_BY_FASTMCP = frozenset({"prompts/get", "resources/read"})


def _refusing(exc: InvalidRequest, request: GovContext) -> Callable[[GovContext], None]:
    """A precheck that refuses with ``exc``: an invalid request, answered once the chain decided
    that its caller may discover the target. The refusal records the caller the chain
    established and the request as sent (its arguments and their hash)."""

    def refuse(ctx: GovContext) -> None:
        exc.context = ctx.replace(action=request.action, arguments=request.arguments, args_hash=request.args_hash)
        raise exc

    return refuse


def _outcome_of(result: Any) -> str:
    if type(result) is dict or isinstance(result, Mapping):
        if result.get("isError") is True:
            return "failed"
        if result.get("resultType") == "input_required":
            return "input_required"  # a 2026-07-28 input round: answered with questions, retried with answers
    return "completed"


class ServerGovernance:
    """The SDK ``ServerMiddleware`` that runs an mcpgov chain. Built by :func:`govern`.

    Attributes:
        governor: the chain runner (its ``auditor`` counts delivered events and sink failures).
    """

    def __init__(
        self, governor: Governor, server: Server[Any], mcp_server: MCPServer | None, names: NamePolicy | None = None
    ) -> None:
        self.governor = governor
        self._server = server
        self._served_server = mcp_server
        self.marks_handlers = False
        """Whether handlers learn what this chain allowed them (``admitted``): set for FastMCP
        servers, whose tools can also be reached past the SDK server (a mount, an in-process call)."""
        self._anchors: weakref.WeakKeyDictionary[Any, SessionAnchor] = weakref.WeakKeyDictionary()
        self._validator = RequestValidator(server, mcp_server)
        self.names = NameRules(names)
        self._listed: dict[str, frozenset[str]] = {}
        self._names_memo: dict[str, tuple[frozenset[str], Mapping[str, str]]] = {}
        self.fastmcp: Any = None
        """The FastMCP server when this governs one: its prompt arguments and template parameters
        are checked as FastMCP converts them."""
        self.reserved_tool_name: Callable[[str], bool] | None = None
        """Tool names the server resolves to a tool listed under another name (FastMCP's identity
        hashes): refused whatever the chain decides and hidden from listings, unless ``names`` allows them."""
        self.tool_input_schema: Callable[[str], Mapping[str, Any] | None] | None = None
        """The server's own ``get_tool_input_schema``, consulted only for a call the chain allowed
        (:func:`govern` hides it from the SDK's check that runs before any middleware)."""

    def _session(self, sctx: ServerRequestContext[Any, Any]) -> SessionAnchor | None:
        """The anchor of the request's session (one per connection); ``None`` in 2026-07-28."""
        if sctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None  # 2026-07-28 has no sessions: every request stands alone
        connection = compat.connection_of(sctx.session)
        if connection is None:
            return None
        anchor = self._anchors.get(connection)
        if anchor is None:
            anchor = SessionAnchor(str(connection.session_id) if connection.session_id else secrets.token_hex(8))
            self._anchors[connection] = anchor
        return anchor

    def _transport(self, sctx: ServerRequestContext[Any, Any], session: SessionAnchor | None) -> Transport:
        """The facts of how ``sctx`` arrived: what middleware may know, never the SDK objects."""
        params = sctx.params or {}
        state = params.get("requestState")
        responses = params.get("inputResponses")
        can_elicit = _can_elicit(sctx)
        return Transport(
            kind="http" if sctx.request is not None else "stream",
            bearer=_current_bearer() if sctx.request is not None else None,
            session=session,
            client_can_elicit=can_elicit,
            elicit=_elicitor(sctx) if can_elicit and session is not None else None,
            request_state=state if isinstance(state, str) else None,
            input_responses=_frozen_mapping(responses)
            if responses is not None and isinstance(responses, Mapping)
            else None,
        )

    def _known_tool(self, ctx: GovContext) -> None:
        check_known_target(self._served_server, ctx)

    def _served(self, kind: str) -> frozenset[str]:
        """The names of ``kind`` this server serves (registered, or as last listed by a lowlevel server)."""
        if self._served_server is not None:
            if kind == "tool":
                return frozenset(compat.tool_names(self._served_server))
            return frozenset(compat.prompt_names(self._served_server))
        return self._listed.get(kind, frozenset())

    def _check_name(self, kind: str, name: str) -> None:
        if kind == "tool" and self._reserved(name):
            raise InvalidRequest(
                f"tool name {name!r} addresses a tool by its identity hash, not by a name it is listed "
                "under; call the tool by its listed name",
                reason="name_refused",
            )
        if self._served_server is not None:
            served, refused = self._served_names(kind)
            if name not in served:
                return  # not served: refused as unknown once the caller may use the name
            why = refused.get(name)
        else:
            why = self.names.refused(kind, self._served(kind) | {name}).get(name)
        if why is not None:
            raise InvalidRequest(f"{why} ({name!r})", reason="name_refused")

    def _reserved(self, name: str) -> bool:
        reserved = self.reserved_tool_name
        return reserved is not None and name not in self.names.policy.allow and reserved(name)

    def _served_names(self, kind: str) -> tuple[frozenset[str], Mapping[str, str]]:
        """The names an ``MCPServer`` serves of ``kind`` and those of them refused, worked out
        again only when its registry changed (one set comparison per request, not a rebuild)."""
        assert self._served_server is not None  # noqa: S101 - the caller checked
        live = compat.registered_names(self._served_server, kind)
        memo = self._names_memo.get(kind)
        if memo is not None and live is not None and memo[0] == live:
            return memo
        served = self._served(kind)
        found = (served, self.names.refused(kind, served))
        if live is not None and served == live:  # the registry's keys are the names: kept until they change
            self._names_memo[kind] = found
        return found

    def _hygienic(self, listing: Listing) -> Listing:
        if listing.kind not in ("tool", "prompt"):
            return listing
        names = frozenset(item.name for item in listing.items)
        if self._served_server is None:
            self._listed[listing.kind] = names
        refused = self.names.refused(listing.kind, names)
        if listing.kind == "tool" and self.reserved_tool_name is not None:
            refused = {**refused, **{name: "reserved" for name in names if self._reserved(name)}}
        if not refused:
            return listing
        return listing.keep(lambda item: item.name not in refused)

    def _strict(self, ctx: GovContext, raw_arguments: Any) -> GovContext:
        """Validate the request against what its target declares, before any decision.

        Returns the context whose arguments are exactly what the handler will receive.
        """
        method, target = ctx.method, ctx.target
        if target is None:
            return ctx
        validator = self._validator
        if method in NAMED_METHODS:
            self._check_name(NAMED_METHODS[method], target)
        if method == "tools/call":
            if self._served_server is not None and any_guards():
                refuse_unguarded(getattr(compat.tool_of(self._served_server, target), "fn", None), target)
            decided = validator.tool_arguments(target, raw_arguments)
            if decided is None or decided is raw_arguments or same_json(decided, raw_arguments or {}):
                return ctx
            return ctx.replace(arguments=freeze_arguments(decided, self.governor.limits))
        if method == "prompts/get":
            validator.prompt_arguments(target, raw_arguments)
        elif ctx.kind == "resource" and method != "completion/complete":
            validator.resource_uri(target)
        return ctx

    def _check_param_headers(self, sctx: ServerRequestContext[Any, Any]) -> None:
        """The SDK's check of a 2026-07-28 ``tools/call``'s ``Mcp-Param-*`` headers against the
        tool's input schema, run for a call the chain allowed (the SDK's own runs before any
        middleware, where its answer would tell any caller that a tool exists).

        Raises:
            MCPError: a header disagrees with the body (``HEADER_MISMATCH``, HTTP 400), as the SDK answers.
            McpGovError: the tool's input schema could not be read.
        """
        lookup = self.tool_input_schema
        request = sctx.request
        if lookup is None or not isinstance(request, Request) or sctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return
        params = sctx.params or {}
        arguments = params.get("arguments") or {}
        headers = request.headers
        if not arguments and not any(key.startswith(_PARAM_HEADER_PREFIX) for key in headers):
            return  # no argument and no header: nothing can disagree
        try:
            schema = lookup(params["name"])
        except Exception as exc:  # noqa: BLE001 - the check cannot be made: the call does not run
            logger.error("get_tool_input_schema raised %s; refusing the call", type(exc).__name__)
            raise McpGovError("the tool's input schema could not be read", reason="schema_unavailable") from None
        if schema is None:
            return
        rejection = validate_mcp_param_headers(schema, arguments, headers)
        if rejection is not None:
            raise MCPError(rejection.code, rejection.message, rejection.data)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: SdkCallNext) -> HandlerResult:
        sctx = ctx
        method = sctx.method
        if sctx.request_id is None or method in PASS_THROUGH or not served(self._server, method, sctx.protocol_version):
            return await call_next(sctx)
        try:
            return await self._governed(sctx, method, call_next)
        except BaseException as exc:
            if not await contained(exc):
                raise
            # The one place server-side errors become wire errors: nothing else reaches the client,
            # and nothing a stage raised can end the session or the server.
            raise to_mcp_error(exc) from None

    async def _governed(
        self, sctx: ServerRequestContext[Any, Any], method: str, call_next: SdkCallNext
    ) -> HandlerResult:
        governor = self.governor
        session = self._session(sctx)
        base: dict[str, Any] = {
            "session_id": session.id if session is not None else None,
            "request_id": sctx.request_id,
            "protocol_version": sctx.protocol_version,
            "meta": MappingProxyType(dict(sctx.meta)) if sctx.meta else _NO_META,
            "transport": self._transport(sctx, session),
        }
        try:
            kind, target, raw_arguments = describe_request(method, sctx.params)
            uris = listen_uris(sctx.params) if method == LISTEN_METHOD else ()
        except InvalidRequest as exc:
            await governor.refuse(governor.context(method, **base), exc)
            raise
        gctx = await governor.begin(
            method,
            raw_arguments,
            kind=kind,
            target=target,
            action="execute" if target is not None else None,
            **base,
        )
        gctx, precheck = await self._validated(gctx, raw_arguments)
        listing = LISTINGS.get(method)
        if listing is not None:
            kind_l, entries_key, name_key = listing

            async def list_terminal(c: GovContext) -> Listing:
                # Listing code is the server's own too: it runs without the token, as handlers do.
                handler_ctx = _for_handler(sctx, c, arguments_key=None, arguments=None)
                reset = hide_tokens()
                marked = self._mark("list", kind_l)
                try:
                    listed = _to_listing(kind_l, entries_key, name_key, await call_next(handler_ctx))
                finally:
                    if marked is not None:
                        _GOVERNING.reset(marked)
                    if reset is not None:
                        restore_tokens(reset)
                return self._hygienic(listed)

            result = await governor.run(gctx, list_terminal)
            return _from_listing(entries_key, result)
        arguments_key = _ARGUMENTS_KEYS.get(method)

        async def terminal(c: GovContext) -> HandlerResult:
            # The handler gets a fresh copy of exactly the arguments decided on, and no token.
            listened = await self._listened(uris, base) if method == LISTEN_METHOD else None
            params = _listen_params(sctx.params, listened) if listened is not None else _decided_params(method, sctx)
            if method == "tools/call":
                self._check_param_headers(sctx)
            handler_ctx = _for_handler(sctx, c, arguments_key=arguments_key, arguments=c.arguments, params=params)
            reset = hide_tokens()
            marked = self._mark(c.kind, c.target) if method in EXECUTE_METHODS else None
            try:
                if method == LISTEN_METHOD:
                    result: HandlerResult = await _until_authority_expires(c, sctx, call_next(handler_ctx))
                else:
                    result = await call_next(handler_ctx)
            finally:
                if marked is not None:
                    _GOVERNING.reset(marked)
                if reset is not None:
                    restore_tokens(reset)
            return result

        outcome: HandlerResult = await governor.run(gctx, terminal, outcome_of=_outcome_of, precheck=precheck)
        return outcome

    def _mark(self, kind: str | None, target: str | None) -> contextvars.Token[tuple[_Handling, ...]] | None:
        """Let the handler run exactly ``kind`` ``target`` (see :func:`admitted`), on servers whose
        components check it; reset the returned token when the handler returns."""
        if not self.marks_handlers or kind is None or target is None:
            return None
        return _GOVERNING.set((*_GOVERNING.get(), _Handling(self, kind, target)))

    async def _validated(self, ctx: GovContext, raw_arguments: Any) -> tuple[GovContext, Callable[[GovContext], None]]:
        """``ctx`` validated strictly (:meth:`_strict`; on a FastMCP server, prompt arguments and
        template parameters also as FastMCP converts them), and the check to make once it is allowed.

        Why a request is invalid tells that its target exists and what it takes: only a caller
        the chain lets discover the target (see it listed) is told. For an invalid request the
        chain decides a discovery of the target, which runs nothing, and its refusal, or this
        one, is the answer. A URI that is not canonical, or a request choosing the version of a
        FastMCP component, is refused at once: that is the same whatever the server serves.

        Raises:
            InvalidRequest: the resource URI is not canonical, or a component version is chosen (audited).
        """
        try:
            if ctx.kind == "resource" and ctx.target is not None and ctx.method != "completion/complete":
                check_uri(ctx.target)
            if self.fastmcp is not None and ctx.target is not None:
                check_no_version_chosen(ctx.meta)
        except InvalidRequest as exc:
            await self.governor.refuse(ctx, exc)
            raise
        try:
            if self.fastmcp is not None and ctx.method in NAMED_METHODS and ctx.target is not None:
                await self._fastmcp_names(NAMED_METHODS[ctx.method], ctx.target)
            ctx = self._strict(ctx, raw_arguments)
            if self.fastmcp is not None and ctx.target is not None and ctx.method in _CONVERTED_BY_FASTMCP:
                await check_converted_text(self.fastmcp, ctx.method, ctx.target, raw_arguments)
            elif self.fastmcp is not None and ctx.target is not None and ctx.method == "tools/call":
                await check_guards(self.fastmcp, ctx.target)
                # Decided on, and handed to the tool, as FastMCP converts them (see decided_tool_arguments).
                decided = await decided_tool_arguments(self.fastmcp, ctx.target, raw_arguments)
                if decided is not None and decided is not raw_arguments:
                    ctx = ctx.replace(arguments=freeze_arguments(decided, self.governor.limits))
        except InvalidRequest as exc:
            return ctx.replace(action="discover", arguments=None, args_hash=None), _refusing(exc, ctx)
        return ctx, self._known_tool

    async def _fastmcp_names(self, kind: str, name: str) -> None:
        """Make the names a FastMCP server's requests are judged against (see :meth:`_check_name`)
        include ``name`` when the server serves it: a name no listing showed yet (a caller that
        never listed, a component added since) is judged beside every name the server serves now,
        read in process, so a name that can be mistaken for another is refused on use as it is
        hidden from listings."""
        if name in self._listed.get(kind, frozenset()):
            return
        self._listed[kind] = await served_names(self.fastmcp, kind)

    async def _listened(self, uris: tuple[str, ...], base: Mapping[str, Any]) -> list[str]:
        """The URIs of an allowed ``subscriptions/listen`` filter that the caller may subscribe to.

        Each is decided by the whole chain as a ``resources/subscribe`` of that URI (identity,
        credentials, policy: the decision a handshake-era subscribe gets), and audited as one.
        A URI whose decision denies, asks for approval or fails is left out; the stream then
        acknowledges, and delivers, only the others.
        """
        governor = self.governor
        allowed: list[str] = []
        for uri in uris:
            ctx = await governor.begin(
                LISTEN_SUBSCRIBE_METHOD, None, kind="resource", target=uri, action="execute", **base
            )
            try:
                ctx = self._strict(ctx, None)
            except InvalidRequest as exc:
                await governor.refuse(ctx, exc)
                continue
            if await self._decided_allow(ctx):
                allowed.append(uri)
        return allowed

    async def _decided_allow(self, ctx: GovContext) -> bool:
        """Whether the chain allows ``ctx`` (a decision with no effect of its own; refusals audited)."""
        try:
            await self.governor.run(ctx, _allowed)
        except Exception:  # noqa: BLE001 - refused (audited by the run) or failed: fail closed
            return False
        return True


class _Handling:
    """What the handler of a request a chain allowed may run on a FastMCP server: exactly the
    target decided on, once (``kind`` ``"list"``: listings of the ``target`` kind)."""

    __slots__ = ("governance", "kind", "target", "used")

    def __init__(self, governance: ServerGovernance, kind: str, target: str) -> None:
        self.governance = governance
        self.kind = kind
        self.target = target
        self.used = False


_GOVERNING: contextvars.ContextVar[tuple[_Handling, ...]] = contextvars.ContextVar("mcpgov_governing", default=())
"""What the running handlers were allowed to run, by chain (innermost last)."""


def _handling(governance: ServerGovernance) -> _Handling | None:
    for handling in reversed(_GOVERNING.get()):
        if handling.governance is governance:
            return handling
    return None


def admitted(governance: ServerGovernance, kind: str, target: str) -> bool:
    """Whether running the ``kind`` (``"tool"``, ``"resource"``, ``"prompt"``) ``target`` now is
    the effect of the request ``governance`` allowed on exactly that target. Consumes the
    allowance: one decision runs one component, so a component the chain allowed does not reach
    another in process (a proxy tool, a tool calling the server) on its strength."""
    handling = _handling(governance)
    if handling is None or handling.used or handling.kind != kind or handling.target != target:
        return False
    handling.used = True
    return True


def listing_admitted(governance: ServerGovernance, kind: str) -> bool:
    """Whether listing ``kind`` now is the effect of a listing request ``governance`` allowed
    (whose entries the chain then filters), and not a listing made from within a component."""
    handling = _handling(governance)
    return handling is not None and handling.kind == "list" and handling.target == kind


def govern(
    server: MCPServer | Server[Any] | FastMCP[Any],
    *middleware: Middleware,
    audit: Auditor | Iterable[AuditCallback] | AuditCallback | None = None,
    limits: ArgumentLimits | None = None,
    names: NamePolicy | None = None,
) -> ServerGovernance:
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
        names: which tool and prompt names may be served (see :class:`NamePolicy`): by default,
            names that break the MCP naming rule or can be mistaken for another served name are
            refused here (already registered), hidden from listings and refused on use.

    Returns:
        The installed middleware, whose ``governor.auditor`` exposes delivery counters.

    Raises:
        ConfigurationError: no authoriser in the chain, the server is already governed, or it
            serves a name that ``names`` refuses, or a tool runs a function guarded
            (:meth:`Hooks.guard`) under other names only, or it is a FastMCP server of an
            unsupported version.
    """
    fastmcp_server = server if is_fastmcp(server) else None
    if fastmcp_server is not None:
        server = sdk_server(fastmcp_server)
    if isinstance(server, MCPServer):
        lowlevel: Server[Any] = compat.lowlevel_of(server)
        mcp_server: MCPServer | None = server
    elif isinstance(server, Server):
        lowlevel, mcp_server = server, None
    else:
        raise ConfigurationError(
            f"govern() takes an MCPServer, a lowlevel Server or a FastMCP 4 server, got {type(server).__name__}"
        )
    if any(isinstance(mw, ServerGovernance) for mw in lowlevel.middleware):
        raise ConfigurationError("this server is already governed; compose one chain instead of calling govern() twice")
    governor = Governor("server", middleware, audit=audit, limits=limits, require_authorizer=True)
    adapter = ServerGovernance(governor, lowlevel, mcp_server, names)
    if mcp_server is not None:
        unguarded = [
            problem
            for name in compat.tool_names(mcp_server)
            if (problem := guard_problem(getattr(compat.tool_of(mcp_server, name), "fn", None), name)) is not None
        ]
        if unguarded:
            raise ConfigurationError(
                "refusing to govern a server whose guards would not be asked: " + "; ".join(unguarded)
            )
        for kind, served in (("tool", compat.tool_names(mcp_server)), ("prompt", compat.prompt_names(mcp_server))):
            refused = adapter.names.refused(kind, served)
            if refused:
                listed = "; ".join(f"{name!r}: {why}" for name, why in sorted(refused.items()))
                raise ConfigurationError(
                    f"refusing to govern a server with unsafe names ({listed}); rename them, or keep a legacy "
                    "name with govern(..., names=NamePolicy(allow={...}))"
                )
    lowlevel.middleware.append(adapter)
    _check_param_headers_after_the_decision(lowlevel, adapter)
    if fastmcp_server is not None:
        # A FastMCP server's tools, resources and prompts are also reached past its SDK server:
        # mounted into another FastMCP server, or called in process. They run only as the
        # handler of a request this chain allowed.
        adapter.marks_handlers = True
        adapter.reserved_tool_name = addressed_by_identity
        adapter.fastmcp = fastmcp_server
        governed_only(fastmcp_server, adapter)
    _flush_audit_on_shutdown(lowlevel, governor.auditor)
    return adapter


_PARAM_HEADER_PREFIX = MCP_PARAM_HEADER_PREFIX.lower()


def _no_input_schema(name: str) -> Mapping[str, Any] | None:
    """What the SDK's pre-dispatch ``Mcp-Param-*`` check reads on a governed server: no schema."""
    return None


def _check_param_headers_after_the_decision(lowlevel: Server[Any], adapter: ServerGovernance) -> None:
    """Move the SDK's ``Mcp-Param-*`` header check behind the decision.

    On 2026-07-28 HTTP the SDK checks a ``tools/call``'s ``Mcp-Param-*`` headers against the tool's
    input schema (``get_tool_input_schema``) before any middleware: its 400 told every caller
    that a tool exists and which arguments it mirrors into headers. The SDK now reads no schema
    there, and the adapter makes the same check once the chain allowed the call. A server without
    the lookup is left alone: the SDK then reads the schema from its ``tools/list``, which the chain
    filters to what the caller may discover.
    """
    lookup = lowlevel.get_tool_input_schema
    if lookup is None:
        return
    adapter.tool_input_schema = lookup
    adapter._validator.input_schema = lookup  # arguments are still validated against it, before the decision
    lowlevel.get_tool_input_schema = _no_input_schema


class _FlushingLifespan:
    """A server's lifespan whose end first flushes queued audit sinks. The SDK enters the
    lifespan once per connection in-process: a small object, not a generator frame, per session."""

    __slots__ = ("_auditor", "_inner")

    def __init__(self, inner: AbstractAsyncContextManager[Any], auditor: Auditor) -> None:
        self._inner = inner
        self._auditor = auditor

    async def __aenter__(self) -> Any:
        return await self._inner.__aenter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool | None:
        try:
            with anyio.CancelScope(shield=True):
                await self._auditor.aflush()
        except BaseException as failure:
            if not await self._inner.__aexit__(type(failure), failure, failure.__traceback__):
                raise
            return True
        return await self._inner.__aexit__(exc_type, exc, tb)


def _flush_audit_on_shutdown(lowlevel: Server[Any], auditor: Auditor) -> None:
    """Wrap the server's lifespan so queued audit sinks are flushed when it ends."""
    original: Callable[[Server[Any]], AbstractAsyncContextManager[Any]] = lowlevel.lifespan

    def lifespan(app: Server[Any]) -> AbstractAsyncContextManager[Any]:
        return _FlushingLifespan(original(app), auditor)

    lowlevel.lifespan = lifespan
