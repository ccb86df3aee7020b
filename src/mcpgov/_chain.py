"""The middleware shape shared by client and server, chain composition, and listings."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, Union, runtime_checkable

from mcpgov._context import GovContext, TargetKind
from mcpgov._errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "CallNext",
    "ChainResult",
    "Fact",
    "ListItem",
    "Listing",
    "Middleware",
    "StageSpec",
    "check_order",
    "compose",
]

CallNext = Callable[[GovContext], Awaitable["ChainResult"]]
"""Runs the rest of the chain with the given context and returns its result."""


@runtime_checkable
class Middleware(Protocol):
    """One governance stage: ``async (ctx, call_next) -> result``.

    A middleware may refuse (raise an :class:`~mcpgov.McpGovError`), pass a changed context
    on (``await call_next(ctx.replace(...))``), or look at the result on the way back.
    The same middleware runs on the client (in :class:`~mcpgov.GovernedClient`) and on
    the server (installed by :func:`~mcpgov.govern`).
    """

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> ChainResult: ...


def _apply(middleware: Middleware, call_next: CallNext, ctx: GovContext) -> Awaitable[ChainResult]:
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


ChainResult: TypeAlias = Union[Listing, "BaseModel", Mapping[str, Any], None]
"""What a chain returns, on either side: a :class:`Listing` for list methods (``tools/list``...);
otherwise the result of the request as the side's SDK shapes it: a pydantic model on the client
(``CallToolResult``...), a JSON object or a model on the server, ``None`` for what has no result."""

Fact = Literal["principal", "credential", "approval"]
"""What a stage establishes on the context for the stages after it: the verified ``principal``
(and tenant), a verified ``credential`` (with its task and purpose), an ``approval`` grant."""


@dataclass(frozen=True, slots=True)
class StageSpec:
    """Where a stage belongs in a chain, declared as the class attribute ``stage``.

    Attributes:
        provides: facts this stage establishes for the stages after it.
        after: facts this stage relies on: when any stage of the chain provides one, that stage
            must come before this one (a stage never relies on what a later stage establishes).
    """

    provides: frozenset[Fact] = field(default_factory=frozenset)
    after: frozenset[Fact] = field(default_factory=frozenset)


_NO_SPEC = StageSpec()


def _spec(mw: object) -> StageSpec:
    spec = getattr(mw, "stage", None)
    return spec if isinstance(spec, StageSpec) else _NO_SPEC


def _name(mw: object) -> str:
    return type(mw).__name__ if not isinstance(mw, type) else mw.__name__


def _working_order(middleware: Sequence[object]) -> list[object]:
    """The given stages, stably reordered so every provider comes before what relies on it."""
    remaining = list(middleware)
    order: list[object] = []
    provided: set[str] = set()
    offered = {fact for mw in middleware for fact in _spec(mw).provides}
    while remaining:
        for i, mw in enumerate(remaining):
            if (_spec(mw).after & offered) <= provided:
                order.append(remaining.pop(i))
                provided |= _spec(mw).provides
                break
        else:  # a cycle: no order exists
            order.extend(remaining)
            break
    return order


def check_order(middleware: Sequence[object]) -> None:
    """Refuse a chain in which a stage comes before a stage it relies on.

    Raises:
        ConfigurationError: naming the misplaced stage, what it relies on, and a working order.
    """
    offered = {fact for mw in middleware for fact in _spec(mw).provides}
    provided: set[str] = set()
    for mw in middleware:
        spec = _spec(mw)
        late = sorted((spec.after & offered) - provided)
        if late:
            providers = [_name(p) for p in middleware if set(late) & _spec(p).provides]
            suggestion = ", ".join(_name(m) for m in _working_order(middleware))
            raise ConfigurationError(
                f"{_name(mw)} relies on the {' and '.join(late)} that {', '.join(providers)} establishes, "
                f"but comes before it; put the stages in this order: {suggestion}"
            )
        provided |= spec.provides
