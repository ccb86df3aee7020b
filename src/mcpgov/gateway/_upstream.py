"""One upstream server behind the gateway: its governed client, lifecycle, limits and relays."""

from __future__ import annotations

import base64
import contextvars
import html
import json
import logging
import random
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import anyio
import httpx2
import mcp_types as types
from anyio.abc import TaskStatus
from mcp import Client, MCPError
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import SubscriptionLost
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from mcpgov._audit import AuditEvent, Auditor
from mcpgov._chain import CallNext
from mcpgov._client import _LIST_CHANGED, GovernedClient
from mcpgov._contain import contained
from mcpgov._context import TASK_OWNER, GovContext, task_owner
from mcpgov._errors import ConfigurationError, McpGovError, PinningError
from mcpgov._governor import _InputRound
from mcpgov._keepalive import pooled_transport
from mcpgov._sdk import compat
from mcpgov.audit._redact import Redactor
from mcpgov.pinning import PinningMiddleware, ServerRegistry, tool_fingerprint
from mcpgov.pinning._fingerprint import tool_wire_form

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from mcp.client._transport import TransportStreams
    from mcp.client.session import ClientRequestContext, IncomingMessage
    from mcp.shared.message import SessionMessage

    from mcpgov.gateway._config import UpstreamConfig

__all__ = ["FrontCall", "Upstream", "UpstreamTimeout", "UpstreamUnavailable"]

logger = logging.getLogger("mcpgov.gateway")
_T = TypeVar("_T")

State = Literal["stopped", "starting", "ready", "down", "closed"]


# Seconds an HTTP upstream's connection gets to close (its session's DELETE) once it is given up.
_CLOSE_GRACE = 2.0

# JSON-RPC codes the SDK uses when a connection is gone.
_CONNECTION_CLOSED = -32000


class UpstreamUnavailable(
    McpGovError,
    code="mcpgov.gateway.upstream_unavailable",
    public_message="The upstream server is unavailable",
):
    """The upstream server is not running (not started yet, crashed, or restarting)."""


class UpstreamTimeout(
    McpGovError,
    code="mcpgov.gateway.upstream_timeout",
    public_message="The upstream server did not answer in time",
):
    """The upstream server did not answer within its timeout."""


_LOG_LEVELS: tuple[types.LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)


class _InputRelay(MCPError, _InputRound):
    """An upstream's ``input_required`` result, to be answered by a 2026-07-28 agent.

    Control flow, not an error, and it never leaves the gateway: raised from the back client
    instead of answering the upstream's input requests itself, caught by the front handler,
    which returns :attr:`result` to the agent, whose retry carries the answers (and the
    upstream's request state) back to the upstream. The back client's audit records the round
    as outcome ``input_required``, reason ``input_relayed``.
    """

    reason = "input_relayed"

    def __init__(self, result: types.InputRequiredResult) -> None:
        super().__init__(types.INTERNAL_ERROR, "input required")
        self.result = result


