"""What a request's admission spent (rate-limit counts), taken back when the request never ran.

Every governed request runs under one :class:`Admission` (set by the governor). A stage that
counts the request against a limit registers how to take the count back; when the request is
refused or fails before its effect starts (a later stage refuses, a last check fails, the allow
cannot be recorded, the caller cancels), the governor takes every count back. A count that
cannot be taken back stays: stricter, never looser.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable

import anyio

__all__ = ["Admission", "current_admission"]

logger = logging.getLogger("mcpgov")

_TAKE_BACK_SECONDS = 5.0
"""The longest taking back a refused request's counts may wait (a store that hangs leaves them
counted: stricter, never looser)."""


class Admission:
    """The counts one request spent on its way in, and whether its effect started."""

    __slots__ = ("_undo", "counted", "started")

    def __init__(self) -> None:
        self.started = False
        self.counted: set[object] = set()
        """The rate limits this request was counted against."""
        self._undo: list[Callable[[], Awaitable[None]]] = []

    def spent(self, undo: Callable[[], Awaitable[None]], limits: Iterable[object] = ()) -> None:
        """Record a count this request spent against ``limits``, and how to take it back."""
        self._undo.append(undo)
        self.counted.update(limits)

    def covers(self, limits: object) -> bool:
        """Whether this request was counted against every one of ``limits`` (one limit, or a
        tuple or list of them): what a decision's ``rate_limit`` obligation holds."""
        items = limits if isinstance(limits, (tuple, list)) else (limits,)
        try:
            return all(item in self.counted for item in items)
        except TypeError:  # an unhashable limit: never counted
            return False

    async def take_back(self) -> None:
        """Take back every count, once, when the effect did not start (shielded, for at most a
        few seconds: a cancelled request is taken back too)."""
        if self.started or not self._undo:
            return
        with anyio.move_on_after(_TAKE_BACK_SECONDS, shield=True):
            while self._undo:
                undo = self._undo.pop()
                try:
                    await undo()
                except Exception as exc:  # noqa: BLE001 - the count stays: stricter, never looser
                    logger.warning("a refused request's count could not be taken back (%s)", type(exc).__name__)
        self._undo.clear()


_CURRENT: contextvars.ContextVar[Admission | None] = contextvars.ContextVar("mcpgov_admission", default=None)


def current_admission() -> Admission | None:
    """The admission of the request being governed in this task, if any."""
    return _CURRENT.get()


def enter_admission(admission: Admission) -> contextvars.Token[Admission | None]:
    """Make ``admission`` current (reset with the returned token)."""
    return _CURRENT.set(admission)


def leave_admission(token: contextvars.Token[Admission | None]) -> None:
    """Undo :func:`enter_admission`."""
    _CURRENT.reset(token)
