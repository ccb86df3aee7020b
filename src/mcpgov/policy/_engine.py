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
* conditions are three-valued: a condition that cannot judge the request (an argument of an
  unexpected type, shape or size, a path that cannot be canonicalised, a string that matches
  only after Unicode normalisation, a history condition on a request with no task) is
  *unknown*. An unknown deny applies (naming the rule and the condition); an unknown allow
  does not apply (when nothing else allows, the deny names it); an unknown approval rule
  turns an allow into an approval but never grants on its own. Uncertainty can only deny;
* for a listing (``action == "discover"``) arguments are never known, nor is task history
  when the listing names no task: an allow whose only unknowns are those still lists the
  target (it may be usable), a deny that depends on them does not hide it. Every other
  condition (tenant, purpose, scopes, claims, time, risk, delegation depth, and history
  when the listing names a task) is evaluated exactly as for a use. Execute rules govern
  listings too, so what is listed and what may be used come from the same rules.
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

from mcpgov._context import GovContext, approval_rule_to_ask
from mcpgov._decision import Decision, Effect, merge_obligations
from mcpgov._principal import Principal
from mcpgov._uris import authority_folded, restricting_readings, scheme_folded, uri_problem
from mcpgov.policy._conditions import (
    Check,
    ConditionError,
    Facts,
    NameSet,
    compile_conditions,
    compile_principal,
    spellings,
)
from mcpgov.policy._history import HistoryNeeds, TaskHistory
from mcpgov.policy._load import Policy, PolicyError
from mcpgov.policy._model import (
    OBLIGATION_BIND_ARGUMENTS,
    OBLIGATION_MAX_CREDENTIAL_TTL,
    OBLIGATION_RATE_LIMIT,
    OBLIGATION_REDACT,
    Obligations,
    PolicyDocument,
    Rule,
    TargetSet,
)
from mcpgov.policy._ratelimit import RateLimitSpec

__all__ = [
    "DEFAULT_DENY_RULE",
    "Explanation",
    "PolicyEngine",
    "RuleTrace",
]

DEFAULT_DENY_RULE = "mcpgov:policy:default-deny"

APPLIES, MISSES, UNKNOWN = 1, 0, 2
"""The three outcomes of evaluating one rule against a request."""

_GLOB_CHARS = frozenset("*?[")
_CACHE_LIMIT = 8192


def _is_glob(pattern: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in pattern)


def _uri_spellings(uri: str) -> tuple[tuple[str, ...], bool]:
    """The spellings of a resource URI a server could act on, and whether they are all known."""
    try:
        return tuple(sorted(spellings(uri))), True
    except ValueError:
        return (uri,), False


def _uri_readings(uri: str) -> tuple[tuple[tuple[str, ...], ...], bool]:
    """The spellings of ``uri`` as received and, when its scheme is not in lower case, of the
    same URI with it folded (schemes are case-insensitive), and whether they are all known."""
    raw, certain = _uri_spellings(uri)
    folded = scheme_folded(uri)
    if folded == uri:
        return (raw,), certain
    other, known = _uri_spellings(folded)
    return (raw, other), certain and known


def _host_readings(readings: tuple[tuple[str, ...], ...]) -> frozenset[str]:
    """Every spelling of the readings as a server that reads only the host sees it (lower case,
    no user-info or port: mcpgov._uris.authority_folded). Only what restricts is matched on these."""
    return frozenset(reading for forms in readings for form in forms for reading in restricting_readings(form))


