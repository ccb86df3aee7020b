"""The checks configuration values share: positive numbers of seconds, positive counts."""

from __future__ import annotations

import math
from typing import TypeGuard

__all__ = ["is_positive_count", "is_positive_number"]


def is_positive_number(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a finite number greater than zero (an ``int`` or ``float``, not a ``bool``)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def is_positive_count(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an ``int`` of at least one (not a ``bool``)."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1
