"""``FrozenClock``: a clock tests move by hand."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from mcpgov._errors import ConfigurationError

__all__ = ["DEFAULT_FROZEN_TIME", "FrozenClock"]

DEFAULT_FROZEN_TIME = 1_750_000_000.0
"""Where a :class:`FrozenClock` starts by default: 2025-06-15T15:06:40Z (a Sunday)."""


def _epoch(when: float | str | datetime) -> float:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ConfigurationError("a frozen time needs a timezone (e.g. 2025-06-16T09:30:00+00:00)")
        return when.timestamp()
    if isinstance(when, str):
        try:
            parsed = datetime.fromisoformat(when.replace("Z", "+00:00") if when.endswith("Z") else when)
        except ValueError:
            raise ConfigurationError(f"not an ISO 8601 time: {when!r}") from None
        return _epoch(parsed)
    if isinstance(when, bool) or not isinstance(when, (int, float)) or not math.isfinite(when):
        raise ConfigurationError(
            f"a frozen time is seconds since the epoch, an ISO 8601 string or a datetime: {when!r}"
        )
    return float(when)


class FrozenClock:
    """A clock that stands still until told to move.

    Pass it wherever mcpgov takes ``clock=`` (policy time windows and rate limits, identity and
    credential lifetimes, approvals) so a test decides what time it is instead of sleeping::

        clock = FrozenClock("2025-06-16T09:30:00Z")
        clock.advance(3600)  # an hour later
        clock.set("2025-06-16T18:00:00+00:00")

    Args:
        when: the starting time: seconds since the epoch, an ISO 8601 string with a timezone, or an
            aware ``datetime``.

    Raises:
        ConfigurationError: a time without a timezone, or not a time at all.
    """

    def __init__(self, when: float | str | datetime = DEFAULT_FROZEN_TIME) -> None:
        self.now = _epoch(when)

    def __call__(self) -> float:
        """The frozen time, in seconds since the epoch."""
        return self.now

    def __repr__(self) -> str:
        return f"FrozenClock({self.isoformat()!r})"

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (not backwards) and return the new time.

        Raises:
            ConfigurationError: a negative or non-finite number of seconds.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise ConfigurationError(f"advance() takes a number of seconds, got {seconds!r}")
        if seconds < 0:
            raise ConfigurationError("a frozen clock only moves forward; use set() to go back")
        self.now += float(seconds)
        return self.now

    def set(self, when: float | str | datetime) -> float:
        """Set the clock to ``when`` (any form the constructor takes) and return it."""
        self.now = _epoch(when)
        return self.now

    def isoformat(self) -> str:
        """The frozen time as an ISO 8601 UTC string."""
        return datetime.fromtimestamp(self.now, tz=timezone.utc).isoformat()
