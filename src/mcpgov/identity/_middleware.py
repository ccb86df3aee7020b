"""Server side: ``IdentityMiddleware`` establishes the verified principal and tenant of every request."""

from __future__ import annotations

import json
import logging
import os
import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cachetools import LRUCache

from mcpgov._audit import AuditEvent
from mcpgov._chain import CallNext, ChainResult, StageSpec
from mcpgov._context import META_IDENTITY, GovContext, SessionAnchor
from mcpgov._errors import ConfigurationError, IdentityError
from mcpgov._methods import LIST_METHODS
from mcpgov._principal import Principal
from mcpgov.identity import _sdk
from mcpgov.identity._verifier import AUTH_JWT, AUTH_SHARED_SECRET, AUTH_SPIFFE, IdentityVerifier, VerifiedIdentity

__all__ = ["AcceptPolicy", "IdentityMiddleware"]

logger = logging.getLogger("mcpgov.identity")

_KNOWN_METHODS = frozenset({AUTH_JWT, AUTH_SPIFFE, AUTH_SHARED_SECRET})


@dataclass(frozen=True)
class AcceptPolicy:
    """Which authentication methods and issuers a deployment accepts.

    Anything else is refused (with an audit event) before the first tool call, even when the
    token itself verifies.

    Args:
        methods: accepted authentication methods (``"spiffe-jwt-svid"``, ``"jwt"``,
            ``"shared-secret"``); ``None``: every method the verifier knows.
        issuers: accepted principal issuers (OIDC issuer URLs, ``spiffe://trust-domain``);
            ``None``: every issuer the verifier knows.
        static_keys: accept tokens verified by static keys (inline JWKS, shared secrets);
            ``False`` demands keys fetched from the issuer.

    Raises:
        ConfigurationError: an unknown method.
    """

    methods: Collection[str] | None = None
    issuers: Collection[str] | None = None
    static_keys: bool = True

    def __post_init__(self) -> None:
        if self.methods is not None:
            methods = frozenset(self.methods)
            unknown = methods - _KNOWN_METHODS
            if unknown or not methods:
                raise ConfigurationError(
                    f"unknown authentication methods {sorted(unknown)}; known: {sorted(_KNOWN_METHODS)}"
                )
            object.__setattr__(self, "methods", methods)
        if self.issuers is not None:
            object.__setattr__(self, "issuers", frozenset(self.issuers))

    def check(self, verified: VerifiedIdentity) -> None:
        """Refuse ``verified`` unless this policy accepts it.

        Raises:
            IdentityError: reason ``method_not_accepted``, ``issuer_not_accepted`` or
                ``static_key_not_accepted``.
        """
        principal = verified.principal
        if self.methods is not None and principal.auth_method not in self.methods:
            raise IdentityError(
                f"authentication method {principal.auth_method} is not accepted", reason="method_not_accepted"
            )
        if self.issuers is not None and principal.issuer not in self.issuers:
            raise IdentityError(f"issuer {principal.issuer} is not accepted", reason="issuer_not_accepted")
        if not self.static_keys and verified.static_key:
            raise IdentityError("static keys are not accepted", reason="static_key_not_accepted")


