"""The immutable per-request context every governance middleware sees."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from mcpgov._arguments import ArgsDigest
from mcpgov._decision import Decision
from mcpgov._methods import EXECUTE_METHOD, TargetKind
from mcpgov._principal import Principal

if TYPE_CHECKING:
    from mcpgov._audit import Auditor
    from mcpgov._protocols import CoversApproval

__all__ = [
    "CLIENT_SESSION",
    "HTTP_AUTHORIZATION",
    "LISTING_CURSOR",
    "META_CREDENTIAL",
    "META_IDENTITY",
    "SERVER_INFO",
    "SERVER_TARGET",
    "STANDING_CHECKS",
    "TASK_OWNER",
    "Action",
    "ExtensionKey",
    "FinalCheck",
    "GovContext",
    "SessionAnchor",
    "Side",
    "StandingCheck",
    "TargetKind",
    "Transport",
    "task_owner",
]

Side = Literal["client", "server"]
"""Which end of the session a chain runs on."""

Action = Literal["discover", "execute"]
"""``discover``: may the caller see the target in a listing; ``execute``: may it use it."""


_EMPTY: Mapping[str, Any] = MappingProxyType({})

META_IDENTITY = "io.mcpgov/identity"
"""``_meta`` key carrying a workload identity token (stdio and in-process transports)."""

META_CREDENTIAL = "io.mcpgov/credential"
"""``_meta`` key carrying a short-lived credential (stdio and in-process transports)."""

T = TypeVar("T")


class ExtensionKey(str, Generic[T]):
    """A :attr:`GovContext.extensions` key that carries the type of its value.

    It is the namespaced name itself (a ``str``: ``ctx.extensions[key]`` and plain-string keys keep
    working), and type checkers know what :meth:`GovContext.extension` returns for it and what
    :meth:`GovContext.with_extension` accepts::

        RISK: ExtensionKey[float] = ExtensionKey("example.risk")
        ctx = ctx.with_extension(RISK, 0.3)
        risk = ctx.extension(RISK)  # float | None
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ExtensionKey({str.__repr__(self)})"


HTTP_AUTHORIZATION: ExtensionKey[str] = ExtensionKey("mcpgov.http.authorization")
"""Client side: ``GovContext.extensions`` key whose value a :class:`GovernedClient` sends as the
HTTP ``Authorization`` header of that request (URL servers)."""

SERVER_INFO: ExtensionKey[Mapping[str, str]] = ExtensionKey("mcpgov.client.server_info")
"""Client side: ``GovContext.extensions`` key holding the server's self-description, a mapping
``{"name": str, "version": str}`` from its initialize or discovery result."""

SERVER_TARGET: ExtensionKey[object] = ExtensionKey("mcpgov.client.server_target")
"""Client side: ``GovContext.extensions`` key holding what the client actually connected to (the
URL, the ``StdioServerParameters``, or the in-process server), checked against the registry."""

CLIENT_SESSION: ExtensionKey[object] = ExtensionKey("mcpgov.client.session")
"""Client side: ``GovContext.extensions`` key holding the SDK session the request is sent on (what
a stage that remembers a session's listing, such as tool pinning, keeps its state under)."""

LISTING_CURSOR: ExtensionKey[str] = ExtensionKey("mcpgov.client.listing_cursor")
"""Client side: ``GovContext.extensions`` key holding the cursor a listing request continues
from; absent on the first page of a listing."""

APPROVAL_GRANT: ExtensionKey[CoversApproval] = ExtensionKey("mcpgov.approval.grant")
"""``GovContext.extensions`` key under which an approval middleware passes a granted approval
(see :class:`~mcpgov._protocols.CoversApproval`) to the authorisers."""


TASK_OWNER: ExtensionKey[tuple[str, str]] = ExtensionKey("mcpgov.task_owner")
"""``GovContext.extensions`` key naming the owner ``(issuer, subject)`` of the request's task
where no verified credential names it: a gateway's upstream requests carry the owner of the
agent's task this way (see :func:`task_owner`)."""


