"""Cedar as an optional policy engine (the ``cedar`` extra, through ``cedarpy``).

The request maps to Cedar as:

* principal: ``Principal::"<issuer>#<subject>"`` (``Anonymous::"anonymous"`` without one);
* action: ``Action::"execute"`` or ``Action::"discover"``;
* resource: ``Tool::"<name>"``, ``Resource::"<uri>"``, ``Prompt::"<name>"`` or ``Method::"<method>"``;
* context: ``tenant``, ``purpose``, ``task_id``, ``issuer``, ``subject``, ``spiffe_id`` (each only
  when known), ``scopes`` (a set), ``delegation_depth``, ``claims`` (scalar and list claims),
  ``now`` (seconds since the epoch) and, for ``execute`` only, ``args`` (the arguments).

Policies are named by their ``@id("...")`` annotation (else Cedar's ``policyN``); a permit
annotated ``@approval`` requires approval instead of allowing. A Cedar evaluation that reports
any error denies, even if some policy permits.

Tenants and purposes are judged as by the built-in engine (see
:class:`~mcpgov.policy._conditions.NameSet`): the names the policies compare ``context.tenant``
and ``context.purpose`` with (``==``, ``!=``, ``contains``, ``containsAny``, ``in``; ``like``
patterns with their wildcards read as nothing) are the values that matter. A tenant or purpose
that is not one of them but reads as one (another case, Unicode form, invisible characters,
whitespace, look-alike letters), or that matches a ``like`` pattern only in another spelling,
and a request without one, are unknown: the request is evaluated again with each name it could
stand for (the name or pattern it reads as; every name when it has none), and the strictest
decision holds. Claims the policies compare with strings (``context.claims.<name> == "..."``,
``.contains("...")``) are judged the same way: a value (or list element) that is another
spelling of one of those strings, or an absent claim (read as each string, alone and in a list).
When that is stricter than the decision on the request as received, the request is refused as
unknown (``condition_unevaluable``).

Arguments that Cedar cannot represent (fractions with more than four decimals, huge numbers,
objects with a key ``__entity``, ``__extn`` or ``__expr``, which Cedar would read as an entity or
extension value) deny, and so does a ``scope``/``scp``/``scopes`` claim that is not a string or
a list of strings when the policies read ``context.scopes``, and claims of those shapes (or
holding ``null``) that the policies read (``context.claims.<name>``, ``context.claims has
<name>``, or the whole record); claims they never read are left out.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mcpgov._context import GovContext, approval_rule_to_ask
from mcpgov._decision import Decision, Effect
from mcpgov._errors import ConfigurationError
from mcpgov._principal import Principal
from mcpgov.policy._conditions import (
    COMPLETION_METHOD,
    MAX_CONDITION_STRING,
    ConditionError,
    granted_scopes,
    judged_arguments,
    name_key,
    reads_as,
    spelling_of,
)
from mcpgov.policy._engine import Explanation, RuleTrace, describe_request
from mcpgov.policy._history import HistoryNeeds, TaskHistory
from mcpgov.policy._load import PolicyError, read_text

__all__ = ["CedarEngine", "CedarPolicy"]

CEDAR_DEFAULT_DENY = "cedar:default-deny"
CEDAR_ERROR = "cedar:evaluation-error"
_NAMED = ("tenant", "purpose")
"""Request values compared with names, whose other spellings (and absence) are unknown."""
_MAX_READINGS = 256
"""The most re-evaluations of one request with the names its tenant and purpose could stand for."""
_STRICTNESS = {Effect.ALLOW: 0, Effect.REQUIRE_APPROVAL: 1, Effect.DENY: 2}
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_RESOURCE_TYPES = {"tool": "Tool", "resource": "Resource", "prompt": "Prompt"}
_CEDAR_LONG = 2**63 - 1
_CEDAR_ESCAPES = frozenset({"__entity", "__extn", "__expr"})
"""Keys that make Cedar read a JSON object as an entity, extension or expression, not as a record."""


def _cedarpy() -> Any:
    try:
        import cedarpy  # noqa: PLC0415 - optional dependency, imported on use
    except ImportError:
        raise ConfigurationError(
            "the Cedar engine needs the 'cedar' extra: pip install 'mcpgov[cedar]'", reason="cedar_missing"
        ) from None
    return cedarpy


class _Unrepresentable(Exception):
    pass


def _to_cedar(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        if value is None:
            raise _Unrepresentable("null")
        return value
    if isinstance(value, int):
        if abs(value) > _CEDAR_LONG:
            raise _Unrepresentable("integer out of range")
        return value
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= _CEDAR_LONG:
            return int(value)
        d = Decimal(repr(value))
        exponent = d.as_tuple().exponent
        if not isinstance(exponent, int) or exponent < -4 or abs(d) >= 922337203685477:
            raise _Unrepresentable("a number Cedar's decimal cannot hold")
        return {"__extn": {"fn": "decimal", "arg": format(d, "f")}}
    if isinstance(value, Mapping):
        escapes = _CEDAR_ESCAPES.intersection(value)
        if escapes:
            # Cedar's JSON reads such an object as an entity or extension value, not as the
            # record a tool receives.
            raise _Unrepresentable(f"an object with the key {sorted(escapes)[0]!r}, which Cedar reads as an escape")
        return {str(k): _to_cedar(v) for k, v in value.items() if v is not None}
    if isinstance(value, (tuple, list)):
        return [_to_cedar(v) for v in value]
    raise _Unrepresentable(type(value).__name__)


class CedarPolicy:
    """A parsed Cedar policy set, its version (digest of the text) and where it came from.

    Args:
        text: the Cedar policies.
        source: where they came from, for messages.

    Raises:
        ConfigurationError: ``cedarpy`` is not installed.
        PolicyError: the text is not valid Cedar (the message names the source).
    """

    engine_name = "cedar"

    def __init__(self, text: str, *, source: str = "<cedar>") -> None:
        cedarpy = _cedarpy()
        self.source = source
        self.text = text
        try:
            self._policies = cedarpy.PolicySet.from_str(text)
            raw = json.loads(cedarpy.policies_to_json_str(text))
        except ValueError as exc:
            raise PolicyError(f"{source}: invalid Cedar policy: {exc}", source=source) from None
        self.annotations: dict[str, dict[str, Any]] = {
            pid: dict(body.get("annotations") or {}) for pid, body in (raw.get("staticPolicies") or {}).items()
        }
        self.names: dict[str, frozenset[str]] = {attr: frozenset(_compared_names(raw, attr)) for attr in _NAMED}
        self.patterns: dict[str, list[list[Any]]] = {attr: _like_patterns(raw, attr) for attr in _NAMED}
        self.scopes_read = _reads(raw, {".": {"left": {"Var": "context"}, "attr": "scopes"}})
        """Whether the policies read ``context.scopes``."""
        self.claims_read: frozenset[str] | None = _claims_read(raw)
        """The claims the policies read (``context.claims.<name>``, ``context.claims has <name>``);
        None when they use the whole record."""
        self.claim_names: dict[str, frozenset[str]] = {
            claim: frozenset(_compared_with(raw, functools.partial(_is_claim, name=claim)))
            for claim in sorted(self.claims_read or ())
        }
        self.arg_values: dict[tuple[str, ...], tuple[Any, ...]] = {
            path: _compared_literals(raw, functools.partial(_is_arg, path=path)) for path in sorted(_args_read(raw))
        }
        """For each argument path the policies read (``context.args.<name>``, nested
        ``context.args.<name>.<key>`` too): the literals they compare it with."""
        self.version = "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"CedarPolicy(source={self.source!r}, version={self.version!r}, policies={len(self.annotations)})"

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CedarPolicy:
        """Read a ``.cedar`` file.

        Raises:
            PolicyError: unreadable or invalid.
        """
        p = Path(path)
        return cls(read_text(p), source=str(p))

    def rule_id(self, policy_id: str) -> str:
        """The rule id of a Cedar policy: its ``@id`` annotation, else Cedar's id."""
        value = self.annotations.get(policy_id, {}).get("id")
        return value if isinstance(value, str) and value else policy_id

    def compile(self) -> CedarEngine:
        """The engine for this policy set."""
        return CedarEngine(self)


