"""Compiled conditions: argument, principal, purpose, time and task-history checks.

Each condition of a rule compiles to a :class:`Check`: a label (``arguments.path``), a
readable description (for explain), and a function ``(ctx, facts) -> bool``. A check that
cannot evaluate the value it is given (wrong type or shape, no task for a history condition)
raises :class:`ConditionError`; the engine turns that into a deny.

Path conditions compare canonical paths: the value is percent-decoded (repeatedly),
normalised with :func:`posixpath.normpath` and compared segment-wise with the roots. A
value with a ``..`` segment, an encoded dot, slash or backslash, a backslash, a NUL byte,
or a relative path (unless allowed) never satisfies a path condition.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any
from urllib.parse import unquote

from mcpgov._context import GovContext
from mcpgov._errors import McpGovError
from mcpgov._principal import Principal
from mcpgov.policy._history import HistoryNeeds, TaskHistory, parse_target
from mcpgov.policy._model import (
    ArgumentCondition,
    Bounds,
    ClaimValue,
    Conditions,
    HistoryCondition,
    PathCondition,
    PrincipalMatcher,
    TimeWindow,
)

__all__ = ["Check", "ConditionError", "Facts", "compile_conditions", "compile_principal", "path_within"]


class ConditionError(McpGovError):
    """A condition could not be evaluated on the request (the engine denies)."""

    def __init__(self, label: str, detail: str) -> None:
        super().__init__(f"{label}: {detail}")
        self.label = label
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Facts:
    """What a decision knows besides the request.

    Attributes:
        now: the time of the decision (seconds since the epoch).
        history: the task's history; ``None`` when the request names no task.
        risk: the declared risk level of the target, when declared.
        discover: the decision is about a listing (arguments and history are unknown).
    """

    now: float
    history: TaskHistory | None = None
    risk: str | None = None
    discover: bool = False


CheckFn = Callable[[GovContext, Facts], bool]
_NO_NEEDS = HistoryNeeds()


@dataclass(frozen=True, slots=True)
class Check:
    """One compiled condition.

    Attributes:
        label: where it comes from (``arguments.path``, ``purposes``...).
        text: a readable statement of what must hold.
        deferred: depends on arguments or history, which a listing does not know.
        fn: the test.
        needs: what it needs from task history.
    """

    label: str
    text: str
    deferred: bool
    fn: CheckFn
    needs: HistoryNeeds = _NO_NEEDS


_MISSING = object()


def _scalar_eq(value: Any, expected: Any) -> bool:
    """JSON equality: booleans never equal numbers; ints and floats compare by value."""
    if expected is None or value is None:
        return value is expected
    if isinstance(expected, bool) or isinstance(value, bool):
        return type(value) is type(expected) and value == expected
    if isinstance(expected, str) or isinstance(value, str):
        return isinstance(value, str) and isinstance(expected, str) and value == expected
    return bool(value == expected)


def _require_scalar(label: str, value: Any) -> None:
    if isinstance(value, (Mapping, tuple, list)):
        raise ConditionError(
            label, f"expected a scalar, got {'an object' if isinstance(value, Mapping) else 'an array'}"
        )


def _require_str(label: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConditionError(label, f"expected a string, got {_type_name(value)}")
    return value


def _require_number(label: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConditionError(label, f"expected a number, got {_type_name(value)}")
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (tuple, list)):
        return "an array"
    return type(value).__name__


_ENCODED_SEPARATORS = ("%2e", "%2f", "%5c", "%00")


def path_within(value: str, roots: tuple[str, ...], *, allow_relative: bool = False) -> bool:
    """True when ``value`` is, canonically, a path inside one of ``roots``.

    Refuses (False): NUL bytes, backslashes, percent-encoded dots/slashes/backslashes/NUL,
    any ``..`` segment at any decoding level, relative paths unless ``allow_relative``, and
    anything whose normalised form is not ``root`` itself or below ``root + "/"`` (so
    ``/data-evil`` is not inside ``/data``).

    Args:
        value: the path as received.
        roots: absolute, normalised roots.
        allow_relative: resolve relative paths against each root instead of refusing them.
    """
    forms = [value]
    current = value
    for _ in range(4):
        decoded = unquote(current)
        if decoded == current:
            break
        forms.append(decoded)
        current = decoded
    else:
        return False  # still changing after several decodings: refuse
    for form in forms:
        if "\x00" in form or "\\" in form:
            return False
        lowered = form.lower()
        if any(enc in lowered for enc in _ENCODED_SEPARATORS):
            return False
        if ".." in form.split("/"):
            return False
    # Every decoding level must be inside a root: a tool may or may not decode its input.
    return all(_form_within(form, roots, allow_relative) for form in forms)


def _form_within(form: str, roots: tuple[str, ...], allow_relative: bool) -> bool:
    if not form:
        return False
    if form.startswith("/"):
        candidates = [(posixpath.normpath("/" + form.lstrip("/")), root) for root in roots]
    elif allow_relative:
        candidates = [(posixpath.normpath(posixpath.join(root, form)), root) for root in roots]
    else:
        return False
    return any(root in (norm, "/") or norm.startswith(root + "/") for norm, root in candidates)


def _scopes_of(principal: Principal) -> frozenset[str]:
    claims = principal.claims
    out: set[str] = set()
    for key in ("scope", "scp", "scopes"):
        value = claims.get(key)
        if isinstance(value, str):
            out.update(value.split())
        elif isinstance(value, (list, tuple)):
            out.update(v for v in value if isinstance(v, str))
    return frozenset(out)


def _claim_matches(actual: Any, expected: ClaimValue) -> bool:
    options = expected if isinstance(expected, list) else [expected]
    if isinstance(actual, (list, tuple)):
        return any(_scalar_eq(item, option) for item in actual for option in options if not isinstance(item, Mapping))
    if isinstance(actual, Mapping):
        return False
    return any(_scalar_eq(actual, option) for option in options)


def _claims_match(principal: Principal | None, claims: Mapping[str, ClaimValue]) -> bool:
    if principal is None:
        return False
    actual = principal.claims
    for name, expected in claims.items():
        if name not in actual or not _claim_matches(actual[name], expected):
            return False
    return True


def compile_principal(matchers: list[PrincipalMatcher]) -> Callable[[Principal], bool]:
    """A test for "the principal matches one of ``matchers``"."""

    def one(m: PrincipalMatcher) -> Callable[[Principal], bool]:
        issuer, subject, spiffe = m.issuer, m.subject, m.spiffe
        claims = dict(m.claims) if m.claims else None
        scopes = frozenset(m.scopes) if m.scopes else None

        def test(p: Principal) -> bool:
            if issuer is not None and p.issuer != issuer:
                return False
            if subject is not None and not fnmatch.fnmatchcase(p.subject, subject):
                return False
            if spiffe is not None and (p.spiffe_id is None or not fnmatch.fnmatchcase(p.spiffe_id, spiffe)):
                return False
            if claims is not None and not _claims_match(p, claims):
                return False
            return not (scopes is not None and not scopes <= _scopes_of(p))

        return test

    tests = tuple(one(m) for m in matchers)
    return lambda p: any(t(p) for t in tests)


Op = Callable[[Any, GovContext], bool]


def _bounds_text(lo: float | None, hi: float | None) -> str:
    return f"[{'' if lo is None else lo}, {'' if hi is None else hi}]"


def _op_equals(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if "equals" not in cond.model_fields_set:
        return None
    expected = cond.equals

    def op(v: Any, _c: GovContext) -> bool:
        _require_scalar(label, v)
        return _scalar_eq(v, expected)

    return op, f"equals {expected!r}"


def _op_in(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if cond.in_ is None:
        return None
    options = tuple(cond.in_)

    def op(v: Any, _c: GovContext) -> bool:
        _require_scalar(label, v)
        return any(_scalar_eq(v, o) for o in options)

    return op, f"in {list(options)!r}"


def _op_not_in(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if cond.not_in is None:
        return None
    excluded = tuple(cond.not_in)

    def op(v: Any, _c: GovContext) -> bool:
        _require_scalar(label, v)
        return not any(_scalar_eq(v, o) for o in excluded)

    return op, f"not in {list(excluded)!r}"


def _op_glob(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if cond.glob is None:
        return None
    globs = tuple(cond.glob)

    def op(v: Any, _c: GovContext) -> bool:
        s = _require_str(label, v)
        return any(fnmatch.fnmatchcase(s, g) for g in globs)

    return op, f"matches {list(globs)!r}"


def _op_regex(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if cond.regex is None:
        return None
    pattern = re.compile(cond.regex)

    def op(v: Any, _c: GovContext) -> bool:
        return pattern.fullmatch(_require_str(label, v)) is not None

    return op, f"matches /{cond.regex}/"


def _op_bounds(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    lo, hi = cond.min, cond.max
    if lo is None and hi is None:
        return None

    def op(v: Any, _c: GovContext) -> bool:
        n = _require_number(label, v)
        return (lo is None or n >= lo) and (hi is None or n <= hi)

    return op, f"within {_bounds_text(lo, hi)}"


def _op_length(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    lo, hi = cond.min_length, cond.max_length
    if lo is None and hi is None:
        return None

    def op(v: Any, _c: GovContext) -> bool:
        if not isinstance(v, (str, tuple, list)):
            raise ConditionError(label, f"expected a string or an array, got {_type_name(v)}")
        n = len(v)
        return (lo is None or n >= lo) and (hi is None or n <= hi)

    return op, f"length within {_bounds_text(lo, hi)}"


def _op_path(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if cond.path is None:
        return None
    path: PathCondition = cond.path
    roots = tuple(path.under)
    relative = path.allow_relative

    def op(v: Any, _c: GovContext) -> bool:
        return path_within(_require_str(label, v), roots, allow_relative=relative)

    return op, f"is a path under {list(roots)!r}"


def _op_same_as(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    which = cond.same_as
    if which is None:
        return None

    def op(v: Any, c: GovContext) -> bool:
        s = _require_str(label, v)
        principal = c.principal
        ref = (principal.subject if principal is not None else None) if which == "subject" else getattr(c, which)
        return ref is not None and s == ref

    return op, f"equals the request's {which}"


_OPERATORS = (_op_equals, _op_in, _op_not_in, _op_glob, _op_regex, _op_bounds, _op_length, _op_path, _op_same_as)


def _argument_check(name: str, cond: ArgumentCondition) -> Check:
    label = f"arguments.{name}"
    built = [b for b in (make(label, cond) for make in _OPERATORS) if b is not None]
    operators = tuple(op for op, _ in built)
    optional = cond.optional

    def check(ctx: GovContext, _f: Facts) -> bool:
        args = ctx.arguments
        value = args.get(name, _MISSING) if args is not None else _MISSING
        if value is _MISSING:
            return optional
        return all(op(value, ctx) for op in operators)

    text = f"argument {name!r} " + " and ".join(t for _, t in built)
    text += " (or is absent)" if optional else " (must be present)"
    return Check(label, text, True, check)


def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return timezone.utc
    from zoneinfo import ZoneInfo  # noqa: PLC0415 - only when a zone is named

    return ZoneInfo(name)


def _time_check(window: TimeWindow) -> Check:
    zone = _zone(window.timezone)
    days = frozenset(window.days) if window.days else None
    day_names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    start = _minutes(window.start) if window.start else None
    end = _minutes(window.end) if window.end else None
    after = window.after.timestamp() if window.after else None
    before = window.before.timestamp() if window.before else None

    def check(_c: GovContext, facts: Facts) -> bool:
        now = facts.now
        if after is not None and now < after:
            return False
        if before is not None and now >= before:
            return False
        if days is None and start is None:
            return True
        local = datetime.fromtimestamp(now, zone)
        if days is not None and day_names[local.weekday()] not in days:
            return False
        if start is not None and end is not None:
            minute = local.hour * 60 + local.minute
            inside = start <= minute < end if start <= end else (minute >= start or minute < end)
            if not inside:
                return False
        return True

    bits = []
    if days:
        bits.append("on " + ",".join(window.days or ()))
    if start is not None:
        bits.append(f"between {window.start} and {window.end}")
    if after is not None:
        bits.append(f"after {window.after}")
    if before is not None:
        bits.append(f"before {window.before}")
    return Check("time", "time is " + " ".join(bits) + f" ({window.timezone})", False, check)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _history(facts: Facts, label: str) -> TaskHistory:
    history = facts.history
    if history is None:
        raise ConditionError(label, "the request names no task, so its history is unknown")
    return history


def _history_checks(h: HistoryCondition) -> list[Check]:
    checks: list[Check] = []
    if h.seen_labels is not None:
        seen = frozenset(h.seen_labels)
        checks.append(
            Check(
                "history.seen_labels",
                f"the task already touched something labelled {sorted(seen)}",
                True,
                lambda _c, f: bool(_history(f, "history.seen_labels").labels & seen),
                HistoryNeeds(labels=seen),
            )
        )
    if h.not_seen_labels is not None:
        unseen = frozenset(h.not_seen_labels)
        checks.append(
            Check(
                "history.not_seen_labels",
                f"the task touched nothing labelled {sorted(unseen)}",
                True,
                lambda _c, f: not (_history(f, "history.not_seen_labels").labels & unseen),
                HistoryNeeds(labels=unseen),
            )
        )
    if h.called is not None:
        called = frozenset(parse_target(t) for t in h.called)
        checks.append(
            Check(
                "history.called",
                f"the task already used one of {sorted(called)}",
                True,
                lambda _c, f: bool(_history(f, "history.called").called & called),
                HistoryNeeds(targets=called),
            )
        )
    if h.not_called is not None:
        not_called = frozenset(parse_target(t) for t in h.not_called)
        checks.append(
            Check(
                "history.not_called",
                f"the task used none of {sorted(not_called)}",
                True,
                lambda _c, f: not (_history(f, "history.not_called").called & not_called),
                HistoryNeeds(targets=not_called),
            )
        )
    if h.last_called is not None:
        last = frozenset(parse_target(t) for t in h.last_called)
        checks.append(
            Check(
                "history.last_called",
                f"the task's previous request was to one of {sorted(last)}",
                True,
                lambda _c, f: _history(f, "history.last_called").last in last,
                HistoryNeeds(last=True),
            )
        )
    if h.calls_below is not None:
        below = h.calls_below
        checks.append(
            Check(
                "history.calls_below",
                f"the task has run fewer than {below} tool calls",
                True,
                lambda _c, f: _history(f, "history.calls_below").calls < below,
                HistoryNeeds(count=True),
            )
        )
    if h.calls_at_least is not None:
        at_least = h.calls_at_least
        checks.append(
            Check(
                "history.calls_at_least",
                f"the task has run at least {at_least} tool calls",
                True,
                lambda _c, f: _history(f, "history.calls_at_least").calls >= at_least,
                HistoryNeeds(count=True),
            )
        )
    return checks


def _depth_check(bounds: Bounds) -> Check:
    lo, hi = bounds.min, bounds.max

    def check(ctx: GovContext, _f: Facts) -> bool:
        depth = len(ctx.principal.actors) if ctx.principal is not None else 0
        return (lo is None or depth >= lo) and (hi is None or depth <= hi)

    text = f"delegation depth within [{'' if lo is None else lo}, {'' if hi is None else hi}]"
    return Check("delegation_depth", text, False, check)


def compile_conditions(conditions: Conditions, prefix: str) -> tuple[Check, ...]:
    """Compile a ``when`` or ``unless`` block into its checks (cheap ones first)."""
    checks: list[Check] = []
    if conditions.tenants is not None:
        tenants = frozenset(conditions.tenants)
        checks.append(
            Check(f"{prefix}.tenants", f"tenant is one of {sorted(tenants)}", False, lambda c, _f: c.tenant in tenants)
        )
    if conditions.purposes is not None:
        purposes = frozenset(conditions.purposes)
        checks.append(
            Check(
                f"{prefix}.purposes",
                f"declared purpose is one of {sorted(purposes)}",
                False,
                lambda c, _f: c.purpose in purposes,
            )
        )
    if conditions.scopes is not None:
        scopes = frozenset(conditions.scopes)
        checks.append(
            Check(
                f"{prefix}.scopes",
                f"principal holds scopes {sorted(scopes)}",
                False,
                lambda c, _f: c.principal is not None and scopes <= _scopes_of(c.principal),
            )
        )
    if conditions.claims is not None:
        claims = dict(conditions.claims)
        checks.append(
            Check(
                f"{prefix}.claims",
                f"principal claims match {claims!r}",
                False,
                lambda c, _f: _claims_match(c.principal, claims),
            )
        )
    if conditions.risk is not None:
        risks = frozenset(conditions.risk)
        checks.append(
            Check(f"{prefix}.risk", f"declared risk is one of {sorted(risks)}", False, lambda _c, f: f.risk in risks)
        )
    if conditions.delegation_depth is not None:
        check = _depth_check(conditions.delegation_depth)
        checks.append(Check(f"{prefix}.{check.label}", check.text, False, check.fn))
    if conditions.time is not None:
        check = _time_check(conditions.time)
        checks.append(Check(f"{prefix}.{check.label}", check.text, False, check.fn))
    for name, cond in conditions.arguments.items():
        check = _argument_check(name, cond)
        checks.append(Check(f"{prefix}.{check.label}", check.text, True, check.fn))
    if conditions.history is not None:
        checks.extend(
            Check(f"{prefix}.{check.label}", check.text, True, check.fn, check.needs)
            for check in _history_checks(conditions.history)
        )
    return tuple(checks)
