"""Server-side name hygiene: a governed server does not serve names a client-side pin would refuse.

A rule such as ``deny deploy*`` is walked around when the server itself (or a third-party server
re-exported through it) offers ``d\u0435ploy_prod`` (a Cyrillic ``e``), or both ``read_file`` and
``read-file``. So a governed server refuses tool and prompt names that break the MCP naming rule
(SEP-986) or that can be mistaken for another name it serves, with the same checks pinning uses:
at :func:`~mcpgov.govern` time for what is already registered, and at listing and call time for
what is registered later. A server that must keep a legacy name lists it in :class:`NamePolicy`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mcpgov._errors import ConfigurationError

__all__ = ["NamePolicy", "NameRules"]


@dataclass(frozen=True, slots=True)
class NamePolicy:
    """Which tool and prompt names a governed server serves.

    Attributes:
        allow: names served as they are even though they break a rule (legacy names).
        enforce: ``False`` turns the checks off entirely (not recommended).
    """

    allow: frozenset[str] = field(default_factory=frozenset)
    enforce: bool = True

    def __post_init__(self) -> None:
        allow: object = self.allow
        if isinstance(allow, str) or not all(isinstance(n, str) for n in self.allow):
            raise ConfigurationError("NamePolicy.allow must be a collection of names")
        object.__setattr__(self, "allow", frozenset(self.allow))


_NONE: Mapping[str, str] = MappingProxyType({})


class NameRules:
    """The refused names among a set of names, computed once per distinct set."""

    def __init__(self, policy: NamePolicy | None = None) -> None:
        self.policy = policy or NamePolicy()
        self._cache: dict[tuple[str, frozenset[str]], Mapping[str, str]] = {}

    def refused(self, kind: str, names: Iterable[str]) -> Mapping[str, str]:
        """``{name: why}`` for every name of ``names`` (all of one kind) that must not be served."""
        if not self.policy.enforce:
            return _NONE
        key = (kind, frozenset(names))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        from mcpgov.pinning._names import find_collision, name_problem  # noqa: PLC0415 - SDK-backed, loaded on use

        allowed = self.policy.allow
        refused: dict[str, str] = {}
        ordered = sorted(key[1])
        skeletons: dict[str, list[str]] = {}
        for name in ordered:
            skeletons.setdefault(_separators_folded(name), []).append(name)
        for name in ordered:
            if name in allowed:
                continue
            problem = name_problem(name)
            if problem is not None:
                refused[name] = f"{kind} name breaks the MCP naming rule: {problem}"
                continue
            twins = [n for n in skeletons[_separators_folded(name)] if n != name]
            other = twins[0] if twins else find_collision(name, [n for n in ordered if n != name])
            if other is not None:
                refused[name] = f"{kind} name can be mistaken for {other!r}"
        result: Mapping[str, str] = MappingProxyType(refused) if refused else _NONE
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = result
        return result


def _separators_folded(name: str) -> str:
    """``name`` case-folded (NFKC) with ``-``, ``.`` and ``_`` treated as one separator."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return folded.replace("-", "_").replace(".", "_")