class CedarEngine:
    """Decides requests with a Cedar policy set; the same interface as the built-in engine."""

    engine_name = "cedar"

    def __init__(self, policy: CedarPolicy) -> None:
        self.policy = policy
        self.version = policy.version
        self.source = policy.source
        self._cedarpy = _cedarpy()
        self._entities = self._cedarpy.Entities.from_json_str("[]")
        self._default_deny = self._decision(Effect.DENY, CEDAR_DEFAULT_DENY, "no Cedar policy permits", "default_deny")
        self._names = {
            attr: (names, {name_key(name): name for name in sorted(names)})
            for attr, names in policy.names.items()
            if names
        }
        self._claim_names = {
            claim: (names, {name_key(name): name for name in sorted(names)})
            for claim, names in policy.claim_names.items()
            if names
        }
        self._patterns = {
            attr: [(_like_regex(parts, str), _like_regex(parts, _fold), _like_name(parts)) for parts in patterns]
            for attr, patterns in policy.patterns.items()
        }

    def __repr__(self) -> str:
        return f"CedarEngine(source={self.source!r}, version={self.version!r})"

    def _decision(self, effect: Effect, rule: str, reason: str, code: str) -> Decision:
        return Decision(effect, rule, reason, code, _EMPTY, self.engine_name, self.version)

    def history_needs(self, ctx: GovContext) -> HistoryNeeds:
        """Cedar decisions do not use task history."""
        return HistoryNeeds()

    def labels_for(self, kind: str | None, target: str | None) -> frozenset[str]:
        """Cedar policies define no labels."""
        return frozenset()

    def request(self, ctx: GovContext, now: float) -> dict[str, Any]:
        """The Cedar request for ``ctx``.

        Raises:
            ValueError: an argument or claim Cedar cannot represent.
        """
        principal = ctx.principal
        context: dict[str, Any] = {"now": int(now), "delegation_depth": 0, "scopes": []}
        for name in ("tenant", "purpose", "task_id"):
            value = getattr(ctx, name)
            if value is not None:
                context[name] = value
        if principal is not None:
            context["issuer"] = principal.issuer
            context["subject"] = principal.subject
            if principal.spiffe_id is not None:
                context["spiffe_id"] = principal.spiffe_id
            context["delegation_depth"] = len(principal.actors)
            try:
                context["scopes"] = sorted(granted_scopes(principal))
            except ConditionError as exc:
                if self.policy.scopes_read:
                    raise ValueError(exc.detail) from None  # which scopes it holds is unknown: deny
                # No policy reads the scopes: the empty set stands.
            claims: dict[str, Any] = {}
            read = self.policy.claims_read
            for key, value in principal.claims.items():
                try:
                    claims[str(key)] = _to_cedar(value)
                except _Unrepresentable as exc:
                    if read is None or str(key) in read:
                        # A claim the policies read but Cedar cannot hold: absent, a forbid on it
                        # would not apply. Unknown, which denies.
                        raise ValueError(f"claim {str(key)!r} not representable in Cedar: {exc}") from None
                    # One the policies never read is left out.
            context["claims"] = claims
        action = ctx.action or "execute"
        if action == "execute":
            try:
                context["args"] = _to_cedar(ctx.arguments or {})
            except _Unrepresentable as exc:
                raise ValueError(f"argument not representable in Cedar: {exc}") from None
        if ctx.kind is not None and ctx.target is not None:
            resource = {"type": _RESOURCE_TYPES[ctx.kind], "id": ctx.target}
        else:
            resource = {"type": "Method", "id": ctx.method}
        return {
            "principal": {"type": "Principal", "id": principal.id}
            if principal is not None
            else {"type": "Anonymous", "id": "anonymous"},
            "action": {"type": "Action", "id": action},
            "resource": resource,
            "context": context,
        }

    def _readings(self, ctx: GovContext) -> tuple[list[GovContext], str | None]:
        """The request with its tenant, purpose and compared claims read as each value they could stand for, and
        why they are unknown (None when both are exactly what the policies compare with)."""
        options: list[tuple[str, list[str]]] = []
        why: list[str] = []
        for attr, (names, keys) in self._names.items():
            value = getattr(ctx, attr)
            if value is None:
                options.append((attr, sorted(names)))
                why.append(f"the request has no {attr}")
            elif not isinstance(value, str) or value in names:
                continue
            elif len(value) > MAX_CONDITION_STRING:
                options.append((attr, sorted(names)))
                why.append(f"a {attr} longer than {MAX_CONDITION_STRING} characters is not judged")
            else:
                near = spelling_of(value, keys)
                if near is None:
                    # A ``like`` pattern it matches only in another spelling: read as the pattern's own.
                    key = name_key(value)
                    near = next(
                        (
                            name
                            for raw, folded, name in self._patterns.get(attr, ())
                            if not raw.fullmatch(value) and folded.fullmatch(key)
                        ),
                        None,
                    )
                if near is not None:
                    options.append((attr, [near]))
                    why.append(f"the {attr} {value!r} is another spelling of {near!r}")
        claim_options, claim_why = self._claim_readings(ctx.principal)
        why.extend(claim_why)
        arg_options, arg_why = self._argument_readings(ctx)
        why.extend(arg_why)
        if not options and not claim_options and not arg_options:
            return [], None
        readings = [ctx]
        for attr, candidates in options:
            readings = [r.replace(**{attr: name}) for r in readings for name in candidates]
            if len(readings) > _MAX_READINGS:
                return readings, "; ".join(why)
        for claim, values in claim_options:
            readings = [
                r.replace(principal=dataclasses.replace(p, claims={**p.claims, claim: v}))
                for r in readings
                if (p := r.principal) is not None
                for v in values
            ]
            if len(readings) > _MAX_READINGS:
                break
        for path, candidates in arg_options:
            if len(readings) > _MAX_READINGS:
                break
            readings = [
                r.replace(arguments=_with_path(r.arguments, path, value)) for r in readings for value in candidates
            ]
        return readings, "; ".join(why)

    def _argument_readings(self, ctx: GovContext) -> tuple[list[tuple[tuple[str, ...], list[Any]]], list[str]]:
        """For each argument (or nested argument) the policies compare with literals: the literals
        its value could be read as by a tool, when it is not one of them as sent (another JSON type
        that a tool converting its arguments reads as one, ``"0"`` for ``0``; a string equal to one
        only after NFKC normalisation, fullwidth ``rm`` for ``rm``)."""
        options: list[tuple[tuple[str, ...], list[Any]]] = []
        why: list[str] = []
        arguments = ctx.arguments
        if not arguments or (ctx.action or "execute") != "execute":
            return options, why
        for path, literals in self.policy.arg_values.items():
            name = ".".join(path)
            value = _at_path(arguments, path)
            if value is _ABSENT or isinstance(value, Mapping):
                continue
            if isinstance(value, (list, tuple)):
                # A set (``.contains``): each element is read as the literals it stands for, one
                # element at a time.
                readings = [
                    [*value[:i], literal, *value[i + 1 :]]
                    for i, item in enumerate(value)
                    for literal in _read_as_literals(item, literals)
                ]
                if readings:
                    options.append((path, readings))
                    why.append(f"an element of argument {name!r} could be read as {readings[0]!r}")
                continue
            candidates = _read_as_literals(value, literals)
            if candidates:
                options.append((path, candidates))
                why.append(f"argument {name!r} could be read as {candidates[0]!r}")
        return options, why

    def _claim_readings(self, principal: Principal | None) -> tuple[list[tuple[str, list[Any]]], list[str]]:
        """For each claim the policies compare with strings: the values it could stand for when it
        is absent (each string) or holds another spelling of one (as a string or list element)."""
        options: list[tuple[str, list[Any]]] = []
        why: list[str] = []
        if principal is None:
            return options, why
        for claim, (names, keys) in self._claim_names.items():
            value = principal.claims.get(claim, _ABSENT)
            if value is _ABSENT:
                # Any value: each name, as a string and as a list holding it.
                options.append((claim, [*([name] for name in sorted(names)), *sorted(names)]))
                why.append(f"the principal carries no claim {claim!r}")
                continue
            items = value if isinstance(value, (list, tuple)) else [value]
            for i, item in enumerate(items):
                if not isinstance(item, str) or item in names or len(item) > MAX_CONDITION_STRING:
                    continue
                near = spelling_of(item, keys)
                if near is not None:
                    read = near if not isinstance(value, (list, tuple)) else [*items[:i], near, *items[i + 1 :]]
                    options.append((claim, [read]))
                    why.append(f"claim {claim!r} value {item!r} is another spelling of {near!r}")
                    break
        return options, why

    def _evaluate(self, ctx: GovContext, now: float) -> tuple[Decision, list[str], list[str], str | None]:
        """The decision, Cedar's determining policies and errors, and what made it stricter than
        Cedar's decision on the request as received (an unknown tenant, purpose or claim), if anything."""
        if ctx.method == COMPLETION_METHOD and ctx.arguments is not None:
            # A completion is judged as the prompt it completes (see judged_arguments).
            ctx = ctx.replace(arguments=judged_arguments(ctx))
        decision, reasons, errors = self._evaluate_one(ctx, now)
        if decision.effect is Effect.DENY and decision.reason_code != "default_deny":
            return decision, reasons, errors, None  # nothing is stricter
        readings, why = self._readings(ctx)
        if why is None:
            return decision, reasons, errors, None
        if len(readings) > _MAX_READINGS:
            detail = f"{why}, and it could stand for too many names to judge"
            return self._unknown(CEDAR_ERROR, detail), reasons, errors, detail
        strictest = decision
        for reading in readings:
            other = self._evaluate_one(reading, now)[0]
            stricter = _STRICTNESS[other.effect] - _STRICTNESS[strictest.effect]
            if stricter > 0 or (
                # As strict: a policy that decides names the reason better than a reading Cedar cannot evaluate.
                stricter == 0
                and strictest is not decision
                and strictest.reason_code == "cedar_error"
                and other.reason_code != "cedar_error"
            ):
                strictest = other
        if strictest is decision:
            return decision, reasons, errors, None
        detail = f"{why}, which {strictest.rule} decides as {strictest.effect.value}"
        if strictest.effect is Effect.REQUIRE_APPROVAL:
            reason = f"{strictest.rule} may apply ({detail}), so approval is required"
            approval = self._decision(Effect.REQUIRE_APPROVAL, strictest.rule, reason, "approval_required")
            return approval, reasons, errors, detail
        return self._unknown(strictest.rule, detail), reasons, errors, detail

    def _unknown(self, rule: str, detail: str) -> Decision:
        return self._decision(Effect.DENY, rule, f"{rule}: unknown ({detail}), which denies", "condition_unevaluable")

    def _evaluate_one(self, ctx: GovContext, now: float) -> tuple[Decision, list[str], list[str]]:
        try:
            request = self.request(ctx, now)
            result = self._cedarpy.is_authorized(request, self.policy._policies, self._entities)
        except Exception as exc:  # noqa: BLE001 - whatever Cedar or the mapping refuses is a deny
            return (
                self._decision(Effect.DENY, CEDAR_ERROR, f"Cedar request failed: {exc}", "cedar_error"),
                [],
                [str(exc)],
            )
        reasons = [str(r) for r in result.diagnostics.reasons]
        errors = [str(e) for e in result.diagnostics.errors]
        if errors:
            detail = f"Cedar evaluation reported {len(errors)} error(s): {errors[0]}"
            return self._decision(Effect.DENY, CEDAR_ERROR, detail, "cedar_error"), reasons, errors
        if not result.allowed:
            if reasons:
                rule = self.policy.rule_id(sorted(reasons, key=_policy_order)[0])
                return self._decision(Effect.DENY, rule, f"forbidden by {rule}", "policy_deny"), reasons, errors
            return self._default_deny, reasons, errors
        ordered = sorted(reasons, key=_policy_order)
        approvals = [r for r in ordered if "approval" in self.policy.annotations.get(r, {})]
        if approvals:
            # Each approval policy that applies is asked about in turn (not only the first).
            ids = [self.policy.rule_id(r) for r in approvals]
            rule = ids[approval_rule_to_ask(ctx, ids)]
            return (
                self._decision(Effect.REQUIRE_APPROVAL, rule, f"{rule} needs approval", "approval_required"),
                reasons,
                errors,
            )
        rule = self.policy.rule_id(ordered[0]) if ordered else CEDAR_DEFAULT_DENY
        return self._decision(Effect.ALLOW, rule, f"permitted by {rule}", "allowed"), reasons, errors

    def decide(self, ctx: GovContext, *, history: TaskHistory | None = None, now: float | None = None) -> Decision:
        """Decide ``ctx`` with Cedar (``history`` is not used)."""
        return self._evaluate(ctx, time.time() if now is None else now)[0]

    def explain(self, ctx: GovContext, *, history: TaskHistory | None = None, now: float | None = None) -> Explanation:
        """Which Cedar policies determined the decision, and any evaluation errors."""
        decision, reasons, errors, unknown = self._evaluate(ctx, time.time() if now is None else now)
        traces = [
            RuleTrace(self.policy.rule_id(r), "cedar", True, "determining policy")
            for r in sorted(reasons, key=_policy_order)
        ]
        traces += [RuleTrace(CEDAR_ERROR, "cedar", True, e, True) for e in errors]
        if unknown is not None:
            traces.append(RuleTrace(decision.rule, "cedar", True, f"unknown: {unknown}", True))
            summary = f"a tenant or purpose is unknown on this request ({unknown}); uncertainty only ever denies"
        elif errors:
            summary = "Cedar reported an evaluation error, which denies even if a policy permits"
        elif decision.rule == CEDAR_DEFAULT_DENY:
            summary = "no Cedar policy permits (nothing matching means deny)"
        elif decision.effect is Effect.DENY:
            summary = "a forbid policy applies (forbid overrides permit)"
        elif decision.effect is Effect.REQUIRE_APPROVAL:
            summary = "a permit annotated @approval applies"
        else:
            summary = "a permit applies and no forbid does"
        return Explanation(
            decision,
            describe_request(ctx),
            tuple(traces),
            len(self.policy.annotations),
            summary,
            self.engine_name,
            self.version,
        )