class IdentityMiddleware:
    """Server middleware binding every request to a verified principal and tenant. Place it first.

    Where the identity comes from:

    * over Streamable HTTP: the ``Authorization: Bearer`` token, verified by the SDK's
      ``TokenVerifier`` hook (see :func:`~mcpgov.identity.server_auth`), so the SDK answers 401
      with ``WWW-Authenticate`` itself; this middleware reads the verified token;
    * in-process and stdio: the ``_meta`` entry :data:`~mcpgov.META_IDENTITY`, or, when ``env``
      is set (stdio servers), that variable of the server process's environment.

    A request without an identity is refused: there is no anonymous local caller. On legacy
    sessions the first principal and its tenant are bound to the session, and any other principal,
    or the same principal with a token for another tenant, is refused later in it
    (``principal_changed``, ``tenant_changed``), on every transport; 2026-07-28 requests are
    verified each on its own (a repeated token is served from
    the verifier's cache without a second signature check).

    Audit: a refusal is recorded once, as the request's deny ``decision`` (reason such as
    ``expired``, ``bad_signature``, ``identity_missing``); a success adds ``session.bound`` when
    a legacy session binds its principal, and ``identity.verified`` the first time a token is
    seen on a request without a session. Tokens never reach audit or logs (constructing one
    installs :func:`~mcpgov.credentials.redact_token_logs`).

    Args:
        verifier: the :class:`IdentityVerifier`.
        accept: which methods and issuers this deployment accepts.
        env: name of an environment variable holding the identity token (stdio servers).
        environ: the environment to read (default ``os.environ``).
        require_tenant: refuse principals without a tenant.
        max_sessions: bound on remembered session bindings for transports without a session
            object (bindings of live sessions are otherwise held for exactly their lifetime).

    Raises:
        ConfigurationError: invalid settings (an accept policy naming issuers the verifier does
            not know...).
    """

    stage: ClassVar[StageSpec] = StageSpec(provides=frozenset({"principal"}))

    def __init__(
        self,
        verifier: IdentityVerifier,
        *,
        accept: AcceptPolicy | None = None,
        env: str | None = None,
        environ: Mapping[str, str] | None = None,
        require_tenant: bool = True,
        max_sessions: int = 100_000,
    ) -> None:
        if not isinstance(verifier, IdentityVerifier):
            raise ConfigurationError("IdentityMiddleware needs an IdentityVerifier")
        if accept is not None and accept.issuers is not None:
            unknown = set(accept.issuers) - set(verifier.issuers)
            if unknown:
                raise ConfigurationError(
                    f"the accept policy names issuers the verifier does not know: {sorted(unknown)}"
                )
        if env is not None and (not isinstance(env, str) or not env):
            raise ConfigurationError("env must be an environment variable name")
        self.verifier = verifier
        self.accept = accept or AcceptPolicy()
        self.env = env
        self._environ: Mapping[str, str] = environ if environ is not None else os.environ
        self.require_tenant = require_tenant
        self._bound: weakref.WeakKeyDictionary[Any, tuple[str, str, str | None]] = weakref.WeakKeyDictionary()
        self._bound_ids: LRUCache[str, tuple[str, str, str | None]] = LRUCache(maxsize=max_sessions)
        from mcpgov.credentials._logs import redact_token_logs  # noqa: PLC0415 - avoids an import cycle

        redact_token_logs()  # the SDK logs whole messages (``_meta`` and its token) at DEBUG

    def __repr__(self) -> str:
        return f"IdentityMiddleware(verifier={self.verifier!r}, accept={self.accept!r}, env={self.env!r})"

    async def authenticate(self, token: str) -> VerifiedIdentity:
        """Verify ``token`` and apply the accept policy and tenant rule.

        Raises:
            IdentityError: refused; ``reason`` says why. An unexpected verifier failure is an
                ``IdentityError`` too (reason ``verifier_error``), never an allow.
        """
        verified = await self._verify(token)
        self._check(verified)
        return verified

    async def _verify(self, token: str) -> VerifiedIdentity:
        try:
            return await self.verifier.verify_identity(token)
        except IdentityError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken verifier denies, whatever it raised
            logger.error("identity verifier raised %s; refusing", type(exc).__name__)
            raise IdentityError(f"identity verifier raised {type(exc).__name__}", reason="verifier_error") from None

    def _check(self, verified: VerifiedIdentity) -> None:
        self.accept.check(verified)
        if self.require_tenant and verified.principal.tenant is None:
            raise IdentityError("the identity names no tenant", reason="tenant_missing")

    def _token(self, ctx: GovContext) -> str | None:
        if _sdk.over_http(ctx):
            bearer = _sdk.http_bearer(ctx)
            if bearer is None:
                raise IdentityError(
                    "no verified bearer token on an HTTP request (is the server built with server_auth()?)",
                    reason="identity_missing",
                )
            return bearer
        token = ctx.meta.get(META_IDENTITY)
        if token is not None:
            if not isinstance(token, str):
                raise IdentityError("the identity _meta entry is not a string", reason="malformed")
            return token
        if self.env is not None:
            return self._environ.get(self.env) or None
        return None

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        """Verify the request's identity, set ``ctx.principal`` and ``ctx.tenant``, bind sessions."""
        if ctx.side != "server":
            raise ConfigurationError("IdentityMiddleware runs on servers; clients use GovernedClient(identity=...)")
        token = self._token(ctx)
        if token is None:
            raise IdentityError("no identity presented", reason="identity_missing")
        verified = await self._verify(token)
        principal = verified.principal
        if ctx.method in LIST_METHODS:
            ctx = ctx.replace(principal=principal, tenant=principal.tenant)
        else:
            # The token must still be valid right before the effect, not only on arrival: a call
            # may wait (for an approval, a slow stage) past its expiry.
            ctx = ctx.replace(
                principal=principal,
                tenant=principal.tenant,
                final_checks=(*ctx.final_checks, _StillValid(verified, self.verifier)),
            )
        try:
            self._check(verified)
        except IdentityError as exc:
            exc.context = ctx  # the refusal names who was refused
            raise
        if ctx.session_id is not None:
            if await self._bind(ctx, principal):
                await _emit(ctx, "session.bound", verified)
        elif not verified.announced:
            verified.announced = True
            await _emit(ctx, "identity.verified", verified)
        return await call_next(ctx)

    async def _bind(self, ctx: GovContext, principal: Principal) -> bool:
        """Bind the session's first principal and tenant; refuse another. True when it bound now."""
        anchor = _sdk.session_anchor(ctx)
        key = (principal.issuer, principal.subject, principal.tenant)
        if type(anchor) is SessionAnchor:  # the server adapter's: the binding lives on it, set once
            bound = anchor.bind(key)
            if bound is None:
                return True
        elif anchor is not None:
            bound = self._bound.get(anchor)
            if bound is None:
                self._bound[anchor] = key
                return True
        else:
            assert ctx.session_id is not None  # noqa: S101 - checked by the caller
            bound = self._bound_ids.get(ctx.session_id)
            if bound is None:
                self._bound_ids[ctx.session_id] = key
                return True
        if bound != key:
            changed = "tenant" if bound[:2] == key[:2] else "principal"
            error = IdentityError(
                f"session bound to {bound[0]}#{bound[1]} in tenant {bound[2]!r} saw another {changed}",
                reason=f"{changed}_changed",
            )
            error.context = ctx
            raise error
        return False

    def bind_principal(self, sctx: Any) -> str | None:
        """The SDK ``RequestStateSecurity.bind_principal`` hook: seal ``requestState`` to our principal.

        Synchronous (the SDK calls it so): verifies the request's identity from the verifier's
        cache or already-fetched keys. ``None`` when the request carries no identity; raises
        (so the SDK refuses the state) when it carries one that does not verify.

        Args:
            sctx: the SDK ``ServerRequestContext``.
        """
        token = _sdk.token_of_sdk_request(sctx, self.env, self._environ)
        if token is None:
            return None
        verified = self.verifier.verify_cached(token)
        self._check(verified)
        principal = verified.principal
        # The tenant is part of who resumes: the same subject in another tenant is another caller.
        return json.dumps([principal.issuer, principal.subject, principal.tenant], separators=(",", ":"))


async def _emit(ctx: GovContext, event_type: Any, verified: VerifiedIdentity) -> None:
    if ctx.audit is None:
        return
    principal = verified.principal
    attributes: dict[str, Any] = {"issuer": principal.issuer, "alg": verified.key.alg}
    if verified.key.kid is not None:
        attributes["kid"] = verified.key.kid
    if verified.token_id is not None:
        attributes["token_id"] = verified.token_id
    if principal.spiffe_id is not None:
        attributes["spiffe_id"] = principal.spiffe_id
    await ctx.audit.emit(AuditEvent.from_context(ctx, event_type, reason="verified", attributes=attributes))


class _StillValid:
    """The identity's last check, at the gate: its token has not expired since it was verified."""

    __slots__ = ("_verified", "_verifier")

    def __init__(self, verified: VerifiedIdentity, verifier: IdentityVerifier) -> None:
        self._verified = verified
        self._verifier = verifier

    async def __call__(self, ctx: GovContext) -> None:
        if self._verified.expired(self._verifier.now()):
            raise IdentityError("the identity token expired before the request ran", reason="expired")
