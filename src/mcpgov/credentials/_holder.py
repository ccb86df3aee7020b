"""Client side: the principal a client mints credentials for must be the one its identity token names."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from mcpgov._context import HTTP_AUTHORIZATION, META_IDENTITY, GovContext
from mcpgov._errors import ConfigurationError, CredentialError
from mcpgov._lru import LRU
from mcpgov._principal import Principal
from mcpgov._validate import is_number

__all__ = ["MintingPrincipal", "check_client_principal", "identity_claims", "principal_for_minting"]


def identity_claims(token: Any) -> Mapping[str, Any] | None:
    """The claims of a compact JWS identity token, read without verifying it (the client's own
    token, compared with what the client was configured with; never trusted for anything else).
    ``None`` for a token that is not a compact JWS."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 65_536:
        return None
    try:
        payload = json.loads(extract_compact(token.encode("ascii")).payload)
    except (JoseError, ValueError, UnicodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _mismatch(principal: Principal, claims: Mapping[str, Any]) -> str | None:
    sub = claims.get("sub")
    if isinstance(sub, str) and sub not in {principal.subject, principal.spiffe_id}:
        return f"the identity token's subject is not the configured principal's ({principal.id})"
    iss = claims.get("iss")
    if isinstance(iss, str) and principal.issuer.startswith(("https://", "http://")) and iss != principal.issuer:
        return f"the identity token's issuer is not the configured principal's ({principal.id})"
    return None


def check_client_principal(principal: Principal | None, token: str | None) -> None:
    """Refuse a configured principal that the client's identity token does not name.

    Raises:
        ConfigurationError: subject (or, for an OIDC principal, issuer) differ.
    """
    if principal is None or token is None:
        return
    claims = identity_claims(token)
    if claims is None:
        return
    problem = _mismatch(principal, claims)
    if problem is not None:
        raise ConfigurationError(f"GovernedClient(principal=..., identity=...): {problem}")


def _current_identity(ctx: GovContext) -> str | None:
    token = ctx.meta.get(META_IDENTITY)
    if isinstance(token, str):
        return token
    header = ctx.extension(HTTP_AUTHORIZATION)
    if isinstance(header, str) and header.startswith("Bearer "):
        return header[7:]
    return None


def principal_for_minting(ctx: GovContext) -> Principal | None:
    """The principal to mint for: ``ctx.principal``, checked against the identity token the chain
    attached and bounded by its expiry, so no credential outlives the identity.

    Raises:
        CredentialError: the identity token names another principal (``reason="wrong_principal"``).
    """
    principal = ctx.principal
    if principal is None:
        return None
    claims = identity_claims(_current_identity(ctx))
    if claims is None:
        return principal
    problem = _mismatch(principal, claims)
    if problem is not None:
        raise CredentialError(problem, reason="wrong_principal")
    exp = claims.get("exp")
    if not is_number(exp):
        return principal
    current = principal.claims.get("exp")
    if isinstance(current, (int, float)) and not isinstance(current, bool) and current <= exp:
        return principal
    from dataclasses import replace  # noqa: PLC0415 - only on this path

    if principal.claims:
        return replace(principal, claims=MappingProxyType({**principal.claims, "exp": float(exp)}))
    return replace(principal, claims=_expiring(float(exp)))


_EXPIRES: LRU[float, Mapping[str, Any]] = LRU(256)
"""Read-only ``{"exp": exp}`` claims, one per expiry time: the sessions of a workload whose
identity token expires at the same second share one instead of a copy each."""


def _expiring(exp: float) -> Mapping[str, Any]:
    claims = _EXPIRES.get(exp)
    if claims is None:
        claims = _EXPIRES[exp] = MappingProxyType({"exp": exp})
    return claims


class MintingPrincipal:
    """:func:`principal_for_minting` with a memory of its last answer.

    A client presents the same principal and identity token on every request, so the token is
    read once and the credentials of a session share one principal bounded by it, instead of a
    copy each. The answer depends on nothing else (not on time): a new principal or token is
    worked out afresh, and a mismatch raises every time (nothing is remembered then).
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[Principal, str | None, Principal | None] | None = None

    def __call__(self, ctx: GovContext) -> Principal | None:
        principal = ctx.principal
        if principal is None:
            return None
        token = _current_identity(ctx)
        last = self._last
        if last is not None and last[0] is principal and last[1] == token:
            return last[2]
        found = principal_for_minting(ctx)
        self._last = (principal, token, found)
        return found