def _is_context_attr(node: Any, attr: str) -> bool:
    """Whether ``node`` is Cedar's JSON for ``context.<attr>`` (or ``context["<attr>"]``)."""
    if not isinstance(node, Mapping):
        return False
    access = node.get(".")
    return isinstance(access, Mapping) and access.get("attr") == attr and access.get("left") == {"Var": "context"}


def _strings(node: Any) -> list[str]:
    """Every string literal in an expression (``{"Value": "..."}``, inside sets too)."""
    if isinstance(node, Mapping):
        value = node.get("Value")
        if isinstance(value, str) and len(node) == 1:
            return [value]
        return [s for child in node.values() for s in _strings(child)]
    if isinstance(node, list):
        return [s for child in node for s in _strings(child)]
    return []


def _like_patterns(node: Any, attr: str) -> list[list[Any]]:
    """The ``like`` patterns ``context.<attr>`` is matched with (Cedar's JSON parts)."""
    found: list[list[Any]] = []
    if isinstance(node, Mapping):
        like = node.get("like")
        if isinstance(like, Mapping) and _is_context_attr(like.get("left"), attr):
            found.append(list(like.get("pattern") or []))
        for child in node.values():
            found.extend(_like_patterns(child, attr))
    elif isinstance(node, list):
        for child in node:
            found.extend(_like_patterns(child, attr))
    return found


