"""Runs the Python blocks of README.md and docs/ (pytest-markdown-docs): top-level ``await`` works.

A block may ``await`` at top level, as in an async REPL; it runs on a fresh event loop. A block
that cannot run on its own is fenced ```` ```python notest ````; one that continues the previous
block is fenced ```` ```python continuation ````.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any

import pytest


class _DocsRunner:
    """What pytest-markdown-docs asks for to run a block with top-level ``await``."""

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(coro)


@pytest.fixture
def _function_scoped_runner() -> _DocsRunner:
    return _DocsRunner()


# FastMCP 4 needs Python 3.11 (its extra is marked so): its page runs wherever it is installed.
collect_ignore: list[str] = []
if importlib.util.find_spec("fastmcp") is None:
    collect_ignore.append("docs/fastmcp.md")
