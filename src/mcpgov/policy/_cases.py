"""Policy test cases: the case-file format, the runner, rule coverage and JUnit XML.

A case file (YAML or JSON) lists requests and the decision each must get::

    version: 1
    server:                      # optional: what the server declares (else: what the policy names)
      tools: [read_file, deploy]
    defaults:                    # optional: fields every case inherits
      issuer: https://idp.acme.example
    cases:
      - name: acme agent reads the repository
        workload: agent-1        # or principal: {issuer: ..., subject: ...}
        tenant: acme
        purpose: code-review
        tool: read_file          # or resource: URI, prompt: name
        arguments: {path: /srv/acme/README.md}
        expect: allow            # allow | deny | require_approval
        rule: acme-read          # optional: the rule that must decide

Every case runs through a real in-process governed session: a stand-in server declaring the
inventory (nothing runs), governed by the policy with identity, credential and policy
middleware; the decision is read from the audit trail. Cases are independent (fresh task
history and rate counters each).
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, model_validator

from mcpgov._datafile import UniqueKeyLoader as _UniqueKeyLoader
from mcpgov._datafile import unique_json_pairs as _json_pairs
from mcpgov._errors import ConfigurationError
from mcpgov._principal import Actor
from mcpgov.policy._cedar import CedarPolicy
from mcpgov.policy._load import (
    Policy,
    PolicyError,
    _data_shape,
    _format_loc,
    _yaml_shape,
    read_text,
)
from mcpgov.policy._model import PolicyDocument

__all__ = [
    "Case",
    "CaseError",
    "CaseResult",
    "CaseSuite",
    "Coverage",
    "TestRun",
    "load_cases",
    "run_cases",
    "write_junit",
]

Expected = Literal["allow", "deny", "require_approval"]
_DEFAULTABLE = frozenset(
    {"principal", "workload", "issuer", "tenant", "purpose", "task_id", "claims", "scopes", "actors", "at"}
)


class CaseError(ConfigurationError):
    """A case file is malformed, or a case is inconsistent with the policy or the server.

    The message names the file, the case (name and index) and the field.

    Attributes:
        source: the case file.
        case: the case's name (or ``cases[i]`` when it has none).
        field: the offending field.
    """

    def __init__(self, message: str, *, source: str, case: str | None = None, field: str | None = None) -> None:
        super().__init__(message, reason="cases_invalid")
        self.source = source
        self.case = case
        self.field = field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrincipalRef(_Model):
    """A principal named by issuer and subject."""

    issuer: StrictStr = Field(min_length=1)
    subject: StrictStr = Field(min_length=1)


class Case(_Model):
    """One request and the decision it must get (see the module docstring for the format)."""

    name: StrictStr = Field(min_length=1)
    principal: PrincipalRef | None = None
    workload: StrictStr | None = Field(default=None, min_length=1)
    issuer: StrictStr | None = Field(default=None, min_length=1)
    tenant: StrictStr | None = Field(default=None, min_length=1)
    purpose: StrictStr | None = Field(default=None, min_length=1)
    task_id: StrictStr | None = Field(default=None, min_length=1)
    claims: dict[StrictStr, Any] | None = None
    scopes: list[StrictStr] | None = None
    actors: list[StrictStr] = Field(default_factory=list)
    tool: StrictStr | None = Field(default=None, min_length=1)
    resource: StrictStr | None = Field(default=None, min_length=1)
    prompt: StrictStr | None = Field(default=None, min_length=1)
    arguments: dict[StrictStr, Any] | None = None
    at: StrictStr | float | datetime | None = None
    expect: Expected
    rule: StrictStr | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Case:
        if (self.principal is None) == (self.workload is None):
            raise _FieldProblem("principal", "give exactly one of 'principal' (issuer and subject) or 'workload'")
        if self.issuer is not None and self.principal is not None:
            raise _FieldProblem("issuer", "'issuer' goes with 'workload'; a 'principal' names its own issuer")
        if self.tenant is None:
            raise _FieldProblem("tenant", "a principal needs a tenant")
        targets = [k for k in ("tool", "resource", "prompt") if getattr(self, k) is not None]
        if len(targets) != 1:
            raise _FieldProblem("tool", "give exactly one of 'tool', 'resource' or 'prompt'")
        if self.tool is None and (self.purpose is not None or self.task_id is not None):
            raise _FieldProblem(
                "purpose" if self.purpose is not None else "task_id",
                "only a tool call carries a purpose and task (in its credential); "
                "a resource or prompt request reaches the server without them",
            )
        if self.resource is not None and self.arguments:
            raise _FieldProblem("arguments", "a resource read takes no arguments")
        if self.prompt is not None and self.arguments and not all(isinstance(v, str) for v in self.arguments.values()):
            raise _FieldProblem("arguments", "prompt arguments are strings")
        return self

    @property
    def kind(self) -> Literal["tool", "resource", "prompt"]:
        """What the case requests."""
        if self.tool is not None:
            return "tool"
        return "resource" if self.resource is not None else "prompt"

    @property
    def target(self) -> str:
        """The tool or prompt name, or the resource URI."""
        value = self.tool or self.resource or self.prompt
        assert value is not None  # noqa: S101 - guaranteed by the validator
        return value

    def identity_claims(self) -> dict[str, Any]:
        """The extra identity claims (``claims``, plus ``scope`` from ``scopes``)."""
        claims = dict(self.claims or {})
        if self.scopes is not None:
            claims["scope"] = " ".join(self.scopes)
        return claims


class _FieldProblem(ValueError):
    """A cross-field problem, reported against one field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name


