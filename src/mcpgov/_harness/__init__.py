"""Governed in-process sessions for checking policy: what the policy case runner (``mcpgov policy
test``) runs on, and what the test kit (:mod:`mcpgov.testing`) publishes.

* :class:`GovernedHarness`: a server governed by a policy, driven through real SDK sessions with
  test identities and credentials, each decision read from the audit trail;
* :class:`Inventory`, :func:`inventory_of`, :func:`generic_server`: what a server declares, and a
  stand-in server declaring it;
* :class:`FrozenClock`; :class:`IdentityIssuer`, :class:`SpiffeIssuer`; :class:`InMemoryAuditSink`;
* the policy assertions (``assert_allowed``...).
"""

# The package is the union of its modules' exports (each module's ``__all__`` lists them once).
from mcpgov._harness import _assertions, _clock, _inventory, _issuers, _session
from mcpgov._harness._assertions import *  # noqa: F403
from mcpgov._harness._clock import *  # noqa: F403
from mcpgov._harness._inventory import *  # noqa: F403
from mcpgov._harness._issuers import *  # noqa: F403
from mcpgov._harness._session import *  # noqa: F403

__all__ = _assertions.__all__ + _clock.__all__ + _inventory.__all__ + _issuers.__all__ + _session.__all__
