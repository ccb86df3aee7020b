"""mcpgov: governed MCP sessions.

Verified identity, request-time authorisation, short-lived credentials and audit for the
official MCP Python SDK, as composable middleware shared by client and server.

* server authors: :func:`govern` an ``MCPServer`` with a chain such as :class:`Hooks`;
* agent developers: use :class:`GovernedClient` in place of ``mcp.Client``;
* tests: :mod:`mcpgov.testing` has an in-memory audit sink.
"""

from typing import TYPE_CHECKING

# The error tree imports nothing (no SDK, no pydantic): it loads with the package.
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
from mcpgov._public import by_module as _by_module
from mcpgov._public import lazy_names as _lazy_names
from mcpgov._public import moved as _moved
from mcpgov._public import publish as _publish
from mcpgov._public import renamed as _renamed
from mcpgov._public import retired as _retired

__all__ = [
    "HTTP_AUTHORIZATION",
    "META_CREDENTIAL",
    "META_IDENTITY",
    "Action",
    "Actor",
    "ApprovalRequired",
    "ArgumentLimits",
    "AuditEvent",
    "AuditStats",
    "AuditUnavailable",
    "Auditor",
    "Authorizer",
    "BaseMiddleware",
    "CallNext",
    "ChainResult",
    "ConfigurationError",
    "CredentialError",
    "Decision",
    "Denied",
    "Effect",
    "ExtensionKey",
    "GovContext",
    "GovernedClient",
    "HookFn",
    "Hooks",
    "IdentityError",
    "InMemoryStateStore",
    "InvalidRequest",
    "ListItem",
    "ListNext",
    "Listing",
    "McpGovError",
    "Middleware",
    "NamePolicy",
    "PinningError",
    "Principal",
    "ServerGovernance",
    "Side",
    "StageSpec",
    "StateStore",
    "StateStoreError",
    "TargetKind",
    "Transport",
    "__version__",
    "arguments_hash",
    "compose",
    "govern",
    "merge_obligations",
    "to_mcp_error",
]


if TYPE_CHECKING:
    from mcpgov._arguments import ArgumentLimits, arguments_hash
    from mcpgov._audit import AuditEvent, Auditor, AuditStats
    from mcpgov._authorize import Authorizer
    from mcpgov._base_middleware import BaseMiddleware, ListNext
    from mcpgov._chain import CallNext, ChainResult, Listing, ListItem, Middleware, StageSpec, compose
    from mcpgov._client import GovernedClient
    from mcpgov._context import (
        HTTP_AUTHORIZATION,
        META_CREDENTIAL,
        META_IDENTITY,
        Action,
        ExtensionKey,
        GovContext,
        Side,
        TargetKind,
        Transport,
    )
    from mcpgov._decision import Decision, Effect, merge_obligations
    from mcpgov._hooks import HookFn, Hooks
    from mcpgov._hygiene import NamePolicy
    from mcpgov._principal import Actor, Principal
    from mcpgov._server import ServerGovernance, govern
    from mcpgov._state import InMemoryStateStore, StateStore, StateStoreError
    from mcpgov._wire import to_mcp_error

__version__ = "0.1.0"

# Every public name loads on first use: importing mcpgov (or a submodule such as its CLI or its
# pytest plugin) imports neither the MCP SDK nor pydantic until a name that needs them is used.
_LAZY: dict[str, str] = _by_module(
    {
        "mcpgov._arguments": ("ArgumentLimits", "arguments_hash"),
        "mcpgov._audit": ("AuditEvent", "Auditor", "AuditStats"),
        "mcpgov._authorize": ("Authorizer",),
        "mcpgov._base_middleware": ("BaseMiddleware", "ListNext"),
        "mcpgov._chain": ("CallNext", "ChainResult", "Listing", "ListItem", "Middleware", "compose", "StageSpec"),
        "mcpgov._context": (
            "Transport",
            "HTTP_AUTHORIZATION",
            "META_CREDENTIAL",
            "META_IDENTITY",
            "Action",
            "ExtensionKey",
            "GovContext",
            "Side",
            "TargetKind",
        ),
        "mcpgov._hygiene": ("NamePolicy",),
        "mcpgov._decision": ("Decision", "Effect", "merge_obligations"),
        "mcpgov._hooks": ("HookFn", "Hooks"),
        "mcpgov._principal": ("Actor", "Principal"),
        "mcpgov._state": ("InMemoryStateStore", "StateStore", "StateStoreError"),
        "mcpgov._client": ("GovernedClient",),
        "mcpgov._server": ("ServerGovernance", "govern"),
        "mcpgov._wire": ("to_mcp_error",),
    }
)


# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    **_renamed("mcpgov", GovernanceMiddleware="ServerGovernance"),
    **_renamed("mcpgov.identity", OIDCIssuer="OIDCTrust"),
    **_moved(
        "mcpgov.identity",
        (
            "AcceptPolicy",
            "IdentityMiddleware",
            "IdentityVerifier",
            "RemoteKeys",
            "SpiffeTrustDomain",
            "StaticKeys",
            "server_auth",
        ),
    ),
    **_moved("mcpgov.approval", ("ApprovalMiddleware", "ApprovalQueue", "CallbackApprover", "ElicitationApprover")),
    **_moved("mcpgov.pinning", ("ApprovedServer", "PinningMiddleware", "ServerRegistry", "tool_fingerprint")),
    **_moved(
        "mcpgov.policy", ("CedarPolicy", "Explanation", "Policy", "PolicyDecorators", "PolicyError", "PolicyMiddleware")
    ),
    **_moved(
        "mcpgov.credentials",
        (
            "ClientCredentials",
            "CredentialIssuer",
            "CredentialMiddleware",
            "CredentialVerifier",
            "RevocationList",
            "SigningKeySet",
            "open_task",
        ),
    ),
    **_retired(
        {
            "mcpgov._audit": ("AuditCallback", "SCHEMA_VERSION"),
            "mcpgov._client": ("SERVER_INFO",),
            "mcpgov._context": ("SessionAnchor",),
        }
    ),
}

__getattr__ = _lazy_names(__name__, _LAZY, _DEPRECATED)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


_publish(__name__, globals())  # the names imported above; the others publish when first read
