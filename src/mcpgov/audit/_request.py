"""Request keys: one value per request, unique across sessions and processes."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from mcpgov._audit import REQUEST_KEY
from mcpgov._context import GovContext

__all__ = ["REQUEST_KEY", "request_keys"]


async def request_keys(ctx: GovContext, call_next: Callable[[GovContext], Awaitable[Any]]) -> Any:
    """Middleware giving each request a random key (``ctx.extensions[REQUEST_KEY]``) that its audit
    events record as ``request_key``, so task trails and proofs never merge two requests that share
    a JSON-RPC id (other sessions, other processes, the 2026-07-28 mode without session ids).

    Put it first: ``govern(server, request_keys, ...)``. A key already present is kept.
    """
    if REQUEST_KEY not in ctx.extensions:
        ctx = ctx.with_extension(REQUEST_KEY, secrets.token_hex(12))
    return await call_next(ctx)
