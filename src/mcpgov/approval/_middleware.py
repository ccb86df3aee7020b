"""The approval middleware: turns a require-approval decision into a person's answer."""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import anyio

from mcpgov._audit import AuditEvent
from mcpgov._chain import CallNext, ChainResult, StageSpec
from mcpgov._contain import contained
from mcpgov._context import APPROVAL_GRANT, GovContext
from mcpgov._decision import Decision, Effect
from mcpgov._errors import ApprovalRequired, ConfigurationError, Denied
from mcpgov._types import Clock
from mcpgov._validate import positive_seconds
from mcpgov.approval._approvers import Approver, OffLoop, is_async_callable
from mcpgov.approval._elicit import ElicitationApprover
from mcpgov.approval._model import (
    ApprovalAnswer,
    ApprovalGrant,
    ApprovalRequest,
    _well_formed,
    action_key,
    approves_itself,
)

__all__ = ["ApprovalMiddleware"]

logger = logging.getLogger("mcpgov.approval")


class _GrantStillValid:
    """A final check: every grant given for the request (one per approval rule asked about)
    still covers it at the gate (not expired, the same action, caller, tenant and task), with no
    await before the effect."""

    __slots__ = ("grant",)

    def __init__(self, grant: ApprovalGrant) -> None:
        self.grant = grant

    async def __call__(self, ctx: GovContext) -> None:
        grant: ApprovalGrant | None = self.grant
        while grant is not None:
            problem = None
            if not grant.clock() < grant.expires_at:
                problem = ("the approval expired before the request ran", "approval_expired")
            elif action_key(ctx) != grant.request.action:
                problem = ("the approval does not cover this request", "approval_mismatch")
            if problem is not None:
                refusal = Denied(Decision.deny(grant.request.rule, *problem))
                refusal.context = ctx
                raise refusal
            grant = grant.previous
        # Every binding holds: only now is a single-use approval spent (a refused presentation
        # leaves it to its rightful caller).
        grant = self.grant
        while grant is not None:
            if grant.spend is not None:
                await grant.spend(ctx)
            grant = grant.previous
        grant = self.grant
        while grant is not None:
            grant.confirmed.append(ctx)
            grant = grant.previous


