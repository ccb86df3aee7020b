"""The public surface is deliberate (in the style of httpx's ``test_exported_members``).

For every public module of mcpgov (no ``_`` in its dotted name): ``__all__`` exists, is sorted
the way ruff sorts it, names each member once, and every name resolves; every exported class
and function of mcpgov names a public module as its ``__module__`` that exports it (so
tracebacks, reprs, pickles and docs show a path users may import); and the whole surface
matches the snapshot tests/vectors/public_api.txt, so adding, removing or moving a public name
is a reviewed change. To accept a change::

    MCPGOV_UPDATE_PUBLIC_API=1 pytest tests/test_house_public_api.py
"""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
import re
import sys
import typing
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpgov._public import home_of
from tests.house_support import ROOT, modules

SNAPSHOT = ROOT / "tests" / "vectors" / "public_api.txt"
UPDATE = os.environ.get("MCPGOV_UPDATE_PUBLIC_API") == "1"


def public_modules() -> list[str]:
    """The dotted names of mcpgov's public modules."""
    return [m.name for m in modules() if m.public]


def _load(name: str) -> ModuleType:
    return importlib.import_module(name)


def isort_key(name: str) -> tuple[int, list[Any]]:
    """ruff's RUF022 order: SCREAMING_CASE, then CamelCase, then the rest; natural order within each."""
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return group, natural


def kind_of(value: Any) -> str:
    """How a public name is described in the snapshot."""
    if inspect.ismodule(value):
        return "module"
    if _is_type_alias(value) or value is Any:  # first: on 3.10 inspect.isclass(tuple[str, int]) is
        return "type alias"  # true, and typing.Any is a class only from 3.11 on
    if inspect.isclass(value):
        if issubclass(value, BaseException):
            return "exception"
        return "protocol" if getattr(value, "_is_protocol", False) else "class"
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        return "async function" if inspect.iscoroutinefunction(value) else "function"
    if callable(value):
        return "callable"  # a click command, a pytest fixture...: their types belong to those libraries
    if isinstance(value, (str, int, float, bool, bytes, frozenset, tuple, dict)):
        return f"constant {type(value).__name__}"
    return f"alias {type(value).__name__}"


def _is_type_alias(value: Any) -> bool:
    if typing.get_origin(value) is not None:
        return True
    return not isinstance(value, type) and type(value).__module__ in {"typing", "typing_extensions"}


def surface() -> list[str]:
    """One line per exported name: ``module name kind [defined-in]``."""
    lines: list[str] = []
    for module_name in public_modules():
        module = _load(module_name)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            kind = kind_of(value)
            line = f"{module_name} {name} {kind}"
            if kind in {"class", "exception", "protocol", "function", "async function"}:
                line += f" @ {value.__module__}"
            lines.append(line)
    return lines


def test_the_walk_finds_every_public_package() -> None:
    names = set(public_modules())
    assert {"mcpgov", "mcpgov.policy", "mcpgov.credentials", "mcpgov.identity", "mcpgov.audit"} <= names
    assert {"mcpgov.pinning", "mcpgov.approval", "mcpgov.testing"} <= names
    assert not any(part.startswith("_") for name in names for part in name.split("."))