class ServerInventory(_Model):
    """What the server under test declares."""

    tools: list[StrictStr] = Field(default_factory=list)
    resources: list[StrictStr] = Field(default_factory=list)
    resource_templates: list[StrictStr] = Field(default_factory=list)
    prompts: list[StrictStr] = Field(default_factory=list)


@dataclass(frozen=True)
class CaseSuite:
    """A loaded case file.

    Attributes:
        source: the file.
        cases: the cases, in file order.
        server: the inventory the file declares, if any.
    """

    source: str
    cases: tuple[Case, ...]
    server: ServerInventory | None = None


def _problem(source: str, index: int, name: str | None, field_name: str, message: str) -> CaseError:
    label = f"case {name!r} (cases[{index}])" if name else f"cases[{index}]"
    return CaseError(
        f"{source}: {label}, field {field_name!r}: {message}",
        source=source,
        case=name or f"cases[{index}]",
        field=field_name,
    )


def _read(path: Path) -> Any:
    source = str(path)
    try:
        text = read_text(path, "the case file")
    except PolicyError as exc:
        raise CaseError(str(exc), source=source) from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text, object_pairs_hook=_json_pairs)
        else:
            _yaml_shape(text, source)
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        _data_shape(data, source)
    except PolicyError as exc:
        raise CaseError(str(exc), source=source) from None
    except (RecursionError, MemoryError):
        raise CaseError(f"{source}: the case file is nested too deeply", source=source) from None
    except (yaml.YAMLError, ValueError) as exc:
        detail = str(exc).replace("\n", " ")
        raise CaseError(
            f"{source}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {detail}", source=source
        ) from None
    return data


