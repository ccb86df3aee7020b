"""mcpgov: governed MCP sessions.

Verified identity, request-time authorisation, short-lived credentials and audit for the
official MCP Python SDK, as composable middleware shared by client and server.

* server authors: :func:`govern` an ``MCPServer`` with a chain such as :class:`Hooks`;
* agent developers: use :class:`GovernedClient` in place of ``mcp.Client``;
* tests: :mod:`mcpgov.testing` has an in-memory audit sink.
"""

from typing import TYPE_CHECKING

from mcpgov._public import lazy_names as _lazy_names

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
    from mcpgov._hygiene import NamePolicy
    from mcpgov._principal import Actor, Principal
    from mcpgov._server import ServerGovernance, govern
    from mcpgov._state import InMemoryStateStore, StateStore, StateStoreError
    from mcpgov._wire import to_mcp_error

__version__ = "0.1.0"

# Every public name loads on first use: importing mcpgov (or a submodule such as its CLI or its
# pytest plugin) imports neither the MCP SDK nor pydantic until a name that needs them is used.
_LAZY: dict[str, str] = {
    "ArgumentLimits": "mcpgov._arguments",
    "arguments_hash": "mcpgov._arguments",
    "AuditEvent": "mcpgov._audit",
    "Auditor": "mcpgov._audit",
    "AuditStats": "mcpgov._audit",
    "Authorizer": "mcpgov._authorize",
    "BaseMiddleware": "mcpgov._base_middleware",
    "ListNext": "mcpgov._base_middleware",
    "CallNext": "mcpgov._chain",
    "ChainResult": "mcpgov._chain",
    "Listing": "mcpgov._chain",
    "ListItem": "mcpgov._chain",
    "Middleware": "mcpgov._chain",
    "compose": "mcpgov._chain",
    "StageSpec": "mcpgov._chain",
    "Transport": "mcpgov._context",
    "NamePolicy": "mcpgov._hygiene",
    "HTTP_AUTHORIZATION": "mcpgov._context",
    "META_CREDENTIAL": "mcpgov._context",
    "META_IDENTITY": "mcpgov._context",
    "Action": "mcpgov._context",
    "ExtensionKey": "mcpgov._context",
    "GovContext": "mcpgov._context",
    "Side": "mcpgov._context",
    "TargetKind": "mcpgov._context",
    "Decision": "mcpgov._decision",
    "Effect": "mcpgov._decision",
    "merge_obligations": "mcpgov._decision",
    "ApprovalRequired": "mcpgov._errors",
    "AuditUnavailable": "mcpgov._errors",
    "ConfigurationError": "mcpgov._errors",
    "CredentialError": "mcpgov._errors",
    "Denied": "mcpgov._errors",
    "IdentityError": "mcpgov._errors",
    "InvalidRequest": "mcpgov._errors",
    "McpGovError": "mcpgov._errors",
    "PinningError": "mcpgov._errors",
    "HookFn": "mcpgov._hooks",
    "Hooks": "mcpgov._hooks",
    "Actor": "mcpgov._principal",
    "Principal": "mcpgov._principal",
    "InMemoryStateStore": "mcpgov._state",
    "StateStore": "mcpgov._state",
    "StateStoreError": "mcpgov._state",
    "GovernedClient": "mcpgov._client",
    "ServerGovernance": "mcpgov._server",
    "govern": "mcpgov._server",
    "to_mcp_error": "mcpgov._wire",
}


# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    "AcceptPolicy": ("mcpgov.identity", "mcpgov.identity.AcceptPolicy"),
    "ApprovalMiddleware": ("mcpgov.approval", "mcpgov.approval.ApprovalMiddleware"),
    "ApprovalQueue": ("mcpgov.approval", "mcpgov.approval.ApprovalQueue"),
    "ApprovedServer": ("mcpgov.pinning", "mcpgov.pinning.ApprovedServer"),
    "AuditCallback": ("mcpgov._audit", None),
    "CallbackApprover": ("mcpgov.approval", "mcpgov.approval.CallbackApprover"),
    "CedarPolicy": ("mcpgov.policy", "mcpgov.policy.CedarPolicy"),
    "ClientCredentials": ("mcpgov.credentials", "mcpgov.credentials.ClientCredentials"),
    "CredentialIssuer": ("mcpgov.credentials", "mcpgov.credentials.CredentialIssuer"),
    "CredentialMiddleware": ("mcpgov.credentials", "mcpgov.credentials.CredentialMiddleware"),
    "CredentialVerifier": ("mcpgov.credentials", "mcpgov.credentials.CredentialVerifier"),
    "GovernanceMiddleware": ("mcpgov:ServerGovernance", "mcpgov.ServerGovernance"),
    "ElicitationApprover": ("mcpgov.approval", "mcpgov.approval.ElicitationApprover"),
    "Explanation": ("mcpgov.policy", "mcpgov.policy.Explanation"),
    "IdentityMiddleware": ("mcpgov.identity", "mcpgov.identity.IdentityMiddleware"),
    "IdentityVerifier": ("mcpgov.identity", "mcpgov.identity.IdentityVerifier"),
    "OIDCIssuer": ("mcpgov.identity:OIDCTrust", "mcpgov.identity.OIDCTrust"),
    "PinningMiddleware": ("mcpgov.pinning", "mcpgov.pinning.PinningMiddleware"),
    "Policy": ("mcpgov.policy", "mcpgov.policy.Policy"),
    "PolicyDecorators": ("mcpgov.policy", "mcpgov.policy.PolicyDecorators"),
    "PolicyError": ("mcpgov.policy", "mcpgov.policy.PolicyError"),
    "PolicyMiddleware": ("mcpgov.policy", "mcpgov.policy.PolicyMiddleware"),
    "RemoteKeys": ("mcpgov.identity", "mcpgov.identity.RemoteKeys"),
    "RevocationList": ("mcpgov.credentials", "mcpgov.credentials.RevocationList"),
    "SCHEMA_VERSION": ("mcpgov._audit", None),
    "SERVER_INFO": ("mcpgov._client", None),
    "ServerRegistry": ("mcpgov.pinning", "mcpgov.pinning.ServerRegistry"),
    "SessionAnchor": ("mcpgov._context", None),
    "SigningKeySet": ("mcpgov.credentials", "mcpgov.credentials.SigningKeySet"),
    "SpiffeTrustDomain": ("mcpgov.identity", "mcpgov.identity.SpiffeTrustDomain"),
    "StaticKeys": ("mcpgov.identity", "mcpgov.identity.StaticKeys"),
    "open_task": ("mcpgov.credentials", "mcpgov.credentials.open_task"),
    "server_auth": ("mcpgov.identity", "mcpgov.identity.server_auth"),
    "tool_fingerprint": ("mcpgov.pinning", "mcpgov.pinning.tool_fingerprint"),
}

__getattr__ = _lazy_names(__name__, _LAZY, _DEPRECATED)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
