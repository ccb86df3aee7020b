"""Policy as code: request-time authorisation from a declarative policy (or Cedar); the format's
reference is ``docs/policy.md``.

* :class:`Policy` loads and validates a YAML or JSON policy file (errors name the file, the
  rule and the field); :class:`PolicyEngine` decides and explains;
* :class:`PolicyMiddleware` is the authoriser for a governed server or a
  :class:`~mcpgov.GovernedClient`: it gates every request, filters every listing with the same
  rules, keeps task history and rate counters in a :class:`~mcpgov.StateStore`, hot-reloads
  (keeping the last good policy) and runs a shadow policy beside the enforced one;
* :class:`PolicyDecorators` lets a server author declare what a tool requires
  (``@gov.tool(scopes=..., tenants=..., risk=..., approval=..., constraints=..., redact=...)``);
* :class:`CedarPolicy` is the optional Cedar engine (``mcpgov[cedar]``).
"""

from typing import TYPE_CHECKING

from mcpgov._public import by_module as _by_module
from mcpgov._public import lazy_names as _lazy_names
from mcpgov._public import retired as _retired

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


if TYPE_CHECKING:
    from mcpgov.policy._cedar import CedarPolicy
    from mcpgov.policy._conditions import canonical_path, path_within
    from mcpgov.policy._decorators import PolicyDecorators
    from mcpgov.policy._engine import DEFAULT_DENY_RULE, Explanation, PolicyEngine, RuleTrace
    from mcpgov.policy._load import Policy, PolicyError, load_policy
    from mcpgov.policy._middleware import PolicyMiddleware, PolicySource
    from mcpgov.policy._model import (
        OBLIGATION_BIND_ARGUMENTS,
        OBLIGATION_MAX_CREDENTIAL_TTL,
        OBLIGATION_RATE_LIMIT,
        OBLIGATION_REDACT,
        Rule,
    )

# Names load on first use, so `mcpgov policy validate|test|explain` import no MCP SDK; the engine
# module defines every name not listed.
_LAZY: dict[str, str] = _by_module(
    {
        "mcpgov.policy._conditions": ("canonical_path", "path_within"),
        "mcpgov.policy._cedar": ("CedarPolicy",),
        "mcpgov.policy._decorators": ("PolicyDecorators",),
        "mcpgov.policy._load": ("Policy", "PolicyError", "load_policy"),
        "mcpgov.policy._middleware": ("PolicyMiddleware", "PolicySource"),
        "mcpgov.policy._model": (
            "OBLIGATION_BIND_ARGUMENTS",
            "OBLIGATION_MAX_CREDENTIAL_TTL",
            "OBLIGATION_RATE_LIMIT",
            "OBLIGATION_REDACT",
            "Rule",
        ),
    },
    rest="mcpgov.policy._engine",
    names=__all__,
)


# Kept for one release, each warning once when first read: name -> (where it is now, what replaces it).
_DEPRECATED: dict[str, tuple[str, str | None]] = {
    "merge_obligations": ("mcpgov", "mcpgov.merge_obligations"),
    **_retired(
        {
            "mcpgov.policy._cedar": ("CedarEngine",),
            "mcpgov.policy._middleware": ("Engine",),
            "mcpgov.policy._history": ("HistoryNeeds", "TaskHistory", "TaskHistoryStore"),
            "mcpgov.policy._conditions": ("MAX_CONDITION_STRING", "MAX_PATH_LENGTH"),
            "mcpgov.policy._decorators": ("META_POLICY", "ToolDeclaration"),
            "mcpgov.policy._model": ("PolicyDocument",),
            "mcpgov.policy._ratelimit": ("RateLimitSpec", "RateLimiter"),
        }
    ),
}

__getattr__ = _lazy_names(__name__, _LAZY, _DEPRECATED)
