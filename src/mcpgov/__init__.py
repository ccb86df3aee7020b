"""mcpgov: governed MCP sessions.

Verified identity, request-time authorisation, short-lived credentials and audit for the
official MCP Python SDK, as composable middleware shared by client and server.

* server authors: :func:`govern` an ``MCPServer`` with a chain such as :class:`Hooks`;
* agent developers: use :class:`GovernedClient` in place of ``mcp.Client``;
* tests: :mod:`mcpgov.testing` has an in-memory audit sink.
"""

from mcpgov._arguments import ArgumentLimits, arguments_hash
from mcpgov._audit import SCHEMA_VERSION, AuditCallback, AuditEvent, Auditor
from mcpgov._authorize import Authorizer
from mcpgov._chain import CallNext, Listing, ListItem, Middleware, compose
from mcpgov._client import GovernedClient
from mcpgov._context import HTTP_AUTHORIZATION, META_CREDENTIAL, META_IDENTITY, Action, GovContext, Side, TargetKind
from mcpgov._decision import Decision, Effect
from mcpgov._errors import (
    ApprovalRequired,
    AuditUnavailable,
    ConfigurationError,
    CredentialError,
    Denied,
    IdentityError,
    InvalidRequest,
    McpGovError,
    PinningError,
)
from mcpgov._hooks import HookFn, Hooks
from mcpgov._principal import Actor, Principal
from mcpgov._server import GovernanceMiddleware, govern
from mcpgov._state import InMemoryStateStore, StateStore, StateStoreError
from mcpgov._wire import to_mcp_error

__version__ = "0.1.0"

__all__ = [
    "HTTP_AUTHORIZATION",
    "META_CREDENTIAL",
    "META_IDENTITY",
    "SCHEMA_VERSION",
    "Action",
    "Actor",
    "ApprovalRequired",
    "ArgumentLimits",
    "AuditCallback",
    "AuditEvent",
    "AuditUnavailable",
    "Auditor",
    "Authorizer",
    "CallNext",
    "ConfigurationError",
    "CredentialError",
    "Decision",
    "Denied",
    "Effect",
    "GovContext",
    "GovernanceMiddleware",
    "GovernedClient",
    "HookFn",
    "Hooks",
    "IdentityError",
    "InMemoryStateStore",
    "InvalidRequest",
    "ListItem",
    "Listing",
    "McpGovError",
    "Middleware",
    "PinningError",
    "Principal",
    "Side",
    "StateStore",
    "StateStoreError",
    "TargetKind",
    "__version__",
    "arguments_hash",
    "compose",
    "govern",
    "to_mcp_error",
]
