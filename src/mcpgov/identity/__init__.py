"""Identity binding: verified workload identity (OIDC/JWT, SPIFFE JWT-SVID) on every request.

Server side::

    verifier = IdentityVerifier(
        OIDCIssuer("https://login.example.com", audience="https://mcp.example.com/mcp",
                   keys=RemoteKeys(discovery="https://login.example.com"), tenant_claim="tenant"),
        SpiffeTrustDomain("prod.example.com", audience="https://mcp.example.com/mcp",
                          bundle=RemoteKeys("https://bundle.prod.example.com/jwks"),
                          tenant_pattern="spiffe://prod.example.com/tenant/{tenant}/**"),
    )
    identity = IdentityMiddleware(verifier, accept=AcceptPolicy(static_keys=False))
    server = MCPServer("files", **server_auth(identity, resource_server_url="https://mcp.example.com/mcp"))
    govern(server, identity, hooks)

Client side: ``GovernedClient(url, identity=TokenFile("/var/run/secrets/token"))``.
"""

from mcpgov._public import publish as _publish
from mcpgov.identity._keys import BoundKey, KeySource, RemoteKeys, StaticKeys
from mcpgov.identity._middleware import AcceptPolicy, IdentityMiddleware
from mcpgov.identity._providers import (
    CallableToken,
    ClientIdentity,
    IdentityProvider,
    OAuthClientCredentials,
    ProjectedTokenFile,
    StaticToken,
    TokenFile,
    as_identity_provider,
)
from mcpgov.identity._sdk import (
    IdentityTokenVerifier,
    ServerAuth,
    bind_request_state,
    request_state_security,
    server_auth,
)
from mcpgov.identity._spiffe import JWT_SVID_ALGORITHMS, SpiffeId, SpiffeIdError, SpiffeIdPattern
from mcpgov.identity._verifier import (
    AUTH_JWT,
    AUTH_SHARED_SECRET,
    AUTH_SPIFFE,
    IdentityVerifier,
    OIDCIssuer,
    SpiffeTrustDomain,
    VerifiedIdentity,
)

__all__ = [
    "AUTH_JWT",
    "AUTH_SHARED_SECRET",
    "AUTH_SPIFFE",
    "JWT_SVID_ALGORITHMS",
    "AcceptPolicy",
    "BoundKey",
    "CallableToken",
    "ClientIdentity",
    "IdentityMiddleware",
    "IdentityProvider",
    "IdentityTokenVerifier",
    "IdentityVerifier",
    "KeySource",
    "OAuthClientCredentials",
    "OIDCIssuer",
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
    "as_identity_provider",
    "bind_request_state",
    "request_state_security",
    "server_auth",
]

_publish(__name__, globals())
