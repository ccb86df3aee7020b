"""The policy file format, as pydantic models (validated at load, frozen afterwards).

A policy document::

    version: 1
    name: two-tenants
    labels:                       # what counts as "sensitive" for task-history conditions
      sensitive:
        resources: ["secret://*"]
    rules:
      - id: acme-read
        effect: allow             # allow | deny | require_approval
        principals:
          - issuer: https://idp.acme.example
            subject: "agent-*"
        tenants: [acme]
        tools: ["read_*"]
        actions: [discover, execute]
        when:
          arguments:
            path: {path: {under: [/data/acme]}}
          purposes: [support]
        obligations:
          max_credential_ttl: 300
          rate_limit: {limit: 10, per: 60, by: [principal, tool]}

See ``docs/policy.md`` for the full reference.
"""

from __future__ import annotations

import posixpath
import re
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from mcpgov._validate import first_repeat
from mcpgov.policy._regex import compile_regex

__all__ = [
    "OBLIGATION_BIND_ARGUMENTS",
    "OBLIGATION_MAX_CREDENTIAL_TTL",
    "OBLIGATION_RATE_LIMIT",
    "OBLIGATION_REDACT",
    "ArgumentCondition",
    "Bounds",
    "Conditions",
    "HistoryCondition",
    "Obligations",
    "PathCondition",
    "PolicyDocument",
    "PrincipalMatcher",
    "RateLimit",
    "Rule",
    "TargetSet",
    "TimeWindow",
]

Scalar = StrictStr | StrictInt | StrictFloat | StrictBool | None
"""A JSON scalar as written in the policy (no coercion: ``"1"`` is not ``1``)."""

Number = StrictInt | StrictFloat

RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,199}$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TARGET_KINDS = ("tool", "resource", "prompt")


def _not_empty(value: Any, what: str) -> Any:
    """Refuse an empty list or map where it would read as "anyone" or as a requirement that holds."""
    if value is not None and len(value) == 0:
        raise ValueError(f"{what} is empty: it would {_EMPTY_READS[what]}; omit it, or name at least one")
    return value


