"""The canonical JSON encoder writes exactly the rfc8785 library's bytes, and refuses what it refuses.

Generated values aim at every place where a fast encoder could differ from RFC 8785: strings with
the 34 escaped characters, long strings (the verbatim path) and short ones, text beyond the BMP,
lone surrogates, member names whose UTF-16 order differs from their code-point order, integers
at and beyond the I-JSON range, floats in every formatting regime, nesting, read-only mappings
and tuples (the frozen argument forms).
"""

from __future__ import annotations

import hashlib
from types import MappingProxyType
from typing import Any

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mcp import MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import ArgumentLimits, Decision, GovContext, Hooks, InvalidRequest, arguments_hash, govern
from mcpgov._arguments import canonical_json, freeze_and_hash
from mcpgov.testing import InMemoryAuditSink

# Characters where encoders disagree most often: the escaped ones, DEL, U+2028/9, non-ASCII
# in one, two, three and four UTF-8 bytes, a BMP character above the surrogate block, and
# characters beyond the BMP (whose UTF-16 form sorts below U+E000..U+FFFF).
_TRICKY = [chr(c) for c in range(0x20)] + ['"', "\\", "/", "\x7f", "\u2028", "\u2029", "é", "€", "\ufb01", "\uffff"]
_TRICKY += ["\U0001f600", "\U00010000", "\ue000", "a", "Z", " "]
text = st.text(st.sampled_from(_TRICKY) | st.characters(), max_size=12)
long_text = st.builds(lambda a, b, n: a * n + b, text, text, st.integers(0, 40))
with_surrogates = st.text(st.characters(categories=["Cs"]) | st.sampled_from(_TRICKY), min_size=1, max_size=8)
floats = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=1e-7, max_value=1e-3)
    | st.floats(min_value=1e15, max_value=1e22)
    | st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-4, 1e-7, 1e16, 1e21, 5e-324, 1.7976931348623157e308, 0.1, 123.0])
)
integers = st.integers(-(2**53) + 1, 2**53 - 1) | st.sampled_from([2**53 - 1, -(2**53) + 1, 2**53, -(2**53), 2**64])
scalars = st.none() | st.booleans() | integers | floats | text | long_text
names = text | st.sampled_from(["\U0001f600", "\ue000", "\uffff", "a", "b", "aa", "", "é"])


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(names, inner, max_size=5)
        | st.dictionaries(names, inner, max_size=5).map(MappingProxyType)
    )


json_values = st.recursive(scalars, containers, max_leaves=30)


