"""Names that moved or left the public surface keep working for one release, and warn once.

Each entry: the old module and name, and the object it must still be. The first read warns
(``DeprecationWarning`` naming the replacement), later reads are silent, and no module of
``src/`` uses an old spelling.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import pytest

import mcpgov.testing
from mcpgov import _harness

# (old module, old name) -> (the object, the replacement named in the warning, or None)
OLD: dict[tuple[str, str], tuple[Any, str | None]] = {
    **{
        ("mcpgov.testkit", name): (getattr(mcpgov.testing, name), f"mcpgov.testing.{name}")
        for name in (
            "FrozenClock",
            "GovernedHarness",
            "Inventory",
            "PolicyAssertionError",
            "Verdict",
            "assert_allowed",
            "assert_denied",
            "assert_hidden",
            "assert_requires_approval",
            "assert_visible",
            "inventory_of",
        )
    },
    **{
        ("mcpgov.testkit", name): (getattr(_harness, name), None)
        for name in (
            "CREDENTIAL_ISSUER",
            "DEFAULT_AUDIENCE",
            "DEFAULT_FROZEN_TIME",
            "DEFAULT_ISSUER",
            "Caller",
            "Visibility",
            "expect_effect",
            "expect_visibility",
            "generic_server",
        )
    },
}


@pytest.mark.parametrize(("module_name", "name"), sorted(OLD), ids=str)
def test_an_old_name_still_works_and_warns_once(module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    vars(module).pop(name, None)  # as if never read (another test may have read it)
    expected, replacement = OLD[module_name, name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = getattr(module, name)
        second = getattr(module, name)
    assert first is expected and second is expected
    assert [w.category for w in caught] == [DeprecationWarning]
    message = str(caught[0].message)
    assert f"{module_name}.{name} is deprecated" in message
    assert (replacement or "no longer public") in message
    assert caught[0].filename == __file__  # points at the code that reads the old name


def test_the_deprecated_test_kit_module_exports_nothing_new() -> None:
    import mcpgov.testkit

    assert mcpgov.testkit.__all__ == []
    with pytest.raises(AttributeError):
        _ = mcpgov.testkit.serve_http