def task_owner(ctx: GovContext) -> tuple[str, str] | None:
    """Who owns the task of ``ctx`` (``(issuer, subject)``), ``None`` when it has no task or
    nobody can be named.

    A task belongs to the principal its first credential was minted for, as
    :meth:`~mcpgov.credentials.CredentialIssuer.revoke_task` names it: the verified
    credential's ``own`` claim (a delegated or exchanged credential keeps its parent's
    owner), else its subject. Without a credential of the task (a client-side chain, a chain
    whose task comes from elsewhere) the owner is :data:`TASK_OWNER` when a stage set it, else
    the caller. A task id alone never names an owner: two principals choosing the same id have
    two tasks.
    """
    task = ctx.task_id
    if task is None:
        return None
    credential = ctx.credential
    if credential is not None and credential.get("task") == task:
        own = credential.get("own")
        if own is not None:
            iss, sub = (own.get("iss"), own.get("sub")) if isinstance(own, Mapping) else (None, None)
        else:
            iss, sub = credential.get("idp"), credential.get("sub")
        return (iss, sub) if isinstance(iss, str) and isinstance(sub, str) else None
    owner = ctx.extensions.get(TASK_OWNER)
    if isinstance(owner, tuple) and len(owner) == 2 and all(isinstance(part, str) for part in owner):
        return (owner[0], owner[1])
    principal = ctx.principal
    return principal.key if principal is not None else None


def approval_rule_to_ask(ctx: GovContext, rules: Sequence[str]) -> int:
    """The index in ``rules`` (the ids of the approval rules that apply, in order) of the rule
    an engine's require-approval decision names: the first one the approval granted so far for
    this request was not asked about, so each rule's approval is asked for in turn; once every
    one was, the first (whose grant the authorisers then check). With no grant: the first."""
    asked = getattr(ctx.extension(APPROVAL_GRANT), "asked_about", None)
    if not callable(asked):
        return 0
    for index, rule in enumerate(rules):
        try:
            known = asked(rule) is True
        except Exception:  # noqa: BLE001 - a broken grant was asked about nothing
            known = False
        if not known:
            return index
    return 0


StandingCheck = Callable[[], Awaitable[None]]
"""A check a standing effect re-runs while it lasts; it refuses by raising an
:class:`~mcpgov.McpGovError` (and records why itself)."""

STANDING_CHECKS: ExtensionKey[tuple[StandingCheck, ...]] = ExtensionKey("mcpgov.standing_checks")
"""Server side: ``GovContext.extensions`` key of the checks a standing effect (a
``subscriptions/listen`` stream, which outlives its request) re-runs every
``STANDING_CHECK_INTERVAL`` seconds while it lasts: the first that raises ends it. A credential
stage adds its revocation and lifetime check here."""


class SessionAnchor:
    """An opaque object that lives exactly as long as one session (connection).

    The server adapter makes one per connection; middleware that binds state to a session keys a
    ``weakref.WeakKeyDictionary`` on it. It carries nothing of the SDK.
    """

    __slots__ = ("__weakref__", "_bound", "id")

    def __init__(self, id: str) -> None:  # noqa: A002 - the session's id
        self.id = id
        self._bound: tuple[str, str, str | None] | None = None

    def bind(self, identity: tuple[str, str, str | None]) -> tuple[str, str, str | None] | None:
        """Bind the session, once, to ``identity`` (``(issuer, subject, tenant)``).

        Returns ``None`` when this call bound it, else the identity it was bound to before
        (which stays: nothing unbinds a session or binds it again). Used by
        :class:`~mcpgov.identity.IdentityMiddleware` on the first request; the anchor holds the
        binding instead of a weak-keyed table entry per session.
        """
        bound = self._bound
        if bound is None:
            self._bound = identity
        return bound

    def __repr__(self) -> str:
        return f"SessionAnchor({self.id!r})"


Elicit = Callable[[str, Mapping[str, Any]], Awaitable[tuple[str, Any]]]
"""Ask the client's user with a form (legacy sessions): ``(message, schema) -> (action, content)``."""


