"""The gateway: a governed SDK server in front, governed SDK clients behind."""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import logging
import os
import signal
import sys
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http import EventStore
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, SubscriptionBus
from mcp.shared.subscriptions import ResourceUpdated, event_from_wire
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcpgov._arguments import ArgumentLimits
from mcpgov._audit import AuditCallback, AuditEvent, Auditor
from mcpgov._chain import CallNext, Middleware
from mcpgov._contain import contained
from mcpgov._context import GovContext
from mcpgov._errors import ConfigurationError, McpGovError, PinningError
from mcpgov._governor import as_auditor
from mcpgov._principal import Principal
from mcpgov._protocols import LISTING_PAGE_CAP
from mcpgov._sdk.compat import connection_of
from mcpgov._server import STANDING_CHECK_INTERVAL, ServerGovernance, audit_expiry, authority_lapsed, govern
from mcpgov._types import thaw
from mcpgov.approval._elicit import STATE_PREFIX as APPROVAL_STATE_PREFIX
from mcpgov.credentials._logs import redact_known_secrets
from mcpgov.gateway._config import GatewayConfig, UpstreamConfig
from mcpgov.gateway._routing import NameKind, Namespace, Router
from mcpgov.gateway._upstream import (
    CURRENT,
    FrontCall,
    Relay,
    SecretRedactor,
    Upstream,
    UpstreamUnavailable,
    _InputRelay,
    scrub,
    scrub_data,
    scrubbed,
)
from mcpgov.pinning import ServerRegistry

__all__ = ["Gateway"]

logger = logging.getLogger("mcpgov.gateway")


class _Decided:
    """Innermost front stage: remembers the context the chain allowed, for the handler to forward.

    The gate runs right after it with this very context, so the handler forwards exactly the
    frozen arguments that were decided on, never a re-read of the raw request.
    """

    def __init__(self) -> None:
        import contextvars  # noqa: PLC0415 - local to keep the module namespace small

        self.var: contextvars.ContextVar[GovContext | None] = contextvars.ContextVar(
            "mcpgov_gateway_decided", default=None
        )

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        token = self.var.set(ctx)
        try:
            return await call_next(ctx)
        finally:
            self.var.reset(token)