def load_cases(path: str | Path) -> CaseSuite:
    """Read and validate a case file (YAML or JSON; duplicate keys are refused).

    Raises:
        CaseError: unreadable, malformed, or a case with a missing, unknown or invalid field
            (the message names the case and the field).
    """
    path = Path(path)
    source = str(path)
    data = _read(path)
    if not isinstance(data, Mapping):
        raise CaseError(f"{source}: a case file is a mapping with a 'cases' list", source=source)
    unknown = sorted(set(data) - {"version", "server", "defaults", "cases"})
    if unknown:
        raise CaseError(f"{source}: unknown top-level field(s) {unknown}", source=source, field=unknown[0])
    if data.get("version", 1) != 1:
        raise CaseError(f"{source}: field 'version': only version 1 exists", source=source, field="version")
    server: ServerInventory | None = None
    if data.get("server") is not None:
        try:
            server = ServerInventory.model_validate(data["server"])
        except ValidationError as exc:
            first = exc.errors()[0]
            where = _format_loc(("server", *first["loc"]))
            raise CaseError(f"{source}: field {where!r}: {first['msg']}", source=source, field=where) from None
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise CaseError(f"{source}: field 'defaults': must be a mapping", source=source, field="defaults")
    bad = sorted(set(defaults) - _DEFAULTABLE)
    if bad:
        raise CaseError(
            f"{source}: field 'defaults.{bad[0]}': only {sorted(_DEFAULTABLE)} can have defaults",
            source=source,
            field=f"defaults.{bad[0]}",
        )
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise CaseError(f"{source}: field 'cases': must be a non-empty list of cases", source=source, field="cases")
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_cases):
        case = _load_case(source, index, raw, defaults)
        if case.name in seen:
            raise _problem(source, index, case.name, "name", f"another case (cases[{seen[case.name]}]) has this name")
        seen[case.name] = index
        cases.append(case)
    return CaseSuite(source, tuple(cases), server)


def _load_case(source: str, index: int, raw: Any, defaults: Mapping[str, Any]) -> Case:
    """Validate one case (with the file's defaults applied).

    Raises:
        CaseError: naming the case and the field.
    """
    if not isinstance(raw, Mapping):
        raise CaseError(f"{source}: cases[{index}]: a case is a mapping", source=source, case=f"cases[{index}]")
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    merged = {**defaults, **raw}
    if "principal" in raw:  # a principal names its own issuer: no default workload or issuer
        for key in ("workload", "issuer"):
            if key not in raw:
                merged.pop(key, None)
    if "workload" in raw and "principal" not in raw:
        merged.pop("principal", None)
    try:
        case = Case.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, _FieldProblem):
            raise _problem(source, index, name, cause.field_name, str(cause)) from None
        where = _format_loc(first["loc"]) or "case"
        message = first["msg"].replace("Extra inputs are not permitted", "unknown field")
        raise _problem(source, index, name, where, message) from None
    if case.at is not None:
        from mcpgov._harness._clock import FrozenClock  # noqa: PLC0415 - the test kit loads on use

        try:
            FrozenClock(case.at)
        except ConfigurationError as err:
            raise _problem(source, index, name, "at", err.detail) from None
    return case


# -- checking cases against the policy and the server ------------------------------------------


def _named(document: PolicyDocument, kind: str, target: str) -> bool:
    import fnmatch  # noqa: PLC0415 - only for this check

    for rule in document.rules:
        patterns = {"tool": rule.tools, "resource": rule.resources, "prompt": rule.prompts}[kind] or ()
        if any(p == target or fnmatch.fnmatchcase(target, p) for p in patterns):
            return True
    return False


STAGE_RULES = frozenset(
    {
        "mcpgov:default-deny",
        "mcpgov:policy",
        "mcpgov:policy:default-deny",
        "mcpgov:policy:unloadable",
        "mcpgov:policy:state-unavailable",
        "mcpgov:identity",
        "mcpgov:credential",
        "mcpgov:invalid_request",
        "mcpgov:denied",
        "mcpgov:approval",
        "mcpgov:approval_required",
        "mcpgov:approval_mismatch",
        "mcpgov:configuration",
        "mcpgov:audit_unavailable",
        "mcpgov:pinning",
    }
)
"""Rule ids the governance stages themselves record (identity, credential, the policy
middleware's own failures...): a case may expect one of these, or a rule of the policy."""


def _policy_rules(policy: Policy | CedarPolicy) -> frozenset[str]:
    if isinstance(policy, Policy):
        return frozenset(r.id for r in policy.document.rules)
    from mcpgov.policy._cedar import CEDAR_DEFAULT_DENY  # noqa: PLC0415 - only for Cedar policies

    return frozenset({*(policy.rule_id(pid) for pid in policy.annotations), CEDAR_DEFAULT_DENY})


