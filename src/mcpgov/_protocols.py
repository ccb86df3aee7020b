"""The side protocols middleware and audit sinks may implement, beside their main call.

Each is a :class:`typing.Protocol`; those checked at run time are ``runtime_checkable``, so the
client, the auditor and the queues find them with ``isinstance`` rather than by probing names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mcpgov._audit import AuditEvent
    from mcpgov._context import GovContext
    from mcpgov._decision import Decision

__all__ = [
    "LISTING_PAGE_CAP",
    "BatchWriter",
    "ClosableSink",
    "CoversApproval",
    "FlushableSink",
    "HealthReporting",
    "ListChangeListener",
    "ListingGate",
    "SendGate",
    "StatsReporting",
    "Ticking",
    "closable",
    "flushable",
    "health_reporting",
    "listing_gate",
    "stats_of",
]


LISTING_PAGE_CAP = 100
"""The most pages one walk of a listing reads: a client stops there, and a listing gate (tool
pinning) holds a walk that goes on past it as a listing that cannot be verified."""


@runtime_checkable
class ListingGate(Protocol):
    """Client-side middleware that verifies listings (tool pinning): while :attr:`needs_listing`
    is true, a governed ``tools/list`` runs before any tool is called."""

    @property
    def requires_listing(self) -> bool:
        """``True``: the client runs listings through this middleware before calls."""

    @property
    def needs_listing(self) -> bool:
        """Whether a fresh governed listing is needed before the next call."""


def listing_gate(middleware: object) -> ListingGate | None:
    """``middleware`` as a :class:`ListingGate` when it declares ``requires_listing = True``."""
    if isinstance(middleware, ListingGate) and middleware.requires_listing is True:
        return middleware
    return None


@runtime_checkable
class SendGate(Protocol):
    """Client-side middleware that holds every request a ``tools/call`` sends to what it decided.

    The SDK's client may send one call more than once (again after re-listing on a
    ``HEADER_MISMATCH``, once per ``input_required`` round); the client asks before each send.
    """

    def check_send(self, name: str, ctx: GovContext | None = None) -> str:
        """What tool ``name`` may be sent under now (its verified fingerprint); raises
        :class:`~mcpgov.McpGovError` when it may not be sent. ``ctx`` is the decided request,
        when the client sends it: what the gate judges of its caller is judged again too."""


@runtime_checkable
class ListChangeListener(Protocol):
    """Client-side middleware told when the server says a list changed."""

    def notify_list_changed(self, kind: str) -> None:
        """The server's list of ``kind`` (``"tool"``, ``"resource"``, ``"prompt"``) changed."""


@runtime_checkable
class HealthReporting(Protocol):
    """An audit sink that knows whether it can currently deliver (strict audit refuses when not)."""

    @property
    def healthy(self) -> bool:
        """``False`` while the sink is known to be failing."""


@runtime_checkable
class StatsReporting(Protocol):
    """An audit sink with delivery counters (``dropped``, ``failed``, ``pending`` are summed)."""

    def stats(self) -> Mapping[str, int]:
        """The sink's counters."""


@runtime_checkable
class FlushableSink(Protocol):
    """An audit sink that queues: :meth:`flush` waits until what it holds is written."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; ``True`` when everything was written."""


@runtime_checkable
class ClosableSink(Protocol):
    """An audit sink that holds a resource (a file, a worker) released by :meth:`close`."""

    def close(self, timeout: float | None = None) -> bool | None:
        """Release the resource; ``False`` when something could not be written in time."""


@runtime_checkable
class BatchWriter(Protocol):
    """An audit sink that takes several events at once (a queue hands it whole batches)."""

    def write_batch(self, events: Sequence[AuditEvent]) -> object:
        """Write ``events``, in order."""


@runtime_checkable
class Ticking(Protocol):
    """An audit sink with periodic work (a timed checkpoint), run by its queue's idle worker."""

    def tick(self) -> object:
        """Do the periodic work, if it is due."""


def health_reporting(sink: object) -> HealthReporting | None:
    """``sink`` when it reports its health, else ``None`` (classify once: the check is not cheap)."""
    return sink if isinstance(sink, HealthReporting) else None


def stats_of(sink: object) -> Mapping[str, int] | None:
    """``sink``'s counters, or ``None`` when it keeps none (or reports something else)."""
    if not isinstance(sink, StatsReporting):
        return None
    counters = sink.stats()
    return counters if isinstance(counters, Mapping) else None


def flushable(sink: object) -> FlushableSink | None:
    """``sink`` when it can be flushed, else ``None``."""
    return sink if isinstance(sink, FlushableSink) else None


def closable(sink: object) -> ClosableSink | None:
    """``sink`` when it can be closed, else ``None``."""
    return sink if isinstance(sink, ClosableSink) else None


class CoversApproval(Protocol):
    """A granted approval an approval middleware attaches under
    :data:`~mcpgov._context.APPROVAL_GRANT`: authorisers turn an approval-required decision into an
    allow only when the grant :meth:`covers` exactly that request."""

    @property
    def approver(self) -> str:
        """Who approved."""

    def covers(self, ctx: GovContext, decision: Decision) -> bool:
        """Whether this grant approves ``decision`` for the request ``ctx``."""
