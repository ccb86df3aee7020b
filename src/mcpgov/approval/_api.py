"""The operator HTTP API of an :class:`~mcpgov.approval.ApprovalQueue` (Starlette)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcpgov._errors import ConfigurationError
from mcpgov._types import thaw
from mcpgov.approval._approvers import ApprovalMismatch, OffLoop, Operator, is_async_callable

if TYPE_CHECKING:
    from mcpgov.approval._approvers import ApprovalQueue

__all__ = ["operator_app"]

_MAX_BODY = 16 * 1024


def operator_app(
    queue: ApprovalQueue,
    authenticate: Callable[[Any], str | Operator | Awaitable[str | Operator | None] | None],
    *,
    show_arguments: bool = True,
) -> Starlette:
    """Build the operator API for ``queue``; see :meth:`ApprovalQueue.asgi_app`."""
    if not callable(authenticate):
        raise ConfigurationError("the operator API needs an authenticate callable")

    # A synchronous authenticator (a directory lookup, a token introspection) runs in a worker
    # thread: the operator API shares the event loop with the sessions waiting for answers.
    threads = None if is_async_callable(authenticate) else OffLoop()

    async def operator(request: Request) -> Operator | None:
        try:
            if threads is not None:
                who: Any = await threads(authenticate, request)
            else:
                who = authenticate(request)
                if inspect.isawaitable(who):
                    who = await who
        except Exception:  # noqa: BLE001 - an authenticator that breaks authenticates nobody
            return None
        if isinstance(who, Operator):
            return who
        return Operator(who) if isinstance(who, str) and who else None

    async def list_pending(request: Request) -> JSONResponse:
        who = await operator(request)
        if who is None:
            return JSONResponse({"error": "unauthenticated"}, status_code=401)
        return JSONResponse(
            [
                {
                    "id": r.id,
                    "description": r.describe(),
                    "method": r.method,
                    "target": r.target,
                    "args_hash": r.args_hash,
                    "principal": r.principal,
                    "tenant": r.tenant,
                    "task_id": r.task_id,
                    "task_owner": r.task_owner,
                    "acting_for": list(r.acting_for),
                    "purpose": r.purpose,
                    "rule": r.rule,
                    "expires_at": r.expires_at,
                    **({"arguments": thaw(r.arguments)} if show_arguments else {}),
                }
                for r in queue.pending(who)
            ]
        )

    async def answer(request: Request) -> JSONResponse:
        who = await operator(request)
        if who is None:
            return JSONResponse({"error": "unauthenticated"}, status_code=401)
        body = await request.body()
        if len(body) > _MAX_BODY:
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            data = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(data, dict) or not isinstance(data.get("approve"), bool):
            return JSONResponse({"error": "body needs a boolean 'approve'"}, status_code=400)
        args_hash = data.get("args_hash")
        reason = data.get("reason", "")
        if (args_hash is not None and not isinstance(args_hash, str)) or not isinstance(reason, str):
            return JSONResponse({"error": "'args_hash' and 'reason' must be strings"}, status_code=400)
        try:
            queue.answer(
                request.path_params["request_id"],
                approved=data["approve"],
                approver=who,
                reason=reason,
                args_hash=args_hash,
            )
        except ApprovalMismatch as exc:
            return JSONResponse({"error": exc.reason}, status_code=409)
        return JSONResponse({"answered": request.path_params["request_id"], "approver": who.name})

    return Starlette(
        routes=[
            Route("/approvals", list_pending, methods=["GET"]),
            Route("/approvals/{request_id}", answer, methods=["POST"]),
        ]
    )
