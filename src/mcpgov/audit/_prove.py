"""``prove``: from an audit log, prove a session, task, principal or time window least-privilege,
tenant-bound and time-limited, with the evidence.

The log is verified first (hash chain, byte-exact lines and, with a key, signed checkpoints);
then every call in scope is described (who, what, the deciding rule, the credential and its
delegation chain, who approved) and three verdicts are drawn:

* **least-privilege**: no credential grants tools its calls never used, and no credential
  minted for the scope went unused; a call whose credential's grant is not in the log cannot be
  judged and fails the verdict;
* **tenant-bound**: every call, credential, approval and tenant-naming target is in one tenant;
* **time-limited**: every call that ran carried a credential, every credential's lifetime is
  within the maximum, and none was used after it expired or was revoked.

Unknown is never "yes": a value the log does not hold fails the verdict it is needed for.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from mcpgov._errors import ConfigurationError
from mcpgov._methods import EXECUTE_METHODS
from mcpgov.audit._jsonl import ChainReport, verify_chain
from mcpgov.audit._printable import printable_word
from mcpgov.audit._query import printable
from mcpgov.credentials._claims import TASK_BINDING

__all__ = ["DEFAULT_MAX_TTL", "Call", "CredentialGrant", "Proof", "ProofScope", "Verdict", "prove"]

DEFAULT_MAX_TTL = 3600.0
"""The longest credential lifetime (seconds) ``prove`` accepts unless told otherwise."""

_TARGET_TENANT = re.compile(r"(?:^|[/:])tenants?(?::/*|/)(?P<tenant>[A-Za-z0-9_.-]+)")
_w = printable_word
_REQUEST_FIELDS = ("side", "session_id", "request_id", "method", "target", "principal")


@dataclasses.dataclass(frozen=True)
class ProofScope:
    """What to prove: every given criterion must match (none given: the whole log).

    Attributes:
        session: the session id.
        task: the task id. Principals choose their task ids, so one id may name the tasks of
            several owners: such a scope proves nothing until ``task_owner`` names one.
        task_owner: with ``task``, the owner of the task (``issuer#subject``, or the subject
            alone): the principal its first credential was minted for.
        principal: the caller (``issuer#subject``, or the subject alone).
        since: the first instant of the window (inclusive).
        until: the last instant of the window (inclusive).
    """

    session: str | None = None
    task: str | None = None
    principal: str | None = None
    task_owner: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def describe(self) -> str:
        """The scope in words."""
        values = ((field.name, getattr(self, field.name)) for field in dataclasses.fields(self))
        parts = [
            f"{name} {value.isoformat() if isinstance(value, datetime) else value}"
            for name, value in values
            if value is not None
        ]
        return ", ".join(parts) or "the whole log"


@dataclasses.dataclass
class CredentialGrant:
    """A credential as the log records it: its grant, its uses, and whether it was revoked."""

    id: str
    minted: bool = False
    audience: str | None = None
    tools: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    ttl: float | None = None
    expires_at: float | None = None
    tenant: str | None = None
    principal: str | None = None
    task: str | None = None
    parent: str | None = None
    minted_at: str | None = None
    revoked_at: str | None = None
    uses: list[str] = dataclasses.field(default_factory=list)
    """The targets of the allowed calls that used it."""
    unreadable: tuple[str, ...] = ()
    """The parts of its grant the log does not record in a form that can be judged (``tools``)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON data."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Call:
    """One governed call in scope, with who, what, the decision, credential and approvals."""

    where: str
    time: str
    side: str
    method: str
    target: str | None
    principal: str | None
    tenant: str | None
    actors: tuple[str, ...]
    task: str | None
    purpose: str | None
    args_hash: str | None
    effect: str | None
    rule: str | None
    reason: str | None
    credential: str | None
    delegation: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    outcome: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON data."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One conclusion and the evidence for it.

    Attributes:
        name: ``least-privilege``, ``tenant-bound`` or ``time-limited``.
        holds: whether it was proven.
        evidence: the findings (what fails it, or what it rests on).
    """

    name: str
    holds: bool
    evidence: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Proof:
    """The result of :func:`prove`.

    Attributes:
        scope: what was proven.
        chain: the verification report of the log.
        calls: the calls in scope, in log order.
        credentials: the credentials the calls used or the scope minted, by id.
        verdicts: least-privilege, tenant-bound and time-limited.
        max_ttl: the longest credential lifetime accepted.
        authenticated: whether every line was checked against something its writer alone holds
            (signed checkpoints covering it, with a public key, or a head hash kept elsewhere).
            Without that, anyone with write access could have rewritten the log (or, with
            ``live``, its unsealed tail) into another intact chain, and nothing is proven.
    """

    scope: ProofScope
    chain: ChainReport
    calls: tuple[Call, ...]
    credentials: dict[str, CredentialGrant]
    verdicts: tuple[Verdict, ...]
    max_ttl: float
    authenticated: bool = False

    @property
    def proven(self) -> bool:
        """The chain is intact and authenticated, and every verdict holds."""
        return self.chain.ok and self.authenticated and all(v.holds for v in self.verdicts)

    def as_dict(self) -> dict[str, Any]:
        """JSON data (what ``--format json`` prints)."""
        return {
            "scope": self.scope.describe(),
            "proven": self.proven,
            "chain": {
                "ok": self.chain.ok,
                "authenticated": self.authenticated,
                "files": list(self.chain.files),
                "lines": self.chain.lines,
                "events": self.chain.events,
                "checkpoints": self.chain.checkpoints,
                "sealed": self.chain.sealed,
                "head": self.chain.head,
                "problems": [str(p) for p in self.chain.problems],
            },
            "verdicts": [{"name": v.name, "holds": v.holds, "evidence": list(v.evidence)} for v in self.verdicts],
            "calls": [c.as_dict() for c in self.calls],
            "credentials": {k: v.as_dict() for k, v in self.credentials.items()},
            "max_ttl": self.max_ttl,
        }


def _principal_matches(value: Any, wanted: str) -> bool:
    return isinstance(value, str) and (value == wanted or value.rsplit("#", 1)[-1] == wanted)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _epoch(value: Any) -> float | None:
    moment = _time(value)
    return moment.timestamp() if moment is not None else None


def _text(value: Any) -> str | None:
    """A recorded value as text (a hostile log may hold any JSON type where text belongs)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=True)[:200]


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _Collector:
    """Keeps the events in scope, and every credential and approval event (they name the scope
    through the credential id or the request)."""

    def __init__(self, scope: ProofScope) -> None:
        self.scope = scope
        self.selected: list[tuple[str, dict[str, Any]]] = []
        self.credential_events: list[dict[str, Any]] = []
        self._holders: dict[str, str] = {}  # credential id -> the principal it was minted for
        self._since = scope.since.timestamp() if scope.since else None
        self._until = scope.until.timestamp() if scope.until else None
        self.task_owners: set[str] = set()  # the owners of the scope's task id the log records
        self.unowned = 0  # events of the scope's task id that record no owner

    def __call__(self, file: str, line: int, seq: int, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if isinstance(kind, str) and kind.startswith("credential."):
            self.credential_events.append(event)
            jti, holder = event.get("credential_id"), event.get("principal")
            if kind == "credential.minted" and isinstance(jti, str) and isinstance(holder, str):
                self._holders.setdefault(jti, holder)
        if self._matches(event):
            self.selected.append((f"{file}:{line}", event))

    def _matches(self, event: dict[str, Any]) -> bool:
        scope = self.scope
        if scope.session is not None and event.get("session_id") != scope.session:
            return False
        owner: Any = None
        if scope.task is not None:
            if event.get("task_id") != scope.task:
                return False
            owner = event.get("task_owner")
            if event.get("type") == "credential.revoked":
                owner = None  # a revocation names its scope's owner itself (in its attributes)
            elif (
                isinstance(owner, str)
                and scope.task_owner is not None
                and not _principal_matches(owner, scope.task_owner)
            ):
                return False
        if scope.principal is not None:
            # A call made with a credential alone records no principal: its caller is the holder
            # the credential was minted for (minted before it was used, so known by now).
            caller = event.get("principal")
            credential = event.get("credential_id")
            if caller is None and isinstance(credential, str):
                caller = self._holders.get(credential)
            if not _principal_matches(caller, scope.principal):
                return False
        if self._since is not None or self._until is not None:
            moment = _epoch(event.get("time"))
            if moment is None:
                return False
            if self._since is not None and moment < self._since:
                return False
            if self._until is not None and moment > self._until:
                return False
        if scope.task is not None and event.get("type") != "credential.revoked":
            if isinstance(owner, str):
                self.task_owners.add(owner)
            else:  # whose task it was cannot be told: it is shown, never left out, and fails the proof
                self.unowned += 1
        return True


def prove(
    paths: Sequence[str | os.PathLike[str]],
    scope: ProofScope | None = None,
    *,
    public_key: Any = None,
    head: str | None = None,
    partial: bool = False,
    live: bool = False,
    max_ttl: float = DEFAULT_MAX_TTL,
) -> Proof:
    """Verify an audit log and prove the calls in ``scope`` least-privilege, tenant-bound and
    time-limited.

    Args:
        paths: the log's files (any order).
        scope: the session, task, principal or time window (default: the whole log).
        public_key: the checkpoint key (see :func:`~mcpgov.audit.verify_chain`).
        head: the expected hash of the log's last line, kept where its writer cannot rewrite it.
            Without ``public_key`` or ``head`` the log is not authenticated and nothing is proven.
        partial: accept a log whose older files were archived.
        live: accept a log still being written.
        max_ttl: the longest credential lifetime, in seconds, the policy allows.

    Returns:
        The proof: ``proof.proven`` when the chain is intact and all three verdicts hold.

    Raises:
        OSError: a file cannot be read.
        ConfigurationError: the key cannot be loaded, or ``scope`` names a task owner without a task.
    """
    scope = scope or ProofScope()
    if scope.task_owner is not None and scope.task is None:
        raise ConfigurationError("a proof scope's task_owner names the owner of its task: give the task too")
    collector = _Collector(scope)
    chain = verify_chain(paths, partial=partial, head=head, public_key=public_key, live=live, visit=collector)
    credentials = _credentials(collector.credential_events)
    calls = _calls(collector.selected, credentials)
    used = {c.credential for c in calls if c.credential}
    in_scope_minted = {
        e.get("credential_id")
        for _, e in collector.selected
        if e.get("type") == "credential.minted" and isinstance(e.get("credential_id"), str)
    }
    relevant = {k: v for k, v in credentials.items() if k in used or k in in_scope_minted}
    for jti in used - credentials.keys():
        relevant[jti] = CredentialGrant(id=jti)
    approvals = [e for _, e in collector.selected if str(e.get("type", "")).startswith("approval.")]
    verdicts: tuple[Verdict, ...] = (
        _least_privilege(calls, relevant, in_scope_minted),
        _tenant_bound(calls, relevant, approvals),
        _time_limited(calls, relevant, max_ttl),
    )
    if not calls and not relevant:
        # A scope the log holds nothing of (a mistyped id, events written elsewhere) proves nothing.
        nothing = (f"nothing in scope: no call or credential in the log matches {scope.describe()}",)
        verdicts = tuple(Verdict(v.name, False, nothing) for v in verdicts)
    mixed = _mixed_tasks(scope, collector)
    if mixed:
        verdicts = tuple(Verdict(v.name, False, (*mixed, *v.evidence)) for v in verdicts)
    # With a key, every line must be under a verified checkpoint: lines after the last one (a log
    # still being written, --live) could have been appended or rewritten by anyone.
    authenticated = head is not None or (public_key is not None and chain.unsealed == 0 and chain.unclaimed == 0)
    return Proof(scope, chain, tuple(calls), relevant, verdicts, max_ttl, authenticated)


def _mixed_tasks(scope: ProofScope, collector: _Collector) -> tuple[str, ...]:
    """Why a task scope cannot be proven as one task: its id names the tasks of several owners
    (and no owner was given), or events of the id record no owner."""
    if scope.task is None:
        return ()
    found: list[str] = []
    if len(collector.task_owners) > 1:
        owners = ", ".join(_w(o) for o in sorted(collector.task_owners))
        found.append(
            f"task {_w(scope.task)} names the tasks of {len(collector.task_owners)} owners ({owners}): "
            "name the one to prove by its issuer and subject (--task-owner)"
        )
    if collector.unowned:
        found.append(
            f"{collector.unowned} event(s) of task {_w(scope.task)} record no task owner: whose they are is unknown"
        )
    return tuple(found)


def _credentials(events: list[dict[str, Any]]) -> dict[str, CredentialGrant]:
    grants: dict[str, CredentialGrant] = {}
    holders: dict[str, tuple[str, ...]] = {}  # the actors each credential's holder acted for
    revocations: list[dict[str, Any]] = []
    for event in events:
        jti = event.get("credential_id")
        kind = event.get("type")
        attributes = _attributes(event)
        if kind == "credential.revoked":
            revocations.append(event)
            continue
        if kind != "credential.minted" or not isinstance(jti, str):
            continue
        grant = grants.setdefault(jti, CredentialGrant(id=jti))
        grant.minted = True
        grant.audience = attributes.get("audience") if isinstance(attributes.get("audience"), str) else None
        tools = attributes.get("tools")
        grant.tools = _texts(tools)
        # A grant whose tools are missing or not all names cannot be judged (never "grants none").
        grant.unreadable = () if isinstance(tools, list) and len(grant.tools) == len(tools) else ("tools",)
        grant.scopes = _texts(attributes.get("scopes"))
        grant.ttl = _number(attributes.get("ttl"))
        grant.expires_at = _number(attributes.get("exp"))
        grant.tenant = _text(event.get("tenant"))
        grant.principal = _text(event.get("principal"))
        grant.task = _text(event.get("task_id"))
        grant.parent = attributes.get("parent") if isinstance(attributes.get("parent"), str) else None
        grant.minted_at = _text(event.get("time"))
        holders[jti] = _texts(event.get("actors"))
    lineages = {jti: _lineage(grant, grants) for jti, grant in grants.items()} if revocations else {}
    for event in revocations:
        when = _text(event.get("time")) or "an unknown time"
        for grant in grants.values():
            if _revokes(event, grant, lineages[grant.id], holders) and (
                grant.revoked_at is None or _epoch(when) is None or _strictly_before(when, grant.revoked_at)
            ):
                grant.revoked_at = when
    return grants


def _lineage(grant: CredentialGrant, grants: dict[str, CredentialGrant]) -> tuple[list[CredentialGrant], bool]:
    """The credential and those it was derived from, nearest first, and whether the log holds
    them all (back to one minted from no other)."""
    line = [grant]
    while line[-1].parent is not None:
        parent = grants.get(line[-1].parent)
        if parent is None or parent in line or len(line) >= 32:
            return line, False
        line.append(parent)
    return line, True


def _revokes(
    event: dict[str, Any],
    grant: CredentialGrant,
    lineage: tuple[list[CredentialGrant], bool],
    holders: dict[str, tuple[str, ...]],
) -> bool:
    """Whether a ``credential.revoked`` event covers ``grant``, as the revocation list decides it:
    a credential's id revokes it and everything derived from it; a task (of its owner, or of the
    whole tenant) and a principal (whoever holds, owns, delegated or acted in it) revoke what was
    issued up to then. What the log cannot tell (an ancestor or holder it does not hold, a scope
    or time it cannot read) counts as covered: unknown is never "not revoked"."""
    attributes = _attributes(event)
    kind = attributes.get("scope")
    line, complete = lineage
    if kind in ("credential", None):
        named = {event.get("credential_id"), attributes.get("credential")}
        return not complete or any(g.id in named for g in line)
    # Task and principal revocations revoke what was issued up to the revocation (not after).
    if _strictly_before(event.get("time"), grant.minted_at):
        return False
    if kind in ("task", "tenant_task", "principal") and attributes.get("tenant") != grant.tenant:
        return False
    if kind == "tenant_task":
        return attributes.get("task") == grant.task
    if kind == "task":
        owner = line[-1].principal
        return attributes.get("task") == grant.task and (
            not complete or owner is None or attributes.get("principal") == owner
        )
    if kind == "principal":
        wanted = attributes.get("principal")
        parties = {g.principal for g in line}
        subjects = {actor for g in line for actor in holders.get(g.id, ())}
        return (
            not complete
            or None in parties
            or wanted in parties
            or (isinstance(wanted, str) and wanted.rsplit("#", 1)[-1] in subjects)
        )
    return True  # a revocation of a scope this proof does not know


def _attributes(event: dict[str, Any]) -> dict[str, Any]:
    value = event.get("attributes")
    return value if isinstance(value, dict) else {}


def _strictly_before(first: Any, second: Any) -> bool:
    """``first`` is known to be earlier than ``second`` (both times readable)."""
    a, b = _epoch(first), _epoch(second)
    return a is not None and b is not None and a < b


def _request_key(event: dict[str, Any]) -> tuple[Any, ...]:
    key = event.get("request_key")
    if isinstance(key, str):
        return ("key", key)
    return tuple(
        _text(event.get(name)) for name in ("side", "session_id", "request_id", "method", "target", "principal")
    )


def _calls(selected: list[tuple[str, dict[str, Any]]], credentials: dict[str, CredentialGrant]) -> list[Call]:
    calls: list[Call] = []
    open_calls: dict[tuple[Any, ...], Call] = {}
    pending: dict[tuple[Any, ...], list[str]] = {}
    for where, event in selected:
        kind = event.get("type")
        key = _request_key(event)
        if kind == "approval.granted" and isinstance(event.get("approver"), str):
            pending.setdefault(key, []).append(event["approver"])
            if key in open_calls:
                open_calls[key].approvers = (*open_calls[key].approvers, event["approver"])
            continue
        if kind == "decision" and _text(event.get("method")) in EXECUTE_METHODS:
            credential = event.get("credential_id") if isinstance(event.get("credential_id"), str) else None
            principal = _text(event.get("principal"))
            if principal is None and credential in credentials:
                principal = credentials[credential].principal  # the subject the credential was issued to
            call = Call(
                where=where,
                time=str(event.get("time", "")),
                side=str(event.get("side", "")),
                method=str(event.get("method", "")),
                target=_text(event.get("target")),
                principal=principal,
                tenant=_text(event.get("tenant")),
                actors=_texts(event.get("actors")),
                task=_text(event.get("task_id")),
                purpose=_text(event.get("purpose")),
                args_hash=_text(event.get("args_hash")),
                effect=_text(event.get("effect")),
                rule=_text(event.get("rule")),
                reason=_text(event.get("reason")),
                credential=credential,
                delegation=_delegation(credential, credentials),
                approvers=tuple(pending.pop(key, ())),
            )
            calls.append(call)
            open_calls[key] = call
        elif kind == "outcome" and key in open_calls:
            open_calls.pop(key).outcome = _text(event.get("outcome"))
    for call in calls:
        if call.effect == "allow" and call.credential in credentials and call.target:
            credentials[call.credential].uses.append(call.target)
    return calls


def _delegation(jti: str | None, credentials: dict[str, CredentialGrant]) -> tuple[str, ...]:
    chain: list[str] = []
    while jti is not None and jti not in chain and len(chain) < 32:
        chain.append(jti)
        grant = credentials.get(jti)
        jti = grant.parent if grant is not None else None
    return tuple(chain)


def _judged(calls: list[Call]) -> list[Call]:
    """The calls as the servers decided them, and the calls no server decision in the log accounts
    for as the client recorded them (a server that is not governed, or that logs elsewhere: what
    it checked cannot be told). A client's call is accounted for by a server's decision, whatever
    its effect, of the same method, target, arguments and task, each decision for one call."""
    server = [c for c in calls if c.side == "server"]
    decided: dict[tuple[Any, ...], int] = {}
    for call in server:
        key = (call.method, call.target, call.args_hash, call.task)
        decided[key] = decided.get(key, 0) + 1
    judged = list(server)
    for call in calls:
        if call.side == "server":
            continue
        key = (call.method, call.target, call.args_hash, call.task)
        if decided.get(key, 0) > 0:
            decided[key] -= 1
        else:
            judged.append(call)
    return judged


def _least_privilege(calls: list[Call], grants: dict[str, CredentialGrant], minted: set[Any]) -> Verdict:
    bad: list[str] = []
    fine: list[str] = []
    for jti, grant in sorted(grants.items()):
        if not grant.minted:
            bad.append(f"credential {_w(jti)} was used but its grant is not in the log: its breadth cannot be judged")
            continue
        if grant.unreadable:
            bad.append(f"credential {_w(jti)}'s grant does not record its tools as names: its breadth cannot be judged")
            continue
        if set(grant.tools) <= {TASK_BINDING}:
            # A task binding calls no tool: it carries the task to listings, reads and prompts.
            fine.append(f"credential {_w(jti)} binds the task and grants no tool")
            continue
        used = set(grant.uses)
        if not used:
            if jti in minted:
                bad.append(f"credential {_w(jti)} grants {sorted(grant.tools)} and the task never used it")
            continue
        wider = sorted(set(grant.tools) - used)
        if wider:
            bad.append(f"credential {_w(jti)} grants {wider} that its calls never used (used: {sorted(used)})")
        else:
            fine.append(f"credential {_w(jti)} grants exactly the tools its calls used: {sorted(used)}")
    ran = [c for c in _judged(calls) if c.effect == "allow"]
    if not ran and not grants:
        fine.append("no call ran and no credential was granted")
    return Verdict("least-privilege", not bad, tuple(bad or fine))


def _who(value: str | None, unknown: str = "unknown caller") -> str:
    return _w(value) if value else unknown


def _tenant_bound(calls: list[Call], grants: dict[str, CredentialGrant], approvals: list[dict[str, Any]]) -> Verdict:
    seen: dict[str, list[str]] = {}
    unknown: list[str] = []

    def note(tenant: Any, what: str) -> None:
        if isinstance(tenant, str) and tenant:
            seen.setdefault(tenant, []).append(what)
        else:
            unknown.append(what)

    for call in calls:
        if call.effect != "allow":
            continue
        what = f"{_w(call.method)} {_w(call.target or '')} by {_who(call.principal)}"
        note(call.tenant, f"call {what} ({call.where})")
        if call.target:
            m = _TARGET_TENANT.search(call.target)
            if m:
                note(m.group("tenant"), f"target {_w(call.target)} ({call.where})")
    for jti, grant in grants.items():
        if grant.minted:
            note(grant.tenant, f"credential {_w(jti)}")
    for event in approvals:
        note(_text(event.get("tenant")), f"approval by {_who(_text(event.get('approver')), 'unknown')}")
    evidence: list[str] = []
    if len(seen) > 1:
        for tenant, items in sorted(seen.items()):
            evidence.append(f"tenant {_w(tenant)}: {'; '.join(items[:5])}" + (" ..." if len(items) > 5 else ""))
    evidence.extend(f"no tenant recorded for {what}" for what in unknown)
    holds = len(seen) <= 1 and not unknown
    if holds:
        evidence = [f"every call, credential and approval is in tenant {next(iter(seen), '(none)')}"]
    return Verdict("tenant-bound", holds, tuple(evidence))


def _time_limited(calls: list[Call], grants: dict[str, CredentialGrant], max_ttl: float) -> Verdict:
    bad: list[str] = []
    for call in _judged(calls):
        if call.effect != "allow":
            continue
        where = f"{_w(call.method)} {_w(call.target or '')} at {_w(call.time)} ({call.where})"
        if call.credential is None:
            bad.append(f"{where} ran without a short-lived credential")
            continue
        grant = grants.get(call.credential)
        if grant is None or grant.expires_at is None:
            bad.append(f"{where} used credential {_w(call.credential)} whose expiry is not in the log")
            continue
        moment = _epoch(call.time)
        if moment is None:
            bad.append(f"{where} has no usable time")
            continue
        if moment > grant.expires_at:
            expired = datetime.fromtimestamp(grant.expires_at, timezone.utc).isoformat()
            bad.append(f"{where} used credential {_w(grant.id)} after it expired at {expired}")
        if grant.revoked_at is not None and not _strictly_before(call.time, grant.revoked_at):
            bad.append(f"{where} used credential {_w(grant.id)} after it was revoked at {_w(grant.revoked_at)}")
    for jti, grant in sorted(grants.items()):
        if grant.minted and (grant.ttl is None or grant.ttl > max_ttl):
            bad.append(f"credential {_w(jti)} lives {grant.ttl}s, longer than the {max_ttl:g}s allowed")
    fine = [f"every call carried a live credential of at most {max_ttl:g}s, none used after expiry or revocation"]
    return Verdict("time-limited", not bad, tuple(bad or fine))


# --- rendering -------------------------------------------------------------------------------------


_UNAUTHENTICATED = (
    "no public key (--public-key) or head (--head) given: anyone with write access to the log could have "
    "rewritten it into another intact chain"
)


def _unauthenticated(proof: Proof) -> str:
    if proof.chain.sealed is not None and proof.chain.unclaimed and not proof.chain.unsealed:
        return (
            f"{proof.chain.unclaimed} line(s) no signed checkpoint claims yet (a log still being written by "
            "several writers) could have been appended by anyone: prove once their writers' checkpoints cover them"
        )
    if proof.chain.sealed is not None and proof.chain.unsealed:
        return (
            f"{proof.chain.unsealed} line(s) after the last signed checkpoint (a log still being written) could "
            "have been appended or rewritten by anyone: prove once a checkpoint covers them, or give --head"
        )
    return _UNAUTHENTICATED


def render_text(proof: Proof) -> str:
    """The proof as text for a terminal (every recorded value escaped, and quoted when it holds a
    space or a quote, so no value reads as another field)."""
    p, w = printable, printable_word
    lines = [f"scope: {p(proof.scope.describe())}"]
    chain = proof.chain
    status = "intact" if chain.ok else "BROKEN"
    sealed = "" if chain.sealed is None else (", sealed by a signed closing checkpoint" if chain.sealed else "")
    lines.append(
        f"chain: {status}: {chain.lines} line(s), {chain.events} event(s), {chain.checkpoints} checkpoint(s){sealed}"
    )
    lines.extend(f"  {p(str(problem))}" for problem in chain.problems[:20])
    if not proof.authenticated:
        lines.append(f"chain: NOT AUTHENTICATED: {_unauthenticated(proof)}")
    lines.append(f"calls: {len(proof.calls)}")
    for call in proof.calls:
        lines.append(
            f"  {w(call.time)} {w(call.side)} {w(call.method)} {w(call.target or '-')} -> {w(call.effect or '?')}"
            f" rule={w(call.rule or '-')} ({p(call.where)})"
        )
        lines.append(
            f"    who: {w(call.principal or 'unknown caller')} tenant={w(call.tenant or '-')}"
            + (f" on behalf of {' <- '.join(map(w, call.actors))}" if call.actors else "")
        )
        lines.append(
            f"    what: task={w(call.task or '-')} purpose={w(call.purpose or '-')} args={w(call.args_hash or '-')}"
        )
        if call.credential:
            grant = proof.credentials.get(call.credential)
            detail = ""
            if grant is not None and grant.minted:
                detail = (
                    f" audience={w(grant.audience or '-')} tools={','.join(map(w, grant.tools))}"
                    f" scopes={','.join(map(w, grant.scopes)) or '-'} ttl={grant.ttl}s"
                )
            chain_text = " <- ".join(map(w, call.delegation))
            lines.append(f"    credential: {w(call.credential)}{detail} delegation={chain_text}")
        if call.approvers:
            lines.append(f"    approved by: {', '.join(map(w, call.approvers))}")
        if call.outcome:
            lines.append(f"    outcome: {w(call.outcome)}")
    for verdict in proof.verdicts:
        lines.append(f"{verdict.name}: {'PROVEN' if verdict.holds else 'FAILED'}")
        lines.extend(f"  - {p(item)}" for item in verdict.evidence)
    lines.append("PROVEN" if proof.proven else "NOT PROVEN")
    return "\n".join(lines)


def render_json(proof: Proof) -> str:
    """The proof as JSON (ASCII-only, so no raw control character reaches a terminal)."""
    return json.dumps(proof.as_dict(), indent=2, sort_keys=True, ensure_ascii=True)


_CSS = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%}"
    "td,th{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top;font-size:13px}"
    ".ok{color:#116611;font-weight:bold}.bad{color:#aa1111;font-weight:bold}code{font-size:12px}"
)


