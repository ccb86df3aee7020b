"""The built-in policy engine: rules indexed by target, deny-overrides evaluation, and explain.

Semantics:

* rules are looked up by the request's target: exact names in a dictionary, glob patterns
  in a per-kind list (the match for each target is cached), so the cost of a decision does
  not grow with the number of rules about other targets;
* of the rules that apply, a deny wins, then a require-approval, then an allow; the first
  applying rule of the winning effect (in file order) names the decision. Several applying
  allows merge their obligations, strictest first (shortest TTL, union of redactions, every
  rate limit);
* nothing applying means deny (``mcpgov:policy:default-deny``); an empty policy denies
  everything;
* a condition that cannot be evaluated on the request (an argument of an unexpected type or
  shape, a history condition on a request with no task) denies, naming the rule;
* for a listing (``action == "discover"``) arguments and task history are unknown: an allow
  whose only unknowns are those still lists the target (it may be usable), a deny that
  depends on them does not hide it. Execute rules govern listings too, so what is listed and
  what may be used come from the same rules.
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import rfc8785

from mcpgov._context import GovContext
from mcpgov._decision import Decision, Effect
from mcpgov._principal import Principal
from mcpgov.policy._conditions import Check, ConditionError, Facts, compile_conditions, compile_principal
from mcpgov.policy._history import HistoryNeeds, TaskHistory
from mcpgov.policy._load import Policy, PolicyError
from mcpgov.policy._model import Obligations, PolicyDocument, Rule, TargetSet
from mcpgov.policy._ratelimit import RateLimitSpec

__all__ = [
    "DEFAULT_DENY_RULE",
    "OBLIGATION_BIND_ARGUMENTS",
    "OBLIGATION_MAX_CREDENTIAL_TTL",
    "OBLIGATION_RATE_LIMIT",
    "OBLIGATION_REDACT",
    "Explanation",
    "PolicyEngine",
    "RuleTrace",
]

DEFAULT_DENY_RULE = "mcpgov:policy:default-deny"
OBLIGATION_MAX_CREDENTIAL_TTL = "max_credential_ttl"
"""Obligation: the longest lifetime (seconds, float) of a credential minted for the request."""
OBLIGATION_BIND_ARGUMENTS = "bind_arguments"
"""Obligation: ``True`` when the credential must be bound to the request's argument hash."""
OBLIGATION_REDACT = "redact"
"""Obligation: a sorted tuple of argument field names to redact in audit."""
OBLIGATION_RATE_LIMIT = "rate_limit"
"""Obligation: a tuple of :class:`RateLimitSpec` the request is counted against."""

_GLOB_CHARS = frozenset("*?[")
_CACHE_LIMIT = 8192


def _is_glob(pattern: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in pattern)


def _suspicious_uri(uri: str) -> bool:
    """A resource URI with dot segments or encoded separators: glob patterns never match it."""
    rest = uri.split("://", 1)[-1]
    if "\\" in rest or "\x00" in rest:
        return True
    lowered = rest.lower()
    if "%2e" in lowered or "%2f" in lowered or "%5c" in lowered:
        return True
    return any(seg in (".", "..") for seg in rest.split("/"))


def _obligations_dict(rule_id: str, ob: Obligations | None) -> dict[str, Any]:
    if ob is None:
        return {}
    out: dict[str, Any] = {}
    if ob.max_credential_ttl is not None:
        out[OBLIGATION_MAX_CREDENTIAL_TTL] = float(ob.max_credential_ttl)
    if ob.bind_arguments:
        out[OBLIGATION_BIND_ARGUMENTS] = True
    if ob.redact:
        out[OBLIGATION_REDACT] = tuple(sorted(set(ob.redact)))
    if ob.rate_limit is not None:
        rl = ob.rate_limit
        out[OBLIGATION_RATE_LIMIT] = (RateLimitSpec(rule_id, rl.limit, float(rl.per), tuple(rl.by)),)
    return out


