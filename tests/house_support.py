"""Walking the mcpgov package: its modules, their source trees and their imports.

Shared by the structural tests (error tree, import graph, declared dependencies, public API).
Modules are found on disk, not by importing, so a module that fails to import is still seen.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "mcpgov"


@dataclass(frozen=True)
class ModuleFile:
    """One module of the package: its dotted name, file and whether it is a package."""

    name: str
    path: Path
    is_package: bool

    @property
    def public(self) -> bool:
        """No component of the dotted name starts with an underscore."""
        return not any(part.startswith("_") for part in self.name.split("."))

    @functools.cached_property
    def tree(self) -> ast.Module:
        """The parsed source."""
        return ast.parse(self.path.read_text("utf-8"), filename=str(self.path))


@functools.lru_cache(maxsize=1)
def modules() -> tuple[ModuleFile, ...]:
    """Every module of mcpgov, sorted by name (packages by their ``__init__``)."""
    found: list[ModuleFile] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(SRC).with_suffix("")
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found.append(ModuleFile(".".join(parts), path, is_package))
    return tuple(sorted(found, key=lambda m: m.name))


def module_names() -> list[str]:
    """The dotted names of :func:`modules`."""
    return [m.name for m in modules()]


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def resolve(module: ModuleFile, node: ast.ImportFrom) -> str:
    """The absolute module named by a (possibly relative) ``from ... import``."""
    if node.level == 0:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


@dataclass(frozen=True)
class Import:
    """One import statement's target, as the module that executes it sees it.

    Attributes:
        target: the absolute module imported (``from a import b`` gives ``a``; see ``names``).
        names: for ``from ... import``, the imported names (a name may be a submodule).
        line: the line number.
        top_level: executed when the module is imported (not inside a function or class body's
            method, not under ``if TYPE_CHECKING``).
        guarded: inside a ``try`` whose handlers catch ``ImportError`` (an optional import).
    """

    target: str
    names: tuple[str, ...]
    line: int
    top_level: bool
    guarded: bool


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names: list[str] = []
    kinds = handler.type
    if kinds is None:
        return True
    for node in kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]:
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
    return any(n in {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"} for n in names)


_TRY: tuple[type[ast.Try], ...] = (ast.Try, getattr(ast, "TryStar", ast.Try))  # TryStar: Python 3.11+


def imports(module: ModuleFile) -> Iterator[Import]:
    """Every import in ``module``, marking those that run at import time."""

    def walk(nodes: list[ast.stmt], top_level: bool, guarded: bool) -> Iterator[Import]:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(alias.name, (), node.lineno, top_level, guarded)
            elif isinstance(node, ast.ImportFrom):
                names = tuple(alias.name for alias in node.names)
                yield Import(resolve(module, node), names, node.lineno, top_level, guarded)
            elif isinstance(node, ast.If):
                if _is_type_checking(node.test):
                    yield from walk(node.body, False, guarded)
                    yield from walk(node.orelse, top_level, guarded)
                else:
                    yield from walk(node.body, top_level, guarded)
                    yield from walk(node.orelse, top_level, guarded)
            elif isinstance(node, _TRY):
                optional = any(_catches_import_error(h) for h in node.handlers)
                yield from walk(node.body, top_level, guarded or optional)
                for handler in node.handlers:
                    yield from walk(handler.body, top_level, guarded)
                yield from walk(node.orelse, top_level, guarded)
                yield from walk(node.finalbody, top_level, guarded)
            elif isinstance(node, ast.With | ast.AsyncWith):
                yield from walk(node.body, top_level, guarded)
            elif isinstance(node, ast.For | ast.AsyncFor | ast.While):
                yield from walk(node.body, top_level, guarded)
                yield from walk(node.orelse, top_level, guarded)
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, top_level, guarded)  # a class body runs at import time
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(node.body, False, guarded)
            elif isinstance(node, ast.Match):
                for case in node.cases:
                    yield from walk(case.body, top_level, guarded)

    yield from walk(module.tree.body, True, False)