def _restricts(pattern: str, forms: frozenset[str], hosts: frozenset[str]) -> bool:
    """Whether a deny, approval or label ``pattern`` reaches a URI with these spellings and host
    readings (the pattern folded like the URI, so ``vault://PROD/*`` stops ``vault://prod/x``)."""
    if _is_glob(pattern):
        if any(fnmatch.fnmatchcase(form, pattern) for form in forms):
            return True
        folded = authority_folded(pattern)
        return any(fnmatch.fnmatchcase(form, p) for form in hosts for p in {pattern, folded})
    return pattern in forms or not hosts.isdisjoint(restricting_readings(pattern) | {pattern})


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
        allows = self.effect is Effect.ALLOW
        self.executes = "execute" in rule.actions
        self.anonymous = rule.anonymous
        self.principal_test: Callable[[Principal], bool] | None = (
            compile_principal(rule.principals, absent_unknown=not allows) if rule.principals else None
        )
        self.tenants = NameSet("tenants", "tenant", rule.tenants) if rule.tenants is not None else None
        # Where a condition restricts (a deny's or approval's ``when``), an absent argument or
        # claim is unknown; where it is a requirement (an allow's ``when``, a deny's ``unless``),
        # absence fails it.
        self.when: tuple[Check, ...] = (
            compile_conditions(rule.when, "when", restricting=not allows) if rule.when else ()
        )
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

    def evaluate(self, ctx: GovContext, facts: Facts) -> tuple[int, str | None, str | None]:
        """Whether this rule applies: ``(APPLIES | MISSES | UNKNOWN, label, detail)``.

        ``label`` names what did not hold (MISSES) or what was unknown (UNKNOWN), and ``detail``
        says why a condition was unknown. ``when`` is the conjunction of its checks and the rule
        applies when ``when and not all(unless)``, in three-valued (Kleene) logic.
        """
        discover = facts.discover
        if not discover and not self.executes:
            return MISSES, "actions", None
        principal = ctx.principal
        if principal is None and not self.anonymous:
            return MISSES, "principals", None
        unknown: tuple[str, str] | None = None
        if principal is not None and self.principal_test is not None:
            try:
                if not self.principal_test(principal):
                    return MISSES, "principals", None
            except ConditionError as exc:
                unknown = (exc.label, exc.detail)  # a claim the matcher cannot judge
        if self.tenants is not None:
            try:
                if not self.tenants.holds(ctx.tenant):
                    return MISSES, "tenants", None
            except ConditionError as exc:
                unknown = unknown or (exc.label, exc.detail)  # another spelling of a listed tenant
        for check in self.when:
            if discover and check.unknown_in_listing(facts):
                if self.is_deny:
                    return MISSES, check.label, None  # unknown in a listing: a deny does not hide on it
                continue
            try:
                if not check.fn(ctx, facts):
                    return MISSES, check.label, None
            except ConditionError as exc:
                if unknown is None:
                    unknown = (check.label, exc.detail)
        if self.unless:
            unless_unknown: tuple[str, str] | None = None
            for check in self.unless:
                if discover and check.unknown_in_listing(facts):
                    continue
                try:
                    if not check.fn(ctx, facts):
                        unless_unknown = None
                        break  # a requirement does not hold: the deny applies
                except ConditionError as exc:
                    if unless_unknown is None:
                        unless_unknown = (check.label, exc.detail)
            else:
                if unless_unknown is None:
                    return MISSES, "unless", None
            if unknown is None:
                unknown = unless_unknown
        if unknown is not None:
            return UNKNOWN, unknown[0], unknown[1]
        return APPLIES, None, None

    def unless_failure(self, ctx: GovContext, facts: Facts) -> Check | None:
        """For explain: the first ``unless`` requirement that does not hold."""
        for check in self.unless:
            if facts.discover and check.unknown_in_listing(facts):
                continue
            try:
                if not check.fn(ctx, facts):
                    return check
            except ConditionError:
                continue
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
        # Exact resource rules that restrict, by every spelling they stop (as written, and read
        # as a server reading only the host sees it): one lookup per spelling of a URI, not a scan.
        self._restricting: dict[str, list[CompiledRule]] = {}
        for (kind, pattern), exact in self._exact.items():
            if kind == "resource":
                for spelling in {pattern, *restricting_readings(pattern)}:
                    self._restricting.setdefault(spelling, []).extend(r for r in exact if r.effect is not Effect.ALLOW)
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
        if kind == "resource":
            # A glob is judged on every spelling of the URI (decoded, NFKC): a deny or approval
            # matches when any spelling does, an allow only when every spelling does and the URI
            # is in its normal form (mcpgov._uris: no dot segments, encoded separators...).
            # A scheme is case-insensitive: the URI with its scheme folded is read the same way,
            # and an allow may match either reading as a whole (both name one resource).
            # A host is case-insensitive and a server may read only the host of the authority: a
            # deny or approval (exact or glob) also matches the URI read that way, an allow never
            # through that reading (mcpgov._uris.authority_folded).
            readings, certain = _uri_readings(name)
            clean = certain and uri_problem(name) is None
            forms = frozenset(form for spelt in readings for form in spelt)
            hosts = _host_readings(readings)
            direct = self._exact.get(key, ())
            rules.extend(
                dict.fromkeys(
                    r for spelling in forms | hosts for r in self._restricting.get(spelling, ()) if r not in direct
                )
            )
            for pattern, r in self._globs.get(kind, ()):
                if r.effect is not Effect.ALLOW:
                    if _restricts(pattern, forms, hosts):
                        rules.append(r)
                elif clean and any(all(fnmatch.fnmatchcase(form, pattern) for form in spelt) for spelt in readings):
                    rules.append(r)
        else:
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
        """What deciding ``ctx`` needs to know about its task's history (a listing: only inside a task)."""
        if ctx.action == "discover" and ctx.task_id is None:
            return HistoryNeeds()
        return self._candidates(ctx).needs

    def labels_for(self, kind: str | None, target: str | None) -> frozenset[str]:
        """The labels a target carries (recorded in task history when it is used)."""
        if kind is None or target is None:
            return frozenset()
        key = (kind, target)
        found = self._label_cache.get(key)
        if found is None:
            # A label attaches when any spelling or host reading of the target matches (labels
            # only ever restrict).
            if kind == "resource":
                readings = _uri_readings(target)[0]
                forms = frozenset(form for spelt in readings for form in spelt)
                hosts = _host_readings(readings)
                found = frozenset(
                    name
                    for name, k, pattern in self._labels
                    if k == kind and (pattern == target or _restricts(pattern, forms, hosts))
                )
            else:
                found = frozenset(
                    name
                    for name, k, pattern in self._labels
                    if k == kind and (pattern == target or (_is_glob(pattern) and fnmatch.fnmatchcase(target, pattern)))
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
        allows: list[CompiledRule] = []
        approvals: list[CompiledRule] = []
        maybe_approvals: list[tuple[CompiledRule, str, str]] = []
        maybe_allow: tuple[CompiledRule, str, str] | None = None
        maybe_allows: list[CompiledRule] = []
        for rule in cands.rules:
            state, label, detail = rule.evaluate(ctx, facts)
            if state == MISSES:
                continue
            effect = rule.effect
            if effect is Effect.DENY:
                if state == APPLIES:
                    return rule.decision
                return self._unknown(rule, label, detail, Effect.DENY)
            if state == UNKNOWN:
                if effect is Effect.REQUIRE_APPROVAL:
                    maybe_approvals.append((rule, label or "", detail or ""))
                else:
                    maybe_allows.append(rule)
                    if maybe_allow is None:
                        maybe_allow = (rule, label or "", detail or "")
            elif effect is Effect.REQUIRE_APPROVAL:
                approvals.append(rule)
            else:
                allows.append(rule)
        if not approvals and not allows:
            if maybe_allow is not None:
                return self._unknown(maybe_allow[0], maybe_allow[1], maybe_allow[2], Effect.DENY)
            return self._default_deny
        if not approvals and not maybe_approvals and not maybe_allows and len(allows) == 1 and cands.extra is None:
            return allows[0].decision
        applying = [*approvals, *allows]
        applying.extend(maybe[0] for maybe in maybe_approvals)
        # An allow that may apply (a condition unknown) grants nothing, but what it would oblige
        # is owed: the admitted request runs under it too, so uncertainty never loosens one.
        applying.extend(maybe_allows)
        obligations: dict[str, Any] = {}
        for rule in applying:
            obligations = merge_obligations(obligations, rule.obligations)
        if cands.extra is not None:
            obligations = merge_obligations(obligations, cands.extra)
        if approvals or maybe_approvals:
            # Each approval rule that applies, then each that may apply (a condition unknown), is
            # asked about in turn: not only the first, and uncertainty never skips an approval.
            asking = approval_rule_to_ask(ctx, [r.id for r in approvals] + [m[0].id for m in maybe_approvals])
            if asking < len(approvals):
                base = approvals[asking].decision
            else:
                rule, label, detail = maybe_approvals[asking - len(approvals)]
                base = Decision(
                    Effect.REQUIRE_APPROVAL,
                    rule.id,
                    f"rule {rule.id} may apply ({label} is unknown: {detail}), so approval is required",
                    "approval_required",
                    MappingProxyType({}),
                    self.engine_name,
                    self.version,
                )
        else:
            base = allows[0].decision
        return Decision(
            base.effect,
            base.rule,
            base.reason,
            base.reason_code,
            MappingProxyType(obligations),
            base.engine,
            base.policy_version,
        )

    def _unknown(self, rule: CompiledRule, label: str | None, detail: str | None, effect: Effect) -> Decision:
        return Decision(
            effect,
            rule.id,
            f"rule {rule.id}: {label} is unknown ({detail}), which denies",
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
            state, missed, detail = rule.evaluate(ctx, facts)
            if state == UNKNOWN:
                counts = (
                    "counts as not matching for an allow; its obligations still bind an admitted request"
                    if rule.effect is Effect.ALLOW
                    else "counts as matching"
                )
                traces.append(
                    RuleTrace(
                        rule.id,
                        effect,
                        rule.effect is not Effect.ALLOW,
                        f"{missed} is unknown: {detail} ({counts})",
                        True,
                    )
                )
            elif state == APPLIES:
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
            elif facts.discover and rule.is_deny and missed is not None and missed != "actions":
                text = rule.check_text(missed)
                if any(c.label == missed and c.unknown_in_listing(facts) for c in rule.when):
                    traces.append(RuleTrace(rule.id, effect, False, f"depends on arguments or history ({missed})"))
                else:
                    traces.append(RuleTrace(rule.id, effect, False, f"condition not met: {text}"))
            else:
                traces.append(RuleTrace(rule.id, effect, False, f"condition not met: {rule.check_text(missed or '')}"))
        if decision.rule == DEFAULT_DENY_RULE:
            summary = (
                "the policy has no rules: everything is denied"
                if not self.rules
                else "no allow rule applies (nothing matching means deny)"
            )
        elif decision.reason_code == "condition_unevaluable":
            summary = f"a condition is unknown on this request ({decision.reason}); uncertainty only ever denies"
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
