"""Server side: credentials for the services a tool calls, exchanged from the inbound one."""

from __future__ import annotations

from collections.abc import Collection

from mcpgov._errors import ConfigurationError, CredentialError
from mcpgov._principal import Principal
from mcpgov.credentials._claims import Credential
from mcpgov.credentials._exchange import ExchangeTokenSource
from mcpgov.credentials._issuer import CredentialIssuer
from mcpgov.credentials._verify import current_credential

__all__ = ["Downstream"]


class Downstream:
    """Obtains, inside a tool, a credential for a downstream service in exchange for the
    verified inbound credential, so the inbound token is never passed through.

    The new credential is for the downstream ``audience`` only, keeps the caller's tenant,
    task and purpose, carries no more scopes and lives no longer than the inbound one, names
    this server (``actor``) as its subject with the caller in its actor chain, and is
    granted only where the issuer lets this server's audience reach that audience.

    Example::

        downstream = Downstream(issuer, actor=server_identity)

        @server.tool()
        async def deploy(version: str) -> str:
            credential = await downstream.credential(audience="https://registry", tools=["tag"])
            await registry.call_tool("tag", {...}, meta={META_CREDENTIAL: credential.token})

    Args:
        source: the issuer in this process, or an :class:`ExchangeTokenSource` whose identity
            is this server's.
        actor: this server's verified identity (required with an in-process issuer).

    Raises:
        ConfigurationError: an unsupported source, or an in-process issuer without ``actor``.
    """

    def __init__(self, source: CredentialIssuer | ExchangeTokenSource, *, actor: Principal | None = None) -> None:
        if isinstance(source, CredentialIssuer):
            if not isinstance(actor, Principal):
                raise ConfigurationError("Downstream with an in-process issuer needs the server's own principal")
        elif not isinstance(source, ExchangeTokenSource):
            raise ConfigurationError("Downstream needs a CredentialIssuer or an ExchangeTokenSource")
        self.source = source
        self.actor = actor

    def __repr__(self) -> str:
        return f"Downstream({self.source!r})"

    async def credential(
        self, *, audience: str, tools: Collection[str], scope: Collection[str] | None = None, ttl: float | None = None
    ) -> Credential:
        """A credential for ``audience`` in exchange for the current request's credential.

        Call it inside a tool served behind :class:`~mcpgov.credentials.CredentialMiddleware`.

        Raises:
            CredentialError: no verified inbound credential, or the exchange was refused.
        """
        inbound = current_credential()
        if inbound is None:
            raise CredentialError("no verified inbound credential to exchange", reason="no_inbound_credential")
        if isinstance(tools, str):
            raise CredentialError("tools is a collection of tool names", reason="bad_request")
        if isinstance(self.source, CredentialIssuer):
            assert self.actor is not None  # noqa: S101 - checked in __init__; narrows the type
            credential = await self.source.exchange(
                inbound.token, audience=audience, tools=list(tools), actor=self.actor, scope=scope, ttl=ttl
            )
        else:
            credential = await self.source.exchange(
                inbound.token,
                audience=audience,
                tools=list(tools),
                scope=list(scope) if scope is not None else None,
                ttl=ttl,
            )
        if credential.token == inbound.token or credential.claims.audience != audience:
            raise CredentialError("the exchange did not produce a downstream credential", reason="exchange_failed")
        return credential
