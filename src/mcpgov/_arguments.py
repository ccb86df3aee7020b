"""Request arguments: bounded validation, a read-only copy for deciders, and a canonical hash."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import rfc8785

from mcpgov._errors import ConfigurationError, InvalidRequest

__all__ = ["ArgumentLimits", "arguments_hash", "canonical_json", "freeze_arguments"]

_MAX_SAFE_INT = 2**53 - 1  # I-JSON (RFC 7493): integers beyond this do not survive every JSON peer


@dataclass(frozen=True, slots=True)
class ArgumentLimits:
    """Bounds on the arguments a governed request may carry. Checked before any decision.

    Attributes:
        max_depth: deepest nesting of objects and arrays.
        max_nodes: total number of values (objects, arrays, scalars).
        max_string: longest string (in characters) or object key.
        max_total_chars: total characters of all strings and keys together.
    """

    max_depth: int = 32
    max_nodes: int = 10_000
    max_string: int = 1_000_000
    max_total_chars: int = 4_000_000

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_nodes", "max_string", "max_total_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"ArgumentLimits.{name} must be a positive integer, got {value!r}")


class _Budget:
    __slots__ = ("chars", "limits", "nodes", "plain")

    def __init__(self, limits: ArgumentLimits) -> None:
        self.limits = limits
        self.nodes = 0
        self.chars = 0
        # "plain": no floats and only ASCII object keys. For such values the standard library's
        # sorted, compact JSON is byte-identical to RFC 8785 (see arguments_hash).
        self.plain = True

    def text(self, value: str) -> None:
        n = len(value)
        if n > self.limits.max_string:
            raise InvalidRequest(f"a string of {n} characters exceeds the limit", reason="argument_too_large")
        self.chars += n
        if self.chars > self.limits.max_total_chars:
            raise InvalidRequest("arguments exceed the total size limit", reason="argument_too_large")


def _freeze(value: Any, depth: int, budget: _Budget) -> Any:
    budget.nodes += 1
    if budget.nodes > budget.limits.max_nodes:
        raise InvalidRequest("arguments have too many values", reason="argument_too_large")
    kind = type(value)
    if kind is str:
        budget.text(value)
        return value
    if value is None or kind is bool:
        return value
    if kind is int:
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return value
        raise InvalidRequest("an integer argument is outside the interoperable range", reason="argument_invalid")
    if kind is float:
        if math.isfinite(value):
            budget.plain = False
            return value
        raise InvalidRequest("NaN and Infinity are not valid JSON arguments", reason="argument_invalid")
    if kind is not dict and kind is not list and kind is not tuple and not isinstance(value, Mapping):
        # Subclasses of str/int/float (enums, numpy scalars...) are not JSON values as received.
        raise InvalidRequest(f"unsupported argument type {kind.__name__}", reason="argument_invalid")
    if depth >= budget.limits.max_depth:
        raise InvalidRequest("arguments are nested too deeply", reason="argument_too_deep")
    if kind is list or kind is tuple:
        return tuple([_freeze(item, depth + 1, budget) for item in value])
    frozen: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise InvalidRequest("argument object keys must be strings", reason="argument_invalid")
        budget.text(key)
        if not key.isascii():
            budget.plain = False
        frozen[key] = _freeze(item, depth + 1, budget)
    return MappingProxyType(frozen)


def freeze_arguments(arguments: Any, limits: ArgumentLimits) -> Mapping[str, Any] | None:
    """Validate ``arguments`` against ``limits`` and return a read-only deep copy.

    Objects become read-only mappings and arrays become tuples, so a decider cannot change
    what later deciders see. ``None`` stays ``None``.

    Raises:
        InvalidRequest: the arguments are not a JSON object, or break a limit.
    """
    return freeze_and_hash(arguments, limits)[0]


def freeze_and_hash(arguments: Any, limits: ArgumentLimits) -> tuple[Mapping[str, Any] | None, str | None]:
    """:func:`freeze_arguments` and :func:`arguments_hash` in one walk over the arguments."""
    if arguments is None:
        return None, None
    if not isinstance(arguments, Mapping):
        raise InvalidRequest("arguments must be a JSON object", reason="argument_invalid")
    flat = _freeze_flat(arguments, limits)
    if flat is not None:
        return flat
    budget = _Budget(limits)
    frozen: Mapping[str, Any] = _freeze(arguments, 0, budget)
    return frozen, _hash(frozen, plain=budget.plain)


_FLAT_SCALARS = (str, int, bool, type(None))


def _freeze_flat(arguments: Any, limits: ArgumentLimits) -> tuple[Mapping[str, Any], str] | None:
    """The common case in one loop: a plain dict of ASCII keys to strings, safe integers,
    booleans and nulls. Anything else (nesting, floats, other keys) takes the general walk."""
    if type(arguments) is not dict or len(arguments) >= limits.max_nodes:
        return None
    chars = 0
    max_string = limits.max_string
    for key, value in arguments.items():
        kind = type(value)
        if type(key) is not str or not key.isascii() or kind not in _FLAT_SCALARS:
            return None
        chars += len(key)
        if kind is str:
            n = len(value)
            if n > max_string:
                return None  # the general walk raises the precise error
            chars += n
        elif kind is int and not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return None
        if len(key) > max_string:
            return None
    if chars > limits.max_total_chars:
        return None
    frozen = MappingProxyType(dict(arguments))
    return frozen, _hash(frozen, plain=True)


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _plain_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


_PLAIN_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain_default
)


def _hash(frozen: Mapping[str, Any], *, plain: bool) -> str:
    # RFC 8785 differs from sorted compact JSON only in number formatting (no floats here)
    # and in key order for characters beyond the BMP (keys here are ASCII). String escaping
    # is the same (ECMAScript JSON.stringify rules). The test suite checks the equality
    # against the rfc8785 library with generated values.
    canonical = _PLAIN_ENCODER.encode(frozen).encode("utf-8") if plain else canonical_json(frozen)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether the standard library's sorted, compact JSON of ``value`` is its RFC 8785 form.

    True for nulls, booleans, safe integers, strings without lone surrogates, ASCII object keys
    (so code-point order is UTF-16 order), arrays and objects of such values, and floats whose
    shortest decimal is written the same by Python and ECMAScript: finite, not integral, with
    1e-4 <= |x| < 1e16 (both print plain decimal digits there; integral floats, negative zero
    and exponents differ). The test suite checks this against the rfc8785 library.
    """
    kind = type(value)
    if value is None or kind is bool:
        return True
    if kind is int:
        return bool(-_MAX_SAFE_INT <= value <= _MAX_SAFE_INT)
    if kind is str:
        return not _has_surrogate(value)
    if kind is float:
        return math.isfinite(value) and not value.is_integer() and 1e-4 <= abs(value) < 1e16
    if depth > 64:
        return False
    if kind is list or kind is tuple:
        return all(_plain(v, depth + 1) for v in value)
    if kind is dict or isinstance(value, Mapping):
        return all(type(k) is str and k.isascii() and _plain(v, depth + 1) for k, v in value.items())
    return False


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical JSON of ``value`` (the ``rfc8785`` library's bytes).

    Values whose standard-library JSON is provably the same bytes are encoded by the C encoder;
    everything else goes through ``rfc8785``.

    Raises:
        rfc8785.CanonicalizationError: the value has no canonical JSON form.
        TypeError: the value is not JSON data.
    """
    if _plain(value):
        return _PLAIN_ENCODER.encode(value).encode("utf-8")
    result: bytes = rfc8785.dumps(_thaw(value))
    return result


def arguments_hash(arguments: Mapping[str, Any] | None) -> str:
    """The SHA-256 of the RFC 8785 canonical JSON of ``arguments`` (``{}`` when ``None``).

    Key order and number formatting do not change the hash; any change of a value does.
    Returned as ``"sha256:<hex>"``.
    """
    if arguments is None:
        return _hash({}, plain=True)
    return _hash(arguments, plain=False)
