"""The checks configuration values share: positive numbers of seconds, positive counts, unique ids."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import TypeGuard, TypeVar

from mcpgov._errors import ConfigurationError

__all__ = ["first_repeat", "is_number", "is_positive_count", "is_positive_number", "positive_seconds"]

_H = TypeVar("_H", bound=Hashable)


def is_number(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a finite number (an ``int`` or ``float``, not a ``bool``) that a
    ``float`` can hold (an ``int`` beyond the float range is not: it could not be compared with a
    clock or a limit without an ``OverflowError``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def is_positive_number(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a finite number greater than zero (an ``int`` or ``float``, not a ``bool``)."""
    return is_number(value) and value > 0


def positive_seconds(name: str, value: object) -> float:
    """``value`` as a ``float``, checked to be a positive, finite number of seconds.

    Raises:
        ConfigurationError: it is not (the message names ``name`` and the value given).
    """
    if not is_positive_number(value):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def is_positive_count(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an ``int`` of at least one (not a ``bool``)."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


def first_repeat(values: Iterable[_H]) -> _H | None:
    """The first value that appears a second time in ``values`` (``None`` when all are distinct)."""
    seen: set[_H] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None
