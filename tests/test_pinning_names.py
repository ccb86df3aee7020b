"""Tool-name rules: the MCP naming rule, and collisions after normalisation and confusable folding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpgov import PinningError
from mcpgov.pinning import check_name
from mcpgov.pinning._manifest import check_name_collisions
from mcpgov.pinning._names import NameIndex, find_collision, fold_name, name_problem, name_skeleton


@pytest.mark.parametrize("name", ["read_invoice", "billing.refund", "a-b_c.D9", "x" * 128])
def test_names_following_the_mcp_rule_pass(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "read invoice", "read,invoice", "réfund", "x" * 129, "tool/call", "\uff52efund"])
def test_names_outside_the_mcp_rule_are_refused(name: str) -> None:
    assert name_problem(name)


def test_a_non_string_name_is_refused() -> None:
    assert name_problem(42) == "tool name is a int, not a string"


@pytest.mark.parametrize(
    ("candidate", "approved"),
    [
        ("Refund", "refund"),  # case folding
        ("\uff52\uff45\uff46\uff55\uff4e\uff44", "refund"),  # NFKC: full-width letters
        ("read_lnvoice", "read_invoice"),  # confusable l / i
        ("read_1nvoice", "read_invoice"),  # confusable 1 / i
        ("send_emall", "send_email"),  # i / l again, at the end
        ("rnove", "move"),  # rn reads as m
        ("read-invoice", "read_invoice"),  # separators
        ("READ.INVOICE", "read_invoice"),  # separators and case
        ("readinvoice", "read_invoice"),  # a separator left out
        ("READ_1NV0ICE", "read-invoice"),  # all at once
        ("read\u2010invoice", "read_invoice"),  # a Unicode hyphen
    ],
)
def test_confusable_and_case_variants_collide(candidate: str, approved: str) -> None:
    assert find_collision(candidate, ["other", approved]) == approved


@pytest.mark.parametrize(
    ("candidate", "approved"), [("refunds", "refund"), ("read_invoices", "read_invoice"), ("write_file", "read_file")]
)
def test_distinct_names_do_not_collide(candidate: str, approved: str) -> None:
    assert find_collision(candidate, [approved]) is None


def test_a_name_does_not_collide_with_itself() -> None:
    assert find_collision("refund", ["refund"]) is None


def test_fold_name_normalises_and_case_folds() -> None:
    assert fold_name("\uff32\uff45\uff26\uff55\uff4e\uff44") == "refund"


def test_a_set_of_names_with_a_collision_is_refused() -> None:
    check_name_collisions(["read_invoice", "refund"])
    with pytest.raises(PinningError) as caught:
        check_name_collisions(["read_invoice", "refund", "read_lnvoice"])
    assert caught.value.reason == "name.collision"


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.", min_size=1, max_size=24)


@given(name=_names)
def test_case_variants_always_collide(name: str) -> None:
    variant = name.swapcase()
    if variant != name:
        assert find_collision(variant, [name]) == name


@given(name=_names, other=_names)
def test_collision_is_symmetric_for_case_folding(name: str, other: str) -> None:
    if name != other and fold_name(name) == fold_name(other):
        assert find_collision(name, [other]) == other
        assert find_collision(other, [name]) == name


_words = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8), min_size=1, max_size=4
)
_separators = st.sampled_from(["_", "-", ".", ""])


@given(words=_words, first=_separators, second=_separators, data=st.data())
def test_separator_and_case_variants_always_collide(
    words: list[str], first: str, second: str, data: st.DataObject
) -> None:
    name = first.join(words)
    variant = second.join(words)
    variant = "".join(c.upper() if data.draw(st.booleans()) else c for c in variant)
    if variant != name and name and variant:
        assert find_collision(variant, [name]) == name
        assert find_collision(variant, NameIndex(["unrelated", name])) == name


@given(names=st.lists(_names, max_size=30, unique=True), candidate=_names)
def test_the_index_answers_exactly_as_the_pairwise_check(names: list[str], candidate: str) -> None:
    index = NameIndex(names)
    expected = tuple(n for n in names if n != candidate and name_skeleton(n) == name_skeleton(candidate))
    assert index.collisions(candidate) == expected
    assert find_collision(candidate, index) == (expected[0] if expected else None)
    assert find_collision(candidate, names) == (expected[0] if expected else None)


@pytest.mark.parametrize(
    ("candidate", "approved"),
    [("\u0440ing_host", "ping_host"), ("read_fil\u0435", "read_file"), ("sh\u0435ll", "shell")],
)
def test_cyrillic_look_alikes_collide(candidate: str, approved: str) -> None:
    assert find_collision(candidate, NameIndex([approved])) == approved


def test_check_name_says_whether_a_name_is_valid_and_what_it_collides_with() -> None:
    existing = NameIndex(["read_file", "write_file"])
    assert check_name("list_files", existing).ok
    found = check_name("READ-FILE", existing)
    assert found.problem is None and found.collisions == ("read_file",) and not found.ok
    bad = check_name("read file", ["read_file"])
    assert bad.problem and bad.collisions == ("read_file",)
    assert check_name(7, existing).problem == "tool name is a int, not a string"
    assert check_name("read_file", existing).ok  # the same name is not a collision with itself
