"""Containment: which exceptions a governance stage may never swallow, and which it must contain.

A stage (hook, middleware, sink, approver) can raise anything. Only interpreter exits
(``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``, also inside an exception group) and
the caller's own cancellation propagate; everything else, ``BaseException`` subclasses and a
``CancelledError`` raised while nothing cancelled the task included, is contained: the request is
refused and the session keeps serving.
"""

from __future__ import annotations

import asyncio
import sys

import anyio
import anyio.lowlevel

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = ["contained", "must_propagate", "really_cancelled"]


_EXIT = (KeyboardInterrupt, SystemExit, GeneratorExit)


def must_propagate(exc: BaseException) -> bool:
    """True for what containment must never swallow: interpreter exits (also inside a group)."""
    if isinstance(exc, _EXIT):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(lambda e: isinstance(e, _EXIT)) is not None
    return False


async def really_cancelled() -> bool:
    """Whether the current task is being cancelled (the caller's own cancellation).

    A ``CancelledError`` raised by a stage while nothing cancelled this task is an error of that
    stage, not a cancellation: containment refuses the request instead of propagating it.
    """
    task = asyncio.current_task() if _asyncio_running() else None
    if task is not None and sys.version_info >= (3, 11) and task.cancelling() > 0:
        return True
    try:
        # anyio cancel scopes re-deliver a pending cancellation at the next checkpoint.
        await anyio.lowlevel.checkpoint()
    except anyio.get_cancelled_exc_class():
        return True
    return False


def _asyncio_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def contained(exc: BaseException) -> bool:
    """True when ``exc`` must be contained (turned into a refusal) rather than propagated."""
    if must_propagate(exc):
        return False
    return not (isinstance(exc, anyio.get_cancelled_exc_class()) and await really_cancelled())
