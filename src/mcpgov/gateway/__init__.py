"""A governed gateway: identity, policy, credentials, approval, pinning and audit in front of any MCP server.

* :class:`Gateway`: a governed SDK server in front, one governed SDK client per upstream
  behind (stdio command or Streamable HTTP URL), with per-upstream namespacing;
* :func:`load_config` / :class:`GatewayConfig`: the ``gateway.yaml`` format that
  ``mcpgov gateway --config gateway.yaml`` runs;
* :class:`UpstreamUnavailable`, :class:`UpstreamTimeout`: what an agent gets while an
  upstream is down or slow.

See ``docs/gateway.md``.
"""

from mcpgov.gateway._config import (
    AuditConfig,
    GatewayConfig,
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
from mcpgov.gateway._upstream import FrontCall, Upstream, UpstreamTimeout, UpstreamUnavailable

__all__ = [
    "AuditConfig",
    "FrontCall",
    "Gateway",
    "GatewayConfig",
    "HttpListenConfig",
    "IdentityConfig",
    "IssuerConfig",
    "Namespace",
    "NamespaceConfig",
    "RestartConfig",
    "Router",
    "SecretRef",
    "StateConfig",
    "Upstream",
    "UpstreamConfig",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "load_config",
    "parse_config",
]
