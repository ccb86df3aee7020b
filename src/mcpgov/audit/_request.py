"""Request keys: one value per request, unique across sessions and processes."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from mcpgov._audit import REQUEST_KEY
from mcpgov._context import GovContext

__all__ = ["REQUEST_KEY", "request_keys"]


async def request_keys(ctx: GovContext, call_next: Callable[[GovContext], Awaitable[Any]]) -> Any:
    """Kept for chains written against an earlier release: every governed request now gets its key
    from the core (``ctx.request_key``, recorded as ``request_key`` on its events), so this
    middleware changes nothing for them. For a context built by hand without a key, it adds one
    (``ctx.extensions[REQUEST_KEY]``).
    """
    if ctx.request_key is None and REQUEST_KEY not in ctx.extensions:
        ctx = ctx.with_extension(REQUEST_KEY, secrets.token_hex(12))
    return await call_next(ctx)
