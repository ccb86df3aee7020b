"""Client-side pinning: refuse unapproved servers, hide and refuse tools that drifted from their pin."""

from __future__ import annotations

import json
import math
import time
import weakref
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from mcpgov._audit import AuditEvent
from mcpgov._chain import CallNext, ChainResult, Listing, ListItem
from mcpgov._context import CLIENT_SESSION, LISTING_CURSOR, SERVER_INFO, SERVER_TARGET, GovContext
from mcpgov._errors import ConfigurationError, PinningError
from mcpgov._protocols import LISTING_PAGE_CAP
from mcpgov._types import Clock
from mcpgov._validate import is_positive_number
from mcpgov.pinning._fingerprint import changed_fields, tool_fingerprint, tool_wire_form
from mcpgov.pinning._manifest import Manifest
from mcpgov.pinning._names import NameIndex, find_collision, name_problem
from mcpgov.pinning._registry import ServerRegistry

__all__ = ["SERVER_INFO", "SERVER_TARGET", "PinningMiddleware"]


DEFAULT_MAX_LISTING_AGE = 300.0
"""Seconds a complete listing vouches for a session's calls before the next call lists again."""

_MAX_WALKS = 16
"""Walks kept under way at once (an abandoned walk's place is taken by a newer one)."""


class _Round:
    """One listing walk, from its first page (no cursor) to its last (no next cursor)."""

    __slots__ = ("generation", "pages", "seen", "started", "verified")

    def __init__(self, generation: int, started: float) -> None:
        self.generation = generation
        self.started = started
        self.pages = 0
        self.seen: set[str] = set()
        self.verified: dict[str, str] = {}


class _SessionState:
    """What one client session's listings verified (a stage serves each session on its own)."""

    __slots__ = ("generation", "listed", "listed_at", "verified", "walks")

    def __init__(self) -> None:
        self.generation = 0
        self.listed = False
        self.listed_at = -math.inf
        """When the walk of the latest complete listing started (the server's word is that old)."""
        self.verified: dict[str, str] = {}
        self.walks: dict[str, _Round] = {}
        """Walks under way, by the cursor of the page that continues each."""

    def forget(self) -> None:
        # A listing in flight now may have been answered before the change: it verifies nothing.
        self.generation += 1
        self.listed_at = -math.inf
        self.verified.clear()
        self.walks.clear()
        self.listed = False


class _Blocked:
    __slots__ = ("attributes", "detail", "name", "reason")

    def __init__(self, name: str | None, reason: str, detail: str, **attributes: Any) -> None:
        self.name = name
        self.reason = reason
        self.detail = detail
        self.attributes = attributes


def _offered(listing: Listing) -> tuple[ListItem, ...]:
    """Every tool the server listed on this page, whatever earlier stages hid.

    The client adapter keeps the SDK's result as ``listing.envelope``; its ``tools`` are the
    server's own, unfiltered. Without one, the visible items are all there is.
    """
    tools = getattr(listing.envelope, "tools", None)
    if not isinstance(tools, list):
        return listing.items
    visible = {id(item.raw): item for item in listing.items}
    return tuple(visible.get(id(tool)) or ListItem(str(getattr(tool, "name", "")), tool) for tool in tools)


