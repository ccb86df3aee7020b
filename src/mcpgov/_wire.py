"""The single place where errors become MCP protocol errors."""

from __future__ import annotations

from typing import Any

from mcp import MCPError
from pydantic import ValidationError

from mcpgov._errors import InvalidRequest, McpGovError

__all__ = ["to_mcp_error"]


def to_mcp_error(exc: BaseException) -> MCPError:
    """Map any exception raised while governing a request to a clean :class:`mcp.MCPError`.

    * An :class:`~mcpgov.McpGovError` becomes its ``rpc_code`` with its fixed public message
      and ``data = {"code": <stable code>, "event": <audit event id>}``. The detail, the rule
      and the reason stay in the audit event.
    * An :class:`mcp.MCPError` (raised by the SDK or deliberately by a tool) passes unchanged.
    * Malformed parameters (a pydantic ``ValidationError``) become "Invalid request parameters".
    * Anything else becomes "Internal error": no exception text ever crosses the wire.
    """
    if isinstance(exc, MCPError):
        return exc
    if isinstance(exc, McpGovError):
        data: dict[str, Any] = {"code": exc.code}
        if exc.event_id is not None:
            data["event"] = exc.event_id
        return MCPError(exc.rpc_code, exc.public_message, data)
    if isinstance(exc, ValidationError):
        return MCPError(InvalidRequest.rpc_code, InvalidRequest.public_message, {"code": InvalidRequest.code})
    return MCPError(McpGovError.rpc_code, McpGovError.public_message, {"code": McpGovError.code})
