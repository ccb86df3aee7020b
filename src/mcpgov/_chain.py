"""The middleware shape shared by client and server, chain composition, and listings."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mcpgov._context import GovContext, TargetKind

__all__ = ["CallNext", "ListItem", "Listing", "Middleware", "compose"]

CallNext = Callable[[GovContext], Awaitable[Any]]
"""Runs the rest of the chain with the given context and returns its result."""


@runtime_checkable
class Middleware(Protocol):
    """One governance stage: ``async (ctx, call_next) -> result``.

    A middleware may refuse (raise an :class:`~mcpgov.McpGovError`), pass a changed context
    on (``await call_next(ctx.replace(...))``), or look at the result on the way back.
    The same middleware runs on the client (in :class:`~mcpgov.GovernedClient`) and on
    the server (installed by :func:`~mcpgov.govern`).
    """

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any: ...


def _apply(middleware: Middleware, call_next: CallNext, ctx: GovContext) -> Awaitable[Any]:
    return middleware(ctx, call_next)


def compose(middleware: Sequence[Middleware], terminal: CallNext) -> CallNext:
    """Fold ``middleware`` around ``terminal``, outermost first (``middleware[0]`` runs first)."""
    call = terminal
    for mw in reversed(middleware):
        call = functools.partial(_apply, mw, call)
    return call


@dataclass(frozen=True, slots=True)
class ListItem:
    """One entry of a listing: the name (or URI) decisions are made on, and the raw entry."""

    name: str
    raw: Any


@dataclass(frozen=True, slots=True)
class Listing:
    """What a list method (``tools/list``, ``resources/list``...) returns inside the chain.

    The adapters turn the SDK's result into a :class:`Listing` so that authorisers filter
    client and server listings with the same code, and turn it back afterwards.

    Attributes:
        kind: what is listed.
        items: the entries still visible.
        hidden: names removed so far, in order.
        envelope: the SDK result the items came from (used by the adapter to rebuild it).
    """

    kind: TargetKind
    items: tuple[ListItem, ...]
    hidden: tuple[str, ...] = ()
    envelope: Any = None

    def keep(self, visible: Callable[[ListItem], bool]) -> Listing:
        """A listing with only the items for which ``visible`` is true."""
        kept = tuple(item for item in self.items if visible(item))
        if len(kept) == len(self.items):
            return self
        kept_ids = {id(item) for item in kept}
        dropped = tuple(item.name for item in self.items if id(item) not in kept_ids)
        return Listing(self.kind, kept, self.hidden + dropped, self.envelope)
