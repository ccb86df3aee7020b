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

from mcpgov._public import by_module as _by_module
from mcpgov._public import lazy_names as _lazy_names
from mcpgov._public import retired as _retired

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

# Loaded on first use, so that ``mcpgov gateway --help`` and the CLI stay fast; the configuration
# module defines every name not listed.
_LAZY: dict[str, str] = _by_module(
    {
        "mcpgov.gateway._gateway": ("Gateway",),
        "mcpgov.gateway._routing": ("Namespace", "Router"),
        "mcpgov.gateway._upstream": ("UpstreamTimeout", "UpstreamUnavailable"),
    },
    rest="mcpgov.gateway._config",
    names=__all__,
)


# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    **_retired(
        {
            "mcpgov.gateway._upstream": ("FrontCall", "Upstream"),
        }
    ),
}

__getattr__ = _lazy_names(__name__, _LAZY, _DEPRECATED)
