"""The approval middleware: turns a require-approval decision into a person's answer."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

import anyio

from mcpgov._audit import AuditEvent
from mcpgov._authorize import APPROVAL_GRANT
from mcpgov._chain import CallNext, StageSpec
from mcpgov._context import GovContext
from mcpgov._decision import Decision, Effect
from mcpgov._errors import ApprovalRequired, ConfigurationError, Denied
from mcpgov.approval._approvers import Approver
from mcpgov.approval._elicit import ElicitationApprover
from mcpgov.approval._model import ApprovalAnswer, ApprovalGrant, ApprovalRequest

__all__ = ["ApprovalMiddleware"]

logger = logging.getLogger("mcpgov.approval")


def _positive(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class ApprovalMiddleware:
    """Suspends a call that requires approval until an approver answers.

    Put it *outside* (before) the authorisers in the chain. When an authoriser decides
    ``require_approval``, the approver is asked about exactly that action (tool, arguments hash,
    principal, tenant, task). A grant lets that one request through (the authorisers see it and
    allow, naming the approver); a refusal denies; no answer within ``deadline`` denies. Events:
    ``approval.requested``, then ``approval.granted`` or ``approval.refused`` (with the approver).

    Args:
        approver: a :class:`CallbackApprover`, an :class:`ApprovalQueue`, an
            :class:`ElicitationApprover` (server side), or any :class:`Approver`.
        deadline: seconds to wait for an answer.
        grant_ttl: seconds a grant stays valid once given.
        clock: seconds since the epoch (injectable).
    """

    stage: ClassVar[StageSpec] = StageSpec(
        provides=frozenset({"approval"}), after=frozenset({"principal", "credential"})
    )

    def __init__(
        self,
        approver: Approver,
        *,
        deadline: float = 300.0,
        grant_ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not callable(approver):
            raise ConfigurationError("ApprovalMiddleware needs an approver")
        self.approver = approver
        self.deadline = _positive("deadline", deadline)
        self.grant_ttl = _positive("grant_ttl", grant_ttl)
        self._clock = clock

    def __repr__(self) -> str:
        return f"ApprovalMiddleware(approver={self.approver!r}, deadline={self.deadline})"

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        if ctx.action != "execute":
            return await call_next(ctx)
        elicit = self.approver if isinstance(self.approver, ElicitationApprover) else None
        if elicit is not None and elicit.is_modern(ctx):
            resumed = await elicit.resume(ctx)
            if resumed is not None:
                request, given = resumed
                fresh = request.expires_at > self._clock()
                return await self._decided(ctx, call_next, request, given if fresh else None)
        try:
            return await call_next(ctx)
        except ApprovalRequired as exc:
            if exc.decision.effect is not Effect.REQUIRE_APPROVAL or exc.decision.reason_code != "approval_required":
                raise
            inner = exc.context or ctx
            request = ApprovalRequest.for_context(inner, exc.decision, ttl=self.deadline, now=self._clock())
            await self._emit(ctx, request, "approval.requested", approver=None, reason="approval_required")
            if elicit is not None and elicit.is_modern(inner):
                asked = await elicit.input_required(request, inner)
                if asked is not None:
                    return asked
                return await self._decided(ctx, call_next, request, None)
            return await self._decided(ctx, call_next, request, await self._ask(request, inner))

    async def _ask(self, request: ApprovalRequest, ctx: GovContext) -> ApprovalAnswer | None:
        answer: ApprovalAnswer | None = None
        with anyio.move_on_after(self.deadline):
            try:
                answer = await self.approver(request, ctx)
            except Exception as exc:  # noqa: BLE001 - an approver that breaks gives no answer (deny)
                logger.warning("approver raised %s; treating as no answer", type(exc).__name__)
                answer = None
        if answer is not None and (not isinstance(answer, ApprovalAnswer) or answer.request_id != request.id):
            return None
        return answer

    async def _decided(
        self, ctx: GovContext, call_next: CallNext, request: ApprovalRequest, answer: ApprovalAnswer | None
    ) -> Any:
        if answer is None:
            await self._emit(ctx, request, "approval.refused", approver=None, reason="approval_timeout")
            no_answer = Decision(
                Effect.REQUIRE_APPROVAL, request.rule, "no approval within the deadline", "approval_timeout"
            )
            raise ApprovalRequired(no_answer)
        if not answer.approved:
            await self._emit(ctx, request, "approval.refused", approver=answer.approver, reason="approval_refused")
            raise Denied(Decision.deny(request.rule, f"refused by {answer.approver}", "approval_refused"))
        grant = ApprovalGrant(request, answer.approver, self._clock() + self.grant_ttl, self._clock)
        await self._emit(ctx, request, "approval.granted", approver=answer.approver, reason="approved")
        try:
            return await call_next(ctx.with_extension(APPROVAL_GRANT, grant))
        except ApprovalRequired as again:
            # The grant did not cover what the authorisers saw (other arguments, caller or task).
            mismatch = Decision.deny(
                again.decision.rule, "the approval does not cover this request", "approval_mismatch"
            )
            refusal = Denied(mismatch)
            refusal.context = again.context
            raise refusal from None

    async def _emit(
        self, ctx: GovContext, request: ApprovalRequest, event_type: Any, *, approver: str | None, reason: str
    ) -> None:
        if ctx.audit is None:
            return
        await ctx.audit.emit(
            AuditEvent.from_context(
                ctx,
                event_type,
                principal=request.principal,
                tenant=request.tenant,
                task_id=request.task_id,
                args_hash=request.args_hash,
                rule=request.rule,
                approver=approver,
                reason=reason,
                attributes={"approval_id": request.id},
            )
        )
