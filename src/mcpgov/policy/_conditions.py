"""Compiled conditions: argument, principal, purpose, time and task-history checks.

Each condition of a rule compiles to a :class:`Check`: a label (``arguments.path``), a
readable description (for explain), and a function ``(ctx, facts) -> bool``. Conditions are
three-valued: the function returns true or false, or raises :class:`ConditionError` when the
value cannot be judged (wrong type or shape, too large, a path that cannot be canonicalised,
a string that matches only after Unicode normalisation, no task for a history condition).
The engine counts an unknown condition as *matching* for a deny (and an approval) and as *not
matching* for an allow, so uncertainty can only deny.

Path conditions judge every spelling a tool could act on: the value as received, each
percent-decoding level, its NFKC normalisation and its best-fit (look-alike) mapping, with
backslashes both as characters and as separators; ``.`` and empty segments are dropped. A
path is inside the roots when every spelling is, outside when none is, and unknown otherwise,
or when it holds a NUL byte, a ``..`` segment, undecodable percent-encoding (overlong UTF-8...),
too many encoding levels, or is relative (unless allowed).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

from mcpgov._context import GovContext
from mcpgov._errors import McpGovError
from mcpgov._principal import Principal
from mcpgov.policy._history import HistoryNeeds, TaskHistory, folded_target, parse_target
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
from mcpgov.policy._regex import compile_regex, glob_to_regex

__all__ = [
    "MAX_CONDITION_STRING",
    "MAX_PATH_LENGTH",
    "Check",
    "ConditionError",
    "Facts",
    "NameSet",
    "canonical_path",
    "compile_conditions",
    "compile_principal",
    "compile_regex",
    "granted_scopes",
    "name_key",
    "path_within",
    "reads_as",
    "spelling_of",
    "spellings",
]

MAX_CONDITION_STRING = 16_384
"""The longest string (in characters) a condition judges; a longer value is unknown."""
MAX_PATH_LENGTH = 4_096
"""The longest path (in characters) a path condition judges; a longer value is unknown."""
_MAX_SPELLINGS = 32
Memo = dict[Any, Any]


class ConditionError(McpGovError):
    """A condition's value is unknown on this request: it could not be judged true or false.

    The engine counts it as matching for a deny or approval rule and as not matching for an
    allow rule; explain names ``label`` and ``detail``.
    """

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
        memo: work done on argument values during this decision (NFKC forms, path spellings),
            shared by every rule so each value is normalised once per decision.
    """

    now: float
    history: TaskHistory | None = None
    risk: str | None = None
    discover: bool = False
    memo: Memo = field(default_factory=dict)


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

    def unknown_in_listing(self, facts: Facts) -> bool:
        """True when a listing cannot know this condition: arguments always, history without a task."""
        return self.deferred and (not self.needs or facts.history is None)


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
    if len(value) > MAX_CONDITION_STRING:
        raise ConditionError(label, f"a string longer than {MAX_CONDITION_STRING} characters is not judged")
    return value


def _nfkc(value: str, memo: Memo | None = None) -> str:
    if value.isascii():
        return value
    if memo is None:
        return unicodedata.normalize("NFKC", value)
    key = ("nfkc", value)
    found = memo.get(key)
    if found is None:
        found = memo[key] = unicodedata.normalize("NFKC", value)
    return str(found)


def _ambiguous(label: str, what: str) -> ConditionError:
    return ConditionError(label, f"the value {what} only after Unicode NFKC normalisation (a look-alike spelling)")


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


@functools.cache
def _bestfit_table() -> dict[int, str]:
    """Characters a lossy conversion may turn into ``.``, ``/`` or ``\\``.

    Symbols (not letters or digits) that Unicode's confusables data lists as look-alikes of the
    three, plus the yen and won signs (the backslash of the Japanese and Korean code pages).
    """
    import confusables  # type: ignore[import-untyped]  # noqa: PLC0415 - loaded when a path condition first runs

    table: dict[int, str] = {0xA5: "\\", 0x20A9: "\\"}
    for target in "./\\":
        for candidate in confusables.confusable_characters(target) or ():
            if len(candidate) == 1 and candidate != target and unicodedata.category(candidate)[0] not in "LN":
                table[ord(candidate)] = target
    return table