def _fold(text: str) -> str:
    """:func:`name_key` of a part of a name (without trimming its whitespace)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")


def _like_regex(parts: list[Any], fold: Callable[[str], str]) -> re.Pattern[str]:
    """A ``like`` pattern as a regular expression over ``fold`` of its literal runs."""
    out: list[str] = []
    run: list[str] = []
    for part in parts:
        if isinstance(part, Mapping) and isinstance(part.get("Literal"), str):
            run.append(part["Literal"])
        else:
            out.append(re.escape(fold("".join(run))) + ".*")
            run = []
    out.append(re.escape(fold("".join(run))))
    return re.compile("".join(out), re.DOTALL)


def _like_name(parts: list[Any]) -> str:
    """A name that a ``like`` pattern matches: its literal characters, wildcards as nothing."""
    return "".join(p["Literal"] for p in parts if isinstance(p, Mapping) and isinstance(p.get("Literal"), str))


def _compared_names(node: Any, attr: str) -> set[str]:
    """The names the policies compare ``context.<attr>`` with (a ``like`` pattern as its literal
    characters, its wildcards read as nothing)."""
    return _compared_with(node, lambda n: _is_context_attr(n, attr))


def _is_claim(node: Any, name: str) -> bool:
    """Whether ``node`` is Cedar's JSON for ``context.claims.<name>``."""
    return bool(node == {".": {"left": _CLAIMS, "attr": name}})


