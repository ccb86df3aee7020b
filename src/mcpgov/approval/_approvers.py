"""Approvers: who answers an approval request (a callback, an operator queue, the client's user)."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, Union, runtime_checkable

import anyio
import anyio.to_thread

from mcpgov._context import GovContext
from mcpgov._errors import ConfigurationError, McpGovError
from mcpgov._types import Clock
from mcpgov.approval._model import ApprovalAnswer, ApprovalRequest, approves_itself

__all__ = ["ApprovalMismatch", "ApprovalQueue", "Approver", "CallbackApprover", "Operator"]

logger = logging.getLogger("mcpgov.approval")


class ApprovalMismatch(
    McpGovError, code="mcpgov.approval_mismatch", rpc_code=-32602, public_message="Invalid approval answer"
):
    """An answer does not fit any pending request (unknown, expired, or for another action)."""


@dataclass(frozen=True, slots=True, init=False)
class Operator:
    """Who answers approval requests, and for which tenants.

    An operator limited to some tenants sees and answers only the requests made on behalf of one
    of them (compared exactly as written); a request made without a tenant is theirs only when
    they are not limited. Returned by the ``authenticate`` callable of
    :meth:`ApprovalQueue.asgi_app` (a plain string there is an operator of every tenant), or
    passed to :meth:`ApprovalQueue.pending` and :meth:`ApprovalQueue.answer`.

    Args:
        name: the operator's identity, recorded as the approver.
        tenants: the tenants whose requests they answer; ``None`` (the default) for every tenant.
            An empty collection answers nothing.

    Raises:
        ConfigurationError: an empty name, or tenants that are not a collection of non-empty
            strings (a single string is refused, not read as its characters).
    """

    name: str
    tenants: frozenset[str] | None

    def __init__(self, name: str, tenants: Iterable[str] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("an operator needs a non-empty name")
        if tenants is not None:
            if isinstance(tenants, (str, bytes)) or not isinstance(tenants, Iterable):
                raise ConfigurationError("an operator's tenants must be a collection of tenant names, not one string")
            tenants = frozenset(tenants)
            if not all(isinstance(t, str) and t for t in tenants):
                raise ConfigurationError("an operator's tenants must be non-empty strings")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "tenants", tenants)

    def answers_for(self, request: ApprovalRequest) -> bool:
        """Whether this operator may see and answer ``request`` (its tenant is one of theirs)."""
        if self.tenants is None:
            return True
        return isinstance(request.tenant, str) and request.tenant in self.tenants


@runtime_checkable
class Approver(Protocol):
    """Answers approval requests. ``None`` means no answer (which denies)."""

    async def __call__(self, request: ApprovalRequest, ctx: GovContext) -> ApprovalAnswer | None: ...


_APPROVER_THREADS = 64
"""The most worker threads the synchronous approver calls of one approver hold at once (each may
wait for a person); beyond it, a call waits for a thread within the approval deadline."""


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` gives a coroutine without running anything (an ``async def``
    function, or an object whose ``__call__`` is one, under any ``functools.partial``)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


class OffLoop:
    """Runs synchronous approver calls in worker threads of their own, so one that waits for a
    person never stops the event loop: the cancellation of the caller (the approval deadline)
    abandons the thread, and whatever it returns later is discarded."""

    __slots__ = ("_limiter",)

    def __init__(self) -> None:
        self._limiter: anyio.CapacityLimiter | None = None

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(_APPROVER_THREADS)
        result = await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True, limiter=self._limiter)
        if inspect.isawaitable(result):  # a sync callable that handed back an awaitable
            result = await result
        return result


CallbackResult = Union[bool, ApprovalAnswer, None]  # noqa: UP007 - a runtime alias; `|` with None fails on 3.10


class CallbackApprover:
    """An approver backed by a plain sync or async callable.

    The callable receives the :class:`ApprovalRequest` and returns ``True``/``False`` (answered
    by ``name``) or an :class:`ApprovalAnswer` naming its own approver. Anything else, or an
    exception, is no answer. A synchronous callable runs in a worker thread (it may wait for a
    person without stopping other sessions); at the approval deadline it is abandoned and its
    late answer discarded.

    Args:
        fn: the callable.
        name: the approver identity recorded for boolean answers.
    """

    def __init__(
        self, fn: Callable[[ApprovalRequest], CallbackResult | Awaitable[CallbackResult]], *, name: str
    ) -> None:
        if not callable(fn):
            raise ConfigurationError("CallbackApprover needs a callable")
        if not isinstance(name, str) or not name:
            raise ConfigurationError("CallbackApprover needs the approver's name")
        self._fn = fn
        self._async = is_async_callable(fn)
        self._threads = OffLoop()
        self.name = name

    def __repr__(self) -> str:
        return f"CallbackApprover(name={self.name!r})"

    async def __call__(self, request: ApprovalRequest, ctx: GovContext) -> ApprovalAnswer | None:
        try:
            if self._async:
                result: Any = await self._fn(request)  # type: ignore[misc]
            else:
                result = await self._threads(self._fn, request)
        except Exception as exc:  # noqa: BLE001 - an approver that breaks gives no answer (deny)
            logger.warning("approver %s raised %s; treating as no answer", self.name, type(exc).__name__)
            return None
        if isinstance(result, bool):
            return ApprovalAnswer(request.id, result, self.name)
        if isinstance(result, ApprovalAnswer) and result.request_id == request.id:
            return result
        return None


@dataclass
class _Pending:
    request: ApprovalRequest
    event: anyio.Event
    answer: ApprovalAnswer | None = None


class ApprovalQueue:
    """An out-of-band approval queue: calls wait while an operator answers.

    Pending requests are listed with :meth:`pending` and answered with :meth:`answer` (in
    process), or over HTTP through :meth:`asgi_app`. An answer names the request id and,
    optionally, the arguments hash it approves: an answer for another action, an unknown or
    an expired request is refused with :class:`ApprovalMismatch`.

    Args:
        clock: seconds since the epoch (injectable).
    """

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._pending: dict[str, _Pending] = {}
        self._clock = clock
        self._arrival: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"ApprovalQueue(pending={len(self._pending)})"

    async def __call__(self, request: ApprovalRequest, ctx: GovContext) -> ApprovalAnswer | None:
        pending = _Pending(request, anyio.Event())
        self._pending[request.id] = pending
        if self._arrival is not None:
            self._arrival.set()
        try:
            await pending.event.wait()
            return pending.answer
        finally:
            self._pending.pop(request.id, None)

    def pending(self, operator: Operator | None = None) -> list[ApprovalRequest]:
        """The requests waiting for an answer, oldest first (expired ones are dropped).

        Args:
            operator: when given, only the requests this operator answers (their tenants').
        """
        now = self._clock()
        return sorted(
            (
                p.request
                for p in self._pending.values()
                if p.request.expires_at > now
                and not p.event.is_set()
                and (operator is None or operator.answers_for(p.request))
            ),
            key=lambda r: r.requested_at,
        )

    async def next_request(self) -> ApprovalRequest:
        """Wait until a request is pending and return the oldest (for operator tools and tests)."""
        while True:
            pending = self.pending()
            if pending:
                return pending[0]
            if self._arrival is None or self._arrival.is_set():
                self._arrival = anyio.Event()
            await self._arrival.wait()

    def answer(
        self,
        request_id: str,
        *,
        approved: bool,
        approver: str | Operator,
        reason: str = "",
        args_hash: str | None = None,
    ) -> ApprovalRequest:
        """Answer a pending request.

        Args:
            request_id: the request to answer.
            approved: approve (True) or refuse (False).
            approver: who answers (recorded in audit): a name, or an :class:`Operator`, who
                answers only requests of their tenants (another tenant's request is refused
                exactly as an unknown one, so its existence is not revealed).
            reason: optional explanation.
            args_hash: when given, must equal the request's arguments hash (the operator
                approves what they saw).

        Returns:
            The request that was answered.

        Raises:
            ApprovalMismatch: unknown or expired request, an answer for another action, or an
                approval by the requesting principal itself.
            ConfigurationError: no approver identity, or ``approved`` not a bool.
        """
        operator = approver if isinstance(approver, Operator) else None
        if operator is not None:
            approver = operator.name
        if not isinstance(approver, str) or not approver:
            raise ConfigurationError("an approval answer needs the approver's identity")
        if type(approved) is not bool:
            raise ConfigurationError(
                f"an approval answer's approved must be True or False, not {type(approved).__name__}"
            )
        if not isinstance(reason, str):
            raise ConfigurationError("an approval answer's reason must be a string")
        pending = self._pending.get(request_id)
        if (
            pending is None
            or pending.event.is_set()
            or (operator is not None and not operator.answers_for(pending.request))
        ):
            raise ApprovalMismatch("no pending approval request with that id", reason="unknown_request")
        if pending.request.expires_at <= self._clock():
            raise ApprovalMismatch("the approval request has expired", reason="expired_request")
        if args_hash is not None and args_hash != pending.request.args_hash:
            raise ApprovalMismatch("the answer is for other arguments than the request", reason="other_action")
        if approved and approves_itself(approver, pending.request):
            raise ApprovalMismatch("nobody approves their own request", reason="self_approval")
        pending.answer = ApprovalAnswer(request_id, approved, approver, reason)
        pending.event.set()
        return pending.request

    def asgi_app(self, authenticate: Callable[[Any], str | Operator | Awaitable[str | Operator | None] | None]) -> Any:
        """A Starlette app for operators: ``GET /approvals`` and ``POST /approvals/{id}``.

        Args:
            authenticate: maps the Starlette request to the operator, or ``None`` (answered
                401): an :class:`Operator` (who sees and answers only their tenants' requests)
                or a name (an operator of every tenant). The approver recorded is always this
                identity, never a value from the request body.
        """
        from mcpgov.approval._api import operator_app  # noqa: PLC0415 - _api imports this module

        return operator_app(self, authenticate)
