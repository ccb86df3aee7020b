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
    # the renamed confusing pairs (tools/rename_surface.py)
    ("mcpgov", "GovernanceMiddleware"): "mcpgov.ServerGovernance",
    ("mcpgov", "OIDCIssuer"): "mcpgov.identity.OIDCTrust",
    ("mcpgov.identity", "OIDCIssuer"): "mcpgov.identity.OIDCTrust",
    ("mcpgov.identity", "IdentityProvider"): "mcpgov.identity.IdentitySource",
    ("mcpgov.credentials", "IdentityVerifier"): "mcpgov.credentials.SubjectTokenVerifier",
}

# Renamed, not just unexported: old name -> the public spelling of the new one.
RENAMED = {key: use for key, (source, use) in OLD.items() if use is not None and use.rpartition(".")[2] != key[1]}


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


def _identifiers(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.update(filter(None, (node.name.rpartition(".")[2], node.asname)))
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            found.add(node.name)
    return found


def test_no_source_module_uses_a_renamed_name() -> None:
    """Old names live on only as strings in the tables; a name still public elsewhere (the
    identity package's ``IdentityVerifier``) is checked only inside the package that renamed it."""
    assert len(RENAMED) >= 5
    public = {name for m in modules() if m.public for name in getattr(importlib.import_module(m.name), "__all__", ())}
    offenders = []
    for module in modules():
        used = _identifiers(module.tree)
        for (package, old), new in RENAMED.items():
            scoped = old in public and not module.name.startswith(package)
            if old in used and not scoped:
                offenders.append(f"{module.name} uses {old} (now {new})")
    assert offenders == []


def test_the_rename_check_sees_every_spelling() -> None:
    source = "from mcpgov import GovernanceMiddleware as G\nclass OIDCIssuer: ...\nx = mcpgov.identity.IdentityProvider"
    assert {"GovernanceMiddleware", "G", "OIDCIssuer", "IdentityProvider"} <= _identifiers(ast.parse(source))


def test_the_deprecated_test_kit_module_exports_nothing_new() -> None:
    import mcpgov.testkit

    assert mcpgov.testkit.__all__ == []
    with pytest.raises(AttributeError):
        _ = mcpgov.testkit.serve_http