_EMPTY_READS = {
    "principals": "match every principal",
    "scopes": "require no scope (it always holds)",
    "claims": "require no claim (it always holds)",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _LISTS: ClassVar[tuple[str, ...]] = ()
    """The fields that accept a single string where a list of strings is expected."""

    @model_validator(mode="before")
    @classmethod
    def _listify(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls._LISTS:
            return {k: [v] if k in cls._LISTS and isinstance(v, str) else v for k, v in data.items()}
        return data


def _default_by() -> list[Literal["principal", "tenant", "tool"]]:
    return ["principal", "tool"]


def _default_actions() -> list[Literal["discover", "execute"]]:
    return ["discover", "execute"]


class PathCondition(_Model):
    """The argument is a path inside one of ``under`` (compared after canonicalisation).

    Attributes:
        under: allowed roots: absolute, normalised POSIX paths.
        allow_relative: accept relative paths, resolved against each root.
    """

    under: list[StrictStr] = Field(min_length=1)
    allow_relative: StrictBool = False

    _LISTS = ("under",)

    @model_validator(mode="after")
    def _roots(self) -> PathCondition:
        for root in self.under:
            if not root.startswith("/"):
                raise ValueError(f"path root {root!r} must be absolute")
            if any(part in (".", "..") for part in root.split("/")) or "\\" in root or "%" in root:
                raise ValueError(f"path root {root!r} must not contain '.', '..', '\\' or '%'")
            if posixpath.normpath(root) != root and root != "/":
                raise ValueError(f"path root {root!r} is not normalised (expected {posixpath.normpath(root)!r})")
        return self


class ArgumentCondition(_Model):
    """Conditions on one argument; every operator given must hold.

    Attributes:
        equals: the argument equals this JSON scalar (types must agree: ``1`` is not ``true``).
        in_: the argument is one of these scalars (YAML/JSON key ``in``).
        not_in: the argument is none of these scalars.
        glob: the argument (a string) matches one of these glob patterns.
        regex: the whole argument (a string) matches this regular expression.
        min: the argument (a number) is at least this.
        max: the argument (a number) is at most this.
        min_length: the argument (a string or array) has at least this many items/characters.
        max_length: the argument (a string or array) has at most this many items/characters.
        path: the argument (a string) is a path inside the given roots, canonically compared.
        same_as: the argument (a string) equals the request's verified ``tenant``, the
            principal's ``subject``, the ``task_id`` or the ``purpose``.
        optional: the condition also holds when the argument is absent (otherwise absence
            makes it fail).
    """

    equals: Scalar = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    glob: list[StrictStr] | None = None
    regex: StrictStr | None = None
    min: Number | None = None
    max: Number | None = None
    min_length: StrictInt | None = Field(default=None, ge=0)
    max_length: StrictInt | None = Field(default=None, ge=0)
    path: PathCondition | None = None
    same_as: Literal["tenant", "subject", "task_id", "purpose"] | None = None
    optional: StrictBool = False

    _LISTS = ("glob",)

    @model_validator(mode="after")
    def _check(self) -> ArgumentCondition:
        operators = self.model_fields_set - {"optional"}
        if not operators:
            raise ValueError("an argument condition needs at least one operator (equals, in, glob, regex, path...)")
        if self.regex is not None:
            compile_regex(self.regex)  # RE2's refusal (a ValueError) names the reason
        if self.glob is not None and self.path is not None:
            raise ValueError(
                "glob on a path argument is refused: '*' would cross '/' and '..'; use path: {under: [...]}"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError("min_length is greater than max_length")
        return self


def _is_iso_instant(value: Any) -> bool:
    """Whether ``value`` is text in ISO 8601 date-time form (not a number of seconds)."""
    if not isinstance(value, str):
        return False
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return "T" in text.upper() or " " in text


class TimeWindow(_Model):
    """When a rule applies.

    Attributes:
        days: weekdays (``mon``...``sun``) in ``timezone``.
        start: ``HH:MM`` (inclusive) in ``timezone``; with ``end``.
        end: ``HH:MM`` (exclusive); a window with ``end`` before ``start`` spans midnight.
        timezone: an IANA zone name (``UTC`` needs no zone database).
        after: an ISO 8601 instant with offset: the rule applies from then on.
        before: an ISO 8601 instant with offset: the rule applies until then.
    """

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    start: StrictStr | None = None
    end: StrictStr | None = None
    timezone: StrictStr = "UTC"
    after: datetime | None = None
    before: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _quoted(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("start", "end"):
                if isinstance(data.get(name), int):
                    raise ValueError(  # noqa: TRY004 - pydantic reports ValueError from validators, not TypeError
                        f"{name} must be a quoted 'HH:MM' string (YAML reads an unquoted 17:00 as a number)"
                    )
            for name in ("after", "before"):
                value = data.get(name)
                if value is not None and not isinstance(value, datetime) and not _is_iso_instant(value):
                    # Not a number of seconds: pydantic would read one above 2e10 as milliseconds.
                    raise ValueError(f"{name} must be an ISO 8601 instant with offset (e.g. 2025-01-01T00:00:00Z)")
        return data

    @model_validator(mode="after")
    def _check(self) -> TimeWindow:
        if (self.start is None) != (self.end is None):
            raise ValueError("start and end go together")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and not _HHMM.match(value):
                raise ValueError(f"{name} must be a quoted HH:MM time, got {value!r}")
        if self.start is not None and self.start == self.end:
            raise ValueError("start equals end: the window would hold no minute of the day")
        for name in ("after", "before"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{name} must carry a UTC offset (e.g. 2025-01-01T00:00:00Z)")
        if not self.model_fields_set - {"timezone"}:
            raise ValueError("a time window needs days, start/end, after or before")
        if self.timezone != "UTC":
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415 - only when a zone is named

            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown timezone {self.timezone!r}") from None
        return self


class HistoryCondition(_Model):
    """Conditions on what the task already did (requests that were allowed and ran).

    Targets are written ``tool:name``, ``resource:uri``, ``prompt:name`` (a bare name is a tool).

    Attributes:
        seen_labels: the task already touched a target carrying one of these labels.
        not_seen_labels: the task touched no target carrying any of these labels.
        called: the task already used one of these targets.
        not_called: the task used none of these targets.
        last_called: the task's previous request was to one of these targets.
        calls_below: the task has run fewer than this many tool calls.
        calls_at_least: the task has run at least this many tool calls.
    """

    seen_labels: list[StrictStr] | None = None
    not_seen_labels: list[StrictStr] | None = None
    called: list[StrictStr] | None = None
    not_called: list[StrictStr] | None = None
    last_called: list[StrictStr] | None = None
    calls_below: StrictInt | None = Field(default=None, ge=1)
    calls_at_least: StrictInt | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> HistoryCondition:
        if not self.model_fields_set:
            raise ValueError("a history condition needs at least one field")
        return self


class Bounds(_Model):
    """Inclusive integer bounds."""

    min: StrictInt | None = Field(default=None, ge=0)
    max: StrictInt | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Bounds:
        if self.min is None and self.max is None:
            raise ValueError("bounds need min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


ClaimValue = Scalar | list[Scalar]


class Conditions(_Model):
    """A block of conditions (``when`` or ``unless``); every condition given must hold.

    Attributes:
        arguments: per-argument conditions, keyed by argument name.
        purposes: the declared purpose is one of these.
        tenants: the verified tenant is one of these.
        scopes: the principal holds every one of these scopes (``scope``/``scp`` claims).
        claims: the principal's claims have these values (a list claim must contain the value).
        time: a time window.
        history: conditions on the task's history.
        delegation_depth: bounds on the length of the principal's actor chain.
        risk: the target's declared risk level (from ``@gov.tool(risk=...)``) is one of these.
    """

    arguments: dict[StrictStr, ArgumentCondition] = Field(default_factory=dict)
    purposes: list[StrictStr] | None = None
    tenants: list[StrictStr] | None = None
    scopes: list[StrictStr] | None = None
    claims: dict[StrictStr, ClaimValue] | None = None

    @field_validator("scopes", "claims")
    @classmethod
    def _requires_something(cls, value: Any, info: Any) -> Any:
        return _not_empty(value, info.field_name)

    time: TimeWindow | None = None
    history: HistoryCondition | None = None
    delegation_depth: Bounds | None = None
    risk: list[Literal["low", "medium", "high", "critical"]] | None = None


class PrincipalMatcher(_Model):
    """Who a rule is about; every field given must match.

    Attributes:
        issuer: the identity issuer, exactly.
        subject: the subject, a glob pattern (with ``issuer``: a principal is issuer + subject).
        spiffe: the SPIFFE ID, a glob pattern.
        claims: claim values (a list claim must contain the value).
        scopes: scopes the principal must all hold.
    """

    issuer: StrictStr | None = None
    subject: StrictStr | None = None
    spiffe: StrictStr | None = None
    claims: dict[StrictStr, ClaimValue] | None = None
    scopes: list[StrictStr] | None = None

    @field_validator("scopes", "claims")
    @classmethod
    def _requires_something(cls, value: Any, info: Any) -> Any:
        return _not_empty(value, info.field_name)

    @model_validator(mode="after")
    def _check(self) -> PrincipalMatcher:
        if not self.model_fields_set:
            raise ValueError("a principal matcher needs issuer, subject, spiffe, claims or scopes")
        if self.subject is not None and self.issuer is None:
            raise ValueError("subject needs issuer: the same subject from another issuer is another principal")
        if self.spiffe is not None and not self.spiffe.startswith("spiffe://"):
            raise ValueError("spiffe must be a SPIFFE ID pattern starting with spiffe://")
        return self


class RateLimit(_Model):
    """At most ``limit`` admitted requests per ``per`` seconds (fixed windows), counted per ``by``."""

    limit: StrictInt = Field(ge=1)
    per: Number = Field(gt=0)
    by: list[Literal["principal", "tenant", "tool"]] = Field(default_factory=_default_by)


class Obligations(_Model):
    """What must hold when an allow (or approved request) is acted on.

    Attributes:
        max_credential_ttl: the longest lifetime, in seconds, of a credential minted for it.
        bind_arguments: the credential must be bound to the request's argument hash.
        redact: argument fields to redact in audit.
        rate_limit: a rate limit or quota.
    """

    max_credential_ttl: Number | None = Field(default=None, gt=0)
    bind_arguments: StrictBool = False
    redact: list[StrictStr] = Field(default_factory=list)
    rate_limit: RateLimit | None = None


# The keys of a decision's obligations, each set from the field of the same name above.
OBLIGATION_MAX_CREDENTIAL_TTL = "max_credential_ttl"
"""Obligation: the longest lifetime (seconds, float) of a credential minted for the request."""
OBLIGATION_BIND_ARGUMENTS = "bind_arguments"
"""Obligation: ``True`` when the credential must be bound to the request's argument hash."""
OBLIGATION_REDACT = "redact"
"""Obligation: a sorted tuple of argument field names to redact in audit."""
OBLIGATION_RATE_LIMIT = "rate_limit"
"""Obligation: a tuple of ``RateLimitSpec`` the request is counted against."""


class TargetSet(_Model):
    """Names or glob patterns of tools, resources (URIs) and prompts."""

    tools: list[StrictStr] | None = None
    resources: list[StrictStr] | None = None
    prompts: list[StrictStr] | None = None


class Rule(_Model):
    """One rule. See the module docstring and ``docs/policy.md``.

    Attributes:
        id: unique id; every decision names the rule that made it.
        effect: ``allow``, ``deny`` or ``require_approval``.
        description: free text, shown by explain.
        principals: who the rule is about (any matcher); omitted means any verified principal.
        anonymous: the rule also matches requests that carry no principal.
        tenants: verified tenants the rule is about; omitted means any.
        tools: tool names or glob patterns.
        resources: resource URIs or glob patterns.
        prompts: prompt names or glob patterns.
        methods: other MCP methods (``logging/setLevel``...).
        actions: ``discover`` (listings), ``execute`` (use). A rule for ``execute`` also governs
            whether the target is listed, so listings and calls agree.
        when: conditions that must hold for the rule to apply.
        unless: (deny rules) the deny applies unless all of these hold.
        obligations: (allow and require_approval rules) obligations of the allow.
    """

    id: StrictStr
    effect: Literal["allow", "deny", "require_approval"]
    description: StrictStr = ""
    principals: list[PrincipalMatcher] | None = None
    anonymous: StrictBool = False
    tenants: list[StrictStr] | None = None
    tools: list[StrictStr] | None = None
    resources: list[StrictStr] | None = None
    prompts: list[StrictStr] | None = None
    methods: list[StrictStr] | None = None
    actions: list[Literal["discover", "execute"]] = Field(default_factory=_default_actions, min_length=1)
    when: Conditions | None = None
    unless: Conditions | None = None
    obligations: Obligations | None = None

    _LISTS = ("tools", "resources", "prompts", "methods", "tenants", "actions")

    @field_validator("principals")
    @classmethod
    def _someone(cls, value: Any) -> Any:
        return _not_empty(value, "principals")

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if not RULE_ID.match(self.id):
            raise ValueError("id must be 1-200 characters of letters, digits and _.:@/+- (starting alphanumeric)")
        if not any((self.tools, self.resources, self.prompts, self.methods)):
            raise ValueError("a rule must name what it applies to: tools, resources, prompts or methods")
        if self.unless is not None and self.effect != "deny":
            raise ValueError("unless is only for deny rules (write the conditions under when)")
        if self.obligations is not None and self.effect == "deny":
            raise ValueError("a deny rule carries no obligations")
        if self.effect != "allow" and "execute" not in self.actions:
            raise ValueError(
                "a deny or require_approval rule must cover execute: hiding a target that stays usable "
                "would make listings and calls disagree"
            )
        for pattern in (*(self.tools or ()), *(self.resources or ()), *(self.prompts or ()), *(self.methods or ())):
            if not pattern:
                raise ValueError("a target pattern must not be empty")
        return self


class PolicyDocument(_Model):
    """A whole policy file.

    Attributes:
        version: the format version (``1``).
        name: a name for the policy, shown by explain.
        labels: label name -> the targets that carry it (for task-history conditions).
        rules: the rules, in order (the first matching rule of the winning effect decides).
    """

    version: Literal[1] = 1
    name: StrictStr = ""

    @field_validator("version", mode="before")
    @classmethod
    def _exactly_one(cls, value: Any) -> Any:
        if type(value) is not int:
            raise ValueError("version must be the integer 1")
        return value

    labels: dict[StrictStr, TargetSet] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> PolicyDocument:
        repeated = first_repeat(rule.id for rule in self.rules)
        if repeated is not None:
            raise ValueError(f"duplicate rule id {repeated!r}")
        blocks = [
            (rule.id, part, block)
            for rule in self.rules
            for part, block in (("when", rule.when), ("unless", rule.unless))
            if block is not None
        ]
        paths = {name for _, _, block in blocks for name, cond in block.arguments.items() if cond.path is not None}
        for rule_id, part, block in blocks:
            for name, cond in block.arguments.items():
                if cond.glob is not None and name in paths:
                    raise ValueError(
                        f"rule {rule_id!r}, field '{part}.arguments.{name}.glob': glob on an argument that the "
                        f"policy treats as a path is refused ('*' would cross '/' and '..'); use path: {{under: [...]}}"
                    )
        return self
