"""Short-lived credentials: minted just in time per task and per call, verified by the server,
delegated only by narrowing, revocable at once.

* issuer side: :class:`SigningKeySet` (rotating Ed25519/ES256 keys, JWKS), :class:`CredentialIssuer`
  (mint, delegate, exchange, revoke), :func:`token_exchange_app` (RFC 8693 over HTTP);
* server side: :class:`CredentialVerifier` and :class:`CredentialMiddleware`, :class:`Downstream`
  for the services a tool calls;
* client side: :class:`ClientCredentials` with a :class:`TokenSource` (:class:`IssuerTokenSource`
  in process, :class:`ExchangeTokenSource` over HTTP), and task scopes (:func:`open_task`);
* shared state: :class:`RevocationList` over any :class:`~mcpgov.StateStore`
  (:class:`CompactMemoryStore` by default, :class:`mcpgov.redis.RedisStateStore` for replicas).
"""

from mcpgov._public import lazy_names as _lazy_names
from mcpgov._public import publish as _publish
from mcpgov._public import renamed as _renamed
from mcpgov._public import retired as _retired
from mcpgov.credentials._claims import (
    TASK_BINDING,
    Credential,
    CredentialClaims,
)
from mcpgov.credentials._client import ClientCredentials, CredentialRequest, IssuerTokenSource, TokenSource
from mcpgov.credentials._downstream import Downstream
from mcpgov.credentials._exchange import (
    ExchangeTokenSource,
    SubjectTokenVerifier,
    token_exchange_app,
)
from mcpgov.credentials._issuance import Grant, IssuancePolicy
from mcpgov.credentials._issuer import CredentialIssuer
from mcpgov.credentials._keys import KeyResolver, SigningKeySet, VerificationKeys
from mcpgov.credentials._logs import redact_token_logs
from mcpgov.credentials._memory import CompactMemoryStore
from mcpgov.credentials._revocation import RevocationList
from mcpgov.credentials._task import TaskScope, current_task, open_task
from mcpgov.credentials._verify import (
    CredentialMiddleware,
    CredentialRefused,
    CredentialVerifier,
    VerifiedCredential,
    current_credential,
)

__all__ = [
    "TASK_BINDING",
    "ClientCredentials",
    "CompactMemoryStore",
    "Credential",
    "CredentialClaims",
    "CredentialIssuer",
    "CredentialMiddleware",
    "CredentialRefused",
    "CredentialRequest",
    "CredentialVerifier",
    "Downstream",
    "ExchangeTokenSource",
    "Grant",
    "IssuancePolicy",
    "IssuerTokenSource",
    "KeyResolver",
    "RevocationList",
    "SigningKeySet",
    "SubjectTokenVerifier",
    "TaskScope",
    "TokenSource",
    "VerificationKeys",
    "VerifiedCredential",
    "current_credential",
    "current_task",
    "open_task",
    "redact_token_logs",
    "token_exchange_app",
]

# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    **_renamed("mcpgov.credentials", IdentityVerifier="SubjectTokenVerifier"),
    **_retired(
        {
            "mcpgov.credentials._keys": ("ASYMMETRIC_ALGORITHMS",),
            "mcpgov.credentials._verify": ("BindArguments", "EMPTY_ARGS_HASH"),
            "mcpgov.credentials._claims": ("CREDENTIAL_TOKEN_TYPE", "CREDENTIAL_TYP"),
            "mcpgov.credentials._exchange": ("GRANT_TYPE", "IDENTITY_TOKEN_TYPES"),
            "mcpgov.credentials._revocation": ("MAX_LEEWAY",),
            "mcpgov.credentials._logs": ("REDACTED", "TokenRedactingFilter"),
        }
    ),
}

__getattr__ = _lazy_names(__name__, {}, _DEPRECATED)

_publish(__name__, globals())
