"""The request as a handler receives it: the decided arguments, and no token anywhere.

The handler (tool, resource or prompt code) gets a fresh copy of the SDK request context whose
``params`` carry a fresh copy of exactly the arguments that were decided on, without mcpgov's
tokens in ``_meta``; over HTTP its Starlette request has no ``Authorization`` or ``Cookie``
header and no replayable body, and the SDK's accepted ``AccessToken`` (what
``get_access_token()`` returns to tool code) has its token value blanked while the handler runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextvars import Token
from typing import Any

from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.context import ServerRequestContext
from starlette.requests import Request

from mcpgov._context import META_CREDENTIAL, META_IDENTITY
from mcpgov._types import thaw

__all__ = ["SCRUBBED_HEADERS", "handler_request", "hide_tokens", "restore_tokens"]

_TOKEN_KEYS = frozenset({META_IDENTITY, META_CREDENTIAL})

SCRUBBED_HEADERS = frozenset({b"authorization", b"cookie", b"proxy-authorization", b"x-api-key"})
"""HTTP headers removed from the request object handlers receive (lower case, as in ASGI)."""

_REDACTED = "[redacted]"


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _scrubbed(request: Any) -> Any:
    if request is None or not isinstance(request, Request):
        return None
    scope = dict(request.scope)
    scope["headers"] = [(k, v) for k, v in request.scope.get("headers", ()) if k.lower() not in SCRUBBED_HEADERS]
    user = scope.get("user")
    if isinstance(user, AuthenticatedUser):
        scope["user"] = AuthenticatedUser(user.access_token.model_copy(update={"token": _REDACTED}))
    return Request(scope, receive=_no_body)


def handler_request(
    sctx: ServerRequestContext[Any, Any],
    *,
    arguments_key: str | None,
    arguments: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None = None,
    session: Any = None,
) -> ServerRequestContext[Any, Any]:
    """A copy of ``sctx`` for the handler.

    Args:
        sctx: the SDK request context as received.
        arguments_key: the params key holding the arguments (``"arguments"`` for tools and
            prompts), or ``None`` to leave them as they are.
        arguments: the decided (frozen) arguments; the handler gets a fresh mutable copy.
        params: the decided params, when they differ from the request's (a narrowed listen filter).
        session: the session the handler gets, when not the request's own.
    """
    decided: dict[str, Any] = dict((sctx.params if params is None else params) or {})
    meta = sctx.meta
    clean_meta: Any = meta
    if meta and not _TOKEN_KEYS.isdisjoint(meta):
        clean_meta = {k: v for k, v in meta.items() if k not in _TOKEN_KEYS}
        decided["_meta"] = clean_meta
    if arguments_key is not None:
        if arguments is None:
            decided.pop(arguments_key, None)
        else:
            decided[arguments_key] = thaw(arguments)
    if session is not None:
        return _replaced(sctx, params=decided, meta=clean_meta, request=_scrubbed(sctx.request), session=session)
    return _replaced(sctx, params=decided, meta=clean_meta, request=_scrubbed(sctx.request))


def _replaced(sctx: ServerRequestContext[Any, Any], **changes: Any) -> ServerRequestContext[Any, Any]:
    """``dataclasses.replace(sctx, **changes)``: for the SDK's own class (a plain dataclass: no
    ``__post_init__``, no ``init=False`` field), a copy of its instance dictionary, a fraction
    of the cost of re-running ``__init__``; for anything else, ``dataclasses.replace``."""
    if type(sctx) is not ServerRequestContext or _REPLACE_BY_INIT:
        return dataclasses.replace(sctx, **changes)
    new = _new(ServerRequestContext)
    fields = new.__dict__
    fields.update(sctx.__dict__)
    fields.update(changes)
    return new


_new = object.__new__
# The copy is equivalent to replace() only while the class keeps that plain shape (checked once).
_REPLACE_BY_INIT = (
    hasattr(ServerRequestContext, "__post_init__")
    or "__slots__" in vars(ServerRequestContext)
    or any(not f.init for f in dataclasses.fields(ServerRequestContext))
    or ServerRequestContext.__dataclass_params__.frozen  # type: ignore[attr-defined]
)


def hide_tokens() -> Token[AuthenticatedUser | None] | None:
    """Blank the token value of the SDK's current ``AccessToken`` until :func:`restore_tokens`.

    Returns what :func:`restore_tokens` needs (``None`` when no token was accepted: nothing to
    hide or restore). Call :func:`restore_tokens` in a ``finally`` in the same task.
    """
    user = auth_context_var.get()
    if user is None:
        return None
    return auth_context_var.set(AuthenticatedUser(user.access_token.model_copy(update={"token": _REDACTED})))


def restore_tokens(reset: Token[AuthenticatedUser | None]) -> None:
    """Undo :func:`hide_tokens`."""
    auth_context_var.reset(reset)
