"""Request arguments: bounded validation, a read-only copy for deciders, and a canonical hash."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

import rfc8785

from mcpgov._errors import ConfigurationError, InvalidRequest
from mcpgov._types import thaw
from mcpgov._validate import is_positive_count

__all__ = ["ArgumentLimits", "arguments_hash", "canonical_json", "freeze_arguments"]

_MAX_SAFE_INT = 2**53 - 1  # I-JSON (RFC 7493): integers beyond this do not survive every JSON peer
_SURROGATE_SLICE = 65_536  # characters per look for lone surrogates (bounds the scratch memory)


def _check_text(value: str) -> None:
    """Refuse text with no Unicode form (a lone surrogate, which JSON's \\uXXXX escapes can
    smuggle in): it is not valid I-JSON, and it has no canonical form to hash."""
    if _has_surrogate(value):
        raise InvalidRequest("arguments contain text that is not valid Unicode", reason="argument_invalid")


def _has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (U+D800..U+DFFF), the only code points that have
    no UTF-32 form: the C encoder looks at every character, several times faster than a regular
    expression, over slices so the scratch bytes stay small."""
    if text.isascii():
        return False
    try:
        for start in range(0, len(text), _SURROGATE_SLICE):
            text[start : start + _SURROGATE_SLICE].encode("utf-32-le")
    except UnicodeEncodeError:
        return True
    return False


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
            if not is_positive_count(value):
                raise ConfigurationError(f"ArgumentLimits.{name} must be a positive integer, got {value!r}")


class _Budget:
    __slots__ = ("chars", "limits", "nodes")

    def __init__(self, limits: ArgumentLimits) -> None:
        self.limits = limits
        self.nodes = 0
        self.chars = 0

    def text(self, value: str) -> None:
        n = len(value)
        if n > self.limits.max_string:
            raise InvalidRequest(f"a string of {n} characters exceeds the limit", reason="argument_too_large")
        _check_text(value)
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
    frozen, digest = freeze_lazily(arguments, limits)
    return frozen, digest.value() if digest is not None else None


class ArgsDigest:
    """The ``args_hash`` of validated, frozen arguments, computed when first read (then kept).

    A :class:`~mcpgov.GovContext` holds one until something reads ``ctx.args_hash``: a side
    where nothing reads it (a client with no audit sink) never hashes the arguments.

    ``deferrable`` arguments (long text) may be hashed off the call path: audit events about
    them can carry the digest itself to a queued sink, whose worker thread computes it (the
    arguments are frozen, so what it hashes is what was decided on).
    """

    __slots__ = ("_flat", "_frozen", "_value", "deferrable")

    def __init__(
        self, frozen: Mapping[str, Any], flat: dict[str, Any] | None = None, *, deferrable: bool = False
    ) -> None:
        self._frozen = frozen
        self._flat = flat  # the frozen mapping's own dict, when the standard encoder's text is canonical
        self._value: str | None = None
        self.deferrable = deferrable

    @property
    def computed(self) -> bool:
        """Whether the value was computed already."""
        return self._value is not None

    def value(self) -> str:
        if self._value is None:
            flat = self._flat
            if flat is not None:
                self._value = "sha256:" + hashlib.sha256(_FLAT_ENCODER.encode(flat).encode("utf-8")).hexdigest()
            else:
                self._value = _hash(self._frozen)
        return self._value


def freeze_lazily(arguments: Any, limits: ArgumentLimits) -> tuple[Mapping[str, Any] | None, ArgsDigest | None]:
    """:func:`freeze_arguments`, with the hash left to be computed on first use.

    Every check is made here (limits, types, numbers, text with no Unicode form); only the
    hashing is deferred, and it cannot fail on what passed.
    """
    if arguments is None:
        return None, None
    if type(arguments) is not dict and not isinstance(arguments, Mapping):
        raise InvalidRequest("arguments must be a JSON object", reason="argument_invalid")
    flat = _freeze_flat(arguments, limits)
    if flat is None:
        budget = _Budget(limits)
        frozen = _freeze(arguments, 0, budget)
        return frozen, ArgsDigest(frozen, deferrable=budget.chars >= _DEFER_CHARS)
    copy, chars = flat
    frozen = MappingProxyType(copy)
    # Small flat arguments are hashed over the standard library's C encoder (see _FLAT_ENCODER);
    # long text keeps the canonical encoder's verbatim path, which is faster there.
    return frozen, ArgsDigest(frozen, copy if chars < _FLAT_CHARS else None, deferrable=chars >= _DEFER_CHARS)


_FLAT_SCALARS = (str, int, bool, type(None))
_FLAT_CHARS = 4096
# Arguments of this many characters or more are hashed by a queued audit sink's worker when
# nothing on the call path needs their hash: SHA-256 lets other threads run while it hashes
# long input, so the call path no longer waits for it.
_DEFER_CHARS = 32_768

