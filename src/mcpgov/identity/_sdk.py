"""The identity package's only contact with the MCP SDK: bearer verification, request state, sessions."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity

from mcpgov._audit import AuditCallback, AuditEvent, Auditor
from mcpgov._context import META_IDENTITY, GovContext
from mcpgov._errors import ConfigurationError, IdentityError
from mcpgov._governor import as_auditor
from mcpgov._sdk.compat import lowlevel_of

if TYPE_CHECKING:
    from mcpgov.identity._middleware import IdentityMiddleware

__all__ = ["IdentityTokenVerifier", "ServerAuth", "bind_request_state", "request_state_security", "server_auth"]

logger = logging.getLogger("mcpgov.identity")


def over_http(ctx: GovContext) -> bool:
    """Whether the request arrived over HTTP."""
    return ctx.transport is not None and ctx.transport.kind == "http"


def http_bearer(ctx: GovContext) -> str | None:
    """The bearer token the SDK's ``TokenVerifier`` accepted for this HTTP request."""
    return ctx.transport.bearer if ctx.transport is not None else None


def current_bearer() -> str | None:
    """The bearer token the SDK's ``TokenVerifier`` accepted for the HTTP request being handled."""
    token = get_access_token()
    return token.token if token is not None else None


def session_anchor(ctx: GovContext) -> Any:
    """An object living exactly as long as the request's session (its connection), if any."""
    return ctx.transport.session if ctx.transport is not None else None


def token_of_sdk_request(sctx: Any, env: str | None, environ: Mapping[str, str]) -> str | None:
    """The identity token of an SDK request, by the same rules as the identity middleware."""
    if not isinstance(sctx, ServerRequestContext):
        return None
    if sctx.request is not None:
        return current_bearer()
    meta = sctx.meta or {}
    token = meta.get(META_IDENTITY)
    if token is not None:
        return token if isinstance(token, str) else None
    if env is not None:
        return environ.get(env) or None
    return None


class IdentityTokenVerifier:
    """The SDK ``TokenVerifier`` for Streamable HTTP: bearer tokens verified by an identity middleware.

    A refused token makes the SDK answer 401 with ``WWW-Authenticate``; the refusal is recorded
    as one ``identity.refused`` audit event (reason only, never the token).

    Args:
        identity: the :class:`~mcpgov.identity.IdentityMiddleware` whose verifier and accept
            policy apply.
        audit: where refusals are recorded (pass the same auditor or sinks as ``govern``).
    """

    def __init__(
        self,
        identity: IdentityMiddleware,
        *,
        audit: Auditor | Iterable[AuditCallback] | AuditCallback | None = None,
    ) -> None:
        self.identity = identity
        self.auditor = as_auditor(audit)

    def __repr__(self) -> str:
        return f"IdentityTokenVerifier({self.identity!r})"

    async def verify_token(self, token: str) -> AccessToken | None:
        """Verify ``token``; ``None`` (the SDK answers 401) when it is refused."""
        try:
            verified = await self.identity.authenticate(token)
        except IdentityError as exc:
            await self._refused(exc)
            return None
        principal = verified.principal
        scope = principal.claims.get("scope")
        scopes = scope.split() if isinstance(scope, str) else []
        aud = principal.claims.get("aud")
        return AccessToken(
            token=token,
            client_id=principal.id,
            scopes=scopes,
            expires_at=int(verified.expires_at),
            resource=aud if isinstance(aud, str) else None,
            subject=principal.subject,
            claims={"iss": principal.issuer},
        )

    async def _refused(self, exc: IdentityError) -> None:
        event = AuditEvent.from_context(
            GovContext(side="server", method="authenticate"),
            "identity.refused",
            effect="deny",
            rule="mcpgov:identity",
            reason=exc.reason,
            detail=exc.detail,
            error_code=exc.code,
            attributes={"unverified": dict(exc.unverified)} if exc.unverified else {},
        )
        exc.event_id = event.id
        await self.auditor.emit(event)


class ServerAuth(TypedDict):
    """Keyword arguments for ``MCPServer(...)`` that put identity verification on HTTP."""

    token_verifier: IdentityTokenVerifier
    auth: AuthSettings
    request_state_security: RequestStateSecurity


