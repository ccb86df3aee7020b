"""Configuration numbers are checked in one place: the same value in another type or spelling is refused.

A ``bool`` is an ``int`` to Python and ``nan``/``inf`` are floats; none of them is a number of
seconds. Every constructor below refuses them with a :class:`ConfigurationError` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpgov import ConfigurationError
from mcpgov._validate import is_number, is_positive_number
from mcpgov.audit import QueuedSink
from mcpgov.credentials import ClientCredentials, CredentialIssuer, IssuerTokenSource, RevocationList, SigningKeySet

NOT_NUMBERS: list[object] = [True, False, math.nan, math.inf, -math.inf, "1", b"1", None, Decimal("1"), [1], 1j]


@given(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text()))
def test_a_number_is_a_finite_int_or_float_and_never_a_bool(value: object) -> None:
    expected = type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]
    assert is_number(value) is expected
    assert is_positive_number(value) is (expected and value > 0)  # type: ignore[operator]


def test_number_subclasses_and_other_numeric_types_are_judged_by_value() -> None:
    assert is_number(Fraction(1, 2)) is False  # not an int or float: refused, not coerced
    assert is_number(Decimal("0.5")) is False


def _issuer() -> CredentialIssuer:
    return CredentialIssuer(issuer="https://issuer.test", keys=SigningKeySet.generate(), revocations=RevocationList())


CONSTRUCTORS: dict[str, Callable[[Any], object]] = {
    "refresh_before": lambda v: ClientCredentials(IssuerTokenSource(_issuer()), audience="a", refresh_before=v),
    "linger": lambda v: QueuedSink(lambda event: None, linger=v),
    "leeway": lambda v: RevocationList(leeway=v),
}


@pytest.mark.parametrize("field", sorted(CONSTRUCTORS))
@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
def test_every_number_field_refuses_what_is_not_a_finite_number(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=field):
        CONSTRUCTORS[field](value)
