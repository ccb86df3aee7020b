"""The mcpgov error tree.

Every error mcpgov raises derives from :class:`McpGovError` and carries a stable,
machine-readable ``code`` (a short dotted string) and a JSON-RPC ``rpc_code``::

    McpGovError                      mcpgov.error             -32603
    ├── ConfigurationError           mcpgov.configuration     -32603
    │   ├── PolicyError              (mcpgov.policy)
    │   └── CaseError                (mcpgov.policy._cases, ``mcpgov policy test``)
    ├── InvalidRequest               mcpgov.invalid_request   -32602
    ├── IdentityError                mcpgov.identity          -32001
    │   ├── SpiffeIdError            (mcpgov.identity; also a ValueError)
    │   └── KeySetError              (mcpgov.identity._keys; also a ValueError)
    ├── CredentialError              mcpgov.credential        -32002
    │   └── CredentialRefused        (mcpgov.credentials)
    ├── Denied                       mcpgov.denied            -32003
    │   └── ApprovalRequired         mcpgov.approval_required -32004
    ├── PinningError                 mcpgov.pinning           -32005
    ├── AuditUnavailable             mcpgov.audit_unavailable -32006
    ├── StateStoreError              mcpgov.state_store       -32603
    ├── ApprovalMismatch             mcpgov.approval_mismatch -32602 (mcpgov.approval)
    ├── ConditionError               mcpgov.error             -32603 (mcpgov.policy._conditions)
    ├── TokenJSONError               mcpgov.error             -32603 (mcpgov._tokenjson; also a ValueError)
    ├── ListingRefused               mcpgov.error             -32603 (mcpgov.gateway._gateway)
    ├── UpstreamUnavailable          mcpgov.gateway.upstream_unavailable -32603 (mcpgov.gateway)
    └── UpstreamTimeout              mcpgov.gateway.upstream_timeout     -32603 (mcpgov.gateway)

A subclass names its own in its class line
(``class X(McpGovError, code=..., rpc_code=..., public_message=...)``); what it leaves out it
shares with its parent. Two exceptions stand outside the tree on purpose: the command line's
``BadInput`` (a ``click.ClickException``, exit code 2) and ``mcpgov.testing.PolicyAssertionError``
(an ``AssertionError``, so test runners report a failed policy assertion as a failure).
``docs/errors.md`` lists every error; a test keeps both honest.

The ``detail`` of an error is for the audit trail and local logs only. What crosses
the wire is built by :func:`mcpgov.to_mcp_error` (the single place that maps
errors to the protocol) from the code and a fixed public message, never from
``detail``. This module imports nothing from the MCP SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from mcpgov._context import GovContext
    from mcpgov._decision import Decision

__all__ = [
    "ApprovalRequired",
    "AuditUnavailable",
    "ConfigurationError",
    "CredentialError",
    "Denied",
    "IdentityError",
    "InvalidRequest",
    "McpGovError",
    "PinningError",
]


def _redacted(detail: str) -> str:
    """``detail`` with every token and secret the default audit redaction finds removed, and every
    secret a running component knows by value (a gateway's upstream credentials, in every form):
    an error's text reaches logs, tracebacks and command output (a configured URL's password, an
    argument a tool was refused for, what an upstream said)."""
    if not detail or not isinstance(detail, str):
        return detail
    try:
        from mcpgov._audit import _default_redactor  # noqa: PLC0415 - mcpgov._audit imports this module
        from mcpgov.credentials._logs import scrub_known  # noqa: PLC0415 - mcpgov.credentials imports this module

        return scrub_known(_default_redactor().text(detail))
    except Exception:  # noqa: BLE001 - text that could not be redacted is not kept
        return "[redacted]"


class McpGovError(Exception):
    """Root of every mcpgov error.

    Args:
        detail: what went wrong, for the audit trail and local logs. Never sent to a peer.
        reason: a short machine-readable reason (``"hook_timeout"``, ``"expired"``...),
            recorded in audit events.
    """

    code: ClassVar[str] = "mcpgov.error"
    rpc_code: ClassVar[int] = -32603
    public_message: ClassVar[str] = "Internal error"

    def __init__(self, detail: str = "", *, reason: str | None = None) -> None:
        detail = _redacted(detail)
        super().__init__(detail or self.public_message)
        self.detail = detail or self.public_message
        self.reason = reason or self.code.rsplit(".", 1)[-1]
        self.event_id: str | None = None
        """The id of the audit event that recorded this error, once one did."""
        self.context: GovContext | None = None
        """The request context as the refusing stage saw it (caller, tenant...), when it set one."""
        self.unverified: dict[str, str] | None = None
        """What a refused token claimed that nothing verified (its ``jti``...): recorded only as the
        refusal event's ``unverified`` attribute, never as its principal, tenant or credential id."""

    def __init_subclass__(
        cls, *, code: str | None = None, rpc_code: int | None = None, public_message: str | None = None, **kwargs: Any
    ) -> None:
        """A subclass names its wire identity in its class line; what it leaves out it shares with its parent.

        ``class PinningError(McpGovError, code="mcpgov.pinning", rpc_code=-32005, public_message="...")``
        """
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if rpc_code is not None:
            cls.rpc_code = rpc_code
        if public_message is not None:
            cls.public_message = public_message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r})"


class ConfigurationError(McpGovError, code="mcpgov.configuration"):
    """mcpgov was configured in a way that cannot be governed safely (raised at setup)."""


class InvalidRequest(
    McpGovError, code="mcpgov.invalid_request", rpc_code=-32602, public_message="Invalid request parameters"
):
    """A request's parameters are malformed, oversized or too deeply nested."""


class IdentityError(McpGovError, code="mcpgov.identity", rpc_code=-32001, public_message="Unauthenticated"):
    """The caller's identity is missing, invalid or not acceptable."""


class CredentialError(McpGovError, code="mcpgov.credential", rpc_code=-32002, public_message="Invalid credential"):
    """A presented credential is missing, invalid, revoked or not for this request."""


class Denied(McpGovError, code="mcpgov.denied", rpc_code=-32003, public_message="Request denied"):
    """The request was refused by an authoriser (hook or policy).

    Args:
        decision: the deny decision, naming the rule that made it.
    """

    def __init__(self, decision: Decision, detail: str = "") -> None:
        super().__init__(detail or decision.reason or "denied", reason=decision.reason_code)
        self.decision = decision


class ApprovalRequired(Denied, code="mcpgov.approval_required", rpc_code=-32004, public_message="Approval required"):
    """The request needs an approval that was not (or could not be) obtained."""


class PinningError(McpGovError, code="mcpgov.pinning", rpc_code=-32005, public_message="Server or tool not approved"):
    """A server or tool does not match what was approved and pinned."""


class AuditUnavailable(
    McpGovError, code="mcpgov.audit_unavailable", rpc_code=-32006, public_message="Audit unavailable"
):
    """Strict audit mode refused a request because its audit event could not be recorded."""
