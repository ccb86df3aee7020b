"""Policy assertions over a real governed session: allowed, denied, requires approval, visible, hidden.

Each assertion performs the request through a :class:`GovernedHarness` (a real in-process
session) and reads the server's decision from its audit trail. On failure the message shows the
request, the decision, the rule that made it, and the policy's explanation.

The module-level functions are synchronous (for plain ``def`` tests); inside an ``async def``
test, await the harness's methods of the same names instead.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import textwrap
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Concatenate, Literal, TypeVar

import anyio
from typing_extensions import ParamSpec

from mcpgov._errors import ConfigurationError
from mcpgov._harness._session import GovernedHarness, Kind, Verdict, Visibility, Who

if TYPE_CHECKING:
    from mcpgov.policy import Explanation

__all__ = [
    "PolicyAssertionError",
    "assert_allowed",
    "assert_denied",
    "assert_hidden",
    "assert_requires_approval",
    "assert_visible",
    "expect_effect",
    "expect_visibility",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")
Effect = Literal["allow", "deny", "require_approval"]
_E = TypeVar("_E", Effect, bool)  # what a check expects: an effect, or that the target is listed


class PolicyAssertionError(AssertionError):
    """A policy assertion failed. The message says what was expected and what the server decided.

    Attributes:
        verdict: the server's decision (for request assertions).
        visibility: what the listing showed (for list assertions).
        explanation: the policy's explanation, when the server's chain has a policy middleware.
    """

    def __init__(
        self,
        message: str,
        *,
        verdict: Verdict | None = None,
        visibility: Visibility | None = None,
        explanation: Explanation | None = None,
    ) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.visibility = visibility
        self.explanation = explanation


PolicyAssertionError.__module__ = "mcpgov.testing"  # its public home (also when only the case runner loaded it)


def _indent(text: str) -> str:
    return textwrap.indent(text, "    ")


def _explanation_text(harness: GovernedHarness, explanation: Explanation | None, verdict: Verdict | None) -> str:
    if explanation is not None:
        return "explanation:\n" + _indent(str(explanation))
    engine = verdict.event.engine if verdict is not None and verdict.event is not None else None
    source = f" (the decision came from engine {engine!r})" if engine else ""
    if harness.policy is None:
        return f"explanation: none: the server's chain has no PolicyMiddleware to explain it{source}"
    return "explanation: none"


def effect_failure(
    harness: GovernedHarness, expected: Effect, rule: str | None, verdict: Verdict, explanation: Explanation | None
) -> PolicyAssertionError:
    """The failure of :meth:`GovernedHarness.expect`: what was expected, what the server decided, why."""
    wanted = expected.replace("_", " ") + (f" by rule {rule!r}" if rule is not None else "")
    got = verdict.effect.replace("_", " ") + (f" by rule {verdict.rule!r}" if verdict.rule else "")
    lines = [
        f"expected {wanted}, got {got}",
        f"request:  {verdict.request}",
        f"decision: {verdict.describe()}",
        _explanation_text(harness, explanation, verdict),
    ]
    return PolicyAssertionError("\n".join(lines), verdict=verdict, explanation=explanation)


def listing_failure(
    harness: GovernedHarness, visible: bool, target: str, seen: Visibility, explanation: Explanation | None
) -> PolicyAssertionError:
    """The failure of :meth:`GovernedHarness.expect_listed`: what the listing showed and hid, and why."""
    state = "visible" if visible else "hidden"
    if seen.error is not None:
        headline = (
            f"expected {target!r} {state}, but the listing was refused ({seen.error.code} {seen.error.message!r})"
        )
    else:
        listed = "listed" if target in seen.listed else "not listed"
        headline = f"expected {target!r} {state} in the listing, but it is {listed}"
    lines = [
        headline,
        f"request:  {seen.request}",
        f"listed:   {', '.join(seen.listed) or '(nothing)'}",
        f"hidden:   {', '.join(seen.hidden) or '(nothing)'}",
        _explanation_text(harness, explanation, None),
    ]
    return PolicyAssertionError("\n".join(lines), visibility=seen, explanation=explanation)


async def expect_effect(
    harness: GovernedHarness, expected: Effect, target: str, arguments: Mapping[str, Any] | None = None, **options: Any
) -> Verdict:
    """:meth:`GovernedHarness.expect`, the caller given as ``who={...}`` (``options``: ``rule``,
    ``kind``, ``purpose``, ``task_id``, ``who``)."""
    who = options.pop("who", {})
    return await harness.expect(expected, target, arguments, **options, **who)


async def expect_visibility(
    harness: GovernedHarness, visible: bool, target: str, *, kind: Kind = "tool", who: Who
) -> Visibility:
    """:meth:`GovernedHarness.expect_listed`, the caller given as ``who={...}``."""
    return await harness.expect_listed(visible, target, kind=kind, **who)


def _run(fn: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
    __tracebackhide__ = True
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigurationError(
            "this assertion runs its own event loop: inside an async test, await the harness's method "
            "instead (await harness.assert_allowed(...))"
        )
    try:
        return anyio.run(functools.partial(fn, *args, **kwargs))
    except PolicyAssertionError as exc:
        # The failure is the caller's line: drop the frames of the session that produced it.
        raise exc.with_traceback(None) from None


def _harness(value: Any) -> GovernedHarness:
    if not isinstance(value, GovernedHarness):
        raise ConfigurationError(
            f"the first argument is the governed session (a GovernedHarness, e.g. from the mcpgov_governed "
            f"fixture), got {type(value).__name__}"
        )
    return value


def _assertion(
    check: Callable[Concatenate[GovernedHarness, _E, _P], Awaitable[_T]], expected: _E, name: str, doc: str
) -> Callable[Concatenate[GovernedHarness, _P], _T]:
    """The synchronous assertion ``name``: ``check`` (a harness method) expecting ``expected``, run
    in its own event loop. One body for all five; each takes what ``check`` takes after ``expected``
    (the request or listing, and who calls: :class:`~mcpgov._harness._session.Who`)."""

    def assertion(harness: GovernedHarness, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        __tracebackhide__ = True
        return _run(check, _harness(harness), expected, *args, **kwargs)

    signature = inspect.signature(check)
    _self, _expected, *rest = signature.parameters.values()
    first = inspect.Parameter("harness", inspect.Parameter.POSITIONAL_ONLY, annotation="GovernedHarness")
    assertion.__signature__ = signature.replace(parameters=[first, *rest])  # type: ignore[attr-defined]
    assertion.__name__ = assertion.__qualname__ = name
    assertion.__doc__ = doc
    return assertion


assert_allowed = _assertion(
    GovernedHarness.expect,
    "allow",
    "assert_allowed",
    """Assert the governed server allows the request (by ``rule``, when given).

    Example::

        assert_allowed(gov, "read_file", {"path": "/srv/acme/a"}, tenant="acme", workload="agent-1")

    Args:
        harness: the governed session.
        target: the tool (prompt name, resource URI with ``kind=``).
        arguments: the arguments.
        rule: the rule that must have decided.
        kind: ``tool``, ``resource`` or ``prompt``.
        purpose: the purpose (carried in the call's signed credential).
        task_id: the task (carried in the credential).
        principal: a :class:`~mcpgov.Principal` of one of the harness's issuers, or the shorthand:
        tenant: the tenant (required with ``workload``).
        workload: the workload (subject).
        issuer: the shorthand's issuer (default ``https://issuer.test``).
        claims: further identity claims (``{"scope": "files:write"}``).
        actors: who the workload acts for, nearest first.

    Returns:
        The :class:`~mcpgov.testing.Verdict` (decision, rule, audit events, result).

    Raises:
        PolicyAssertionError: the server decided otherwise; the message shows the decision, its
            rule and the policy's explanation.
    """,
)

assert_denied = _assertion(
    GovernedHarness.expect,
    "deny",
    "assert_denied",
    """Assert the governed server denies the request (by ``rule``, when given).

    A refusal at any stage counts (identity, credential, policy, hooks); ``rule`` names it
    (``mcpgov:policy:default-deny`` when no rule applied). Arguments as for :func:`assert_allowed`.

    Raises:
        PolicyAssertionError: the server decided otherwise.
    """,
)

assert_requires_approval = _assertion(
    GovernedHarness.expect,
    "require_approval",
    "assert_requires_approval",
    """Assert the governed server requires approval for the request.

    Holds when the server's decision is ``require_approval`` (the caller got -32004), or when an
    approval middleware in the chain asked an approver (``approval.requested``). Arguments as
    for :func:`assert_allowed`.

    Raises:
        PolicyAssertionError: the server decided otherwise.
    """,
)

assert_visible = _assertion(
    GovernedHarness.expect_listed,
    True,
    "assert_visible",
    """Assert ``target`` appears in the caller's listing (``tools/list`` by default).

    A listing carries no credential, so it is decided without a purpose or task, as in
    production. Resource listings include resource templates.

    Raises:
        PolicyAssertionError: it is hidden (the message shows what was listed and hidden, and
            the policy's explanation of the discovery).
    """,
)

assert_hidden = _assertion(
    GovernedHarness.expect_listed,
    False,
    "assert_hidden",
    """Assert ``target`` does not appear in the caller's listing. See :func:`assert_visible`.

    Raises:
        PolicyAssertionError: it is listed.
    """,
)