@dataclass(eq=False)
class FrontCall:
    """The agent's request a forwarded request belongs to: where relayed messages go back.

    Attributes:
        decided: the governed context the chain allowed (its frozen arguments are what is sent).
        session: the SDK's per-request server session of the agent's request.
        request_id: the agent's request id.
        log_level: the least severe log level the agent asked for with ``logging/setLevel``
            (legacy sessions); ``None`` relays every level the session lets through.
    """

    decided: GovContext
    session: Any
    request_id: Any
    log_level: types.LoggingLevel | None = None
    secrets: Sequence[str] = ()
    """The secrets of the upstream the request is forwarded to, scrubbed from what it relays."""

    @property
    def modern(self) -> bool:
        """True when the agent speaks 2026-07-28: input requests travel in results, not requests."""
        return getattr(self.session, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS

    def wants_log(self, level: types.LoggingLevel) -> bool:
        """Whether a log message at ``level`` is at or above the agent's ``logging/setLevel``."""
        if self.log_level is None or level not in _LOG_LEVELS or self.log_level not in _LOG_LEVELS:
            return True
        return _LOG_LEVELS.index(level) >= _LOG_LEVELS.index(self.log_level)

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """Relay an upstream progress notification to the agent (a no-op unless it asked for progress)."""
        if message is not None and self.secrets:
            message = scrub(message, self.secrets)
        await self.session.report_progress(progress, total, message)


CURRENT: contextvars.ContextVar[FrontCall | None] = contextvars.ContextVar("mcpgov_gateway_call", default=None)
"""The agent's request being served in this task."""


def _connection_lost(exc: MCPError) -> bool:
    """The SDK's own "connection closed" (not an upstream's application error using -32000)."""
    return exc.code == _CONNECTION_CLOSED and exc.message == "Connection closed" and exc.__cause__ is None


_SESSION_LOST = frozenset({"Session terminated", "Session not found"})


def _session_lost(exc: MCPError) -> bool:
    """An HTTP upstream no longer knows the session (the SDK's 404 answer, either side's wording)."""
    return exc.code == types.INVALID_REQUEST and exc.message in _SESSION_LOST and exc.__cause__ is None


def _pool_limits(concurrency: int) -> httpx2.Limits:
    """Connection pool limits for an HTTP upstream allowed ``concurrency`` requests in flight.

    Every request in flight may hold a connection (one more for the SDK's standing GET stream
    and one for a health probe), and all of them stay open for reuse: httpx's default keeps 20,
    so a busier upstream would close and reopen connections all the time.
    """
    return httpx2.Limits(max_connections=None, max_keepalive_connections=concurrency + 2)


_REDACTED = "[redacted]"
_JSON_ESCAPE = re.compile(r"""\\(u[0-9a-fA-F]{4}|["\\/bfnrt])""")
_JSON_SHORT = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ENCODED = re.compile(r"[%+\\&\s]")


def _json_unescaped(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        escape = match.group(1)
        return chr(int(escape[1:], 16)) if escape[0] == "u" else _JSON_SHORT[escape]

    decoded = _JSON_ESCAPE.sub(one, text)
    # Escaped surrogate pairs come out as two halves: join them (a lone half stays replaced).
    return decoded.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _decoded_forms(text: str) -> Iterator[str]:
    """``text`` read through each encoding an upstream could wrap a secret in, piece by piece
    (percent escapes in either case, ``+`` for space, JSON ``\\u`` escapes of any character,
    HTML character references, base64 broken over lines)."""
    yield unquote(text)
    yield unquote_plus(text)
    yield _json_unescaped(text)
    yield html.unescape(text)
    yield "".join(text.split())


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``[redacted]``.

    Each known form of a secret (:func:`secret_forms`) is replaced where it occurs. A text that
    still yields a secret once decoded (escapes spelt another way than the known forms) is
    replaced whole.
    """
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, _REDACTED)
    if secrets and _ENCODED.search(text):
        for decoded in _decoded_forms(text):
            if decoded != text and any(secret in decoded for secret in secrets):
                return _REDACTED
    return text


def scrub_data(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` (JSON data: strings, lists, objects) with every secret in every string, keys
    included, replaced by ``[redacted]``; the same object when nothing changed."""
    if not secrets:
        return value
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        cleaned = {scrub_data(k, secrets): scrub_data(v, secrets) for k, v in value.items()}
        return value if cleaned == value else cleaned
    if isinstance(value, list | tuple):
        items = [scrub_data(v, secrets) for v in value]
        return value if items == list(value) else items
    return value


_CLEAN_TEXTS = 4096
"""The most texts a :class:`SecretRedactor` remembers as clean."""


class SecretRedactor(Redactor):
    """An auditor's redactor, then the upstreams' secrets scrubbed from every text of an event.

    What an upstream names (tools it lists, errors it gives) reaches audit events through its
    connection's governed client and the gateway's own checks; this makes the trail hold them as
    every relay to an agent does, with the upstreams' secrets ``[redacted]`` in every known form
    (``secrets()`` gives them, read when each event is recorded: an upstream's are known once it
    started).
    """

    def __init__(self, inner: Redactor, secrets: Callable[[], Sequence[str]]) -> None:
        # Not Redactor.__init__: every configured rule is the inner redactor's, which runs first.
        self.inner = inner
        self._secrets = secrets
        # Texts found clean of the current secrets (principals, methods, names recur in every event).
        self._clean: set[str] = set()
        self._clean_of: Sequence[str] = ()

    def arguments(self, ctx: GovContext) -> dict[str, Any] | None:
        return self.inner.arguments(ctx)

    def event_changes(self, event: AuditEvent) -> dict[str, Any] | None:
        changes = self.inner.event_changes(event)
        secrets = self._secrets()
        if not secrets:
            return changes
        if secrets is not self._clean_of:
            self._clean, self._clean_of = set(), secrets
        clean = self._clean
        values = {**event.__dict__, **changes} if changes else event.__dict__
        scrubbed_values: dict[str, Any] = {}
        for name, value in values.items():
            if isinstance(value, str):
                if value in clean:
                    continue
                cleaned: Any = scrub(value, secrets)
                if cleaned == value:
                    if len(clean) < _CLEAN_TEXTS:
                        clean.add(value)
                    continue
                scrubbed_values[name] = cleaned
            elif isinstance(value, tuple | list | dict) and value:
                cleaned = scrub_data(value, secrets)
                if cleaned is not value:
                    scrubbed_values[name] = tuple(cleaned) if isinstance(value, tuple) else cleaned
        if not scrubbed_values:
            return changes
        return {**changes, **scrubbed_values} if changes else scrubbed_values


_M = TypeVar("_M", bound=BaseModel)


def scrubbed(model: _M, secrets: Sequence[str]) -> _M:
    """``model`` (a result or request the gateway relays to an agent) with every secret in any of
    its strings replaced by ``[redacted]``; the same object when it holds none."""
    if not secrets:
        return model
    dumped = model.model_dump(by_alias=True, mode="json", exclude_unset=True)
    cleaned = scrub_data(dumped, secrets)
    if cleaned is dumped:
        return model
    return type(model).model_validate(cleaned)


_MIN_CORE = 8
"""The shortest base64 run of part of a secret that is scrubbed on its own (shorter ones would
match unrelated text)."""


def secret_forms(values: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Every form in which an upstream's secrets could come back: for each ``(prefix, value)``
    the value with and without its prefix, JSON-escaped, percent-encoded (``safe`` ``""`` and
    ``"/"``, and with ``+`` for space), in hexadecimal (either case) and in base64 (standard and
    URL-safe, with and without padding). A secret inside longer base64 data is encoded there
    from one of three byte offsets: for each, the run its whole 3-byte groups always encode to
    is a form too. Longest first, so a longer form is scrubbed whole."""
    forms: set[str] = set()
    for prefix, value in values:
        for text in {value, prefix + value} - {""}:
            raw = text.encode("utf-8")
            encoded = (base64.b64encode(raw).decode("ascii"), base64.urlsafe_b64encode(raw).decode("ascii"))
            forms.update(
                (
                    text,
                    json.dumps(text)[1:-1],
                    json.dumps(text, ensure_ascii=False)[1:-1],
                    quote(text, safe=""),
                    quote(text),
                    quote_plus(text),
                    raw.hex(),
                    raw.hex().upper(),
                    *encoded,
                    *(form.rstrip("=") for form in encoded),
                )
            )
            for shift in range(3):
                whole = raw[shift : shift + 3 * ((len(raw) - shift) // 3)]
                core = base64.b64encode(whole).decode("ascii")
                if len(core) >= _MIN_CORE:
                    forms.update((core, base64.urlsafe_b64encode(whole).decode("ascii")))
    return tuple(sorted(forms - {""}, key=len, reverse=True))


class CallerMiddleware:
    """Client-side stage: the upstream request acts for the agent the front chain verified.

    The principal and tenant come from the decided front context, so the registry decides
    whether this upstream may serve this agent; with no decided request the fields stay
    empty and the registry refuses (fail closed). The agent's tokens are never copied.
    """

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        front = CURRENT.get()
        if front is not None:
            decided = front.decided
            ctx = ctx.replace(
                principal=decided.principal,
                tenant=decided.tenant,
                purpose=decided.purpose,
                task_id=decided.task_id,
            )
            owner = task_owner(decided)
            if owner is not None:  # the agent's task is its owner's, also upstream
                ctx = ctx.with_extension(TASK_OWNER, owner)
        try:
            return await call_next(ctx)
        except McpGovError as exc:
            if exc.context is None:
                exc.context = ctx  # the refusal is audited with the caller it was made for
            raise


def _no_status(line: str) -> None:
    """Status lines go nowhere."""


class BackClient(compat.InputDrivenClient, GovernedClient):
    """The governed client to one upstream, relaying its ``input_required`` results to modern agents.

    An upstream's ``input_required`` result met while serving a 2026-07-28 agent is raised as
    :class:`_InputRelay` for the front to return; on every other path (legacy agents, no agent)
    the SDK's own driver answers it through this client's callbacks, which relay each input
    request to the agent as a server-to-client request.
    """

    async def __aenter__(self) -> BackClient:
        await super().__aenter__()
        compat.wrap_request_stamp(self.session, _agent_capabilities)  # the per-request envelope, narrowed
        return self

    async def drive_input(self, first: Any, retry: Any) -> Any:
        front = CURRENT.get()
        if isinstance(first, types.InputRequiredResult):
            if front is None:
                # A request the gateway makes for itself, which declared no input capability:
                # there is nobody to ask (and no agent's request to guess), so it fails cleanly.
                raise MCPError(types.INVALID_REQUEST, "input requests are not available through the gateway here")
            if front.modern:
                raise _InputRelay(first)
        return await super().drive_input(first, retry)


_RELAYED_CAPABILITIES = ("sampling", "elicitation", "roots")


def _agent_capabilities(stamp: Callable[[dict[str, Any], Any], None]) -> Callable[[dict[str, Any], Any], None]:
    """The SDK's request stamp, declaring only the relayed capabilities the agent declared itself.

    On 2026-07-28 every request carries its client's capabilities, and an upstream decides from
    them whether it may ask for input. The gateway can relay sampling, elicitation and roots,
    but only to an agent that declared them: the upstream hears the agent's declaration, and
    none of them on a request the gateway makes for itself (no agent's request behind it).
    """

    def narrowed(data: dict[str, Any], opts: Any) -> None:
        stamp(data, opts)
        meta = (data.get("params") or {}).get("_meta")
        if not isinstance(meta, dict):
            return
        declared = meta.get(types.CLIENT_CAPABILITIES_META_KEY)
        if not isinstance(declared, dict):
            return
        # With no agent's request behind it (the gateway's own listings and probes) there is
        # nobody to relay to: none of the relayed capabilities is declared.
        front = CURRENT.get()
        agent = getattr(front.session, "client_capabilities", None) if front is not None else None
        meta[types.CLIENT_CAPABILITIES_META_KEY] = {
            key: value
            for key, value in declared.items()
            if key not in _RELAYED_CAPABILITIES or (agent is not None and getattr(agent, key, None) is not None)
        }

    return narrowed


@dataclass
class Relay:
    """Where upstream-initiated messages and status lines go: set by the gateway."""

    list_changed: Callable[[str, str], Awaitable[None]]
    resource_updated: Callable[[str, str], Awaitable[None]]
    status: Callable[[str], None] = _no_status


class _OwnContextWrite:
    """The write side of an upstream's connection (in-process or HTTP), handing each message on
    from the connection's own task.

    The SDK's streams carry each message's sending context along: an in-process upstream runs
    each request in it, and both it and the HTTP transport's post writer keep the last one.
    Without this, they would run in, and hold on to, the context of the agent's request being
    forwarded (that request's identity token, its session, what the front chain decided).
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._send, self._receive = anyio.create_memory_object_stream[Any](0)

    async def send(self, item: Any) -> None:
        await self._send.send(item)

    def close(self) -> None:
        self._send.close()

    async def aclose(self) -> None:
        await self._send.aclose()

    async def pump(self) -> None:
        async with self._receive:
            async for item in self._receive:
                await self._inner.send(item)

    async def __aenter__(self) -> _OwnContextWrite:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@asynccontextmanager
async def _own_context(transport: Any, name: str) -> AsyncIterator[TransportStreams]:
    """``transport`` (an SDK transport's context manager), its messages sent from the connection's own task.

    The SDK's transports hand each message on in the context it was sent from, and their writer
    tasks keep the last one: sent from the connection's own task, what they keep is the gateway's.
    """
    async with transport as (read, write), anyio.create_task_group() as tg:
        own = _OwnContextWrite(write)
        tg.start_soon(own.pump, name=name)
        try:
            yield read, own
        finally:
            own.close()


def _in_process(server: Server[Any] | MCPServer) -> AbstractAsyncContextManager[TransportStreams]:
    """The SDK's in-memory transport to ``server``, its messages sent from the connection's own task."""
    return _own_context(compat.in_memory_transport(server), "in-process upstream writer")


class _WatchedRead:
    """The read side of a transport that tells when the upstream's output ends (EOF or closed)."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    async def receive(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise
        return item

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedRead:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _WatchedRead:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class WatchedStdio:
    """The SDK's stdio transport, watched: ``on_end`` runs as soon as the process's output ends.

    The SDK's receive loop reads the process's stdout all the time, so a process that exits
    while no request is in flight is noticed at once, not at the next request. It carries the
    parameters' ``command``, ``args`` and ``env``, so the registry still judges what was started.
    """

    def __init__(self, params: StdioServerParameters, on_end: Callable[[], None]) -> None:
        self.command = params.command
        self.args = params.args
        self.env = params.env
        self._inner = stdio_client(params)
        self._on_end = on_end

    def __repr__(self) -> str:
        return f"WatchedStdio(command={self.command!r})"  # never the environment (it holds secrets)

    async def __aenter__(self) -> TransportStreams:
        read, write = await self._inner.__aenter__()
        return _WatchedRead(read, self._on_end), write

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._inner.__aexit__(*exc_info)


class HttpTarget:
    """The SDK's Streamable HTTP transport to ``url``, carrying the URL, so the registry judges
    where the connection goes (a transport that does not say is refused).

    Its messages are sent from the connection's own task (see :class:`_OwnContextWrite`): the
    SDK's post writer would otherwise keep the context of the last agent's request it carried
    (that request's session, its identity, what the front chain decided) until the next one.
    """

    def __init__(self, url: str, http: httpx2.AsyncClient) -> None:
        self.url = url
        self._inner = _own_context(streamable_http_client(url, http_client=http), "HTTP upstream writer")

    def __repr__(self) -> str:
        return "HttpTarget(url=...)"  # a URL may hold credentials

    async def __aenter__(self) -> TransportStreams:
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._inner.__aexit__(*exc_info)


@dataclass
class UpstreamStats:
    """Counters an operator reads on ``/readyz`` and in logs."""

    starts: int = 0
    failures: int = 0
    dropped_messages: int = 0
    last_error: str | None = None
    in_flight: int = 0
    started_at: float | None = None


class Upstream:
    """One upstream server: a :class:`~mcpgov.GovernedClient` (pinning, registry) kept running.

    The client is entered in a supervisor task: started eagerly or at first use, restarted
    with exponential backoff when it fails. Requests wait (up to ``start_timeout``) while it
    starts and fail at once while it is down; each request is bounded by ``timeout`` and
    ``concurrency``.

    Args:
        config: the upstream's gateway settings.
        registry: the approved-server registry holding its entry.
        relay: where notifications from the upstream go.
        audit: the gateway's auditor (refusals and lifecycle events).
        base_dir: what a relative ``cwd`` and secret files are relative to.
        environ: the gateway's environment (secrets are read from it).
    """

    def __init__(
        self,
        config: UpstreamConfig,
        registry: ServerRegistry,
        *,
        relay: Relay,
        audit: Auditor,
        base_dir: Path,
        environ: Mapping[str, str],
        server: Any = None,
    ) -> None:
        approved = registry.get(config.id)
        if approved is None:
            raise McpGovError(f"upstream {config.id!r} is not in the registry", reason="upstream_unknown")
        self.id = config.id
        self.config = config
        self.registry = registry
        self.approved = approved
        self.relay = relay
        self.audit = audit
        self.base_dir = base_dir
        self.environ = environ
        self._server = server  # an in-process server object (tests, embedded use) instead of url/command
        self.state: State = "stopped"
        self.stats = UpstreamStats()
        self._client: GovernedClient | None = None
        self._ready = anyio.Event()
        self._dead = anyio.Event()
        self._down_reason: str | None = None
        self._closing = False
        self._limiter = anyio.CapacityLimiter(config.concurrency)
        self._in_flight: set[FrontCall] = set()
        self._queued = 0  # requests waiting for a concurrency slot: a drain waits for them too
        # The tenants whose requests this upstream has carried: a message the upstream sends with
        # nothing tying it to a request reaches an agent only while that is a single tenant.
        self._tenants: set[str | None] = set()
        self._idle = anyio.Event()
        self._start: Callable[[], None] | None = None
        self.secrets: tuple[str, ...] = ()
        # Resource updates agents want from this upstream: its URI -> how many agents' subscriptions.
        self._wanted: dict[str, int] = {}
        self._relisten = anyio.Event()  # set when the wanted URIs change (2026-07-28 connections)
        self._listened: frozenset[str] = frozenset()  # the URIs of the upstream listen now acknowledged
        # How many times the wanted URIs changed, and as of which change the acknowledged listen was
        # opened: a stream opened before a want does not name it, even if an older one did.
        self._wants_changed = 0
        self._listened_as_of = 0
        self._listen_acked = anyio.Event()

    def __repr__(self) -> str:
        return f"Upstream(id={self.id!r}, state={self.state!r})"

    @property
    def _over_http(self) -> bool:
        return self._server is None and self.approved.url is not None

    # --- connection -------------------------------------------------------------------------

    def _secret_values(self) -> dict[str, dict[str, str]]:
        env = {k: ref.resolve(self.base_dir, self.environ) for k, ref in self.config.secret_env.items()}
        headers = {k: ref.resolve(self.base_dir, self.environ) for k, ref in self.config.secret_headers.items()}
        # Each value with its prefix apart: an upstream may echo the bare token without it.
        pairs = [(ref.prefix, env[k][len(ref.prefix) :]) for k, ref in self.config.secret_env.items()]
        pairs += [(ref.prefix, headers[k][len(ref.prefix) :]) for k, ref in self.config.secret_headers.items()]
        self.secrets = secret_forms(pairs)
        return {"env": env, "headers": headers}

    def _cwd(self) -> str | None:
        """The working directory of a stdio upstream (checked to be a directory)."""
        if self.config.cwd is None:
            return None
        path = self.base_dir / self.config.cwd
        if not path.is_dir():
            raise ConfigurationError(f"upstream {self.id!r}: cwd {path} is not a directory")
        return str(path)

    def check_settings(self) -> None:
        """Check what is read only when the upstream starts: its secrets resolve, its ``cwd`` exists.

        Raises:
            ConfigurationError: naming the upstream and the variable, file or directory (never a
                secret's value).
        """
        refs = {**self.config.secret_env, **self.config.secret_headers}
        for ref in refs.values():
            try:
                ref.resolve(self.base_dir, self.environ)
            except ConfigurationError as exc:
                raise ConfigurationError(f"upstream {self.id!r}: {exc.detail}") from None
        if self._server is None and self.approved.url is None:
            self._cwd()

    def _target(self) -> tuple[Any, httpx2.AsyncClient | None]:
        secret = self._secret_values()
        if self._server is not None:
            if isinstance(self._server, Server | MCPServer):
                return _in_process(self._server), None
            return self._server, None
        if self.approved.url is not None:
            headers = {**self.config.headers, **secret["headers"]}
            # Connections kept alive across requests (see DrainingTransport), as many as may be in flight.
            limits = _pool_limits(self.config.concurrency)
            http = httpx2.AsyncClient(
                headers=headers,
                timeout=httpx2.Timeout(30.0, read=300.0),
                transport=pooled_transport(limits),
            )
            return HttpTarget(self.approved.url, http), http
        params = StdioServerParameters(
            command=self.approved.command or "",
            args=list(self.approved.args),
            env={**self.config.env, **secret["env"]} or None,
            cwd=self._cwd(),
        )
        return WatchedStdio(params, lambda: self.mark_dead("exited")), None

    def build_client(self) -> tuple[GovernedClient, httpx2.AsyncClient | None]:
        """A fresh governed client for this upstream (not entered)."""
        target, http = self._target()
        pinning = PinningMiddleware(self.registry, server_id=self.id)
        client = BackClient(
            target,
            CallerMiddleware(),
            pinning,
            audit=self.audit,
            mode=self.config.mode,
            sampling_callback=self._relay(types.CreateMessageRequest, types.CreateMessageResult, "Sampling"),
            elicitation_callback=self._relay(types.ElicitRequest, types.ElicitResult, "Elicitation"),
            list_roots_callback=self._roots,
            logging_callback=self._logging,
            message_handler=self._message,
            read_timeout_seconds=self.config.timeout,
            log_level="debug",  # modern upstreams log only on request; the agent's own level applies in front
            cache=None,
        )
        if isinstance(self._server, Server | MCPServer):
            # Reached through an in-memory transport of the gateway's own (see _in_process): the
            # registry judges the in-process server it is, not that transport.
            client._server_target = self._server
        return client, http

    def bind(self, start: Callable[[], None]) -> None:
        """Give the upstream a way to start its supervisor (in the gateway's task group).

        A closed upstream (its gateway was left before) can be started again.
        """
        self._start = start
        if self.state == "closed":
            self._closing = False
            self.state = "stopped"

    def ensure_started(self) -> None:
        """Start the supervisor if it is not running."""
        if self.state == "stopped" and self._start is not None and not self._closing:
            self.state = "starting"
            self._start()

    async def supervise(self) -> None:
        """Keep the upstream connected until :meth:`close`: start, wait for death, back off, restart.

        Every start and every loss is audited (``upstream.ready`` / ``upstream.down`` with the
        reason) and given as a status line. Restarts wait an exponentially growing delay, capped
        at ``restart.maximum``, with jitter (between half and all of it), so replicas whose
        upstreams died together do not restart them in lockstep.
        """
        failures = 0
        while not self._closing:
            self.state = "starting"
            self._down_reason = None
            self.relay.status(f"upstream {self.id!r}: starting")
            http: httpx2.AsyncClient | None = None
            connected = False
            try:
                client, http = self.build_client()
                with anyio.CancelScope() as leaving:
                    async with client:
                        connected = True
                        failures = 0
                        await self._connected(client, probe=http is not None)
                        if http is not None:
                            # Leaving ends the HTTP session with a request of its own: a server that
                            # hangs must not hold up the restart (nor the loss's audit) for long.
                            leaving.deadline = anyio.current_time() + _CLOSE_GRACE
            except BaseException as exc:
                # An upstream that fails is restarted, never fatal, whatever it raised (an in-process
                # server's BaseException subclass, a stray CancelledError); interpreter exits and the
                # gateway's own cancellation still propagate.
                leaf = _leaf(exc)
                if not await contained(leaf):
                    raise
                self.stats.failures += 1
                self.stats.last_error = type(leaf).__name__
                # A transport that fails once connected (an HTTP upstream gone: the SDK's transport
                # ends with the connection error) is a lost connection, not a failed start.
                lost = connected and isinstance(leaf, httpx2.TransportError | MCPError)
                # A configuration error says what to fix (its text names a variable or a file,
                # never a secret's value); anything else is named by its type only.
                failed = (
                    f"failed ({leaf})" if isinstance(leaf, ConfigurationError) else f"failed ({type(leaf).__name__})"
                )
                self._down_reason = self._down_reason or ("connection lost" if lost else failed)
            finally:
                self._client = None
                self._ready.set()  # requests waiting for this start stop waiting: it is over, either way
                self._ready = anyio.Event()
                self._dead = anyio.Event()
                if http is not None:
                    with anyio.CancelScope(shield=True):
                        await http.aclose()
            if self.stopping:
                break
            self.state = "down"
            delay = min(self.config.restart.initial * 2**failures, self.config.restart.maximum)
            delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
            failures += 1
            reason = self._down_reason or "exited"
            self.stats.last_error = self.stats.last_error if reason.startswith("failed") else reason
            logger.warning("upstream %r down (%s); restarting in %.1fs", self.id, reason, delay)
            self.relay.status(f"upstream {self.id!r}: down ({reason}); restarting in {delay:.1f}s")
            with anyio.CancelScope(shield=True):
                await self._lifecycle("upstream.down", reason, retry_in=round(delay, 3))
            await self._sleep_unless_closing(delay)
        self.state = "closed"

    async def _connected(self, client: GovernedClient, *, probe: bool) -> None:
        """Serve through ``client`` (announced ready and audited) until the upstream is gone.

        A 2026-07-28 connection is announced ready once its listen stream is acknowledged (or
        could not be opened), so that no change it announces after serving a request is missed.
        """
        async with anyio.create_task_group() as watch:
            if _modern(client):  # it announces changes only on a listen stream
                await watch.start(self._keep_listening, client, name=f"upstream {self.id} listen")
            else:
                await self._resubscribe(client)
            self._client = client
            self.state = "ready"
            self.stats.starts += 1
            self.stats.started_at = time.time()
            self._ready.set()
            logger.info("upstream %r ready (start %d)", self.id, self.stats.starts)
            self.relay.status(f"upstream {self.id!r}: ready")
            await self._lifecycle("upstream.ready", "started")
            if probe:  # a URL upstream: no process output to watch, so it is asked
                watch.start_soon(self._watch, client, name=f"upstream {self.id} health")
            await self._dead.wait()
            watch.cancel_scope.cancel()

    async def _resubscribe(self, client: GovernedClient) -> None:
        """Subscribe a new handshake-era connection (a restart, a reconnect) to what agents still want.

        Each URI was admitted for an agent when it was first wanted (front chain and registry); this
        restores the upstream's side of it, as the gateway's own request. One that fails is logged.
        """
        for uri in list(self._wanted):
            try:
                with anyio.fail_after(self.config.timeout):
                    await Client.subscribe_resource(client, uri)
            except Exception as exc:  # noqa: BLE001 - the others are restored all the same
                reason = type(exc).__name__
                logger.warning("upstream %r: a resource subscription was not restored (%s)", self.id, reason)

    async def _keep_listening(
        self, client: GovernedClient, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep a ``subscriptions/listen`` stream open to a 2026-07-28 upstream, for as long as it is connected.

        Such an upstream sends change notifications only on a listen stream. The gateway listens
        for every list change and for the resource URIs its agents want (:meth:`want`); each
        event reaches the agents through the same relay as a handshake-era notification (the
        SDK client hands listen events to the message handler too). When the wanted URIs change
        the stream is replaced, the new one acknowledged before the old one is closed, so no event
        falls between them; a stream that ends is opened again (with backoff if it keeps failing).
        A connection that replaces this one (a restart, a reconnect) listens anew.
        """
        try:
            await self._listen_loop(client, task_status)
        finally:
            self._listened = frozenset()  # this connection's streams are gone with it

    async def _listen_loop(self, client: GovernedClient, task_status: TaskStatus[None]) -> None:
        first = True
        failures = 0
        current: anyio.CancelScope | None = None
        async with anyio.create_task_group() as streams:
            while True:
                wake = self._relisten = anyio.Event()
                as_of = self._wants_changed
                uris = tuple(sorted(self._wanted))
                try:
                    scope: anyio.CancelScope = await streams.start(self._listen_once, client, uris, wake)
                except MCPError as exc:
                    if exc.code == types.METHOD_NOT_FOUND:
                        logger.info("upstream %r does not serve subscriptions/listen: no change events", self.id)
                        if first:
                            task_status.started()
                        return
                    reason = f"MCPError {exc.code}"
                except (SubscriptionLost, TimeoutError, RuntimeError, anyio.BrokenResourceError) as exc:
                    reason = type(exc).__name__
                else:
                    if current is not None:
                        current.cancel()
                    current, failures = scope, 0
                    self._listened = frozenset(uris)
                    self._listened_as_of = as_of
                    self._listen_acked.set()
                    self._listen_acked = anyio.Event()
                    if first:
                        first = False
                        task_status.started()
                    await wake.wait()
                    continue
                if first:
                    first = False
                    task_status.started()
                delay = min(0.5 * 2**failures, 30.0)
                failures = min(failures + 1, 6)
                logger.info("upstream %r: listen failed (%s); again in %.1fs", self.id, reason, delay)
                wake = self._relisten = anyio.Event()  # the failed stream set the previous one
                with anyio.move_on_after(delay):
                    await wake.wait()

    async def _listen_once(
        self,
        client: GovernedClient,
        uris: tuple[str, ...],
        ended: anyio.Event,
        *,
        task_status: TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """One listen stream: started once acknowledged; ``ended`` is set when it ends, however."""
        try:
            with anyio.CancelScope() as scope:
                # The gateway's own stream (no agent behind it): the SDK's listen, not the governed
                # one, whose registry check needs an agent. Agents' filters are governed in front.
                sub = Client.listen(
                    client,
                    tools_list_changed=True,
                    prompts_list_changed=True,
                    resources_list_changed=True,
                    resource_subscriptions=uris,
                )
                async with sub as events:
                    task_status.started(scope)
                    try:
                        async for _ in events:  # relayed by the message handler, which sees every event
                            pass
                    except SubscriptionLost:
                        logger.info("upstream %r: listen stream lost; listening again", self.id)
        finally:
            ended.set()

    @property
    def listened(self) -> frozenset[str]:
        """The resource URIs the upstream listen stream acknowledged last (2026-07-28 connections)."""
        return self._listened

    async def want(self, client: GovernedClient, uri: str) -> None:
        """An agent wants updates of the upstream resource ``uri`` (call :meth:`unwant` when it no longer does).

        Through a handshake-era connection the first agent's want subscribes (``client`` is the
        agent's forwarded connection, governed by the back chain); through a 2026-07-28 one the
        upstream listen is replaced by one naming ``uri`` too (:meth:`until_listened` waits for it).
        The want is counted before the subscribe is sent (a concurrent want of the same URI
        counts on top of it) and taken back if the subscribe fails or is cancelled.
        """
        held = self._wanted.get(uri, 0)
        self._wanted[uri] = held + 1
        if held == 0:
            try:
                if not _modern(client):
                    await client.subscribe_resource(uri)
            except BaseException as exc:
                if self.release(uri) and not _never_subscribed(exc):
                    with anyio.CancelScope(shield=True):
                        await self.unsubscribe(uri)  # the subscribe may have reached it
                raise
            self._wants_changed += 1
            self._relisten.set()

    async def until_listened(self, uris: Sequence[str]) -> None:
        """Wait (up to ``timeout`` seconds) until a 2026-07-28 connection's listen names every one of ``uris``."""
        client = self._client
        if client is None or not _modern(client):
            return
        with anyio.move_on_after(self.config.timeout):
            wanted_as_of = self._wants_changed
            while self._client is client and (
                self._listened_as_of < wanted_as_of or not self._listened.issuperset(uris)
            ):
                await self._listen_acked.wait()

    def release(self, uri: str) -> bool:
        """Give up one want of ``uri`` at once; True when it was the last (the upstream is to be
        told: :meth:`unwant` does both)."""
        held = self._wanted.get(uri, 0)
        if held > 1:
            self._wanted[uri] = held - 1
            return False
        if held == 0:
            return False
        del self._wanted[uri]
        self._wants_changed += 1
        self._relisten.set()
        return True

    async def unwant(self, uri: str) -> None:
        """An agent no longer wants updates of ``uri``: the last one unsubscribes (or narrows the listen).

        The subscription is the gateway's, shared by every agent that wants ``uri``: the last
        want given up (an unsubscribe, a session or a listen stream that ended, an authority that
        lapsed) unsubscribes as the gateway's own request. Never raises.
        """
        if self.release(uri):
            await self.unsubscribe(uri)

    async def unsubscribe(self, uri: str) -> None:
        """Unsubscribe a handshake-era connection from ``uri`` unless an agent wants it (again):
        the gateway's own request, best effort (a failure is logged).

        A connection that is down has no subscription left; the next one subscribes only to what
        is still wanted (:meth:`_resubscribe`).
        """
        client = self._client
        if client is None or _modern(client) or uri in self._wanted:
            return
        try:
            with anyio.fail_after(self.config.timeout):
                await Client.unsubscribe_resource(client, uri)
        except Exception as exc:  # noqa: BLE001 - nobody receives its updates either way
            logger.info("upstream %r: a resource subscription was not given up (%s)", self.id, type(exc).__name__)

    async def _watch(self, client: GovernedClient) -> None:
        """Probe a connected URL upstream every ``health.interval`` seconds until a probe fails.

        A stdio upstream's exit ends its output at once; an HTTP upstream that dies while idle
        says nothing, so it is asked. A failed probe marks it down: requests then fail at once
        with a clean error, and the supervisor reconnects with the restart backoff.
        """
        while not self._dead.is_set():
            await anyio.sleep(self.config.health.interval)
            reason = await self._probe(client)
            if reason is not None:
                logger.info("upstream %r failed its health probe (%s)", self.id, reason)
                self.mark_dead(reason)
                return

    async def _probe(self, client: GovernedClient) -> str | None:
        """One health probe: ``None`` when the upstream answered, else why it counts as down.

        The probe is the era's cheapest request (``ping``; ``server/discover`` at 2026-07-28, where
        ping is gone). An error answer means it is alive, except an invalid-request answer to a
        ping (its session is gone: a restarted server). An idle upstream that does not answer
        within ``health.timeout`` is hung; with requests in flight their own timeouts apply.
        """
        session = client.session
        version = client.protocol_version
        try:
            with anyio.fail_after(self.config.health.timeout):
                if version in MODERN_PROTOCOL_VERSIONS:
                    # Through the request stamp (unlike send_discover): it declares no relayed capability.
                    await session.send_request(
                        types.DiscoverRequest(params=types.RequestParams()), types.DiscoverResult
                    )
                else:
                    await session.send_ping()
        except TimeoutError:
            return None if self._in_flight else "unresponsive"
        except MCPError as exc:
            if _connection_lost(exc):
                return "connection lost"
            if _session_lost(exc) or (exc.code == types.INVALID_REQUEST and version not in MODERN_PROTOCOL_VERSIONS):
                return "session lost"
            return None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, httpx2.TransportError):
            return "connection lost"
        return None

    async def _sleep_unless_closing(self, delay: float) -> None:
        with anyio.move_on_after(delay):
            await self._dead.wait()  # set by close(): stop waiting at once

    async def _lifecycle(self, event: Literal["upstream.ready", "upstream.down"], reason: str, **extra: Any) -> None:
        """Audit a start or a loss of this upstream (its id, reason and counters; never its settings)."""
        ctx = GovContext(side="client", method="upstream/lifecycle", target=self.id, audit=self.audit)
        attributes: dict[str, Any] = {"server_id": self.id, "starts": self.stats.starts, **extra}
        await self.audit.emit(AuditEvent.from_context(ctx, event, reason=reason, attributes=attributes), required=False)

    @property
    def stopping(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    def mark_dead(self, reason: str = "connection lost") -> None:
        """The connection is gone: the supervisor restarts it (the first reason given is kept)."""
        if self._down_reason is None:
            self._down_reason = reason
        self._dead.set()

    async def idle(self) -> None:
        """Return when no request is in flight to this upstream."""
        while self._in_flight or self._queued:
            await self._idle.wait()

    async def close(self) -> None:
        """Stop after the requests in flight (the caller bounds how long with a cancel scope)."""
        self._closing = True
        await self.idle()
        self._dead.set()

    async def _client_now(self) -> GovernedClient:
        self.ensure_started()
        if self.state in ("down", "closed") or self._closing:
            raise UpstreamUnavailable(f"upstream {self.id!r} is {self.state}", reason="upstream_down")
        if self._client is None:
            with anyio.move_on_after(self.config.start_timeout):
                await self._ready.wait()
        client = self._client
        if client is None:
            if self.state in ("down", "closed") or self._closing:
                raise UpstreamUnavailable(f"upstream {self.id!r} is {self.state}", reason="upstream_down")
            raise UpstreamUnavailable(f"upstream {self.id!r} did not start in time", reason="upstream_start_timeout")
        return client

    async def _wait_for_slot(self, limiter: anyio.CapacityLimiter) -> None:
        """Wait (up to ``timeout`` seconds) for a concurrency slot, counted as queued (a drain
        waits for queued requests too).

        Raises:
            UpstreamTimeout: no slot freed within ``timeout`` (reason ``upstream_busy``).
        """
        self._queued += 1
        try:
            with anyio.move_on_after(self.config.timeout) as scope:
                await limiter.acquire()
            if scope.cancelled_caught:
                raise UpstreamTimeout(
                    f"upstream {self.id!r} is busy: no concurrency slot freed within {self.config.timeout}s",
                    reason="upstream_busy",
                )
        finally:
            self._queued -= 1
            if not self._queued and not self._in_flight:
                self._idle.set()  # a waiter that gave up: a drain may be waiting for it
                self._idle = anyio.Event()

    @asynccontextmanager
    async def use(self, front: FrontCall | None) -> AsyncIterator[GovernedClient]:
        """A running client, within this upstream's concurrency limit and timeout.

        The registry's verdict on the agent comes first: a request for an agent this upstream is
        not approved for (now) neither starts the upstream nor waits for it (:meth:`admit`).

        Raises:
            PinningError: the upstream is not approved for the agent of ``front`` (audited).
            UpstreamUnavailable: the upstream is down or did not start in time.
            UpstreamTimeout: the request took longer than ``timeout``, or waited longer than
                ``timeout`` for a concurrency slot (reason ``upstream_busy``).
        """
        if front is not None:
            await self.admit(front.decided)
        client = await self._client_now()
        timed_out = False
        limiter = self._limiter
        try:
            limiter.acquire_nowait()  # a free slot (and nobody queued): no trip through the event loop
        except anyio.WouldBlock:
            await self._wait_for_slot(limiter)
        try:
            if front is not None:
                self._in_flight.add(front)
                self._tenants.add(front.decided.tenant)
            self.stats.in_flight += 1
            try:
                with anyio.move_on_after(self.config.timeout) as scope:
                    try:
                        yield client
                    except MCPError as exc:
                        if _connection_lost(exc):
                            self.mark_dead("connection lost")
                            raise UpstreamUnavailable(f"upstream {self.id!r} closed the connection") from None
                        if self._over_http and _session_lost(exc):
                            self.mark_dead("session lost")  # a restarted HTTP upstream: reconnect
                            raise UpstreamUnavailable(f"upstream {self.id!r} lost the session") from None
                        raise
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                        self.mark_dead("connection lost")
                        raise UpstreamUnavailable(f"upstream {self.id!r} closed the connection") from None
                timed_out = scope.cancelled_caught
            finally:
                self.stats.in_flight -= 1
                if front is not None:
                    self._in_flight.discard(front)
                if not self._in_flight and not self._queued:
                    self._idle.set()
                    self._idle = anyio.Event()
        finally:
            limiter.release()
        if timed_out:
            raise UpstreamTimeout(
                f"upstream {self.id!r} took longer than {self.config.timeout}s", reason="upstream_timeout"
            )

    async def recheck_pins(self) -> int:
        """Compare the upstream's current tools with its pin now, auditing every difference.

        Run when the upstream says its tool list changed, before agents hear of it. This is the
        gateway's own check (no agent is involved, so nothing is filtered or decided here): the
        pinning stage of the client has already forgotten what it verified, so no tool is
        callable again until a governed listing on an agent's behalf re-verifies it.

        Returns:
            How many tools differ from the pin (changed, new or removed).
        """
        client = self._client
        if client is None:
            return 0
        try:
            manifest = self.registry.manifest(self.id)
            tools: list[types.Tool] = []
            cursor: str | None = None
            for _ in range(100):
                page = await Client.list_tools(client, cursor=cursor, cache_mode="refresh")
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
        except Exception as exc:  # noqa: BLE001 - a failed re-check is logged; calls stay unverified anyway
            logger.warning("upstream %s: pins could not be re-checked (%s)", self.id, type(exc).__name__)
            return 0
        differences: list[tuple[str, str, str | None, str | None]] = []
        listed: set[str] = set()
        for tool in tools:
            listed.add(tool.name)
            pin = manifest.tools.get(tool.name)
            try:
                new: str | None = tool_fingerprint(tool_wire_form(tool))
            except (TypeError, ValueError):
                new = None
            if pin is None:
                differences.append((tool.name, "tool.new", None, new))
            elif pin.fingerprint != new:
                differences.append((tool.name, "tool.changed", pin.fingerprint, new))
        for name, pin in manifest.tools.items():
            if name not in listed:
                differences.append((name, "tool.removed", pin.fingerprint, None))
        ctx = GovContext(side="client", method="tools/list", kind="tool", audit=self.audit)
        for name, reason, old, new in differences:
            await self.audit.emit(
                AuditEvent.from_context(
                    ctx,
                    "pin.mismatch",
                    target=name,
                    reason=reason,
                    detail=f"upstream {self.id!r} announced a tool list change: {name!r} {reason.split('.')[1]}",
                    error_code=PinningError.code,
                    attributes={"server_id": self.id, "manifest": manifest.digest, "old": old, "new": new},
                ),
                required=False,
            )
        return len(differences)

    def forget_verified(self, method: str) -> None:
        """Make the pinning stage forget what it verified, as a list-changed notification does."""
        client = self._client
        kind = _LIST_CHANGED.get(method)
        if client is None or kind is None:
            return
        for mw in client.governor.middleware:
            notify = getattr(mw, "notify_list_changed", None)
            if callable(notify):
                notify(kind)

    def serves(self, decided: GovContext) -> bool:
        """Whether the registry approves this upstream, now, for the agent ``decided`` was decided for."""
        approved = self.registry.get(self.id)
        return approved is not None and approved.refusal(decided.tenant, decided.principal) is None

    async def admit(self, decided: GovContext) -> None:
        """Refuse, before anything reaches (or starts) the upstream, an agent it does not serve.

        The registry's verdict on the caller (tenant and workload) needs nothing of the upstream;
        what does (its self-description, where the connection went) is judged by the back chain
        once it is connected. A refusal is audited as the back chain audits its own: a deny
        decision with the caller.

        Raises:
            PinningError: reason ``server.refused``.
        """
        approved = self.registry.get(self.id)
        why = (
            f"server {self.id!r} is not in the registry"
            if approved is None
            else approved.refusal(decided.tenant, decided.principal)
        )
        if why is None:
            return
        refusal = PinningError(why, reason="server.refused")
        ctx = GovContext(
            side="client",
            method=decided.method,
            kind=decided.kind,
            principal=decided.principal,
            tenant=decided.tenant,
            purpose=decided.purpose,
            task_id=decided.task_id,
            audit=self.audit,
        )
        refusal.context = ctx
        event = AuditEvent.from_context(
            ctx,
            "decision",
            effect="deny",
            rule=f"mcpgov:{PinningError.code.rsplit('.', 1)[-1]}",
            reason=refusal.reason,
            detail=refusal.detail,
            error_code=PinningError.code,
            attributes={"server_id": self.id},
        )
        refusal.event_id = event.id
        await self.audit.emit(event, required=False)
        raise refusal

    def check_caller(self, client: GovernedClient, decided: GovContext) -> None:
        """The registry's verdict for requests the client does not govern itself (subscribe, complete).

        Raises:
            PinningError: the upstream is not approved for this caller, or misdescribes itself.
        """
        info = client.server_info
        described = {"name": info.name, "version": info.version} if info is not None else None
        self.registry.check(
            self.id,
            tenant=decided.tenant,
            principal=decided.principal,
            server_info=described,
            target=client.server_target,
        )

    # --- relays from the upstream -------------------------------------------------------------

    def _front(self) -> FrontCall | None:
        """The agent's request an upstream's message belongs to, or ``None`` when it cannot be told.

        Over stdio and HTTP an upstream's log message or input request carries nothing that ties
        it to a request, and the connection is shared by every agent the upstream serves. Such a
        message is attributed to the only request in flight only while every request this
        connection ever carried was of that request's tenant: the message may be about earlier
        work (a background job) of another agent, and never crosses to another tenant.
        """
        front = CURRENT.get()
        if front is not None:
            return front
        if len(self._in_flight) == 1:
            only = next(iter(self._in_flight))
            if len(self._tenants) == 1 and only.decided.tenant in self._tenants:
                return only
        return None

    async def _ask_agent(self, request: types.ServerRequest, result_type: type[_T], what: str) -> _T | types.ErrorData:
        """Send an upstream's request to the agent of the request it belongs to, and return the answer.

        The agent's answer, or a clean error when there is no agent to ask: no request of this
        upstream in flight, an agent that cannot receive requests, or one that did not declare
        the capability (the SDK's own refusal, an ``MCPError``, comes back as its error).
        """
        front = self._front()
        if front is None or not front.session.can_send_request:
            message = f"{what} is not available through the gateway"
            if front is not None and front.modern:
                # A handshake-era upstream asks with a request of its own in the middle of a call;
                # a 2026-07-28 agent can only be asked in a result, which that call cannot return.
                message += ": the upstream asked in the middle of a call, which cannot reach a 2026-07-28 agent"
            return types.ErrorData(code=types.INVALID_REQUEST, message=message)
        try:
            answer: _T = await front.session.send_request(
                scrubbed(request, self.secrets),
                result_type,
                metadata=ServerMessageMetadata(related_request_id=front.request_id),
            )
        except MCPError as exc:
            return types.ErrorData(code=exc.code, message=exc.message)
        return answer

    def _relay(
        self, request: Callable[..., types.ServerRequest], result_type: type[_T], what: str
    ) -> Callable[[ClientRequestContext, Any], Awaitable[_T | types.ErrorData]]:
        """The client callback that relays an upstream's sampling or elicitation request to the agent."""

        async def relay(context: ClientRequestContext, params: Any) -> _T | types.ErrorData:
            return await self._ask_agent(request(params=params), result_type, what)

        return relay

    async def _roots(self, context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
        return await self._ask_agent(types.ListRootsRequest(), types.ListRootsResult, "Roots")

    async def _logging(self, params: types.LoggingMessageNotificationParams) -> None:
        front = self._front()
        if front is None:
            self.stats.dropped_messages += 1
            return
        if not front.wants_log(params.level):
            return
        # Everything the upstream chose is scrubbed: the logger's name as much as the data.
        logger_name = f"{self.id}/{scrub(params.logger, self.secrets)}" if params.logger else self.id
        data = scrub_data(params.data, self.secrets)
        await front.session.send_log_message(params.level, data, logger_name, related_request_id=front.request_id)

    async def _message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            return
        method = getattr(message, "method", None)
        if method in (
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ):
            # GovernedClient has already told the pinning stage: nothing is callable again until
            # a governed listing re-checks the pins.
            await self.relay.list_changed(self.id, method)
        elif method == "notifications/resources/updated":
            uri = getattr(getattr(message, "params", None), "uri", None)
            if isinstance(uri, str):
                await self.relay.resource_updated(self.id, uri)


def _never_subscribed(exc: BaseException) -> bool:
    """Whether a failed subscribe left the upstream unsubscribed for certain: the back chain
    refused it (nothing was sent), or the upstream answered it with an error of its own."""
    if isinstance(exc, McpGovError) or isinstance(exc.__cause__, McpGovError):
        return True
    return isinstance(exc, MCPError) and exc.code not in (types.REQUEST_TIMEOUT, _CONNECTION_CLOSED)


def _modern(client: Client) -> bool:
    """Whether ``client`` speaks 2026-07-28 (changes arrive only on listen streams there)."""
    return client.protocol_version in MODERN_PROTOCOL_VERSIONS


def _leaf(exc: BaseException) -> BaseException:
    """The one error inside nested single-error groups (what a failed transport's task group raises)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def ready_within(upstreams: Sequence[Upstream]) -> bool:
    """True when every eager upstream is ready."""
    return all(u.state == "ready" for u in upstreams if u.config.start == "eager")
