"""Task history: what a task already did, kept in a :class:`~mcpgov.StateStore`.

Only requests that were allowed and ran are recorded (on the way back from the SDK call),
never discovery evaluations or refused requests. Keys are namespaced by tenant, the task's
owner and task (see :func:`~mcpgov._context.task_owner`): one tenant's task can never read or
write another tenant's history, and a principal that names another principal's task id has a
task of its own; only a delegate acting in the owner's task (its credential was derived from the
owner's) shares the owner's history.

Per task, the store holds: a tool-call counter, the previous target, one flag per target
used and one flag per label touched. Every entry expires ``ttl`` seconds after its last write.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from mcpgov._context import GovContext, task_owner
from mcpgov._errors import ConfigurationError
from mcpgov._state import StateStore
from mcpgov._uris import authority_folded, path_folded

__all__ = ["HistoryNeeds", "TaskHistory", "TaskHistoryStore", "folded_target", "target_key"]

TARGET_PREFIXES = ("tool:", "resource:", "prompt:")


def target_key(kind: str | None, target: str | None) -> str:
    """The name of a target in task history: ``tool:name``, ``resource:uri``, ``prompt:name``."""
    return f"{kind}:{target}"


def folded_target(target: str) -> str:
    """A history target as a server reading only the host and path of a resource URI reads it
    (``resource:vault://PROD//key/?v=1`` as ``resource:vault://prod/key``); other targets as they are."""
    if target.startswith("resource:"):
        return "resource:" + path_folded(authority_folded(target.removeprefix("resource:")))
    return target


def parse_target(spec: str) -> str:
    """A history target as written in a policy (a bare name is a tool)."""
    return spec if spec.startswith(TARGET_PREFIXES) else "tool:" + spec


@dataclass(frozen=True, slots=True)
class HistoryNeeds:
    """What a decision needs to know about the task's history."""

    labels: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()
    count: bool = False
    last: bool = False

    def __or__(self, other: HistoryNeeds) -> HistoryNeeds:
        return HistoryNeeds(
            self.labels | other.labels, self.targets | other.targets, self.count or other.count, self.last or other.last
        )

    def __bool__(self) -> bool:
        return bool(self.labels or self.targets or self.count or self.last)


@dataclass(frozen=True, slots=True)
class TaskHistory:
    """A snapshot of a task's history, limited to what was asked for.

    Attributes:
        calls: tool calls the task has run.
        labels: labels of targets the task touched (of those asked for).
        called: targets the task used (of those asked for).
        last: the previous target of the task, when asked for.
        called_folded: of the asked-for targets' :func:`folded_target` readings, those a target
            the task used reads as (a resource URI spelt another way).
    """

    calls: int = 0
    labels: frozenset[str] = frozenset()
    called: frozenset[str] = frozenset()
    last: str | None = None
    called_folded: frozenset[str] = frozenset()


class TaskHistoryStore:
    """Reads and records task history in a :class:`~mcpgov.StateStore`.

    Store errors propagate (:class:`~mcpgov.StateStoreError`): callers fail closed.

    Args:
        store: the state store.
        ttl: seconds a task's history is kept after its last request.
    """

    def __init__(self, store: StateStore, *, ttl: float = 86_400.0) -> None:
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not ttl > 0:
            raise ConfigurationError(f"history ttl must be a positive number of seconds, got {ttl!r}")
        self.store = store
        self.ttl = float(ttl)

    @staticmethod
    def _prefix(ctx: GovContext) -> str | None:
        if ctx.task_id is None:
            return None
        # The task's owner is part of the key: a principal naming another's task id (in a
        # credential it obtained for itself) has a task of its own, while a delegate acting in
        # the owner's task (its credential names the owner) shares the owner's history.
        issuer, subject = task_owner(ctx) or ("", "")
        digest = _digest40(json.dumps([ctx.tenant or "", issuer, subject, ctx.task_id]))
        return f"mcpgov:policy:task:{digest}:"

    @staticmethod
    def _name(value: str) -> str:
        return _digest40(value)

    async def reserve_call(self, ctx: GovContext) -> int:
        """Count ``ctx``'s tool call in its task's calls before it is decided (atomically: two
        requests of a task, on one replica or two sharing the store, never both see the same
        count) and return how many calls of the task were counted before it. Call
        :meth:`release_call` if it does not run after all."""
        prefix = self._prefix(ctx)
        if prefix is None:
            return 0
        return max(0, await self.store.incr(prefix + "count", self.ttl) - 1)

    async def release_call(self, ctx: GovContext) -> None:
        """Take back a call :meth:`reserve_call` counted that did not run (refused, or failed)."""
        prefix = self._prefix(ctx)
        if prefix is not None:
            await self.store.incr(prefix + "count", self.ttl, -1)

    async def snapshot(self, ctx: GovContext, needs: HistoryNeeds, *, calls: int | None = None) -> TaskHistory | None:
        """The part of the task's history that ``needs`` names; ``None`` when the request has no task.

        ``calls``: the task's calls as :meth:`reserve_call` counted them for this request (by
        default, the tool calls counted so far: those that ran and those running).
        """
        prefix = self._prefix(ctx)
        if prefix is None:
            return None
        labels = sorted(needs.labels)
        targets = sorted(needs.targets)
        folded = sorted({folded_target(t) for t in targets if t.startswith("resource:")})
        keys = [prefix + "count", prefix + "last"]
        keys += [prefix + "label:" + self._name(label) for label in labels]
        keys += [prefix + "called:" + self._name(t) for t in targets]
        keys += [prefix + "folded:" + self._name(t) for t in folded]
        values = await self.store.get_many(keys)
        count_raw, last = values[0], values[1]
        if calls is None:
            try:
                calls = max(0, int(count_raw)) if count_raw is not None else 0
            except ValueError:
                calls = 2**62  # a corrupt counter counts as "very many": limits deny
        label_values = values[2 : 2 + len(labels)]
        target_values = values[2 + len(labels) : 2 + len(labels) + len(targets)]
        folded_values = values[2 + len(labels) + len(targets) :]
        return TaskHistory(
            calls=calls,
            labels=frozenset(label for label, v in zip(labels, label_values, strict=True) if v is not None),
            called=frozenset(t for t, v in zip(targets, target_values, strict=True) if v is not None),
            last=last,
            called_folded=frozenset(t for t, v in zip(folded, folded_values, strict=True) if v is not None),
        )

    async def record(self, ctx: GovContext, labels: Iterable[str], *, counted: bool = False) -> None:
        """Record that ``ctx``'s request ran (nothing when the request has no task).

        ``counted``: the tool call was already counted in the task's calls (:meth:`reserve_call`);
        otherwise a tool call is counted now.
        """
        prefix = self._prefix(ctx)
        if prefix is None:
            return
        target = target_key(ctx.kind, ctx.target) if ctx.kind is not None else f"method:{ctx.method}"
        store, ttl = self.store, self.ttl
        items = [(prefix + "label:" + self._name(label), "1") for label in labels]
        items.append((prefix + "called:" + self._name(target), "1"))
        if ctx.kind == "resource":
            items.append((prefix + "folded:" + self._name(folded_target(target)), "1"))
        items.append((prefix + "last", target))
        put_many = getattr(store, "put_many", None)
        if put_many is not None:  # one call (one round trip) where the store offers it
            await put_many(items, ttl)
        else:
            for key, value in items:
                await store.put(key, value, ttl)
        if ctx.kind == "tool" and not counted:
            await store.incr(prefix + "count", ttl)


@functools.lru_cache(maxsize=4096)
def _digest40(value: str) -> str:
    """The first 40 hex digits of ``value``'s SHA-256 (store key parts; the same task, label and
    target names recur on every call, so recent ones are kept)."""
    return hashlib.sha256(value.encode()).hexdigest()[:40]
