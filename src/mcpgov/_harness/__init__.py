"""Governed in-process sessions for checking policy: what the policy case runner (``mcpgov policy
test``) runs on, and what the test kit (:mod:`mcpgov.testing`) publishes.

* :class:`GovernedHarness`: a server governed by a policy, driven through real SDK sessions with
  test identities and credentials, each decision read from the audit trail;
* :class:`Inventory`, :func:`inventory_of`, :func:`generic_server`: what a server declares, and a
  stand-in server declaring it;
* :class:`FrozenClock`; :class:`IdentityIssuer`, :class:`SpiffeIssuer`; :class:`InMemoryAuditSink`;
* the policy assertions (``assert_allowed``...).
"""

from mcpgov._harness._assertions import (
    PolicyAssertionError,
    assert_allowed,
    assert_denied,
    assert_hidden,
    assert_requires_approval,
    assert_visible,
    expect_effect,
    expect_visibility,
)
from mcpgov._harness._clock import DEFAULT_FROZEN_TIME, FrozenClock
from mcpgov._harness._inventory import Inventory, generic_server, inventory_of
from mcpgov._harness._issuers import IdentityIssuer, InMemoryAuditSink, SpiffeIssuer
from mcpgov._harness._session import (
    CREDENTIAL_ISSUER,
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    Caller,
    GovernedHarness,
    Verdict,
    Visibility,
)

__all__ = [
    "CREDENTIAL_ISSUER",
    "DEFAULT_AUDIENCE",
    "DEFAULT_FROZEN_TIME",
    "DEFAULT_ISSUER",
    "Caller",
    "FrozenClock",
    "GovernedHarness",
    "IdentityIssuer",
    "InMemoryAuditSink",
    "Inventory",
    "PolicyAssertionError",
    "SpiffeIssuer",
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