def check_cases(suite: CaseSuite, policy: Policy | CedarPolicy, inventory: Any | None) -> None:
    """Refuse cases naming targets the server does not declare, or rules nobody could record.

    ``inventory`` is what the server declares (an :class:`~mcpgov.testing.Inventory`); without
    one, the case file's ``server`` section, and without that (built-in policies only), a target
    is known when a rule of the policy names it, so a misspelt tool is never silently "denied".
    A Cedar policy does not list its targets: it needs the server's inventory. An expected
    ``rule`` must be a rule of the policy or one of :data:`STAGE_RULES`. Arguments must be
    within the limits a governed server accepts.

    Raises:
        CaseError: naming the case and the field.
    """
    from mcpgov._arguments import ArgumentLimits, freeze_and_hash  # noqa: PLC0415 - loaded on use
    from mcpgov._errors import McpGovError  # noqa: PLC0415
    from mcpgov._harness import Inventory  # noqa: PLC0415

    if inventory is None and suite.server is not None:
        inventory = Inventory.of(
            suite.server.tools, suite.server.resources, suite.server.prompts, suite.server.resource_templates
        )
    rule_ids = _policy_rules(policy)
    limits = ArgumentLimits()
    for index, case in enumerate(suite.cases):
        kind, target = case.kind, case.target
        if inventory is not None:
            known = {"tool": inventory.has_tool, "resource": inventory.has_resource, "prompt": inventory.has_prompt}[
                kind
            ]
            if not known(target):
                raise _problem(
                    suite.source, index, case.name, kind, f"unknown {kind} {target!r}: the server does not declare it"
                )
        elif not isinstance(policy, Policy):
            raise _problem(
                suite.source,
                index,
                case.name,
                kind,
                f"cannot tell whether {kind} {target!r} exists: a Cedar policy does not list its targets "
                "(declare the server's inventory under 'server:' or pass --server)",
            )
        elif not _named(policy.document, kind, target):
            raise _problem(
                suite.source,
                index,
                case.name,
                kind,
                f"unknown {kind} {target!r}: no rule of the policy names it (declare the server's inventory "
                "under 'server:' or pass --server to test targets the policy does not mention)",
            )
        if case.rule is not None and case.rule not in rule_ids and case.rule not in STAGE_RULES:
            raise _problem(
                suite.source,
                index,
                case.name,
                "rule",
                f"no rule {case.rule!r}: it is neither a rule of the policy nor a governance stage's rule",
            )
        if case.arguments is not None:
            try:
                freeze_and_hash(dict(case.arguments), limits)
            except McpGovError as exc:
                raise _problem(suite.source, index, case.name, "arguments", str(exc)) from None


def inventory_for(suite: CaseSuite, policy: Policy | CedarPolicy, inventory: Any | None) -> Any:
    """The inventory the stand-in server declares: the server's, the file's, or the cases' targets."""
    from mcpgov._harness import Inventory  # noqa: PLC0415 - the test kit loads on use

    if inventory is not None:
        return inventory
    base = suite.server or ServerInventory()
    return Inventory.of(
        [*base.tools, *(c.target for c in suite.cases if c.kind == "tool")],
        [*base.resources, *(c.target for c in suite.cases if c.kind == "resource")],
        [*base.prompts, *(c.target for c in suite.cases if c.kind == "prompt")],
        base.resource_templates,
    )