@pytest.mark.parametrize("module_name", public_modules())
def test_all_is_present_sorted_unique_and_resolvable(module_name: str) -> None:
    module = _load(module_name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{module_name} has no __all__ list"
    assert exported == sorted(exported, key=isort_key), f"{module_name}.__all__ is not sorted"
    assert len(exported) == len(set(exported)), f"{module_name}.__all__ repeats a name"
    for name in exported:
        dunder = name.startswith("__") and name.endswith("__")
        assert dunder or not name.startswith("_"), f"{module_name} exports the private name {name}"
        assert hasattr(module, name), f"{module_name}.__all__ names {name}, which does not resolve"


def _resolve(module: str, qualname: str) -> Any:
    found: Any = _load(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


@pytest.mark.parametrize("module_name", public_modules())
def test_exported_classes_and_functions_name_their_public_home(module_name: str) -> None:
    """``__module__`` of an exported class or function is the public module users import it from."""
    module = _load(module_name)
    checked = 0
    for name in getattr(module, "__all__", ()):
        value = getattr(module, name)
        if not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        home = value.__module__
        if not home.startswith("mcpgov"):
            continue  # re-exported from another library; its own module is its home
        checked += 1
        assert home == home_of(home), f"{module_name}.{name} reports the private module {home}"
        assert _resolve(home, value.__qualname__) is value, f"{module_name}.{name} is not importable from {home}"
        assert value.__name__ in _load(home).__all__, f"{module_name}.{name} names {home}, which does not export it"
    assert checked or module_name in {"mcpgov.cli", "mcpgov.testkit", "mcpgov.pytest_plugin"}  # click, pytest


def test_the_home_check_refuses_a_private_module() -> None:
    """What the check above compares: a class left in its private module fails it."""

    class Stray:
        pass

    Stray.__module__ = "mcpgov.policy._middleware"
    assert home_of(Stray.__module__) != Stray.__module__
    assert _resolve(Stray.__module__, Stray.__qualname__) is not Stray


def test_exported_dataclasses_still_work_as_pydantic_fields() -> None:
    """Annotations of exported classes resolve: a user's model may hold mcpgov values."""
    from pydantic import BaseModel, ConfigDict

    from mcpgov import Actor, ArgumentLimits, Decision, Effect, Principal

    class Holder(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)

        principal: Principal
        limits: ArgumentLimits
        decision: Decision

    decision = Decision(Effect.ALLOW, "rule", "ok")
    held = Holder(
        principal=Principal("https://idp", "alice", actors=(Actor("bob"),)), limits=ArgumentLimits(), decision=decision
    )
    assert held.principal.actors == (Actor("bob"),)
    for cls in (Principal, ArgumentLimits, Decision):
        assert typing.get_type_hints(cls)


@pytest.mark.parametrize("module_name", public_modules())
def test_annotations_of_exported_classes_resolve_after_they_moved(module_name: str) -> None:
    """Publishing evaluated each class's own annotations where they were written, so type hints
    resolve with the class in its public home (a name imported there only for type checking
    resolves among the public names, which this walk has loaded)."""
    module = _load(module_name)
    for name in getattr(module, "__all__", ()):
        value = getattr(module, name)
        if not (inspect.isclass(value) and value.__module__.startswith("mcpgov")):
            continue
        own = inspect.get_annotations(value)
        hints = typing.get_type_hints(_own_annotations_probe(value) if _sdk_base_unresolvable(value) else value)
        assert set(own) <= set(hints)


def _sdk_base_unresolvable(cls: type) -> bool:
    """On Python 3.10 ``typing.get_type_hints`` fails on any dataclass with a ``KW_ONLY`` marker
    (the SDK's ``Client`` has one): only then are the class's own annotations resolved alone."""
    return sys.version_info < (3, 11) and any(
        not base.__module__.startswith("mcpgov") and "_" in inspect.get_annotations(base) for base in cls.__mro__[1:]
    )


def _own_annotations_probe(cls: type) -> type:
    """A bare class holding ``cls``'s own annotations in ``cls``'s (public) module."""
    return type(cls.__name__, (), {"__annotations__": dict(inspect.get_annotations(cls)), "__module__": cls.__module__})


def test_a_published_class_pickles_and_prints_by_its_public_path() -> None:
    from mcpgov import Actor, Effect
    from mcpgov.policy import PolicyMiddleware

    data = pickle.dumps((Actor("bob"), Effect.ALLOW))
    assert b"mcpgov._" not in data
    assert pickle.loads(data) == (Actor("bob"), Effect.ALLOW)  # noqa: S301 - our own bytes
    assert repr(PolicyMiddleware) == "<class 'mcpgov.policy.PolicyMiddleware'>"


def test_a_published_error_pickles_by_its_public_path() -> None:
    from mcpgov import IdentityError
    from mcpgov.policy import PolicyError

    data = pickle.dumps(IdentityError("no token"))
    assert b"mcpgov._" not in data
    error = pickle.loads(data)  # noqa: S301 - our own bytes
    assert type(error) is IdentityError and error.detail == "no token"
    assert PolicyError.__module__ == "mcpgov.policy"


def test_lazily_loaded_names_are_published_when_loaded() -> None:
    import mcpgov

    assert mcpgov.govern.__module__ == "mcpgov"
    assert mcpgov.to_mcp_error.__module__ == "mcpgov"
    assert mcpgov.merge_obligations.__module__ == "mcpgov"
    assert mcpgov.Principal.__module__ == "mcpgov"


@given(st.lists(st.sampled_from(["mcpgov", "policy", "_load", "_x", "audit", "_jsonl", "a_b"]), min_size=1))
def test_home_of_stops_at_the_first_private_part(parts: list[str]) -> None:
    home = home_of(".".join(parts))
    assert not any(p.startswith("_") for p in home.split(".") if p)
    assert ".".join(parts).startswith(home)
    public_prefix = []
    for part in parts:
        if part.startswith("_"):
            break
        public_prefix.append(part)
    assert home == ".".join(public_prefix)


def test_the_public_surface_matches_the_snapshot() -> None:
    current = "\n".join(surface()) + "\n"
    if UPDATE:
        SNAPSHOT.write_text(current, "utf-8")
    recorded = SNAPSHOT.read_text("utf-8")
    added = sorted(set(current.splitlines()) - set(recorded.splitlines()))
    removed = sorted(set(recorded.splitlines()) - set(current.splitlines()))
    assert not (added or removed), (
        "the public API changed; if deliberate, run MCPGOV_UPDATE_PUBLIC_API=1 pytest tests/test_house_public_api.py "
        "and note it in the changelog\n"
        + "\n".join([f"+ {line}" for line in added] + [f"- {line}" for line in removed])
    )
    assert recorded == current  # same lines, same order
