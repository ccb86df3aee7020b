"""The shadow role of :class:`~mcpgov.policy.PolicyMiddleware`: a candidate policy evaluated beside
the enforced one, whose differences are recorded and never enforced."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mcpgov._audit import AuditEvent
from mcpgov._context import GovContext
from mcpgov._decision import Decision
from mcpgov.policy._history import TaskHistory

if TYPE_CHECKING:
    from mcpgov.policy._middleware import Engine

__all__ = ["compare_shadow"]

logger = logging.getLogger("mcpgov.policy")


async def compare_shadow(
    ctx: GovContext,
    enforced: Decision,
    shadow: Engine,
    now: float,
    history_of: Callable[[GovContext, Engine], Awaitable[TaskHistory | None]],
) -> None:
    """Evaluate the shadow policy; emit ``policy.shadow_mismatch`` where it differs. Never raises."""
    try:
        history = await history_of(ctx, shadow)
        candidate = shadow.decide(ctx, history=history, now=now)
    except Exception as exc:  # noqa: BLE001 - a broken candidate must never affect enforcement
        candidate = Decision.deny("mcpgov:policy:shadow-error", f"shadow raised {type(exc).__name__}")
    if candidate.effect is enforced.effect and candidate.rule == enforced.rule:
        return
    if ctx.audit is None:
        return
    try:
        await ctx.audit.emit(
            AuditEvent.from_context(
                ctx,
                "policy.shadow_mismatch",
                effect=enforced.effect.value,
                rule=enforced.rule,
                engine=enforced.engine,
                policy_version=enforced.policy_version,
                reason="shadow_mismatch",
                attributes={
                    "action": ctx.action or "execute",
                    "shadow_effect": candidate.effect.value,
                    "shadow_rule": candidate.rule,
                    "shadow_engine": getattr(shadow, "engine_name", None),
                    "shadow_version": getattr(shadow, "version", None),
                },
            )
        )
    except Exception:  # noqa: BLE001 - auditing the shadow must never affect enforcement
        logger.error("could not emit a shadow mismatch event")
