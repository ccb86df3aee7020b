"""Decisions: what an authoriser (hook, policy engine) answers about one request."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Decision", "Effect"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Effect(str, enum.Enum):
    """The three possible outcomes of an authorisation decision."""

    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"


@dataclass(frozen=True, slots=True)
class Decision:
    """An authorisation decision.

    Attributes:
        effect: allow, deny or require approval.
        rule: the id of the rule or hook that decided (what audit records and coverage counts).
        reason: a human-readable explanation, kept in audit and never sent to the peer.
        reason_code: a short machine-readable reason (``"default_deny"``, ``"hook_timeout"``...).
        obligations: what must hold when an allow is acted on (maximum credential TTL,
            fields to redact...), keyed by obligation name.
        engine: which engine decided (``hooks``, ``policy``, ``cedar``...), for audit.
        policy_version: the version (digest) of the policy that decided, for audit.
    """

    effect: Effect
    rule: str
    reason: str = ""
    reason_code: str = ""
    obligations: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    engine: str | None = None
    policy_version: str | None = None

    @property
    def allowed(self) -> bool:
        """True only for an allow decision."""
        return self.effect is Effect.ALLOW

    @classmethod
    def allow(cls, rule: str, reason: str = "", **obligations: Any) -> Decision:
        """An allow decision made by ``rule``, with optional obligations."""
        return cls(Effect.ALLOW, rule, reason, "allowed", MappingProxyType(obligations) if obligations else _EMPTY)

    @classmethod
    def deny(cls, rule: str, reason: str = "", reason_code: str = "denied") -> Decision:
        """A deny decision made by ``rule``."""
        return cls(Effect.DENY, rule, reason, reason_code)

    @classmethod
    def require_approval(cls, rule: str, reason: str = "", **obligations: Any) -> Decision:
        """A decision that the request may go ahead only once a person approves it."""
        return cls(
            Effect.REQUIRE_APPROVAL,
            rule,
            reason,
            "approval_required",
            MappingProxyType(obligations) if obligations else _EMPTY,
        )

    def combine(self, other: Decision | None) -> Decision:
        """Combine two decisions about the same request: deny overrides approval overrides allow.

        Two allows merge their obligations (the later one wins on a shared key) and keep
        the first rule id as the deciding rule.
        """
        if other is None:
            return self
        rank = {Effect.ALLOW: 0, Effect.REQUIRE_APPROVAL: 1, Effect.DENY: 2}
        if rank[other.effect] > rank[self.effect]:
            return other
        if rank[other.effect] < rank[self.effect] or not other.obligations:
            return self
        merged = {**self.obligations, **other.obligations}
        return Decision(
            self.effect,
            self.rule,
            self.reason,
            self.reason_code,
            MappingProxyType(merged),
            self.engine,
            self.policy_version,
        )