def _compared_with(node: Any, is_target: Callable[[Any], bool]) -> set[str]:
    """The strings the policies compare the expression ``is_target`` accepts with."""
    found: set[str] = set()
    if isinstance(node, Mapping):
        for op, body in node.items():
            if isinstance(body, Mapping) and "left" in body:
                sides = (body.get("left"), body.get("right"))
                if op == "like" and is_target(body.get("left")):
                    found.add(_like_name(list(body.get("pattern") or [])))
                elif any(is_target(side) for side in sides):
                    for side in sides:
                        if not is_target(side):
                            found.update(_strings(side))
            found |= _compared_with(body, is_target)
    elif isinstance(node, list):
        for child in node:
            found |= _compared_with(child, is_target)
    return found


_ARGS = {".": {"left": {"Var": "context"}, "attr": "args"}}


_MAX_ARG_DEPTH = 32
"""The deepest argument path (``context.args.a.b...``) read; a deeper one is not looked into."""


def _arg_path(node: Any) -> tuple[str, ...] | None:
    """The argument path ``node`` reads (``context.args.opts.mode``: ``("opts", "mode")``;
    ``context.args`` itself: ``()``), or None when it reads no argument."""
    attrs: list[str] = []
    for _ in range(_MAX_ARG_DEPTH + 1):
        if node == _ARGS:
            return tuple(reversed(attrs))
        access = node.get(".") if isinstance(node, Mapping) else None
        if not isinstance(access, Mapping) or not isinstance(access.get("attr"), str):
            return None
        attrs.append(access["attr"])
        node = access.get("left")
    return None


