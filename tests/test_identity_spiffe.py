"""SPIFFE IDs and SPIFFE ID patterns: strict parsing (property-tested) and segment-wise matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpgov import ConfigurationError
from mcpgov.identity import SpiffeId, SpiffeIdError, SpiffeIdPattern

TRUST_DOMAIN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_", min_size=1, max_size=30)
SEGMENT = st.text(alphabet="ABCxyz0123456789.-_", min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


@given(TRUST_DOMAIN, st.lists(SEGMENT, max_size=6))
def test_valid_ids_round_trip(trust_domain: str, segments: list[str]) -> None:
    text = f"spiffe://{trust_domain}" + "".join(f"/{s}" for s in segments)
    parsed = SpiffeId.parse(text)
    assert str(parsed) == text
    assert parsed.trust_domain == trust_domain
    assert parsed.segments == tuple(segments)


@given(st.text(max_size=80))
def test_parser_accepts_only_what_it_can_print_back(text: str) -> None:
    try:
        parsed = SpiffeId.parse(text)
    except SpiffeIdError:
        return
    assert str(parsed) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "spiffe://",
        "SPIFFE://example.org/a",
        "spiffe://Example.org/a",
        "spiffe://example.org:443/a",
        "spiffe://user@example.org/a",
        "spiffe://example.org/a/",
        "spiffe://example.org//a",
        "spiffe://example.org/a/../b",
        "spiffe://example.org/./a",
        "spiffe://example.org/a?x=1",
        "spiffe://example.org/a#f",
        "spiffe://example.org/a%2Fb",
        "https://example.org/a",
        "spiffe://example.org/" + "a" * 2100,
    ],
)
def test_invalid_ids_are_refused(text: str) -> None:
    with pytest.raises(SpiffeIdError):
        SpiffeId.parse(text)


def test_patterns_match_segment_by_segment() -> None:
    p = SpiffeIdPattern("spiffe://example.org/tenant/{tenant}/agent/*")
    assert p.match("spiffe://example.org/tenant/acme/agent/7") == {"tenant": "acme"}
    assert p.match("spiffe://example.org/tenant/acme/agent/7/x") is None
    assert p.match("spiffe://example.org/tenant/acme/agent") is None
    assert p.match("spiffe://example.org/tenant/acme/robot/7") is None
    assert p.match("spiffe://other.org/tenant/acme/agent/7") is None
    assert p.match("spiffe://example.org/tenant/acme/agent/../7") is None  # invalid IDs never match
    rest = SpiffeIdPattern("spiffe://example.org/ns/**")
    assert rest.matches("spiffe://example.org/ns/a/b/c")
    assert not rest.matches("spiffe://example.org/ns")
    assert SpiffeIdPattern("spiffe://example.org").matches("spiffe://example.org")


@given(TRUST_DOMAIN, st.lists(SEGMENT, min_size=1, max_size=5), st.lists(SEGMENT, min_size=1, max_size=3))
def test_a_pattern_never_matches_outside_its_prefix(td: str, prefix: list[str], more: list[str]) -> None:
    pattern = SpiffeIdPattern(f"spiffe://{td}/" + "/".join(prefix) + "/**")
    inside = f"spiffe://{td}/" + "/".join(prefix + more)
    assert pattern.matches(inside)
    assert not pattern.matches(f"spiffe://{td}x/" + "/".join(prefix + more))
    assert not pattern.matches(f"spiffe://{td}/" + "/".join(prefix))


@pytest.mark.parametrize(
    "pattern",
    ["https://x/a", "spiffe://Ex/a", "spiffe://x/**/a", "spiffe://x/{t}/{t}", "spiffe://x/a//b", "spiffe://x/../a"],
)
def test_malformed_patterns_are_configuration_errors(pattern: str) -> None:
    with pytest.raises(ConfigurationError):
        SpiffeIdPattern(pattern)
