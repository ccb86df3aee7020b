"""``PolicyMiddleware``: the policy engine as an authoriser, for the server and the client side."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import anyio

from mcpgov._audit import AuditCallback, Auditor
from mcpgov._authorize import Authorizer, approved_decision
from mcpgov._chain import CallNext, ChainResult
from mcpgov._context import APPROVAL_GRANT, ExtensionKey, GovContext
from mcpgov._decision import Decision, Effect
from mcpgov._errors import ConfigurationError, McpGovError
from mcpgov._methods import LIST_METHODS
from mcpgov._state import InMemoryStateStore, StateStore, StateStoreError
from mcpgov._types import Clock
from mcpgov.policy._cedar import CedarPolicy
from mcpgov.policy._decorators import PolicyDecorators
from mcpgov.policy._engine import Explanation, PolicyEngine, combined_version
from mcpgov.policy._history import HistoryNeeds, TaskHistory, TaskHistoryStore
from mcpgov.policy._load import Policy, PolicyError, read_bytes
from mcpgov.policy._model import OBLIGATION_RATE_LIMIT
from mcpgov.policy._ratelimit import RateLimiter, RateLimitSpec
from mcpgov.policy._reload import PolicyReloader, load_file_content, load_policy
from mcpgov.policy._shadow import compare_shadow

__all__ = ["Engine", "PolicyMiddleware", "PolicySource"]


class _CallSlot:
    """A tool call of a task, counted in the task's calls before it is decided: ``calls`` is how
    many were counted before it (``None`` until counted)."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls: int | None = None


_CALL_SLOT: ExtensionKey[_CallSlot] = ExtensionKey("mcpgov.policy.call_slot")

logger = logging.getLogger("mcpgov.policy")

PolicySource = Policy | CedarPolicy | str | os.PathLike[str]
"""A policy: a loaded :class:`Policy` or :class:`CedarPolicy`, or a path to a ``.yaml``,
``.yml``, ``.json`` or ``.cedar`` file (reloadable)."""

STATE_UNAVAILABLE_RULE = "mcpgov:policy:state-unavailable"
UNLOADABLE_RULE = "mcpgov:policy:unloadable"


class Engine(Protocol):
    """What the middleware needs of an engine (the built-in one, Cedar, or your own)."""

    engine_name: str
    version: str
    source: str

    def decide(self, ctx: GovContext, *, history: TaskHistory | None = None, now: float | None = None) -> Decision:
        """Decide one request."""
        ...

    def explain(self, ctx: GovContext, *, history: TaskHistory | None = None, now: float | None = None) -> Explanation:
        """Explain one decision."""
        ...

    def history_needs(self, ctx: GovContext) -> HistoryNeeds:
        """What the decision needs from task history."""
        ...

    def labels_for(self, kind: str | None, target: str | None) -> frozenset[str]:
        """Labels recorded in task history when the target is used."""
        ...


class _DenyAll:
    """The engine in force when no policy could ever be loaded: every request is denied."""

    engine_name = "policy"
    source = "<none>"

    def __init__(self, detail: str) -> None:
        self.version = "unloadable"
        self._decision = Decision(
            Effect.DENY, UNLOADABLE_RULE, f"no policy is loaded ({detail})", "policy_unloadable", engine="policy"
        )

    def decide(self, ctx: GovContext, *, history: TaskHistory | None = None, now: float | None = None) -> Decision:
        return self._decision

    def explain(self, ctx: GovContext, *, history: TaskHistory | None = None, now: float | None = None) -> Explanation:
        return Explanation(self._decision, str(ctx.target), (), 0, "no policy could be loaded: everything is denied")

    def history_needs(self, ctx: GovContext) -> HistoryNeeds:
        return HistoryNeeds()

    def labels_for(self, kind: str | None, target: str | None) -> frozenset[str]:
        return frozenset()


def _deny(engine: Engine, rule: str, detail: str, reason: str) -> Decision:
    """A deny made on behalf of ``engine`` (recorded with its name and policy version)."""
    return Decision(Effect.DENY, rule, detail, reason, engine=engine.engine_name, policy_version=engine.version)


