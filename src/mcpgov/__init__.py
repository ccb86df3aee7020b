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
    from mcpgov._audit import SCHEMA_VERSION, AuditCallback, AuditEvent, Auditor, AuditStats
    from mcpgov._authorize import Authorizer
    from mcpgov._base_middleware import BaseMiddleware, ListNext
    from mcpgov._chain import CallNext, ChainResult, Listing, ListItem, Middleware, StageSpec, compose
    from mcpgov._client import SERVER_INFO, GovernedClient
    from mcpgov._context import (
        HTTP_AUTHORIZATION,
        META_CREDENTIAL,
        META_IDENTITY,
        Action,
        ExtensionKey,
        GovContext,
        SessionAnchor,
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
    from mcpgov._server import GovernanceMiddleware, govern
    from mcpgov._state import InMemoryStateStore, StateStore, StateStoreError
    from mcpgov._wire import to_mcp_error
    from mcpgov.approval import ApprovalMiddleware, ApprovalQueue, CallbackApprover, ElicitationApprover
    from mcpgov.credentials import (
        ClientCredentials,
        CredentialIssuer,
        CredentialMiddleware,
        CredentialVerifier,
        RevocationList,
        SigningKeySet,
        open_task,
    )
    from mcpgov.identity import (
        AcceptPolicy,
        IdentityMiddleware,
        IdentityVerifier,
        OIDCIssuer,
        RemoteKeys,
        SpiffeTrustDomain,
        StaticKeys,
        server_auth,
    )
    from mcpgov.pinning import ApprovedServer, PinningMiddleware, ServerRegistry, tool_fingerprint
    from mcpgov.policy import CedarPolicy, Explanation, Policy, PolicyDecorators, PolicyError, PolicyMiddleware

__version__ = "0.1.0"

# Every public name loads on first use: importing mcpgov (or a submodule such as its CLI or its
# pytest plugin) imports neither the MCP SDK nor pydantic until a name that needs them is used.
_LAZY: dict[str, str] = {
    "ArgumentLimits": "mcpgov._arguments",
    "arguments_hash": "mcpgov._arguments",
    "SCHEMA_VERSION": "mcpgov._audit",
    "AuditCallback": "mcpgov._audit",
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
    "SessionAnchor": "mcpgov._context",
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
    "SERVER_INFO": "mcpgov._client",
    "GovernanceMiddleware": "mcpgov._server",
    "govern": "mcpgov._server",
    "to_mcp_error": "mcpgov._wire",
    "AcceptPolicy": "mcpgov.identity",
    "IdentityMiddleware": "mcpgov.identity",
    "IdentityVerifier": "mcpgov.identity",
    "OIDCIssuer": "mcpgov.identity",
    "RemoteKeys": "mcpgov.identity",
    "SpiffeTrustDomain": "mcpgov.identity",
    "StaticKeys": "mcpgov.identity",
    "server_auth": "mcpgov.identity",
    "CedarPolicy": "mcpgov.policy",
    "Explanation": "mcpgov.policy",
    "Policy": "mcpgov.policy",
    "PolicyDecorators": "mcpgov.policy",
    "PolicyError": "mcpgov.policy",
    "PolicyMiddleware": "mcpgov.policy",
    "ClientCredentials": "mcpgov.credentials",
    "CredentialIssuer": "mcpgov.credentials",
    "CredentialMiddleware": "mcpgov.credentials",
    "CredentialVerifier": "mcpgov.credentials",
    "RevocationList": "mcpgov.credentials",
    "SigningKeySet": "mcpgov.credentials",
    "open_task": "mcpgov.credentials",
    "ApprovedServer": "mcpgov.pinning",
    "PinningMiddleware": "mcpgov.pinning",
    "ServerRegistry": "mcpgov.pinning",
    "tool_fingerprint": "mcpgov.pinning",
    "ApprovalMiddleware": "mcpgov.approval",
    "ApprovalQueue": "mcpgov.approval",
    "CallbackApprover": "mcpgov.approval",
    "ElicitationApprover": "mcpgov.approval",
}


__getattr__ = _lazy_names(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "HTTP_AUTHORIZATION",
    "META_CREDENTIAL",
    "META_IDENTITY",
    "SCHEMA_VERSION",
    "SERVER_INFO",
    "AcceptPolicy",
    "Action",
    "Actor",
    "ApprovalMiddleware",
    "ApprovalQueue",
    "ApprovalRequired",
    "ApprovedServer",
    "ArgumentLimits",
    "AuditCallback",
    "AuditEvent",
    "AuditStats",
    "AuditUnavailable",
    "Auditor",
    "Authorizer",
    "BaseMiddleware",
    "CallNext",
    "CallbackApprover",
    "CedarPolicy",
    "ChainResult",
    "ClientCredentials",
    "ConfigurationError",
    "CredentialError",
    "CredentialIssuer",
    "CredentialMiddleware",
    "CredentialVerifier",
    "Decision",
    "Denied",
    "Effect",
    "ElicitationApprover",
    "Explanation",
    "ExtensionKey",
    "GovContext",
    "GovernanceMiddleware",
    "GovernedClient",
    "HookFn",
    "Hooks",
    "IdentityError",
    "IdentityMiddleware",
    "IdentityVerifier",
    "InMemoryStateStore",
    "InvalidRequest",
    "ListItem",
    "ListNext",
    "Listing",
    "McpGovError",
    "Middleware",
    "NamePolicy",
    "OIDCIssuer",
    "PinningError",
    "PinningMiddleware",
    "Policy",
    "PolicyDecorators",
    "PolicyError",
    "PolicyMiddleware",
    "Principal",
    "RemoteKeys",
    "RevocationList",
    "ServerRegistry",
    "SessionAnchor",
    "Side",
    "SigningKeySet",
    "SpiffeTrustDomain",
    "StageSpec",
    "StateStore",
    "StateStoreError",
    "StaticKeys",
    "TargetKind",
    "Transport",
    "__version__",
    "arguments_hash",
    "compose",
    "govern",
    "merge_obligations",
    "open_task",
    "server_auth",
    "to_mcp_error",
    "tool_fingerprint",
]
