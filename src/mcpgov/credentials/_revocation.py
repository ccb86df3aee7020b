"""Revocation by credential id, task and principal, and single-use ids, on a :class:`~mcpgov.StateStore`."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import time
from collections import deque
from typing import Any

import anyio

from mcpgov._contain import contained
from mcpgov._errors import ConfigurationError, CredentialError
from mcpgov._shared import shared_text
from mcpgov._state import InMemoryStateStore, StateStore
from mcpgov._types import Clock
from mcpgov._validate import is_number, positive_seconds
from mcpgov.credentials._claims import CredentialClaims
from mcpgov.credentials._memory import CompactMemoryStore

__all__ = ["MAX_LEEWAY", "RevocationList"]

logger = logging.getLogger("mcpgov.credentials")

_REVOKED = "1"

MAX_LEEWAY = 60.0
"""The most clock skew a verifier may allow, in seconds (revocation entries outlive it)."""

_MARGIN = 1.0  # a second more than any verifier could accept: store TTLs are not exact


@functools.lru_cache(maxsize=8192)
def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()[:40]


_KEYS_KEPT = 4096


def _supersedes(new: str, old: str) -> bool:
    """Whether an entry holding ``new`` refuses everything an entry holding ``old`` refuses.

    A credential id's entry holds ``_REVOKED``; a task's or principal's holds a time, and covers
    the credentials issued up to it: a later time covers more.
    """
    if new == _REVOKED:
        return True
    if old == _REVOKED:
        return False
    return float(old) <= float(new)


class RevocationList:
    """Revocations and single-use ids, shared by issuers and verifiers through one store.

    * ``revoke(jti)``: that credential, and every credential derived from it (delegation,
      downstream exchange), is refused from now on;
    * ``revoke_principal(tenant, issuer, subject)``: every credential issued up to now to that
      principal, delegated or exchanged by it, or derived from a credential it owns;
    * ``revoke_task(tenant, task, owner=(issuer, subject))``: every credential of that task
      owned by that principal (the one its first credential was minted for) issued up to now,
      derived ones included; ``owner=None`` is the tenant-wide (administrative) form.

    Entries live at least as long as any verifier could accept a credential they cover: a
    credential id's entry until that credential expires, a task's or principal's for ``max_ttl``,
    both plus ``leeway`` (which must be at least every
    verifier's leeway) and a second. A task's or principal's entry is written with the store's
    ``put_max`` where it has one, so that its time never goes down (two replicas revoking at
    once, a retried older revocation).

    A revocation the store could not record is not forgotten: it is kept in this process (which
    refuses the credentials it covers) for as long as its entry would have lived, retried on the
    store (:meth:`flush`, also tried before checks at most every ``retry_interval`` seconds),
    and reported to the caller (``CredentialError``, ``reason="revocation_failed"``,
    :attr:`pending` counts what is waiting).

    A store that errors or does not answer within ``timeout`` counts as "revoked": :meth:`check`
    raises, the request is refused. Once :meth:`revoke` returns (or raises), no check in this
    process admits the credential again, even one whose store round trip was already under way;
    replicas sharing the store refuse it from their next check on.

    Args:
        store: where the entries live; a :class:`CompactMemoryStore` by default (one process).
        max_ttl: the longest lifetime of a credential covered.
        leeway: seconds of clock skew allowed by verifiers (entries live that much longer); a
            verifier refuses a revocation list with less leeway than its own.
        issuer_skew: how many seconds the clock of any issuer of the covered credentials may run
            ahead of the clock of the process that revokes. A task's or principal's revocation
            covers the credentials issued up to that much after its own time, so a credential
            minted before the revocation by an issuer whose clock runs ahead is refused too; a
            credential of that task or principal minted within that window after the revocation
            is refused as well. ``0`` (the default) trusts the clocks to agree.
        timeout: seconds one store operation may take before it counts as a failure.
        retry_interval: seconds between automatic retries of unrecorded revocations.
        namespace: prefix of every key.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        store: StateStore | None = None,
        *,
        max_ttl: float = 3600.0,
        leeway: float = MAX_LEEWAY,
        issuer_skew: float = 0.0,
        timeout: float = 0.5,
        retry_interval: float = 1.0,
        namespace: str = "mcpgov:cred:",
        clock: Clock = time.time,
    ) -> None:
        self.max_ttl = positive_seconds("max_ttl", max_ttl)
        self.timeout = positive_seconds("timeout", timeout)
        self.retry_interval = positive_seconds("retry_interval", retry_interval)
        if not is_number(leeway) or not 0 <= leeway <= 300:
            raise ConfigurationError(f"leeway must be between 0 and 300 seconds, got {leeway!r}")
        self.store: StateStore = store if store is not None else CompactMemoryStore(clock=clock)
        self.leeway = float(leeway)
        if not is_number(issuer_skew) or not 0 <= issuer_skew <= 300:
            raise ConfigurationError(f"issuer_skew must be between 0 and 300 seconds, got {issuer_skew!r}")
        self.issuer_skew = float(issuer_skew)
        self._ns = namespace
        self._clock = clock
        # key -> (revoked at, forget at): what this process revoked in the last moments, and
        # what it could not record (kept until no verifier could accept what it covers).
        self._recent: dict[str, tuple[float, float]] = {}
        # The keys of recently checked credentials (a reused credential is checked on every call).
        self._keys_of: dict[str, tuple[CredentialClaims, tuple[str, ...]]] = {}
        self._order: deque[tuple[float, str]] = deque()
        # key -> (value, expires at): revocations the store did not record yet.
        self._pending: dict[str, tuple[str, float]] = {}
        self._next_retry = 0.0
        # The in-process stores answer without ever suspending: no deadline to arm for them.
        self._local = type(self.store) in (CompactMemoryStore, InMemoryStateStore)
        # The optional operation keeping the larger of two times (see StateStore); absent: put.
        self._put_max: Any = getattr(self.store, "put_max", None)

    def __repr__(self) -> str:
        return f"RevocationList(store={type(self.store).__name__}, max_ttl={self.max_ttl}, pending={self.pending})"

    @property
    def pending(self) -> int:
        """How many revocations wait to be recorded in the store (refused here meanwhile)."""
        return len(self._pending)

    def jti_key(self, jti: str) -> str:
        """The store key marking credential ``jti`` revoked."""
        return f"{self._ns}rj:{jti}"

    def task_key(self, tenant: str, task_id: str, owner: tuple[str, str] | None = None) -> str:
        """The store key marking task ``task_id`` of ``owner`` (``(issuer, subject)``) in ``tenant``
        revoked; ``owner=None``: the tenant-wide key."""
        if owner is None:
            return f"{self._ns}rt:{_digest(tenant, task_id)}"
        return f"{self._ns}ro:{_digest(tenant, owner[0], owner[1], task_id)}"

    def principal_key(self, tenant: str, issuer: str, subject: str) -> str:
        """The store key marking a principal's credentials revoked."""
        return f"{self._ns}rp:{_digest(tenant, issuer, subject)}"

    def _remember(self, key: str, at: float, until: float | None = None) -> None:
        now = self._clock()
        order, recent = self._order, self._recent
        while order and order[0][0] <= now:  # forget what no check still under way can need
            forget, old = order.popleft()
            if old in recent and recent[old][1] == forget and old not in self._pending:
                del recent[old]
        forget_at = now + self.timeout + 1.0 if until is None else until
        previous = recent.get(key)
        if previous is not None:  # what a key covers only grows while it is remembered
            at = max(at, previous[0])
            forget_at = max(forget_at, previous[1])
        recent[key] = (at, forget_at)
        order.append((forget_at, key))

    def _deadline(self) -> Any:
        return contextlib.nullcontext() if self._local else anyio.fail_after(self.timeout)

    async def _store_put(self, key: str, value: str, ttl: float) -> None:
        ttl = max(ttl, 1.0)
        with self._deadline():
            if value != _REVOKED and self._put_max is not None:
                # A time only ever rises in the store: a slower or older write cannot lower it.
                await self._put_max(key, float(value), ttl)
            else:
                await self.store.put(key, value, ttl)

    def _keep(self, key: str, value: str, expires: float) -> None:
        """Keep an unrecorded revocation pending (merged with one already waiting for ``key``)."""
        waiting = self._pending.get(key)
        if waiting is not None:
            if _supersedes(waiting[0], value):
                value = waiting[0]
            expires = max(expires, waiting[1])
        self._pending[key] = (value, expires)
        self._remember(key, math.inf if value == _REVOKED else float(value), expires)

    def _recorded(self, key: str, value: str, expires: float) -> None:
        """``value`` is in the store until ``expires``: a pending entry it supersedes is done."""
        waiting = self._pending.get(key)
        if waiting is not None and _supersedes(value, waiting[0]) and expires >= waiting[1]:
            del self._pending[key]

    async def _put(self, key: str, value: str, ttl: float) -> None:
        expires = self._clock() + ttl
        try:
            await self._store_put(key, value, ttl)
        except BaseException as exc:  # any store failure means the revocation is not recorded yet
            self._keep(key, value, expires)
            logger.warning(
                "revocation store failed (%s); the revocation is kept in this process and retried",
                type(exc).__name__,
            )
            if not await contained(exc):  # an interpreter exit, the caller's own cancellation
                raise
            raise CredentialError(
                f"the revocation store did not record a revocation ({type(exc).__name__}); it is enforced "
                "in this process and retried until recorded",
                reason="revocation_failed",
            ) from None
        self._recorded(key, value, expires)

    def _newest(self, key: str, value: str, expires: float) -> tuple[str, float]:
        """The pending ``value`` of a time-valued ``key``, or a later time this process revoked it at."""
        if value == _REVOKED:
            return value, expires
        recent = self._recent.get(key)
        if recent is not None and math.isfinite(recent[0]) and recent[0] > float(value):
            return repr(recent[0]), max(expires, self._until(recent[0]))
        return value, expires

    def _until(self, at: float) -> float:
        """When the entry of a task or principal revoked up to ``at`` may go: no verifier can
        accept a credential issued up to ``at`` any more."""
        return at + self.max_ttl + self.leeway + _MARGIN

    async def flush(self) -> int:
        """Retry the revocations the store did not record; returns how many still wait.

        Entries whose credentials can no longer be accepted anywhere are dropped. A retry never
        writes a task's or principal's time older than one this process has since recorded or
        remembers for it (and, on a store with ``put_max``, never lowers the stored time).
        """
        now = self._clock()
        self._next_retry = now + self.retry_interval
        for key in list(self._pending):
            waiting = self._pending.get(key)
            if waiting is None:
                continue  # recorded meanwhile
            value, expires = waiting
            if expires <= now:
                del self._pending[key]
                continue
            value, expires = self._newest(key, value, expires)
            try:
                await self._store_put(key, value, expires - now)
            except BaseException as exc:  # still down: keep it, try again later
                logger.info("revocation store still failing (%s); %d pending", type(exc).__name__, self.pending)
                if not await contained(exc):
                    raise
                break
            self._recorded(key, value, expires)
        return self.pending

    async def revoke(self, jti: str, *, expires_at: float | None = None) -> None:
        """Refuse credential ``jti`` (and everything derived from it) from now on.

        Args:
            jti: the credential id.
            expires_at: when that credential expires; the entry is kept until then (plus
                leeway). Unknown: ``max_ttl`` from now.

        Raises:
            CredentialError: the store did not record it (``reason="revocation_failed"``); it is
                enforced in this process and retried (see :meth:`flush`).
        """
        now = self._clock()
        key = self.jti_key(jti)
        until = expires_at if expires_at is not None else now + self.max_ttl
        ttl = until - now + self.leeway + _MARGIN
        self._remember(key, math.inf)
        await self._put(key, _REVOKED, ttl)

    async def _revoke_before(self, key: str) -> None:
        now = self._clock()
        at = now + self.issuer_skew  # what an issuer whose clock runs ahead stamped before now
        self._remember(key, at)
        await self._put(key, repr(at), self._until(at) - now)

    async def revoke_task(self, tenant: str, task_id: str, *, owner: tuple[str, str] | None) -> None:
        """Refuse every credential of ``task_id`` owned by ``owner`` in ``tenant`` issued up to now.

        ``owner`` is the ``(issuer, subject)`` of the principal the task's credentials were
        minted for; ``None`` revokes the task of every principal of the tenant (an
        administrative act: keep it for administrators).

        Raises:
            CredentialError: the store did not record it (``reason="revocation_failed"``); it is
                enforced in this process and retried (see :meth:`flush`).
        """
        await self._revoke_before(self.task_key(tenant, task_id, owner))

    async def revoke_principal(self, tenant: str, issuer: str, subject: str) -> None:
        """Refuse every credential issued to, derived by, or owned by ``(issuer, subject)`` in ``tenant`` up to now.

        Raises:
            CredentialError: the store did not record it (``reason="revocation_failed"``); it is
                enforced in this process and retried (see :meth:`flush`).
        """
        await self._revoke_before(self.principal_key(tenant, issuer, subject))

    def keys(self, claims: CredentialClaims) -> list[str]:
        """Every store key whose entry would revoke ``claims`` (one lookup reads them all)."""
        known = self._keys_of.get(claims.jti)
        if known is not None and known[0] is claims:
            return list(known[1])  # the same verified claims object: the same keys
        keys = self._keys(claims)
        if len(self._keys_of) >= _KEYS_KEPT:
            self._keys_of.clear()
        self._keys_of[claims.jti] = (claims, tuple(keys))
        return keys

    def _keys(self, claims: CredentialClaims) -> list[str]:
        # The principal's and the task's keys are the same for every credential of a task (and the
        # memo above keeps them per credential): one shared copy of each instead of one per credential.
        tenant = claims.tenant
        keys = [self.jti_key(claims.jti)]
        keys.extend(self.jti_key(parent) for parent in claims.chain)
        parties = [(claims.subject_issuer, claims.subject), claims.owner_key]
        parties.extend((iss, sub) for sub, iss in claims.actors if iss is not None)
        parties.extend((iss, sub) for sub, iss in claims.holder_actors or () if iss is not None)
        for iss, sub in dict.fromkeys(parties):
            keys.append(shared_text(self.principal_key(tenant, iss, sub)))
        if claims.task_id is not None:
            keys.append(shared_text(self.task_key(tenant, claims.task_id, claims.owner_key)))
            keys.append(shared_text(self.task_key(tenant, claims.task_id)))
        return keys

    @staticmethod
    def _covers(value: str | float | None, claims: CredentialClaims) -> bool:
        if value is None:
            return False
        if value == _REVOKED:
            return True
        try:
            at = float(value)
        except ValueError:
            return True  # an entry that cannot be read revokes (fail closed)
        return not claims.issued_at > at

    async def check(self, claims: CredentialClaims) -> list[str]:
        """Refuse a revoked credential (one store lookup); returns the keys checked.

        The last thing it does, with no await after the store answered, is to consult this
        process's own recent and unrecorded revocations.

        Raises:
            CredentialError: revoked (``reason="revoked"``), or the store failed or timed out
                (``reason="revocation_unavailable"``: counts as revoked).
        """
        if self._pending and self._clock() >= self._next_retry:
            await self.flush()
        keys = self.keys(claims)
        try:
            with self._deadline():
                values = await self.store.get_many(keys)
        except BaseException as exc:  # fail closed: a store that cannot answer counts as revoked
            if not await contained(exc):  # an interpreter exit, the caller's own cancellation
                raise
            logger.warning("revocation store unavailable (%s); refusing the credential", type(exc).__name__)
            raise CredentialError(
                f"the revocation store failed ({type(exc).__name__}); counted as revoked",
                reason="revocation_unavailable",
            ) from None
        if len(values) != len(keys) or any(self._covers(v, claims) for v in values):
            raise CredentialError("the credential has been revoked", reason="revoked")
        self.recheck(claims, keys)
        return keys

    def recheck(self, claims: CredentialClaims, keys: list[str]) -> None:
        """Synchronously consult this process's recent and unrecorded revocations (no await: call it last).

        Raises:
            CredentialError: revoked since the store was asked.
        """
        recent = self._recent
        if not recent:
            return
        for key in keys:
            hit = recent.get(key)
            if hit is not None and self._covers(hit[0], claims):
                raise CredentialError("the credential has been revoked", reason="revoked")

    async def consume(self, claims: CredentialClaims) -> None:
        """Record the single use of ``claims.jti``.

        Raises:
            CredentialError: already used (``reason="replayed"``), or the store failed
                (``reason="revocation_unavailable"``).
        """
        ttl = claims.expires_at - self._clock() + self.leeway + _MARGIN
        try:
            with self._deadline():
                first = await self.store.add(f"{self._ns}used:{claims.jti}", _REVOKED, max(ttl, 1.0))
        except BaseException as exc:  # fail closed: an unrecorded use is refused
            if not await contained(exc):  # an interpreter exit, the caller's own cancellation
                raise
            raise CredentialError(
                f"the single-use store failed ({type(exc).__name__})", reason="revocation_unavailable"
            ) from None
        if not first:
            raise CredentialError("a single-use credential was presented again", reason="replayed")
