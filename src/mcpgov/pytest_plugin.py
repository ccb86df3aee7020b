"""The mcpgov pytest plugin: fixtures for testing a server's policy through a real governed session.

Registered through the ``pytest11`` entry point as ``mcpgov``: installed with mcpgov, active in
every pytest run, disabled with ``-p no:mcpgov``. Loading it imports nothing but pytest; each
fixture imports what it needs when a test first asks for it.

Fixtures:

* ``mcpgov_governed``: a factory, ``mcpgov_governed(server, policy, **options)`` returns a
  :class:`~mcpgov.testing.GovernedHarness` (your server governed by your policy, with test
  identities in any tenant, credentials, the frozen clock and the captured audit trail);
  ``mcpgov_governed(server)`` uses a server you governed yourself with a chain that trusts
  ``mcpgov_identities`` (and ``mcpgov_credentials`` if it checks credentials);
* ``mcpgov_clock``: a :class:`~mcpgov.testing.FrozenClock` (call it for the time, ``advance(s)``);
* ``mcpgov_audit``: the :class:`~mcpgov.testing.InMemoryAuditSink` the harness records into;
* ``mcpgov_identities``: the test :class:`~mcpgov.testing.IdentityIssuer` (``https://issuer.test``);
* ``mcpgov_credentials``: the test :class:`~mcpgov.credentials.CredentialIssuer`;
* ``mcpgov_mode``: the protocol mode sessions use (``"auto"``; parametrise it to run both:
  ``@pytest.mark.parametrize("mcpgov_mode", ["auto", "legacy"])``).

The assertions to use with them are in :mod:`mcpgov.testing`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server
    from mcp.server.mcpserver import MCPServer

    from mcpgov.credentials import CredentialIssuer
    from mcpgov.policy import PolicyMiddleware, PolicySource
    from mcpgov.testing import FrozenClock, GovernedHarness, IdentityIssuer, InMemoryAuditSink

__all__ = [
    "mcpgov_audit",
    "mcpgov_clock",
    "mcpgov_credentials",
    "mcpgov_governed",
    "mcpgov_identities",
    "mcpgov_mode",
]


@pytest.fixture
def mcpgov_clock() -> FrozenClock:
    """A frozen clock (2025-06-15T15:06:40Z); everything the harness builds reads it."""
    from mcpgov.testing import FrozenClock  # noqa: PLC0415 - the plugin loads nothing until a fixture is used

    return FrozenClock()


@pytest.fixture
def mcpgov_audit() -> InMemoryAuditSink:
    """The captured audit trail of the governed server (every event, in order)."""
    from mcpgov.testing import InMemoryAuditSink  # noqa: PLC0415 - the plugin loads nothing until a fixture is used

    return InMemoryAuditSink()


@pytest.fixture
def mcpgov_identities(mcpgov_clock: FrozenClock) -> IdentityIssuer:
    """The test identity issuer (``https://issuer.test``, audience ``mcp://test-server``) on the frozen clock.

    Trust it in your own chain with ``IdentityMiddleware(mcpgov_identities.verifier())``.
    """
    from mcpgov._harness import DEFAULT_AUDIENCE, DEFAULT_ISSUER  # noqa: PLC0415
    from mcpgov.testing import IdentityIssuer  # noqa: PLC0415 - the plugin loads nothing until a fixture is used

    return IdentityIssuer(DEFAULT_ISSUER, audience=DEFAULT_AUDIENCE, clock=mcpgov_clock)


@pytest.fixture
def mcpgov_credentials(mcpgov_clock: FrozenClock) -> CredentialIssuer:
    """The test credential issuer (Ed25519 keys in memory) on the frozen clock.

    Trust it in your own chain with
    ``CredentialMiddleware(mcpgov_credentials.verifier("mcp://test-server"))``.
    """
    from mcpgov._harness import CREDENTIAL_ISSUER  # noqa: PLC0415
    from mcpgov.credentials import CredentialIssuer, SigningKeySet  # noqa: PLC0415 - loaded on first use

    keys = SigningKeySet.generate("Ed25519", clock=mcpgov_clock)
    return CredentialIssuer(CREDENTIAL_ISSUER, keys, clock=mcpgov_clock)


@pytest.fixture
def mcpgov_mode() -> str:
    """The protocol mode of the harness's sessions: ``"auto"`` (2026-07-28) or ``"legacy"``."""
    return "auto"


@pytest.fixture
def mcpgov_governed(
    mcpgov_clock: FrozenClock,
    mcpgov_audit: InMemoryAuditSink,
    mcpgov_identities: IdentityIssuer,
    mcpgov_credentials: CredentialIssuer,
    mcpgov_mode: str,
) -> Callable[..., GovernedHarness]:
    """A factory: ``mcpgov_governed(server, policy=None, **options) -> GovernedHarness``.

    With a policy, it governs ``server`` (which must not be governed yet) with identity,
    credential and policy middleware; without one, it uses the chain you governed ``server``
    with. The other fixtures supply the clock, the audit sink, the issuers and the mode;
    ``options`` are :class:`~mcpgov.testing.GovernedHarness` keyword arguments (``middleware``,
    ``declarations``, ``issuers``, ``state``...).
    """
    from mcpgov.testing import GovernedHarness  # noqa: PLC0415 - the plugin loads nothing until a fixture is used

    def build(
        server: MCPServer | Server[Any], policy: PolicySource | PolicyMiddleware | None = None, **options: Any
    ) -> GovernedHarness:
        options.setdefault("clock", mcpgov_clock)
        options.setdefault("audit", mcpgov_audit)
        options.setdefault("identities", mcpgov_identities)
        options.setdefault("credentials", mcpgov_credentials)
        options.setdefault("mode", mcpgov_mode)
        return GovernedHarness(server, policy, **options)

    return build