def _reference(value: Any) -> bytes:
    """rfc8785 on plain lists and dicts (it knows nothing of tuples and read-only mappings)."""

    def thaw(v: Any) -> Any:
        if isinstance(v, (dict, MappingProxyType)):
            return {k: thaw(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [thaw(x) for x in v]
        return v

    result: bytes = rfc8785.dumps(thaw(value))
    return result


@settings(max_examples=500)
@given(json_values)
@example({"\ue000": 1, "\U0001f600": 2})  # UTF-16 order: the emoji (D83D...) first
@example(["x" * 100, "x" * 99 + "\n", "\x1f" * 60, '"' * 50])
@example([1e16, 1e21, -0.0, 2.0, 1e-7, 0.0001, 2**53 - 1])
def test_canonical_json_is_rfc8785(value: Any) -> None:
    try:
        expected = _reference(value)
    except Exception as refusal:
        with pytest.raises((type(refusal), ValueError, TypeError)):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@given(st.lists(with_surrogates, min_size=1, max_size=3), st.booleans())
def test_lone_surrogates_are_refused_like_rfc8785(parts: list[str], as_name: bool) -> None:
    value: Any = dict.fromkeys(parts, 1) if as_name else {"v": parts}
    try:
        expected = _reference(value)
    except Exception:
        with pytest.raises(Exception):  # noqa: B017, PT011 - the library's refusal, whatever its type
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@settings(max_examples=300)
@given(st.dictionaries(names, json_values, max_size=5))
def test_argument_hash_is_sha256_of_rfc8785(arguments: dict[str, Any]) -> None:
    """Frozen once, hashed once: the digest is SHA-256 over rfc8785's bytes, or a clean refusal."""
    limits = ArgumentLimits(max_nodes=10_000)
    try:
        expected = "sha256:" + hashlib.sha256(_reference(arguments)).hexdigest()
    except Exception:
        with pytest.raises(InvalidRequest):
            freeze_and_hash(arguments, limits)
        return
    if any(type(v) is int and abs(v) > 2**53 - 1 for v in _leaves(arguments)):
        with pytest.raises(InvalidRequest) as refused:  # outside the interoperable range: refused first
            freeze_and_hash(arguments, limits)
        assert refused.value.reason == "argument_invalid"
        return
    frozen, digest = freeze_and_hash(arguments, limits)
    assert digest == expected
    assert arguments_hash(frozen) == expected


ascii_names = st.text(st.sampled_from([chr(c) for c in range(0x80)]), max_size=8)
flat_values = st.none() | st.booleans() | integers | text | long_text


@settings(max_examples=500)
@given(st.dictionaries(ascii_names, flat_values, max_size=8))
@example({"b": 2, "a": 1, "A": True, "_": None, "~": '\x00\x1f\x7f"\\/\u2028\U0001f600'})
@example({"\x00": "", "\x7f": "x" * 4000, '"': "\n" * 100})
def test_flat_arguments_hash_is_sha256_of_rfc8785(arguments: dict[str, Any]) -> None:
    """Flat arguments (ASCII names to text, integers, booleans and nulls) are hashed over the
    standard library's encoder: the digest is still SHA-256 over rfc8785's bytes."""
    try:
        expected = "sha256:" + hashlib.sha256(_reference(arguments)).hexdigest()
    except Exception:
        with pytest.raises(InvalidRequest):
            freeze_and_hash(arguments, ArgumentLimits())
        return
    if any(type(v) is int and abs(v) > 2**53 - 1 for v in arguments.values()):
        with pytest.raises(InvalidRequest):
            freeze_and_hash(arguments, ArgumentLimits())
        return
    frozen, digest = freeze_and_hash(arguments, ArgumentLimits())
    assert digest == expected
    assert arguments_hash(frozen) == expected  # the general encoder agrees


def test_flat_arguments_take_the_standard_encoder_when_small() -> None:
    """The fast path is taken for small flat arguments only, and its digest is rfc8785's."""
    from mcpgov._arguments import freeze_lazily

    small: dict[str, Any] = {"a": 1, "b": "two", "c": None, "d": False}
    frozen, digest = freeze_lazily(small, ArgumentLimits())
    assert digest is not None and digest._flat == small
    assert digest.value() == "sha256:" + hashlib.sha256(rfc8785.dumps(small)).hexdigest()
    small["a"] = 2  # the caller's dict is not what was frozen
    assert frozen is not None and frozen["a"] == 1
    assert digest.value() == "sha256:" + hashlib.sha256(rfc8785.dumps({**small, "a": 1})).hexdigest()
    _, big = freeze_lazily({"blob": "x" * 5000}, ArgumentLimits())
    assert big is not None and big._flat is None
    _, nested = freeze_lazily({"a": [1]}, ArgumentLimits())
    assert nested is not None and nested._flat is None


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, (dict, MappingProxyType)):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_a_megabyte_string_hashes_to_the_rfc8785_digest() -> None:
    for blob in ("x" * 1_000_000, "é" * 500_000, "a" * 999_999 + "\n", "\U0001f600" * 250_000):
        expected = "sha256:" + hashlib.sha256(rfc8785.dumps({"blob": blob})).hexdigest()
        assert freeze_and_hash({"blob": blob}, ArgumentLimits())[1] == expected
        assert (
            freeze_and_hash({"blob": [blob]}, ArgumentLimits())[1]
            == "sha256:" + hashlib.sha256(rfc8785.dumps({"blob": [blob]})).hexdigest()
        )


@pytest.mark.anyio
@pytest.mark.parametrize(
    "arguments",
    [{"text": "\ud800"}, {"text": "ok\udfffok"}, {"nested": {"deep": ["\udc00"]}}],
)
async def test_a_lone_surrogate_argument_is_a_clean_audited_refusal(mode: str, arguments: dict[str, Any]) -> None:
    from mcp import Client

    ran: list[str] = []
    server = MCPServer("text")

    @server.tool()
    def echo(text: str = "", nested: dict[str, Any] | None = None) -> str:
        ran.append(text)
        return text

    hooks = Hooks()

    @hooks.tool("echo")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("echo-ok")

    sink = InMemoryAuditSink()
    govern(server, hooks, audit=sink)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("echo", arguments)
        assert caught.value.code == -32602
        assert (await client.call_tool("echo", {"text": "fine"})).is_error is False
    assert ran == ["fine"]
    refusals = [e for e in sink.decisions() if e.effect == "deny"]
    assert [(e.target, e.reason) for e in refusals] == [("echo", "argument_invalid")]


# Long strings (4,096 characters and more) are escaped over their UTF-8, with a bound on the
# replacements tried before the standard library's escaper takes over: generated here at every
# density, from one escaped character in a long text to escapes everywhere.
def _repeated(parts: list[tuple[str, int]], pad: int, at: int) -> str:
    joined = "".join(piece * times for piece, times in parts)
    return joined[:at] + "x" * pad + joined[at:]


very_long_text = st.builds(
    _repeated,
    st.lists(st.tuples(text, st.integers(1, 1500)), min_size=1, max_size=4),
    st.sampled_from([0, 4096, 5000]),
    st.integers(0, 20_000),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(very_long_text, min_size=1, max_size=3), st.booleans())
def test_long_text_is_rfc8785_at_every_density_of_escapes(strings: list[str], as_object: bool) -> None:
    value: Any = {f"k{i}": s for i, s in enumerate(strings)} if as_object else strings
    try:
        expected = _reference(value)
    except Exception as refusal:  # a lone surrogate from st.characters()
        with pytest.raises((type(refusal), ValueError, TypeError)):
            canonical_json(value)
        with pytest.raises(InvalidRequest):
            freeze_and_hash({"v": value}, ArgumentLimits())
        return
    assert canonical_json(value) == expected
    assert freeze_and_hash({"v": value}, ArgumentLimits())[1] == (
        "sha256:" + hashlib.sha256(_reference({"v": value})).hexdigest()
    )


@pytest.mark.parametrize("escapes", [1, 2047, 2048, 2049, 2050, 8000])
@pytest.mark.parametrize("spread", ["\n", '\n"', "\\\x00", "é\t", "\U0001f600\x1f"])
def test_long_text_at_the_bound_of_replaced_escapes(escapes: int, spread: str) -> None:
    """Around one escape per 4 bytes (8,192 bytes: 2,048 replacements), whichever way the text
    is escaped, its bytes are rfc8785's."""
    chars = list("y" * 8192)
    for i in range(escapes):
        chars[(i * 61) % 8192] = spread[i % len(spread)]
    blob = "".join(chars)
    assert canonical_json({"blob": blob}) == rfc8785.dumps({"blob": blob})
    assert canonical_json([blob, blob[:5000]]) == rfc8785.dumps([blob, blob[:5000]])


@pytest.mark.parametrize("at", [0, 4095, 65_535, 65_536, 65_537, 199_999])
@pytest.mark.parametrize("code", [0xD800, 0xDBFF, 0xDC00, 0xDFFF])
def test_a_lone_surrogate_anywhere_in_long_text_is_refused(at: int, code: int) -> None:
    """Wherever it sits in a long string (also beyond the first 65,536 characters looked at at
    once), a lone surrogate is refused when the arguments are frozen, and by the encoder."""
    for filler in ("x", "é", "日", "\U0001f600"):
        blob = (filler * 200_000)[:at] + chr(code) + filler * 10
        with pytest.raises(InvalidRequest) as refused:
            freeze_and_hash({"blob": blob}, ArgumentLimits())
        assert refused.value.reason == "argument_invalid"
        with pytest.raises(InvalidRequest):
            freeze_and_hash({"blob": [blob]}, ArgumentLimits())
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_json({"blob": blob})
        with pytest.raises(InvalidRequest):
            arguments_hash({"blob": blob})
    paired = "\ud83d\ude00" * 3  # a surrogate pair is two lone surrogates in a Python string
    with pytest.raises(InvalidRequest):
        freeze_and_hash({"blob": "x" * 70_000 + paired}, ArgumentLimits())


@pytest.mark.parametrize("filler", ["x", "日", "é\U0001f600"])
def test_escapes_found_in_any_block_of_very_long_text(filler: str) -> None:
    """Text beyond 256 KiB is searched block by block: each escaped character, alone in the
    text at a block's first or last byte or at its end, is still escaped as rfc8785 does."""
    base = filler * (600_000 // len(filler.encode("utf-8")))
    size = len(base.encode("utf-8"))
    for code in (0x00, 0x0A, 0x0B, 0x1F, 0x22, 0x5C):
        for at_byte in (0, 262_143, 262_144, 524_288, size):
            at = len(base.encode("utf-8")[:at_byte].decode("utf-8", "ignore"))
            blob = base[:at] + chr(code) + base[at:]
            assert canonical_json({"blob": blob}) == rfc8785.dumps({"blob": blob}), (code, at_byte)