def render_html(proof: Proof) -> str:
    """The proof as one self-contained HTML page (no script, no external resource; every value escaped)."""

    def e(value: Any) -> str:
        return html.escape(printable("" if value is None else value), quote=True)

    def mark(ok: bool, yes: str = "PROVEN", no: str = "FAILED") -> str:
        return f'<span class="{"ok" if ok else "bad"}">{yes if ok else no}</span>'

    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>mcpgov proof: {e(proof.scope.describe())}</title><style>{_CSS}</style></head><body>",
        f"<h1>Proof for {e(proof.scope.describe())}: {mark(proof.proven, 'PROVEN', 'NOT PROVEN')}</h1>",
        f"<h2>Chain: {mark(proof.chain.ok, 'intact', 'BROKEN')}</h2>",
        f"<p>{proof.chain.lines} line(s), {proof.chain.events} event(s), {proof.chain.checkpoints} checkpoint(s) "
        f"in {len(proof.chain.files)} file(s); head <code>{e(proof.chain.head)}</code></p>",
    ]
    if not proof.authenticated:
        out.append(f"<p>{mark(False, no='NOT AUTHENTICATED')}: {e(_unauthenticated(proof))}</p>")
    if proof.chain.problems:
        out.append("<ul>" + "".join(f"<li>{e(str(p))}</li>" for p in proof.chain.problems[:50]) + "</ul>")
    out.append("<h2>Verdicts</h2><table><tr><th>verdict</th><th>result</th><th>evidence</th></tr>")
    for verdict in proof.verdicts:
        items = "".join(f"<li>{e(item)}</li>" for item in verdict.evidence)
        out.append(f"<tr><td>{e(verdict.name)}</td><td>{mark(verdict.holds)}</td><td><ul>{items}</ul></td></tr>")
    out.append("</table><h2>Calls</h2><table><tr>")
    headings = ("time", "who", "tenant", "what", "task / purpose", "decision", "credential", "approved by", "outcome")
    out.append("".join(f"<th>{h}</th>" for h in headings) + "</tr>")
    for call in proof.calls:
        grant = proof.credentials.get(call.credential or "")
        credential = e(call.credential or "none")
        if grant is not None and grant.minted:
            credential += (
                f"<br>audience {e(grant.audience)}<br>tools {e(', '.join(grant.tools))}<br>ttl {e(grant.ttl)}s"
                f"<br>chain {e(' <- '.join(call.delegation))}"
            )
        cells = (
            e(call.time),
            e(call.principal or "unknown caller") + (f"<br>for {e(' <- '.join(call.actors))}" if call.actors else ""),
            e(call.tenant),
            f"{e(call.method)} <code>{e(call.target)}</code><br><code>{e(call.args_hash)}</code>",
            f"{e(call.task)} / {e(call.purpose)}",
            f"{e(call.effect)} by <code>{e(call.rule)}</code>",
            credential,
            e(", ".join(call.approvers)),
            e(call.outcome),
        )
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table></body></html>")
    return "\n".join(out) + "\n"
