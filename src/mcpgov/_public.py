"""Public homes: every exported class and function names the public module it is imported from.

A class defined in ``mcpgov.policy._middleware`` and exported by ``mcpgov.policy`` reports
``__module__ == "mcpgov.policy"``, as httpx does for its own names: tracebacks, reprs, pickles
and generated docs then show the path users import, never a private module.

``typing.get_type_hints``, dataclasses and pydantic resolve a class's string annotations in
``sys.modules[cls.__module__]``; a public package loads its names lazily, so before a class
moves its own annotations are evaluated where they were written (:func:`publish`). A user's
pydantic model with a ``Principal`` field keeps working.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["by_module", "home_of", "lazy_names", "moved", "publish", "renamed", "retired"]


_PRIVATE_HOMES = {"mcpgov._harness": "mcpgov.testing"}


def home_of(module: str) -> str:
    """The public module a private module belongs to: its dotted name up to the first ``_`` part.

    ``mcpgov.policy._load`` -> ``mcpgov.policy``; ``mcpgov._errors`` -> ``mcpgov``;
    a public module is its own home. The exception: the test kit's code lives in
    ``mcpgov._harness`` (the policy case runner uses it without importing the test kit) and its
    home is ``mcpgov.testing``.
    """
    for private, public in _PRIVATE_HOMES.items():
        if module == private or module.startswith(private + "."):
            return public
    parts: list[str] = []
    for part in module.split("."):
        if part.startswith("_"):
            break
        parts.append(part)
    return ".".join(parts)


def publish(module: str, namespace: Mapping[str, Any], names: Iterable[str] | None = None) -> None:
    """Point ``__module__`` of the exported classes and functions whose home is ``module`` at it.

    Args:
        module: the public module (``__name__`` of the package that exports the names).
        namespace: its namespace (``globals()``), or a mapping holding the objects to publish.
        names: the names to consider; ``namespace["__all__"]`` when omitted.

    Objects defined elsewhere (another package, another library) are left alone, so each
    object is published once, by the package it belongs to. A function's annotations resolve
    in its ``__globals__``; a class's own string annotations are evaluated first (see
    :func:`_freeze_annotations`).
    """
    for name in namespace.get("__all__", ()) if names is None else names:
        value = namespace.get(name)
        if not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        current = getattr(value, "__module__", None)
        if isinstance(current, str) and current != module and home_of(current) == module:
            if inspect.isclass(value):
                _freeze_annotations(value)
            value.__module__ = module


def _freeze_annotations(cls: type) -> None:
    """Evaluate ``cls``'s own string annotations in the module that defines it, in place.

    A dataclass field's ``type`` follows its annotation (pydantic reads it). An annotation that
    does not evaluate there (a name imported only for type checking) stays as it is: it did not
    resolve before either.
    """
    own = inspect.get_annotations(cls)
    if not own:
        return
    # As typing.get_type_hints does for a class: the module's names, then the class body's.
    names = {**vars(cls), **vars(sys.modules[cls.__module__])}
    fields = cls.__dict__.get("__dataclass_fields__", {})
    for key, annotation in list(own.items()):
        source = annotation.__forward_arg__ if isinstance(annotation, typing.ForwardRef) else annotation
        if not isinstance(source, str):
            continue
        try:
            value = eval(source, names)  # noqa: S307 - the class's own annotation, as typing does
        except Exception:  # noqa: BLE001, S112 - unresolvable where written: left for whoever resolves it
            continue
        own[key] = value
        field = fields.get(key)
        if field is not None and field.type in (annotation, source):
            field.type = value
    cls.__annotations__ = own


def lazy_names(
    package: str, table: Mapping[str, str], deprecated: Mapping[str, tuple[str, str | None]] | None = None
) -> Callable[[str], Any]:
    """The module ``__getattr__`` of a package whose names load on first use (PEP 562).

    ``table`` maps each public name to the module defining it. A name is imported when first
    read, published (see :func:`publish`) and cached in the package, so importing the package
    (or its CLI) loads none of the heavy modules behind it.

    ``deprecated`` maps each name kept for one more release to ``("module:attribute", use)``:
    where its value lives, and the public spelling that replaces it (``None`` when it is no
    longer public). The first read warns (:class:`DeprecationWarning`) and caches the value, so
    each old name warns once.
    """
    old_names = deprecated or {}

    def __getattr__(name: str) -> Any:
        if name in old_names:
            source, use = old_names[name]
            module_name, _, attribute = source.partition(":")
            value = getattr(importlib.import_module(module_name), attribute or name)
            hint = f"use {use}" if use else "it is no longer public"
            message = f"{package}.{name} is deprecated and will be removed in the next release; {hint}"
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            setattr(sys.modules[package], name, value)
            return value
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        publish(package, {name: value}, (name,))
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


def by_module(
    groups: Mapping[str, Iterable[str]], *, rest: str | None = None, names: Iterable[str] = ()
) -> dict[str, str]:
    """A lazy table (name -> module, for :func:`lazy_names`) from each module and the names it defines.

    ``rest`` is the module that defines every name of ``names`` (the package's ``__all__``) that
    no group lists: the package's main module, whose names need not be spelt out twice.
    """
    table = {name: module for module, listed in groups.items() for name in listed}
    if rest is not None:
        table.update({name: rest for name in names if name not in table})
    return table


def retired(groups: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, str | None]]:
    """Deprecated-table entries (for :func:`lazy_names`) for names that are no longer public,
    from each module (``"module"`` or ``"module:attribute"``) and the names whose values it holds."""
    return {name: (module, None) for module, names in groups.items() for name in names}


def moved(package: str, names: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """Deprecated-table entries (for :func:`lazy_names`) for names whose public home is now ``package``."""
    return {name: (package, f"{package}.{name}") for name in names}


def renamed(package: str, **new_names: str) -> dict[str, tuple[str, str | None]]:
    """Deprecated-table entries (for :func:`lazy_names`) for old names (the keywords) of names now
    public in ``package`` under a new name (their values)."""
    return {old: (f"{package}:{new}", f"{package}.{new}") for old, new in new_names.items()}