class PinningMiddleware:
    """Client middleware that holds a connection to what was approved and pinned.

    For every governed request it checks that the server is approved for the caller's tenant and
    workload, that the client connected where the registry says (``ctx.extensions[SERVER_TARGET]``)
    and that the server's self-description (``ctx.extensions[SERVER_INFO]``) matches the
    registry; otherwise the request is refused with :class:`~mcpgov.PinningError`
    (reason ``server.refused``) before anything is sent.

    Pins judge the server, policy judges the caller: the listing is checked as the server sent
    it, whatever other stages of the chain hid from this caller (before or after this one). A
    tool hidden by policy is verified like any other and never reported as removed; calling it is
    refused by the policy's own rule, not by pinning.

    On ``tools/list`` it hides every tool whose fingerprint differs from its pin, every tool
    that is not pinned, and every tool whose name breaks the MCP naming rule or can be mistaken
    for an approved name; each one is recorded in a ``pin.mismatch`` audit event with the pinned
    and the offered fingerprints (removed tools too). A ``tools/call`` is allowed through only
    for a tool the latest complete listing verified, whose pin is still the fingerprint that was
    verified, and :meth:`check_send` holds every send of the call to the same fingerprint (the
    SDK's own resend after a re-listing, each ``input_required`` round). Annotations
    (``readOnlyHint``...) are covered by the fingerprint and never allow anything.

    A listing is complete when every page of one walk was checked, from a request without a
    cursor to a page without a next cursor, and no list change was announced meanwhile: a walk a
    list change interrupted, or one that was abandoned, verifies nothing, and a new walk makes
    :attr:`needs_listing` true until it completes (a tool its pages refuse is refused at once);
    a name listed twice, on one page or on two, is refused (``name.duplicate``).

    A server can change a tool without announcing a list change: a complete listing vouches for a
    session's calls for ``max_listing_age`` seconds from when its walk started, then the session
    lists again before its next call (``GovernedClient`` does, as :attr:`needs_listing` says; a
    listing that fails or refuses the tool refuses the call), and a send after that age without
    a new listing is refused (``tool.unverified``). Any listing that arrives, asked for by the
    client or by the SDK (to validate a result), is checked the same way. A change made within
    the age and undone before the next listing is not seen by a client: the residual.

    A pin store that is missing, unreadable, malformed or wrongly signed refuses every tool
    request to the server (reason ``pin.missing``, ``pin.malformed``, ``pin.bad_signature``...).

    What a listing verified is kept per client session (``ctx.extensions[CLIENT_SESSION]``, the
    SDK session, held weakly): one instance shared by sessions open at once lets each call only
    what its own latest listing verified. A ``GovernedClient`` entering a new session makes it
    forget, as a list change does.

    Args:
        registry: the approved servers.
        server_id: the registry id of the server this client is connected to.
        max_listing_age: seconds a complete listing vouches for calls (default 300); ``None``:
            until a list change or a new session.
        clock: monotonic seconds (tests).

    Raises:
        ConfigurationError: ``server_id`` is not in ``registry``.
    """

    requires_listing = True
    """Tools can only be called after a governed ``tools/list`` verified them."""

    def __init__(
        self,
        registry: ServerRegistry,
        *,
        server_id: str,
        max_listing_age: float | None = DEFAULT_MAX_LISTING_AGE,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_listing_age is not None and not is_positive_number(max_listing_age):
            raise ConfigurationError(
                f"max_listing_age must be a positive number of seconds or None, got {max_listing_age!r}"
            )
        self.max_listing_age = max_listing_age
        self._clock = clock
        if not isinstance(registry, ServerRegistry):
            raise ConfigurationError(f"registry must be a ServerRegistry, got {type(registry).__name__}")
        if server_id not in registry:
            raise ConfigurationError(f"server {server_id!r} is not in the registry")
        self.registry = registry
        self.server_id = server_id
        self._sessions: weakref.WeakKeyDictionary[object, _SessionState] = weakref.WeakKeyDictionary()
        """Each client session's own state, by its SDK session (held weakly: a closed session's goes)."""
        self._unbound = _SessionState()
        """The state of requests that name no session (a chain driven without a ``GovernedClient``)."""
        self._latest: dict[str, str] = {}
        self._index: tuple[str, NameIndex] | None = None
        self._fingerprints: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"PinningMiddleware(server_id={self.server_id!r}, verified={len(self._latest)})"

    def _state(self, ctx: GovContext | None) -> _SessionState:
        """The state of the session ``ctx`` is sent on (see :data:`~mcpgov._context.CLIENT_SESSION`)."""
        session = ctx.extensions.get(CLIENT_SESSION) if ctx is not None else None
        if session is None:
            return self._unbound
        try:
            state = self._sessions.get(session)
            if state is None:
                state = self._sessions[session] = _SessionState()
        except TypeError as exc:  # not weakly referable or not hashable: no state can be kept for it
            raise PinningError(
                "the client session cannot be told apart from others, so no listing can vouch for it",
                reason="pin.misconfigured",
            ) from exc
        return state

    def _states(self) -> list[_SessionState]:
        return list(self._sessions.values()) or [self._unbound]

    @property
    def verified(self) -> Mapping[str, str]:
        """The tools the latest complete listing (of any session) verified, with their fingerprints."""
        return MappingProxyType(dict(self._latest))

    @property
    def needs_listing(self) -> bool:
        """True until a complete listing has been checked, again after a list change, and while a
        new listing walk is under way: for any session this stage serves."""
        return not all(self._fresh(state) for state in self._states())

    def needs_listing_for(self, session: object) -> bool:
        """:attr:`needs_listing` for one client session (its SDK session object)."""
        try:
            state = self._sessions.get(session) if session is not None else self._unbound
        except TypeError:  # no state can be kept for it: it never listed
            return True
        return state is None or not self._fresh(state)

    def _aged(self, state: _SessionState) -> bool:
        """The latest complete listing is older than :attr:`max_listing_age`."""
        return self.max_listing_age is not None and self._clock() - state.listed_at >= self.max_listing_age

    def _fresh(self, state: _SessionState) -> bool:
        return state.listed and not self._aged(state)

    def notify_list_changed(self, kind: str) -> None:
        """The server said its list of ``kind`` changed: forget what was verified, until the next listing.

        Args:
            kind: ``"tool"`` (``notifications/tools/list_changed``); other kinds are ignored.
        """
        if kind == "tool":
            # Every session's: the caller does not say which connection heard it.
            for state in [self._unbound, *self._sessions.values()]:
                state.forget()
            self._latest = {}

    def check_send(self, name: str, ctx: GovContext | None = None) -> str:
        """The fingerprint tool ``name`` may be sent under now.

        Checked by the chain before a ``tools/call`` is decided, and by the client before every
        request the call sends (see the class docs). With ``ctx``, the decided request, the
        server's approval for its caller is checked again too: an approval withdrawn while the
        call waited (for a human, a slow stage) stops the send.

        Raises:
            PinningError: the server is no longer approved for the caller, or describes itself
                otherwise (reason ``server.refused``); the latest complete listing did not
                verify the tool, or its pin changed since (reason ``tool.unverified``).
        """
        if ctx is not None:
            self._check_server(ctx)
        return self._check_send(self._state(ctx), name)

    def _check_send(self, state: _SessionState, name: str) -> str:
        # Only a complete walk fills what is verified; a list change empties it, and a page that
        # refuses a tool takes it out. While another walk is under way the latest complete one's
        # word holds: a client calls only once it walked to the end itself (needs_listing).
        verified = state.verified.get(name)
        if verified is None:
            raise PinningError(
                f"tool {name!r} was not verified against its pin by the latest listing", reason="tool.unverified"
            )
        if self._aged(state):
            # A server can change a tool without announcing it: what it listed long ago no longer
            # vouches for it (GovernedClient lists again before a call when this is due).
            raise PinningError(
                f"the latest listing that verified tool {name!r} is older than {self.max_listing_age} s",
                reason="tool.unverified",
            )
        if self.registry.manifest(self.server_id).fingerprint_of(name) != verified:
            raise PinningError(
                f"the pin of tool {name!r} changed since the latest listing verified it", reason="tool.unverified"
            )
        return verified

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        if ctx.side != "client":
            raise PinningError("PinningMiddleware runs in a client's chain", reason="pin.misconfigured")
        self._check_server(ctx)
        method = ctx.method
        if method == "tools/list":
            manifest = await self.registry.current_manifest(self.server_id)
            state = self._state(ctx)
            generation = state.generation
            cursor = ctx.extension(LISTING_CURSOR)
            result = await call_next(ctx)
            if not isinstance(result, Listing):
                raise PinningError("tools/list did not produce a listing", reason="pin.misconfigured")
            return await self._check_listing(ctx, state, manifest, result, generation=generation, cursor=cursor)
        if method == "tools/call":
            name = ctx.target
            if not isinstance(name, str):
                raise PinningError(f"tool {name!r} cannot be verified", reason="tool.unverified")
            await self.registry.current_manifest(self.server_id)  # refuses a pin older than one accepted
            self._check_send(self._state(ctx), name)
        return await call_next(ctx)

    def _check_server(self, ctx: GovContext) -> None:
        """The registry's verdict on the server for ``ctx``'s caller (raises when refused)."""
        if SERVER_TARGET not in ctx.extensions:
            # Where the client connected cannot be judged: refuse rather than assume.
            raise PinningError(
                f"the client did not say what it connected to, so server {self.server_id!r} cannot be checked",
                reason="server.refused",
            )
        self.registry.check(
            self.server_id,
            tenant=ctx.tenant,
            principal=ctx.principal,
            server_info=ctx.extension(SERVER_INFO),
            target=ctx.extensions[SERVER_TARGET],
        )

    def _collision(self, name: str, manifest: Manifest) -> str | None:
        """The pinned name ``name`` could be mistaken for (skeletons precomputed per manifest)."""
        if self._index is None or self._index[0] != manifest.digest:
            self._index = (manifest.digest, NameIndex(manifest.tools))
        return find_collision(name, self._index[1])

    def _fingerprint(self, form: dict[str, Any]) -> str:
        """:func:`tool_fingerprint`, remembered per exact wire form.

        The key is Python's JSON encoding with sorted keys: equal keys mean equal JSON data, hence
        the same canonical form; it only saves canonicalising an unchanged tool on every listing.
        """
        key = json.dumps(form, sort_keys=True, separators=(",", ":"), allow_nan=False)
        fingerprint = self._fingerprints.get(key)
        if fingerprint is None:
            fingerprint = tool_fingerprint(form)
            if len(self._fingerprints) >= 4096:
                self._fingerprints.clear()
            self._fingerprints[key] = fingerprint
        return fingerprint

    def _verify(self, item: ListItem, manifest: Manifest, duplicated: bool) -> tuple[str | None, _Blocked | None]:
        """The item's verified fingerprint, or why it is blocked."""
        name = item.name
        pin = manifest.tools.get(name)
        old = pin.fingerprint if pin is not None else None
        problem = name_problem(name)
        if problem is not None:
            return None, _Blocked(name, "name.invalid", f"tool name {name!r} is not allowed: {problem}", old=old)
        if duplicated:
            return None, _Blocked(name, "name.duplicate", f"the server lists {name!r} more than once", old=old)
        try:
            form = tool_wire_form(item.raw)
            new = self._fingerprint(form)
        except (TypeError, ValueError) as exc:
            return None, _Blocked(name, "tool.unhashable", f"tool {name!r} cannot be fingerprinted: {exc}", old=old)
        if form.get("name") != name:
            return None, _Blocked(name, "name.invalid", f"tool {name!r} is listed under another name", old=old, new=new)
        if pin is None:
            other = self._collision(name, manifest)
            if other is not None:
                detail = f"tool name {name!r} can be mistaken for the approved name {other!r}"
                return None, _Blocked(name, "name.collision", detail, old=None, new=new, collides_with=other)
            return None, _Blocked(name, "tool.new", f"tool {name!r} is not pinned", old=None, new=new)
        if pin.fingerprint != new:
            fields = list(changed_fields(pin.tool, form))
            detail = f"tool {name!r} differs from its pin ({', '.join(fields)})"
            return None, _Blocked(name, "tool.changed", detail, old=old, new=new, fields=fields)
        return new, None

    async def _check_listing(
        self,
        ctx: GovContext,
        state: _SessionState,
        manifest: Manifest,
        listing: Listing,
        *,
        generation: int,
        cursor: str | None,
    ) -> Listing:
        # Pins judge the server: what it offered, before any other stage hid a tool from this
        # caller. A tool hidden by policy is still verified (a later call is then refused by the
        # policy's own rule) and is never reported as removed.
        walk: _Round | None
        if cursor is None:
            # A new walk: a listing is due again until one completes.
            walk = _Round(generation, self._clock())
            state.listed = False
        else:
            # Each walk continues from the cursor its previous page gave (walks of concurrent
            # listings stay apart); an unknown cursor continues no walk.
            walk = state.walks.pop(cursor, None)
        if walk is not None and (walk.generation != generation or state.generation != generation):
            # The server announced a change while this walk (or this page) was under way: the page
            # may predate it. It is still checked and filtered, but it verifies nothing.
            walk = None
        offered = _offered(listing)
        counts = Counter(item.name for item in offered)
        earlier = walk.seen if walk is not None else set()
        verified_raw: set[int] = set()
        blocked: list[_Blocked] = []
        for item in offered:
            fingerprint, refusal = self._verify(item, manifest, counts[item.name] > 1 or item.name in earlier)
            if refusal is not None:
                blocked.append(refusal)
                state.verified.pop(item.name, None)  # refused now: no earlier listing vouches for it
            elif fingerprint is not None:
                verified_raw.add(id(item.raw))
                if walk is not None:
                    walk.verified[item.name] = fingerprint
        if walk is not None:
            for name in earlier.intersection(counts):
                # Listed on an earlier page of this walk too: neither listing of it is trusted.
                walk.verified.pop(name, None)
                state.verified.pop(name, None)
            walk.seen.update(counts)
            if offered is listing.items:
                # No unfiltered envelope: names other stages hid were listed, but cannot be verified here.
                walk.seen.update(listing.hidden)
            walk.pages += 1
            following = getattr(listing.envelope, "next_cursor", None)
            if following is not None and walk.pages >= LISTING_PAGE_CAP:
                # More pages than any walk reads: what the server lists now cannot be verified to
                # its end, so no earlier listing vouches for anything either.
                detail = f"the server's tool listing did not end within {LISTING_PAGE_CAP} pages"
                blocked.append(_Blocked(None, "listing.unending", detail))
                state.verified.clear()
                state.listed = False
            elif following is not None:
                if len(state.walks) >= _MAX_WALKS:
                    del state.walks[next(iter(state.walks))]  # the oldest: most likely abandoned
                state.walks[str(following)] = walk
            else:
                # The last page: whatever is pinned and was not on any page of this walk is gone.
                for name, pin in manifest.tools.items():
                    if name not in walk.seen:
                        blocked.append(
                            _Blocked(
                                name, "tool.removed", f"pinned tool {name!r} is no longer listed", old=pin.fingerprint
                            )
                        )
                state.verified = walk.verified
                state.listed_at = walk.started
                self._latest = dict(walk.verified)
                state.listed = True
        await self._record(ctx, manifest, blocked)
        return listing.keep(lambda item: id(item.raw) in verified_raw)

    async def _record(self, ctx: GovContext, manifest: Manifest, blocked: list[_Blocked]) -> None:
        audit = ctx.audit
        if audit is None:
            return
        for entry in blocked:
            attributes: dict[str, Any] = {"server_id": self.server_id, "manifest": manifest.digest, "new": None}
            attributes.update(entry.attributes)
            await audit.emit(
                AuditEvent.from_context(
                    ctx,
                    "pin.mismatch",
                    kind="tool",
                    target=entry.name,
                    reason=entry.reason,
                    detail=entry.detail,
                    error_code=PinningError.code,
                    attributes=attributes,
                )
            )
