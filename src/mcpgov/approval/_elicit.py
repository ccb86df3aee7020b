"""Approval by the MCP client's user, through elicitation (the SDK adapter for approvals).

Legacy sessions ask with a server-to-client ``elicitation/create`` request while the call
waits. 2026-07-28 requests cannot wait for the client: the call is answered with an
``input_required`` result carrying the elicitation, the SDK client asks its user and retries,
and the retry carries the answer. The pending request is kept in a :class:`StateStore` and
used once: spent at the gate, once every binding of the grant was checked. The SDK seals
``requestState`` and binds it to the method and arguments.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcpgov._context import GovContext
from mcpgov._decision import Decision
from mcpgov._errors import ConfigurationError, Denied
from mcpgov._state import InMemoryStateStore, StateStore, StateStoreError
from mcpgov._validate import is_positive_number
from mcpgov.approval._model import (
    ActionKey,
    ApprovalAnswer,
    ApprovalGrant,
    ApprovalRequest,
    _other_owner,
    acting_for_ids,
    action_key,
)

__all__ = ["ElicitationApprover"]

logger = logging.getLogger("mcpgov.approval")

INPUT_KEY = "mcpgov.approval"
STATE_PREFIX = "mcpgov-approval:"
_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approve": {"type": "boolean", "title": "Approve this action"}},
    "required": ["approve"],
}


_ACTION_PARTS = (
    "method",
    "kind",
    "target",
    "args_hash",
    "issuer",
    "subject",
    "tenant",
    "task_id",
    "task_owner",
    "acting_for",
)
"""The parts of a stored :data:`~mcpgov.approval.ActionKey`, in order (a pending approval stored in
another shape, by an earlier version, approves nothing)."""


def _same_request(record: dict[str, Any], ctx: GovContext) -> bool:
    """Whether the retry ``ctx`` is the request (and caller) the pending approval was asked for.

    What the chain does not know yet at this point (tenant or task set by later stages) is left
    to the authorisers' exact check of the grant."""
    action = record.get("action")
    if not isinstance(action, list) or len(action) != len(_ACTION_PARTS):
        return False
    method, kind, target, args_hash, issuer, subject, tenant, task_id, owner, acting_for = action
    key = action_key(ctx)
    if key[:6] != (method, kind, target, args_hash, issuer, subject) or key[9] != acting_for:
        return False
    if ctx.tenant is not None and ctx.tenant != tenant:
        return False
    return ctx.task_id is None or key[7:9] == (task_id, owner)


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _pending_record(raw: str) -> dict[str, Any] | None:
    """The pending approval stored as ``raw``, or ``None`` when it is not one (garbled, another
    shape, wrong types): what cannot be read approves nothing."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    action = record.get("action")
    expires_at = record.get("expires_at")
    if (
        not isinstance(action, list)
        or len(action) != len(_ACTION_PARTS)
        or not isinstance(action[0], str)
        or not all(_optional_text(part) for part in action)
        or not isinstance(record.get("rule"), str)
        or not isinstance(record.get("reason"), str)
        or not all(
            _optional_text(record.get(name))
            for name in ("principal", "tenant", "task_id", "args_hash", "policy_version")
        )
        or (record.get("args_hash"), record.get("tenant"), record.get("task_id")) != (action[3], action[6], action[7])
        or isinstance(expires_at, bool)
        or not isinstance(expires_at, (int, float))
        or not math.isfinite(expires_at)
        or not _earlier_grants(record.get("granted", []))
    ):
        return None
    try:
        acting_for_ids(action[9])
    except ValueError:
        return None
    return record


_MOST_RULES = 64
"""The most approvals of earlier rounds one pending approval carries."""


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _earlier_grants(granted: Any) -> bool:
    """Whether ``granted`` is a list of approvals given in earlier rounds, each well formed."""
    return (
        isinstance(granted, list)
        and len(granted) <= _MOST_RULES
        and all(
            isinstance(entry, dict)
            and all(isinstance(entry.get(name), str) for name in ("id", "rule", "reason", "approver"))
            and bool(entry["id"])
            and bool(entry["approver"])
            and _optional_text(entry.get("policy_version"))
            and _finite(entry.get("expires_at"))
            and _finite(entry.get("request_expires_at"))
            for entry in granted
        )
    )


def _approved(content: Any, action: Any) -> bool:
    return action == "accept" and isinstance(content, dict) and content.get("approve") is True


class ElicitationApprover:
    """Asks the MCP client's user to approve, through elicitation (server side only).

    The approver recorded is ``client-user:<principal>``: elicitation shows that the
    client's user consented, on the principal's session. A client without the elicitation
    capability cannot approve (the request is refused).

    Args:
        store: where 2026-07-28 pending approvals wait for the client's retry (in memory by
            default; a shared store when several replicas serve one client).
        ttl: seconds a pending 2026-07-28 approval stays answerable.
    """

    def __init__(self, *, store: StateStore | None = None, ttl: float = 300.0) -> None:
        if not is_positive_number(ttl):
            raise ConfigurationError("ElicitationApprover ttl must be positive")
        self._store: StateStore = store if store is not None else InMemoryStateStore()
        self._ttl = float(ttl)

    def __repr__(self) -> str:
        return "ElicitationApprover()"

    @staticmethod
    def approver_for(request: ApprovalRequest) -> str:
        """The approver identity recorded for an answer by the client's user."""
        return f"client-user:{request.principal or 'unidentified'}"

    @staticmethod
    def is_modern(ctx: GovContext) -> bool:
        """True for 2026-07-28 requests (answered with ``input_required``)."""
        return ctx.side == "server" and ctx.protocol_version in MODERN_PROTOCOL_VERSIONS

    async def __call__(self, request: ApprovalRequest, ctx: GovContext) -> ApprovalAnswer | None:
        """Legacy sessions: ask now and wait for the user's answer."""
        transport = ctx.transport
        if transport is None or transport.elicit is None:
            return None
        action, content = await transport.elicit(request.describe(), _SCHEMA)
        return ApprovalAnswer(request.id, _approved(content, action), self.approver_for(request))

    async def input_required(
        self, request: ApprovalRequest, ctx: GovContext, *, granted: ApprovalGrant | None = None
    ) -> dict[str, Any] | None:
        """2026-07-28: keep ``request`` pending and return the ``input_required`` result asking for it.

        ``granted``: the approvals already given for the same action under other rules (in
        earlier rounds of the same call). They are kept with the pending request, and stand only
        together with its answer: each rule is asked about in a prompt of its own, and one
        answer never approves two rules.
        """
        if ctx.transport is None or not ctx.transport.client_can_elicit:
            return None
        earlier: list[dict[str, Any]] = []
        while granted is not None:
            earlier.insert(
                0,
                {
                    "id": granted.request.id,
                    "rule": granted.request.rule,
                    "reason": granted.request.reason,
                    "policy_version": granted.request.policy_version,
                    "approver": granted.approver,
                    "expires_at": granted.expires_at,
                    "request_expires_at": granted.request.expires_at,
                },
            )
            granted = granted.previous
        record = {
            "action": list(request.action),
            "rule": request.rule,
            "reason": request.reason,
            "principal": request.principal,
            "tenant": request.tenant,
            "task_id": request.task_id,
            "args_hash": request.args_hash,
            "expires_at": request.expires_at,
            "policy_version": request.policy_version,
            "granted": earlier,
        }
        await self._store.put(STATE_PREFIX + request.id, json.dumps(record), self._ttl)
        return {
            "resultType": "input_required",
            "inputRequests": {
                INPUT_KEY: {
                    "method": "elicitation/create",
                    "params": {"mode": "form", "message": request.describe(), "requestedSchema": _SCHEMA},
                }
            },
            "requestState": STATE_PREFIX + request.id,
        }

    async def resume(self, ctx: GovContext) -> tuple[ApprovalRequest, ApprovalAnswer] | None:
        """2026-07-28: the pending request and the user's answer, when ``ctx`` is the retry
        (see :meth:`resumed`, which also gives the approvals of earlier rounds)."""
        resumed = await self.resumed(ctx)
        return None if resumed is None else resumed[:2]

    async def resumed(
        self, ctx: GovContext
    ) -> tuple[ApprovalRequest, ApprovalAnswer, list[tuple[ApprovalRequest, str, float]]] | None:
        """2026-07-28: the pending request, the user's answer and the approvals given for the
        same action under other rules in earlier rounds (request, approver, grant expiry; oldest
        first), when ``ctx`` is the retry.

        Nothing is spent here: the grant made of the answer is spent at the gate (:meth:`spend`),
        once the authorisers and the final checks found it covering the caller, so a
        presentation refused for any binding (caller, tenant, task, arguments, policy version,
        expiry) leaves the approval to its rightful caller.

        Raises:
            Denied: the retry names an approval that is unknown, expired or already used, or
                one given for another caller or request.
        """
        transport = ctx.transport
        state = transport.request_state if transport is not None else None
        if not isinstance(state, str) or not state.startswith(STATE_PREFIX):
            return None
        request_id = state[len(STATE_PREFIX) :]
        refused = Decision.deny(
            "mcpgov:approval", "the approval request is unknown, expired or used", "approval_replayed"
        )
        try:
            raw = await self._store.get(STATE_PREFIX + request_id)
        except StateStoreError as exc:
            denied = Denied(refused, "the approval store failed")
            denied.context = ctx
            raise denied from exc
        if raw is None:
            denied = Denied(refused)
            denied.context = ctx
            raise denied
        record = _pending_record(raw)
        if record is None:
            denied = Denied(refused, "the pending approval in the store is not readable")
            denied.context = ctx
            raise denied
        if not _same_request(record, ctx):
            # Nothing is spent here: another caller's replay cannot use the approval up.
            other = Denied(
                Decision.deny(
                    "mcpgov:approval", "the approval was given for another caller or request", "approval_mismatch"
                )
            )
            other.context = ctx
            raise other
        try:
            used = await self._store.get(f"{STATE_PREFIX}used:{request_id}")
        except StateStoreError as exc:
            denied = Denied(refused, "the approval store failed")
            denied.context = ctx
            raise denied from exc
        if used is not None:
            denied = Denied(refused)
            denied.context = ctx
            raise denied
        action: ActionKey = tuple(record["action"])
        request = ApprovalRequest(
            id=request_id,
            action=action,
            method=action[0],
            kind=action[1],
            target=action[2],
            args_hash=record["args_hash"],
            principal=record["principal"],
            tenant=record["tenant"],
            task_id=record["task_id"],
            purpose=None,
            rule=record["rule"],
            reason=record["reason"],
            requested_at=0.0,
            expires_at=float(record["expires_at"]),
            policy_version=record.get("policy_version"),
            task_owner=_other_owner(action),
            acting_for=acting_for_ids(action[9]),
        )
        earlier = [
            (
                replace(
                    request,
                    id=entry["id"],
                    rule=entry["rule"],
                    reason=entry["reason"],
                    policy_version=entry.get("policy_version"),
                    expires_at=float(entry["request_expires_at"]),
                ),
                str(entry["approver"]),
                float(entry["expires_at"]),
            )
            for entry in record.get("granted", [])
        ]
        responses = transport.input_responses if transport is not None else None
        response = responses.get(INPUT_KEY) if responses is not None else None
        approved = isinstance(response, Mapping) and _approved(response.get("content"), response.get("action"))
        return request, ApprovalAnswer(request_id, approved, self.approver_for(request)), earlier

    async def spend(self, request_id: str, ctx: GovContext) -> None:
        """Record the single use of the pending approval ``request_id`` by ``ctx``: called at the
        gate, once every binding of the grant was checked against the caller, right before the
        effect.

        Raises:
            Denied: the approval was used already, or the store failed (nothing runs).
        """
        refused = Decision.deny(
            "mcpgov:approval", "the approval request is unknown, expired or used", "approval_replayed"
        )
        try:
            first_use = await self._store.add(f"{STATE_PREFIX}used:{request_id}", "1", self._ttl)
        except StateStoreError as exc:
            denied = Denied(refused, "the approval store failed")
            denied.context = ctx
            raise denied from exc
        if not first_use:
            denied = Denied(refused)
            denied.context = ctx
            raise denied
        try:
            await self._store.delete(STATE_PREFIX + request_id)
        except StateStoreError:
            # The single-use mark is recorded: the approval cannot be used again, so the cleanup
            # failing neither loses this use nor allows another (the entry expires on its own).
            logger.warning("the approval store could not delete a used approval; it expires on its own")