@dataclass(frozen=True, slots=True)
class Transport:
    """Facts about how a server-side request arrived, set by the server adapter (immutable).

    Middleware reads these instead of any SDK object: nothing here lets a stage change the
    request the handler will run.

    Attributes:
        kind: ``"http"`` (Streamable HTTP) or ``"stream"`` (stdio, in-process).
        bearer: the bearer token the SDK's ``TokenVerifier`` accepted (HTTP only; never logged).
        session: the session's anchor, ``None`` where the protocol has no sessions (2026-07-28).
        client_can_elicit: whether the client declared the elicitation capability.
        elicit: asks the client's user with a form (legacy sessions that can elicit), else ``None``.
        request_state: the (already unsealed) ``requestState`` of a 2026-07-28 retry.
        input_responses: the ``inputResponses`` of a 2026-07-28 retry (read-only).
    """

    kind: Literal["http", "stream"]
    bearer: str | None = field(default=None, repr=False)
    session: SessionAnchor | None = field(default=None, compare=False)
    client_can_elicit: bool = False
    elicit: Elicit | None = field(default=None, repr=False, compare=False)
    request_state: str | None = field(default=None, repr=False)
    input_responses: Mapping[str, Any] | None = field(default=None, repr=False)


FinalCheck = Callable[["GovContext"], Awaitable[None]]
"""A check the gate runs immediately before the request's effect (after every other stage and
after the allow decision was recorded), with no ``await`` between its return and the effect.
It refuses by raising an :class:`~mcpgov.McpGovError`."""


@dataclass(frozen=True)
class GovContext:
    """Everything known about one governed request. Immutable: use :meth:`replace`.

    Attributes:
        side: ``"client"`` or ``"server"``.
        method: the MCP method (``"tools/call"``, ``"resources/list"``...).
        kind: the kind of target (tool, resource, prompt), ``None`` for other methods.
        target: the tool or prompt name, or the resource URI; ``None`` for listings.
        action: ``"execute"`` for a use, ``"discover"`` when deciding what a listing shows.
        arguments: the request's arguments as a read-only deep copy (what is checked is
            what runs: the SDK receives the original, which nothing in the chain can touch).
        args_hash: ``sha256:`` of the RFC 8785 canonical JSON of the arguments.
        principal: the verified caller, once identity middleware established it.
        tenant: the caller's tenant, from verified claims or a signed credential only.
        purpose: the declared purpose of the task.
        task_id: the task this request belongs to.
        session_id: the session (connection) id, when the transport has one.
        request_id: the JSON-RPC request id, when there is one.
        request_key: a key unique to this request across sessions and processes (a random
            per-process prefix and a counter; request ids repeat across sessions, and 2026-07-28
            has no session id); audit events record it, the peer never sees it.
        protocol_version: the negotiated MCP protocol version.
        meta: the request's ``_meta`` (read-only). On the client side, what middleware puts here
            is added to the outgoing request's ``_meta`` (for example an identity token under
            :data:`META_IDENTITY`).
        credential: the verified short-lived credential's claims, when one was presented.
        decision: the combined decision so far, set by authorisers.
        audit: where events about this request are emitted.
        extensions: per-request data other middleware attached, keyed by a namespaced name.
        transport: server side: how the request arrived (see :class:`Transport`).
        final_checks: checks that run at the gate, immediately before the effect, in order (a
            stage appends with ``ctx.replace(final_checks=ctx.final_checks + (check,))``).
    """

    side: Side
    method: str
    kind: TargetKind | None = None
    target: str | None = None
    action: Action | None = None
    arguments: Mapping[str, Any] | None = None
    args_hash: str | None = None
    principal: Principal | None = None
    tenant: str | None = None
    purpose: str | None = None
    task_id: str | None = None
    session_id: str | None = None
    request_id: str | int | None = None
    request_key: str | None = None
    protocol_version: str | None = None
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    credential: Mapping[str, Any] | None = field(default=None, repr=False)
    decision: Decision | None = None
    audit: Auditor | None = field(default=None, repr=False, compare=False)
    extensions: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    transport: Transport | None = field(default=None, repr=False, compare=False)
    final_checks: tuple[FinalCheck, ...] = field(default=(), repr=False, compare=False)

    def replace(self, **changes: Any) -> GovContext:
        """A copy of this context with ``changes`` applied (unknown names raise ``TypeError``)."""
        if not _FIELD_SET.issuperset(changes):
            raise TypeError(f"GovContext has no field(s) {sorted(changes.keys() - _FIELD_SET)}")
        # dataclasses.replace re-runs __init__ through keywords; copying the instance dictionary
        # is a fraction of the cost, and this runs several times on every governed request.
        # Fields are copied as they are: an argument hash not computed yet stays deferred.
        new = _new(GovContext)
        fields = new.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return new

    @overload
    def with_extension(self, key: ExtensionKey[T], value: T) -> GovContext: ...
    @overload
    def with_extension(self, key: str, value: Any) -> GovContext: ...
    def with_extension(self, key: str, value: Any) -> GovContext:
        """A copy with ``extensions[key] = value``."""
        return self.replace(extensions=MappingProxyType({**self.extensions, key: value}))

    def extension(self, key: ExtensionKey[T]) -> T | None:
        """The value another stage attached under ``key``, ``None`` when there is none.

        Values come from middleware, so a reader that must fail closed still checks the value's shape.
        """
        value: T | None = self.extensions.get(key)
        return value

    def for_discovery(self, kind: TargetKind, target: str) -> GovContext:
        """The context in which to decide whether ``target`` appears in this listing."""
        return discovery_contexts(self, kind)(target)


