"""Per-tool authorisation hooks: the simplest form of policy."""

from __future__ import annotations

import fnmatch
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import anyio

from mcpgov._authorize import Authorizer, Unsettled, decided_inline, guarded
from mcpgov._chain import Listing
from mcpgov._context import GovContext, approval_rule_to_ask, discovery_contexts
from mcpgov._decision import Decision, Effect
from mcpgov._errors import ConfigurationError, InvalidRequest
from mcpgov._lru import LRU
from mcpgov._state import StateStore
from mcpgov._types import Clock, is_async_callable
from mcpgov._uris import authority_folded, restricting_readings, scheme_folded, uri_problem

__all__ = ["HookFn", "Hooks", "any_guards", "guard_problem", "refuse_unguarded"]

HookFn = Callable[[GovContext], Decision | Awaitable[Decision]]
"""A hook: a plain sync or async callable from the request context to a :class:`Decision`."""

HookKind = Literal["tool", "resource", "prompt", "method"]
_F = TypeVar("_F", bound=Callable[..., object])
_H = TypeVar("_H", bound=HookFn)

DEFAULT_DENY_RULE = "mcpgov:default-deny"

_GUARDED_AS = "__mcpgov_guarded_as__"
"""The attribute :meth:`Hooks.guard` sets on a function: the tool names its hooks guard."""


class _Guards:
    """Whether any function was guarded in this process (the per-call check is skipped otherwise)."""

    made = False


def _markable(fn: object) -> object:
    """Where a guard's names are kept for ``fn``: the function of a bound method (a method object
    takes no attributes), the object itself otherwise."""
    inner = getattr(fn, "__func__", None)
    return inner if inner is not None else fn


_UNREADABLE = frozenset({"\x00unreadable"})
"""What :func:`_guarded_names` answers when a wrapper could not be followed to its end."""

_MAX_WRAPPERS = 32


def _guarded_names(fn: object) -> frozenset[str] | None:
    """The tool names ``fn`` was guarded under, following ``__wrapped__`` (a decorator made with
    ``functools.wraps``), ``functools.partial`` and bound methods; ``None`` when no guard names
    it; :data:`_UNREADABLE` when the chain could not be read to its end (an attribute that
    raises, a chain longer than any decorator stack): a guard may be hidden there."""
    names: frozenset[str] | None = None
    for _ in range(_MAX_WRAPPERS):
        if fn is None:
            return names
        try:
            found = getattr(_markable(fn), _GUARDED_AS, None)
            after = fn.func if isinstance(fn, functools.partial) else getattr(fn, "__wrapped__", None)
        except Exception:  # noqa: BLE001 - an object whose attributes raise: what it hides is unknown
            return _UNREADABLE
        if isinstance(found, frozenset):
            names = found if names is None else names | found
        fn = after
    return names if fn is None else _UNREADABLE


def any_guards() -> bool:
    """Whether :meth:`Hooks.guard` marked any function in this process."""
    return _Guards.made


def guard_problem(fn: object, served_as: str) -> str | None:
    """Why tool ``served_as`` must not run ``fn``: the function was guarded (:meth:`Hooks.guard`)
    under other names only, so its guard would not be asked. ``None`` when it may."""
    if not _Guards.made:
        return None
    names = _guarded_names(fn)
    if names is _UNREADABLE:
        return (
            f"the function tool {served_as!r} runs could not be read to its end (an attribute raised, "
            "or its wrappers go deeper than any decorator stack), so a guard on it may not be asked"
        )
    if names is None or served_as in names:
        return None
    guarded = ", ".join(repr(name) for name in sorted(names))
    return (
        f"tool {served_as!r} runs a function guarded as {guarded}, so its guard would not be asked; "
        f"guard it under the name it is served as: @hooks.guard(hook, name={served_as!r})"
    )


def refuse_unguarded(fn: object, served_as: str) -> None:
    """Refuse a call of tool ``served_as`` running ``fn`` when :func:`guard_problem` finds one.

    Raises:
        InvalidRequest: it does (``guard_not_applied``).
    """
    problem = guard_problem(fn, served_as)
    if problem is not None:
        raise InvalidRequest(problem, reason="guard_not_applied")


@dataclass(frozen=True, slots=True)
class _Hook:
    kind: HookKind
    pattern: str
    fn: HookFn
    rule: str
    is_async: bool