def merge_obligations(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two obligation sets, keeping the strictest of each."""
    out = dict(first)
    for key, value in second.items():
        if key not in out:
            out[key] = value
        elif key == OBLIGATION_MAX_CREDENTIAL_TTL:
            out[key] = min(out[key], value)
        elif key == OBLIGATION_BIND_ARGUMENTS:
            out[key] = bool(out[key] or value)
        elif key == OBLIGATION_REDACT:
            out[key] = tuple(sorted(set(out[key]) | set(value)))
        elif key == OBLIGATION_RATE_LIMIT:
            out[key] = tuple(dict.fromkeys((*out[key], *value)))
        else:
            out[key] = value
    return out


class CompiledRule:
    """A rule ready for evaluation (see :class:`~mcpgov.policy.Rule` for the fields)."""

    __slots__ = (
        "anonymous",
        "decision",
        "description",
        "effect",
        "executes",
        "id",
        "index",
        "is_deny",
        "needs",
        "obligations",
        "principal_test",
        "tenants",
        "unless",
        "when",
    )

    def __init__(self, rule: Rule, index: int, engine: str, version: str) -> None:
        self.id = rule.id
        self.index = index
        self.description = rule.description
        self.effect = Effect(rule.effect)
        self.is_deny = self.effect is Effect.DENY
        self.executes = "execute" in rule.actions
        self.anonymous = rule.anonymous
        self.principal_test: Callable[[Principal], bool] | None = (
            compile_principal(rule.principals) if rule.principals else None
        )
        self.tenants = frozenset(rule.tenants) if rule.tenants is not None else None
        self.when: tuple[Check, ...] = compile_conditions(rule.when, "when") if rule.when else ()
        self.unless: tuple[Check, ...] = compile_conditions(rule.unless, "unless") if rule.unless else ()
        needs = HistoryNeeds()
        for check in (*self.when, *self.unless):
            needs = needs | check.needs
        self.needs = needs
        self.obligations = _obligations_dict(rule.id, rule.obligations)
        reason = rule.description or f"rule {rule.id}"
        obligations = MappingProxyType(self.obligations)
        if self.effect is Effect.ALLOW:
            self.decision = Decision(Effect.ALLOW, rule.id, reason, "allowed", obligations, engine, version)
        elif self.effect is Effect.REQUIRE_APPROVAL:
            self.decision = Decision(
                Effect.REQUIRE_APPROVAL, rule.id, reason, "approval_required", obligations, engine, version
            )
        else:
            self.decision = Decision(Effect.DENY, rule.id, reason, "policy_deny", MappingProxyType({}), engine, version)

    def miss(self, ctx: GovContext, facts: Facts) -> str | None:
        """``None`` when this rule applies to the request, else the label of what did not hold.

        Raises:
            ConditionError: a condition could not be evaluated.
        """
        discover = facts.discover
        if not discover and not self.executes:
            return "actions"
        principal = ctx.principal
        if principal is None:
            if not self.anonymous:
                return "principals"
        elif self.principal_test is not None and not self.principal_test(principal):
            return "principals"
        if self.tenants is not None and ctx.tenant not in self.tenants:
            return "tenants"
        for check in self.when:
            if discover and check.deferred:
                if self.is_deny:
                    return check.label  # unknown in a listing: a deny does not hide on it
                continue
            if not check.fn(ctx, facts):
                return check.label
        if self.unless:
            for check in self.unless:
                if discover and check.deferred:
                    continue
                if not check.fn(ctx, facts):
                    return None  # a requirement does not hold: the deny applies
            return "unless"
        return None

    def unless_failure(self, ctx: GovContext, facts: Facts) -> Check | None:
        """For explain: the first ``unless`` requirement that does not hold."""
        for check in self.unless:
            if facts.discover and check.deferred:
                continue
            if not check.fn(ctx, facts):
                return check
        return None

    def check_text(self, label: str) -> str:
        for check in (*self.when, *self.unless):
            if check.label == label:
                return check.text
        return label


@dataclass(frozen=True, slots=True)
class _Candidates:
    rules: tuple[CompiledRule, ...]
    needs: HistoryNeeds
    risk: str | None
    extra: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """How one rule about the request's target fared.

    Attributes:
        rule: the rule id.
        effect: the rule's effect.
        applies: whether it applied to the request.
        reason: why it applied or not (the condition that failed, or could not be evaluated).
        error: the condition could not be evaluated (the request is denied).
    """

    rule: str
    effect: str
    applies: bool
    reason: str
    error: bool = False


@dataclass(frozen=True, slots=True)
class Explanation:
    """A readable account of one decision: which rules about the target applied, and why.

    Attributes:
        decision: the decision (identical to what ``decide`` returns for the same input).
        request: a one-line description of the request.
        rules: every rule about the request's target, in policy order.
        total_rules: how many rules the policy has in all.
        summary: why the decision came out as it did.
    """

    decision: Decision
    request: str
    rules: tuple[RuleTrace, ...]
    total_rules: int
    summary: str
    engine: str = "policy"
    policy_version: str | None = None
    considered: tuple[str, ...] = field(default=())

    @property
    def applied(self) -> tuple[str, ...]:
        """Ids of the rules that applied."""
        return tuple(t.rule for t in self.rules if t.applies)

    def __str__(self) -> str:
        lines = [
            f"request:  {self.request}",
            f"policy:   {self.engine} {self.policy_version or ''} ({self.total_rules} rules, "
            f"{len(self.rules)} about this target)".rstrip(),
        ]
        for t in self.rules:
            status = "ERROR" if t.error else ("applies" if t.applies else "no")
            lines.append(f"  [{status:>7}] {t.effect:<16} {t.rule}: {t.reason}")
        lines.append(f"decision: {self.decision.effect.value} by {self.decision.rule}: {self.summary}")
        return "\n".join(lines)


def describe_request(ctx: GovContext) -> str:
    """One line about a request, for explain."""
    what = f"{ctx.kind} {ctx.target!r}" if ctx.kind is not None and ctx.target is not None else f"method {ctx.method}"
    who = ctx.principal.id if ctx.principal is not None else "no principal"
    bits = [f"{ctx.action or 'execute'} {what} by {who}"]
    bits.append(f"tenant {ctx.tenant!r}")
    if ctx.purpose is not None:
        bits.append(f"purpose {ctx.purpose!r}")
    if ctx.task_id is not None:
        bits.append(f"task {ctx.task_id!r}")
    return ", ".join(bits)


@dataclass(frozen=True, slots=True)
class DeclaredTarget:
    """What a server author declared about one tool (see :class:`~mcpgov.policy.PolicyDecorators`)."""

    risk: str | None = None
    obligations: Mapping[str, Any] = field(default_factory=dict)


class PolicyEngine:
    """A compiled policy: decides requests and explains decisions. Immutable once built.

    Args:
        policy: the validated policy.
        declared_rules: further rules (from server-author declarations), evaluated with the file's.
        declared_labels: further label definitions.
        declared: per-tool declarations (risk level, obligations every allow of it carries).
        version: the version recorded in decisions (defaults to the policy's).

    Raises:
        PolicyError: a declared rule id collides with one of the policy's.
    """

    engine_name = "policy"

    def __init__(
        self,
        policy: Policy,
        *,
        declared_rules: tuple[Rule, ...] = (),
        declared_labels: Mapping[str, TargetSet] | None = None,
        declared: Mapping[str, DeclaredTarget] | None = None,
        version: str | None = None,
    ) -> None:
        self.policy = policy
        self.version = version or policy.version
        self.source = policy.source
        document: PolicyDocument = policy.document
        ids = {r.id for r in document.rules}
        for rule in declared_rules:
            if rule.id in ids:
                raise PolicyError(
                    f"{policy.source}: rule {rule.id!r} collides with a declared tool's rule", source=policy.source
                )
            ids.add(rule.id)
        rules = (*document.rules, *declared_rules)
        self.rules: tuple[CompiledRule, ...] = tuple(
            CompiledRule(rule, i, self.engine_name, self.version) for i, rule in enumerate(rules)
        )
        self._exact: dict[tuple[str, str], list[CompiledRule]] = {}
        self._globs: dict[str, list[tuple[str, CompiledRule]]] = {}
        for compiled, rule in zip(self.rules, rules, strict=True):
            for kind, patterns in (
                ("tool", rule.tools),
                ("resource", rule.resources),
                ("prompt", rule.prompts),
                ("method", rule.methods),
            ):
                for pattern in dict.fromkeys(patterns or ()):
                    if _is_glob(pattern):
                        self._globs.setdefault(kind, []).append((pattern, compiled))
                    else:
                        self._exact.setdefault((kind, pattern), []).append(compiled)
        labels: dict[str, list[TargetSet]] = {}
        for name, targets in document.labels.items():
            labels.setdefault(name, []).append(targets)
        for name, targets in (declared_labels or {}).items():
            labels.setdefault(name, []).append(targets)
        self._labels: list[tuple[str, str, str]] = [
            (name, kind, pattern)
            for name, sets in labels.items()
            for ts in sets
            for kind, patterns in (("tool", ts.tools), ("resource", ts.resources), ("prompt", ts.prompts))
            for pattern in patterns or ()
        ]
        self._declared = dict(declared or {})
        self._cache: dict[tuple[str, str], _Candidates] = {}
        self._label_cache: dict[tuple[str, str], frozenset[str]] = {}
        self._default_deny = Decision(
            Effect.DENY,
            DEFAULT_DENY_RULE,
            "no rule of the policy applies to this request" if self.rules else "the policy has no rules",
            "default_deny",
            MappingProxyType({}),
            self.engine_name,
            self.version,
        )

    def __repr__(self) -> str:
        return f"PolicyEngine(source={self.source!r}, version={self.version!r}, rules={len(self.rules)})"

    # -- lookup -----------------------------------------------------------------------------

    def _candidates(self, ctx: GovContext) -> _Candidates:
        key: tuple[str, str] = (
            (ctx.kind, ctx.target) if ctx.kind is not None and ctx.target is not None else ("method", ctx.method)
        )
        found = self._cache.get(key)
        if found is None:
            found = self._lookup(key)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()  # targets are caller-chosen: keep the cache bounded
            self._cache[key] = found
        return found

    def _lookup(self, key: tuple[str, str]) -> _Candidates:
        kind, name = key
        rules = list(self._exact.get(key, ()))
        if not (kind == "resource" and _suspicious_uri(name)):
            rules.extend(r for pattern, r in self._globs.get(kind, ()) if fnmatch.fnmatchcase(name, pattern))
        ordered = tuple(sorted(set(rules), key=lambda r: r.index))
        needs = HistoryNeeds()
        for rule in ordered:
            needs = needs | rule.needs
        declared = self._declared.get(name) if kind == "tool" else None
        return _Candidates(
            ordered,
            needs,
            declared.risk if declared is not None else None,
            MappingProxyType(dict(declared.obligations)) if declared is not None and declared.obligations else None,
        )

    def history_needs(self, ctx: GovContext) -> HistoryNeeds:
        """What deciding ``ctx`` needs to know about its task's history (nothing for listings)."""
        if ctx.action == "discover":
            return HistoryNeeds()
        return self._candidates(ctx).needs

    def labels_for(self, kind: str | None, target: str | None) -> frozenset[str]:
        """The labels a target carries (recorded in task history when it is used)."""
        if kind is None or target is None:
            return frozenset()
        key = (kind, target)
        found = self._label_cache.get(key)
        if found is None:
            suspicious = kind == "resource" and _suspicious_uri(target)
            found = frozenset(
                name
                for name, k, pattern in self._labels
                if k == kind
                and (
                    pattern == target or (not suspicious and _is_glob(pattern) and fnmatch.fnmatchcase(target, pattern))
                )
            )
            if len(self._label_cache) >= _CACHE_LIMIT:
                self._label_cache.clear()
            self._label_cache[key] = found
        return found

    # -- decisions --------------------------------------------------------------------------

    def decide(self, ctx: GovContext, *, history: TaskHistory | None = None, now: float | None = None) -> Decision:
        """Decide ``ctx``.

        Args:
            ctx: the request (``ctx.action == "discover"`` for a listing entry).
            history: the task's history, when the request names a task (see ``history_needs``).
            now: the time of the decision (defaults to ``time.time()``).

        Returns:
            A decision naming its rule, with ``engine="policy"`` and this policy's version.
        """
        cands = self._candidates(ctx)
        if not cands.rules:
            return self._default_deny
        facts = Facts(time.time() if now is None else now, history, cands.risk, ctx.action == "discover")
        first_allow: CompiledRule | None = None
        more_allows: list[CompiledRule] | None = None
        approval: CompiledRule | None = None
        for rule in cands.rules:
            try:
                missed = rule.miss(ctx, facts)
            except ConditionError as exc:
                return self._unevaluable(rule, exc)
            if missed is not None:
                continue
            effect = rule.effect
            if effect is Effect.DENY:
                return rule.decision
            if effect is Effect.REQUIRE_APPROVAL:
                if approval is None:
                    approval = rule
            elif first_allow is None:
                first_allow = rule
            else:
                if more_allows is None:
                    more_allows = []
                more_allows.append(rule)
        chosen = approval or first_allow
        if chosen is None:
            return self._default_deny
        if chosen is first_allow and more_allows is None and cands.extra is None:
            return chosen.decision
        obligations: dict[str, Any] = dict(chosen.obligations)
        if chosen is first_allow:
            for rule in more_allows or ():
                obligations = merge_obligations(obligations, rule.obligations)
        if cands.extra is not None:
            obligations = merge_obligations(obligations, cands.extra)
        base = chosen.decision
        return Decision(
            base.effect,
            base.rule,
            base.reason,
            base.reason_code,
            MappingProxyType(obligations),
            base.engine,
            base.policy_version,
        )

    def _unevaluable(self, rule: CompiledRule, exc: ConditionError) -> Decision:
        return Decision(
            Effect.DENY,
            rule.id,
            f"rule {rule.id}: {exc.label} could not be evaluated ({exc.detail})",
            "condition_unevaluable",
            MappingProxyType({}),
            self.engine_name,
            self.version,
        )

    def explain(self, ctx: GovContext, *, history: TaskHistory | None = None, now: float | None = None) -> Explanation:
        """A readable account of the decision about ``ctx`` (same inputs as :meth:`decide`)."""
        now = time.time() if now is None else now
        decision = self.decide(ctx, history=history, now=now)
        cands = self._candidates(ctx)
        facts = Facts(now, history, cands.risk, ctx.action == "discover")
        traces: list[RuleTrace] = []
        for rule in cands.rules:
            effect = rule.effect.value
            try:
                missed = rule.miss(ctx, facts)
            except ConditionError as exc:
                traces.append(
                    RuleTrace(rule.id, effect, True, f"{exc.label} could not be evaluated: {exc.detail}", True)
                )
                continue
            if missed is None:
                if rule.unless:
                    failed = rule.unless_failure(ctx, facts)
                    reason = f"requirement not met: {failed.text}" if failed else "a requirement is not met"
                elif rule.when:
                    reason = "all conditions hold"
                else:
                    reason = "matches (no conditions)"
                traces.append(RuleTrace(rule.id, effect, True, reason))
            elif missed == "unless":
                traces.append(RuleTrace(rule.id, effect, False, "every requirement holds"))
            elif missed == "actions":
                traces.append(RuleTrace(rule.id, effect, False, "rule covers discovery only"))
            elif missed == "principals":
                traces.append(RuleTrace(rule.id, effect, False, "principal does not match"))
            elif missed == "tenants":
                traces.append(RuleTrace(rule.id, effect, False, f"tenant {ctx.tenant!r} is not one of the rule's"))
            elif facts.discover and rule.is_deny:
                traces.append(RuleTrace(rule.id, effect, False, f"depends on arguments or history ({missed})"))
            else:
                traces.append(RuleTrace(rule.id, effect, False, f"condition not met: {rule.check_text(missed)}"))
        if decision.rule == DEFAULT_DENY_RULE:
            summary = (
                "the policy has no rules: everything is denied"
                if not self.rules
                else "no allow rule applies (nothing matching means deny)"
            )
        elif decision.reason_code == "condition_unevaluable":
            summary = "a condition could not be evaluated on the request, which denies"
        elif decision.effect is Effect.DENY:
            summary = "a deny rule applies (deny overrides allow)"
        elif decision.effect is Effect.REQUIRE_APPROVAL:
            summary = "no deny applies and an approval rule applies (approval overrides allow)"
        else:
            others = [t.rule for t in traces if t.applies and t.rule != decision.rule]
            summary = "an allow rule applies and no deny or approval rule does" + (
                f" (obligations also from {', '.join(others)})" if others else ""
            )
        return Explanation(
            decision,
            describe_request(ctx),
            tuple(traces),
            len(self.rules),
            summary,
            self.engine_name,
            self.version,
        )


def combined_version(policy_version: str, declared: list[dict[str, Any]]) -> str:
    """The version of a policy together with server-author declarations."""
    if not declared:
        return policy_version
    digest = hashlib.sha256(rfc8785.dumps({"policy": policy_version, "declared": declared})).hexdigest()
    return "sha256:" + digest
