"""Task scopes: credentials minted for a task are revoked when the task ends."""

from __future__ import annotations

import contextvars
import functools
import logging
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import anyio

from mcpgov._contain import contained
from mcpgov._errors import ConfigurationError, CredentialError
from mcpgov._principal import Principal

if TYPE_CHECKING:
    from mcpgov.credentials._claims import Credential
    from mcpgov.credentials._client import TokenSource

__all__ = ["TaskScope", "current_task", "open_task"]

logger = logging.getLogger("mcpgov.credentials")

_CURRENT_TASK: contextvars.ContextVar[TaskScope | None] = contextvars.ContextVar("mcpgov_current_task", default=None)


class TaskScope:
    """One task in progress: its id and purpose, and the credentials minted for it.

    Attributes:
        task_id: the task's id.
        purpose: the task's declared purpose.
        revoked: True once the scope has ended and revoked what it minted.
    """

    # Slots: a task is often open as long as its session.
    __slots__ = ("__weakref__", "_minted", "purpose", "revoked", "task_id")

    def __init__(self, task_id: str, purpose: str | None) -> None:
        self.task_id = task_id
        self.purpose = purpose
        self.revoked = False
        self._minted: list[tuple[Credential, TokenSource, Principal | None]] = []

    def __repr__(self) -> str:
        return f"TaskScope(task_id={self.task_id!r}, purpose={self.purpose!r}, minted={len(self._minted)})"

    @property
    def credential_ids(self) -> tuple[str, ...]:
        """The ids of the credentials minted for this task so far."""
        return tuple(c.id for c, _, _ in self._minted)

    def record(self, credential: Credential, source: TokenSource, principal: Principal | None) -> None:
        """Remember a credential minted for this task, to revoke it when the task ends.

        Raises:
            CredentialError: the task has already ended.
        """
        if self.revoked:
            raise CredentialError("the task has ended; its credentials are revoked", reason="task_ended")
        self._minted.append((credential, source, principal))

    async def _revoke_all(self, sources: list[TokenSource], principal: Principal | None) -> list[BaseException]:
        """Revoke the task on every source and every credential minted for it; returns the failures.

        A failure never stops the rest from being revoked, whatever it is. One that must not be
        contained (an interpreter exit, the caller's own cancellation) is raised once every
        revocation was tried.
        """
        self.revoked = True
        errors: list[BaseException] = []
        escaping: BaseException | None = None
        revocations = [functools.partial(source.revoke_task, self.task_id, principal) for source in sources]
        revocations.extend(
            functools.partial(source.revoke, credential, owner) for credential, source, owner in self._minted
        )
        for revocation in revocations:
            try:
                await revocation()
            except BaseException as exc:  # noqa: BLE001 - keep revoking the rest; reported (or raised) after
                errors.append(exc)
                if escaping is None and not await contained(exc):
                    escaping = exc
        if escaping is not None:
            logger.error("task %s: %d revocation(s) failed (%s)", self.task_id, len(errors), type(escaping).__name__)
            raise escaping
        return errors


def current_task() -> TaskScope | None:
    """The task scope the current code runs in, or None."""
    return _CURRENT_TASK.get()


def _credential_middleware(client: Any) -> list[Any]:
    from mcpgov.credentials._client import ClientCredentials  # noqa: PLC0415 - the two modules refer to each other

    governor = getattr(client, "governor", None)
    chain = getattr(governor, "middleware", ())
    return [mw for mw in chain if isinstance(mw, ClientCredentials)]


def open_task(client: Any, task_id: str, *, purpose: str | None = None) -> AbstractAsyncContextManager[TaskScope]:
    """Run a task on a :class:`~mcpgov.GovernedClient`: its calls carry credentials minted
    for this task and purpose, and everything minted is revoked when the block ends, also on
    error or cancellation.

    Example::

        async with open_task(client, "release-42", purpose="deploy") as task:
            await client.call_tool("deploy", {"version": "1.4.2"})

    Args:
        client: a ``GovernedClient`` whose chain has :class:`ClientCredentials`.
        task_id: the task's id.
        purpose: the task's purpose.

    Returns:
        An async context manager that yields the :class:`TaskScope`.

    Raises:
        ConfigurationError: bad task id or purpose, or no ``ClientCredentials`` in the chain
            (when the block is entered).
        CredentialError: the block succeeded but some credentials could not be revoked.
    """
    return _TaskBlock(client, task_id, purpose)


class _TaskBlock:
    """The block of :func:`open_task`. A task is often open as long as its session: this holds
    what the block needs in a few slots, not a suspended generator frame."""

    __slots__ = ("_client", "_middleware", "_principal", "_purpose", "_reset", "_scope", "_task_id")

    def __init__(self, client: Any, task_id: str, purpose: str | None) -> None:
        self._client = client
        self._task_id = task_id
        self._purpose = purpose

    async def __aenter__(self) -> TaskScope:
        task_id, purpose = self._task_id, self._purpose
        if not isinstance(task_id, str) or not task_id or len(task_id) > 256:
            raise ConfigurationError("a task id must be a non-empty string of at most 256 characters")
        if purpose is not None and (not isinstance(purpose, str) or not purpose or len(purpose) > 256):
            raise ConfigurationError("a purpose must be a non-empty string of at most 256 characters")
        middleware = _credential_middleware(self._client)
        if not middleware:
            raise ConfigurationError("a task scope needs ClientCredentials in the client's chain")
        self._middleware = middleware
        self._principal: Principal | None = getattr(self._client, "principal", None)
        self._client = None  # what the block needs is read: the client is not held
        scope = self._scope = TaskScope(task_id, purpose)
        self._reset = _CURRENT_TASK.set(scope)
        return scope

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        failed = exc_type is not None
        scope, task_id, middleware = self._scope, self._task_id, self._middleware
        _CURRENT_TASK.reset(self._reset)
        for mw in middleware:
            mw.forget_task(task_id)
        sources = list({id(mw.source): mw.source for mw in middleware}.values())
        with anyio.CancelScope(shield=True):
            errors = await scope._revoke_all(sources, self._principal)
        if errors:
            logger.error(
                "task %s: %d revocation(s) failed (%s)",
                task_id,
                len(errors),
                sorted({type(e).__name__ for e in errors}),
            )
            if not failed:
                raise CredentialError(
                    f"{len(errors)} revocation(s) of task {task_id!r} failed", reason="revocation_failed"
                ) from errors[0]
