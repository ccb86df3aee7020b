"""Decisions: what an authoriser (hook, policy engine) answers about one request."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mcpgov._validate import is_positive_number

__all__ = ["Decision", "Effect", "merge_obligations"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})

MAX_CREDENTIAL_TTL = "max_credential_ttl"
BIND_ARGUMENTS = "bind_arguments"
REDACT = "redact"
RATE_LIMIT = "rate_limit"


def _ttl(value: Any) -> float:
    """A credential lifetime cap as a number; anything that is not a positive finite number is 0 (no credential)."""
    if not is_positive_number(value):
        return 0.0
    return float(value)


def _names(value: Any) -> tuple[str, ...]:
    """Redaction fields: one name or an iterable of names (anything else names nothing)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _limits(value: Any) -> tuple[Any, ...]:
    """Rate limits: one limit or a tuple/list of them."""
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value,)


def merge_obligations(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two obligation sets so that the result is at least as strict as each of them.

    This is the one merge used wherever obligations meet: the policy engine combining the
    rules that apply, and :meth:`Decision.combine` combining stages (hooks, policy, Cedar).

    * ``max_credential_ttl``: the minimum (a value that is not a positive finite number
      counts as ``0``: no credential can satisfy it);
    * ``bind_arguments``: true if either asks;
    * ``redact``: the union of the field names (a single string is one field), sorted;
    * ``rate_limit``: every limit of both (each is counted);
    * any other key: kept when only one side has it or both agree; when both carry
      different values, both are kept as a tuple ``(first, second)`` under the key, so
      nothing either stage asked for is lost (an enforcing component sees both).
    """
    out = dict(first)
    for key, value in second.items():
        if key not in out:
            out[key] = value
            continue
        mine = out[key]
        if key == MAX_CREDENTIAL_TTL:
            out[key] = min(_ttl(mine), _ttl(value))
        elif key == BIND_ARGUMENTS:
            out[key] = bool(mine) or bool(value)
        elif key == REDACT:
            out[key] = tuple(sorted(set(_names(mine)) | set(_names(value))))
        elif key == RATE_LIMIT:
            out[key] = tuple(dict.fromkeys((*_limits(mine), *_limits(value))))
        elif mine != value:
            out[key] = (mine, value)
    if MAX_CREDENTIAL_TTL in out:
        out[MAX_CREDENTIAL_TTL] = _ttl(out[MAX_CREDENTIAL_TTL])
    return out


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

        The stricter effect decides and names the rule (for equal effects, ``self``: the
        stage combining its answer with what earlier stages decided). A deny carries no
        obligations. Otherwise the result carries the obligations of *both* decisions,
        merged strictest-wins by :func:`merge_obligations`: an approval that overrides an
        allow keeps the allow's obligations too, since the approved request runs under both.
        """
        if other is None:
            return self
        rank = {Effect.ALLOW: 0, Effect.REQUIRE_APPROVAL: 1, Effect.DENY: 2}
        winner, loser = (other, self) if rank[other.effect] > rank[self.effect] else (self, other)
        if winner.effect is Effect.DENY or not loser.obligations:
            return winner
        merged = merge_obligations(winner.obligations, loser.obligations)
        return Decision(
            winner.effect,
            winner.rule,
            winner.reason,
            winner.reason_code,
            MappingProxyType(merged),
            winner.engine,
            winner.policy_version,
        )
