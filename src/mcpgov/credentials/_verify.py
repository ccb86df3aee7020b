"""Server side: verifying a presented credential, and the middleware that requires one."""

from __future__ import annotations

import contextvars
import hashlib
import itertools
import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from mcpgov._arguments import arguments_hash
from mcpgov._audit import AuditEvent
from mcpgov._chain import CallNext, ChainResult, StageSpec
from mcpgov._contain import contained
from mcpgov._context import META_CREDENTIAL, STANDING_CHECKS, GovContext, StandingCheck
from mcpgov._errors import ConfigurationError, CredentialError
from mcpgov._lru import LRU
from mcpgov._methods import LIST_METHODS, LISTEN_METHOD
from mcpgov._principal import Principal
from mcpgov._shared import shared_text
from mcpgov._types import Clock
from mcpgov._validate import is_number, is_positive_number
from mcpgov.credentials._claims import TASK_BINDING, CredentialClaims
from mcpgov.credentials._jose import DEFAULT_MAX_TOKEN_BYTES, check_signature, claimed_id, parse_credential
from mcpgov.credentials._keys import KeyResolver
from mcpgov.credentials._revocation import MAX_LEEWAY, RevocationList

__all__ = [
    "EMPTY_ARGS_HASH",
    "CredentialMiddleware",
    "CredentialRefused",
    "CredentialVerifier",
    "VerifiedCredential",
    "current_credential",
]

EMPTY_ARGS_HASH = arguments_hash(None)
"""The argument hash of a call without arguments (what an argument-bound credential names then)."""


class CredentialRefused(CredentialError):
    """A presented credential was refused. ``credential_id`` is its ``jti`` once its signature
    verified; before that, the id it claims is only ``claimed_id`` (the refusal event's
    ``unverified`` attribute), never recorded as the credential id.

    Args:
        detail: what went wrong (audit only).
        reason: machine-readable reason (``expired``, ``revoked``, ``wrong_tool``...).
        credential_id: the verified credential's id, for audit (never the token).
        claimed_id: the id an unverified credential claims (a short ``[A-Za-z0-9_-]`` string).
    """

    def __init__(
        self, detail: str, *, reason: str, credential_id: str | None = None, claimed_id: str | None = None
    ) -> None:
        super().__init__(detail, reason=reason)
        self.credential_id = credential_id
        self.claimed_id = claimed_id
        if claimed_id is not None:
            self.unverified = {"jti": claimed_id}


@dataclass(frozen=True, slots=True)
class VerifiedCredential:
    """The credential of the request being served: its verified claims, and the token itself.

    The token is here only so :class:`~mcpgov.credentials.Downstream` can exchange it; it is
    kept out of ``repr`` and must never be passed on to another service.
    """

    claims: CredentialClaims
    token: str = field(repr=False)


_CURRENT: contextvars.ContextVar[VerifiedCredential | None] = contextvars.ContextVar(
    "mcpgov_current_credential", default=None
)


def current_credential() -> VerifiedCredential | None:
    """The verified credential of the request being served (inside a tool), or None."""
    return _CURRENT.get()


def _seconds(name: str, value: float, *, low: float, high: float = math.inf) -> float:
    if not is_number(value) or not low <= value <= high:
        raise ConfigurationError(f"{name} must be a number of seconds between {low} and {high}, got {value!r}")
    return float(value)


