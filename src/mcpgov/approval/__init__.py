"""Human approval: a ``require_approval`` decision waits for a person's answer.

An :class:`ApprovalMiddleware` placed before the authorisers asks an approver about exactly
the action that needs approval (tool, arguments hash, principal, tenant, task): a callback
(:class:`CallbackApprover`), an operator queue answered in process or over HTTP
(:class:`ApprovalQueue`), or the MCP client's user through elicitation
(:class:`ElicitationApprover`, both protocol eras). No answer within the deadline denies.
"""

from mcpgov._public import publish as _publish
from mcpgov.approval._approvers import ApprovalMismatch, ApprovalQueue, Approver, CallbackApprover, Operator
from mcpgov.approval._elicit import ElicitationApprover
from mcpgov.approval._middleware import ApprovalMiddleware
from mcpgov.approval._model import ActionKey, ApprovalAnswer, ApprovalGrant, ApprovalRequest, action_key

__all__ = [
    "ActionKey",
    "ApprovalAnswer",
    "ApprovalGrant",
    "ApprovalMiddleware",
    "ApprovalMismatch",
    "ApprovalQueue",
    "ApprovalRequest",
    "Approver",
    "CallbackApprover",
    "ElicitationApprover",
    "Operator",
    "action_key",
]

_publish(__name__, globals())
