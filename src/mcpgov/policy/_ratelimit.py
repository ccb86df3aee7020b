"""Rate limits and quotas: fixed-window counters per principal, tenant and tool in a StateStore.

A limit is an obligation of the allow rule that carries it. It counts admitted requests
(execute decisions that were allowed), never listings. A quota is the same thing with a long
window (``per: 86400``). Counters live in the :class:`~mcpgov.StateStore`, so several replicas
sharing a Redis store share the limit; a store error denies. A resource is counted as a server
reading only its host and path reads its URI (host in lower case, no user-info or port, no empty
path segments, trailing slash, query or fragment), so other spellings of one URI share its count,
and a principal, tenant, tool or prompt as a reader reads its name (case, Unicode compatibility
forms, invisible characters, whitespace, look-alike letters and separators folded), so other
spellings of one caller or target share its count.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import anyio

from mcpgov._admission import current_admission
from mcpgov._context import GovContext
from mcpgov._state import StateStore
from mcpgov._types import Clock
from mcpgov._uris import authority_folded, path_folded
from mcpgov.pinning._names import name_skeleton
from mcpgov.policy._conditions import name_key

__all__ = ["RateLimitSpec", "RateLimiter"]

logger = logging.getLogger("mcpgov.policy")

_TAKE_BACK_SECONDS = 5.0
"""The longest a refused request waits for its counts to be taken back (a store that hangs
leaves them counted: stricter, never looser)."""


@dataclass(frozen=True, slots=True)
class RateLimitSpec:
    """One rate limit: at most ``limit`` requests per ``per`` seconds, counted per ``by``.

    Attributes:
        rule: the rule (or declaration) that set it; a refusal names it.
        limit: requests admitted per window.
        per: window length in seconds.
        by: what the counter is kept per: any of ``principal``, ``tenant``, ``tool``.
    """

    rule: str
    limit: int
    per: float
    by: tuple[str, ...]


def _read_as(name: str) -> str:
    """What a reader takes ``name`` for: its name key (case, compatibility forms, invisible
    characters and whitespace folded), then its confusables skeleton (look-alike letters of other
    scripts, ``rn`` and ``m``, separators), so every spelling of one name shares one counter.
    Two names a reader could take for each other share it too: stricter, never looser."""
    return name_skeleton(name_key(name))


class RateLimiter:
    """Admits requests against :class:`RateLimitSpec` counters held in a :class:`~mcpgov.StateStore`.

    Args:
        store: where counters live.
        clock: seconds since the epoch (injectable: tests freeze time).
    """

    def __init__(self, store: StateStore, *, clock: Clock = time.time) -> None:
        self.store = store
        self.clock = clock

    @staticmethod
    def _key(spec: RateLimitSpec, ctx: GovContext, window: int) -> str:
        parts: list[str] = []
        for dimension in spec.by:
            # A principal, tenant or target is counted as a reader reads its name (see
            # _read_as): every spelling of one caller shares its counter.
            if dimension == "principal":
                principal = ctx.principal
                parts.append(
                    f"{_read_as(principal.issuer)}#{_read_as(principal.subject)}" if principal is not None else ""
                )
            elif dimension == "tenant":
                parts.append(_read_as(ctx.tenant) if isinstance(ctx.tenant, str) else "")
            elif ctx.kind == "resource" and ctx.target is not None:
                # Every spelling a server may resolve to the same resource counts as that resource.
                parts.append(f"resource:{path_folded(authority_folded(ctx.target))}")
            elif ctx.kind is not None and ctx.target is not None:
                parts.append(f"{ctx.kind}:{_read_as(ctx.target)}")
            else:
                parts.append(f"{ctx.kind}:{ctx.target}" if ctx.kind is not None else f"method:{ctx.method}")
        digest = hashlib.sha256("\x00".join([spec.rule, *spec.by, *parts]).encode()).hexdigest()[:40]
        return f"mcpgov:policy:rate:{digest}:{window}"

    async def admit(self, ctx: GovContext, specs: Iterable[RateLimitSpec]) -> RateLimitSpec | None:
        """Count this request against every spec; return the first exceeded spec, or None.

        A request that is refused spends none of its limits: when a spec is exceeded, or counting
        fails half-way (a store error, or anything else raised), what was counted for it is taken
        back, so a caller over one limit never spends a limit it shares with others. Once
        admitted under a governed request, the counts are taken back too when that request is
        refused, fails or is cancelled before it runs (see :mod:`mcpgov._admission`).

        Raises:
            StateStoreError: the store failed (the caller denies).
        """
        now = self.clock()
        counted: list[tuple[str, float]] = []
        limits: list[RateLimitSpec] = []
        try:
            for spec in specs:
                limits.append(spec)
                window = int(now // spec.per)
                # The counter expires at the end of its window.
                ttl = max((window + 1) * spec.per - now, 0.001)
                key = self._key(spec, ctx, window)
                count = await self.store.incr(key, ttl)
                counted.append((key, ttl))
                if count > spec.limit:
                    await self._take_back(counted)
                    return spec
        except BaseException:
            await self._take_back(counted)
            raise
        admission = current_admission()
        if admission is not None and counted:
            # Taken back when a later stage refuses the request before it runs.
            admission.spent(functools.partial(self._take_back, counted), limits)
        return None

    async def _take_back(self, counted: list[tuple[str, float]]) -> None:
        """Undo the counts of a refused request (shielded, for at most a few seconds: a cancelled
        request is taken back too). Each count is taken back at most once; one that cannot be taken
        back stays: stricter, never looser."""
        with anyio.move_on_after(_TAKE_BACK_SECONDS, shield=True):
            while counted:
                key, ttl = counted.pop()
                try:
                    await self.store.incr(key, ttl, -1)
                except Exception as exc:  # noqa: BLE001 - the count stays: stricter, never looser
                    logger.warning(
                        "a refused request could not be taken back from a rate limit (%s)", type(exc).__name__
                    )
        counted.clear()