class ApprovalMiddleware:
    """Suspends a call that requires approval until an approver answers.

    Put it *outside* (before) the authorisers in the chain. When an authoriser decides
    ``require_approval``, the approver is asked about exactly that action (tool, arguments hash,
    principal, tenant, task). A grant lets that one request through (the authorisers see it and
    allow, naming the approver); a refusal denies; no answer within ``deadline`` denies. Events:
    ``approval.requested``, then ``approval.granted`` or ``approval.refused`` (with the approver).

    Args:
        approver: a :class:`CallbackApprover`, an :class:`ApprovalQueue`, an
            :class:`ElicitationApprover` (server side), or any :class:`Approver`. A
            synchronous approver runs in a worker thread; at the deadline it is abandoned and
            its late answer discarded.
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
        clock: Clock = time.time,
    ) -> None:
        if not callable(approver):
            raise ConfigurationError("ApprovalMiddleware needs an approver")
        self.approver = approver
        self._threads = None if is_async_callable(approver) else OffLoop()
        self.deadline = positive_seconds("deadline", deadline)
        self.grant_ttl = positive_seconds("grant_ttl", grant_ttl)
        self._clock = clock

    def __repr__(self) -> str:
        return f"ApprovalMiddleware(approver={self.approver!r}, deadline={self.deadline})"

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        if ctx.action != "execute":
            return await call_next(ctx)
        elicit = self.approver if isinstance(self.approver, ElicitationApprover) else None
        if elicit is not None and elicit.is_modern(ctx):
            resumed = await elicit.resumed(ctx)
            if resumed is not None:
                request, given, earlier = resumed
                fresh = request.expires_at > self._clock()
                if fresh and not given.approved and action_key(ctx) == request.action:
                    # A "no" from the caller it was asked of is final: the approval is spent, so
                    # a later "yes" on the same request state approves nothing. Only when every
                    # binding is known to hold already: a "no" from a caller whose tenant or task
                    # is settled by later stages (maybe another's) is denied and spends nothing.
                    await elicit.spend(request.id, ctx)
                previous: ApprovalGrant | None = None
                for before, approver, expires_at in earlier:
                    # The approvals given for the same action under other rules, in earlier rounds.
                    previous = ApprovalGrant(
                        before,
                        approver,
                        expires_at,
                        self._clock,
                        previous=previous,
                        spend=self._spender(elicit, before),
                    )
                return await self._decided(
                    ctx,
                    call_next,
                    request,
                    given if fresh else None,
                    previous=previous,
                    spend=self._spender(elicit, request),
                )
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
                return await self._decided(ctx, call_next, request, None, inner)
            return await self._decided(ctx, call_next, request, await self._ask(request, inner), inner)

    @staticmethod
    def _spender(elicit: ElicitationApprover, request: ApprovalRequest) -> Any:
        """What spends the single use of the elicited approval ``request`` at the gate."""

        async def spend(used: GovContext) -> None:
            await elicit.spend(request.id, used)

        return spend

    async def _ask(self, request: ApprovalRequest, ctx: GovContext) -> ApprovalAnswer | None:
        answer: ApprovalAnswer | None = None
        with anyio.move_on_after(self.deadline) as scope:
            try:
                if self._threads is None:
                    answer = await self.approver(request, ctx)
                else:  # a synchronous approver waits for its person in a thread, not on the loop
                    answer = await self._threads(self.approver, request, ctx)
            except BaseException as exc:
                if not await contained(exc):
                    raise
                logger.warning("approver raised %s; treating as no answer", type(exc).__name__)
                answer = None
        if scope.cancel_called or anyio.current_time() >= scope.deadline:
            # An answer returned after the deadline (an approver that swallowed the cancellation)
            # is no answer: the request it answers has expired.
            if answer is not None:
                logger.warning("approver answered after the deadline; treating as no answer")
            return None
        if answer is not None and (
            not isinstance(answer, ApprovalAnswer) or not _well_formed(answer) or answer.request_id != request.id
        ):
            return None
        return answer

    async def _decided(
        self,
        ctx: GovContext,
        call_next: CallNext,
        request: ApprovalRequest,
        answer: ApprovalAnswer | None,
        inner: GovContext | None = None,
        *,
        previous: ApprovalGrant | None = None,
        spend: Any = None,
    ) -> ChainResult:
        where = inner or ctx  # the most the chain knew about the caller when approval was needed
        if answer is None:
            detail = f"no approval within the deadline ({self.deadline:g}s)"
            await self._emit(
                where, request, "approval.refused", approver=None, reason="approval_timeout", detail=detail
            )
            timeout = ApprovalRequired(Decision(Effect.DENY, request.rule, detail, "approval_timeout"))
            timeout.context = where
            raise timeout
        if not answer.approved:
            await self._emit(
                where,
                request,
                "approval.refused",
                approver=answer.approver,
                reason="approval_refused",
                detail=f"refused by {answer.approver}",
            )
            refusal = Denied(Decision.deny(request.rule, f"refused by {answer.approver}", "approval_refused"))
            refusal.context = where
            raise refusal
        if approves_itself(answer.approver, request):
            # Nobody approves their own request, whichever approver carried the answer.
            detail = f"approved by {answer.approver}, the requesting principal itself"
            await self._emit(
                where, request, "approval.refused", approver=answer.approver, reason="approval_self", detail=detail
            )
            refusal = Denied(Decision.deny(request.rule, detail, "approval_self"))
            refusal.context = where
            raise refusal
        grant = ApprovalGrant(
            request, answer.approver, self._clock() + self.grant_ttl, self._clock, previous=previous, spend=spend
        )
        granted = ctx.with_extension(APPROVAL_GRANT, grant)
        # Checked again at the gate, right before the effect: stages after the authorisers may wait.
        granted = granted.replace(final_checks=(*granted.final_checks, _GrantStillValid(grant)))
        try:
            return await call_next(granted)
        except ApprovalRequired as again:
            used = again.context or where
            needed = again.decision
            if (
                needed.effect is Effect.REQUIRE_APPROVAL
                and needed.reason_code == "approval_required"
                and not grant.asked_about(needed.rule)
                and action_key(used) == request.action
            ):
                # Another authoriser requires approval of the same action under a rule of its own:
                # each rule's approval is asked for (a grant covers only the rule it was asked about).
                following = ApprovalRequest.for_context(used, needed, ttl=self.deadline, now=self._clock())
                await self._emit(used, following, "approval.requested", approver=None, reason="approval_required")
                elicit = self.approver if isinstance(self.approver, ElicitationApprover) else None
                if elicit is not None and elicit.is_modern(used):
                    # 2026-07-28: a prompt of its own, in another round; the approvals given so far
                    # are kept with it and stand only together with its answer.
                    asked = await elicit.input_required(following, used, granted=grant)
                    if asked is not None:
                        return asked
                    answer_next = None
                else:
                    answer_next = await self._ask(following, used)
                return await self._decided(ctx, call_next, following, answer_next, used, previous=grant)
            # The grant did not cover what the authorisers saw (other arguments, caller or task).
            await self._emit(
                used,
                request,
                "approval.refused",
                approver=answer.approver,
                reason="approval_mismatch",
                detail="the approval does not cover this request",
                from_caller=True,
            )
            mismatch = Decision.deny(
                again.decision.rule, "the approval does not cover this request", "approval_mismatch"
            )
            refusal = Denied(mismatch)
            refusal.context = again.context or where
            raise refusal from None
        finally:
            # Recorded only once the gate confirmed the grant for the caller that used it, right
            # before the effect (and, for a single-use approval, spent it).
            # Each grant of the chain is recorded by the round that made it; the approvals of
            # earlier 2026-07-28 rounds (single use, spent at the gate) by this one.
            recorded: ApprovalGrant | None = grant
            while recorded is not None and (recorded is grant or recorded.spend is not None):
                for used_ctx in recorded.confirmed[:1]:
                    await self._emit(
                        used_ctx,
                        recorded.request,
                        "approval.granted",
                        approver=recorded.approver,
                        reason="approved",
                        from_caller=True,
                    )
                recorded = recorded.previous

    async def _emit(
        self,
        ctx: GovContext,
        request: ApprovalRequest,
        event_type: Any,
        *,
        approver: str | None,
        reason: str,
        detail: str | None = None,
        from_caller: bool = False,
    ) -> None:
        """Record an approval event. ``from_caller``: name the caller of ``ctx`` (who used or tried
        to use the approval) rather than the one the request was made for."""
        audit = ctx.audit
        if audit is None:
            return
        principal = ctx.principal.id if from_caller and ctx.principal is not None else request.principal
        values: dict[str, Any] = {
            "principal": principal,
            "tenant": ctx.tenant if from_caller else request.tenant,
            "task_id": ctx.task_id if from_caller else request.task_id,
            "args_hash": ctx.args_hash if from_caller else request.args_hash,
            "rule": request.rule,
            "approver": approver,
            "reason": reason,
            "attributes": {"approval_id": request.id},
        }
        if event_type == "approval.refused":
            values["effect"] = "deny"
            values["detail"] = detail
        await audit.emit(AuditEvent.from_context(ctx, event_type, **values), required=event_type != "approval.granted")
