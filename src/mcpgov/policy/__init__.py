"""Policy as code: request-time authorisation from a declarative policy (or Cedar).

* :class:`Policy` loads and validates a YAML or JSON policy file (errors name the file, the
  rule and the field); :class:`PolicyEngine` decides and explains;
* :class:`PolicyMiddleware` is the authoriser for a governed server or a
  :class:`~mcpgov.GovernedClient`: it gates every request, filters every listing with the same
  rules, keeps task history and rate counters in a :class:`~mcpgov.StateStore`, hot-reloads
  (keeping the last good policy) and runs a shadow policy beside the enforced one;
* :class:`PolicyDecorators` lets a server author declare what a tool requires
  (``@gov.tool(scopes=..., tenants=..., risk=..., approval=..., constraints=..., redact=...)``);
* :class:`CedarPolicy` is the optional Cedar engine (``mcpgov[cedar]``).

See ``docs/policy.md`` for the format reference.
"""

from typing import TYPE_CHECKING

from mcpgov._public import lazy_names as _lazy_names

if TYPE_CHECKING:
    from mcpgov.policy._cedar import CedarPolicy
    from mcpgov.policy._conditions import canonical_path, path_within
    from mcpgov.policy._decorators import PolicyDecorators
    from mcpgov.policy._engine import (
        DEFAULT_DENY_RULE,
        OBLIGATION_BIND_ARGUMENTS,
        OBLIGATION_MAX_CREDENTIAL_TTL,
        OBLIGATION_RATE_LIMIT,
        OBLIGATION_REDACT,
        Explanation,
        PolicyEngine,
        RuleTrace,
    )
    from mcpgov.policy._load import Policy, PolicyError, load_policy
    from mcpgov.policy._middleware import PolicyMiddleware, PolicySource
    from mcpgov.policy._model import Rule

# Names load on first use, so `mcpgov policy validate|test|explain` import no MCP SDK.
_LAZY: dict[str, str] = {
    "canonical_path": "mcpgov.policy._conditions",
    "CedarPolicy": "mcpgov.policy._cedar",
    "path_within": "mcpgov.policy._conditions",
    "PolicyDecorators": "mcpgov.policy._decorators",
    "DEFAULT_DENY_RULE": "mcpgov.policy._engine",
    "OBLIGATION_BIND_ARGUMENTS": "mcpgov.policy._engine",
    "OBLIGATION_MAX_CREDENTIAL_TTL": "mcpgov.policy._engine",
    "OBLIGATION_RATE_LIMIT": "mcpgov.policy._engine",
    "OBLIGATION_REDACT": "mcpgov.policy._engine",
    "Explanation": "mcpgov.policy._engine",
    "PolicyEngine": "mcpgov.policy._engine",
    "RuleTrace": "mcpgov.policy._engine",
    "Policy": "mcpgov.policy._load",
    "PolicyError": "mcpgov.policy._load",
    "load_policy": "mcpgov.policy._load",
    "PolicyMiddleware": "mcpgov.policy._middleware",
    "PolicySource": "mcpgov.policy._middleware",
    "Rule": "mcpgov.policy._model",
}


# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    "CedarEngine": ("mcpgov.policy._cedar", None),
    "Engine": ("mcpgov.policy._middleware", None),
    "HistoryNeeds": ("mcpgov.policy._history", None),
    "MAX_CONDITION_STRING": ("mcpgov.policy._conditions", None),
    "MAX_PATH_LENGTH": ("mcpgov.policy._conditions", None),
    "META_POLICY": ("mcpgov.policy._decorators", None),
    "PolicyDocument": ("mcpgov.policy._model", None),
    "RateLimitSpec": ("mcpgov.policy._ratelimit", None),
    "RateLimiter": ("mcpgov.policy._ratelimit", None),
    "TaskHistory": ("mcpgov.policy._history", None),
    "TaskHistoryStore": ("mcpgov.policy._history", None),
    "ToolDeclaration": ("mcpgov.policy._decorators", None),
    "merge_obligations": ("mcpgov", "mcpgov.merge_obligations"),
}

__getattr__ = _lazy_names(__name__, _LAZY, _DEPRECATED)


__all__ = [
    "DEFAULT_DENY_RULE",
    "OBLIGATION_BIND_ARGUMENTS",
    "OBLIGATION_MAX_CREDENTIAL_TTL",
    "OBLIGATION_RATE_LIMIT",
    "OBLIGATION_REDACT",
    "CedarPolicy",
    "Explanation",
    "Policy",
    "PolicyDecorators",
    "PolicyEngine",
    "PolicyError",
    "PolicyMiddleware",
    "PolicySource",
    "Rule",
    "RuleTrace",
    "canonical_path",
    "load_policy",
    "path_within",
]