class PolicyMiddleware(Authorizer):
    """Authorisation by policy: gates every request and filters every listing with the same rules.

    Works on both sides: on the server (``govern(server, ..., PolicyMiddleware(...))``) it decides
    what callers may list and use; on the client (``GovernedClient(server, PolicyMiddleware(...),
    principal=..., purpose=..., task_id=...)``) it restricts what an agent may attempt before
    anything is sent.

    Besides the decision it:

    * reads the task history a decision needs, and records what ran (only requests that were
      allowed and returned), in ``state``;
    * enforces rate limits carried by the allow or the approval (counted per admitted request:
      a direct allow, or an approval request that comes back with its grant; never listings);
    * evaluates a ``shadow`` policy beside the enforced one and emits ``policy.shadow_mismatch``
      events where they differ, never enforcing it;
    * reloads its policy file on :meth:`reload` (or :meth:`check_for_changes`, :meth:`watch`): a
      reload that fails keeps the last good policy; each reload emits ``policy.reloaded``.

    Every failure denies: an engine error, a state store error, a deadline overrun.

    Args:
        policy: the enforced policy (a :class:`Policy`, :class:`CedarPolicy`, or a file path).
        shadow: a candidate policy evaluated beside the enforced one.
        declarations: server-author declarations (``@gov.tool``) compiled into the same engine.
        state: where task history and rate counters live (default: in memory).
        clock: seconds since the epoch, for time windows and rate limits (injectable).
        deadline: seconds one decision may take.
        history_ttl: seconds a task's history is kept after its last request.
        audit: where ``policy.reloaded`` events go when no request is in flight (default: the
            auditor of the next governed request).
        on_load_error: ``"raise"`` (default): an unloadable policy at construction raises
            :class:`PolicyError`; ``"deny_all"``: start denying everything and keep trying on reload.
        name: the rule id recorded when the middleware itself fails.

    Raises:
        PolicyError: the policy cannot be loaded (with ``on_load_error="raise"``).
        ConfigurationError: invalid arguments.
    """

    counts_own_limits = True  # decide() counts the limits of an allow, or of an approved request

    def __init__(
        self,
        policy: PolicySource,
        *,
        shadow: PolicySource | None = None,
        declarations: PolicyDecorators | None = None,
        state: StateStore | None = None,
        clock: Clock = time.time,
        deadline: float = 1.0,
        history_ttl: float = 86_400.0,
        audit: Auditor | AuditCallback | Iterable[AuditCallback] | None = None,
        on_load_error: str = "raise",
        name: str = "mcpgov:policy",
    ) -> None:
        super().__init__(deadline=deadline, name=name)
        if on_load_error not in ("raise", "deny_all"):
            raise ConfigurationError(f"on_load_error must be 'raise' or 'deny_all', got {on_load_error!r}")
        if declarations is not None and not isinstance(declarations, PolicyDecorators):
            raise ConfigurationError("declarations must be a PolicyDecorators")
        if state is not None and not isinstance(state, StateStore):
            raise ConfigurationError(f"state must implement StateStore, got {type(state).__name__}")
        if not callable(clock):
            raise ConfigurationError("clock must be callable")
        self.clock = clock
        self.declarations = declarations
        self.state: StateStore = state if state is not None else InMemoryStateStore()
        self.history = TaskHistoryStore(self.state, ttl=history_ttl)
        self.limiter = RateLimiter(self.state, clock=clock)
        auditor: Auditor | None = None
        if audit is not None:
            from mcpgov._governor import as_auditor  # noqa: PLC0415 - avoids an import cycle at package import

            auditor = as_auditor(audit)
        path = Path(policy) if isinstance(policy, (str, os.PathLike)) else None
        self._reloader = PolicyReloader(self, path, auditor)
        self._source: Policy | CedarPolicy | None = None
        self._generation = -1
        self._engine: Engine
        try:
            if path is not None:
                # One read: what is enforced is what is remembered as loaded.
                raw = read_bytes(path)
                self._source = load_file_content(path, raw)
                self._reloader.loaded_text = raw
            else:
                self._source = load_policy(policy)
        except PolicyError as exc:
            if on_load_error == "raise":
                raise
            self._engine = _DenyAll(str(exc))
            self._reloader.queue("failed", str(exc), None)
        else:
            self._engine = self._compile(self._source)
            self._generation = self._declared_generation()
        self._shadow_source: Policy | CedarPolicy | None = load_policy(shadow) if shadow is not None else None
        self._shadow: Engine | None = self._compile(self._shadow_source) if self._shadow_source is not None else None

    def __repr__(self) -> str:
        return f"PolicyMiddleware(engine={self._engine!r}, shadow={self._shadow!r})"

    # -- engines ------------------------------------------------------------------------------

    @property
    def _enforced(self) -> Engine:
        """The engine in force, as last compiled."""
        return self._engine

    def _enforce(self, source: Policy | CedarPolicy, engine: Engine) -> None:
        """Put ``engine``, compiled from ``source`` with the declarations as they are now, in force."""
        self._source = source
        self._engine = engine
        self._generation = self._declared_generation()

    def _declared_generation(self) -> int:
        """Which version of the declarations a compile made now includes."""
        return self.declarations.generation if self.declarations is not None else -1

    def _compile(self, source: Policy | CedarPolicy) -> Engine:
        """Compile ``source`` with this middleware's declarations.

        Raises:
            ConfigurationError: declarations cannot be combined with a Cedar policy.
        """
        if isinstance(source, CedarPolicy):
            if self.declarations is not None and self.declarations.declarations:
                raise ConfigurationError("tool declarations cannot be combined with a Cedar policy")
            return source.compile()
        if self.declarations is None:
            return PolicyEngine(source)
        rules, labels, targets, as_json = self.declarations.compile_parts()
        return PolicyEngine(
            source,
            declared_rules=rules,
            declared_labels=labels,
            declared=targets,
            version=combined_version(source.version, as_json),
        )

    def _refresh_declarations(self) -> None:
        """Recompile when declarations changed since the engine in force was compiled.

        The engine in force counts as current only once the new declarations compiled: while they
        cannot be (a declared rule id the policy already uses...), this raises on every request,
        which denies it, rather than leave in force an engine that knows nothing of them.
        """
        decl = self.declarations
        if decl is not None and decl.generation != self._generation and self._source is not None:
            generation = decl.generation
            engine = self._compile(self._source)
            shadow = self._compile(self._shadow_source) if self._shadow_source is not None else None
            self._engine, self._generation = engine, generation
            if shadow is not None:
                self._shadow = shadow

    @property
    def engine(self) -> Engine:
        """The engine in force."""
        self._refresh_declarations()
        return self._engine

    @property
    def version(self) -> str:
        """The version of the enforced policy."""
        return self.engine.version

    def set_shadow(self, policy: PolicySource | None) -> None:
        """Start (or, with ``None``, stop) evaluating a candidate policy beside the enforced one.

        Raises:
            PolicyError: the candidate cannot be loaded.
        """
        if policy is None:
            self._shadow_source, self._shadow = None, None
            return
        source = load_policy(policy)
        engine = self._compile(source)
        self._shadow_source, self._shadow = source, engine

    # -- deciding -----------------------------------------------------------------------------

    async def _history(self, ctx: GovContext, engine: Engine) -> TaskHistory | None:
        slot = ctx.extension(_CALL_SLOT)
        if slot is not None and slot.calls is None:
            slot.calls = await self.history.reserve_call(ctx)
        needs = engine.history_needs(ctx)
        if not needs:
            return None
        return await self.history.snapshot(ctx, needs, calls=slot.calls if slot is not None else None)

    def decide_now(self, ctx: GovContext) -> Decision | None:
        """:meth:`decide` without a cancel scope, when the decision needs nothing asynchronous:
        no queued reload events, no shadow policy, no task history, no rate limit to admit."""
        if self._shadow is not None or (ctx.audit is not None and self._reloader.pending):
            return None
        self._refresh_declarations()
        engine = self._engine
        discover = ctx.action == "discover"
        if engine.history_needs(ctx):
            return None  # task history is read from the store (listings inside a task too)
        decision: object = engine.decide(ctx, history=None, now=self.clock())
        if not isinstance(decision, Decision):
            return None  # decide() words the refusal
        if decision.effect is not Effect.DENY and not discover and decision.obligations.get(OBLIGATION_RATE_LIMIT):
            return None  # a rate limit to admit (also for an approved call): decide() counts it
        if ctx.audit is not None:
            self._reloader.side = ctx.side
        return decision

    async def decide(self, ctx: GovContext) -> Decision:
        """Decide ``ctx`` with the enforced policy (and compare with the shadow policy)."""
        if ctx.audit is not None:
            self._reloader.side = ctx.side
            if self._reloader.pending:
                await self._reloader.flush(ctx.audit)
        self._refresh_declarations()
        engine = self._engine
        now = self.clock()
        discover = ctx.action == "discover"
        try:
            history = await self._history(ctx, engine)
        except StateStoreError as exc:
            return self._state_failure(engine, exc)
        decision: object = engine.decide(ctx, history=history, now=now)
        if not isinstance(decision, Decision):
            detail = f"the {engine.engine_name} engine returned {type(decision).__name__}, not a Decision"
            return _deny(engine, self.name, detail, "authoriser_invalid")
        if self._shadow is not None:
            await compare_shadow(ctx, decision, self._shadow, now, self._history)
        if discover or decision.effect is Effect.DENY:
            return decision
        if decision.effect is Effect.REQUIRE_APPROVAL and (
            APPROVAL_GRANT not in ctx.extensions or approved_decision(ctx, decision).effect is not Effect.ALLOW
        ):
            # Refused until approved: counted when the request comes back with a grant that
            # approves exactly it (a grant replayed on other requests spends nothing).
            return decision
        limits = decision.obligations.get(OBLIGATION_RATE_LIMIT)
        if limits:
            try:
                exceeded: RateLimitSpec | None = await self.limiter.admit(ctx, limits)
            except StateStoreError as exc:
                return self._state_failure(engine, exc)
            if exceeded is not None:
                detail = f"rate limit of {exceeded.limit} per {exceeded.per:g}s (by {', '.join(exceeded.by)}) exceeded"
                return _deny(engine, exceeded.rule, detail, "rate_limited")
        return decision

    def _state_failure(self, engine: Engine, exc: StateStoreError) -> Decision:
        logger.warning("state store failed during a policy decision (%s); denying", exc.reason)
        return _deny(engine, STATE_UNAVAILABLE_RULE, f"the state store failed ({exc.reason})", "state_store_error")

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        if ctx.method in LIST_METHODS or ctx.action == "discover":
            return await super().__call__(ctx, call_next)
        slot: _CallSlot | None = None
        if ctx.task_id is not None and ctx.kind == "tool" and self._engine.history_needs(ctx).count:
            # A tool call whose decision reads the task's count of calls is counted before it is
            # decided (see TaskHistoryStore.reserve_call), so calls decided at once, here or on
            # another replica, each see the others. Any other tool call is counted once it ran.
            slot = _CallSlot()
            ctx = ctx.with_extension(_CALL_SLOT, slot)
        try:
            result = await super().__call__(ctx, call_next)
        except BaseException:
            if slot is not None and slot.calls is not None:
                await self._release(ctx)
            raise
        # Reached only when this policy allowed the request and the request returned: record it.
        await self._record(ctx, counted=slot is not None and slot.calls is not None)
        return result

    async def _release(self, ctx: GovContext) -> None:
        """Take back the count of a tool call that did not run (refused, failed or cancelled)."""
        with anyio.CancelScope(shield=True):
            try:
                await self.history.release_call(ctx)
            except Exception as exc:  # noqa: BLE001 - the call stays counted: stricter, never looser
                logger.warning("a refused call could not be taken back from its task's count (%s)", type(exc).__name__)

    async def _record(self, ctx: GovContext, *, counted: bool = False) -> None:
        if ctx.task_id is None:
            return
        labels = set(self._engine.labels_for(ctx.kind, ctx.target))
        if self._shadow is not None:
            labels |= self._shadow.labels_for(ctx.kind, ctx.target)
        try:
            await self.history.record(ctx, sorted(labels), counted=counted)
        except StateStoreError as exc:
            # The request ran but its history could not be kept: withhold the result rather than
            # let a later request be decided on an incomplete history.
            logger.error("task history could not be recorded (%s); withholding the result", exc.reason)
            raise McpGovError("task history could not be recorded", reason="history_unavailable") from None

    # -- explain ------------------------------------------------------------------------------

    async def explain(self, ctx: GovContext) -> Explanation:
        """Explain the enforced policy's decision about ``ctx`` (reads task history, counts nothing).

        Rate limits are not evaluated by explain (they count requests).
        """
        self._refresh_declarations()
        engine = self._engine
        history = await self._history(ctx, engine)
        return engine.explain(ctx, history=history, now=self.clock())

    # -- reload -------------------------------------------------------------------------------

    async def reload(self, policy: PolicySource | None = None) -> bool:
        """Load ``policy`` (default: re-read the policy file) and enforce it.

        Whatever goes wrong while loading or compiling (an invalid, hostile or unreadable
        policy, or any other error), the last good policy stays in force, a
        ``policy.reload_failed`` event records why, and ``False`` is returned. A successful
        reload emits ``policy.reloaded``.

        Returns:
            True when the new policy is now enforced.

        Raises:
            ConfigurationError: no ``policy`` was given and the middleware has no policy file.
        """
        return await self._reloader.reload(policy)

    async def check_for_changes(self) -> bool:
        """Reload when the policy file's content changed since it was last loaded.

        Returns:
            True when a reload was attempted.
        """
        return await self._reloader.check_for_changes()

    async def watch(self, interval: float = 2.0) -> None:
        """Poll the policy file every ``interval`` seconds and reload it when it changes (runs forever).

        Nothing a reload meets stops the watcher: a hostile file, a failing audit sink, even an
        exception that is not an ``Exception`` (only ``KeyboardInterrupt``, ``SystemExit`` and the
        cancellation of the watcher itself end it). What failed is logged and, when possible,
        recorded as ``policy.reload_failed``.
        """
        await self._reloader.watch(interval, self.check_for_changes)
