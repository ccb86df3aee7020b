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
from collections.abc import Callable
from typing import Any

import anyio

from mcpgov._errors import ConfigurationError, CredentialError
from mcpgov._state import InMemoryStateStore, StateStore
from mcpgov.credentials._claims import CredentialClaims
from mcpgov.credentials._memory import CompactMemoryStore

__all__ = ["RevocationList"]

logger = logging.getLogger("mcpgov.credentials")

_REVOKED = "1"


@functools.lru_cache(maxsize=8192)
def _digest(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()[:40]


class RevocationList:
    """Revocations and single-use ids, shared by issuers and verifiers through one store.

    * ``revoke(jti)``: that credential is refused from now on;
    * ``revoke_task(tenant, task)`` and ``revoke_principal(tenant, issuer, subject)``: every
      credential of that task (or issued to that principal) issued up to now is refused;
    * revoking a credential also refuses every credential delegated from it.

    Entries expire with the credentials they cover: a credential id's entry when that
    credential expires, a task's or principal's after ``max_ttl`` (no credential covered can
    live longer). A store that errors or does not answer within ``timeout`` counts as
    "revoked": :meth:`check` raises, the request is refused.

    Once :meth:`revoke` returns, no check in this process admits the credential again, even
    one whose store round trip was already under way (a local record of recent revocations
    is consulted after the store answers); replicas sharing the store refuse it from their
    next check on.

    Args:
        store: where the entries live; a :class:`CompactMemoryStore` by default (one process).
        max_ttl: the longest lifetime of a credential covered.
        leeway: seconds of clock skew allowed by verifiers (entries live that much longer).
        timeout: seconds one store operation may take before it counts as a failure.
        namespace: prefix of every key.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        store: StateStore | None = None,
        *,
        max_ttl: float = 3600.0,
        leeway: float = 30.0,
        timeout: float = 0.5,
        namespace: str = "mcpgov:cred:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (("max_ttl", max_ttl), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
        if isinstance(leeway, bool) or not isinstance(leeway, (int, float)) or not 0 <= leeway <= 300:
            raise ConfigurationError(f"leeway must be between 0 and 300 seconds, got {leeway!r}")
        self.store: StateStore = store if store is not None else CompactMemoryStore(clock=clock)
        self.max_ttl = float(max_ttl)
        self.leeway = float(leeway)
        self.timeout = float(timeout)
        self._ns = namespace
        self._clock = clock
        # key -> (revoked at, forget at): what this process revoked in the last moments.
        self._recent: dict[str, tuple[float, float]] = {}
        self._order: deque[tuple[float, str]] = deque()
        # The in-process stores answer without ever suspending: no deadline to arm for them.
        self._local = type(self.store) in (CompactMemoryStore, InMemoryStateStore)

    def __repr__(self) -> str:
        return f"RevocationList(store={type(self.store).__name__}, max_ttl={self.max_ttl})"

    def jti_key(self, jti: str) -> str:
        """The store key marking credential ``jti`` revoked."""
        return f"{self._ns}rj:{jti}"

    def task_key(self, tenant: str, task_id: str) -> str:
        """The store key marking task ``task_id`` of ``tenant`` revoked."""
        return f"{self._ns}rt:{_digest(tenant, task_id)}"

    def principal_key(self, tenant: str, issuer: str, subject: str) -> str:
        """The store key marking a principal's credentials revoked."""
        return f"{self._ns}rp:{_digest(tenant, issuer, subject)}"

    def _remember(self, key: str, at: float) -> None:
        now = self._clock()
        order, recent = self._order, self._recent
        while order and order[0][0] <= now:  # forget what no check still under way can need
            forget, old = order.popleft()
            if old in recent and recent[old][1] == forget:
                del recent[old]
        forget_at = now + self.timeout + 1.0
        recent[key] = (at, forget_at)
        order.append((forget_at, key))

    def _deadline(self) -> Any:
        return contextlib.nullcontext() if self._local else anyio.fail_after(self.timeout)

    async def _put(self, key: str, value: str, ttl: float) -> None:
        try:
            with self._deadline():
                await self.store.put(key, value, max(ttl, 1.0))
        except Exception as exc:  # noqa: BLE001 - any store failure means the revocation is not recorded
            raise CredentialError(
                f"the revocation store did not record a revocation ({type(exc).__name__})", reason="revocation_failed"
            ) from None

    async def revoke(self, jti: str, *, expires_at: float | None = None) -> None:
        """Refuse credential ``jti`` (and everything delegated from it) from now on.

        Args:
            jti: the credential id.
            expires_at: when that credential expires; the entry is kept until then (plus
                leeway). Unknown: ``max_ttl`` from now.

        Raises:
            CredentialError: the store did not record it (``reason="revocation_failed"``).
        """
        now = self._clock()
        key = self.jti_key(jti)
        self._remember(key, math.inf)
        until = expires_at if expires_at is not None else now + self.max_ttl
        await self._put(key, _REVOKED, until - now + self.leeway)

    async def _revoke_before(self, key: str) -> None:
        now = self._clock()
        self._remember(key, now)
        await self._put(key, repr(now), self.max_ttl + self.leeway)

    async def revoke_task(self, tenant: str, task_id: str) -> None:
        """Refuse every credential of ``task_id`` in ``tenant`` issued up to now."""
        await self._revoke_before(self.task_key(tenant, task_id))

    async def revoke_principal(self, tenant: str, issuer: str, subject: str) -> None:
        """Refuse every credential issued to principal ``(issuer, subject)`` in ``tenant`` up to now."""
        await self._revoke_before(self.principal_key(tenant, issuer, subject))

    def _keys(self, claims: CredentialClaims) -> list[str]:
        keys = [self.jti_key(claims.jti), self.principal_key(claims.tenant, claims.subject_issuer, claims.subject)]
        if claims.task_id is not None:
            keys.append(self.task_key(claims.tenant, claims.task_id))
        keys.extend(self.jti_key(parent) for parent in claims.chain)
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
        """Refuse a revoked credential; returns the keys checked (for :meth:`recheck`).

        Raises:
            CredentialError: revoked (``reason="revoked"``), or the store failed or timed out
                (``reason="revocation_unavailable"``: counts as revoked).
        """
        keys = self._keys(claims)
        try:
            with self._deadline():
                values = await self.store.get_many(keys)
        except Exception as exc:  # noqa: BLE001 - fail closed: a store that cannot answer counts as revoked
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
        """Synchronously consult this process's recent revocations (no await: call it last).

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
        ttl = claims.expires_at - self._clock() + self.leeway
        try:
            with self._deadline():
                first = await self.store.add(f"{self._ns}used:{claims.jti}", _REVOKED, max(ttl, 1.0))
        except Exception as exc:  # noqa: BLE001 - fail closed: an unrecorded use is refused
            raise CredentialError(
                f"the single-use store failed ({type(exc).__name__})", reason="revocation_unavailable"
            ) from None
        if not first:
            raise CredentialError("a single-use credential was presented again", reason="replayed")
