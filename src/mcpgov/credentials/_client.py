"""Client side: where credentials come from, and the middleware that attaches them to calls."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import anyio

from mcpgov._chain import CallNext, ChainResult
from mcpgov._contain import contained
from mcpgov._context import APPROVAL_GRANT, META_CREDENTIAL, GovContext
from mcpgov._errors import ConfigurationError, CredentialError
from mcpgov._lru import LRU
from mcpgov._principal import Principal
from mcpgov._types import Clock
from mcpgov._validate import is_number, is_positive_number
from mcpgov.credentials._claims import TASK_BINDING, Credential
from mcpgov.credentials._holder import MintingPrincipal
from mcpgov.credentials._issuer import CredentialIssuer
from mcpgov.credentials._task import TaskScope, current_task
from mcpgov.credentials._verify import CAP_SLACK, EMPTY_ARGS_HASH, BindArguments, _binding_rule

__all__ = ["ClientCredentials", "CredentialRequest", "IssuerTokenSource", "TokenSource"]

logger = logging.getLogger("mcpgov.credentials")


@dataclass(frozen=True, slots=True)
class CredentialRequest:
    """What a client asks a token source for.

    Attributes:
        audience: the server the credential is for.
        tools: the tools it must cover.
        scope: the scopes asked for.
        task_id: the task.
        purpose: the purpose.
        args_hash: bind to one call's arguments.
        ttl: requested lifetime (the issuer clamps it).
        single_use: good for one request only.
        max_ttl: the longest lifetime allowed (a policy's ``max_credential_ttl``): a cap, never
            a request for a longer credential than the source would otherwise give.
    """

    audience: str
    tools: tuple[str, ...]
    scope: tuple[str, ...] = ()
    task_id: str | None = None
    purpose: str | None = None
    args_hash: str | None = None
    ttl: float | None = None
    single_use: bool = False
    max_ttl: float | None = None


@runtime_checkable
class TokenSource(Protocol):
    """Where a client obtains credentials: an in-process issuer, or a token-exchange endpoint."""

    async def obtain(self, request: CredentialRequest, principal: Principal | None) -> Credential:
        """A credential for ``request``, issued to ``principal`` (or to the source's own identity)."""
        ...

    async def revoke(self, credential: Credential, principal: Principal | None) -> None:
        """Revoke one credential this source issued."""
        ...

    async def revoke_task(self, task_id: str, principal: Principal | None) -> None:
        """Revoke every credential of ``task_id`` (in the principal's tenant)."""
        ...


class IssuerTokenSource:
    """A :class:`TokenSource` backed by a :class:`CredentialIssuer` in the same process.

    The principal is the client's verified identity (``GovernedClient(principal=...)``).
    """

    def __init__(self, issuer: CredentialIssuer) -> None:
        if not isinstance(issuer, CredentialIssuer):
            raise ConfigurationError("IssuerTokenSource needs a CredentialIssuer")
        self.issuer = issuer

    def __repr__(self) -> str:
        return f"IssuerTokenSource({self.issuer.issuer!r})"

    async def obtain(self, request: CredentialRequest, principal: Principal | None) -> Credential:
        if principal is None:
            raise CredentialError("a credential needs the client's verified principal", reason="no_principal")
        return await self.issuer.mint(
            principal,
            audience=request.audience,
            tools=request.tools,
            scope=request.scope,
            task_id=request.task_id,
            purpose=request.purpose,
            args_hash=request.args_hash,
            ttl=_capped(request.ttl if request.ttl is not None else self.issuer.default_ttl, request.max_ttl),
            single_use=request.single_use,
        )

    async def revoke(self, credential: Credential, principal: Principal | None) -> None:
        await self.issuer.revoke(credential)

    async def revoke_task(self, task_id: str, principal: Principal | None) -> None:
        if principal is None or not principal.tenant:
            raise CredentialError("revoking a task needs the client's principal and tenant", reason="no_principal")
        await self.issuer.revoke_task(principal, task_id)


_CacheKey = tuple[Any, ...]


class ClientCredentials:
    """Client middleware: attaches a credential to every ``tools/call``.

    A credential is obtained per (principal and whom it acts for, tenant, task, purpose, tool)
    and reused while more than ``refresh_before`` seconds of it remain. A call that needs argument binding
    (``bind_arguments``, or a client-side decision with the obligation ``bind_arguments``)
    gets its own credential bound to the exact arguments, never cached. The obligation
    ``max_credential_ttl`` shortens the requested lifetime. Inside a task scope
    (:func:`~mcpgov.credentials.open_task`) the task's id and purpose are used, and what is
    minted is recorded so the scope can revoke it on exit.

    Inside a task, every other request (listings, ``resources/read``, ``prompts/get``,
    completions) carries a task credential too (its one "tool" is
    :data:`~mcpgov.credentials.TASK_BINDING`: it calls nothing), so the server decides, records
    and remembers those requests as part of the task, with the task's purpose: a listing shows
    what the task may call. Outside a task, those requests carry no credential.

    Credentials are minted for ``ctx.principal`` only when the identity token the chain attached
    (``GovernedClient(identity=...)``) names that principal, and never outlive that token.

    Tokens never reach log records of the SDK and HTTP stack (see
    :func:`~mcpgov.credentials.redact_token_logs`, installed on construction).

    Put it after client-side policy (so it sees the decision's obligations).

    Args:
        source: where credentials come from.
        audience: the server's audience.
        scope: scopes to ask for.
        ttl: lifetime to ask for (None: the issuer's default).
        bind_arguments: calls that need argument-bound credentials.
        single_use: ask for single-use credentials (one per call, never cached).
        refresh_before: obtain a fresh credential when less than this many seconds remain.
        cache_size: the most credentials cached.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        source: TokenSource,
        *,
        audience: str,
        scope: Collection[str] = (),
        ttl: float | None = None,
        bind_arguments: BindArguments = False,
        single_use: bool = False,
        refresh_before: float = 5.0,
        cache_size: int = 1024,
        clock: Clock = time.time,
    ) -> None:
        if not isinstance(source, TokenSource):
            raise ConfigurationError("ClientCredentials needs a TokenSource (obtain, revoke, revoke_task)")
        if not isinstance(audience, str) or not audience:
            raise ConfigurationError("ClientCredentials needs the server's audience")
        if isinstance(scope, str):
            raise ConfigurationError("scope is a collection of scope names, not one string")
        if ttl is not None and not is_positive_number(ttl):
            raise ConfigurationError("ttl must be a positive number of seconds")
        if not is_number(refresh_before) or refresh_before < 0:
            raise ConfigurationError("refresh_before must be a non-negative number of seconds")
        self.source = source
        self.audience = audience
        self.scope = tuple(scope)
        self.ttl = float(ttl) if ttl is not None else None
        self.single_use = single_use
        self.refresh_before = float(refresh_before)
        self._bind = _binding_rule(bind_arguments)
        self._clock = clock
        self._cache: LRU[_CacheKey, Credential] = LRU(cache_size)
        self._minting_principal = MintingPrincipal()
        self.minted = 0
        """How many credentials this middleware obtained."""
        from mcpgov.credentials._logs import redact_token_logs  # noqa: PLC0415 - keeps the import graph flat

        redact_token_logs()

    def __repr__(self) -> str:
        return f"ClientCredentials(audience={self.audience!r}, source={self.source!r})"

    def forget_task(self, task_id: str) -> None:
        """Drop cached credentials of ``task_id`` (they are being revoked)."""
        for key in [k for k in self._cache if k[2] == task_id]:
            self._cache.pop(key)

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        if ctx.method != "tools/call" or ctx.target is None:
            return await self._task_bound(ctx, call_next)
        task = current_task()
        task_id = task.task_id if task is not None else ctx.task_id
        purpose = task.purpose if task is not None and task.purpose is not None else ctx.purpose
        obligations = ctx.decision.obligations if ctx.decision is not None else MappingProxyType({})
        # An approved action gets a credential for exactly that call: bound to its arguments.
        approved = APPROVAL_GRANT in ctx.extensions
        bind = approved or bool(obligations.get("bind_arguments")) or self._bind(ctx)
        ttl = self.ttl
        cap: float | None = None
        if "max_credential_ttl" in obligations:
            raw = obligations["max_credential_ttl"]
            if not is_positive_number(raw):
                # A cap that cannot be honoured mints nothing (fail closed), never an uncapped credential.
                raise CredentialError(
                    "the decision's max_credential_ttl is not a positive number", reason="ttl_invalid"
                )
            cap = float(raw)
            if ttl is not None:
                ttl = min(ttl, cap)  # without a ttl of its own, the source's default applies, capped
        principal = self._minting_principal(ctx)
        per_call = bind or self.single_use
        key: _CacheKey = (
            _holder(principal),
            ctx.tenant,
            task_id,
            purpose,
            ctx.target,
            ttl,
        )
        credential = None if per_call else self._cache.get(key)
        if credential is not None and credential.expires_at - self._clock() <= self.refresh_before:
            credential = None
        if credential is None:
            if task is not None:
                _open(task)
            request = CredentialRequest(
                audience=self.audience,
                tools=(ctx.target,),
                scope=self.scope,
                task_id=task_id,
                purpose=purpose,
                args_hash=(ctx.args_hash or EMPTY_ARGS_HASH) if bind else None,
                ttl=ttl,
                single_use=self.single_use,
                max_ttl=cap,
            )
            credential = await self.source.obtain(request, principal)
            if not isinstance(credential, Credential):
                raise CredentialError("the token source returned no credential", reason="source_invalid")
            if cap is not None and credential.claims.expires_at - credential.claims.issued_at > cap + CAP_SLACK:
                raise CredentialError(
                    "the token source issued a credential that outlives the decision's max_credential_ttl",
                    reason="ttl_exceeded",
                )
            self.minted += 1
            if task is not None:
                await _record(task, credential, self.source, principal)
            if not per_call:
                self._cache[key] = credential
        ctx = ctx.replace(
            meta=MappingProxyType({**ctx.meta, META_CREDENTIAL: credential.token}),
            credential=_presented(credential),
            task_id=task_id,
            purpose=purpose,
        )
        return await call_next(ctx)

    async def _task_bound(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        """A request other than a tool call: inside a task it carries the task credential."""
        task = current_task()
        if task is None:
            return await call_next(ctx)
        principal = self._minting_principal(ctx)
        key: _CacheKey = (
            _holder(principal),
            ctx.tenant,
            task.task_id,
            task.purpose,
            TASK_BINDING,
            self.ttl,
        )
        credential = self._cache.get(key)
        if credential is not None and credential.expires_at - self._clock() <= self.refresh_before:
            credential = None
        if credential is None:
            _open(task)
            request = CredentialRequest(
                audience=self.audience,
                tools=(TASK_BINDING,),
                scope=self.scope,
                task_id=task.task_id,
                purpose=task.purpose,
                ttl=self.ttl,
            )
            credential = await self.source.obtain(request, principal)
            if not isinstance(credential, Credential):
                raise CredentialError("the token source returned no credential", reason="source_invalid")
            self.minted += 1
            await _record(task, credential, self.source, principal)
            self._cache[key] = credential
        ctx = ctx.replace(
            meta=MappingProxyType({**ctx.meta, META_CREDENTIAL: credential.token}),
            credential=_presented(credential),
            task_id=task.task_id,
            purpose=task.purpose if task.purpose is not None else ctx.purpose,
        )
        return await call_next(ctx)


def _presented(credential: Credential) -> Mapping[str, Any]:
    """The claims of the credential a request carries, as the client's audit records them (its
    ``jti`` as the events' ``credential_id``; never the token)."""
    return MappingProxyType(credential.claims.to_payload())


def _holder(principal: Principal | None) -> tuple[Any, ...] | None:
    """Who a cached credential was obtained for: the principal and whom it acts for (a credential
    minted while it acted for one party never serves it acting for another)."""
    if principal is None:
        return None
    return (principal.issuer, principal.subject, principal.actors)


def _open(task: TaskScope) -> None:
    """Refuse to obtain a credential for a task that has ended."""
    if task.revoked:
        raise CredentialError("the task has ended; its credentials are revoked", reason="task_ended")


async def _record(task: TaskScope, credential: Credential, source: TokenSource, principal: Principal | None) -> None:
    """Record ``credential`` in ``task``; when the task ended while it was being obtained (its
    revocations are made or under way and may not cover it), revoke it by id, then refuse.

    Raises:
        CredentialError: ``reason="task_ended"``.
    """
    try:
        task.record(credential, source, principal)
    except CredentialError:
        with anyio.CancelScope(shield=True):
            try:
                await source.revoke(credential, principal)
            except BaseException as exc:  # reported; the call is refused either way
                logger.error("a credential obtained after its task ended could not be revoked (%s)", type(exc).__name__)
                if not await contained(exc):
                    raise
        raise


def _capped(ttl: float | None, cap: float | None) -> float | None:
    """``ttl`` no longer than ``cap`` (``None`` stays ``None`` when there is no cap)."""
    if cap is None:
        return ttl
    return cap if ttl is None else min(ttl, cap)