def spellings(value: str) -> set[str]:
    """Every spelling of ``value`` a tool could act on: as received, each percent-decoding level,
    NFKC forms and best-fit look-alikes (closed under these steps).

    Raises:
        ValueError: too long, undecodable percent-encoding, or too many encoding levels.
    """
    if len(value) > MAX_PATH_LENGTH:
        raise ValueError(f"a path longer than {MAX_PATH_LENGTH} characters is not judged")
    if value.isascii() and "%" not in value:
        return {value}
    table = _bestfit_table()
    forms = {value}
    frontier = [value]
    while frontier:
        current = frontier.pop()
        try:
            decoded = unquote(current, errors="strict")
        except UnicodeDecodeError:
            raise ValueError("percent-encoding that is not UTF-8 (overlong or invalid bytes)") from None
        for form in (decoded, unicodedata.normalize("NFKC", current), current.translate(table)):
            if form not in forms:
                forms.add(form)
                frontier.append(form)
                if len(forms) > _MAX_SPELLINGS:
                    raise ValueError("too many encoding levels")
    return forms


_DRIVE = re.compile(r"[A-Za-z]:")
_SHORT_NAME = re.compile(r"[^.]{1,6}~[0-9]{1,6}(\.[^.]{0,3})?")
"""A Windows short (8.3) name: up to six characters, ~, a number, an extension of up to three."""


def _segments(form: str, allow_relative: bool) -> tuple[bool, list[str]]:
    """(absolute, segments without '.' and empty ones), or raise ValueError."""
    if "\x00" in form:
        raise ValueError("a NUL byte")
    if form.startswith("//"):
        raise ValueError("two leading separators (a network share on Windows)")
    absolute = form.startswith("/")
    segments = [part for part in form.split("/") if part not in ("", ".")]
    if ".." in segments:
        raise ValueError("a '..' segment (where it leads depends on the file system)")
    if not absolute:
        if not allow_relative:
            raise ValueError("a relative path (what it is relative to is unknown)")
        if not segments or segments[0].startswith("~"):
            raise ValueError("an empty or home-relative path")
        if _DRIVE.match(segments[0]):
            raise ValueError("a drive letter (an absolute path on Windows)")
    return absolute, segments


def _folded(canonical: str) -> str:
    """A canonical path as a case-insensitive file system (Windows, macOS) reads it: each segment
    case-folded, without a stream name (``name:stream``) or trailing dots and spaces.

    Raises:
        ValueError: a segment that is nothing once folded, or may be a Windows short (8.3) name.
    """
    out: list[str] = []
    for segment in canonical.split("/")[1:] if canonical != "/" else ():
        folded = segment.casefold().split(":", 1)[0].rstrip(". ")
        if not folded:
            raise ValueError(f"a segment that is empty once its stream name or trailing dots are dropped ({segment!r})")
        if _SHORT_NAME.fullmatch(folded):
            raise ValueError(f"a segment that may be a Windows short name ({segment!r})")
        out.append(folded)
    return "/" + "/".join(out)


def _forms(value: str, allow_relative: bool) -> tuple[tuple[str, str], ...]:
    """The canonical form of every spelling (``""`` for a relative one resolved under a root),
    each with its reading on a case-insensitive file system (:func:`_folded`).

    Raises:
        ValueError: the value cannot be canonicalised (the message says why).
    """
    out: set[tuple[str, str]] = set()
    for spelling in spellings(value):
        forms = (spelling, spelling.replace("\\", "/")) if "\\" in spelling else (spelling,)
        for form in forms:
            absolute, segments = _segments(form, allow_relative)
            canonical = "/" + "/".join(segments) if absolute else ""
            out.add((canonical, _folded(canonical) if absolute else ""))
    return tuple(out)


def _inside(canonical: str, roots: tuple[str, ...]) -> bool:
    return canonical == "" or any(root in (canonical, "/") or canonical.startswith(root + "/") for root in roots)


