"""Named type aliases and small type tests shared across the package."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Clock", "is_async_callable"]

Clock = Callable[[], float]
"""A source of the current time in seconds (``time.time`` for wall time, ``time.monotonic`` for
intervals); tests pass a fixed or stepped clock."""


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` returns a coroutine: an ``async def`` function, or an object whose
    ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004
