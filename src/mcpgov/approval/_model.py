"""Approval requests, answers and grants: an approval is bound to one exact action."""

from __future__ import annotations

import json
import secrets
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from mcpgov._arguments import canonical_json
from mcpgov._context import GovContext, task_owner
from mcpgov._decision import Decision
from mcpgov._principal import Principal
from mcpgov._types import thaw

__all__ = ["ActionKey", "ApprovalAnswer", "ApprovalGrant", "ApprovalRequest", "action_key"]

_SHOWN_ARGUMENTS = 4096
"""The most characters of the arguments shown in a prompt (the arguments hash covers them all)."""


def _visible(json_text: str) -> str:
    """JSON text with every character that is not printable (controls, format characters such as
    bidirectional overrides and zero-width spaces, separators other than the space, unassigned)
    written as a JSON ``\\u`` escape: the same JSON value, shown without hidden characters."""
    if json_text.isprintable():
        return json_text
    out: list[str] = []
    for ch in json_text:
        if ch.isprintable():
            out.append(ch)
            continue
        code = ord(ch)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


ActionKey = tuple[
    str, str | None, str | None, str | None, str | None, str | None, str | None, str | None, str | None, str | None
]
"""(method, kind, target, args_hash, principal issuer, principal subject, tenant, task id, task
owner ``issuer#subject``, actor chain): the actor chain is whom the caller acts for, nearest
first, as the JSON text ``[[subject, issuer], ...]`` (``None`` when it acts for nobody)."""


def acting_for_key(principal: Principal | None) -> str | None:
    """The actor chain of ``principal`` as an :data:`ActionKey` part: one exact text per chain."""
    if principal is None or not principal.actors:
        return None
    return json.dumps([[a.subject, a.issuer] for a in principal.actors], ensure_ascii=False, separators=(",", ":"))


def acting_for_ids(key: str | None) -> tuple[str, ...]:
    """The parties of an :data:`ActionKey`'s actor chain, nearest first, as ``issuer#subject``
    (the subject alone where no issuer was named).

    Raises:
        ValueError: ``key`` is not such a text (a stored approval in another shape).
    """
    if key is None:
        return ()
    links = json.loads(key)
    if not isinstance(links, list) or not all(
        isinstance(link, list)
        and len(link) == 2
        and isinstance(link[0], str)
        and (link[1] is None or isinstance(link[1], str))
        for link in links
    ):
        raise ValueError("not an actor chain")
    return tuple(f"{iss}#{sub}" if iss is not None else sub for sub, iss in links)


def action_key(ctx: GovContext) -> ActionKey:
    """What an approval is bound to: the exact request, caller and task (the task's id and its
    owner: one id may name the tasks of several owners, see :func:`~mcpgov._context.task_owner`),
    and whom the caller acts for (its actor chain: a grant for one party is not one for another)."""
    principal = ctx.principal
    owner = task_owner(ctx)
    return (
        ctx.method,
        ctx.kind,
        ctx.target,
        ctx.args_hash,
        principal.issuer if principal is not None else None,
        principal.subject if principal is not None else None,
        ctx.tenant,
        ctx.task_id,
        f"{owner[0]}#{owner[1]}" if owner is not None else None,
        acting_for_key(principal),
    )


def _other_owner(action: ActionKey) -> str | None:
    """The owner of the action's task when it is not the caller (``None`` for the caller's own)."""
    owner = action[8]
    caller = f"{action[4]}#{action[5]}" if action[5] is not None else None
    return owner if owner is not None and owner != caller else None


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


