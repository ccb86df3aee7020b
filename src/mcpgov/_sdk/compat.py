"""Every private attribute of the MCP SDK that mcpgov reads, in one place.

The SDK (``mcp`` 2.3.x) exposes no public way to reach these; each accessor says why it is
needed. ``tests/test_boundary.py`` checks each one against the installed SDK, so an SDK release
that renames or removes one fails there, loudly, instead of silently weakening governance.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection
from typing import Any

from mcp import Client
from mcp.client import Transport
from mcp.client import client as _sdk_client
from mcp.client._memory import InMemoryTransport
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer

__all__ = [
    "INPUT_REQUIRED_DRIVER",
    "InputDrivenClient",
    "connect_through",
    "connection_of",
    "fastmcp_lowlevel_of",
    "in_memory_transport",
    "lowlevel_of",
    "prompt_names",
    "prompt_of",
    "resource_templates_of",
    "tool_names",
    "tool_of",
    "wrap_request_stamp",
]

INPUT_REQUIRED_DRIVER = "_drive_input_required"
"""The ``mcp.Client`` method that answers a 2026-07-28 ``input_required`` result and retries
(``(first, retry)``); the gateway's upstream client overrides it to hand the result to its agent
instead. ``tests/test_boundary.py`` checks that it still exists with that signature."""


def lowlevel_of(server: MCPServer) -> Server[Any]:
    """The lowlevel ``Server`` an ``MCPServer`` dispatches through (its middleware list lives there)."""
    lowlevel = server._lowlevel_server
    if not isinstance(lowlevel, Server):
        raise TypeError("MCPServer._lowlevel_server is not a lowlevel Server in this SDK release")
    return lowlevel


def tool_of(server: MCPServer, name: str) -> Any:
    """The registered tool ``name`` (its ``fn_metadata`` is how the SDK converts arguments), or ``None``."""
    return server._tool_manager.get_tool(name)


def prompt_of(server: MCPServer, name: str) -> Any:
    """The registered prompt ``name`` (its function's signature is how the SDK converts arguments)."""
    return server._prompt_manager.get_prompt(name)


def resource_templates_of(server: MCPServer) -> list[Any]:
    """The registered resource templates, in the order the SDK matches them."""
    return list(server._resource_manager.list_templates())


def connection_of(session: Any) -> Any:
    """The per-client connection object of an SDK ``ServerSession`` (it lives as long as the session)."""
    return getattr(session, "_connection", None)


def in_memory_transport(server: Server[Any] | MCPServer) -> Transport:
    """The SDK's in-memory transport to an in-process ``server`` (the one ``Client(server)`` uses
    in handshake mode, kept in a private module): the server is run over memory streams."""
    transport: Transport = InMemoryTransport(server)
    return transport


def with_request_channel(session: Any, wrap: Callable[[Any], Any]) -> Any:
    """A copy of an SDK ``ServerSession`` whose request-scoped channel (progress, log messages and
    requests sent on the request being handled) is ``wrap`` of its own; the connection is shared."""
    copied = copy.copy(session)
    copied._request_outbound = wrap(session._request_outbound)
    return copied


def tool_names(server: MCPServer) -> list[str]:
    """The names of every registered tool (registration order)."""
    return [tool.name for tool in server._tool_manager.list_tools()]


def registered_names(server: MCPServer, kind: str) -> Collection[str] | None:
    """A live view of the names of every registered tool (``kind="tool"``) or prompt: the keys
    of the SDK manager's registry, which change as tools and prompts are added or removed.
    ``None`` when the registry is not where this SDK keeps it."""
    manager = getattr(server, "_tool_manager" if kind == "tool" else "_prompt_manager", None)
    registry = getattr(manager, "_tools" if kind == "tool" else "_prompts", None)
    return registry.keys() if isinstance(registry, dict) else None


def prompt_names(server: MCPServer) -> list[str]:
    """The names of every registered prompt (registration order)."""
    return [prompt.name for prompt in server._prompt_manager.list_prompts()]


def wrap_request_stamp(session: Any, wrap: Callable[[Callable[..., None]], Callable[..., None]]) -> None:
    """Replace a connected ``ClientSession``'s per-request stamp (which writes each request's
    ``_meta`` envelope, client capabilities included) by ``wrap(stamp)``."""
    stamp = getattr(session, "_stamp", None)
    if not callable(stamp):
        raise TypeError("ClientSession._stamp is not a callable in this SDK release")
    session._stamp = wrap(stamp)


class InputDrivenClient(Client):
    """An ``mcp.Client`` whose answer to a 2026-07-28 ``input_required`` result a subclass may take
    over by overriding :meth:`drive_input` (the SDK's driver is private: ``INPUT_REQUIRED_DRIVER``)."""

    __slots__ = ()

    async def _drive_input_required(self, first: Any, retry: Any) -> Any:
        return await self.drive_input(first, retry)

    async def drive_input(self, first: Any, retry: Any) -> Any:
        """Answer ``first`` (a result, possibly ``input_required``) as the SDK does, retrying with ``retry``."""
        return await super()._drive_input_required(first, retry)


def fastmcp_lowlevel_of(server: Any) -> Any:
    """The SDK server a FastMCP server dispatches through (FastMCP keeps it private), or ``None``."""
    return getattr(server, "_mcp_server", None)


def connect_through(client: Client, transport: Transport) -> None:
    """Make a ``Client`` not yet entered connect through ``transport`` instead of the one the SDK
    builds from its URL (the SDK keeps both the connector and its builder private)."""
    connect_transport = getattr(_sdk_client, "_connect_transport", None)
    if connect_transport is None:
        raise TypeError("mcp.client.client._connect_transport is gone in this SDK release")
    client._connect = connect_transport(transport)
