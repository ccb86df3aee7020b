"""Declarations for server authors: ``@gov.tool(...)`` registers a tool and what it requires.

The decorator calls the SDK's own ``server.tool(meta=...)`` (the SDK registers at decoration
time), publishes the declaration under the tool's ``_meta`` key ``io.mcpgov/policy`` and compiles
it into rules of the same engine as the policy file:

* requirements (scopes, tenants, argument constraints) become a deny rule
  ``decl:<tool>:requires`` that applies *unless* they all hold: a policy file cannot grant the
  tool around them;
* ``approval=True`` becomes a require-approval rule ``decl:<tool>:approval``;
* ``grant=True`` (the default) becomes an allow rule ``decl:<tool>`` (any verified principal
  meeting the requirements); with ``grant=False`` the policy file must allow the tool;
* obligations (redaction, credential TTL, argument binding, rate limit) travel with every
  allow of the tool, whichever rule allowed it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from pydantic import ValidationError

from mcpgov._errors import ConfigurationError
from mcpgov._fastmcp import is_fastmcp
from mcpgov.policy._engine import DeclaredTarget, _obligations_dict
from mcpgov.policy._model import ArgumentCondition, Obligations, RateLimit, Rule, TargetSet

if TYPE_CHECKING:
    from fastmcp import FastMCP

__all__ = ["META_POLICY", "PolicyDecorators", "ToolDeclaration"]

META_POLICY = "io.mcpgov/policy"
"""Tool ``_meta`` key under which a declaration is published (scopes, risk, approval, redact)."""

Risk = Literal["low", "medium", "high", "critical"]
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ToolDeclaration:
    """What a server author declared a tool requires.

    Attributes:
        name: the tool name.
        scopes: scopes the caller must all hold.
        tenants: the tenants that may use the tool (``None``: any).
        risk: ``low``, ``medium``, ``high`` or ``critical`` (policy rules can test it: ``when.risk``).
        approval: every use needs approval.
        constraints: argument conditions every call must meet.
        redact: argument fields to redact in audit.
        labels: labels recorded in task history when the tool runs.
        grant: the declaration itself allows the tool when its requirements hold.
        obligations: further obligations of every allow of the tool.
    """

    name: str
    scopes: tuple[str, ...] = ()
    tenants: tuple[str, ...] | None = None
    risk: Risk = "low"
    approval: bool = False
    constraints: Mapping[str, ArgumentCondition] = field(default_factory=dict)
    redact: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    grant: bool = True
    obligations: Obligations | None = None

    def rules(self) -> tuple[Rule, ...]:
        """The rules this declaration compiles to."""
        out: list[Rule] = []
        if self.scopes or self.tenants is not None or self.constraints:
            unless: dict[str, Any] = {}
            if self.scopes:
                unless["scopes"] = list(self.scopes)
            if self.tenants is not None:
                unless["tenants"] = list(self.tenants)
            if self.constraints:
                unless["arguments"] = dict(self.constraints)
            out.append(
                Rule.model_validate(
                    {
                        "id": f"decl:{self.name}:requires",
                        "effect": "deny",
                        "description": f"requirements declared by tool {self.name}",
                        "tools": [self.name],
                        "unless": unless,
                    }
                )
            )
        if self.approval:
            out.append(
                Rule.model_validate(
                    {
                        "id": f"decl:{self.name}:approval",
                        "effect": "require_approval",
                        "description": f"tool {self.name} is declared to need approval",
                        "tools": [self.name],
                    }
                )
            )
        if self.grant:
            out.append(
                Rule.model_validate(
                    {
                        "id": f"decl:{self.name}",
                        "effect": "allow",
                        "description": f"tool {self.name} is granted by its declaration",
                        "tools": [self.name],
                    }
                )
            )
        return tuple(out)

    def target(self) -> DeclaredTarget:
        """Risk and obligations for the engine."""
        obligations = _obligations_dict(f"decl:{self.name}", self.obligations)
        return DeclaredTarget(self.risk, obligations)

    def as_json(self) -> dict[str, Any]:
        """The declaration as JSON data (for the policy version digest)."""
        return {
            "name": self.name,
            "scopes": list(self.scopes),
            "tenants": list(self.tenants) if self.tenants is not None else None,
            "risk": self.risk,
            "approval": self.approval,
            "constraints": {
                k: v.model_dump(mode="json", by_alias=True, exclude_unset=True) for k, v in self.constraints.items()
            },
            "redact": list(self.redact),
            "labels": list(self.labels),
            "grant": self.grant,
            "obligations": self.obligations.model_dump(mode="json") if self.obligations else None,
        }


class PolicyDecorators:
    """Server-author declarations that feed the policy engine.

    Example::

        server = MCPServer("files")
        gov = PolicyDecorators(server)

        @gov.tool(scopes=["files:write"], tenants=["acme"], risk="high",
                  constraints={"path": {"path": {"under": ["/data/acme"]}}}, redact=["content"])
        def write_file(path: str, content: str) -> str: ...

        govern(server, PolicyMiddleware("policy.yaml", declarations=gov))

    Args:
        server: the SDK ``MCPServer`` (or FastMCP 4 server) the tools are registered on.
    """

    def __init__(self, server: MCPServer | FastMCP[Any]) -> None:
        if not isinstance(server, MCPServer) and not is_fastmcp(server):
            raise ConfigurationError(
                f"PolicyDecorators needs an MCPServer or a FastMCP 4 server, got {type(server).__name__}"
            )
        self.server = server
        self._declarations: dict[str, ToolDeclaration] = {}
        self.generation = 0
        """Changes whenever a declaration is added (the middleware recompiles then)."""

    @property
    def declarations(self) -> Mapping[str, ToolDeclaration]:
        """The declarations so far, by tool name."""
        return dict(self._declarations)

    def tool(
        self,
        name: str | None = None,
        *,
        scopes: Sequence[str] = (),
        tenants: Sequence[str] | None = None,
        risk: Risk = "low",
        approval: bool = False,
        constraints: Mapping[str, Mapping[str, Any] | ArgumentCondition] | None = None,
        redact: Sequence[str] = (),
        labels: Sequence[str] = (),
        grant: bool = True,
        max_credential_ttl: float | None = None,
        bind_arguments: bool = False,
        rate_limit: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        **tool_kwargs: Any,
    ) -> Callable[[_F], _F]:
        """Register the decorated function as a tool (``server.tool``) and declare what it requires.

        Args:
            name: the tool name (defaults to the function's name).
            scopes: scopes the caller must all hold.
            tenants: the only tenants that may list or use the tool.
            risk: ``low``, ``medium``, ``high`` or ``critical``.
            approval: every use needs approval.
            constraints: argument name -> condition (the policy file's argument condition format).
            redact: argument fields to redact in audit.
            labels: labels recorded in task history when the tool runs (e.g. ``sensitive``).
            grant: allow the tool when its requirements hold (``False``: the policy file must).
            max_credential_ttl: longest lifetime of a credential minted for a call.
            bind_arguments: bind the credential to the call's argument hash.
            rate_limit: ``{"limit": 10, "per": 60, "by": ["principal", "tool"]}``.
            meta: further tool ``_meta`` entries.
            **tool_kwargs: passed on to ``server.tool`` (``title``, ``description``, ``annotations``...).

        Raises:
            ConfigurationError: an invalid declaration (naming the tool and field), or the tool is
                declared twice.
        """
        if isinstance(scopes, str) or isinstance(redact, str) or isinstance(labels, str) or isinstance(tenants, str):
            raise ConfigurationError("scopes, tenants, redact and labels take sequences of strings, not one string")
        if risk not in ("low", "medium", "high", "critical"):
            raise ConfigurationError(f"risk must be low, medium, high or critical, got {risk!r}")
        if meta is not None and META_POLICY in meta:
            raise ConfigurationError(f"meta key {META_POLICY!r} is set by the declaration itself")

        def register(fn: _F) -> _F:
            tool_name = name or getattr(fn, "__name__", None)
            if not isinstance(tool_name, str) or not tool_name:
                raise ConfigurationError("a declared tool needs a name")
            if tool_name in self._declarations:
                raise ConfigurationError(f"tool {tool_name!r} is declared twice")
            where = "(declaration)"
            try:
                parsed: dict[str, ArgumentCondition] = {}
                for arg, cond in (constraints or {}).items():
                    where = f"constraints.{arg}"
                    parsed[arg] = (
                        cond if isinstance(cond, ArgumentCondition) else ArgumentCondition.model_validate(dict(cond))
                    )
                where = "(declaration)"
                obligations = Obligations(
                    max_credential_ttl=max_credential_ttl,
                    bind_arguments=bind_arguments,
                    redact=list(redact),
                    rate_limit=RateLimit.model_validate(dict(rate_limit)) if rate_limit is not None else None,
                )
                declaration = ToolDeclaration(
                    name=tool_name,
                    scopes=tuple(scopes),
                    tenants=tuple(tenants) if tenants is not None else None,
                    risk=risk,
                    approval=approval,
                    constraints=parsed,
                    redact=tuple(redact),
                    labels=tuple(labels),
                    grant=grant,
                    obligations=obligations,
                )
                declaration.rules()  # validate now, not at the first request
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join([where, *(str(p) for p in e['loc'])])}: {e['msg'].removeprefix('Value error, ')}"
                    for e in exc.errors()
                )
                raise ConfigurationError(f"tool {tool_name!r}: invalid declaration: {problems}") from None
            published = {
                "scopes": list(declaration.scopes),
                "risk": risk,
                "approval": approval,
                "redact": list(declaration.redact),
            }
            # MCPServer.tool and FastMCP.tool both take name= and meta= and return a decorator.
            decorate: Any = self.server.tool(
                name=tool_name, meta={**(meta or {}), META_POLICY: published}, **tool_kwargs
            )
            decorate(fn)
            self._declarations[tool_name] = declaration
            self.generation += 1
            return fn

        return register

    def compile_parts(
        self,
    ) -> tuple[tuple[Rule, ...], dict[str, TargetSet], dict[str, DeclaredTarget], list[dict[str, Any]]]:
        """Rules, labels, per-tool targets and JSON form of every declaration (for the engine)."""
        rules: list[Rule] = []
        labels: dict[str, list[str]] = {}
        targets: dict[str, DeclaredTarget] = {}
        as_json: list[dict[str, Any]] = []
        for name, declaration in sorted(self._declarations.items()):
            rules.extend(declaration.rules())
            for label in declaration.labels:
                labels.setdefault(label, []).append(name)
            targets[name] = declaration.target()
            as_json.append(declaration.as_json())
        return tuple(rules), {k: TargetSet(tools=v) for k, v in labels.items()}, targets, as_json
