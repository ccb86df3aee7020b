"""Protocol plumbing defaults: which requests governance decides, and what the SDK answers itself.

Three documented defaults keep a governed server as conformant as the bare SDK server:

* A request for a method the server does not serve at the negotiated protocol version (a
  method that version removed, such as ``resources/subscribe`` on 2026-07-28, or one nobody
  registered a handler for) is not governed: it reaches the SDK, which answers "Method not
  found" (-32601, HTTP 404) exactly as it would without governance. Nothing runs for it.
* ``logging/setLevel`` and ``subscriptions/listen`` (``_authorize.PROTOCOL_DEFAULT_METHODS``) are
  allowed for any caller the chain admitted when no rule decided about them; a rule or hook
  that matches them (allow or deny) decides as usual.
* ``prompts/get`` of a prompt the server does not have is an invalid request (-32602), like
  ``tools/call`` of an unknown tool.

Which methods a server serves is read from the SDK's own tables (``mcp_types.methods``) and the
server's registered handlers at request time, so a handler added later is governed at once.
"""

from __future__ import annotations

from typing import Any

from mcp.server.lowlevel import Server
from mcp_types.methods import CLIENT_REQUESTS, SPEC_CLIENT_METHODS
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS

from mcpgov._context import GovContext
from mcpgov._errors import InvalidRequest
from mcpgov._sdk import compat

__all__ = ["check_known_target", "served"]


_KNOWN_VERSIONS = frozenset(KNOWN_PROTOCOL_VERSIONS)


def served(server: Server[Any], method: str, version: str | None) -> bool:
    """Whether the SDK would hand ``method`` to a handler of ``server`` at protocol ``version``.

    False only when the SDK itself answers "Method not found": a spec method that ``version``
    does not define, or a method with no registered handler. An unknown or absent version
    counts as served (the request is governed), so doubt never skips governance.
    """
    if method in SPEC_CLIENT_METHODS and version in _KNOWN_VERSIONS and (method, version) not in CLIENT_REQUESTS:
        return False
    return method == "initialize" or server.get_request_handler(method) is not None


def check_known_target(mcp_server: Any, ctx: GovContext) -> None:
    """Refuse ``tools/call`` of an unknown tool and ``prompts/get`` of an unknown prompt.

    Runs after the allow, so a caller learns that a name does not exist only where it may use it.

    Raises:
        InvalidRequest: the server has no tool or prompt of that name.
    """
    if mcp_server is None or ctx.target is None:
        return
    if ctx.method == "tools/call":
        kind, found = "tool", compat.tool_of(mcp_server, ctx.target)
    elif ctx.method == "prompts/get":
        kind, found = "prompt", compat.prompt_of(mcp_server, ctx.target)
    else:
        return
    if found is None:
        raise InvalidRequest(f"unknown {kind} {ctx.target!r}", reason=f"unknown_{kind}")
