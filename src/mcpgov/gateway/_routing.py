"""Per-upstream namespacing: gateway names <-> (upstream, upstream name), collisions refused."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from mcpgov._errors import ConfigurationError
from mcpgov.pinning._names import find_collision, fold_name, name_problem

__all__ = ["Namespace", "Router"]

NameKind = Literal["tool", "prompt"]


@dataclass(frozen=True)
class Namespace:
    """How one upstream's names appear on the gateway.

    Attributes:
        upstream: the upstream id.
        prefix: put before tool and prompt names.
        resource_prefix: put before resource URIs and URI templates (default: the upstream id
            and ``+``).
        tools: explicit gateway names of some tools (upstream name -> gateway name).
        prompts: the same for prompts.
    """

    upstream: str
    prefix: str = ""
    resource_prefix: str | None = None
    tools: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    prompts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.resource_prefix is None:
            object.__setattr__(self, "resource_prefix", f"{self.upstream}+")

    def _mapping(self, kind: NameKind) -> Mapping[str, str]:
        return self.tools if kind == "tool" else self.prompts

    def front(self, kind: NameKind, name: str) -> str:
        """The gateway name of an upstream tool or prompt."""
        mapped = self._mapping(kind).get(name)
        return mapped if mapped is not None else self.prefix + name

    def front_uri(self, uri: str) -> str:
        """The gateway URI (or URI template) of an upstream resource."""
        return f"{self.resource_prefix}{uri}"


def _prefix_free(labelled: list[tuple[str, str]], what: str) -> None:
    """Refuse two upstreams when one's prefix starts the other's (a name could mean both)."""
    for i, (a_id, a) in enumerate(labelled):
        for b_id, b in labelled[i + 1 :]:
            fa, fb = fold_name(a), fold_name(b)
            if fa.startswith(fb) or fb.startswith(fa):
                raise ConfigurationError(
                    f"the {what} of upstreams {a_id!r} ({a!r}) and {b_id!r} ({b!r}) overlap: a name could "
                    f"belong to both; give each upstream a {what} that does not start another's"
                )


class Router:
    """Maps gateway names to upstreams, for tools, prompts and resources.

    Namespacing is checked when the gateway is built: prefixes must not start one another
    (compared after Unicode folding), explicit names must follow the MCP naming rule and be
    unique across upstreams, and no explicit name may fall inside another upstream's prefix.
    A tool or prompt given an explicit name is reachable only under that name.

    Raises:
        ConfigurationError: the namespacing is ambiguous.
    """

    def __init__(self, namespaces: Iterable[Namespace]) -> None:
        self.namespaces: dict[str, Namespace] = {}
        for ns in namespaces:
            if ns.upstream in self.namespaces:
                raise ConfigurationError(f"upstream {ns.upstream!r} is namespaced twice")
            self.namespaces[ns.upstream] = ns
        spaces = list(self.namespaces.values())
        _prefix_free([(ns.upstream, ns.prefix) for ns in spaces], "prefix")
        _prefix_free([(ns.upstream, ns.resource_prefix or "") for ns in spaces], "resource prefix")
        self._mapped: dict[NameKind, dict[str, tuple[str, str]]] = {"tool": {}, "prompt": {}}
        for kind in ("tool", "prompt"):
            table = self._mapped[kind]
            folded: dict[str, str] = {}
            for ns in spaces:
                for name, front in ns._mapping(kind).items():
                    problem = name_problem(front)
                    if problem is not None:
                        raise ConfigurationError(
                            f"upstream {ns.upstream!r}: gateway {kind} name {front!r} is not allowed: {problem}"
                        )
                    key = fold_name(front)
                    if key in folded:
                        raise ConfigurationError(
                            f"{kind} name {front!r} of upstream {ns.upstream!r} collides with the one of "
                            f"upstream {folded[key]!r}"
                        )
                    folded[key] = ns.upstream
                    for other in spaces:
                        if other is not ns and other.prefix and key.startswith(fold_name(other.prefix)):
                            raise ConfigurationError(
                                f"{kind} name {front!r} of upstream {ns.upstream!r} falls inside the prefix "
                                f"{other.prefix!r} of upstream {other.upstream!r}"
                            )
                    table[front] = (ns.upstream, name)

    def route(self, kind: NameKind, front: str) -> tuple[str, str] | None:
        """The upstream and upstream name behind a gateway tool or prompt name, or ``None``."""
        mapped = self._mapped[kind].get(front)
        if mapped is not None:
            return mapped
        for ns in self.namespaces.values():
            if front.startswith(ns.prefix):
                name = front[len(ns.prefix) :]
                if not name or name in ns._mapping(kind):
                    return None  # a mapped name is reachable only under its gateway name
                return ns.upstream, name
        return None

    def route_uri(self, uri: str) -> tuple[str, str] | None:
        """The upstream and upstream URI behind a gateway resource URI, or ``None``."""
        for ns in self.namespaces.values():
            prefix = ns.resource_prefix or ""
            if uri.startswith(prefix):
                rest = uri[len(prefix) :]
                return (ns.upstream, rest) if rest else None
        return None

    def check_pinned(self, pinned: Mapping[str, Iterable[str]]) -> None:
        """Refuse pinned tools of different upstreams whose gateway names could be mistaken for each other.

        Args:
            pinned: upstream id -> the tool names its pin approves.

        Raises:
            ConfigurationError: two gateway names collide (exactly, after folding, or as confusables).
        """
        seen: dict[str, str] = {}
        for upstream, names in pinned.items():
            ns = self.namespaces[upstream]
            for name in names:
                front = ns.front("tool", name)
                problem = name_problem(front)
                if problem is not None:
                    raise ConfigurationError(
                        f"upstream {upstream!r}: gateway tool name {front!r} is not allowed: {problem}"
                    )
                front_other: str | None = front if front in seen else find_collision(front, seen)
                if front_other is not None:
                    other = seen[front_other]
                    raise ConfigurationError(
                        f"gateway tool name {front!r} of upstream {upstream!r} collides with {front_other!r} of "
                        f"upstream {other!r}; change a prefix or map one of them"
                    )
                seen[front] = upstream
