"""The ids mcpgov generates (credential ids, approval request ids) read the same after audit
redaction, so two trails always join on them: no id is ever taken for a secret or an option."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpgov import Decision, GovContext
from mcpgov.approval import ApprovalRequest
from mcpgov.audit._redact import Redactor

from .test_credentials_support import AUDIENCE, FrozenClock, make_issuer, principal

pytestmark = pytest.mark.anyio


@settings(max_examples=500)
@given(st.binary(min_size=16, max_size=16))
def test_an_id_in_the_generated_form_is_never_redacted(raw: bytes) -> None:
    """Every 128-bit id in the form the issuer and the approval stage write reads back as itself."""
    text = raw.hex()
    assert Redactor().text(text) == text


async def test_minted_credential_ids_and_approval_ids_are_kept_by_redaction() -> None:
    issuer = make_issuer(FrozenClock())
    redactor = Redactor()
    agent = principal("agent-1")
    for _ in range(200):
        minted = await issuer.mint(agent, audience=AUDIENCE, tools=["status"])
        assert redactor.text(minted.id) == minted.id
        assert len(minted.id) == 32 and int(minted.id, 16) >= 0
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="deploy")
    for _ in range(200):
        request = ApprovalRequest.for_context(ctx, Decision.require_approval("r"), ttl=60)
        assert redactor.text(request.id) == request.id