def approves_itself(approver: str, request: ApprovalRequest) -> bool:
    """Whether ``approver`` names the principal that asks (its subject, or ``issuer#subject``),
    in any case, padding or compatibility spelling: nobody approves their own request."""
    issuer, subject = request.action[4], request.action[5]
    if subject is None or not isinstance(approver, str):
        return False
    requester = {_folded(subject), _folded(f"{issuer}#{subject}")}
    if request.principal is not None:
        requester.add(_folded(request.principal))
    return _folded(approver) in requester


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A request for a person to approve one exact action.

    Attributes:
        id: unique id of this request (what an operator answers).
        action: the action it is bound to (see :func:`action_key`).
        method, kind, target, args_hash: what would run.
        principal: who asks (``issuer#subject``), tenant and task: on whose behalf.
        purpose: the declared purpose.
        rule: the rule that required approval; reason: its explanation.
        arguments: the request's arguments (read-only), for the approver to inspect.
        requested_at, expires_at: seconds since the epoch.
        policy_version: the version of the policy whose rule required approval (a grant stands
            only under that version).
        task_owner: whose task it is (``issuer#subject``), when it is not the caller's own (a
            delegate acting in another principal's task).
        acting_for: whom the caller acts for (its actor chain, nearest first, each
            ``issuer#subject``); empty when it acts for nobody.
    """

    id: str
    action: ActionKey
    method: str
    kind: str | None
    target: str | None
    args_hash: str | None
    principal: str | None
    tenant: str | None
    task_id: str | None
    purpose: str | None
    rule: str
    reason: str
    requested_at: float
    expires_at: float
    arguments: Any = field(default=None, repr=False, compare=False)
    policy_version: str | None = None
    task_owner: str | None = None
    acting_for: tuple[str, ...] = ()

    @classmethod
    def for_context(
        cls, ctx: GovContext, decision: Decision, *, ttl: float, now: float | None = None
    ) -> ApprovalRequest:
        """The approval request for the action in ``ctx`` that ``decision`` says needs approval."""
        at = time.time() if now is None else now
        action = action_key(ctx)
        return cls(
            id=secrets.token_hex(16),  # hex: an id no redaction rule reads as a secret or an option
            action=action,
            method=ctx.method,
            kind=ctx.kind,
            target=ctx.target,
            args_hash=ctx.args_hash,
            principal=ctx.principal.id if ctx.principal is not None else None,
            tenant=ctx.tenant,
            task_id=ctx.task_id,
            purpose=ctx.purpose,
            rule=decision.rule,
            reason=decision.reason,
            requested_at=at,
            expires_at=at + ttl,
            arguments=ctx.arguments,
            policy_version=decision.policy_version,
            task_owner=_other_owner(action),
            acting_for=acting_for_ids(action[9]),
        )

    @staticmethod
    def quoted(text: str) -> str:
        """``text`` as shown to a person: a JSON string whose every control, format (bidirectional,
        zero-width) or other unprintable character is written as a ``\\uXXXX`` escape, so it reads
        back to exactly ``text`` and cannot hide or restyle the rest of the prompt."""
        return _visible(json.dumps(text, ensure_ascii=False))

    def shown_arguments(self) -> str:
        """The arguments as shown to a person: their canonical JSON (what the arguments hash is
        computed over) with unprintable characters escaped, which parses back to exactly the
        arguments; beyond 4096 characters cut, and said to be."""
        if self.arguments is None:
            return "none"
        try:
            text = _visible(canonical_json(thaw(self.arguments)).decode("utf-8"))
        except Exception:  # noqa: BLE001 - arguments without a JSON form are still shown, escaped
            return self.quoted(repr(self.arguments))
        if len(text) <= _SHOWN_ARGUMENTS:
            return text
        return (
            f"{self.quoted(text[:_SHOWN_ARGUMENTS])} (cut: the first {_SHOWN_ARGUMENTS} of {len(text)} "
            "characters; the arguments hash covers them all)"
        )

    def describe(self) -> str:
        """A one-paragraph account for a person deciding. Every value the caller or its
        credentials chose (caller, tenant, task, purpose, target, arguments) is shown quoted and
        escaped (see :meth:`quoted`)."""
        q = self.quoted
        who = q(self.principal) if self.principal else "an unidentified caller"
        if self.acting_for:
            who += ", acting for " + ", who acts for ".join(q(party) for party in self.acting_for) + ","
        where = f" in tenant {q(self.tenant)}" if self.tenant else ""
        task = f" for task {q(self.task_id)}" if self.task_id else ""
        if self.task_id and self.task_owner:
            task += f" of {q(self.task_owner)}"
        why = f" (purpose {q(self.purpose)})" if self.purpose else ""
        what = q(self.kind or self.method)
        target = q(self.target) if self.target is not None else "(no target)"
        return (
            f"{who}{where} asks to run {what} {target}{task}{why} with arguments {self.shown_arguments()}. "
            f"Rule {q(self.rule)} requires approval. Arguments hash: {q(self.args_hash or 'none')}."
        )


@dataclass(frozen=True, slots=True)
class ApprovalAnswer:
    """An approver's answer.

    Attributes:
        request_id: the request answered.
        approved: True to approve, False to refuse.
        approver: who answered (recorded in audit).
        reason: optional explanation.
    """

    request_id: str
    approved: bool
    approver: str
    reason: str = ""

    def __post_init__(self) -> None:
        if not _well_formed(self):
            raise TypeError(
                "ApprovalAnswer needs a request_id (str), approved (a bool: True or False), "
                "a non-empty approver name (str) and a reason (str)"
            )


def _well_formed(answer: ApprovalAnswer) -> bool:
    """Whether ``answer`` is an answer at all: ``approved`` exactly a bool (never a truthy
    ``"no"`` or ``1``), the approver's name a non-empty string."""
    return (
        isinstance(answer.request_id, str)
        and type(answer.approved) is bool
        and isinstance(answer.approver, str)
        and bool(answer.approver)
        and isinstance(answer.reason, str)
    )


@dataclass(frozen=True, slots=True)
class ApprovalGrant:
    """A granted approval, valid for exactly one action until ``expires_at``."""

    request: ApprovalRequest
    approver: str
    expires_at: float
    clock: Any = field(default=time.time, repr=False, compare=False)
    used_by: list[GovContext] = field(default_factory=list, repr=False, compare=False)
    """The contexts the grant was found to cover (the grant is recorded only once it covered one)."""
    previous: ApprovalGrant | None = field(default=None, repr=False, compare=False)
    """The grants given earlier for the same action under other rules (each asked separately)."""
    spend: Any = field(default=None, repr=False, compare=False)
    """For a grant that may be used once (a 2026-07-28 elicited approval): an async callable
    recording the use by a context, called at the gate once every binding was checked."""
    confirmed: list[GovContext] = field(default_factory=list, repr=False, compare=False)
    """The contexts the gate confirmed the grant for, right before the effect (and spent it for)."""

    def covers(self, ctx: GovContext, decision: Decision) -> bool:
        """True when ``ctx`` is exactly the approved action, ``decision`` names the rule the
        approver was asked about (or one an earlier grant of the same action was asked about)
        under the same policy version, and that grant has not expired."""
        return self.covering(ctx, decision) is not None

    def covering(self, ctx: GovContext, decision: Decision) -> ApprovalGrant | None:
        """The grant of this chain that approves ``decision`` for ``ctx``, or ``None``."""
        grant: ApprovalGrant | None = self
        while grant is not None:
            if decision.rule == grant.request.rule:
                if (
                    action_key(ctx) == grant.request.action
                    and decision.policy_version == grant.request.policy_version
                    and grant.clock() < grant.expires_at
                ):
                    grant.used_by.append(ctx)
                    return grant
                return None
            grant = grant.previous
        return None

    def asked_about(self, rule: str) -> bool:
        """Whether an approver of this chain was asked about ``rule``."""
        grant: ApprovalGrant | None = self
        while grant is not None:
            if grant.request.rule == rule:
                return True
            grant = grant.previous
        return False
