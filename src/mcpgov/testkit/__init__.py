"""Testing policy: a governed in-process session, policy assertions, a frozen clock, stand-in servers.

* :class:`GovernedHarness` governs your server with your policy (or uses your own chain) and
  performs requests as production does: a test identity token, a credential carrying task and
  purpose, the policy, and the audit trail the decision is read from;
* ``assert_allowed``, ``assert_denied``, ``assert_requires_approval``, ``assert_visible`` and
  ``assert_hidden`` (also importable from :mod:`mcpgov.testing`) check one request or listing
  and, on failure, show the decision, its rule and the policy's explanation;
* :class:`FrozenClock` is the clock to pass wherever mcpgov takes ``clock=``;
* the pytest plugin (:mod:`mcpgov.pytest_plugin`) provides all of them as fixtures.

See ``docs/testing-policy.md``.
"""

from mcpgov._harness import (
    CREDENTIAL_ISSUER,
    DEFAULT_AUDIENCE,
    DEFAULT_FROZEN_TIME,
    DEFAULT_ISSUER,
    Caller,
    FrozenClock,
    GovernedHarness,
    Inventory,
    PolicyAssertionError,
    Verdict,
    Visibility,
    assert_allowed,
    assert_denied,
    assert_hidden,
    assert_requires_approval,
    assert_visible,
    expect_effect,
    expect_visibility,
    generic_server,
    inventory_of,
)
from mcpgov._public import publish as _publish

__all__ = [
    "CREDENTIAL_ISSUER",
    "DEFAULT_AUDIENCE",
    "DEFAULT_FROZEN_TIME",
    "DEFAULT_ISSUER",
    "Caller",
    "FrozenClock",
    "GovernedHarness",
    "Inventory",
    "PolicyAssertionError",
    "Verdict",
    "Visibility",
    "assert_allowed",
    "assert_denied",
    "assert_hidden",
    "assert_requires_approval",
    "assert_visible",
    "expect_effect",
    "expect_visibility",
    "generic_server",
    "inventory_of",
]

_publish(__name__, globals())