# For a flat dict (ASCII keys; values that are strings with a Unicode form, integers in the
# I-JSON range, booleans or nulls), the standard library's sorted, compact JSON is exactly the
# RFC 8785 form: code-point order is UTF-16 order for ASCII names, integers are their decimal
# digits, and strings are escaped as JSON.stringify escapes them (the canonical encoder relies
# on the same ``encode_basestring``). tests/test_canonical.py checks it against rfc8785.
_FLAT_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False)


def _freeze_flat(arguments: Any, limits: ArgumentLimits) -> tuple[dict[str, Any], int] | None:
    """The common case in one loop: a plain dict of ASCII keys to strings, safe integers,
    booleans and nulls, copied, with its total characters. Anything else (nesting, floats,
    other keys) takes the general walk."""
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
            _check_text(value)
            chars += n
        elif kind is int and not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return None
        if len(key) > max_string:
            return None
    if chars > limits.max_total_chars:
        return None
    return dict(arguments), chars


def _hash(frozen: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    try:
        out: list[str | bytes] = []
        try:
            _jcs(frozen, out, 0)
        except (_Refer, RecursionError):
            digest.update(canonical_json(frozen))
        else:
            text = _joined(out)
            if text is not None:
                digest.update(text.encode("utf-8"))
            else:
                # Fed in pieces: a long string's UTF-8 goes straight into the hash instead of
                # being copied into one joined text first.
                for chunk in _utf8_chunks(out):
                    digest.update(chunk)
    except (ValueError, TypeError) as exc:
        # Validated values are JSON data, so what is left is text with no Unicode form (a lone
        # surrogate, which JSON's \uXXXX escapes can smuggle in): not valid I-JSON.
        raise InvalidRequest("arguments contain text that is not valid Unicode", reason="argument_invalid") from exc
    return "sha256:" + digest.hexdigest()


def _joined(out: list[str | bytes]) -> str | None:
    """The encoder's pieces as one text, or ``None`` when long text was written as UTF-8."""
    try:
        return "".join(cast("list[str]", out))  # TypeError at the first UTF-8 piece
    except TypeError:
        return None


def _utf8_chunks(out: list[str | bytes]) -> Iterator[bytes]:
    """The encoder's pieces as UTF-8: runs of short text joined and encoded, long text encoded
    on its own (not copied into a joined text first), UTF-8 pieces as they are. A lone
    surrogate in the text raises ``UnicodeEncodeError``."""
    small: list[str] = []
    for piece in out:
        if isinstance(piece, str) and len(piece) < _JOIN_BELOW:
            small.append(piece)
            continue
        if small:
            yield "".join(small).encode("utf-8")
            small.clear()
        yield piece.encode("utf-8") if isinstance(piece, str) else piece
    if small:
        yield "".join(small).encode("utf-8")


_JOIN_BELOW = 4096


# --- the canonical encoder -------------------------------------------------------------------
#
# RFC 8785 (JCS) serialises like ECMAScript's JSON.stringify over sorted object members. The
# encoder below writes each value in exactly that form and hands anything it cannot prove to the
# rfc8785 library (which then also makes the refusal):
#
# * null, true, false; integers in the I-JSON range as their decimal digits;
# * floats whose shortest round-trip decimal Python and ECMAScript both print as plain digits
#   (finite, not integral, 1e-4 <= |x| < 1e16); any other float is formatted by rfc8785 alone;
# * strings: JSON.stringify escapes exactly '"', '\\' and U+0000..U+001F (\b \t \n \f \r, the
#   rest as lowercase \u00xx) and writes every other character as is, which is what the standard
#   library's C ``encode_basestring`` does. A string of some length with none of those 34
#   characters is written verbatim (found by C-speed substring searches, no per-character work
#   in Python). A long string is written as UTF-8 bytes, escaped by replacing each of the 34
#   that occurs, backslash first (no escape brings back a character already replaced); in UTF-8
#   those 34 bytes only ever stand for themselves (bytes of multi-byte characters are >= 0x80).
#   Where escapes are denser than one per 4 bytes, ``encode_basestring`` writes it instead.
#   Lone surrogates have no UTF-8 form: encoding fails and rfc8785 makes the refusal;
# * object members sorted by the UTF-16 code units of their names (code-point order is the same
#   for names without characters beyond the BMP; others are sorted by their UTF-16 encoding).
#
# tests/test_canonical.py checks the bytes against the rfc8785 library with generated values.

_ESCAPED = (*(chr(c) for c in range(0x20)), '"', "\\")
_VERBATIM_FROM = 48  # shorter strings are cheaper to escape than to search 34 times
_BYTES_FROM = 4096  # longer strings are escaped over their UTF-8 (one copy, none per character)
_SHORT_ESCAPES = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r"}
_BYTE_ESCAPES = (  # backslash first: the other escapes add backslashes that must stay as they are
    (b"\\", b"\\\\"),
    (b'"', b'\\"'),
    *((bytes([c]), _SHORT_ESCAPES.get(c, b"\\u%04x" % c)) for c in range(0x20)),
)
_SCAN_BLOCK = 262_144
_MAX_FAST_DEPTH = 64
_encode_string: Any = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring


class _Refer(Exception):
    """This value is left to the rfc8785 library."""


def _jcs(value: Any, out: list[str | bytes], depth: int) -> None:
    kind = type(value)
    if kind is str:
        n = len(value)
        if n >= _BYTES_FROM:
            _jcs_long_text(value, out)
        elif n >= _VERBATIM_FROM and not any(ch in value for ch in _ESCAPED):
            out.append('"')
            out.append(value)
            out.append('"')
        else:
            out.append(_encode_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            raise _Refer
        out.append(int.__repr__(value))
    elif kind is float:
        if math.isfinite(value) and not value.is_integer() and 1e-4 <= abs(value) < 1e16:
            out.append(float.__repr__(value))
        else:
            out.append(rfc8785.dumps(value).decode("ascii"))
    elif depth >= _MAX_FAST_DEPTH:
        raise _Refer
    elif kind is list or kind is tuple:
        _jcs_array(value, out, depth)
    elif kind is dict or kind is MappingProxyType or isinstance(value, Mapping):
        _jcs_object(value, out, depth)
    else:
        raise _Refer


def _jcs_array(value: Any, out: list[str | bytes], depth: int) -> None:
    out.append("[")
    for i, item in enumerate(value):
        if i:
            out.append(",")
        _jcs(item, out, depth + 1)
    out.append("]")


def _jcs_object(value: Mapping[Any, Any], out: list[str | bytes], depth: int) -> None:
    names = list(value)
    ascii_names = True
    for name in names:
        if type(name) is not str:
            raise _Refer
        if not name.isascii():
            ascii_names = False
    if not ascii_names:
        names.sort(key=_utf16)
    else:
        names.sort()
    out.append("{")
    for i, name in enumerate(names):
        out.append(f"{',' if i else ''}{_encode_string(name)}:")
        _jcs(value[name], out, depth + 1)
    out.append("}")


def _jcs_long_text(text: str, out: list[str | bytes]) -> None:
    """``text`` as a JSON string: its UTF-8 with each escaped character that occurs replaced
    (one C-speed search per escaped character, then a search and a copy per occurrence, some
    20 ns each). Where escapes are denser than one per 4 bytes, ``encode_basestring`` (a few ns
    per character) is quicker: once the replacements made exceed that count, it writes the text
    instead, so the work tried first is bounded.

    Raises:
        UnicodeEncodeError: ``text`` holds a lone surrogate.
    """
    data = text.encode("utf-8")
    budget = len(data) >> 2
    for char, escape in _escapes_in(data):
        before = len(data)
        data = data.replace(char, escape, budget + 1)
        budget -= (len(data) - before) // (len(escape) - 1)
        if budget < 0:
            out.append(_encode_string(text))
            return
    out.append('"')
    out.append(data)
    out.append('"')


def _escapes_in(data: bytes) -> list[tuple[bytes, bytes]]:
    """The pairs of :data:`_BYTE_ESCAPES` whose character occurs in ``data``, in their order (no
    replacement brings in a character of a later pair). Beyond 256 KiB the 34 searches run block
    by block, over bytes still in the processor's cache: about 2.5 times quicker on 2.8 MB."""
    size = len(data)
    if size <= _SCAN_BLOCK:
        return [pair for pair in _BYTE_ESCAPES if pair[0] in data]
    found = [False] * len(_BYTE_ESCAPES)
    for start in range(0, size, _SCAN_BLOCK):
        end = start + _SCAN_BLOCK
        for i, (char, _) in enumerate(_BYTE_ESCAPES):
            if not found[i] and data.find(char, start, end) >= 0:
                found[i] = True
    return [pair for pair, there in zip(_BYTE_ESCAPES, found, strict=True) if there]


def _utf16(name: str) -> bytes:
    return name.encode("utf-16-be")  # a lone surrogate raises: rfc8785 decides


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical JSON of ``value``: exactly the ``rfc8785`` library's bytes.

    Written by a fast encoder wherever its output is provably the canonical form (see the
    comment above); anything else (numbers it does not format, lone surrogates, non-JSON
    types) goes through ``rfc8785``, which also makes any refusal.

    Raises:
        rfc8785.CanonicalizationError: the value has no canonical JSON form.
        TypeError: the value is not JSON data.
    """
    out: list[str | bytes] = []
    try:
        _jcs(value, out, 0)
        text = _joined(out)
        return text.encode("utf-8") if text is not None else b"".join(_utf8_chunks(out))
    except (_Refer, UnicodeEncodeError, RecursionError):
        pass
    result: bytes = rfc8785.dumps(thaw(value))
    return result


def arguments_hash(arguments: Mapping[str, Any] | None) -> str:
    """The SHA-256 of the RFC 8785 canonical JSON of ``arguments`` (``{}`` when ``None``).

    Key order and number formatting do not change the hash; any change of a value does.
    Returned as ``"sha256:<hex>"``.
    """
    return _hash({} if arguments is None else arguments)


# The standard library's sorted, compact JSON, for values where it is provably the RFC 8785 form
# (see :func:`_plain`): the audit log's line encoder uses it for plain event attributes.
def _plain_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


_PLAIN_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain_default
)


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
