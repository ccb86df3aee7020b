"""The test kit: test governed servers and policies through real SDK sessions.

* :class:`GovernedHarness` governs your server with your policy (or uses your own chain) and
  performs requests as production does: a test identity token, a credential carrying task and
  purpose, the policy, and the audit trail the decision is read from;
* ``assert_allowed``, ``assert_denied``, ``assert_requires_approval``, ``assert_visible`` and
  ``assert_hidden`` check one request or listing and, on failure, show the decision, its rule
  and the policy's explanation (:class:`PolicyAssertionError`); each returns a :class:`Verdict`;
* :class:`Inventory` and :func:`inventory_of`: what the server under test declares;
* :class:`FrozenClock` is the clock to pass wherever mcpgov takes ``clock=``;
* test doubles: :class:`IdentityIssuer` and :class:`SpiffeIssuer` mint test identities,
  :class:`InMemoryAuditSink` keeps every audit event, :func:`serve_http` serves an ASGI app on
  127.0.0.1;
* the pytest plugin (:mod:`mcpgov.pytest_plugin`) provides them as fixtures.

See ``docs/testing-policy.md``.
"""

from mcpgov._harness import (
    FrozenClock,
    GovernedHarness,
    IdentityIssuer,
    InMemoryAuditSink,
    Inventory,
    PolicyAssertionError,
    SpiffeIssuer,
    Verdict,
    assert_allowed,
    assert_denied,
    assert_hidden,
    assert_requires_approval,
    assert_visible,
    inventory_of,
)
from mcpgov._harness._http import serve_http
from mcpgov._public import publish as _publish

__all__ = [
    "FrozenClock",
    "GovernedHarness",
    "IdentityIssuer",
    "InMemoryAuditSink",
    "Inventory",
    "PolicyAssertionError",
    "SpiffeIssuer",
    "Verdict",
    "assert_allowed",
    "assert_denied",
    "assert_hidden",
    "assert_requires_approval",
    "assert_visible",
    "inventory_of",
    "serve_http",
]

_publish(__name__, globals())
