"""Client side: the principal a client mints credentials for must be the one its identity token names."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from mcpgov._context import HTTP_AUTHORIZATION, META_IDENTITY, GovContext
from mcpgov._errors import ConfigurationError, CredentialError
from mcpgov._principal import Principal

__all__ = ["check_client_principal", "identity_claims", "principal_for_minting"]


def identity_claims(token: Any) -> Mapping[str, Any] | None:
    """The claims of a compact JWS identity token, read without verifying it (the client's own
    token, compared with what the client was configured with; never trusted for anything else).
    ``None`` for a token that is not a compact JWS.

    A client presents the same token on every call, so what was read is kept (read-only, keyed
    by the token's SHA-256, never by the token) for the next call with the same token.
    """
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 65_536:
        return None
    try:
        raw = token.encode("ascii")
    except UnicodeError:
        return None
    key = hashlib.sha256(raw).digest()
    try:
        return _read[key]
    except KeyError:
        pass
    try:
        payload = json.loads(extract_compact(raw).payload)
    except (JoseError, ValueError, UnicodeError):
        payload = None
    claims = _deep_readonly(payload) if isinstance(payload, dict) else None
    if len(_read) >= _READ_MAX:
        _read.clear()  # bounded: a client rarely holds more than a handful of identity tokens
    _read[key] = claims
    return claims


_READ_MAX = 256
_read: dict[bytes, Mapping[str, Any] | None] = {}


def _deep_readonly(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _deep_readonly(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_deep_readonly(v) for v in value)
    return value


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
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not math.isfinite(exp):
        return principal
    current = principal.claims.get("exp")
    if isinstance(current, (int, float)) and not isinstance(current, bool) and current <= exp:
        return principal
    global _bounded  # noqa: PLW0603 - a one-entry memo, replaced whole
    memo = _bounded
    if memo[0] is principal and memo[1] == exp and memo[2] is not None:
        return memo[2]  # the same principal bounded by the same expiry: the same (immutable) result
    bounded = replace(principal, claims=MappingProxyType({**principal.claims, "exp": float(exp)}))
    _bounded = (principal, float(exp), bounded)
    return bounded


_bounded: tuple[Principal | None, float, Principal | None] = (None, math.nan, None)