def _folded_roots(roots: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for root in roots:
        try:
            out.append(_folded(root))
        except ValueError:
            out.append(root.casefold())
    return tuple(out)


def _judge(value: str, roots: tuple[str, ...], allow_relative: bool, memo: Memo | None = None) -> bool:
    """True/False when every spelling agrees; raise ValueError when the answer is unknown."""
    if memo is None or (value.isascii() and "%" not in value and "\\" not in value):
        memo = None  # one spelling: cheaper to judge again than to remember
    key = ("path", allow_relative, value)
    found = memo.get(key) if memo is not None else None
    if found is None:
        try:
            found = _forms(value, allow_relative)
        except ValueError as exc:
            found = str(exc)
        if memo is not None:
            memo[key] = found
    if isinstance(found, str):
        raise ValueError(found)  # noqa: TRY004 - the cached reason of an unknown path
    folded_roots = _folded_roots(roots)
    inside = {_inside(canonical, roots) for canonical, _ in found}
    inside |= {_inside(folded, folded_roots) for _, folded in found}
    if len(inside) > 1:
        raise ValueError(
            "its spellings disagree (one is inside the roots, another is not, also as a case-insensitive "
            "file system reads it)"
        )
    return inside.pop()


def canonical_path(value: str) -> str:
    """The one canonical form of a path: fully percent-decoded, NFKC-normalised, look-alike
    separators and dots mapped, backslashes as separators, ``.`` and empty segments removed.

    Raises:
        ValueError: the path cannot be canonicalised (NUL byte, ``..`` segment, undecodable or
            too deeply nested percent-encoding, relative, too long); the message says why.
    """
    spellings(value)  # for its refusals (length, encoding levels, undecodable bytes)
    # The most decoded, normalised spelling: apply every step until nothing changes.
    current = value
    table = _bestfit_table() if not value.isascii() or "%" in value else {}
    for _ in range(_MAX_SPELLINGS):
        nxt = unquote(current, errors="strict")
        nxt = unicodedata.normalize("NFKC", nxt).translate(table) if table else nxt
        if nxt == current:
            break
        current = nxt
    _absolute, segments = _segments(current.replace("\\", "/"), allow_relative=False)
    return "/" + "/".join(segments)


def path_within(value: str, roots: tuple[str, ...], *, allow_relative: bool = False) -> bool | None:
    """Whether ``value`` is, in every spelling a tool could act on, a path inside one of ``roots``.

    Returns:
        True when every spelling is inside a root (the root itself or below ``root + "/"``, so
        ``/data-evil`` is not inside ``/data``), False when none is, and None (unknown) when
        they disagree (also as a case-insensitive file system reads them) or the value cannot be
        canonicalised: a NUL byte, a ``..`` segment, percent-encoding that is not UTF-8, too many
        encoding levels, a relative path (unless ``allow_relative``), a drive letter, two leading
        separators (a Windows network share), more than :data:`MAX_PATH_LENGTH` characters.

    Args:
        value: the path as received.
        roots: absolute, normalised roots.
        allow_relative: resolve relative paths against each root instead of calling them unknown.
    """
    try:
        return _judge(value, roots, allow_relative)
    except ValueError:
        return None


def granted_scopes(principal: Principal) -> frozenset[str]:
    """The OAuth scopes the principal's claims grant (``scope``/``scp`` strings or lists, ``scopes``).

    A principal without any of these claims holds no scopes.

    Raises:
        ConditionError: one of these claims is neither a string nor a list of strings (a number,
            an object, a list holding something else), so which scopes it grants is unknown.
    """
    claims = principal.claims
    out: set[str] = set()
    for key in ("scope", "scp", "scopes"):
        value = claims.get(key, _MISSING)
        if value is _MISSING:
            continue
        if isinstance(value, str):
            out.update(value.split())
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            out.update(value)
        else:
            raise ConditionError("scopes", f"the claim {key!r} holds {_type_name(value)} that is not a list of scopes")
    return frozenset(out)


def _claim_text(value: Any) -> str:
    """A claim scalar as text (a number or boolean as its JSON form), to compare spellings."""
    return value if isinstance(value, str) else json.dumps(value)


def _claim_matches(label: str, name: str, actual: Any, expected: ClaimValue) -> bool:
    """Whether the claim ``actual`` has (or, for a list claim, contains) one of the expected values.

    Raises:
        ConditionError: no value matches, but one is of an unexpected type (an object or a nested
            list) or reads as an expected value (``"3"`` for ``3``, ``Admin`` for ``admin``).
    """
    options = expected if isinstance(expected, list) else [expected]
    items = actual if isinstance(actual, (list, tuple)) else (actual,)
    unknown: str | None = None
    keys: dict[str, str] | None = None
    for item in items:
        if isinstance(item, (Mapping, list, tuple)):
            unknown = f"claim {name!r} holds {_type_name(item)} where a value is expected"
            continue
        for option in options:
            if _scalar_eq(item, option):
                return True
        if unknown is None:
            if keys is None:
                keys = {name_key(_claim_text(option)): _claim_text(option) for option in options}
            text = _claim_text(item)
            if len(text) <= MAX_CONDITION_STRING:
                near = spelling_of(text, keys)
                if near is not None:
                    unknown = f"claim {name!r} value {item!r} is another spelling of {near}"
    if unknown is not None:
        raise ConditionError(label, unknown)
    return False


def _claims_match(
    principal: Principal | None,
    claims: Mapping[str, ClaimValue],
    label: str = "claims",
    *,
    absent_unknown: bool = False,
) -> bool:
    """Whether every claim has an expected value (three-valued: see :func:`_claim_matches`).

    A claim the principal does not carry fails the match, or, with ``absent_unknown`` (where a
    match restricts: a deny's or approval's ``when`` and principals), is unknown: the token did
    not say, so it could have any value.
    """
    if principal is None:
        if absent_unknown:
            raise ConditionError(label, "the request has no principal, so its claims are unknown")
        return False
    actual = principal.claims
    unknown: ConditionError | None = None
    for name, expected in claims.items():
        if name not in actual:
            if not absent_unknown:
                return False
            unknown = unknown or ConditionError(label, f"the principal carries no claim {name!r}")
            continue
        try:
            if not _claim_matches(label, name, actual[name], expected):
                return False
        except ConditionError as exc:
            unknown = unknown or exc
    if unknown is not None:
        raise unknown
    return True


def compile_principal(matchers: list[PrincipalMatcher], *, absent_unknown: bool = False) -> Callable[[Principal], bool]:
    """A test for "the principal matches one of ``matchers``".

    Three-valued: it raises :class:`ConditionError` when no matcher matches but one might (its
    claims or scopes cannot be judged, see :func:`_claim_matches` and :func:`granted_scopes`,
    or, with ``absent_unknown``, it names a claim the principal does not carry) and every
    other part of it holds.
    """

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
            if scopes is not None and not scopes <= granted_scopes(p):
                return False
            return claims is None or _claims_match(p, claims, "principals.claims", absent_unknown=absent_unknown)

        return test

    tests = tuple(one(m) for m in matchers)

    def any_matches(p: Principal) -> bool:
        unknown: ConditionError | None = None
        for test in tests:
            try:
                if test(p):
                    return True
            except ConditionError as exc:
                unknown = unknown or exc
        if unknown is not None:
            raise unknown
        return False

    return any_matches


Op = Callable[[Any, GovContext, "Memo"], bool]


def _within(n: float, lo: float | None, hi: float | None) -> bool:
    """Whether ``lo <= n <= hi``, an absent bound not limiting."""
    return (lo is None or n >= lo) and (hi is None or n <= hi)


def _bounds_text(lo: float | None, hi: float | None) -> str:
    return f"[{'' if lo is None else lo}, {'' if hi is None else hi}]"


_TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_WORDS = frozenset({"0", "f", "false", "n", "no", "off"})
_MAX_NUMBER_TEXT = 4_300
"""The longest text read as a number (Python's limit for converting decimal text to an integer)."""


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else "other"


def _readings(value: Any) -> frozenset[tuple[str, Any]]:
    """What a lenient validator (pydantic in lax mode, as the SDK validates tool arguments) may
    read a JSON scalar as: a number (``"1"``, ``" 1 "``, ``"1.0"``, ``"1_000"``, ``true``), a
    boolean (``"yes"``, ``"on"``, ``"t"``, ``1``, ``1.0``)."""
    out: set[tuple[str, Any]] = set()
    if isinstance(value, bool):
        out.update((("boolean", value), ("number", int(value))))
    elif isinstance(value, (int, float)):
        if not (isinstance(value, float) and not math.isfinite(value)):
            out.add(("number", value))
            if value in (0, 1):
                out.add(("boolean", value == 1))
    elif isinstance(value, str) and len(value) <= _MAX_NUMBER_TEXT:
        text = value.strip().lower()
        if text in _TRUE_WORDS:
            out.add(("boolean", True))
        elif text in _FALSE_WORDS:
            out.add(("boolean", False))
        try:
            out.add(("number", int(text)))
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    out.add(("number", number))
    return frozenset(out)


def reads_as(value: Any, expected: Any, memo: Memo | None = None) -> bool:
    """Whether ``value``, of another JSON type than ``expected``, may be read as it by a tool
    validating its arguments leniently (``"0"``, ``"0.0"`` or ``false`` for ``0``; ``"yes"`` or
    ``1`` for ``true``; ``1`` for ``"1"``). ``memo`` keeps each value's readings for the decision."""
    if _json_kind(value) == _json_kind(expected):
        return False
    return not _memo_readings(value, memo).isdisjoint(_memo_readings(expected, memo))


def _memo_readings(value: Any, memo: Memo | None) -> frozenset[tuple[str, Any]]:
    if memo is None:
        return _readings(value)
    key = ("readings", type(value), value)  # the type too: True, 1 and 1.0 are equal keys
    found = memo.get(key)
    if found is None:
        found = memo[key] = _readings(value)
    return frozenset(found)


def _text_equal(label: str, value: Any, expected: Any, expected_nfkc: str | None, memo: Memo | None = None) -> bool:
    """Scalar equality; a string equal only after NFKC normalisation, and a value of another JSON
    type that a lenient validator reads as the expected one, are unknown."""
    if _scalar_eq(value, expected):
        return True
    if reads_as(value, expected, memo):
        raise ConditionError(
            label,
            f"the {_json_kind(value)} value reads as {expected!r} ({_json_kind(expected)}) to a tool "
            "that converts its arguments",
        )
    if expected_nfkc is not None and isinstance(value, str) and not (value.isascii() and expected.isascii()):
        if len(value) > MAX_CONDITION_STRING:
            raise ConditionError(label, f"a string longer than {MAX_CONDITION_STRING} characters is not judged")
        if _nfkc(value, memo) == expected_nfkc:
            raise _ambiguous(label, f"equals {expected!r}")
    return False


def _any_equal(label: str, value: Any, options: tuple[tuple[Any, str | None], ...], memo: Memo) -> bool:
    """True if ``value`` equals an option; unknown if it equals one only after NFKC; else False."""
    unknown: ConditionError | None = None
    for option, option_nfkc in options:
        try:
            if _text_equal(label, value, option, option_nfkc, memo):
                return True
        except ConditionError as exc:
            unknown = exc
    if unknown is not None:
        raise unknown
    return False


def _with_nfkc(values: Any) -> tuple[tuple[Any, str | None], ...]:
    return tuple((v, _nfkc(v) if isinstance(v, str) else None) for v in values)


def _one_of(label: str, values: Any, text: str, *, negate: bool = False) -> tuple[Op, str]:
    """The op: a scalar equal to one of ``values`` (with ``negate``: to none); equal only after NFKC is unknown."""
    options = _with_nfkc(values)

    def op(v: Any, _c: GovContext, memo: Memo) -> bool:
        _require_scalar(label, v)
        found = _any_equal(label, v, options, memo)
        return not found if negate else found

    return op, text


def _op_equals(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if "equals" not in cond.model_fields_set:
        return None
    return _one_of(label, (cond.equals,), f"equals {cond.equals!r}")


def _op_in(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if cond.in_ is None:
        return None
    return _one_of(label, cond.in_, f"in {list(cond.in_)!r}")


def _op_not_in(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if cond.not_in is None:
        return None
    return _one_of(label, cond.not_in, f"not in {list(cond.not_in)!r}", negate=True)


def _full_match(label: str, matcher: Any, text: str, dotall: Any = None) -> tuple[Op, str]:
    """The op: a string ``matcher`` matches whole; a match only after NFKC is unknown, and so is
    a match only when ``.`` also matches a line break (``dotall``: the same pattern with ``(?s)``).
    """

    def op(v: Any, _c: GovContext, memo: Memo) -> bool:
        s = _require_str(label, v)
        if matcher.fullmatch(s) is not None:
            return True  # then it matches with '.' matching line breaks too
        if dotall is not None and "\n" in s and dotall.fullmatch(s) is not None:
            raise ConditionError(
                label, f"the value, which holds a line break, {text} only when '.' also matches a line break"
            )
        normal = _nfkc(s, memo)
        if normal != s and matcher.fullmatch(normal) is not None:
            raise _ambiguous(label, text)
        return False

    return op, text


def _op_glob(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if cond.glob is None:
        return None
    globs = tuple(cond.glob)
    matcher = compile_regex("|".join(f"(?:{glob_to_regex(g)})" for g in globs))
    return _full_match(label, matcher, f"matches {list(globs)!r}")


def _op_regex(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if cond.regex is None:
        return None
    # A pattern written on one line reads '.' as "any character": a line break must not take a
    # value out of (or into) its match, so a value is also judged with '.' matching line breaks.
    dotall = compile_regex(f"(?s){cond.regex}") if "." in cond.regex else None
    return _full_match(label, compile_regex(cond.regex), f"matches /{cond.regex}/", dotall)


def _op_bounds(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    lo, hi = cond.min, cond.max
    if lo is None and hi is None:
        return None

    def op(v: Any, _c: GovContext, memo: Memo) -> bool:
        n = _require_number(label, v)
        return _within(n, lo, hi)

    return op, f"within {_bounds_text(lo, hi)}"


def _op_length(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    lo, hi = cond.min_length, cond.max_length
    if lo is None and hi is None:
        return None

    def op(v: Any, _c: GovContext, memo: Memo) -> bool:
        if not isinstance(v, (str, tuple, list)):
            raise ConditionError(label, f"expected a string or an array, got {_type_name(v)}")
        n = len(v)
        return _within(n, lo, hi)

    return op, f"length within {_bounds_text(lo, hi)}"


def _op_path(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    if cond.path is None:
        return None
    path: PathCondition = cond.path
    roots = tuple(path.under)
    relative = path.allow_relative

    def op(v: Any, _c: GovContext, memo: Memo) -> bool:
        if not isinstance(v, str):
            raise ConditionError(label, f"expected a path string, got {_type_name(v)}")
        try:
            return _judge(v, roots, relative, memo)
        except ValueError as exc:
            raise ConditionError(label, f"the path cannot be judged: {exc}") from None

    return op, f"is a path under {list(roots)!r}"


def _op_same_as(label: str, cond: ArgumentCondition) -> tuple[Op, str] | None:
    which = cond.same_as
    if which is None:
        return None

    def op(v: Any, c: GovContext, memo: Memo) -> bool:
        s = _require_str(label, v)
        principal = c.principal
        ref = (principal.subject if principal is not None else None) if which == "subject" else getattr(c, which)
        if not isinstance(ref, str):
            # The request has no such value: what the argument should have equalled is unknown.
            raise ConditionError(label, f"the request has no {which} to compare with")
        if _text_equal(label, s, ref, _nfkc(ref), memo):
            return True
        # A name read as names are read everywhere else: another spelling of it is unknown.
        if spelling_of(s, {name_key(ref): ref}) is not None:
            raise ConditionError(label, f"the value is another spelling of the request's {which}")
        return False

    return op, f"equals the request's {which}"


_OPERATORS = (_op_equals, _op_in, _op_not_in, _op_glob, _op_regex, _op_bounds, _op_length, _op_path, _op_same_as)


COMPLETION_METHOD = "completion/complete"


def judged_arguments(ctx: GovContext) -> Mapping[str, Any] | None:
    """The arguments a policy reads for ``ctx``: its arguments, except for a completion, which
    is judged as the prompt (or resource template) it completes: completing argument ``a`` with
    value ``v`` reads ``{a: v}``. The other arguments (what a client claims as its completion
    context is not decided on) are absent: a completion of ``a`` carries nothing of them, so a
    condition on one of them fails (unless ``optional``), in a deny as in an allow."""
    args = ctx.arguments
    if ctx.method != COMPLETION_METHOD or args is None:
        return args
    name = args.get("name")
    if not isinstance(name, str) or "value" not in args:
        return _NO_ARGUMENTS
    return MappingProxyType({name: args["value"]})


_NO_ARGUMENTS: Mapping[str, Any] = MappingProxyType({})


def _argument_check(name: str, cond: ArgumentCondition, absent_unknown: bool) -> Check:
    label = f"arguments.{name}"
    built = [b for b in (make(label, cond) for make in _OPERATORS) if b is not None]
    operators = tuple(op for op, _ in built)
    optional = cond.optional

    def check(ctx: GovContext, _f: Facts) -> bool:
        args = judged_arguments(ctx)
        value = args.get(name, _MISSING) if args is not None else _MISSING
        if value is _MISSING:
            if optional or not absent_unknown or ctx.method == COMPLETION_METHOD:
                return optional
            raise ConditionError(label, "the argument is absent (what the tool uses in its place is unknown)")
        memo = _f.memo
        return all(op(value, ctx, memo) for op in operators)

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
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise ConditionError("time", f"the time of the decision is unknown (the clock gave {now!r:.40})")
        if after is not None and now < after:
            return False
        if before is not None and now >= before:
            return False
        if days is None and start is None:
            return True
        try:
            local = datetime.fromtimestamp(now, zone)
        except (OverflowError, OSError, ValueError):
            raise ConditionError("time", "the time of the decision is out of the calendar's range") from None
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


def _labels(values: list[str]) -> frozenset[str]:
    return frozenset(values)


def _targets(values: list[str]) -> frozenset[str]:
    return frozenset(parse_target(t) for t in values)


def _count(value: int) -> int:
    return value


def _called(h: TaskHistory, targets: frozenset[str]) -> bool:
    """Whether the task used one of ``targets``; unknown when it used only another spelling of
    a resource URI among them (one a server may resolve to the same resource)."""
    if h.called & targets:
        return True
    if h.called_folded & {folded_target(t) for t in targets}:
        raise ConditionError("history.called", "the task read another spelling of one of these resource URIs")
    return False


def _last_called(h: TaskHistory, targets: frozenset[str]) -> bool:
    """Whether the task's previous request was to one of ``targets`` (unknown as for :func:`_called`)."""
    if h.last is None:
        return False
    if h.last in targets:
        return True
    if folded_target(h.last) in {folded_target(t) for t in targets}:
        raise ConditionError("history.last_called", "the previous request read another spelling of one of these URIs")
    return False


@dataclass(frozen=True, slots=True)
class _HistoryRule:
    """One field of a ``history`` condition: how its value is read, stated, tested and fetched."""

    field: str
    prepare: Callable[[Any], Any]
    text: Callable[[Any], str]
    holds: Callable[[TaskHistory, Any], bool]
    needs: Callable[[Any], HistoryNeeds]

    def check(self, value: Any) -> Check:
        param = self.prepare(value)
        label = f"history.{self.field}"
        holds = self.holds
        return Check(label, self.text(param), True, lambda _c, f: holds(_history(f, label), param), self.needs(param))


def _rule_and_negation(
    fields: tuple[str, str],
    prepare: Callable[[Any], Any],
    texts: tuple[str, str],
    holds: Callable[[TaskHistory, Any], bool],
    needs: Callable[[Any], HistoryNeeds],
) -> tuple[_HistoryRule, _HistoryRule]:
    """A history field and its negation: the same value and needs, the opposite test.

    Each of ``texts`` is a template whose ``{}`` is the value (a set as its sorted list).
    """

    def show(template: str) -> Callable[[Any], str]:
        return lambda value: template.format(sorted(value) if isinstance(value, frozenset) else value)

    field, negated = fields
    text, negated_text = texts
    return (
        _HistoryRule(field, prepare, show(text), holds, needs),
        _HistoryRule(negated, prepare, show(negated_text), lambda h, value: not holds(h, value), needs),
    )


_HISTORY_RULES: tuple[_HistoryRule, ...] = (
    *_rule_and_negation(
        ("seen_labels", "not_seen_labels"),
        _labels,
        ("the task already touched something labelled {}", "the task touched nothing labelled {}"),
        lambda h, seen: bool(h.labels & seen),
        lambda seen: HistoryNeeds(labels=seen),
    ),
    *_rule_and_negation(
        ("called", "not_called"),
        _targets,
        ("the task already used one of {}", "the task used none of {}"),
        _called,
        lambda called: HistoryNeeds(targets=called),
    ),
    _HistoryRule(
        "last_called",
        _targets,
        lambda last: f"the task's previous request was to one of {sorted(last)}",
        _last_called,
        lambda _last: HistoryNeeds(last=True),
    ),
    *_rule_and_negation(
        ("calls_below", "calls_at_least"),
        _count,
        ("the task has run fewer than {} tool calls", "the task has run at least {} tool calls"),
        lambda h, below: h.calls < below,
        lambda _below: HistoryNeeds(count=True),
    ),
)


def _history_checks(h: HistoryCondition) -> list[Check]:
    values = ((rule, getattr(h, rule.field)) for rule in _HISTORY_RULES)
    return [rule.check(value) for rule, value in values if value is not None]


def _depth_check(bounds: Bounds) -> Check:
    lo, hi = bounds.min, bounds.max

    def check(ctx: GovContext, _f: Facts) -> bool:
        depth = len(ctx.principal.actors) if ctx.principal is not None else 0
        return _within(depth, lo, hi)

    text = f"delegation depth within {_bounds_text(lo, hi)}"
    return Check("delegation_depth", text, False, check)


def _risk_check(values: Iterable[str]) -> Check:
    """The check that the target's declared risk is one of ``values``; an undeclared risk is unknown
    (a target nobody declared could be of any risk)."""
    allowed = frozenset(values)

    def check(_c: GovContext, facts: Facts) -> bool:
        if facts.risk is None:
            raise ConditionError("risk", "the target declares no risk level")
        return facts.risk in allowed

    return Check("risk", f"declared risk is one of {sorted(allowed)}", False, check)


_LOOKALIKE_LIMIT = 128
"""The longest name (in characters) compared for look-alike letters (``confusables``)."""


def name_key(value: str) -> str:
    """How a reader reads a name (a tenant, a purpose): NFKC, case-folded, without format
    characters (zero-width spaces, soft hyphens...), whitespace runs as one space, trimmed."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    if not text.isascii():
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.split())


def spelling_of(value: str, keys: Mapping[str, str]) -> str | None:
    """The name (of ``keys``: :func:`name_key` -> name) that ``value`` reads as, or None."""
    key = name_key(value)
    near = keys.get(key)
    if near is None and not key.isascii() and len(key) <= _LOOKALIKE_LIMIT:
        import confusables  # noqa: PLC0415 - loaded when a non-ASCII name is first compared

        near = next(
            (name for k, name in keys.items() if len(k) <= _LOOKALIKE_LIMIT and confusables.is_confusable(key, k)),
            None,
        )
    return near


class NameSet:
    """Names a request's tenant or purpose is compared with, exactly.

    A value equal to a name is in the set. A missing value (no tenant, no declared purpose), and
    a value that is not a name but that a reader takes for one (another case, a Unicode
    compatibility form such as fullwidth letters, invisible format characters, surrounding
    whitespace, look-alike letters from another script), is *unknown*: :meth:`holds` raises
    :class:`ConditionError`, so a deny naming the name applies to every spelling of it and to a
    request without one, and an allow admits only the name itself.
    """

    __slots__ = ("_keys", "label", "names", "what")

    def __init__(self, label: str, what: str, names: Iterable[str]) -> None:
        self.label = label
        self.what = what
        self.names = frozenset(names)
        self._keys = {name_key(name): name for name in sorted(self.names)}

    def holds(self, value: Any) -> bool:
        """True when ``value`` is one of the names, False when it is none of them.

        Raises:
            ConditionError: ``value`` is missing, another spelling of a name, or too long to judge.
        """
        if value in self.names:
            return True
        if value is None:
            # Undeclared: it could be any of the names.
            raise ConditionError(self.label, f"the request has no {self.what}")
        if not isinstance(value, str):
            return False
        if len(value) > MAX_CONDITION_STRING:
            raise ConditionError(
                self.label, f"a {self.what} longer than {MAX_CONDITION_STRING} characters is not judged"
            )
        near = spelling_of(value, self._keys)
        if near is not None:
            raise ConditionError(
                self.label,
                f"the {self.what} {value!r} is another spelling of {near!r} (case, Unicode form, "
                "invisible characters, whitespace or look-alike letters)",
            )
        return False


def _name_member_of(label: str, what: str, values: Iterable[str], value: Callable[[GovContext, Facts], Any]) -> Check:
    """The check that ``value`` of the request is one of the names ``values`` (see :class:`NameSet`)."""
    names = NameSet(label, what, values)
    return Check(label, f"{what} is one of {sorted(names.names)}", False, lambda c, f: names.holds(value(c, f)))


def compile_conditions(conditions: Conditions, prefix: str, *, restricting: bool = False) -> tuple[Check, ...]:
    """Compile a ``when`` or ``unless`` block into its checks (cheap ones first).

    ``restricting`` says that the block holding makes the rule stricter (the ``when`` of a deny or
    an approval): there an argument that is absent (and not ``optional``) and a claim the
    principal does not carry are unknown, not false. Where the block is a requirement (the
    ``when`` of an allow, the ``unless`` of a deny) their absence fails it, which is as strict.
    """
    checks: list[Check] = []
    if conditions.tenants is not None:
        checks.append(_name_member_of("tenants", "tenant", conditions.tenants, lambda c, _f: c.tenant))
    if conditions.purposes is not None:
        checks.append(_name_member_of("purposes", "declared purpose", conditions.purposes, lambda c, _f: c.purpose))
    if conditions.scopes is not None:
        scopes = frozenset(conditions.scopes)
        holds = f"principal holds scopes {sorted(scopes)}"
        checks.append(
            Check(
                "scopes", holds, False, lambda c, _f: c.principal is not None and scopes <= granted_scopes(c.principal)
            )
        )
    if conditions.claims is not None:
        claims = dict(conditions.claims)
        checks.append(
            Check(
                "claims",
                f"principal claims match {claims!r}",
                False,
                lambda c, _f: _claims_match(c.principal, claims, absent_unknown=restricting),
            )
        )
    if conditions.risk is not None:
        checks.append(_risk_check(conditions.risk))
    if conditions.delegation_depth is not None:
        checks.append(_depth_check(conditions.delegation_depth))
    if conditions.time is not None:
        checks.append(_time_check(conditions.time))
    # Arguments and history are deferred: a listing does not know them.
    deferred = [_argument_check(name, cond, restricting) for name, cond in conditions.arguments.items()]
    if conditions.history is not None:
        deferred.extend(_history_checks(conditions.history))
    return (
        *(Check(f"{prefix}.{check.label}", check.text, False, check.fn) for check in checks),
        *(Check(f"{prefix}.{check.label}", check.text, True, check.fn, check.needs) for check in deferred),
    )