class CredentialVerifier:
    """Verifies credentials for one audience (one server).

    Checks, in order: size and shape; header (``typ``, algorithm, key id; nothing fetched);
    signature; claims shape; issuer; audience; lifetime (expiry, not-before, issued-at, all
    with at most ``leeway`` seconds of skew, and no lifetime beyond ``max_ttl``); tenant and
    principal when known; tool binding; argument hash where bound; single use; revocation.

    Args:
        issuer: the expected ``iss``.
        audience: this server's audience; only credentials minted for it are accepted.
        keys: the verification keys (a :class:`SigningKeySet` in the issuer's process, or
            :class:`VerificationKeys` from its JWKS).
        revocations: the revocation list shared with the issuer.
        max_ttl: the longest credential lifetime accepted (default: the revocation list's).
        leeway: clock skew allowed, at most :data:`MAX_LEEWAY` seconds.
        max_token_bytes: longer tokens are refused before any decoding.
        single_use: treat every credential as single use (otherwise only those marked so).
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | None,
        keys: KeyResolver,
        revocations: RevocationList,
        max_ttl: float | None = None,
        leeway: float = 5.0,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        single_use: bool = False,
        clock: Clock = time.time,
    ) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise ConfigurationError("a credential verifier needs the issuer it trusts")
        if audience is not None and (not isinstance(audience, str) or not audience):
            raise ConfigurationError("a credential verifier's audience must be a non-empty string")
        if not isinstance(revocations, RevocationList):
            raise ConfigurationError("a credential verifier needs a RevocationList (shared with the issuer)")
        if isinstance(max_token_bytes, bool) or not isinstance(max_token_bytes, int) or max_token_bytes < 256:
            raise ConfigurationError("max_token_bytes must be an integer of at least 256")
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.algorithms = frozenset(keys.algorithms)
        self.revocations = revocations
        self.max_ttl = _seconds("max_ttl", revocations.max_ttl if max_ttl is None else max_ttl, low=1.0)
        self.leeway = _seconds("leeway", leeway, low=0.0, high=MAX_LEEWAY)
        if revocations.leeway < self.leeway or revocations.max_ttl < self.max_ttl:
            raise ConfigurationError(
                "the revocation list's entries must outlive what this verifier accepts: its leeway "
                f"({revocations.leeway}) and max_ttl ({revocations.max_ttl}) must be at least the verifier's "
                f"({self.leeway}, {self.max_ttl})"
            )
        self.max_token_bytes = max_token_bytes
        self.single_use = single_use
        self._clock = clock
        self._verified: LRU[bytes, tuple[str, str, Any, CredentialClaims]] = LRU(4096)

    def __repr__(self) -> str:
        return f"CredentialVerifier(issuer={self.issuer!r}, audience={self.audience!r})"

    def check_token(self, token: Any) -> CredentialClaims:
        """The stateless checks: shape, header, signature, claims, issuer, audience, lifetime.

        Raises:
            CredentialRefused: with the reason and, when readable, the credential id.
        """
        # A token whose signature was verified before (same bytes, and its key id still names the
        # key that verified it) is not verified again; everything that depends on time or on the
        # request still is.
        digest = None
        if isinstance(token, str) and len(token) <= self.max_token_bytes:  # size first: nothing big is hashed
            digest = hashlib.sha256(token.encode("utf-8")).digest()
        cached = self._verified.get(digest) if digest is not None else None
        if cached is not None and self.keys.find(cached[0], cached[1]) is cached[2]:
            claims = cached[3]  # the very key that verified it still verifies under that id
        else:
            obj, payload = self._parse(token)
            jti = claimed_id(payload)
            try:
                key = check_signature(obj, self.keys, self.algorithms)
            except CredentialError as exc:
                # Nothing vouches for what an unverified credential says: its id is a claim only.
                raise CredentialRefused(exc.detail, reason=exc.reason, claimed_id=jti) from None
            try:
                claims = CredentialClaims.from_payload(payload)
            except CredentialError as exc:
                # Signed by a key of this issuer: its id is the issuer's, whatever else is wrong.
                raise CredentialRefused(exc.detail, reason=exc.reason, credential_id=jti) from None
            if digest is not None:
                header = obj.headers()
                self._verified[digest] = (shared_text(header["kid"]), shared_text(header["alg"]), key, claims)
        self._check_claims(claims)
        return claims

    def _parse(self, token: Any) -> tuple[Any, dict[str, Any]]:
        try:
            return parse_credential(token, max_bytes=self.max_token_bytes)
        except CredentialError as exc:
            raise CredentialRefused(exc.detail, reason=exc.reason) from None

    def _check_claims(self, claims: CredentialClaims) -> None:
        jti = claims.jti
        if claims.issuer != self.issuer:
            raise CredentialRefused("the credential is from another issuer", reason="wrong_issuer", credential_id=jti)
        if self.audience is not None and claims.audience != self.audience:
            raise CredentialRefused(
                f"the credential is for audience {claims.audience!r}", reason="wrong_audience", credential_id=jti
            )
        now = self._clock()
        leeway = self.leeway
        self.check_lifetime(claims)
        if claims.not_before > now + leeway:
            raise CredentialRefused("the credential is not valid yet", reason="not_yet_valid", credential_id=jti)
        if claims.issued_at > now + leeway:
            raise CredentialRefused(
                "the credential was issued in the future", reason="issued_in_future", credential_id=jti
            )
        if claims.expires_at <= claims.issued_at or claims.expires_at - claims.issued_at > self.max_ttl + 1.0:
            raise CredentialRefused(
                "the credential's lifetime is longer than accepted", reason="lifetime_too_long", credential_id=jti
            )

    def check_lifetime(self, claims: CredentialClaims) -> None:
        """Refuse a credential that has expired by now (with ``leeway``); cheap, synchronous.

        Raises:
            CredentialRefused: ``reason="expired"``.
        """
        if claims.expires_at <= self._clock() - self.leeway:
            raise CredentialRefused("the credential has expired", reason="expired", credential_id=claims.jti)

    async def verify(
        self,
        token: Any,
        *,
        tool: str | None = None,
        args_hash: str | None = None,
        tenant: str | None = None,
        principal: Principal | None = None,
        require_args_binding: bool = False,
    ) -> CredentialClaims:
        """Verify ``token`` for one request.

        Args:
            token: the presented credential.
            tool: the tool called; the credential must be bound to it.
            args_hash: the request's argument hash; must equal the bound one when bound.
            tenant: the caller's tenant, when identity established it.
            principal: the verified caller; the credential must have been issued to it.
            require_args_binding: refuse a credential that is not bound to the arguments.

        Returns:
            The verified claims.

        Raises:
            CredentialRefused: the credential is not good for this request; nothing may run.
        """
        claims = self.check_token(token)
        self.check_request(claims, tool=tool, args_hash=args_hash, tenant=tenant, principal=principal,
                           require_args_binding=require_args_binding)  # fmt: skip
        await self.check_state(claims)
        return claims

    def check_request(
        self,
        claims: CredentialClaims,
        *,
        tool: str | None,
        args_hash: str | None,
        tenant: str | None,
        principal: Principal | None,
        require_args_binding: bool,
    ) -> None:
        """The checks that relate the credential to the request (see :meth:`verify`)."""
        jti = claims.jti
        if tenant is not None and claims.tenant != tenant:
            raise CredentialRefused("the credential is for another tenant", reason="wrong_tenant", credential_id=jti)
        if principal is not None and (claims.subject, claims.subject_issuer) != (principal.subject, principal.issuer):
            raise CredentialRefused(
                "the credential was issued to another principal", reason="wrong_principal", credential_id=jti
            )
        if principal is not None and not _acts_for(claims, principal):
            raise CredentialRefused(
                "the credential was issued to the principal acting for other parties",
                reason="wrong_principal",
                credential_id=jti,
            )
        if tool is not None and (tool == TASK_BINDING or tool not in claims.tools):
            raise CredentialRefused(
                f"the credential is not bound to tool {tool!r}", reason="wrong_tool", credential_id=jti
            )
        if claims.args_hash is not None:
            if claims.args_hash != (args_hash or EMPTY_ARGS_HASH):
                raise CredentialRefused(
                    "the credential is bound to other arguments", reason="args_mismatch", credential_id=jti
                )
        elif require_args_binding:
            raise CredentialRefused(
                "this call needs a credential bound to its arguments", reason="args_unbound", credential_id=jti
            )

    async def check_revocation(self, claims: CredentialClaims) -> list[str]:
        """Expiry and revocation, without recording a single use (one store lookup)."""
        self.check_lifetime(claims)
        try:
            return await self.revocations.check(claims)
        except CredentialError as exc:
            raise CredentialRefused(exc.detail, reason=exc.reason, credential_id=claims.jti) from None

    async def check_state(self, claims: CredentialClaims) -> list[str]:
        """Expiry, single use and revocation (fail closed): one store lookup, and for a single-use
        credential one store write. Returns the revocation keys checked.

        Nothing is awaited after the store answered: this process's own revocations made
        meanwhile are consulted synchronously at the end.
        """
        self.check_lifetime(claims)
        try:
            if claims.single_use or self.single_use:
                await self.revocations.consume(claims)
            return await self.revocations.check(claims)
        except CredentialError as exc:
            raise CredentialRefused(exc.detail, reason=exc.reason, credential_id=claims.jti) from None


def _acts_for(claims: CredentialClaims, principal: Principal) -> bool:
    """Whether ``principal`` (the credential's holder) acts for exactly the parties the credential
    was issued to it acting for: a credential still held by the principal it was minted for (as
    minted, or narrowed by it) names them in ``act``; one derived into another principal's name
    in ``holder_act``. Their revocation reaches it, and it serves its holder acting for no one else."""
    chain = tuple((actor.subject, actor.issuer) for actor in principal.actors)
    if claims.holder_actors is not None:
        return claims.holder_actors == chain
    if claims.owner_key == (claims.subject_issuer, claims.subject):
        return claims.actors == chain
    # Derived into another name by an issuer that did not record who its holder acts for: it
    # serves the holder acting for nobody, never a chain nothing vouches for.
    return not chain


class _SeenCredentials:
    """The ids of the credentials already recorded as verified, each until it expires (at most
    ``maxsize``; the oldest quarter goes when it is full of live ones). A plain dict of id to
    expiry: a credential in use costs one dict entry here, not the four structures of a TTL cache."""

    __slots__ = ("_clock", "_expiry", "_maxsize", "_prune_at")

    def __init__(self, maxsize: int, clock: Clock) -> None:
        self._expiry: dict[str, float] = {}
        self._maxsize = maxsize
        self._clock = clock
        self._prune_at = min(1024, maxsize)

    def __len__(self) -> int:
        return len(self._expiry)

    def first(self, claims: CredentialClaims) -> bool:
        """Whether ``claims`` are seen for the first time (they are remembered from now on)."""
        expiry = self._expiry
        if claims.jti in expiry:
            return False
        if len(expiry) >= self._prune_at:
            # Expired credentials are refused before they get here: forget them. Amortised: the
            # next pruning waits until the dict has doubled again. The survivors go to a fresh
            # dict: deleting in place leaves the table its holes, and refilling it then doubles
            # the table (to the size of three times the live ids) instead of reusing them.
            now = self._clock()
            live = {jti: exp for jti, exp in expiry.items() if exp >= now}
            if len(live) >= self._maxsize:  # still full of live ids: the oldest quarter goes
                live = dict(itertools.islice(live.items(), len(live) - self._maxsize * 3 // 4, None))
            self._expiry = expiry = live
            self._prune_at = min(max(1024, 2 * len(expiry)), self._maxsize)
        expiry[claims.jti] = claims.expires_at
        return True


BindArguments = bool | Collection[str] | Callable[[GovContext], bool]
"""Which calls need argument-bound credentials: all, a set of tool names, or a predicate."""


def _always(_ctx: GovContext) -> bool:
    return True


def _never(_ctx: GovContext) -> bool:
    return False


def _binding_rule(bind: BindArguments) -> Callable[[GovContext], bool]:
    if isinstance(bind, bool):
        return _always if bind else _never  # shared: a client builds one rule per session
    if callable(bind):
        return bind
    if isinstance(bind, str) or not isinstance(bind, Collection):
        raise ConfigurationError("bind_arguments takes a bool, a collection of tool names, or a predicate")
    names = frozenset(bind)
    return lambda ctx: ctx.target in names


class CredentialMiddleware:
    """Server middleware: every ``tools/call`` must carry a credential good for it.

    The credential travels in the request ``_meta`` under :data:`~mcpgov.META_CREDENTIAL`.
    Place it after identity middleware (so the credential must belong to the verified caller
    and its tenant) and before policy (which then sees ``ctx.credential``, and the signed
    ``ctx.task_id`` and ``ctx.purpose``).

    The stateless checks (signature, issuer, audience, tenant, principal, tool, arguments) run
    here. Expiry, single use and revocation run **at the gate**, as a final check
    (:attr:`~mcpgov.GovContext.final_checks`) immediately before the tool body starts, with no
    await between that check and the body: a call that waited (for an approval, a slow
    authoriser, a rate-limit store) is re-verified before it runs, and once
    :meth:`~mcpgov.credentials.CredentialIssuer.revoke` returns no tool body starts on that
    credential in this process (on other replicas: after one store round trip). That is one
    store lookup per call; ``check_early=True`` adds a second one here, so a revoked
    credential is refused before the later stages (an approval request) run at all.

    Requests other than tool calls need no credential; when one is presented (inside a
    client's task, :meth:`~mcpgov.GovernedClient.task`) it is verified the same way and binds
    the request to the credential's task and purpose (``ctx.task_id``, ``ctx.purpose``,
    ``ctx.credential``), so listings, resources, prompts and completions of a task are decided
    and recorded as part of it. A credential that does not verify refuses the request.

    A refusal raises :class:`CredentialRefused` (the wire gets a bare credential error; the one
    audit event names the reason and the credential id). ``credential.verified`` is emitted
    once per credential, not per request.

    Args:
        verifier: the verifier for this server's audience.
        bind_arguments: calls that need a credential bound to their exact arguments.
        check_early: also check revocation before the rest of the chain (two lookups per call).
    """

    stage: ClassVar[StageSpec] = StageSpec(provides=frozenset({"credential"}), after=frozenset({"principal"}))

    def __init__(
        self, verifier: CredentialVerifier, *, bind_arguments: BindArguments = False, check_early: bool = False
    ) -> None:
        if not isinstance(verifier, CredentialVerifier):
            raise ConfigurationError("CredentialMiddleware needs a CredentialVerifier")
        if verifier.audience is None:
            raise ConfigurationError("a server's credential verifier must name the server's audience")
        if not isinstance(check_early, bool):
            raise ConfigurationError("check_early must be a bool")
        self.verifier = verifier
        self.check_early = check_early
        self._bind = _binding_rule(bind_arguments)
        self._seen = _SeenCredentials(65_536, verifier._clock)
        from mcpgov.credentials._logs import redact_token_logs  # noqa: PLC0415 - avoids an import cycle

        redact_token_logs()

    def __repr__(self) -> str:
        return f"CredentialMiddleware({self.verifier!r})"

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        token = ctx.meta.get(META_CREDENTIAL)
        is_call = ctx.method == "tools/call"
        if not is_call and token is None:
            return await call_next(ctx)
        if not isinstance(token, str):
            raise CredentialRefused("no credential was presented", reason="missing")
        verifier = self.verifier
        try:
            claims = verifier.check_token(token)
            if is_call:
                verifier.check_request(
                    claims,
                    tool=ctx.target,
                    # Read (computed) only for a credential bound to arguments: nothing else needs it here.
                    args_hash=ctx.args_hash if claims.args_hash is not None else None,
                    tenant=ctx.tenant,
                    principal=ctx.principal,
                    require_args_binding=self._bind(ctx),
                )
            else:
                verifier.check_request(
                    claims, tool=None, args_hash=None, tenant=ctx.tenant, principal=ctx.principal,
                    require_args_binding=False,
                )  # fmt: skip
                if claims.args_hash is not None or claims.single_use:
                    raise CredentialRefused(  # noqa: TRY301 - annotated with the context below like the rest
                        "a credential for one call cannot bind other requests",
                        reason="wrong_tool",
                        credential_id=claims.jti,
                    )
            if self.check_early or ctx.method in LIST_METHODS:
                # A listing has no effect to gate: it is checked here, once.
                await verifier.check_revocation(claims)
        except CredentialRefused as exc:
            if exc.credential_id is not None:
                exc.context = ctx.replace(credential=MappingProxyType({"jti": exc.credential_id}))
            raise
        seen = self._seen
        listing = ctx.method in LIST_METHODS

        async def final(c: GovContext) -> None:
            # At the gate, right before the effect: what the decision obliges the credential to be
            # (known only now, after every authoriser), then expiry, single use, revocation.
            decision = c.decision
            if is_call and decision is not None and decision.obligations:
                check_obligations(claims, decision.obligations, c.args_hash)
            await verifier.check_state(claims)

        ctx = ctx.replace(
            credential=claims.as_mapping(),
            tenant=claims.tenant,
            task_id=claims.task_id,
            purpose=claims.purpose,
            final_checks=ctx.final_checks if listing else (*ctx.final_checks, final),
        )
        # What outlives the request (a listen stream, a handshake-era subscription or the list
        # changes a session hears) is re-checked while it lasts.
        ctx = ctx.with_extension(
            STANDING_CHECKS, (*(ctx.extension(STANDING_CHECKS) or ()), _standing(ctx, claims, verifier))
        )
        if ctx.audit is not None and seen.first(claims):
            # Signature, issuer, audience and binding verified; lifetime and revocation are
            # checked again at the gate.
            await ctx.audit.emit(
                AuditEvent.from_context(
                    ctx,
                    "credential.verified",
                    attributes={"audience": claims.audience, "tools": list(claims.tools), "exp": claims.expires_at},
                )
            )
        reset = _CURRENT.set(VerifiedCredential(claims, token))
        try:
            return await call_next(ctx)
        finally:
            _CURRENT.reset(reset)


CAP_SLACK = 1.0
"""Seconds a credential may outlive a ``max_credential_ttl`` cap: its claims carry whole seconds."""


def check_obligations(claims: CredentialClaims, obligations: Mapping[str, Any], args_hash: str | None) -> None:
    """Refuse a credential that does not honour a decision's credential obligations.

    ``bind_arguments``: the credential must be bound to exactly these arguments (a call without
    arguments: to :data:`EMPTY_ARGS_HASH`, as for :meth:`CredentialVerifier.check_request`);
    ``max_credential_ttl``: it may not last longer than that (a cap that is not a positive number
    is honoured by no credential).

    Raises:
        CredentialRefused: ``reason`` ``args_unbound``, ``ttl_exceeded`` or ``ttl_invalid``.
    """
    jti = claims.jti
    if obligations.get("bind_arguments") and (
        claims.args_hash is None or claims.args_hash != (args_hash or EMPTY_ARGS_HASH)
    ):
        raise CredentialRefused(
            "the decision requires a credential bound to the call's arguments", reason="args_unbound", credential_id=jti
        )
    if "max_credential_ttl" in obligations:
        cap = obligations["max_credential_ttl"]
        if not is_positive_number(cap):
            raise CredentialRefused(
                "the decision's max_credential_ttl is not a positive number", reason="ttl_invalid", credential_id=jti
            )
        if claims.expires_at - claims.issued_at > float(cap) + CAP_SLACK:
            raise CredentialRefused(
                f"the decision allows credentials of at most {float(cap):g} s for this call",
                reason="ttl_exceeded",
                credential_id=jti,
            )


def _standing(ctx: GovContext, claims: CredentialClaims, verifier: CredentialVerifier) -> StandingCheck:
    """The check what this credential authorised beyond its request (a listen stream, a
    handshake-era subscription, the notifications a session hears) re-runs while it lasts:
    lifetime and revocation (never a single-use consumption: the stream is one use). A refusal is
    audited as ``credential.refused`` with the caller, then raised, which ends what it authorised."""
    detail = (
        "the listen stream it opened was ended"
        if ctx.method == LISTEN_METHOD
        else "the notifications it let the session hear were ended"
    )

    async def still_valid() -> None:
        try:
            verifier.check_lifetime(claims)
            await verifier.revocations.check(claims)
        except BaseException as exc:
            if not await contained(exc):
                raise  # an interpreter exit, or the stream's own cancellation
            # Refused, or the check itself failed (whatever it raised): the stream ends (fail closed).
            reason = exc.reason if isinstance(exc, CredentialError) else "revocation_unavailable"
            if ctx.audit is not None:
                await ctx.audit.emit(AuditEvent.from_context(ctx, "credential.refused", reason=reason, detail=detail))
            if isinstance(exc, CredentialError):
                raise
            raise CredentialRefused(
                f"the revocation check raised {type(exc).__name__}", reason=reason, credential_id=claims.jti
            ) from None

    return still_valid
