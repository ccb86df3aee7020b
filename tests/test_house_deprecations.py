"""Names that moved or left the public surface keep working for one release, and warn once.

Every public package lists them in ``_DEPRECATED`` (name -> where the value lives now, and the
public spelling that replaces it). For each: the first read warns (``DeprecationWarning`` naming
the replacement, pointing at the reader's line), later reads are silent, the value is the one
the replacement names, the name is no longer exported, and no module of ``src/`` imports it
from its old home.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from typing import Any

import pytest

from tests.house_support import modules


def _tables() -> dict[tuple[str, str], tuple[str, str | None]]:
    found: dict[tuple[str, str], tuple[str, str | None]] = {}
    for module in modules():
        if module.public:
            table = getattr(importlib.import_module(module.name), "_DEPRECATED", {})
            found.update({(module.name, old): where for old, where in table.items()})
    return found


OLD = _tables()

# What must keep working whatever the tables say (a sample across packages and kinds of name).
MUST_STILL_WORK = {
    ("mcpgov.testkit", "GovernedHarness"): "mcpgov.testing.GovernedHarness",
    ("mcpgov.testkit", "assert_allowed"): "mcpgov.testing.assert_allowed",
    ("mcpgov.testkit", "DEFAULT_ISSUER"): None,
    ("mcpgov", "PolicyMiddleware"): "mcpgov.policy.PolicyMiddleware",
    ("mcpgov", "SigningKeySet"): "mcpgov.credentials.SigningKeySet",
    ("mcpgov.audit", "GENESIS"): None,
    ("mcpgov.credentials", "EMPTY_ARGS_HASH"): None,
    ("mcpgov.policy", "Engine"): None,
    ("mcpgov.policy", "merge_obligations"): "mcpgov.merge_obligations",
    ("mcpgov.pinning", "pin"): None,
    ("mcpgov.cli", "COMMANDS"): None,
}


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_the_tables_keep_what_must_keep_working() -> None:
    assert {key: OLD[key][1] for key in MUST_STILL_WORK if key in OLD} == MUST_STILL_WORK


@pytest.mark.parametrize(("module_name", "name"), sorted(OLD), ids=str)
def test_an_old_name_still_works_and_warns_once(module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    vars(module).pop(name, None)  # as if never read (another test may have read it)
    source, replacement = OLD[module_name, name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = getattr(module, name)
        second = getattr(module, name)
    assert first is second
    source_module, _, attribute = source.partition(":")
    assert first is getattr(importlib.import_module(source_module), attribute or name)
    if replacement is not None:
        assert first is _resolve(replacement)
        home, _, new_name = replacement.rpartition(".")
        assert new_name in importlib.import_module(home).__all__
    assert name not in module.__all__
    assert [w.category for w in caught] == [DeprecationWarning]
    message = str(caught[0].message)
    assert f"{module_name}.{name} is deprecated" in message
    assert (replacement or "no longer public") in message
    assert caught[0].filename == __file__  # points at the code that reads the old name


def test_no_source_module_imports_an_old_name() -> None:
    offenders = []
    for module in modules():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                offenders += [
                    f"{module.name}: from {node.module} import {alias.name}"
                    for alias in node.names
                    if (node.module, alias.name) in OLD
                ]
    assert offenders == []


def test_the_deprecated_test_kit_module_exports_nothing_new() -> None:
    import mcpgov.testkit

    assert mcpgov.testkit.__all__ == []
    with pytest.raises(AttributeError):
        _ = mcpgov.testkit.serve_http
