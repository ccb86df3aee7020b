"""No import cycles: every module of mcpgov imports on its own, and the module-level import graph
of the package (imports that run when a module is imported; ``TYPE_CHECKING`` blocks and imports
inside functions excluded) is acyclic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.house_support import SRC, ModuleFile, imports, module_names, modules

# Each module is imported in a process of its own, forked from one that has loaded the third-party
# libraries mcpgov uses but no part of mcpgov: the same state as a fresh interpreter, as far as
# mcpgov is concerned, at a fraction of the cost of starting one per module.
_IMPORT_EACH = textwrap.dedent(
    """
    import importlib, json, os, sys, traceback
    names, third_party = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    for name in third_party:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    assert not [m for m in sys.modules if m == "mcpgov" or m.startswith("mcpgov.")], "mcpgov loaded early"
    failures = {}
    for name in names:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                importlib.import_module(name)
                message = b""
            except BaseException:
                message = traceback.format_exc(limit=6).encode()
            os.write(write, message[-4000:])
            os._exit(0)
        os.close(write)
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.close(read)
        os.waitpid(pid, 0)
        if chunks:
            failures[name] = b"".join(chunks).decode(errors="replace")
    print(json.dumps(failures))
    """
)


def _third_party() -> list[str]:
    """Every third-party module mcpgov imports anywhere (``from p import n`` also tries ``p.n``)."""
    targets: set[str] = set()
    for module in modules():
        for imp in imports(module):
            root = imp.target.split(".")[0]
            if root and root != "mcpgov" and root not in sys.stdlib_module_names:
                targets.add(imp.target)
                targets.update(f"{imp.target}.{name}" for name in imp.names)
    return sorted(targets)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="forks one process per module")
def test_every_module_imports_on_its_own_in_a_fresh_process() -> None:
    """A module that imports only after some other module was imported first hides a cycle."""
    names = module_names()
    assert len(names) > 50
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _IMPORT_EACH, json.dumps(names), json.dumps(_third_party())],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert not failures, "\n\n".join(f"{name}:\n{trace}" for name, trace in failures.items())


# --- the module-level import graph ------------------------------------------------------------------


def _edges(module: ModuleFile, known: set[str]) -> set[str]:
    """The mcpgov modules ``module`` imports when it is imported (``from p import m`` names ``p.m``)."""
    edges: set[str] = set()
    for imp in imports(module):
        if not imp.top_level or not (imp.target == "mcpgov" or imp.target.startswith("mcpgov.")):
            continue
        if not imp.names:
            edges.add(imp.target)
        for name in imp.names:
            edges.add(f"{imp.target}.{name}" if f"{imp.target}.{name}" in known else imp.target)
    edges.discard(module.name)
    return edges


def import_graph() -> dict[str, set[str]]:
    """Module name -> the mcpgov modules it imports at import time."""
    known = set(module_names())
    return {m.name: _edges(m, known) for m in modules()}


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-loop), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        # Iterative Tarjan: (node, iterator over its successors).
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in graph:
                    continue
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return sorted(found)


def test_every_import_of_mcpgov_names_a_module_that_exists() -> None:
    graph = import_graph()
    dangling = {(m, t) for m, targets in graph.items() for t in targets if t not in graph}
    assert not dangling


def test_the_module_level_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert sum(len(t) for t in graph.values()) > 100  # the walk sees the package's real imports
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_type_checking_and_function_imports_are_not_edges() -> None:
    """The graph leaves out what does not run at import time (and keeps what does)."""
    graph = import_graph()
    assert "mcpgov._server" not in graph["mcpgov"]  # lazy: TYPE_CHECKING and __getattr__
    assert "mcpgov._public" in graph["mcpgov"]  # imported at module level (the rest loads on first use)
    assert "mcpgov._harness" not in graph["mcpgov.policy._cases"]  # imported inside functions


@given(
    st.dictionaries(
        st.sampled_from("abcdefgh"), st.sets(st.sampled_from("abcdefgh"), max_size=4), min_size=1, max_size=8
    )
)
def test_cycle_finder_agrees_with_reachability(raw: dict[str, set[str]]) -> None:
    """Two modules are in one reported cycle exactly when each reaches the other."""
    graph = {node: {t for t in targets if t in raw} for node, targets in raw.items()}

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(graph[node])
        return seen

    reached = {node: reach(node) for node in graph}
    expected = sorted(
        {
            tuple(sorted(n for n in graph if n in reached[node] and node in reached[n]))
            for node in graph
            if node in reached[node]
        }
    )
    assert [tuple(c) for c in find_cycles(graph)] == expected
