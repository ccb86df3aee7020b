"""The reloader role of :class:`~mcpgov.policy.PolicyMiddleware`: loading a policy source,
reloading it (on demand, on change, or watching its file), and recording each reload."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from mcpgov._audit import AuditEvent, Auditor
from mcpgov._context import GovContext, Side
from mcpgov._errors import ConfigurationError, McpGovError
from mcpgov.policy._cedar import CedarPolicy
from mcpgov.policy._load import Policy, PolicyError, decode, read_bytes

if TYPE_CHECKING:
    from mcpgov.policy._middleware import Engine, PolicySource

__all__ = ["PolicyReloader", "load_policy"]

logger = logging.getLogger("mcpgov.policy")


def load_policy(source: PolicySource | None) -> Policy | CedarPolicy:
    """A loaded policy from a loaded policy or a file path (``.cedar`` for Cedar).

    Raises:
        PolicyError: the file cannot be loaded.
        ConfigurationError: ``source`` is neither.
    """
    if isinstance(source, (Policy, CedarPolicy)):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix.lower() == ".cedar":
            return CedarPolicy.from_file(path)
        return Policy.from_file(path)
    raise ConfigurationError(f"a policy must be a Policy, a CedarPolicy or a file path, got {type(source).__name__}")


def load_file_content(path: Path, raw: bytes) -> Policy | CedarPolicy:
    """The policy in ``raw``, the content read from ``path`` (``.cedar`` for Cedar).

    Raises:
        PolicyError: the content cannot be loaded.
    """
    if path.suffix.lower() == ".cedar":
        return CedarPolicy(decode(raw, str(path)), source=str(path))
    return Policy.from_file_content(path, raw)


_SETTLE = 0.05
"""Seconds between the two reads that must agree before a changed file is reloaded."""


class Enforcing(Protocol):
    """What the reloader changes: the engine in force."""

    @property
    def _enforced(self) -> Engine:
        """The engine in force."""

    def _compile(self, source: Policy | CedarPolicy) -> Engine:
        """Compile ``source`` (raises when it cannot be enforced)."""

    def _enforce(self, source: Policy | CedarPolicy, engine: Engine) -> None:
        """Put ``engine`` (compiled from ``source``) in force."""


class PolicyReloader:
    """Reloads the enforced policy and records every reload (``policy.reloaded`` /
    ``policy.reload_failed``); a reload that fails keeps the last good policy.

    Events are queued until an auditor is known: the one given, else that of the next request.
    """

    def __init__(self, target: Enforcing, path: Path | None, auditor: Auditor | None) -> None:
        self.target = target
        self.path = path
        self.auditor = auditor
        self.loaded_text: bytes | None = None
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.side: Side = "server"
        """The side recorded on reload events (that of the latest audited request)."""
        self._serial = anyio.Lock()
        """Reloads run one at a time, in the order they were asked for: one still loading never
        lands after a later one."""

    def read_raw(self) -> bytes | None:
        if self.path is None:
            return None
        try:
            return read_bytes(self.path)
        except PolicyError:
            return None

    async def reload(self, policy: PolicySource | None = None, *, content: bytes | None = None) -> bool:
        """See :meth:`PolicyMiddleware.reload`. A policy file is read once, and what is enforced
        (and remembered as loaded) is exactly what was read: ``content`` when given (the bytes a
        change check compared), else one read of the file. Reloads run one at a time, in the
        order they were asked for."""
        async with self._serial:
            return await self._reload(policy, content=content)

    async def _reload(self, policy: PolicySource | None, *, content: bytes | None) -> bool:
        previous = self.target._enforced.version
        path = self.path if policy is None else Path(policy) if isinstance(policy, (str, os.PathLike)) else None
        if policy is None and path is None:
            raise ConfigurationError("reload() needs a policy: this middleware was not given a policy file")
        raw: bytes | None = content
        try:
            if path is None:
                source = await anyio.to_thread.run_sync(load_policy, policy)
            elif raw is not None:
                source = await anyio.to_thread.run_sync(load_file_content, path, raw)
            else:
                raw = await anyio.to_thread.run_sync(read_bytes, path)
                source = await anyio.to_thread.run_sync(load_file_content, path, raw)
            engine = self.target._compile(source)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # noqa: BLE001 - any failure keeps the last good policy
            detail = str(exc) if isinstance(exc, McpGovError) else f"{type(exc).__name__} while loading the policy"
            logger.warning("policy reload failed; keeping policy %s", previous)
            if policy is None:
                self.loaded_text = raw  # the same broken content is not retried
            await self.emit("failed", detail, previous)
            return False
        self.target._enforce(source, engine)
        if path is not None:
            self.path = path
            self.loaded_text = raw
        await self.emit("loaded", "", previous)
        return True

    async def check_for_changes(self) -> bool:
        """See :meth:`PolicyMiddleware.check_for_changes`. A changed file is reloaded only when two
        reads ``_SETTLE`` seconds apart agree (a file still being written is judged at the next
        check), and what is enforced is exactly the content those reads saw."""
        if self.path is None:
            return False
        current = await anyio.to_thread.run_sync(self.read_raw)
        if current is not None and current == self.loaded_text:
            return False
        await anyio.sleep(_SETTLE)
        if await anyio.to_thread.run_sync(self.read_raw) != current:
            return False  # still changing
        await self.reload(content=current)
        self.loaded_text = current  # a broken file is not retried until it changes again
        return True

    async def watch(self, interval: float, check: Callable[[], Awaitable[bool]]) -> None:
        """Run ``check`` (a :meth:`check_for_changes`) every ``interval`` seconds, outliving whatever
        it raises; see :meth:`PolicyMiddleware.watch`."""
        if not interval > 0:
            raise ConfigurationError("interval must be positive")
        cancelled = anyio.get_cancelled_exc_class()
        while True:
            await anyio.sleep(interval)
            try:
                await check()
            except (KeyboardInterrupt, SystemExit):
                raise
            except cancelled:
                await anyio.lowlevel.checkpoint()  # our own cancellation raises here; a stray one is absorbed
                logger.error("policy watcher: a reload raised a stray cancellation; still watching")
            except BaseException as exc:  # noqa: BLE001 - the watcher must outlive anything a reload meets
                logger.error("policy watcher: reload raised %s; still watching", type(exc).__name__)
                self.queue("failed", f"{type(exc).__name__} during reload", None)

    def queue(self, outcome: str, detail: str, previous: str | None) -> None:
        """Queue a reload event until an auditor records it."""
        self.pending.append(
            (outcome, {"detail": detail, "previous": previous, "version": self.target._enforced.version})
        )

    async def emit(self, outcome: str, detail: str, previous: str | None) -> None:
        """Record a reload now when an auditor was given (never raising), else queue it."""
        self.queue(outcome, detail, previous)
        if self.auditor is None:
            return
        try:
            await self.flush(self.auditor)
        except (KeyboardInterrupt, SystemExit):
            raise
        except anyio.get_cancelled_exc_class():
            await anyio.lowlevel.checkpoint()  # our own cancellation raises here; a stray one is absorbed
            logger.error("the reload event could not be recorded (a sink raised a cancellation)")
        except BaseException as exc:  # noqa: BLE001 - recording a reload must never undo or break it
            logger.error("the reload event could not be recorded (%s)", type(exc).__name__)

    async def flush(self, auditor: Auditor) -> None:
        """Record the queued reload events with ``auditor``."""
        pending, self.pending = self.pending, []
        engine = self.target._enforced
        for outcome, info in pending:
            ctx = GovContext(side=self.side, method="policy/reload")
            await auditor.emit(
                AuditEvent.from_context(
                    ctx,
                    "policy.reloaded" if outcome == "loaded" else "policy.reload_failed",
                    outcome=outcome,
                    reason="reloaded" if outcome == "loaded" else "reload_failed",
                    detail=info["detail"] or None,
                    engine=engine.engine_name,
                    policy_version=info["version"],
                    attributes={"previous_version": info["previous"], "source": engine.source},
                )
            )
