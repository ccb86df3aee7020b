"""Identity binding: verified workload identity (OIDC/JWT, SPIFFE JWT-SVID) on every request.

Server side: an :class:`IdentityVerifier` trusts OIDC issuers (:class:`OIDCTrust`) and SPIFFE
trust domains (:class:`SpiffeTrustDomain`), as its own example shows; the middleware wraps it::

    identity = IdentityMiddleware(verifier, accept=AcceptPolicy(static_keys=False))
    server = MCPServer("files", **server_auth(identity, resource_server_url="https://mcp.example.com/mcp"))
    govern(server, identity, hooks)

Client side: ``GovernedClient(url, identity=TokenFile("/var/run/secrets/token"))``.
"""

from mcpgov._public import lazy_names as _lazy_names
from mcpgov._public import publish as _publish
from mcpgov._public import renamed as _renamed
from mcpgov._public import retired as _retired
from mcpgov.identity._keys import KeySource, RemoteKeys, StaticKeys
from mcpgov.identity._middleware import AcceptPolicy, IdentityMiddleware
from mcpgov.identity._providers import (
    CallableToken,
    ClientIdentity,
    IdentitySource,
    OAuthClientCredentials,
    ProjectedTokenFile,
    StaticToken,
    TokenFile,
)
from mcpgov.identity._sdk import (
    ServerAuth,
    server_auth,
)
from mcpgov.identity._spiffe import SpiffeId, SpiffeIdError, SpiffeIdPattern
from mcpgov.identity._verifier import (
    IdentityVerifier,
    OIDCTrust,
    SpiffeTrustDomain,
    VerifiedIdentity,
)

__all__ = [
    "AcceptPolicy",
    "CallableToken",
    "ClientIdentity",
    "IdentityMiddleware",
    "IdentitySource",
    "IdentityVerifier",
    "KeySource",
    "OAuthClientCredentials",
    "OIDCTrust",
    "ProjectedTokenFile",
    "RemoteKeys",
    "ServerAuth",
    "SpiffeId",
    "SpiffeIdError",
    "SpiffeIdPattern",
    "SpiffeTrustDomain",
    "StaticKeys",
    "StaticToken",
    "TokenFile",
    "VerifiedIdentity",
    "server_auth",
]

# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    **_renamed("mcpgov.identity", IdentityProvider="IdentitySource", OIDCIssuer="OIDCTrust"),
    **_retired(
        {
            "mcpgov.identity._verifier": ("AUTH_JWT", "AUTH_SHARED_SECRET", "AUTH_SPIFFE"),
            "mcpgov.identity._keys": ("BoundKey",),
            "mcpgov.identity._sdk": ("IdentityTokenVerifier", "bind_request_state", "request_state_security"),
            "mcpgov.identity._spiffe": ("JWT_SVID_ALGORITHMS",),
            "mcpgov.identity._providers": ("as_identity_provider",),
        }
    ),
}

__getattr__ = _lazy_names(__name__, {}, _DEPRECATED)

_publish(__name__, globals())
