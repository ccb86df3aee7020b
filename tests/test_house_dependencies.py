"""Declared dependencies: every third-party module mcpgov imports comes from a distribution that
pyproject.toml declares (core, or the extra of the module that needs it), and every core
dependency is imported somewhere in the package."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.house_support import ROOT, imports, modules

# Modules that may import what only an extra installs: the module, the extra.
MODULE_EXTRAS: dict[str, str] = {
    "mcpgov.redis": "redis",
    "mcpgov.policy._cedar": "cedar",
    "mcpgov.audit._otel": "otel",
}

# Modules that are only ever loaded by a tool that brings the import itself: the module, the import.
LOADED_BY: dict[str, tuple[str, str]] = {
    "mcpgov.pytest_plugin": ("pytest", "a pytest plugin (entry point pytest11): pytest loads it"),
}

# Distributions whose modules a declared distribution ships through another one: the module's
# distribution, the one to declare (``fastmcp`` 4 installs its package from ``fastmcp-slim``).
SHIPPED_BY: dict[str, str] = {"fastmcp-slim": "fastmcp"}

# Core dependencies that may stay unimported, each with its reason.
NOT_IMPORTED: dict[str, str] = {
    "authlib": "OAuth support (client credentials, token introspection) is being built on it",
}


@functools.cache
def _pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    return data


def _names(requirements: Iterable[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def core() -> set[str]:
    """The distributions the core install declares."""
    return _names(_pyproject()["project"]["dependencies"])


def extra(name: str) -> set[str]:
    """The distributions extra ``name`` declares (besides core)."""
    return _names(_pyproject()["project"]["optional-dependencies"][name])


@functools.cache
def _file_owners() -> dict[Path, str]:
    owners: dict[Path, str] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            if file.suffix == ".py":
                owners[Path(str(dist.locate_file(file))).resolve()] = canonicalize_name(dist.metadata["Name"])
    return owners


def distribution_of(module: str) -> str | None:
    """The installed distribution that provides ``module`` (by the file it is loaded from)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        parent = module.rpartition(".")[0]
        return distribution_of(parent) if parent else None
    if spec.origin is None or spec.origin in {"built-in", "frozen"}:
        locations = list(spec.submodule_search_locations or ())
        candidates = [Path(loc) / "__init__.py" for loc in locations]
    else:
        candidates = [Path(spec.origin)]
    owners = _file_owners()
    for candidate in candidates:
        owner = owners.get(candidate.resolve())
        if owner is not None:
            return owner
    return None


def third_party_imports() -> list[tuple[str, str, bool]]:
    """``(module of mcpgov, imported module, at import time)`` for every third-party import.

    ``from package import name`` counts as an import of ``package.name`` when that is a module
    (namespace packages such as ``opentelemetry`` are provided by several distributions).
    """
    found: list[tuple[str, str, bool]] = []
    for module in modules():
        for imp in imports(module):
            root = imp.target.split(".")[0]
            if not root or root == "mcpgov" or root in sys.stdlib_module_names:
                continue
            eager = imp.top_level and not imp.guarded
            submodules = [f"{imp.target}.{name}" for name in imp.names if _is_module(f"{imp.target}.{name}")]
            found.extend((module.name, target, eager) for target in submodules or [imp.target])
    return sorted(set(found))


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def test_the_walk_sees_the_real_imports() -> None:
    targets = {target.split(".")[0] for _, target, _ in third_party_imports()}
    assert {"mcp", "pydantic", "joserfc", "anyio", "rfc8785", "redis", "cedarpy"} <= targets


@pytest.mark.parametrize(
    ("module", "target", "eager"), third_party_imports(), ids=lambda v: v if isinstance(v, str) else None
)
def test_every_import_is_declared(module: str, target: str, eager: bool) -> None:
    if module in LOADED_BY and target.split(".", maxsplit=1)[0] == LOADED_BY[module][0]:
        return
    dist = distribution_of(target)
    if dist is None and not eager and sys.version_info < (3, 11):
        pytest.skip(f"{target} is not installed on this Python (an extra for 3.11 and later)")
    assert dist is not None, f"{module} imports {target}, which no installed distribution provides"
    dist = SHIPPED_BY.get(dist, dist)
    allowed = set(core())
    owner_extra = next((x for m, x in MODULE_EXTRAS.items() if module == m or module.startswith(m + ".")), None)
    if owner_extra is not None:
        allowed |= extra(owner_extra)
    elif not eager:
        # An optional (guarded or deferred) import may come from any extra except the dev tools.
        for name in _pyproject()["project"]["optional-dependencies"]:
            if name != "dev":
                allowed |= extra(name)
    assert dist in allowed, (
        f"{module} imports {target} from {dist}, which pyproject.toml does not declare "
        f"{'in core or the ' + owner_extra + ' extra' if owner_extra else 'as a core dependency'}"
    )


def test_every_core_dependency_is_imported() -> None:
    used = {distribution_of(target) for _, target, _ in third_party_imports()}
    unused = {dist for dist in core() if dist not in used and dist not in NOT_IMPORTED}
    assert not unused, f"declared but never imported by mcpgov: {sorted(unused)}"


def test_every_extra_module_names_a_real_extra() -> None:
    declared = set(_pyproject()["project"]["optional-dependencies"])
    assert set(MODULE_EXTRAS.values()) <= declared
    names = {m.name for m in modules()}
    assert set(MODULE_EXTRAS) <= names
    assert set(LOADED_BY) <= names


def test_requirements_are_valid_and_unique() -> None:
    """Each requirement parses and names its distribution once (in core, and within each extra)."""
    groups = {"core": _pyproject()["project"]["dependencies"], **_pyproject()["project"]["optional-dependencies"]}
    for group, requirements in groups.items():
        names = [canonicalize_name(Requirement(r).name) for r in requirements]
        assert len(names) == len(set(names)), f"{group} declares a distribution twice"
        for requirement in requirements if group != "dev" else ():
            assert re.search(r"[<>=~]", requirement), f"{group}: {requirement} has no version bound"


def test_distribution_lookup_finds_namespace_and_renamed_packages() -> None:
    assert distribution_of("yaml") == "pyyaml"
    assert distribution_of("opentelemetry.trace") == "opentelemetry-api"
    assert distribution_of("opentelemetry.sdk.trace") == "opentelemetry-sdk"
    assert distribution_of("mcp_types") == "mcp-types"
    assert distribution_of("no_such_module_anywhere") is None