_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GovContext))
_FIELD_SET = frozenset(_FIELDS)
_new = object.__new__


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    factory: Callable[[], Any] = f.default_factory  # type: ignore[assignment]
    return factory()


_DEFAULTS: dict[str, Any] = {
    f.name: _default(f)
    for f in dataclasses.fields(GovContext)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
}


def new_context(fields: dict[str, Any]) -> GovContext:
    """``GovContext(**fields)`` without the frozen dataclass's per-field ``__init__`` (one
    dictionary update over the defaults; the governors build one or two on every request).

    Raises:
        TypeError: a name is not a field, or ``side`` or ``method`` is missing.
    """
    if not _FIELD_SET.issuperset(fields):
        raise TypeError(f"GovContext has no field(s) {sorted(fields.keys() - _FIELD_SET)}")
    if "side" not in fields or "method" not in fields:
        raise TypeError("GovContext needs a side and a method")
    new = _new(GovContext)
    values = new.__dict__
    values.update(_DEFAULTS)
    values.update(fields)
    return new


def discovery_contexts(ctx: GovContext, kind: TargetKind) -> Callable[[str], GovContext]:
    """``entry(target)``: :meth:`GovContext.for_discovery` of ``ctx`` for each entry of one
    listing of ``kind``, sharing the fields that are the same for every entry."""
    shared = dict(ctx.__dict__)
    shared.update(
        method=EXECUTE_METHOD[kind],
        kind=kind,
        action="discover",
        arguments=None,
        args_hash=None,
        decision=None,
    )

    def entry(target: str) -> GovContext:
        new = _new(GovContext)
        fields = new.__dict__
        fields.update(shared)
        fields["target"] = target
        return new

    return entry


def _get_args_hash(ctx: GovContext) -> str | None:
    fields = ctx.__dict__
    value = fields["args_hash"]
    if isinstance(value, ArgsDigest):  # computed on first read, then kept in this context
        value = fields["args_hash"] = value.value()
    return value  # type: ignore[no-any-return]


def _set_args_hash(ctx: GovContext, value: str | ArgsDigest | None) -> None:
    ctx.__dict__["args_hash"] = value  # reached from __init__ only: the dataclass is frozen


# ``args_hash`` reads as a string; behind it the field may hold an ArgsDigest not computed yet.
setattr(  # noqa: B010 - replaces the field's class default after the dataclass was made
    GovContext,
    "args_hash",
    property(_get_args_hash, _set_args_hash, doc="``sha256:`` of the canonical JSON of the arguments."),
)


def recorded_args_hash(ctx: GovContext) -> str | ArgsDigest | None:
    """The argument hash for ``ctx``'s audit events: its value, or (for long arguments not
    hashed yet) the deferred :class:`ArgsDigest` itself, for a sink that computes it off the
    call path (see :attr:`ArgsDigest.deferrable`)."""
    value: str | ArgsDigest | None = ctx.__dict__["args_hash"]
    if isinstance(value, ArgsDigest) and (value.computed or not value.deferrable):
        return _get_args_hash(ctx)
    return value


def args_hash_source(ctx: GovContext) -> str | ArgsDigest | None:
    """What ``ctx`` holds for its argument hash, without computing it: a string, a deferred
    :class:`ArgsDigest`, or ``None``."""
    value: str | ArgsDigest | None = ctx.__dict__["args_hash"]
    return value
