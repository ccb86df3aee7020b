"""The claims of a short-lived credential, and the ``typ`` that keeps credentials apart from identity tokens."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mcpgov._errors import CredentialError
from mcpgov._shared import shared_text
from mcpgov._types import present, thaw
from mcpgov._validate import is_number

__all__ = [
    "ARGS_HASH",
    "CREDENTIAL_TOKEN_TYPE",
    "CREDENTIAL_TYP",
    "TASK_BINDING",
    "Credential",
    "CredentialClaims",
]

CREDENTIAL_TYP = "mcpgov-credential+jwt"
"""The JOSE ``typ`` header of every credential. Identity tokens never carry it and a verifier of
credentials accepts nothing else, so neither kind of token can stand in for the other."""

CREDENTIAL_TOKEN_TYPE = "urn:mcpgov:params:oauth:token-type:credential"  # noqa: S105 - a type URI, not a secret
"""The RFC 8693 token type URI of a credential (``issued_token_type``, ``subject_token_type``)."""

TASK_BINDING = "mcpgov:task"
"""The one "tool" of a task credential: it binds the requests of a task that are not tool calls
(listings, resources, prompts, completions) to the task's id and purpose, and calls nothing
(``:`` is never part of a valid tool name)."""

ARGS_HASH = re.compile(r"sha256:[0-9a-f]{64}")
"""The spelling of an argument hash (``arguments_hash``): ``sha256:`` and 64 lowercase hex digits."""
_MAX_ACT_DEPTH = 16
_MAX_LIST = 256
_MAX_TEXT = 1024


def _text(payload: Mapping[str, Any], name: str, *, required: bool = True, unique: bool = False) -> str | None:
    """A text claim; one shared copy of it unless ``unique`` (values that recur in every
    credential of a workload are not kept once per credential: see :mod:`mcpgov._shared`)."""
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise CredentialError(f"claim {name!r} must be a non-empty string", reason="malformed")
    return value if unique else shared_text(value)


def _number(payload: Mapping[str, Any], name: str) -> float:
    value = payload.get(name)
    if not is_number(value):
        raise CredentialError(f"claim {name!r} must be a finite number", reason="malformed")
    return float(value)


def _names(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > _MAX_LIST:
        raise CredentialError(f"claim {name!r} must be a list of names", reason="malformed")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > _MAX_TEXT:
            raise CredentialError(f"claim {name!r} must be a list of names", reason="malformed")
    return tuple(value)


def _check_act(value: Any, depth: int = 0) -> None:
    if depth >= _MAX_ACT_DEPTH or not isinstance(value, Mapping):
        raise CredentialError("claim 'act' is malformed or nested too deeply", reason="malformed")
    sub = value.get("sub")
    if not isinstance(sub, str) or not sub:
        raise CredentialError("every 'act' needs a 'sub'", reason="malformed")
    iss = value.get("iss")
    if iss is not None and not isinstance(iss, str):
        raise CredentialError("'act.iss' must be a string", reason="malformed")
    inner = value.get("act")
    if inner is not None:
        _check_act(inner, depth + 1)


def _party(value: Any, name: str) -> tuple[str, str]:
    if not isinstance(value, Mapping):
        raise CredentialError(f"claim {name!r} names a party as an object", reason="malformed")
    iss, sub = value.get("iss"), value.get("sub")
    if not (isinstance(iss, str) and isinstance(sub, str)) or not (
        0 < len(iss) <= _MAX_TEXT and 0 < len(sub) <= _MAX_TEXT
    ):
        raise CredentialError(f"claim {name!r} needs 'iss' and 'sub' strings", reason="malformed")
    return (iss, sub)


def _parties(value: Any, name: str) -> tuple[tuple[str, str], ...]:
    items = value if isinstance(value, list) else [value]
    if len(items) > _MAX_LIST:
        raise CredentialError(f"claim {name!r} names too many parties", reason="malformed")
    return tuple(dict.fromkeys(_party(item, name) for item in items))


def _actor_list(value: Any) -> tuple[tuple[str, str | None], ...]:
    """The ``holder_act`` claim: a list of ``{"sub", "iss"?}`` objects, nearest first."""
    if not isinstance(value, list) or len(value) > _MAX_ACT_DEPTH:
        raise CredentialError("claim 'holder_act' must be a short list of actors", reason="malformed")
    out: list[tuple[str, str | None]] = []
    for item in value:
        sub = item.get("sub") if isinstance(item, Mapping) else None
        iss = item.get("iss") if isinstance(item, Mapping) else None
        if not isinstance(sub, str) or not 0 < len(sub) <= _MAX_TEXT or (iss is not None and not isinstance(iss, str)):
            raise CredentialError("every 'holder_act' entry needs a 'sub' string", reason="malformed")
        out.append((sub, iss))
    return tuple(out)


def _actors_json(actors: tuple[tuple[str, str | None], ...]) -> list[dict[str, str]]:
    return [{"sub": sub} if iss is None else {"sub": sub, "iss": iss} for sub, iss in actors]


def _party_json(party: tuple[str, str]) -> dict[str, str]:
    return {"iss": party[0], "sub": party[1]}


def actor_chain(act: Mapping[str, Any] | None) -> tuple[tuple[str, str | None], ...]:
    """The ``(subject, issuer)`` pairs of a nested ``act`` claim, nearest first."""
    out: list[tuple[str, str | None]] = []
    while act is not None:
        out.append((str(act["sub"]), act.get("iss")))
        act = act.get("act")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CredentialClaims:
    """The verified claims of one credential.

    Attributes:
        issuer: ``iss``, the credential issuer.
        subject: ``sub``, the workload the credential was issued to.
        subject_issuer: ``idp``, the identity issuer that vouched for ``subject`` (a principal
            is issuer and subject together).
        audience: ``aud``, the one server the credential is good for.
        tenant: ``tenant``.
        tools: ``tools``, the tools the credential may call.
        scopes: ``scope`` (space-separated on the wire).
        task_id: ``task``.
        purpose: ``purpose``.
        args_hash: ``args_hash``: when set, the credential is good only for a call with exactly
            these arguments (``sha256:`` over their RFC 8785 canonical JSON).
        jti: ``jti``, the unique credential id (what audit records).
        issued_at: ``iat``.
        not_before: ``nbf``.
        expires_at: ``exp``.
        act: ``act``, who the subject acts for, nested (RFC 8693); ``None`` when nobody.
        chain: ``chain``, the ids of the credentials this one was delegated from, nearest first.
        single_use: ``once``: the credential may be used for one request only.
        owner: ``own``, the principal ``(issuer, subject)`` the first credential of this chain
            was minted for (the task's owner); ``None`` on a minted credential (its subject).
        may_act: ``may_act`` (RFC 8693 section 4.4, a list when several): the principals
            ``(issuer, subject)`` allowed to obtain a credential in their own name from this
            one (delegation, downstream exchange), set at mint time by the issuance policy.
        holder_actors: ``holder_act``, on a credential derived into another principal's name:
            the actor chain ``(subject, issuer)`` of that principal's identity when it obtained
            it, nearest first (who it acts for; ``act`` names who it was delegated by); ``None``
            on a credential still held by the principal it was minted for (``act`` is its chain).
    """

    issuer: str
    subject: str
    subject_issuer: str
    audience: str
    tenant: str
    tools: tuple[str, ...]
    scopes: tuple[str, ...]
    task_id: str | None
    purpose: str | None
    args_hash: str | None
    jti: str
    issued_at: float
    not_before: float
    expires_at: float
    act: Mapping[str, Any] | None = field(default=None, compare=False)
    chain: tuple[str, ...] = ()
    single_use: bool = False
    owner: tuple[str, str] | None = None
    may_act: tuple[tuple[str, str], ...] = ()
    holder_actors: tuple[tuple[str, str | None], ...] | None = None

    @property
    def owner_key(self) -> tuple[str, str]:
        """The task owner ``(issuer, subject)``: who the first credential of the chain was minted for."""
        return self.owner if self.owner is not None else (self.subject_issuer, self.subject)

    @property
    def depth(self) -> int:
        """How many delegations stand between this credential and the one first minted."""
        return len(self.chain)

    @property
    def actors(self) -> tuple[tuple[str, str | None], ...]:
        """The actor chain as ``(subject, issuer)`` pairs, nearest first."""
        return actor_chain(self.act)

    def to_payload(self) -> dict[str, Any]:
        """The JWT claims set."""
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.subject,
            "idp": self.subject_issuer,
            "aud": self.audience,
            "tenant": self.tenant,
            "tools": list(self.tools),
            "jti": self.jti,
            "iat": self.issued_at,
            "nbf": self.not_before,
            "exp": self.expires_at,
        }
        parties = [_party_json(p) for p in self.may_act]
        payload |= present(
            scope=" ".join(self.scopes) if self.scopes else None,
            task=self.task_id,
            purpose=self.purpose,
            args_hash=self.args_hash,
            act=thaw(self.act) if self.act is not None else None,
            chain=list(self.chain) if self.chain else None,
            once=True if self.single_use else None,
            own=_party_json(self.owner) if self.owner is not None else None,
            may_act=(parties[0] if len(parties) == 1 else parties) if parties else None,
            holder_act=_actors_json(self.holder_actors) if self.holder_actors is not None else None,
        )
        return payload

    def as_mapping(self) -> Mapping[str, Any]:
        """The claims as a read-only mapping (what ``GovContext.credential`` holds)."""
        return MappingProxyType(self.to_payload())

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CredentialClaims:
        """Validate a decoded claims set.

        Raises:
            CredentialError: a claim is missing or has the wrong shape (``reason="malformed"``).
        """
        aud = payload.get("aud")
        if isinstance(aud, list) and len(aud) == 1:
            aud = aud[0]
        if not isinstance(aud, str) or not aud:
            raise CredentialError("a credential names exactly one audience", reason="malformed")
        scope = payload.get("scope", "")
        if not isinstance(scope, str) or len(scope) > _MAX_TEXT * 8:
            raise CredentialError("claim 'scope' must be a string", reason="malformed")
        tools = _names(payload.get("tools"), "tools")
        if not tools:
            raise CredentialError("a credential is bound to at least one tool", reason="malformed")
        args_hash = _text(payload, "args_hash", required=False, unique=True)
        if args_hash is not None and not ARGS_HASH.fullmatch(args_hash):
            raise CredentialError("claim 'args_hash' is malformed", reason="malformed")
        act = payload.get("act")
        if act is not None:
            _check_act(act)
        once = payload.get("once", False)
        if not isinstance(once, bool):
            raise CredentialError("claim 'once' must be a boolean", reason="malformed")
        chain = _names(payload.get("chain", []), "chain")
        own = payload.get("own")
        may_act = payload.get("may_act")
        holder_act = payload.get("holder_act")
        return cls(
            issuer=_text(payload, "iss"),  # type: ignore[arg-type]
            subject=_text(payload, "sub"),  # type: ignore[arg-type]
            subject_issuer=_text(payload, "idp"),  # type: ignore[arg-type]
            audience=shared_text(aud),
            tenant=_text(payload, "tenant"),  # type: ignore[arg-type]
            tools=tuple(map(shared_text, tools)),
            scopes=tuple(map(shared_text, scope.split())),
            task_id=_text(payload, "task", required=False),
            purpose=_text(payload, "purpose", required=False),
            args_hash=args_hash,
            jti=_text(payload, "jti", unique=True),  # type: ignore[arg-type]
            issued_at=_number(payload, "iat"),
            not_before=_number(payload, "nbf"),
            expires_at=_number(payload, "exp"),
            act=_freeze(act) if act is not None else None,
            chain=chain,
            single_use=once,
            owner=_party(own, "own") if own is not None else None,
            may_act=_parties(may_act, "may_act") if may_act is not None else (),
            holder_actors=_actor_list(holder_act) if holder_act is not None else None,
        )


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


@dataclass(frozen=True, slots=True)
class Credential:
    """A minted credential: the signed token and its claims.

    The token is a bearer secret: it is kept out of ``repr`` and must only travel in the
    request ``_meta`` (:data:`~mcpgov.META_CREDENTIAL`), never in logs, results or audit.

    Attributes:
        token: the compact JWS.
        claims: what it grants.
    """

    token: str = field(repr=False)
    claims: CredentialClaims

    @property
    def id(self) -> str:
        """The credential id (``jti``)."""
        return self.claims.jti

    @property
    def expires_at(self) -> float:
        """When the credential expires (seconds since the epoch)."""
        return self.claims.expires_at
