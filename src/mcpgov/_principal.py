"""Principals: who is calling, as established by a verified identity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Actor", "Principal", "act_claim"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Actor:
    """One link of an actor chain: a party on whose behalf the principal acts (RFC 8693 ``act``)."""

    subject: str
    issuer: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller.

    A principal is identified by its issuer *and* subject together (``key``): the same
    subject from two issuers is two different principals.

    Attributes:
        issuer: who vouched for the identity (an OIDC issuer URL, ``spiffe://trust-domain``...).
        subject: the identity's subject within that issuer.
        tenant: the tenant the principal belongs to, taken from verified claims only.
        claims: the verified claims of the identity token (read-only).
        spiffe_id: the SPIFFE ID when the identity is a SPIFFE JWT-SVID.
        actors: the actor chain, nearest first (who the workload acts for).
        auth_method: how the identity was established (``"jwt"``, ``"spiffe-jwt-svid"``...).
    """

    issuer: str
    subject: str
    tenant: str | None = None
    claims: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)
    spiffe_id: str | None = None
    actors: tuple[Actor, ...] = ()
    auth_method: str = "unknown"

    @property
    def key(self) -> tuple[str, str]:
        """The identity of the principal: ``(issuer, subject)``."""
        return (self.issuer, self.subject)

    @property
    def id(self) -> str:
        """A printable identity, ``issuer#subject``, used in audit events."""
        return f"{self.issuer}#{self.subject}"

    @property
    def delegation_depth(self) -> int:
        """How many actors stand behind this principal."""
        return len(self.actors)


def act_claim(actors: Sequence[Actor]) -> dict[str, Any] | None:
    """The RFC 8693 ``act`` claim of an actor chain (nearest first): nested links, ``None`` when empty."""
    act: dict[str, Any] | None = None
    for actor in reversed(actors):
        link: dict[str, Any] = {"sub": actor.subject}
        if actor.issuer is not None:
            link["iss"] = actor.issuer
        if act is not None:
            link["act"] = act
        act = link
    return act