class Gateway:
    """A governed MCP endpoint in front of one or more upstream servers.

    The front is a lowlevel SDK :class:`~mcp.server.lowlevel.Server` governed by
    :func:`~mcpgov.govern` with ``middleware`` (identity, credentials, policy, approval...);
    each upstream is reached through a :class:`~mcpgov.GovernedClient` whose chain holds the
    approved-server registry and the upstream's pinned tools. A request the front chain does
    not allow never reaches an upstream, and what is forwarded is exactly what was decided on
    (the chain's frozen arguments).

    Use it as an async context manager (it owns the upstream processes), then serve
    :attr:`server` in-process, :meth:`http_app` over Streamable HTTP, or :meth:`serve_stdio`::

        async with Gateway(upstreams, registry, identity, policy, audit=sink) as gateway:
            async with Client(gateway.server) as agent:
                await agent.call_tool("time_get_current_time", {"timezone": "UTC"})

    Args:
        upstreams: the upstream settings (:class:`~mcpgov.gateway.UpstreamConfig`).
        registry: the approved-server registry holding each upstream's entry and pin.
        middleware: the front chain, outermost first (at least one authoriser).
        audit: the gateway's auditor or audit callbacks (front decisions, upstream refusals).
        name: the gateway's server name.
        limits: bounds on request arguments.
        base_dir: what relative paths in upstream settings are relative to.
        environ: where upstream secrets are read from (default ``os.environ``).
        servers: in-process server objects by upstream id, used instead of the registry's
            ``url``/``command`` (embedding and tests).
        on_status: receives one-line status messages while upstreams start.
        drain_timeout: seconds the requests in flight get to finish when the gateway is left.
        subscriptions: the bus 2026-07-28 agents' ``subscriptions/listen`` streams take resource
            updates from (default: in-process; pass one over a shared pub/sub backend for several
            replicas). List changes name no upstream: each gateway hands its own upstreams' ones
            only to the streams of agents the upstream serves, never through this bus.

    Raises:
        ConfigurationError: an upstream is not in the registry, or namespacing is ambiguous
            (including pinned tools of two upstreams whose gateway names collide).
    """

    def __init__(
        self,
        upstreams: Sequence[UpstreamConfig],
        registry: ServerRegistry,
        *middleware: Middleware,
        audit: Auditor | Iterable[AuditCallback] | AuditCallback | None = None,
        name: str = "mcpgov-gateway",
        limits: ArgumentLimits | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        servers: Mapping[str, Any] | None = None,
        on_status: Callable[[str], None] | None = None,
        drain_timeout: float = 10.0,
        subscriptions: SubscriptionBus | None = None,
    ) -> None:
        if not upstreams:
            raise ConfigurationError("a gateway needs at least one upstream")
        self.auditor = as_auditor(audit)
        self.registry = registry
        self.on_status = on_status
        self.drain_timeout = drain_timeout
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        env = os.environ if environ is None else environ
        namespaces = []
        for up in upstreams:
            if up.id not in registry:
                raise ConfigurationError(f"upstream {up.id!r} is not in the approved-server registry")
            resource_prefix = up.namespace.resource_prefix
            namespaces.append(
                Namespace(
                    up.id,
                    prefix=up.namespace.prefix,
                    resource_prefix=f"{up.id}+" if resource_prefix is None else resource_prefix,
                    tools=dict(up.namespace.tools),
                    prompts=dict(up.namespace.prompts),
                )
            )
        self.router = Router(namespaces)
        pinned: dict[str, list[str]] = {}
        for up in upstreams:
            try:
                pinned[up.id] = list(registry.manifest(up.id).tools)
            except PinningError as exc:
                raise ConfigurationError(f"upstream {up.id!r}: {exc.detail}") from exc
        self.router.check_pinned(pinned)
        relay = Relay(
            list_changed=self._relay_list_changed, resource_updated=self._relay_resource_updated, status=self._status
        )
        servers = servers or {}

        def upstream(up: UpstreamConfig, mode: str) -> Upstream:
            config = up if up.mode == mode else up.model_copy(update={"mode": mode})
            return Upstream(
                config, registry, relay=relay, audit=self.auditor, base_dir=base, environ=env, server=servers.get(up.id)
            )

        self.upstreams: dict[str, Upstream] = {
            up.id: upstream(up, "legacy" if up.mode == "match" else up.mode) for up in upstreams
        }
        # mode "match": 2026-07-28 agents are served by a second connection, opened at first use.
        self._modern_upstreams: dict[str, Upstream] = {
            up.id: upstream(up.model_copy(update={"start": "lazy"}), "auto") for up in upstreams if up.mode == "match"
        }
        # What upstreams name (tools they list, errors) reaches audit events: scrubbed of their secrets.
        self._secret_key: tuple[tuple[str, ...], ...] = ()
        self._secret_forms: tuple[str, ...] = ()
        self.auditor.redactor = SecretRedactor(self.auditor.redactor, self._upstream_secrets)
        # ...and from every log record of this process that carries them (the SDK logs whole
        # messages at DEBUG; an upstream may hand its secret back in a result or an error).
        redact_known_secrets(self._scrub_secrets)
        self._decided = _Decided()
        # The agents' sessions able to hear notifications, with the tenant and principal their
        # requests were decided for (a handshake-era session is bound to one). What authorised
        # each session's latest request and each of its subscribes is kept on the session itself
        # (see _hearing): held here, it would keep every session it names alive.
        self._connections: weakref.WeakKeyDictionary[Any, tuple[str | None, Principal | None]] = (
            weakref.WeakKeyDictionary()
        )
        self._subscriptions: dict[str, weakref.WeakSet[Any]] = {}
        # The listen streams open now: what authorised each, and the upstream wants it holds.
        self._listens: dict[int, tuple[GovContext, list[tuple[Upstream, str]]]] = {}
        # 2026-07-28 agents: what the gateway relays is published here; the SDK's listen handler
        # streams each agent the events of its (governed) filter.
        self.subscriptions: SubscriptionBus = InMemorySubscriptionBus() if subscriptions is None else subscriptions
        self._listen_bus = _ListenBus(self.subscriptions, self._serves_uri)
        self._listen_handler = ListenHandler(self._listen_bus)
        self._log_levels: weakref.WeakKeyDictionary[Any, types.LoggingLevel] = weakref.WeakKeyDictionary()
        self._task_group: TaskGroup | None = None
        self._standing: anyio.CancelScope | None = None
        # What the gateway's own tasks (upstream connections, relays) run in: the context it was
        # entered in, never that of the agent's request that happened to start or wake them.
        self._context = contextvars.Context()
        self._exit_stack: AsyncExitStack | None = None
        self.draining = False
        self._http_requests = 0
        self._http_idle = anyio.Event()
        from mcpgov import __version__  # noqa: PLC0415 - the package's own version, read once

        self.server: Server[Any] = Server(
            name,
            version=__version__,
            on_list_tools=self._lister(_TOOLS),
            on_call_tool=self._forwarder("tool", _call_tool),
            on_list_resources=self._lister(_RESOURCES),
            on_list_resource_templates=self._lister(_TEMPLATES),
            on_read_resource=self._read_resource,
            on_subscribe_resource=self._subscribe,
            on_unsubscribe_resource=self._unsubscribe,
            on_list_prompts=self._lister(_PROMPTS),
            on_get_prompt=self._forwarder("prompt", _get_prompt),
            on_completion=self._complete,
            on_subscriptions_listen=self._listen,
        )
        # Registered directly: the keyword form is deprecated (logging is gone at 2026-07-28), yet
        # legacy agents still set their level, which the gateway applies to relayed log messages.
        self.server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_level)
        self.governance: ServerGovernance = govern(
            self.server, *middleware, self._decided, audit=self.auditor, limits=limits
        )

    def __repr__(self) -> str:
        return f"Gateway(upstreams={list(self.upstreams)!r})"

    @classmethod
    def from_config(
        cls,
        config: GatewayConfig,
        *,
        base_dir: str | os.PathLike[str],
        environ: Mapping[str, str] | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> Gateway:
        """Build a gateway from a validated configuration (see :func:`~mcpgov.gateway.load_config`).

        Raises:
            ConfigurationError: a referenced file is missing or invalid, or namespacing is ambiguous.
        """
        from mcpgov.gateway._build import build_chain, build_state  # noqa: PLC0415 - keeps the optional parts lazy

        base = Path(base_dir)
        # One shared store: replicas agree on revocations, limits and the newest pin of each upstream.
        state = build_state(config)
        registry = (
            ServerRegistry.from_file(base / config.registry, state=state)
            if isinstance(config.registry, str)
            else ServerRegistry.from_mapping(config.registry, base_dir=base, source="registry (inline)", state=state)
        )
        chain, auditor = build_chain(config, base_dir=base, state=state)
        return cls(
            config.upstreams,
            registry,
            *chain,
            audit=auditor,
            name=config.name,
            base_dir=base,
            environ=environ,
            on_status=on_status,
            drain_timeout=config.drain_timeout,
        )

    def check(self) -> None:
        """Check what upstreams read only when they start: secret references resolve, ``cwd`` exists.

        Raises:
            ConfigurationError: naming the upstream and what is missing (never a secret's value).
        """
        for upstream in self.upstreams.values():
            upstream.check_settings()

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Gateway:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            tg = await stack.enter_async_context(anyio.create_task_group())
            self._task_group = tg
            self._context = _own_context(CURRENT, self._decided.var)
            self.draining = False
            for upstream in self._all_upstreams():
                upstream.bind(_starter(tg, upstream, self._context))
            self._standing = anyio.CancelScope()
            self._context.copy().run(tg.start_soon, self._standing_checks, self._standing)
            eager = [u for u in self.upstreams.values() if u.config.start == "eager"]
            for upstream in eager:
                upstream.ensure_started()
            await self._await_eager(eager)
        except BaseException:
            if self._standing is not None:
                self._standing.cancel()
            await stack.__aexit__(None, None, None)
            raise
        self._exit_stack = stack
        return self

    async def _await_eager(self, eager: list[Upstream]) -> None:
        """Wait for eager upstreams (each up to its start timeout), printing a status line."""
        if not eager:
            return
        deadline = max(u.config.start_timeout for u in eager)
        shown = -1
        with anyio.move_on_after(deadline):
            while True:
                ready = sum(u.state == "ready" for u in eager)
                if ready != shown:
                    self._status(f"starting upstreams: {ready}/{len(eager)} ready")
                    shown = ready
                if ready == len(eager):
                    return
                await anyio.sleep(0.05)
        waiting = ", ".join(f"{u.id!r} ({u.state})" for u in eager if u.state != "ready")
        self._status(f"not ready yet (serving the others, retrying these): {waiting}")

    def _status(self, line: str) -> None:
        if self.on_status is not None:
            self.on_status(line)

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.drain(self.drain_timeout)
        if self._standing is not None:
            self._standing.cancel()
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            await stack.__aexit__(*exc_info)
        self._task_group = None

    async def idle(self, grace: float) -> bool:
        """Wait (up to ``grace`` seconds) until no request is in flight, to any upstream or over HTTP.

        Returns:
            True when none is in flight, False when the time ran out.
        """
        with anyio.move_on_after(grace):
            for upstream in self._all_upstreams():
                await upstream.idle()
            while self._http_requests:  # their responses are written
                await self._http_idle.wait()
            return True
        return False

    async def drain(self, grace: float = 10.0) -> None:
        """Stop taking requests, let those in flight finish (up to ``grace`` seconds), then stop upstreams."""
        self.draining = True
        self._listen_handler.close()  # listening agents' streams end gracefully (they re-listen elsewhere)
        if any(u.stats.in_flight for u in self._all_upstreams()):
            self._status(f"draining: waiting up to {grace:g}s for the requests in flight")
        with anyio.move_on_after(grace):
            for upstream in self._all_upstreams():
                await upstream.close()
        for upstream in self._all_upstreams():
            upstream.mark_dead("gateway stopping")
        await self.auditor.aflush()

    def _scrub_secrets(self, text: str) -> str:
        """``text`` with every form of every started upstream's secrets replaced."""
        secrets = self._upstream_secrets()
        return scrub(text, secrets) if secrets else text

    def _upstream_secrets(self) -> tuple[str, ...]:
        """Every form of every started upstream's secrets, longest first."""
        key = tuple(u.secrets for u in self._all_upstreams())
        if key != self._secret_key:
            self._secret_forms = tuple(sorted({form for forms in key for form in forms}, key=len, reverse=True))
            self._secret_key = key
        return self._secret_forms

    def _all_upstreams(self) -> list[Upstream]:
        return [*self.upstreams.values(), *self._modern_upstreams.values()]

    def _upstream_for(self, upstream_id: str, front: FrontCall) -> Upstream:
        """The connection serving this agent: its era's one when the upstream's mode is ``match``.

        An agent that can receive server-to-client requests (a handshake-era session, whatever
        version it names) is served by the handshake-era connection, where upstreams send them.
        """
        if front.modern and not front.session.can_send_request:
            modern = self._modern_upstreams.get(upstream_id)
            if modern is not None:
                return modern
        return self.upstreams[upstream_id]

    @property
    def ready(self) -> bool:
        """True when no drain is under way and every eager upstream is connected."""
        return not self.draining and all(
            u.state == "ready" for u in self.upstreams.values() if u.config.start == "eager"
        )

    def status(self) -> dict[str, Any]:
        """Each upstream's state and counters (no secrets)."""
        return {
            uid: {
                "state": u.state,
                "starts": u.stats.starts,
                "failures": u.stats.failures,
                "in_flight": u.stats.in_flight,
                "last_error": u.stats.last_error,
            }
            for uid, u in self.upstreams.items()
        }

    # --- serving --------------------------------------------------------------------------------

    def http_app(
        self,
        *,
        path: str = "/mcp",
        host: str = "127.0.0.1",
        auth: Mapping[str, Any] | None = None,
        stateless: bool = False,
        event_store: EventStore | None = None,
        retry_interval: int | None = None,
    ) -> Starlette:
        """A Starlette app serving the gateway over Streamable HTTP, with ``/healthz`` and ``/readyz``.

        The app's lifespan enters the gateway (starting upstreams) and drains it on shutdown.

        Args:
            path: the MCP endpoint path.
            host: the host the app is served on (DNS-rebinding protection for loopback).
            auth: the SDK auth keywords (``token_verifier``, ``auth``), e.g. from
                :func:`mcpgov.identity.server_auth`.
            stateless: serve stateless Streamable HTTP.
            event_store: where SSE events are kept so that an agent whose stream broke resumes
                it (``Last-Event-ID``); without one, a broken stream is lost.
            retry_interval: the reconnection delay (milliseconds) announced to agents on SSE
                streams, when an ``event_store`` is given.
        """

        async def healthz(_: Request) -> JSONResponse:
            return JSONResponse({"status": "ok"})

        async def readyz(_: Request) -> JSONResponse:
            body = {"ready": self.ready, "upstreams": self.status()}
            return JSONResponse(body, status_code=200 if self.ready else 503)

        routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
        app = self.server.streamable_http_app(
            streamable_http_path=path,
            stateless_http=stateless,
            event_store=event_store,
            retry_interval=retry_interval,
            host=host,
            custom_starlette_routes=routes,
            **dict(auth or {}),
        )
        app.add_middleware(_CountRequests, gateway=self)
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(starlette: Starlette) -> AsyncIterator[None]:
            async with self, inner(starlette):
                yield

        app.router.lifespan_context = lifespan
        return app

    def bearer_auth(self, resource_server_url: str) -> dict[str, Any]:
        """The SDK auth keywords making the HTTP front verify agents' bearer identity tokens.

        Uses the identity stage of the front chain (:class:`~mcpgov.identity.IdentityMiddleware`)
        and names its first issuer as the authorization server. Pass the result to
        :meth:`http_app` as ``auth``.

        Raises:
            ConfigurationError: the front chain has no identity stage.
        """
        from mcpgov.identity import IdentityMiddleware, server_auth  # noqa: PLC0415

        identity = next((mw for mw in self.governance.governor.middleware if isinstance(mw, IdentityMiddleware)), None)
        if identity is None:
            raise ConfigurationError("the gateway's chain has no IdentityMiddleware to verify bearer tokens")
        issuer = next(iter(identity.verifier.issuers))
        keywords = server_auth(
            identity, resource_server_url=resource_server_url, authorization_server=issuer, audit=self.auditor
        )
        # The front itself never returns input-required results (the upstreams' ones are answered
        # by the back clients), so only the bearer verification applies to a lowlevel server.
        return {"token_verifier": keywords["token_verifier"], "auth": keywords["auth"]}

    async def serve_stdio(self) -> None:
        """Serve the gateway on this process's stdin and stdout until the agent disconnects."""
        from mcp.server.stdio import stdio_server  # noqa: PLC0415 - only the stdio front needs it

        async with self, stdio_server() as (read, write), anyio.create_task_group() as tg:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        self.draining = True  # new requests are refused from now on
                        self._listen_handler.close()
                        await self.idle(self.drain_timeout)
                        tg.cancel_scope.cancel()
                        return

            if sys.platform != "win32":  # pragma: no branch - signals as POSIX knows them
                tg.start_soon(on_signal)
            await self.server.run(read, write, self.server.create_initialization_options())
            tg.cancel_scope.cancel()

    # --- relays to agents -----------------------------------------------------------------------

    def _remember(self, sctx: ServerRequestContext[Any, Any], decided: GovContext) -> None:
        connection = connection_of(sctx.session)
        if connection is not None and getattr(connection, "has_standalone_channel", True):
            self._connections[connection] = (decided.tenant, decided.principal)
            self._hearing(connection).latest = decided

    async def _relay_list_changed(self, upstream: str, method: str) -> None:
        # Called from the upstream connection's receive path: listing from here would wait on
        # that same path, so the re-check and the relay run as their own task.
        tg = self._task_group
        if tg is None:
            return
        self._context.copy().run(tg.start_soon, self._recheck_then_relay, upstream, method)

    async def _recheck_then_relay(self, upstream: str, method: str) -> None:
        modern = self._modern_upstreams.get(upstream)
        if modern is not None:
            # One era's connection heard it; the other's pin verification is reset too.
            for candidate in (self.upstreams[upstream], modern):
                candidate.forget_verified(method)
        if method == "notifications/tools/list_changed":
            await self.upstreams[upstream].recheck_pins()
        await self._release_withdrawn(upstream)
        approved = self.registry.get(upstream)
        connections = [
            (connection, self._hearing(connection).latest)
            for connection, (tenant, principal) in list(self._connections.items())
            # An agent this upstream does not serve hears nothing of its changes.
            if approved is not None and approved.refusal(tenant, principal) is None
        ]
        await self._notify(upstream, connections, method, None)
        event = event_from_wire(method, None)
        if event is not None:
            # Only to the listen streams of agents this upstream serves (never on the shared bus,
            # where an event names no upstream: every replica relays its own connections' changes).
            self._listen_bus.list_changed(
                event, lambda tenant, principal: approved is not None and approved.refusal(tenant, principal) is None
            )

    def _serves_uri(self, uri: str, tenant: str | None, principal: Principal | None) -> bool:
        """Whether the upstream serving the front ``uri`` is approved, now, for this agent."""
        route = self.router.route_uri(uri)
        approved = self.registry.get(route[0]) if route is not None else None
        return approved is not None and approved.refusal(tenant, principal) is None

    async def _relay_resource_updated(self, upstream: str, uri: str) -> None:
        front = self.router.namespaces[upstream].front_uri(uri)
        await self._release_withdrawn(upstream)
        approved = self.registry.get(upstream)
        connections: list[tuple[Any, GovContext | None]] = [
            (connection, want.decided)
            for connection in list(self._subscriptions.get(front, ()))
            for want in (self._hearing(connection).subscribed.get(front),)
            # Only while the registry lets the upstream serve the agent (as for list changes).
            if want is not None
            and approved is not None
            and approved.refusal(want.decided.tenant, want.decided.principal) is None
        ]
        await self._notify(upstream, connections, "notifications/resources/updated", {"uri": front})
        await self._publish(ResourceUpdated(uri=front))

    async def _notify(
        self,
        upstream: str,
        connections: list[tuple[Any, GovContext | None]],
        method: str,
        params: dict[str, Any] | None,
    ) -> None:
        """Send ``method`` to every agent of ``connections`` together, each within the upstream's
        ``timeout``: an agent that is gone or does not read holds up no other. An agent is told
        only while what authorised it lasts (see :meth:`_still_authorised`)."""
        bound = self.upstreams[upstream].config.timeout

        async def one(connection: Any, decided: GovContext | None) -> None:
            with anyio.move_on_after(bound):
                try:
                    if decided is None or not await self._still_authorised(connection, decided):
                        return  # nothing known to authorise it (fail closed), or no longer
                    await connection.notify(method, params)
                except Exception:  # noqa: BLE001 - a gone agent must not stop the others' notifications
                    logger.debug("could not relay %s to an agent", method)

        async with anyio.create_task_group() as tg:
            for connection, decided in connections:
                tg.start_soon(one, connection, decided)

    async def _still_authorised(self, connection: Any, decided: GovContext) -> bool:
        """Whether ``connection`` may still hear what ``decided`` let it hear: neither its identity
        token nor its credential has expired (the earlier ``exp``), and every standing check of
        the decision (a credential's lifetime and revocation) still passes.

        Otherwise (refused, or the check failed: fail closed) the connection is forgotten, so it
        hears nothing more of any subscription or list change until a new request of it is
        decided again; an expiry is audited once, with the caller (a refused check audits itself).
        """
        lapsed = await authority_lapsed(decided)
        if lapsed is None:
            return True
        if await self._forget(connection, decided) and lapsed == "expired":
            await audit_expiry(decided, "the notifications it let the session hear were ended at its expiry")
        return False

    def _hearing(self, connection: Any) -> _Hearing:
        """What authorised ``connection`` to hear what this gateway relays, kept on the connection."""
        held: dict[Gateway, _Hearing] | None = getattr(connection, _HEARING, None)
        if held is None:
            held = {}
            setattr(connection, _HEARING, held)
        hearing = held.get(self)
        if hearing is None:
            hearing = held[self] = _Hearing()
        return hearing

    async def _forget(self, connection: Any, decided: GovContext) -> bool:
        """Forget every want of ``connection`` made under ``decided`` (True when there was one):
        its list changes, its subscriptions (each upstream want given up)."""
        hearing = self._hearing(connection)
        forgotten = False
        if hearing.latest is decided:
            hearing.latest = None
            self._connections.pop(connection, None)
            forgotten = True
        for uri, want in list(hearing.subscribed.items()):
            if want.decided is decided:
                forgotten = True
                await self._drop(connection, uri)
        return forgotten

    async def _drop(self, connection: Any, uri: str) -> None:
        """Forget ``connection``'s subscription to ``uri`` and give up its upstream want, once:
        whoever takes it out of the session's hearing (an unsubscribe, a lapsed authority, the
        session's end) is the one that releases it. Never raises."""
        want = self._hearing(connection).subscribed.pop(uri, None)
        subscribers = self._subscriptions.get(uri)
        if subscribers is not None:
            subscribers.discard(connection)
            if not subscribers:
                self._subscriptions.pop(uri, None)
        if want is not None:
            with anyio.CancelScope(shield=True):
                await want.upstream.unwant(want.uri)

    def _serves(self, upstream_id: str, decided: GovContext) -> bool:
        """Whether the registry lets ``upstream_id`` serve the agent ``decided`` was decided for, now."""
        try:
            return self.upstreams[upstream_id].serves(decided)
        except Exception:  # noqa: BLE001 - a verdict that cannot be had serves nothing
            return False

    async def _release_withdrawn(self, upstream_id: str) -> None:
        """Give up every want of ``upstream_id`` held for an agent the registry no longer lets it
        serve (an approval withdrawn for its tenant or workload, the entry removed): handshake-era
        sessions' subscriptions and listen streams' URIs, each want released once (whoever takes
        it out of what holds it releases it). Other agents' wants of the same URIs stay. Never raises."""
        for uri, subscribers in list(self._subscriptions.items()):
            route = self.router.route_uri(uri)
            if route is None or route[0] != upstream_id:
                continue
            for connection in list(subscribers):
                want = self._hearing(connection).subscribed.get(uri)
                if want is not None and not self._serves(upstream_id, want.decided):
                    await self._drop(connection, uri)
        for decided, held in list(self._listens.values()):
            if self._serves(upstream_id, decided):
                continue
            for item in [item for item in held if item[0].id == upstream_id]:
                if item in held:  # taken out and released with no await between: once
                    held.remove(item)
                    with anyio.CancelScope(shield=True):
                        await item[0].unwant(item[1])

    async def _standing_checks(self, scope: anyio.CancelScope) -> None:
        """While the gateway runs: every ``STANDING_CHECK_INTERVAL`` seconds, the upstream wants
        held for agents whose authority lapsed are given up (:meth:`_release_lapsed`)."""
        with scope:
            while True:
                await anyio.sleep(STANDING_CHECK_INTERVAL)
                try:
                    await self._release_lapsed()
                except BaseException as exc:
                    if not await contained(exc):
                        raise
                    # Any other failure, a BaseException subclass or a stray CancelledError too,
                    # must not end these checks or the gateway's task group: the next round checks again.
                    logger.warning("could not check what the agents' subscriptions still stand on")

    async def _release_lapsed(self) -> None:
        """Give up every upstream want held for an agent whose authority lapsed, without waiting
        for a change of the upstream to find it: the registry no longer lets the upstream serve
        the agent (handshake-era subscriptions and listen streams), or the identity token or
        credential of a handshake-era subscribe expired or was revoked (a listen stream ends
        then, releasing its own). Each want is released once; others' wants of the URI stay."""
        for upstream_id in self.upstreams:
            await self._release_withdrawn(upstream_id)
        checked: set[int] = set()
        for uri, subscribers in list(self._subscriptions.items()):
            for connection in list(subscribers):
                want = self._hearing(connection).subscribed.get(uri)
                if want is None or id(want.decided) in checked:
                    continue
                checked.add(id(want.decided))
                await self._still_authorised(connection, want.decided)

    async def _session_ended(self, connection: Any) -> None:
        """An agent's session ended (closed, dropped, cancelled, failed): everything it holds in
        this gateway is given up, each upstream want once. Never raises."""
        hearing = self._hearing(connection)
        hearing.ended = True
        hearing.latest = None
        self._connections.pop(connection, None)
        self._log_levels.pop(connection, None)
        for uri in list(hearing.subscribed):
            await self._drop(connection, uri)

    def _hook_end(self, connection: Any, hearing: _Hearing) -> bool:
        """Make the end of ``connection``'s session release what it holds (once per session).

        Returns:
            False when the session's end cannot be told (nothing may then be kept for it).
        """
        if hearing.hooked:
            return True
        exit_stack = getattr(connection, "exit_stack", None)
        if not isinstance(exit_stack, AsyncExitStack):
            return False
        exit_stack.push_async_callback(self._session_ended, connection)
        hearing.hooked = True
        return True

    async def _publish(self, event: Any) -> None:
        """Hand ``event`` to the listen streams of 2026-07-28 agents (each delivers it only within its filter)."""
        try:
            await self.subscriptions.publish(event)
        except Exception:  # noqa: BLE001 - a failing bus must not stop the relay to handshake-era agents
            logger.warning("could not publish a change event to listening agents")

    # --- forwarding -----------------------------------------------------------------------------

    def _decided_context(self) -> GovContext:
        decided = self._decided.var.get()
        if decided is None:
            # Only reachable if something bypassed the governed chain: refuse.
            raise McpGovError("the gateway received a request its chain did not decide", reason="undecided")
        return decided

    def _front(self, sctx: ServerRequestContext[Any, Any]) -> FrontCall:
        if self.draining:
            raise UpstreamUnavailable("the gateway is shutting down", reason="draining")
        decided = self._decided_context()
        self._remember(sctx, decided)
        connection = connection_of(sctx.session)
        level = self._log_levels.get(connection) if connection is not None else None
        return FrontCall(decided, sctx.session, sctx.request_id, log_level=level)

    async def _set_level(
        self, sctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        """An agent's ``logging/setLevel``: applied to the log messages relayed to that agent.

        Upstreams are shared by every agent, so the level is not forwarded: each upstream logs
        at ``debug`` to the gateway, and each agent receives what is at or above its own level.
        """
        self._front(sctx)
        connection = connection_of(sctx.session)
        if connection is not None:
            self._log_levels[connection] = params.level
        return types.EmptyResult()

    def _error(self, upstream: Upstream, exc: MCPError, front_uri: str | None = None) -> MCPError:
        """An upstream's error as the agent sees it: code and message, secrets scrubbed, no data.

        The data kept is what the protocol defines for the agent to act on: the resource an error
        is about (``data.uri`` of "resource not found", as the URI the agent asked for), and the
        client capabilities a request needs (``data.requiredCapabilities`` of -32021, re-validated).
        """
        if isinstance(exc.__cause__, McpGovError):
            return exc  # the back chain's own refusal (pinning, registry): already clean
        data: dict[str, Any] | None = None
        if front_uri is not None and isinstance(exc.error.data, Mapping) and "uri" in exc.error.data:
            data = {"uri": front_uri}
        elif exc.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY and isinstance(exc.error.data, Mapping):
            try:
                required = types.MissingRequiredClientCapabilityErrorData.model_validate(exc.error.data)
            except ValueError:
                data = None
            else:
                # Scrubbed like the message: the upstream chose every string in it.
                data = scrub_data(required.model_dump(by_alias=True, mode="json", exclude_none=True), upstream.secrets)
        return MCPError(exc.code, scrub(exc.message, upstream.secrets), data)

    @asynccontextmanager
    async def _forward(self, upstream_id: str, front: FrontCall, front_uri: str | None = None) -> AsyncIterator[Any]:
        upstream = self._upstream_for(upstream_id, front)
        token = CURRENT.set(front)
        try:
            async with upstream.use(front) as client:
                front.secrets = upstream.secrets  # read once it started: what its relays are scrubbed of
                try:
                    yield client
                except _InputRelay:
                    raise
                except MCPError as exc:
                    raise self._error(upstream, exc, front_uri) from None
        finally:
            CURRENT.reset(token)

    def _forwarder(
        self, kind: NameKind, send: Callable[[Any, str, dict[str, Any] | None, FrontCall, Any], Awaitable[_R]]
    ) -> Callable[[ServerRequestContext[Any, Any], Any], Awaitable[_R | types.InputRequiredResult]]:
        """The front handler of a tool call or prompt get: ``send(client, upstream name, arguments,
        front, params)`` forwards what the chain decided (never what the agent first sent)."""

        async def handler(sctx: ServerRequestContext[Any, Any], params: Any) -> _R | types.InputRequiredResult:
            front = self._front(sctx)
            decided = front.decided
            route = self.router.route(kind, decided.target) if decided.target is not None else None
            if route is None:
                raise MCPError(types.INVALID_PARAMS, f"Unknown {kind}: {decided.target}")
            upstream_id, upstream_name = route
            arguments = thaw(decided.arguments) if decided.arguments is not None else None
            responses, state = _round_of(upstream_id, params)
            params = params.model_copy(update={"input_responses": responses, "request_state": state})
            try:
                async with self._forward(upstream_id, front) as client:
                    return scrubbed(await send(client, upstream_name, arguments, front, params), front.secrets)
            except _InputRelay as relay:
                return _relayed(upstream_id, scrubbed(relay.result, front.secrets))

        return handler

    async def _listing(
        self, sctx: ServerRequestContext[Any, Any], kind: str, fetch: Callable[[Any], Any]
    ) -> list[tuple[str, Any]]:
        """Every started (or startable) upstream's entries, fetched for the front call ``sctx``; an
        upstream that is down is left out. The upstreams are asked together: one that hangs (until
        its ``timeout``) delays the listing once, not once per upstream."""
        front = self._front(sctx)
        fetched: dict[str, list[Any]] = {}

        async def one(upstream_id: str) -> None:
            try:
                async with self._forward(upstream_id, front) as client:
                    # Read before any await: the other upstreams' fetches set their own on ``front``.
                    secrets = front.secrets
                    entries = await fetch(client)
            except ListingRefused as exc:
                logger.warning("upstream %s left out of a %s listing: %s", upstream_id, kind, exc.detail)
                await self._left_out(front, upstream_id, kind, exc)
                return
            except Exception as exc:  # noqa: BLE001 - one broken upstream must not hide the others' entries
                logger.info("upstream %s left out of a %s listing (%s)", upstream_id, kind, type(exc).__name__)
                await self._left_out(front, upstream_id, kind, exc)
                return
            fetched[upstream_id] = [scrubbed(entry, secrets) for entry in entries]

        token = CURRENT.set(front)
        try:
            async with anyio.create_task_group() as tg:
                for upstream_id in self.upstreams:
                    tg.start_soon(one, upstream_id)
        finally:
            CURRENT.reset(token)
        # In the upstreams' configured order, whichever answered first.
        return [(uid, entry) for uid in self.upstreams for entry in fetched.get(uid, ())]

    async def _left_out(self, front: FrontCall, upstream_id: str, kind: str, exc: BaseException) -> None:
        """Audit, with the caller, that an upstream's entries are missing from a listing and why
        (an mcpgov refusal's reason and detail; of anything else only its type, which holds no secret)."""
        if isinstance(exc, McpGovError):
            reason, detail, code = exc.reason, exc.detail, exc.code
        else:
            reason, detail, code = "upstream_error", f"the upstream's listing failed ({type(exc).__name__})", None
        event = AuditEvent.from_context(
            front.decided,
            "upstream.left_out",
            target=upstream_id,
            reason=reason,
            detail=f"upstream {upstream_id!r} left out of a {kind} listing: {detail}",
            error_code=code,
            attributes={"server_id": upstream_id, "listing": kind},
        )
        try:
            await self.auditor.emit(event, required=False)
        except Exception:  # noqa: BLE001 - the listing of the other upstreams goes on
            logger.warning("could not audit that upstream %s was left out of a %s listing", upstream_id, kind)

    def _lister(self, spec: _Listing[_R]) -> Callable[[ServerRequestContext[Any, Any], Any], Awaitable[_R]]:
        """The front handler of one listing: every upstream's entries, renamed into its namespace."""

        async def fetch(client: Any) -> list[Any]:
            if spec.capability is not None and getattr(client.server_capabilities, spec.capability) is None:
                return []
            method = getattr(client, spec.fetch)
            return await _all_pages(lambda cursor: method(cursor=cursor), spec.field, spec.key)

        async def handler(sctx: ServerRequestContext[Any, Any], params: Any) -> _R:
            entries = await self._listing(sctx, spec.kind, fetch)
            renamed = [
                entry.model_copy(update={spec.key: spec.front(self.router.namespaces[uid], entry)})
                for uid, entry in entries
            ]
            return spec.result.model_validate({spec.field: renamed})

        return handler

    def _route_uri(self, uri: str) -> tuple[str, str]:
        route = self.router.route_uri(uri)
        if route is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown resource: {uri}")
        return route

    async def _read_resource(
        self, sctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        front = self._front(sctx)
        uri = front.decided.target or ""
        upstream_id, upstream_uri = self._route_uri(uri)
        ns = self.router.namespaces[upstream_id]
        responses, state = _round_of(upstream_id, params)
        try:
            async with self._forward(upstream_id, front, front_uri=uri) as client:
                result: types.ReadResourceResult = await client.read_resource(
                    upstream_uri, input_responses=responses, request_state=state
                )
        except _InputRelay as relay:
            return _relayed(upstream_id, scrubbed(relay.result, front.secrets))
        result = scrubbed(result, front.secrets)
        contents = [c.model_copy(update={"uri": ns.front_uri(str(c.uri))}) for c in result.contents]
        return result.model_copy(update={"contents": contents})

    def _subscription(self, sctx: ServerRequestContext[Any, Any]) -> tuple[FrontCall, str, str, str, Any]:
        """A decided subscribe or unsubscribe: front call, front URI, upstream, upstream URI, agent connection."""
        front = self._front(sctx)
        uri = front.decided.target or ""
        upstream_id, upstream_uri = self._route_uri(uri)
        return front, uri, upstream_id, upstream_uri, connection_of(sctx.session)

    async def _subscribe(
        self, sctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        front, uri, upstream_id, upstream_uri, connection = self._subscription(sctx)
        subscribers = self._subscriptions.get(uri)
        if connection is not None and subscribers is not None and connection in subscribers:
            want = self._hearing(connection).subscribed.get(uri)
            if want is not None:
                # Already subscribed: one want per agent and URI, lasting as this subscribe's authority.
                self._hearing(connection).subscribed[uri] = _Want(front.decided, want.upstream, want.uri)
                return types.EmptyResult()
        upstream = self._upstream_for(upstream_id, front)
        async with self._forward(upstream_id, front) as client:
            upstream.check_caller(client, front.decided)
            if connection is None or not getattr(connection, "has_standalone_channel", False):
                # No channel an update could ever be sent on (stateless HTTP): nothing is wanted or kept.
                return types.EmptyResult()
            hearing = self._hearing(connection)
            if hearing.ended or not self._hook_end(connection, hearing):
                # A session whose end could not release it: nothing is wanted for it.
                raise MCPError(types.INTERNAL_ERROR, "Subscriptions are not available for this session")
            await upstream.want(client, upstream_uri)
        # Recorded with no await since the want: the session's end (or an unsubscribe) releases it.
        if hearing.ended or uri in hearing.subscribed:
            # The session ended meanwhile, or a concurrent subscribe of it recorded its own want.
            with anyio.CancelScope(shield=True):
                await upstream.unwant(upstream_uri)
            if uri in hearing.subscribed:
                hearing.subscribed[uri] = _Want(front.decided, hearing.subscribed[uri].upstream, upstream_uri)
            return types.EmptyResult()
        self._subscriptions.setdefault(uri, weakref.WeakSet()).add(connection)
        hearing.subscribed[uri] = _Want(front.decided, upstream, upstream_uri)
        await upstream.until_listened([upstream_uri])
        return types.EmptyResult()

    async def _unsubscribe(
        self, sctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        _, uri, _, _, connection = self._subscription(sctx)
        if connection is not None:
            await self._drop(connection, uri)
        return types.EmptyResult()

    async def _listen(
        self, sctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """A 2026-07-28 agent's ``subscriptions/listen``, served by the SDK's own listen handler.

        The front chain has decided the request and left in its filter only the resource URIs
        the agent may subscribe to (each decided as a ``resources/subscribe``). Of those, the
        ones whose upstream serves this agent (the registry's verdict) are wanted from their
        upstream for as long as the stream is open; the stream acknowledges and delivers those.
        """
        front = self._front(sctx)
        wanted: list[str] = []
        held: list[tuple[Upstream, str]] = []
        for upstream_id in self.upstreams:
            upstream = self._upstream_for(upstream_id, front)
            if upstream.serves(front.decided):  # an upstream that serves no stream of it is left alone
                upstream.ensure_started()  # its changes are listened to once up
        listener = _LISTENER.set((front.decided.tenant, front.decided.principal))
        self._listens[id(held)] = (front.decided, held)
        try:
            for uri in params.notifications.resource_subscriptions or ():
                route = self.router.route_uri(uri)
                if route is None:
                    continue  # no upstream serves it: nothing could ever be delivered
                upstream_id, upstream_uri = route
                upstream = self._upstream_for(upstream_id, front)
                try:
                    async with self._forward(upstream_id, front) as client:
                        upstream.check_caller(client, front.decided)
                        await upstream.want(client, upstream_uri)
                except Exception as exc:  # noqa: BLE001 - refused or unavailable: left out of the stream
                    logger.info("listen: %s left out (%s)", upstream_id, type(exc).__name__)
                    continue
                held.append((upstream, upstream_uri))
                wanted.append(uri)
            for upstream in {upstream for upstream, _ in held}:
                await upstream.until_listened([u for up, u in held if up is upstream])
            notifications = params.notifications.model_copy(update={"resource_subscriptions": wanted or None})
            return await self._listen_handler(sctx, params.model_copy(update={"notifications": notifications}))
        finally:
            _LISTENER.reset(listener)
            self._listens.pop(id(held), None)
            # Every want first (no await between them), then the upstreams are told.
            last = [(upstream, upstream_uri) for upstream, upstream_uri in held if upstream.release(upstream_uri)]
            with anyio.CancelScope(shield=True):
                for upstream, upstream_uri in last:
                    await upstream.unsubscribe(upstream_uri)

    async def _complete(
        self, sctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        front = self._front(sctx)
        decided = front.decided
        target = decided.target or ""
        ref: types.PromptReference | types.ResourceTemplateReference
        if decided.kind == "prompt":
            route = self.router.route("prompt", target)
            if route is None:
                raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {target}")
            upstream_id, name = route
            ref = types.PromptReference(type="ref/prompt", name=name)
        else:
            upstream_id, name = self._route_uri(target)
            ref = types.ResourceTemplateReference(type="ref/resource", uri=name)
        argument = thaw(decided.arguments) if decided.arguments is not None else {}
        # The chain decides the reference and the argument being completed, not the arguments
        # already filled in (``context.arguments``): they are not forwarded, so no value the
        # chain did not judge (one it would deny on a ``prompts/get``) reaches the upstream.
        async with self._forward(upstream_id, front) as client:
            self._upstream_for(upstream_id, front).check_caller(client, decided)
            result: types.CompleteResult = await client.complete(ref, argument, None)
        return scrubbed(result, front.secrets)


_LISTENER: contextvars.ContextVar[tuple[str | None, Principal | None] | None] = contextvars.ContextVar(
    "mcpgov_gateway_listener", default=None
)
"""The tenant and principal of the agent whose listen stream is subscribing to the bus."""

_Serves = Callable[[str | None, Principal | None], bool]
_ServesUri = Callable[[str, str | None, Principal | None], bool]


class _ListenBus:
    """What the front's listen streams subscribe to.

    Resource updates come from the shared bus (each stream's filter holds only the URIs decided
    for its agent), delivered while the registry lets the URI's upstream serve that agent. A list
    change names no upstream, so it is never taken from the shared bus: the gateway hands each
    one of its own upstreams' changes to the streams of the agents that upstream serves
    (:meth:`list_changed`), as it does for handshake-era agents.
    """

    def __init__(self, shared: SubscriptionBus, serves_uri: _ServesUri) -> None:
        self.shared = shared
        self._serves_uri = serves_uri
        self._local: dict[int, tuple[Callable[[Any], None], tuple[str | None, Principal | None]]] = {}

    async def publish(self, event: Any) -> None:
        await self.shared.publish(event)

    def subscribe(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        agent = _LISTENER.get()

        def updates(event: Any) -> None:
            # Only while the registry lets the URI's upstream serve the stream's agent, now.
            if not isinstance(event, ResourceUpdated) or agent is None:
                return
            try:
                serves = self._serves_uri(event.uri, *agent)
            except Exception:  # noqa: BLE001 - a verdict that cannot be had delivers nothing
                serves = False
            if serves:
                listener(event)

        unsubscribe_shared = self.shared.subscribe(updates)
        key = id(updates)
        if agent is not None:  # a stream opened for no decided agent hears no list change
            self._local[key] = (listener, agent)

        def unsubscribe() -> None:
            self._local.pop(key, None)
            unsubscribe_shared()

        return unsubscribe

    def list_changed(self, event: Any, serves: _Serves) -> None:
        """Hand ``event`` to every local stream whose agent (tenant, principal) ``serves`` accepts."""
        for listener, (tenant, principal) in list(self._local.values()):
            try:
                if serves(tenant, principal):
                    listener(event)
            except Exception:  # noqa: BLE001 - one stream must not stop the others' events
                logger.warning("could not hand a list change to a listen stream")


_HEARING = "_mcpgov_gateway_hearing"
"""The attribute of an agent's connection holding, per gateway, its :class:`_Hearing`."""


class _Hearing:
    """What authorised a handshake-era agent's connection to hear what a gateway relays: its
    latest decided request (list changes) and, per front URI, its subscribe (updates)."""

    __slots__ = ("ended", "hooked", "latest", "subscribed")

    def __init__(self) -> None:
        self.latest: GovContext | None = None
        # Per front URI: the subscribe that authorised it, and the upstream want it holds.
        self.subscribed: dict[str, _Want] = {}
        self.hooked = False  # the session's end releases what it holds (see Gateway._session_ended)
        self.ended = False


@dataclass(frozen=True, eq=False)
class _Want:
    """One agent session's subscription: what authorised it and the upstream want it holds."""

    decided: GovContext
    upstream: Upstream
    uri: str


class _CountRequests:
    """ASGI middleware: counts the MCP requests (POST) being answered, for a drain to wait on."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        gateway = self.gateway
        gateway._http_requests += 1
        try:
            await self.app(scope, receive, send)
        finally:
            gateway._http_requests -= 1
            if not gateway._http_requests:
                gateway._http_idle.set()
                gateway._http_idle = anyio.Event()


_R = TypeVar("_R", bound=BaseModel)


@dataclass(frozen=True)
class _Listing(Generic[_R]):
    """One kind of listing the gateway merges: how to fetch it from an upstream and rename its entries."""

    kind: Literal["tool", "prompt", "resource"]
    capability: str | None  # the upstream capability it needs (None: asked of every upstream)
    fetch: str  # the SDK client's method
    field: str  # the result's list field
    key: str  # the entry's field that names it at the front
    result: type[_R]

    def front(self, namespace: Namespace, entry: Any) -> str:
        """The entry's front name (tools and prompts) or URI (resources and templates)."""
        if self.kind == "resource":
            return namespace.front_uri(str(getattr(entry, self.key)))
        return namespace.front(self.kind, entry.name)


_TOOLS = _Listing("tool", None, "list_tools", "tools", "name", types.ListToolsResult)
_PROMPTS = _Listing("prompt", "prompts", "list_prompts", "prompts", "name", types.ListPromptsResult)
_RESOURCES = _Listing("resource", "resources", "list_resources", "resources", "uri", types.ListResourcesResult)
_TEMPLATES = _Listing(
    "resource",
    "resources",
    "list_resource_templates",
    "resource_templates",
    "uri_template",
    types.ListResourceTemplatesResult,
)


async def _call_tool(
    client: Any, name: str, arguments: dict[str, Any] | None, front: FrontCall, params: types.CallToolRequestParams
) -> types.CallToolResult:
    result: types.CallToolResult = await client.call_tool(
        name,
        arguments,
        progress_callback=front.progress,
        input_responses=params.input_responses,
        request_state=params.request_state,
    )
    return result


async def _get_prompt(
    client: Any, name: str, arguments: dict[str, Any] | None, _: FrontCall, params: types.GetPromptRequestParams
) -> types.GetPromptResult:
    result: types.GetPromptResult = await client.get_prompt(
        name, arguments, input_responses=params.input_responses, request_state=params.request_state
    )
    return result


_RELAYED_STATE = "mcpgov-gateway:"
"""What starts the request state of an upstream's ``input_required`` result as the agent gets it."""


def _relayed(upstream_id: str, result: types.InputRequiredResult) -> types.InputRequiredResult:
    """An upstream's ``input_required`` result as the agent gets it: its request state wrapped,
    naming the upstream and the input requests it made (what the agent's retry may answer it)."""
    body = {"u": upstream_id, "k": sorted(result.input_requests or {}), "s": result.request_state}
    wrapped = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode("ascii")
    return result.model_copy(update={"request_state": _RELAYED_STATE + wrapped})


def _round_of(upstream_id: str, params: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The input responses and request state of an agent's request that go to ``upstream_id``.

    * No request state: the agent's answers go on as it sent them (an upstream may ask without
      state, and ignores answers it does not recognise).
    * The state of a front stage's own round (an approval's ``mcpgov-approval:`` state): that
      round is the gateway's; the upstream gets neither the state nor the answers.
    * The state the gateway relayed from ``upstream_id``'s ``input_required`` result: that
      upstream's own state, unwrapped, with the answers to the requests it made.

    Raises:
        MCPError: any other state (tampered with, made up, or another upstream's): refused, as
            the upstream itself refuses a state that fails its integrity check; nothing is sent.
    """
    state = params.request_state
    responses = params.input_responses
    if state is None:
        return (dict(responses) if responses else None), None
    if isinstance(state, str) and state.startswith(APPROVAL_STATE_PREFIX):
        return None, None
    body: Any = None
    if isinstance(state, str) and state.startswith(_RELAYED_STATE):
        wrapped = state[len(_RELAYED_STATE) :]
        try:
            raw = base64.urlsafe_b64decode(wrapped.encode("ascii"))
            # Only the exact spelling the gateway wrote: a decoder that skips what follows the
            # padding, or characters outside the alphabet, would read a tampered state as intact.
            if base64.urlsafe_b64encode(raw).decode("ascii") == wrapped:
                body = json.loads(raw)
        except (ValueError, binascii.Error, UnicodeError, RecursionError):
            body = None
    keys = body.get("k") if isinstance(body, dict) else None
    inner = body.get("s") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or body.get("u") != upstream_id
        or not isinstance(keys, list)
        or not (inner is None or isinstance(inner, str))
    ):
        raise MCPError(types.INVALID_PARAMS, "Invalid request state")
    kept = {key: value for key, value in responses.items() if key in keys} if responses else {}
    return kept or None, inner


MAX_LISTING_PAGES = LISTING_PAGE_CAP
"""The most pages of one upstream listing the gateway walks."""
MAX_LISTING_ENTRIES = 10_000
"""The most entries one upstream listing may hold."""


class ListingRefused(McpGovError):
    """An upstream's listing cannot be used: its pages repeat a cursor, never end, or hold too many entries."""


async def _all_pages(
    fetch: Callable[[str | None], Any],
    attr: str,
    key: str,
    max_pages: int = MAX_LISTING_PAGES,
    max_entries: int = MAX_LISTING_ENTRIES,
) -> list[Any]:
    """Every entry of a paginated listing, each name (or URI) at most once.

    Raises:
        ListingRefused: a cursor came back, the pages did not end within ``max_pages``, or they
            held more than ``max_entries`` entries (the upstream is left out of the listing).
    """
    entries: list[Any] = []
    cursors: set[str] = set()
    cursor: str | None = None
    for _ in range(max_pages):
        page = await fetch(cursor)
        entries.extend(getattr(page, attr))
        if len(entries) > max_entries:
            raise ListingRefused(f"the listing holds more than {max_entries} entries", reason="listing.too_large")
        cursor = page.next_cursor
        if not cursor:
            # An entry listed twice (on one page or two) is ambiguous: neither is relayed.
            counts = Counter(str(getattr(e, key)) for e in entries)
            return [e for e in entries if counts[str(getattr(e, key))] == 1]
        if cursor in cursors:
            raise ListingRefused("the listing's pages repeat a cursor", reason="listing.loop")
        cursors.add(cursor)
    raise ListingRefused(f"the listing did not end within {max_pages} pages", reason="listing.unending")


def _own_context(*cleared: contextvars.ContextVar[Any]) -> contextvars.Context:
    """A copy of the current context with ``cleared`` (the gateway's per-request variables) unset."""
    context = contextvars.copy_context()
    for var in cleared:
        context.run(var.set, None)
    return context


def _starter(tg: TaskGroup, upstream: Upstream, context: contextvars.Context) -> Callable[[], None]:
    """Start ``upstream``'s supervisor in (a copy of) ``context``.

    An upstream is started at the first request that needs it, and a task inherits the context
    it is started from: without this, its connection would carry that agent's request as the
    one every unattributed message of the upstream (a log, an input request) belongs to.
    """

    def spawn() -> None:
        tg.start_soon(upstream.supervise, name=f"upstream {upstream.id}")

    def start() -> None:
        context.copy().run(spawn)

    return start
