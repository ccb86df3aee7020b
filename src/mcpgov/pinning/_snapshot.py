"""Taking a server's manifest: in-process, over stdio, or over Streamable HTTP."""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from pathlib import Path
from typing import Any

from mcp import Client, MCPError
from mcp.client.stdio import StdioServerParameters
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp_types import DiscoverResult, Tool

from mcpgov._errors import ConfigurationError
from mcpgov.pinning._manifest import Manifest

__all__ = ["SnapshotTarget", "load_server", "resolve_target", "snapshot"]

SnapshotTarget = MCPServer | Server[Any] | StdioServerParameters | str
"""An in-process server, stdio parameters, or a Streamable HTTP URL."""

_MAX_PAGES = 1000
_IMPORT_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


async def snapshot(target: SnapshotTarget, *, mode: str = "auto") -> Manifest:
    """Take the current manifest of a server: its self-description and every tool it lists.

    An in-process ``MCPServer`` is read directly (its complete tool list, whatever middleware
    would filter for a particular caller); other targets are connected to with ``mcp.Client``
    and listed page by page.

    Args:
        target: an ``MCPServer``, a lowlevel ``Server``, ``StdioServerParameters``, or an
            ``http(s)://`` URL.
        mode: the ``mcp.Client`` protocol mode for connected targets.

    Returns:
        The manifest, as :meth:`Manifest.from_tools` builds it.

    Raises:
        PinningError: the server's tools cannot be pinned (bad or colliding names).
        ConfigurationError: the target is of an unknown type.
    """
    if isinstance(target, MCPServer):
        tools: list[Tool] = await target.list_tools()
        return Manifest.from_tools(target.name, target.version, tools)
    if not isinstance(target, Server | StdioServerParameters | str):
        raise ConfigurationError(f"cannot take a snapshot of a {type(target).__name__}")
    async with Client(target, mode=mode) as client:
        tools = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        else:
            raise ConfigurationError(f"the server's tool listing did not end within {_MAX_PAGES} pages")
        # Read after listing: on a 2026-era connection adopted without discovery, the server
        # identifies itself (if at all) in the results' `_meta`.
        info = client.server_info
        if info is None and mode not in ("auto", "legacy"):
            # Adopted without discovery: ask the server who it is (`server/discover`).
            with contextlib.suppress(MCPError, ValueError):
                raw = await client.session.send_discover(mode)
                client.session.adopt(DiscoverResult.model_validate(raw))
            info = client.server_info
    if info is None or not info.name:
        raise ConfigurationError(
            f"the server did not identify itself (no serverInfo name) in mode {mode!r}: a pin names its "
            "server; try --mode auto or --mode legacy"
        )
    name = info.name
    version = info.version or ""
    return Manifest.from_tools(name, version, tools)


def load_server(spec: str, *, app_dir: str | None = ".") -> MCPServer | Server[Any]:
    """Import ``module:attribute`` naming an ``MCPServer`` (or lowlevel ``Server``).

    Args:
        spec: ``package.module:attribute`` (the attribute may be dotted).
        app_dir: a directory put first on ``sys.path`` for the import (default: the working
            directory, as ``uvicorn`` does); ``None`` leaves ``sys.path`` alone.

    Raises:
        ConfigurationError: the module cannot be imported, the attribute does not exist, or it
            is not a server.
    """
    if not _IMPORT_TARGET.match(spec):
        raise ConfigurationError(f"{spec!r} is not of the form module:attribute")
    module_name, _, attribute = spec.partition(":")
    if app_dir is not None:
        resolved = str(Path(app_dir).resolve())
        if resolved not in sys.path:
            sys.path.insert(0, resolved)
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import module {module_name!r} ({type(exc).__name__}: {exc})") from exc
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError as exc:
            raise ConfigurationError(f"module {module_name!r} has no attribute {attribute!r}") from exc
    if not isinstance(value, MCPServer | Server):
        raise ConfigurationError(f"{spec} is a {type(value).__name__}, not an MCPServer")
    return value


def resolve_target(
    spec: str,
    *,
    stdio_args: tuple[str, ...] | None = None,
    stdio_env: dict[str, str] | None = None,
    app_dir: str | None = ".",
) -> SnapshotTarget:
    """Turn a command-line target into something :func:`snapshot` takes.

    Args:
        spec: an ``http(s)://`` URL, ``module:attribute``, or (with ``stdio_args``) a command.
        stdio_args: when not ``None``, ``spec`` is a command started over stdio with these arguments.
        stdio_env: environment variables for that command, over the SDK's safe default environment.
        app_dir: see :func:`load_server`.

    Raises:
        ConfigurationError: ``spec`` is none of those.
    """
    if stdio_args is not None:
        return StdioServerParameters(command=spec, args=list(stdio_args), env=stdio_env or None)
    if spec.startswith(("http://", "https://")):
        return spec
    return load_server(spec, app_dir=app_dir)
