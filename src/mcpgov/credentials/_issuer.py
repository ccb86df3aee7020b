"""The credential issuer: minting, delegation, downstream exchange and revocation."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Awaitable, Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from mcpgov._audit import AuditCallback, AuditEvent, Auditor, EventType
from mcpgov._context import TASK_OWNER, GovContext
from mcpgov._errors import ConfigurationError, CredentialError
from mcpgov._governor import as_auditor
from mcpgov._principal import Principal, act_claim
from mcpgov._types import Clock, thaw
from mcpgov._validate import is_number, is_positive_number, positive_seconds
from mcpgov.credentials._claims import ARGS_HASH, TASK_BINDING, Credential, CredentialClaims
from mcpgov.credentials._issuance import IssuancePolicy
from mcpgov.credentials._jose import sign_credential
from mcpgov.credentials._keys import SigningKeySet
from mcpgov.credentials._revocation import RevocationList
from mcpgov.credentials._verify import CredentialRefused, CredentialVerifier

__all__ = ["CredentialIssuer"]

_MAX_NAME = 256


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME or value != value.strip():
        raise CredentialError(
            f"{what} must be a non-empty string of at most {_MAX_NAME} characters", reason="bad_request"
        )
    return value


def _names(values: Any, what: str, *, allow_empty: bool) -> tuple[str, ...]:
    if type(values) not in _SEQUENCES:
        if isinstance(values, str) or not isinstance(values, Iterable):
            raise CredentialError(f"{what} must be a list of names", reason="bad_request")
        values = list(values)
    out: list[str] = []
    for value in values:
        # No whitespace of any kind: scopes travel space-delimited and are split on every
        # whitespace character when read back, so one granted name must never read as several.
        if type(value) is not str or not value or len(value) > _MAX_NAME or _has_space(value):
            raise CredentialError(f"each {what} must be a name without whitespace", reason="bad_request")
        if value not in out:
            out.append(value)
    if not out and not allow_empty:
        raise CredentialError(f"at least one {what} is needed", reason="bad_request")
    return tuple(out)


_SEQUENCES = (list, tuple, set, frozenset)


def _has_space(value: str) -> bool:
    """Whether ``value`` holds a character ``str.split()`` separates on."""
    return value.split(maxsplit=1) != [value]


def _requested_ttl(ttl: Any) -> float | None:
    if ttl is None:
        return None
    if not is_positive_number(ttl):
        raise CredentialError(
            f"a requested ttl must be a positive number of seconds, got {ttl!r}", reason="bad_request"
        )
    return float(ttl)


def _ms(value: float) -> float:
    """Times are carried with millisecond precision."""
    return math.floor(value * 1000.0) / 1000.0


class CredentialIssuer:
    """Mints short-lived credentials for verified workloads, and revokes them.

    A credential names one audience (a server), one tenant, the tools it may call, the
    scopes, the task and purpose, optionally the exact arguments (their hash), and lives for
    at most ``max_ttl`` seconds and never past the parent identity's own expiry
    (``principal.claims["exp"]``). Requested TTLs are clamped to ``max_ttl``.

    Delegation (:meth:`delegate`) only narrows; a downstream exchange (:meth:`exchange`) may
    change the audience only along ``downstream`` (which audiences a server may reach on its
    callers' behalf). Both keep the actor chain and are limited to ``max_delegation_depth``.

    Holder binding: a credential in another principal's name (a sub-agent's, a downstream
    server's) is derived only for a principal the parent credential names in its ``may_act``
    claim, which is set at mint time from ``policy`` (and what the minting workload asked
    for, within it). A credential presented by anyone else is refused (``reason="may_not_act"``):
    a stolen credential cannot be laundered into the thief's name. With ``policy``, a
    workload obtains only the tools, scopes and audiences a :class:`Grant` gives it
    (``reason="not_granted"``), also through delegation and exchange.

    Args:
        issuer: this issuer's id (the ``iss`` claim), e.g. its URL.
        keys: the signing key set.
        revocations: where revocations go (shared with verifiers).
        max_ttl: the longest credential lifetime (seconds).
        default_ttl: the lifetime when none is requested.
        max_delegation_depth: how many delegations or exchanges may follow a minted credential.
        audiences: the audiences credentials may be minted for (None: any).
        downstream: for an inbound audience, the audiences its server may exchange credentials for.
        audit: an :class:`~mcpgov.Auditor` or callbacks, for ``credential.minted`` and
            ``credential.revoked`` events.
        policy: the :class:`IssuancePolicy` (``None``: any tool, scope and audience allowed by
            ``audiences``, and ``may_act`` only as the minting workload asks).
        clock: seconds since the epoch.

    Raises:
        ConfigurationError: invalid settings, or a key ``overlap`` shorter than ``max_ttl``.
    """

    def __init__(
        self,
        issuer: str,
        keys: SigningKeySet,
        *,
        revocations: RevocationList | None = None,
        max_ttl: float = 300.0,
        default_ttl: float = 60.0,
        max_delegation_depth: int = 2,
        audiences: Collection[str] | None = None,
        downstream: Mapping[str, Collection[str]] | None = None,
        audit: Auditor | Iterable[AuditCallback] | AuditCallback | None = None,
        policy: IssuancePolicy | None = None,
        clock: Clock = time.time,
    ) -> None:
        if policy is not None and not isinstance(policy, IssuancePolicy):
            raise ConfigurationError("policy must be an IssuancePolicy")
        if not isinstance(issuer, str) or not issuer:
            raise ConfigurationError("an issuer needs a non-empty id")
        if not isinstance(keys, SigningKeySet):
            raise ConfigurationError("an issuer needs a SigningKeySet")
        positive_seconds("max_ttl", max_ttl)
        positive_seconds("default_ttl", default_ttl)
        if default_ttl > max_ttl:
            raise ConfigurationError("default_ttl cannot exceed max_ttl")
        if keys.overlap < max_ttl:
            raise ConfigurationError(
                "the key set's overlap must be at least max_ttl, or rotation would cut credentials short"
            )
        if (
            isinstance(max_delegation_depth, bool)
            or not isinstance(max_delegation_depth, int)
            or max_delegation_depth < 0
        ):
            raise ConfigurationError("max_delegation_depth must be a non-negative integer")
        self.issuer = issuer
        self.keys = keys
        self.max_ttl = float(max_ttl)
        self.default_ttl = float(default_ttl)
        self.max_delegation_depth = max_delegation_depth
        self.audiences = frozenset(audiences) if audiences is not None else None
        self.downstream = {k: frozenset(v) for k, v in (downstream or {}).items()}
        self.revocations = revocations if revocations is not None else RevocationList(max_ttl=max_ttl, clock=clock)
        if self.revocations.max_ttl < self.max_ttl:
            raise ConfigurationError("the revocation list's max_ttl must be at least the issuer's max_ttl")
        self.auditor = as_auditor(audit)
        self.policy = policy
        self._clock = clock
        self._own = CredentialVerifier(
            issuer=issuer, audience=None, keys=keys, revocations=self.revocations, max_ttl=self.max_ttl, clock=clock
        )

    def __repr__(self) -> str:
        return f"CredentialIssuer(issuer={self.issuer!r}, max_ttl={self.max_ttl}, keys={self.keys!r})"

    def verifier(self, audience: str, **options: Any) -> CredentialVerifier:
        """A verifier for ``audience`` sharing this issuer's keys and revocation list."""
        options.setdefault("max_ttl", self.max_ttl)
        options.setdefault("clock", self._clock)
        return CredentialVerifier(
            issuer=self.issuer, audience=audience, keys=self.keys, revocations=self.revocations, **options
        )

    def jwks(self) -> dict[str, Any]:
        """The public keys verifiers need."""
        return self.keys.jwks()

    # -- minting -----------------------------------------------------------------------------

    def _expiry(self, now: float, ttl: float | None, ceiling: float | None) -> float:
        lifetime = min(ttl if ttl is not None else self.default_ttl, self.max_ttl)
        exp = _ms(now + lifetime)
        if ceiling is not None:
            exp = min(exp, _ms(ceiling))
        if exp <= now:
            raise CredentialError("the parent identity or credential has expired", reason="parent_expired")
        return exp

    async def mint(
        self,
        principal: Principal,
        *,
        audience: str,
        tools: Collection[str],
        scope: Collection[str] = (),
        task_id: str | None = None,
        purpose: str | None = None,
        args_hash: str | None = None,
        ttl: float | None = None,
        single_use: bool = False,
        may_act: Collection[Principal | tuple[str, str]] = (),
    ) -> Credential:
        """Mint a credential for ``principal``.

        Args:
            principal: the verified workload (its tenant is required).
            audience: the one server the credential is for.
            tools: the tools it may call.
            scope: the scopes it carries.
            task_id: the task it belongs to.
            purpose: the declared purpose.
            args_hash: bind it to one call's exact arguments (``ctx.args_hash``).
            ttl: the requested lifetime; clamped to ``max_ttl`` and the identity's expiry.
            single_use: good for one request only.
            may_act: who may obtain credentials in their own name from this one (a sub-agent,
                a downstream server), added to what the issuance policy names; with a policy,
                only parties it names.

        Raises:
            CredentialError: the request is malformed, the principal has no tenant, the
                audience is not allowed or not granted, or the parent identity has expired.
        """
        if not isinstance(principal, Principal):
            raise CredentialError("credentials are minted for a verified principal", reason="no_principal")
        if not principal.tenant:
            raise CredentialError("the principal has no tenant", reason="no_tenant")
        audience = _name(audience, "audience")
        if self.audiences is not None and audience not in self.audiences:
            raise CredentialError(f"no credentials are minted for audience {audience!r}", reason="audience_not_allowed")
        parent_exp = principal.claims.get("exp")
        if parent_exp is not None and not is_number(parent_exp):
            raise CredentialError("the identity's expiry is malformed", reason="parent_expired")
        tool_names = _names(tools, "tool", allow_empty=False)
        scopes = _names(scope, "scope", allow_empty=True)
        parties = self._may_act(principal.key, principal.tenant, audience, tool_names, scopes, may_act)
        now = _ms(self._clock())
        claims = CredentialClaims(
            issuer=self.issuer,
            subject=principal.subject,
            subject_issuer=principal.issuer,
            audience=audience,
            tenant=principal.tenant,
            tools=tool_names,
            scopes=scopes,
            task_id=_name(task_id, "task id") if task_id is not None else None,
            purpose=_name(purpose, "purpose") if purpose is not None else None,
            args_hash=self._args_hash(args_hash),
            jti=secrets.token_hex(16),  # hex: an id no redaction rule reads as a secret or an option
            issued_at=now,
            not_before=now,
            expires_at=self._expiry(now, _requested_ttl(ttl), parent_exp),
            act=act_claim(principal.actors),
            single_use=bool(single_use),
            may_act=parties,
        )
        return await self._sign(claims, principal=principal)

    def _may_act(  # noqa: PLR0917 - private; every argument is one part of the request
        self,
        key: tuple[str, str],
        tenant: str,
        audience: str,
        tools: tuple[str, ...],
        scopes: tuple[str, ...],
        requested: Collection[Principal | tuple[str, str]],
    ) -> tuple[tuple[str, str], ...]:
        """The issuance policy's verdict on a credential for ``key``, and its ``may_act``."""
        if isinstance(requested, (str, Principal)) or not isinstance(requested, Iterable):
            raise CredentialError("may_act is a collection of principals", reason="bad_request")
        asked: list[tuple[str, str]] = []
        for party in requested:
            if isinstance(party, Principal):
                asked.append(party.key)
            elif isinstance(party, tuple) and len(party) == 2 and all(isinstance(p, str) and p for p in party):
                asked.append((party[0], party[1]))
            else:
                raise CredentialError("may_act names principals or (issuer, subject) pairs", reason="bad_request")
        if self.policy is None:
            return tuple(dict.fromkeys(asked))
        granted_tools = tuple(t for t in tools if t != TASK_BINDING)  # a task binding calls nothing
        allowed = self.policy.authorize(key, tenant=tenant, audience=audience, tools=granted_tools, scopes=scopes)
        for party in asked:
            if party not in allowed:
                raise CredentialError(
                    f"the issuance policy does not let {party[0]}#{party[1]} act for {key[0]}#{key[1]}",
                    reason="not_granted",
                )
        return allowed

    @staticmethod
    def _args_hash(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not ARGS_HASH.fullmatch(value):
            # What every verifier accepts, and nothing else: a credential it would refuse is never minted.
            raise CredentialError(
                "args_hash must be a sha256: argument hash (64 lowercase hex digits)", reason="bad_request"
            )
        return value

    async def _sign(
        self, claims: CredentialClaims, *, principal: Principal | None = None, parent: CredentialClaims | None = None
    ) -> Credential:
        kid, alg, key = self.keys.current
        token = sign_credential(claims.to_payload(), kid, alg, key)
        attributes: dict[str, Any] = {
            "audience": claims.audience,
            "tools": list(claims.tools),
            "scopes": list(claims.scopes),
            "exp": claims.expires_at,
            "ttl": round(claims.expires_at - claims.issued_at, 3),
            "kid": kid,
            "args_bound": claims.args_hash is not None,
            "single_use": claims.single_use,
        }
        if parent is not None:
            attributes["parent"] = parent.jti
            attributes["depth"] = claims.depth
        await self._event("credential.minted", claims, principal, attributes)
        return Credential(token, claims)

    async def _event(
        self,
        event_type: EventType,
        claims: CredentialClaims | None,
        principal: Principal | None,
        attributes: dict[str, Any],
    ) -> None:
        if not self.auditor.sinks:
            return
        if principal is None and claims is not None:
            principal = Principal(issuer=claims.subject_issuer, subject=claims.subject, tenant=claims.tenant)
        ctx = GovContext(
            side="server",
            method=f"credentials/{event_type.rsplit('.', 1)[-1]}",
            principal=principal,
            tenant=claims.tenant if claims is not None else (principal.tenant if principal is not None else None),
            task_id=claims.task_id if claims is not None else None,
            purpose=claims.purpose if claims is not None else None,
            credential=MappingProxyType({"jti": claims.jti}) if claims is not None else None,
        )
        if claims is not None and claims.task_id is not None:
            ctx = ctx.with_extension(TASK_OWNER, claims.owner_key)  # a derived credential's task is its owner's
        await self.auditor.emit(AuditEvent.from_context(ctx, event_type, attributes=attributes))

    # -- delegation and exchange -------------------------------------------------------------

    async def verify_own(self, token: str) -> CredentialClaims:
        """Verify a credential this issuer minted (any audience): signature, lifetime, revocation.

        Raises:
            CredentialRefused: it is not a valid, unrevoked credential of this issuer.
        """
        claims = self._own.check_token(token)
        try:
            await self.revocations.check(claims)
        except CredentialError as exc:
            raise CredentialRefused(exc.detail, reason=exc.reason, credential_id=claims.jti) from None
        if claims.single_use:
            raise CredentialRefused(
                "a single-use credential cannot be delegated or exchanged",
                reason="single_use",
                credential_id=claims.jti,
            )
        return claims

    async def delegate(
        self,
        token: str,
        *,
        subject: Principal | None = None,
        tools: Collection[str] | None = None,
        scope: Collection[str] | None = None,
        ttl: float | None = None,
        args_hash: str | None = None,
        single_use: bool | None = None,
        may_act: Collection[Principal | tuple[str, str]] = (),
    ) -> Credential:
        """Mint a narrower credential from ``token`` for a sub-agent (or the same holder).

        The new credential has the same audience, tenant, task and purpose; its tools and
        scopes are subsets of the parent's, it ends no later than the parent, it keeps the
        parent's argument binding and single use. The actor chain grows by the holder.

        Args:
            token: the parent credential.
            subject: the sub-agent (verified); None keeps the parent's subject.
            tools: the tools to keep (default: all of the parent's).
            scope: the scopes to keep (default: all of the parent's).
            ttl: requested lifetime; asking to outlive the parent is refused.
            args_hash: bind to one call's arguments (must equal the parent's binding, if any).
            single_use: make it single use (a single-use parent cannot be delegated at all).
            may_act: who may in turn act for the sub-agent (within the issuance policy).

        Raises:
            CredentialError: the parent is invalid or revoked (``CredentialRefused``), the
                request widens anything (``reason="widening"``), the depth limit is reached
                (``reason="depth_exceeded"``), or the sub-agent is in another tenant.
        """
        parent = await self.verify_own(token)
        return await self._derive(
            parent,
            audience=parent.audience,
            subject=subject,
            tools=tools,
            scope=scope,
            ttl=ttl,
            args_hash=args_hash,
            single_use=single_use,
            may_act=may_act,
        )

    async def exchange(
        self,
        token: str,
        *,
        audience: str,
        tools: Collection[str],
        actor: Principal,
        scope: Collection[str] | None = None,
        ttl: float | None = None,
    ) -> Credential:
        """Exchange an inbound credential for one aimed at a downstream audience.

        Allowed only when ``downstream`` lets the inbound audience reach ``audience``. Tenant,
        task and purpose are kept, scopes only narrow, the lifetime ends no later than the
        inbound credential's, and ``actor`` (the exchanging server's own verified identity)
        becomes the subject, with the inbound subject added to the actor chain.

        Raises:
            CredentialError: as for :meth:`delegate`, or ``reason="audience_not_allowed"``.
        """
        if not isinstance(actor, Principal):
            raise CredentialError("a downstream exchange needs the server's verified identity", reason="bad_request")
        parent = await self.verify_own(token)
        audience = _name(audience, "audience")
        if audience != parent.audience and audience not in self.downstream.get(parent.audience, frozenset()):
            raise CredentialError(
                f"audience {parent.audience!r} may not exchange credentials for {audience!r}",
                reason="audience_not_allowed",
            )
        if audience != parent.audience and (actor.subject, actor.issuer) == (parent.subject, parent.subject_issuer):
            # The downstream route is the server's: the credential's own holder taking it would
            # reach an audience (and tools) it could not be issued a credential for itself.
            raise CredentialError(
                "a downstream exchange is made by the server the credential was presented to, not by its holder",
                reason="may_not_act",
            )
        return await self._derive(
            parent, audience=audience, subject=actor, tools=tools, scope=scope, ttl=ttl, args_hash=None, single_use=None
        )

    async def _derive(
        self,
        parent: CredentialClaims,
        *,
        audience: str,
        subject: Principal | None,
        tools: Collection[str] | None,
        scope: Collection[str] | None,
        ttl: float | None,
        args_hash: str | None,
        single_use: bool | None,
        may_act: Collection[Principal | tuple[str, str]] = (),
    ) -> Credential:
        def widening(what: str) -> CredentialError:
            return CredentialError(f"delegation may only narrow: {what}", reason="widening")

        if parent.depth + 1 > self.max_delegation_depth:
            raise CredentialError("the delegation depth limit is reached", reason="depth_exceeded")
        same_audience = audience == parent.audience
        new_tools = _names(tools, "tool", allow_empty=False) if tools is not None else parent.tools
        if same_audience and not set(new_tools) <= set(parent.tools):
            raise widening("tools not granted to the parent")
        if not same_audience and tools is None:
            raise CredentialError("a downstream credential names its tools", reason="bad_request")
        new_scopes = _names(scope, "scope", allow_empty=True) if scope is not None else parent.scopes
        if not set(new_scopes) <= set(parent.scopes):
            raise widening("scopes not granted to the parent")
        now = _ms(self._clock())
        requested = _requested_ttl(ttl)
        if requested is not None and now + requested > parent.expires_at:
            raise widening("a lifetime beyond the parent's")
        bound = self._args_hash(args_hash)
        if same_audience and parent.args_hash is not None:
            if bound is not None and bound != parent.args_hash:
                raise widening("other arguments than the parent's")
            bound = parent.args_hash
        once = bool(single_use)
        if subject is not None:
            if not isinstance(subject, Principal):
                raise CredentialError("a delegation subject must be a verified principal", reason="bad_request")
            if subject.tenant is None:
                raise CredentialError("the new holder's identity names no tenant", reason="no_tenant")
            if subject.tenant != parent.tenant:
                raise CredentialError("the sub-agent is in another tenant", reason="wrong_tenant")
            holder_exp = subject.claims.get("exp")
            if holder_exp is not None and not is_number(holder_exp):
                raise CredentialError("the new holder's identity expiry is malformed", reason="parent_expired")
        act: Mapping[str, Any] | None = parent.act
        holder_actors = parent.holder_actors
        sub, idp = parent.subject, parent.subject_issuer
        requested_may_act = may_act
        may_act = parent.may_act
        if subject is not None and (subject.subject, subject.issuer) != (sub, idp):
            # Holder binding: only a party the parent names may obtain a credential in its own name.
            if subject.key not in parent.may_act:
                raise CredentialError(
                    f"{subject.id} may not act for {idp}#{sub} (not in the credential's may_act)",
                    reason="may_not_act",
                )
            link: dict[str, Any] = {"sub": sub, "iss": idp}
            if parent.act is not None:
                link["act"] = thaw(parent.act)
            act, sub, idp = link, subject.subject, subject.issuer
            # Who the new holder acts for: the credential serves it acting for exactly them.
            holder_actors = tuple((a.subject, a.issuer) for a in subject.actors)
            may_act = self._may_act((idp, sub), parent.tenant, audience, new_tools, new_scopes, requested_may_act)
        elif self.policy is not None and not same_audience:
            self._may_act((idp, sub), parent.tenant, audience, new_tools, new_scopes, ())
        claims = CredentialClaims(
            issuer=self.issuer,
            subject=sub,
            subject_issuer=idp,
            audience=audience,
            tenant=parent.tenant,
            tools=new_tools,
            scopes=new_scopes,
            task_id=parent.task_id,
            purpose=parent.purpose,
            args_hash=bound,
            jti=secrets.token_hex(16),  # hex: an id no redaction rule reads as a secret or an option
            issued_at=now,
            not_before=now,
            expires_at=self._expiry(now, requested, _holder_ceiling(parent.expires_at, subject)),
            act=act,
            chain=(parent.jti, *parent.chain),
            single_use=once,
            owner=parent.owner_key,
            may_act=may_act,
            holder_actors=holder_actors,
        )
        return await self._sign(claims, principal=subject, parent=parent)

    # -- revocation --------------------------------------------------------------------------

    async def revoke(self, credential: Credential | str) -> None:
        """Revoke one credential (and everything delegated from it) at once.

        Raises:
            CredentialError: the revocation store did not record it.
        """
        if isinstance(credential, Credential):
            jti, claims, expires = credential.id, credential.claims, credential.expires_at
        else:
            jti, claims, expires = _name(credential, "credential id"), None, None
        await self._recorded(
            self.revocations.revoke(jti, expires_at=expires), claims, {"scope": "credential", "credential": jti}
        )

    async def revoke_task(self, owner: Principal, task_id: str) -> None:
        """Revoke every credential of ``owner``'s task ``task_id`` issued so far, and every
        credential derived from them (delegated, exchanged), in ``owner``'s tenant.

        Other principals' tasks of the same id are untouched (see :meth:`revoke_tenant_task`).

        Raises:
            CredentialError: the owner has no tenant, or the store did not record the revocation
                (``reason="revocation_failed"``: enforced here and retried meanwhile).
        """
        if not isinstance(owner, Principal):
            raise CredentialError("revoke_task takes the task's owner (a Principal)", reason="bad_request")
        if not owner.tenant:
            raise CredentialError("the principal has no tenant", reason="no_tenant")
        task_id = _name(task_id, "task id")
        await self._recorded(
            self.revocations.revoke_task(owner.tenant, task_id, owner=owner.key),
            None,
            {"scope": "task", "tenant": owner.tenant, "task": task_id, "principal": owner.id},
        )

    async def revoke_tenant_task(self, tenant: str, task_id: str) -> None:
        """Administrative: revoke task ``task_id`` of every principal in ``tenant`` (and what was
        derived from its credentials). Expose it only to administrators of the tenant."""
        tenant, task_id = _name(tenant, "tenant"), _name(task_id, "task id")
        await self._recorded(
            self.revocations.revoke_task(tenant, task_id, owner=None),
            None,
            {"scope": "tenant_task", "tenant": tenant, "task": task_id},
        )

    async def revoke_principal(self, principal: Principal) -> None:
        """Revoke every credential issued so far to ``principal`` (in its tenant), every
        credential it delegated or exchanged, and every credential derived from one it owns."""
        if not principal.tenant:
            raise CredentialError("the principal has no tenant", reason="no_tenant")
        await self._recorded(
            self.revocations.revoke_principal(principal.tenant, principal.issuer, principal.subject),
            None,
            {"scope": "principal", "principal": principal.id, "tenant": principal.tenant},
        )

    async def _recorded(
        self, revocation: Awaitable[None], claims: CredentialClaims | None, attributes: dict[str, Any]
    ) -> None:
        """Run ``revocation`` and record it; a revocation the store missed is recorded as pending."""
        try:
            await revocation
        except CredentialError:
            await self._event_revoked(claims, {**attributes, "recorded": False})
            raise
        await self._event_revoked(claims, attributes)

    async def _event_revoked(self, claims: CredentialClaims | None, attributes: dict[str, Any]) -> None:
        if claims is not None:
            await self._event("credential.revoked", claims, None, attributes)
            return
        if not self.auditor.sinks:
            return
        jti = attributes.get("credential")
        ctx = GovContext(
            side="server",
            method="credentials/revoked",
            tenant=attributes.get("tenant"),
            task_id=attributes.get("task"),
            credential=MappingProxyType({"jti": jti}) if jti is not None else None,
        )
        await self.auditor.emit(AuditEvent.from_context(ctx, "credential.revoked", attributes=attributes))


def _holder_ceiling(parent_expires_at: float, subject: Principal | None) -> float:
    """When a derived credential must end at the latest: with its parent, and (like a minted one)
    no later than the verified identity of the party it is issued to."""
    if subject is None:
        return parent_expires_at
    holder_exp = subject.claims.get("exp")
    return min(parent_expires_at, float(holder_exp)) if is_number(holder_exp) else parent_expires_at