def request_state_security(
    identity: IdentityMiddleware,
    *,
    keys: list[bytes | str] | None = None,
    ttl: float = 600.0,
    audience: str | None = None,
) -> RequestStateSecurity:
    """A ``RequestStateSecurity`` that seals the SDK's ``requestState`` to the verified principal.

    Pass it as ``MCPServer(..., request_state_security=...)``: state minted for one principal is
    then refused when another principal echoes it.

    Args:
        identity: the identity middleware whose principal binds the state.
        keys: sealing keys (rotation ring, first seals), shared by every replica; ``None``: a
            process-local key.
        ttl: how long sealed state lives, in seconds.
        audience: the audience sealed into the state (default: the server's name).
    """
    if keys is None:
        ephemeral = RequestStateSecurity.ephemeral(ttl=ttl, audience=audience)
        return RequestStateSecurity(
            codec=ephemeral.codec, ttl=ttl, audience=audience, bind_principal=identity.bind_principal
        )
    return RequestStateSecurity(keys=keys, ttl=ttl, audience=audience, bind_principal=identity.bind_principal)


def bind_request_state(
    server: MCPServer, identity: IdentityMiddleware, *, security: RequestStateSecurity | None = None
) -> None:
    """Bind an existing server's ``requestState`` sealing to the verified principal.

    Replaces the ``RequestStateBoundary`` ``MCPServer`` installed (in place, same position) with
    one using ``security`` (default: :func:`request_state_security` with a process-local key).
    A ``security`` given here keeps its codec, TTL and audience; its principal binding is
    replaced by the identity middleware's.

    Raises:
        ConfigurationError: the server has no request-state boundary to replace.
    """
    if security is None:
        security = request_state_security(identity)
    elif security.bind_principal != identity.bind_principal:
        security = RequestStateSecurity(
            codec=security.codec, ttl=security.ttl, audience=security.audience, bind_principal=identity.bind_principal
        )
    chain = lowlevel_of(server).middleware
    for i, mw in enumerate(chain):
        if isinstance(mw, RequestStateBoundary):
            chain[i] = RequestStateBoundary(security, default_audience=server.name)
            return
    raise ConfigurationError("this server has no requestState boundary to bind")


def server_auth(
    identity: IdentityMiddleware,
    *,
    resource_server_url: str,
    authorization_server: str | None = None,
    required_scopes: list[str] | None = None,
    audit: Auditor | Iterable[AuditCallback] | AuditCallback | None = None,
    request_state_keys: list[bytes | str] | None = None,
) -> ServerAuth:
    """``MCPServer`` keyword arguments verifying identities on Streamable HTTP.

    Example::

        identity = IdentityMiddleware(verifier)
        server = MCPServer("files", **server_auth(identity, resource_server_url="https://mcp.example.com/mcp",
                                                  audit=auditor))
        govern(server, identity, hooks, audit=auditor)

    The SDK then answers a missing or refused bearer token with 401 and ``WWW-Authenticate``
    (naming the protected resource metadata), and ``requestState`` is sealed to the principal.

    Args:
        identity: the identity middleware (also put it first in the governed chain).
        resource_server_url: this server's URL (protected resource metadata).
        authorization_server: the authorization server advertised to clients (default: the
            first OIDC issuer of the verifier).
        required_scopes: scopes every token must carry.
        audit: where HTTP-level refusals are recorded (the same auditor as ``govern``).
        request_state_keys: shared keys for ``requestState`` sealing (default process-local).

    Raises:
        ConfigurationError: no authorization server can be named.
    """
    if authorization_server is None:
        authorization_server = next((i for i in identity.verifier.issuers if i.startswith("https://")), None)
        if authorization_server is None:
            raise ConfigurationError("name the authorization_server= to advertise (the verifier has no https issuer)")
    try:
        settings = AuthSettings(
            issuer_url=authorization_server,  # type: ignore[arg-type]  # pydantic parses the string
            resource_server_url=resource_server_url,  # type: ignore[arg-type]
            required_scopes=required_scopes,
            validate_token_resource=False,  # the verifier checks the audience exactly itself
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid auth settings: {exc}") from None
    return ServerAuth(
        token_verifier=IdentityTokenVerifier(identity, audit=audit),
        auth=settings,
        request_state_security=request_state_security(identity, keys=request_state_keys),
    )