# -- running -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    """How one case fared.

    Attributes:
        case: the case.
        passed: the decision was the one expected (and by the expected rule).
        effect: the decision the server made (``none`` when it recorded none).
        rule: the rule that made it.
        message: why it failed (empty when it passed).
        explanation: the policy's explanation, for a failed case.
        seconds: how long the case took.
    """

    case: Case
    passed: bool
    effect: str
    rule: str | None
    message: str
    explanation: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Coverage:
    """Which of the policy's rules decided at least one case.

    Attributes:
        rules: the rules measured (every rule that can decide a request).
        exercised: the measured rules that decided a case.
        unexercised: the measured rules no case exercised, in policy order.
        discover_only: rules that only govern listings (never a request's decision): not measured.
        measured: False for engines whose rules cannot be listed (Cedar).
    """

    rules: tuple[str, ...]
    exercised: tuple[str, ...]
    unexercised: tuple[str, ...]
    discover_only: tuple[str, ...] = ()
    measured: bool = True

    @property
    def percent(self) -> float:
        """Exercised rules as a percentage of the measured rules (100 when there are none)."""
        if not self.rules:
            return 100.0
        return 100.0 * len(self.exercised) / len(self.rules)


@dataclass(frozen=True)
class TestRun:
    """The outcome of a case file against a policy.

    Attributes:
        policy: the policy file (or label).
        cases: the case file.
        results: one per case, in file order.
        coverage: rule coverage.
        seconds: how long the run took.
    """

    __test__ = False  # not a pytest test class

    policy: str
    cases: str
    results: tuple[CaseResult, ...]
    coverage: Coverage
    seconds: float = 0.0

    @property
    def passed(self) -> int:
        """How many cases passed."""
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        """How many cases failed."""
        return sum(1 for r in self.results if not r.passed)


def _coverage(policy: Policy | CedarPolicy, results: Sequence[CaseResult]) -> Coverage:
    if not isinstance(policy, Policy):
        return Coverage((), (), (), measured=False)
    decided = {r.rule for r in results}
    measured = tuple(r.id for r in policy.document.rules if "execute" in r.actions)
    discover_only = tuple(r.id for r in policy.document.rules if "execute" not in r.actions)
    exercised = tuple(r for r in measured if r in decided)
    unexercised = tuple(r for r in measured if r not in decided)
    return Coverage(measured, exercised, unexercised, discover_only)


async def run_cases(
    policy: Policy | CedarPolicy,
    suite: CaseSuite,
    *,
    inventory: Any | None = None,
    mode: str = "auto",
    policy_label: str | None = None,
) -> TestRun:
    """Run every case of ``suite`` through a real governed session of ``policy``.

    Args:
        policy: the policy under test.
        suite: the cases (from :func:`load_cases`).
        inventory: what the server under test declares (an :class:`~mcpgov.testing.Inventory`,
            e.g. from :func:`~mcpgov.testing.inventory_of`); without one, the file's ``server``
            section or the targets the cases name.
        mode: the protocol mode of the sessions (``"auto"`` or ``"legacy"``).
        policy_label: how to name the policy in the report.

    Raises:
        CaseError: see :func:`check_cases`.
    """
    from mcpgov._harness import (  # noqa: PLC0415
        CREDENTIAL_ISSUER,
        DEFAULT_AUDIENCE,
        DEFAULT_ISSUER,
        FrozenClock,
        GovernedHarness,
        generic_server,
    )
    from mcpgov._harness._issuers import IdentityIssuer  # noqa: PLC0415
    from mcpgov.credentials import CredentialIssuer, SigningKeySet  # noqa: PLC0415 - loaded on use
    from mcpgov.policy._middleware import PolicyMiddleware  # noqa: PLC0415

    check_cases(suite, policy, inventory)
    declared = inventory_for(suite, policy, inventory)
    clock = FrozenClock()
    issuers: dict[str, IdentityIssuer] = {}
    for case in suite.cases:
        url = case.principal.issuer if case.principal is not None else (case.issuer or DEFAULT_ISSUER)
        if url not in issuers:
            issuers[url] = IdentityIssuer(url, audience=DEFAULT_AUDIENCE, clock=clock)
    if isinstance(policy, Policy):
        for rule in policy.document.rules:
            for matcher in rule.principals or ():
                if matcher.issuer is not None and matcher.issuer not in issuers:
                    issuers[matcher.issuer] = IdentityIssuer(matcher.issuer, audience=DEFAULT_AUDIENCE, clock=clock)
    if DEFAULT_ISSUER not in issuers:
        issuers[DEFAULT_ISSUER] = IdentityIssuer(DEFAULT_ISSUER, audience=DEFAULT_AUDIENCE, clock=clock)
    credentials = CredentialIssuer(CREDENTIAL_ISSUER, SigningKeySet.generate("Ed25519", clock=clock), clock=clock)
    started = time.perf_counter()
    results: list[CaseResult] = []
    for case in suite.cases:
        case_start = time.perf_counter()
        clock.set(case.at if case.at is not None else FrozenClock().now)
        harness = GovernedHarness(
            generic_server(declared),
            PolicyMiddleware(policy, clock=clock),
            identities=issuers.values(),
            credentials=credentials,
            clock=clock,
            mode=mode,
            inventory=declared,
        )
        who: dict[str, Any] = {
            "claims": case.identity_claims() or None,
            "actors": [Actor(a) for a in case.actors],
            "tenant": case.tenant,
        }
        if case.principal is not None:
            who.update(workload=case.principal.subject, issuer=case.principal.issuer)
        else:
            who.update(workload=case.workload, issuer=case.issuer)
        verdict = await harness.request(
            case.target, case.arguments, kind=case.kind, purpose=case.purpose, task_id=case.task_id, **who
        )
        matched = verdict.effect == case.expect or (case.expect == "require_approval" and verdict.approval_requested)
        passed = matched and (case.rule is None or verdict.rule == case.rule)
        message = explanation = ""
        if not passed:
            wanted = case.expect + (f" by rule {case.rule!r}" if case.rule is not None else "")
            message = f"expected {wanted}, got {verdict.describe()}"
            explained = await harness.explain(
                case.target,
                case.arguments,
                kind=case.kind,
                purpose=case.purpose,
                task_id=case.task_id,
                caller=harness.caller(**who),
            )
            explanation = str(explained) if explained is not None else ""
        results.append(
            CaseResult(
                case,
                passed,
                verdict.effect,
                verdict.rule,
                message,
                explanation,
                time.perf_counter() - case_start,
            )
        )
    return TestRun(
        policy_label or policy.source,
        suite.source,
        tuple(results),
        _coverage(policy, results),
        time.perf_counter() - started,
    )


# -- JUnit XML ---------------------------------------------------------------------------------


_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: str) -> str:
    """``value`` with every character XML 1.0 cannot carry written as ``\\uXXXX`` (backslashes doubled)."""
    value = value.replace("\\", "\\\\")
    return _XML_FORBIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


def junit_xml(run: TestRun) -> bytes:
    """The run as JUnit XML (one ``testcase`` per case; coverage as suite properties)."""
    suites = ET.Element("testsuites", name="mcpgov policy test", tests=str(len(run.results)), failures=str(run.failed))
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=_xml_text(f"policy {run.policy}"),
        tests=str(len(run.results)),
        failures=str(run.failed),
        errors="0",
        skipped="0",
        time=f"{run.seconds:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    coverage = run.coverage
    values = {
        "policy": run.policy,
        "cases": run.cases,
        "coverage.measured": "true" if coverage.measured else "false",
        "coverage.percent": f"{coverage.percent:.1f}",
        "coverage.unexercised": ",".join(coverage.unexercised),
    }
    for name, value in values.items():
        ET.SubElement(properties, "property", name=name, value=_xml_text(value))
    for result in run.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_xml_text(f"policy.{Path(run.cases).stem}"),
            name=_xml_text(result.case.name),
            time=f"{result.seconds:.3f}",
        )
        if not result.passed:
            failure = ET.SubElement(case, "failure", message=_xml_text(result.message), type="PolicyCaseFailure")
            failure.text = _xml_text(result.message + ("\n" + result.explanation if result.explanation else ""))
    ET.indent(suites)
    return bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True))


def write_junit(run: TestRun, path: str | Path) -> None:
    """Write :func:`junit_xml` of ``run`` to ``path``."""
    Path(path).write_bytes(junit_xml(run) + b"\n")
