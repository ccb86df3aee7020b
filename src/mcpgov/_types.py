"""Named type aliases, small type tests and value helpers shared across the package."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["Clock", "is_async_callable", "present", "thaw"]

Clock = Callable[[], float]
"""A source of the current time in seconds (``time.time`` for wall time, ``time.monotonic`` for
intervals); tests pass a fixed or stepped clock."""


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` returns a coroutine: an ``async def`` function, or an object whose
    ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def thaw(value: Any) -> Any:
    """``value`` with every mapping (a frozen ``MappingProxyType`` too) made a ``dict`` and every
    tuple a ``list``, all the way down: plain JSON-ready data from frozen claims or arguments."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return value  # the common leaves, without an abstract-class check each
    if kind is MappingProxyType or kind is dict or isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def present(**fields: Any) -> dict[str, Any]:
    """The ``fields`` that are not ``None``, in order: the optional members of a claims set or a
    form, where an absent value is left out rather than sent empty."""
    return {name: value for name, value in fields.items() if value is not None}
