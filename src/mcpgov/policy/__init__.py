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
    from mcpgov._decision import merge_obligations
    from mcpgov.policy._cedar import CedarEngine, CedarPolicy
    from mcpgov.policy._conditions import MAX_CONDITION_STRING, MAX_PATH_LENGTH, canonical_path, path_within
    from mcpgov.policy._decorators import META_POLICY, PolicyDecorators, ToolDeclaration
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
    from mcpgov.policy._history import HistoryNeeds, TaskHistory, TaskHistoryStore
    from mcpgov.policy._load import Policy, PolicyError, load_policy
    from mcpgov.policy._middleware import Engine, PolicyMiddleware, PolicySource
    from mcpgov.policy._model import PolicyDocument, Rule
    from mcpgov.policy._ratelimit import RateLimiter, RateLimitSpec

# Names load on first use, so `mcpgov policy validate|test|explain` import no MCP SDK.
_LAZY: dict[str, str] = {
    "merge_obligations": "mcpgov",  # its public home: mcpgov names it
    "MAX_CONDITION_STRING": "mcpgov.policy._conditions",
    "MAX_PATH_LENGTH": "mcpgov.policy._conditions",
    "canonical_path": "mcpgov.policy._conditions",
    "CedarEngine": "mcpgov.policy._cedar",
    "CedarPolicy": "mcpgov.policy._cedar",
    "path_within": "mcpgov.policy._conditions",
    "META_POLICY": "mcpgov.policy._decorators",
    "PolicyDecorators": "mcpgov.policy._decorators",
    "ToolDeclaration": "mcpgov.policy._decorators",
    "DEFAULT_DENY_RULE": "mcpgov.policy._engine",
    "OBLIGATION_BIND_ARGUMENTS": "mcpgov.policy._engine",
    "OBLIGATION_MAX_CREDENTIAL_TTL": "mcpgov.policy._engine",
    "OBLIGATION_RATE_LIMIT": "mcpgov.policy._engine",
    "OBLIGATION_REDACT": "mcpgov.policy._engine",
    "Explanation": "mcpgov.policy._engine",
    "PolicyEngine": "mcpgov.policy._engine",
    "RuleTrace": "mcpgov.policy._engine",
    "HistoryNeeds": "mcpgov.policy._history",
    "TaskHistory": "mcpgov.policy._history",
    "TaskHistoryStore": "mcpgov.policy._history",
    "Policy": "mcpgov.policy._load",
    "PolicyError": "mcpgov.policy._load",
    "load_policy": "mcpgov.policy._load",
    "Engine": "mcpgov.policy._middleware",
    "PolicyMiddleware": "mcpgov.policy._middleware",
    "PolicySource": "mcpgov.policy._middleware",
    "PolicyDocument": "mcpgov.policy._model",
    "Rule": "mcpgov.policy._model",
    "RateLimiter": "mcpgov.policy._ratelimit",
    "RateLimitSpec": "mcpgov.policy._ratelimit",
}


__getattr__ = _lazy_names(__name__, _LAZY)


__all__ = [
    "DEFAULT_DENY_RULE",
    "MAX_CONDITION_STRING",
    "MAX_PATH_LENGTH",
    "META_POLICY",
    "OBLIGATION_BIND_ARGUMENTS",
    "OBLIGATION_MAX_CREDENTIAL_TTL",
    "OBLIGATION_RATE_LIMIT",
    "OBLIGATION_REDACT",
    "CedarEngine",
    "CedarPolicy",
    "Engine",
    "Explanation",
    "HistoryNeeds",
    "Policy",
    "PolicyDecorators",
    "PolicyDocument",
    "PolicyEngine",
    "PolicyError",
    "PolicyMiddleware",
    "PolicySource",
    "RateLimitSpec",
    "RateLimiter",
    "Rule",
    "RuleTrace",
    "TaskHistory",
    "TaskHistoryStore",
    "ToolDeclaration",
    "canonical_path",
    "load_policy",
    "merge_obligations",
    "path_within",
]
