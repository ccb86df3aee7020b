"""Builds the gateway's front chain (identity, policy, audit, shared state) from its configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from mcpgov._audit import AuditCallback, Auditor
from mcpgov._chain import Middleware
from mcpgov._errors import ConfigurationError
from mcpgov._state import StateStore
from mcpgov.gateway._config import GatewayConfig, IssuerConfig

__all__ = ["build_chain"]


def _keys(issuer: IssuerConfig, base_dir: Path) -> Any:
    from mcpgov.identity import RemoteKeys, StaticKeys  # noqa: PLC0415 - loaded with the gateway only

    if issuer.jwks_file is not None:
        path = base_dir / issuer.jwks_file
        try:
            jwks = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigurationError(
                f"identity issuer {issuer.issuer!r}: jwks_file {path} cannot be read as JSON ({type(exc).__name__})"
            ) from exc
        return StaticKeys(jwks)
    if issuer.jwks_url is not None:
        return RemoteKeys(issuer.jwks_url)
    return RemoteKeys(discovery=issuer.discovery)


def build_state(config: GatewayConfig) -> StateStore | None:
    """The shared state store (Redis) when the configuration names one."""
    if config.state.redis is None:
        return None
    from mcpgov.redis import RedisStateStore  # noqa: PLC0415 - the redis extra is optional

    try:
        return RedisStateStore.from_url(config.state.redis, prefix=config.state.prefix)
    except ValueError:
        # The URL may hold a password: the message never repeats it.
        raise ConfigurationError("state.redis is not a URL a Redis client can use") from None


def build_chain(
    config: GatewayConfig, *, base_dir: Path, state: StateStore | Literal["config"] | None = "config"
) -> tuple[list[Middleware], Auditor]:
    """The front chain (identity, then policy) and the auditor the configuration describes.

    ``state``: the shared state store, when the caller built it (:func:`build_state`) to share it
    with more than the chain.

    Raises:
        ConfigurationError: a referenced file is missing or invalid (naming the file).
    """
    from mcpgov.identity import IdentityMiddleware, IdentityVerifier, OIDCTrust  # noqa: PLC0415
    from mcpgov.policy import PolicyMiddleware  # noqa: PLC0415

    sinks: list[AuditCallback] = []
    if config.audit.jsonl is not None:
        from mcpgov.audit import JsonlSink, QueuedSink  # noqa: PLC0415

        jsonl = JsonlSink(base_dir / config.audit.jsonl)
        sinks.append(QueuedSink(jsonl) if config.audit.queued else jsonl)
    if config.audit.log:
        from mcpgov.audit import LoggingSink  # noqa: PLC0415

        sinks.append(LoggingSink())
    auditor = Auditor(sinks)
    issuers = [
        OIDCTrust(
            issuer.issuer,
            audience=issuer.audience,
            keys=_keys(issuer, base_dir),
            tenant_claim=issuer.tenant_claim,
            tenant=issuer.tenant,
            max_ttl=issuer.max_ttl,
        )
        for issuer in config.identity.issuers
    ]
    identity = IdentityMiddleware(IdentityVerifier(*issuers), env=config.identity.env)
    if isinstance(state, str):
        state = build_state(config)
    chain: list[Middleware] = [identity]
    if config.credentials is not None:
        chain.append(_credentials(config, base_dir, state))
    policy_path = base_dir / config.policy
    if not policy_path.is_file():
        raise ConfigurationError(f"policy file {policy_path} does not exist")
    chain.append(PolicyMiddleware(policy_path, state=state, audit=auditor))
    return chain, auditor


def _credentials(config: GatewayConfig, base_dir: Path, state: StateStore | None) -> Middleware:
    from mcpgov.credentials import (  # noqa: PLC0415 - loaded with the gateway only
        CredentialMiddleware,
        CredentialVerifier,
        RevocationList,
        VerificationKeys,
    )

    creds = config.credentials
    assert creds is not None  # noqa: S101 - checked by the caller
    path = base_dir / creds.jwks_file
    try:
        keys = VerificationKeys.from_file(path)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"credentials jwks_file {path} cannot be read ({type(exc).__name__})") from exc
    verifier = CredentialVerifier(
        issuer=creds.issuer,
        audience=creds.audience,
        keys=keys,
        # Revocation entries live as long as the longest credential this gateway accepts.
        revocations=RevocationList(state, max_ttl=creds.max_ttl),
        single_use=creds.single_use,
        max_ttl=creds.max_ttl,
    )
    return CredentialMiddleware(verifier)
