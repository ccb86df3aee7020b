"""The issuance policy: which tools, scopes and audiences a workload may obtain, and who may act for it."""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from mcpgov._errors import ConfigurationError, CredentialError
from mcpgov._principal import Principal

__all__ = ["Grant", "IssuancePolicy"]


def _patterns(value: Collection[str], what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigurationError(f"a grant's {what} is a collection of names or patterns, not one string")
    out = tuple(value)
    for item in out:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(f"a grant's {what} must be non-empty strings, got {item!r}")
    return out


def _party(value: str) -> tuple[str, str]:
    issuer, sep, subject = value.rpartition("#")
    if not sep or not issuer or not subject:
        raise ConfigurationError(f"a party is named 'issuer#subject' (a principal id), got {value!r}")
    return (issuer, subject)


@dataclass(frozen=True)
class Grant:
    """What some workloads may obtain.

    Names are matched exactly or as ``fnmatch`` patterns (``deploy*``); a principal is named by
    its id, ``issuer#subject`` (patterns allowed: ``https://id.example#agent-*``).

    Attributes:
        principals: the workloads this grant is for.
        audiences: the servers they may obtain credentials for.
        tools: the tools those credentials may name.
        scopes: the scopes they may carry (none by default).
        tenants: the tenants it applies in (``None``: any).
        may_act: who may obtain credentials in their own name from these (the ``may_act``
            claim): principal ids, exact (a downstream server's own identity, a sub-agent).
    """

    principals: Collection[str]
    audiences: Collection[str]
    tools: Collection[str]
    scopes: Collection[str] = ()
    tenants: Collection[str] | None = None
    may_act: Collection[str] = field(default=())

    def __post_init__(self) -> None:
        for name in ("principals", "audiences", "tools", "scopes"):
            object.__setattr__(self, name, _patterns(getattr(self, name), name))
        if self.tenants is not None:
            object.__setattr__(self, "tenants", _patterns(self.tenants, "tenants"))
        object.__setattr__(self, "may_act", tuple(_party(p) for p in _patterns(self.may_act, "may_act")))
        if not self.principals or not self.audiences or not self.tools:
            raise ConfigurationError("a grant names at least one principal, audience and tool")


def _matches(value: str, patterns: Collection[str]) -> bool:
    return any(value == p or fnmatch.fnmatchcase(value, p) for p in patterns)


class IssuancePolicy:
    """The issuer's rules: a workload obtains only what a :class:`Grant` gives it.

    A request (principal, tenant, audience, tools, scopes) is granted when one grant covers the
    principal, tenant and audience, and every tool and scope asked for is covered by the grants
    that match those; anything else is refused (``reason="not_granted"``). The credential's
    ``may_act`` is the union of the matching grants' ``may_act``.

    Args:
        grants: the grants.
    """

    def __init__(self, grants: Iterable[Grant]) -> None:
        self.grants = tuple(grants)
        for grant in self.grants:
            if not isinstance(grant, Grant):
                raise ConfigurationError(f"an issuance policy takes Grant objects, got {type(grant).__name__}")

    def __repr__(self) -> str:
        return f"IssuancePolicy(grants={len(self.grants)})"

    def authorize(
        self,
        principal: Principal | tuple[str, str],
        *,
        tenant: str,
        audience: str,
        tools: Collection[str],
        scopes: Collection[str],
    ) -> tuple[tuple[str, str], ...]:
        """Refuse what no grant gives; return the ``may_act`` parties of the credential.

        Raises:
            CredentialError: ``reason="not_granted"``, naming the first tool, scope or audience
                that is not granted.
        """
        key = principal.key if isinstance(principal, Principal) else principal
        pid = f"{key[0]}#{key[1]}"
        grants = [
            g
            for g in self.grants
            if _matches(pid, g.principals)
            and _matches(audience, g.audiences)
            and (g.tenants is None or _matches(tenant, g.tenants))
        ]
        if not grants:
            raise CredentialError(f"no grant lets {pid} obtain credentials for {audience!r}", reason="not_granted")
        for tool in tools:
            if not any(_matches(tool, g.tools) for g in grants):
                raise CredentialError(f"tool {tool!r} is not granted to {pid}", reason="not_granted")
        for scope in scopes:
            if not any(_matches(scope, g.scopes) for g in grants):
                raise CredentialError(f"scope {scope!r} is not granted to {pid}", reason="not_granted")
        parties: dict[tuple[str, str], None] = {}
        for grant in grants:
            parties.update(dict.fromkeys(grant.may_act))  # type: ignore[arg-type]
        return tuple(parties)