def _pattern_readings(pattern: str) -> set[str]:
    """A hook's pattern and its restricting readings (a glob's path is kept as written: its
    ``?`` is a wildcard, not a query)."""
    if any(ch in pattern for ch in "*?["):
        return {pattern, authority_folded(pattern)}
    return {pattern, *restricting_readings(pattern)}


class Hooks(Authorizer):
    """An authoriser made of per-target hooks.

    Register a hook for a tool (or resource URI, prompt, or other MCP method) by exact name
    or glob pattern. For each request, every hook whose pattern matches the target is asked;
    all must allow (a deny wins over an approval, which wins over an allow). A request that
    no hook matches is denied (``mcpgov:default-deny``). Listings show an entry only when its
    hooks would allow discovering it (the hook sees ``ctx.action == "discover"``).

    Example::

        hooks = Hooks(deadline=0.5)

        @hooks.tool("read_*")
        def readers(ctx: GovContext) -> Decision:
            return Decision.allow("readers")

        @hooks.guard(lambda ctx: Decision.deny("no-deploys", "deploys are frozen"))
        @server.tool()
        def deploy(version: str) -> str: ...

    A synchronous hook runs on the event loop: while it runs, no other request of the process
    makes progress, and its deadline can only discard a late answer afterwards. Keep sync hooks
    to pure computation (microseconds), or pass ``offload=True``: sync hooks then run in a worker
    thread, the event loop keeps serving everyone else, and a hook still running at its deadline
    is abandoned (the request is denied at the deadline; the thread finishes on its own).

    A hook's allow may carry a ``rate_limit`` obligation (``Decision.allow("search",
    rate_limit={"limit": 10, "per": 60, "by": ["principal"]})``, or a list of them): each admitted
    request is counted in ``state`` as a policy's limits are, and a request over it is denied
    (``rate_limited``, naming the hook's rule).

    Args:
        deadline: seconds each hook may take; a slower hook denies.
        offload: run synchronous hooks in worker threads (see above).
        limiter: how many offloaded hooks may run at once (default: anyio's thread limiter).
        state: where the hooks' rate limits are counted (default: in memory, this process only).
        clock: seconds since the epoch, for the rate-limit windows (injectable).
    """

    def __init__(
        self,
        *,
        deadline: float = 1.0,
        offload: bool = False,
        limiter: anyio.CapacityLimiter | None = None,
        state: StateStore | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(deadline=deadline, name="hooks", state=state, clock=clock)
        self.offload = bool(offload)
        self._limiter = limiter
        self._exact: dict[tuple[HookKind, str], list[_Hook]] = {}
        self._globs: list[_Hook] = []
        self._match_cache: LRU[tuple[HookKind, str], tuple[_Hook, ...]] = LRU(4096)

    def register(self, pattern: str, fn: HookFn, *, kind: HookKind = "tool", rule: str | None = None) -> None:
        """Register ``fn`` for targets of ``kind`` matching ``pattern`` (exact or glob).

        Args:
            pattern: a name, URI or method, or a glob (``*``, ``?``, ``[...]``).
            fn: the hook.
            kind: ``tool``, ``resource`` (pattern over URIs), ``prompt`` or ``method``.
            rule: the rule id audit records for this hook's decisions' failures; defaults to
                ``hook:<function name>``.
        """
        if not isinstance(pattern, str) or not pattern:
            raise ConfigurationError("a hook pattern must be a non-empty string")
        if kind not in ("tool", "resource", "prompt", "method"):
            raise ConfigurationError(f"unknown hook kind {kind!r}")
        if not callable(fn):
            raise ConfigurationError(f"a hook must be callable, got {type(fn).__name__}")
        name = rule or f"hook:{getattr(fn, '__qualname__', type(fn).__name__)}"
        hook = _Hook(kind, pattern, fn, name, is_async_callable(fn))
        if any(ch in pattern for ch in "*?["):
            self._globs.append(hook)
        else:
            self._exact.setdefault((kind, pattern), []).append(hook)
        self._match_cache.clear()

    def _decorator(self, pattern: str, kind: HookKind, rule: str | None) -> Callable[[_H], _H]:
        def register(fn: _H) -> _H:
            self.register(pattern, fn, kind=kind, rule=rule)
            return fn

        return register

    def tool(self, pattern: str, *, rule: str | None = None) -> Callable[[_H], _H]:
        """Decorator: register the decorated function as a hook for tools matching ``pattern``."""
        return self._decorator(pattern, "tool", rule)

    def resource(self, pattern: str, *, rule: str | None = None) -> Callable[[_H], _H]:
        """Decorator: register a hook for resource URIs (and URI templates) matching ``pattern``."""
        return self._decorator(pattern, "resource", rule)

    def prompt(self, pattern: str, *, rule: str | None = None) -> Callable[[_H], _H]:
        """Decorator: register a hook for prompts matching ``pattern``."""
        return self._decorator(pattern, "prompt", rule)

    def method(self, method: str, *, rule: str | None = None) -> Callable[[_H], _H]:
        """Decorator: register a hook for another MCP method (``completion/complete``...)."""
        return self._decorator(method, "method", rule)

    def guard(self, hook: HookFn, *, name: str | None = None, rule: str | None = None) -> Callable[[_F], _F]:
        """Decorator for a tool function: guard that tool with ``hook``.

        Put it next to ``@server.tool()``; the tool name is ``name`` or the function's name.
        The function itself is returned unchanged, marked with the names it is guarded under: a
        governed server refuses to run it as a tool of any other name (``govern()`` refuses such
        a server at once; a tool added later is refused on use), since the hook would not be
        asked there (``@server.tool(name="deploy_prod")`` on a function ``deploy`` needs
        ``name="deploy_prod"`` here).

        Raises:
            ConfigurationError: the function cannot be marked (pass a plain function or method).
        """

        def attach(fn: _F) -> _F:
            tool = name or getattr(fn, "__name__", None)
            if not isinstance(tool, str) or not tool:
                raise ConfigurationError(f"@hooks.guard on a {type(fn).__name__} needs the tool's name: name=...")
            target = _markable(fn)
            try:
                own: frozenset[str] = getattr(target, _GUARDED_AS, frozenset())
                setattr(target, _GUARDED_AS, frozenset(own) | {tool})
            except (AttributeError, TypeError) as exc:
                raise ConfigurationError(
                    f"@hooks.guard cannot mark {type(fn).__name__} {tool!r}: guard a plain function or method"
                ) from exc
            _Guards.made = True
            self.register(tool, hook, kind="tool", rule=rule)
            return fn

        return attach

    def _matching(self, kind: HookKind, target: str) -> tuple[_Hook, ...]:
        key = (kind, target)
        found = self._match_cache.get(key)
        if found is None:
            hooks = list(self._exact.get(key, ()))
            # A resource URI not in its normal form may resolve elsewhere than it reads: no glob
            # matches it, only a hook registered for that exact spelling decides (mcpgov._uris).
            if kind != "resource":
                hooks.extend(h for h in self._globs if h.kind == kind and fnmatch.fnmatchcase(target, h.pattern))
            elif uri_problem(target) is None:
                # A scheme is case-insensitive: a glob matching either spelling matches (one URI).
                forms = {target, scheme_folded(target)}
                hooks.extend(
                    h
                    for h in self._globs
                    if h.kind == kind and any(fnmatch.fnmatchcase(form, h.pattern) for form in forms)
                )
                if hooks:
                    hooks.extend(self._host_matches(kind, forms, hooks))
            found = tuple(hooks)
            self._match_cache[key] = found
        return found

    def _host_matches(self, kind: HookKind, forms: set[str], matched: list[_Hook]) -> list[_Hook]:
        """The other hooks that match the URI as a server reading only its host sees it (host in
        lower case, no user-info or port; the pattern folded the same way): ``vault://PROD/x``
        meets a hook on ``vault://prod/*``. They are asked only beside a hook that matches the
        URI as sent, so what they add is a deny or an approval, never an allow on their own."""
        hosts = {reading for form in forms for reading in restricting_readings(form)}
        candidates = [h for h in self._globs if h.kind == kind]
        candidates += [h for (k, _), exact in self._exact.items() if k == kind for h in exact]
        return [
            h
            for h in candidates
            if h not in matched
            and any(fnmatch.fnmatchcase(host, pattern) for host in hosts for pattern in _pattern_readings(h.pattern))
        ]

    def _targets(self, ctx: GovContext) -> tuple[_Hook, ...]:
        if ctx.kind is not None and ctx.target is not None:
            return self._matching(ctx.kind, ctx.target)
        return self._matching("method", ctx.method)

    async def decide(self, ctx: GovContext) -> Decision:
        """Ask every matching hook; no matching hook means deny."""
        answer = self._at_once(ctx)
        return await self._rest(ctx, answer) if isinstance(answer, _Resume) else answer

    async def evaluate(self, ctx: GovContext) -> Decision:
        """Each hook is guarded (deadline, errors, non-decisions) on its own, as in :meth:`decide`."""
        if type(self).decide is not Hooks.decide:  # a subclass decides its own way
            return await self.decide(ctx)
        answer = self._at_once(ctx)
        return await self._rest(ctx, answer) if isinstance(answer, _Resume) else answer

    async def filter(self, ctx: GovContext, listing: Listing) -> Listing:
        """Keep the entries whose discovery the hooks allow; synchronous hooks are asked inline,
        an entry needing asynchronous work is decided under the deadline as a whole."""
        if type(self).decide is not Hooks.decide:  # a subclass decides its own way
            return await super().filter(ctx, listing)
        visible: set[str] = set()
        entry = discovery_contexts(ctx, listing.kind)
        for item in listing.items:
            entry_ctx = entry(item.name)
            answer = self._at_once(entry_ctx)
            if isinstance(answer, _Resume):
                rest = functools.partial(self._rest, resume=answer)
                answer = await guarded(rest, entry_ctx, self.deadline, self.name)
            # An entry that needs approval to use is still shown: the approval happens on use.
            if answer.effect is not Effect.DENY:
                visible.add(item.name)
        return listing.keep(lambda item: item.name in visible)

    def _at_once(self, ctx: GovContext) -> Decision | _Resume:
        """The decision, when every matching hook answers synchronously; otherwise where to resume."""
        hooks = self._targets(ctx)
        if not hooks:
            return Decision.deny(DEFAULT_DENY_RULE, "no hook matches this request", "default_deny")
        decision: Decision | None = None
        for index, hook in enumerate(hooks):
            if hook.is_async or self.offload:
                return _Resume(hooks, index, decision, None)
            answer = decided_inline(hook.fn, ctx, self.deadline, hook.rule)
            if isinstance(answer, Unsettled):
                return _Resume(hooks, index, decision, answer)
            if answer.effect is Effect.DENY:
                return answer
            decision = _combined(ctx, answer, decision)
        return _decided(decision)

    async def _rest(self, ctx: GovContext, resume: _Resume) -> Decision:
        """Ask the hooks from where :meth:`_at_once` stopped (settling what it left unsettled)."""
        decision = resume.decision
        for index in range(resume.index, len(resume.hooks)):
            hook = resume.hooks[index]
            if index == resume.index and resume.unsettled is not None:
                answer = await resume.unsettled.settle()
            else:
                answer = await guarded(
                    hook.fn,
                    ctx,
                    self.deadline,
                    hook.rule,
                    is_async=hook.is_async,
                    offload=self.offload,
                    limiter=self._limiter,
                )
            if answer.effect is Effect.DENY:
                return answer
            decision = _combined(ctx, answer, decision)
        return _decided(decision)


def _combined(ctx: GovContext, answer: Decision, decision: Decision | None) -> Decision:
    """``answer`` combined with the hooks' decision so far (see :meth:`Decision.combine`: of equal
    effects, the later hook names the rule). Of two approvals under different rules, one the
    approval given so far for this request was asked about gives way to one it was not: each
    hook's approval is asked for in turn."""
    if (
        decision is not None
        and answer.effect is Effect.REQUIRE_APPROVAL
        and decision.effect is Effect.REQUIRE_APPROVAL
        and answer.rule != decision.rule
        and approval_rule_to_ask(ctx, [answer.rule, decision.rule]) == 1
    ):
        return decision.combine(answer)
    return answer.combine(decision)


@dataclass(frozen=True, slots=True)
class _Resume:
    """Where asking the hooks goes on asynchronously: the hooks, the first not yet answered, the
    decision so far, and that hook's unsettled inline call (if it was called)."""

    hooks: tuple[_Hook, ...]
    index: int
    decision: Decision | None
    unsettled: Unsettled | None


def _decided(decision: Decision | None) -> Decision:
    if decision is None:  # unreachable: the hooks are never empty here; kept so no path can fail open
        return Decision.deny(DEFAULT_DENY_RULE, "no hook decided", "default_deny")
    return decision
