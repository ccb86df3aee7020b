"""A governed gateway: identity, policy, credentials, approval, pinning and audit in front of any MCP server.

* :class:`Gateway`: a governed SDK server in front, one governed SDK client per upstream
  behind (stdio command or Streamable HTTP URL), with per-upstream namespacing;
* :func:`load_config` / :class:`GatewayConfig`: the ``gateway.yaml`` format that
  ``mcpgov gateway --config gateway.yaml`` runs;
* :class:`UpstreamUnavailable`, :class:`UpstreamTimeout`: what an agent gets while an
  upstream is down or slow.

See ``docs/gateway.md``.
"""

from typing import TYPE_CHECKING

from mcpgov._public import lazy_names as _lazy_names

if TYPE_CHECKING:
    from mcpgov.gateway._config import (
        AuditConfig,
        CredentialsConfig,
        GatewayConfig,
        HealthConfig,
        HttpListenConfig,
        IdentityConfig,
        IssuerConfig,
        NamespaceConfig,
        RestartConfig,
        SecretRef,
        StateConfig,
        UpstreamConfig,
        load_config,
        parse_config,
    )
    from mcpgov.gateway._gateway import Gateway
    from mcpgov.gateway._routing import Namespace, Router
    from mcpgov.gateway._upstream import UpstreamTimeout, UpstreamUnavailable

# Loaded on first use, so that ``mcpgov gateway --help`` and the CLI stay fast.
_LAZY: dict[str, str] = {
    "AuditConfig": "mcpgov.gateway._config",
    "CredentialsConfig": "mcpgov.gateway._config",
    "Gateway": "mcpgov.gateway._gateway",
    "GatewayConfig": "mcpgov.gateway._config",
    "HealthConfig": "mcpgov.gateway._config",
    "HttpListenConfig": "mcpgov.gateway._config",
    "IdentityConfig": "mcpgov.gateway._config",
    "IssuerConfig": "mcpgov.gateway._config",
    "Namespace": "mcpgov.gateway._routing",
    "NamespaceConfig": "mcpgov.gateway._config",
    "RestartConfig": "mcpgov.gateway._config",
    "Router": "mcpgov.gateway._routing",
    "SecretRef": "mcpgov.gateway._config",
    "StateConfig": "mcpgov.gateway._config",
    "UpstreamConfig": "mcpgov.gateway._config",
    "UpstreamTimeout": "mcpgov.gateway._upstream",
    "UpstreamUnavailable": "mcpgov.gateway._upstream",
    "load_config": "mcpgov.gateway._config",
    "parse_config": "mcpgov.gateway._config",
}


# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    "FrontCall": ("mcpgov.gateway._upstream", None),
    "Upstream": ("mcpgov.gateway._upstream", None),
}

__getattr__ = _lazy_names(__name__, _LAZY, _DEPRECATED)


__all__ = [
    "AuditConfig",
    "CredentialsConfig",
    "Gateway",
    "GatewayConfig",
    "HealthConfig",
    "HttpListenConfig",
    "IdentityConfig",
    "IssuerConfig",
    "Namespace",
    "NamespaceConfig",
    "RestartConfig",
    "Router",
    "SecretRef",
    "StateConfig",
    "UpstreamConfig",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "load_config",
    "parse_config",
]