def _is_arg(node: Any, path: tuple[str, ...]) -> bool:
    """Whether ``node`` is Cedar's JSON for ``context.args.<path>``."""
    return _arg_path(node) == path


def _args_read(node: Any) -> set[tuple[str, ...]]:
    """The argument paths the policies read (``context.args.<name>``, ``context.args.<name>.<key>``...)."""
    found: set[tuple[str, ...]] = set()
    if isinstance(node, Mapping):
        if "." in node:
            path = _arg_path(node)
            if path:
                found.add(path)
        for child in node.values():
            found |= _args_read(child)
    elif isinstance(node, list):
        for child in node:
            found |= _args_read(child)
    return found


def _at_path(arguments: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in ``arguments`` (through nested objects), or ``_ABSENT``."""
    value: Any = arguments
    for key in path:
        if not isinstance(value, Mapping):
            return _ABSENT
        value = value.get(key, _ABSENT)
        if value is _ABSENT:
            return _ABSENT
    return value


def _with_path(arguments: Mapping[str, Any] | None, path: tuple[str, ...], value: Any) -> Mapping[str, Any]:
    """A copy of ``arguments`` holding ``value`` at ``path`` (the objects along it copied)."""
    inner = (arguments or {}).get(path[0]) if len(path) > 1 else None
    placed = _with_path(inner if isinstance(inner, Mapping) else None, path[1:], value) if len(path) > 1 else value
    return MappingProxyType({**(arguments or {}), path[0]: placed})


def _literals(node: Any) -> list[Any]:
    """Every string, integer or boolean literal in an expression (inside sets too)."""
    if isinstance(node, Mapping):
        value = node.get("Value", _ABSENT)
        if len(node) == 1 and isinstance(value, (str, int)):
            return [value]
        return [v for child in node.values() for v in _literals(child)]
    if isinstance(node, list):
        return [v for child in node for v in _literals(child)]
    return []


def _compared_literals(node: Any, is_target: Callable[[Any], bool]) -> tuple[Any, ...]:
    """The literals the policies compare the expression ``is_target`` accepts with (``true`` and
    ``1`` kept apart)."""
    found: dict[tuple[type, Any], Any] = {}

    def walk(n: Any) -> None:
        if isinstance(n, Mapping):
            for body in n.values():
                if isinstance(body, Mapping) and "left" in body:
                    sides = (body.get("left"), body.get("right"))
                    if any(is_target(side) for side in sides):
                        for side in sides:
                            if not is_target(side):
                                for literal in _literals(side):
                                    found.setdefault((type(literal), literal), literal)
                walk(body)
        elif isinstance(n, list):
            for child in n:
                walk(child)

    walk(node)
    return tuple(found.values())


def _read_as_literals(value: Any, literals: tuple[Any, ...]) -> list[Any]:
    """The literals a scalar ``value`` that is none of them as sent could be read as by a tool."""
    if isinstance(value, (Mapping, list, tuple)):
        return []
    if isinstance(value, str) and len(value) > MAX_CONDITION_STRING:
        return []  # Cedar judges it as sent; a literal that long is not compared here
    if any(_same_literal(value, literal) for literal in literals):
        return []
    return [literal for literal in literals if _stands_for(value, literal)]


def _same_literal(value: Any, literal: Any) -> bool:
    """Cedar's equality of an argument and a literal: the same type and value (a whole float is
    sent as an integer)."""
    if isinstance(value, bool) or isinstance(literal, bool):
        return type(value) is type(literal) and value == literal
    if isinstance(value, str) or isinstance(literal, str):
        return isinstance(value, str) and isinstance(literal, str) and value == literal
    return bool(value == literal)


def _stands_for(value: Any, literal: Any) -> bool:
    """Whether a tool may receive ``value`` as ``literal``: another JSON type that reads as it,
    or a string equal to it only after NFKC normalisation."""
    if reads_as(value, literal):
        return True
    return (
        isinstance(value, str)
        and isinstance(literal, str)
        and not value.isascii()
        and unicodedata.normalize("NFKC", value) == unicodedata.normalize("NFKC", literal)
    )


_CLAIMS = {".": {"left": {"Var": "context"}, "attr": "claims"}}
_ABSENT = object()


def _reads(node: Any, target: Mapping[str, Any]) -> bool:
    """Whether the expression ``target`` occurs in ``node``."""
    if isinstance(node, Mapping):
        return node == target or any(_reads(child, target) for child in node.values())
    if isinstance(node, list):
        return any(_reads(child, target) for child in node)
    return False


def _claims_read(node: Any) -> frozenset[str] | None:
    """The claim names the policies read, or None when they use ``context.claims`` as a whole."""
    names: set[str] = set()

    def walk(n: Any) -> bool:
        """False once the whole claims record is used."""
        if isinstance(n, Mapping):
            if n == _CLAIMS:
                return False
            for op in (".", "has"):
                body = n.get(op)
                if isinstance(body, Mapping) and body.get("left") == _CLAIMS and isinstance(body.get("attr"), str):
                    names.add(body["attr"])
                    return True
            return all(walk(child) for child in n.values())
        if isinstance(n, list):
            return all(walk(child) for child in n)
        return True

    return frozenset(names) if walk(node) else None


def _policy_order(policy_id: str) -> tuple[int, str]:
    digits = policy_id.removeprefix("policy")
    return (int(digits), policy_id) if digits.isdigit() else (1 << 30, policy_id)
