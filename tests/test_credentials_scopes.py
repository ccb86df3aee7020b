"""A scope or tool name is one name: what the issuer granted is exactly what the credential carries."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client

from mcpgov import CredentialError
from mcpgov.credentials import Grant, IssuancePolicy

from .test_credentials_support import AUDIENCE, build_governed, call, make_issuer, principal

pytestmark = pytest.mark.anyio

AGENT = principal("agent-1", "acme")
# Every character str.split() separates on: the scope claim is space-delimited on the wire and
# split on any of them when read back.
SEPARATORS = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


def _policy() -> IssuancePolicy:
    return IssuancePolicy(
        [Grant(principals=["https://id.example#agent-*"], audiences=[AUDIENCE], tools=["status"], scopes=["read:*"])]
    )


@settings(max_examples=60, deadline=None)
@given(separator=st.sampled_from(SEPARATORS), tail=st.sampled_from(["write:all", "admin", "read:y"]))
async def test_a_scope_holding_a_separator_is_refused_never_split_into_scopes_nobody_granted(
    separator: str, tail: str
) -> None:
    issuer = make_issuer(policy=_policy())
    with pytest.raises(CredentialError) as caught:
        await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], scope=[f"read:x{separator}{tail}"])
    assert caught.value.reason == "bad_request"
    with pytest.raises(CredentialError) as caught:
        await issuer.mint(AGENT, audience=AUDIENCE, tools=[f"status{separator}{tail}"])
    assert caught.value.reason == "bad_request"


@pytest.mark.parametrize("separator", [" ", "\t", "\n", "\x1f", "\x85", "\u00a0", "\u2028", "\u3000"])
async def test_a_granted_credential_carries_exactly_the_scopes_asked_for(separator: str, mode: str) -> None:
    issuer = make_issuer(policy=_policy())
    credential = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], scope=["read:x", "read:y"])
    governed = build_governed(issuer)
    async with Client(governed.server, mode=mode) as client:
        await call(client, "status", {}, credential.token, AGENT)
    assert governed.ran == ["status"]
    assert credential.claims.scopes == ("read:x", "read:y")
    with pytest.raises(CredentialError):
        await issuer.delegate(credential.token, scope=[f"read:x{separator}read:y"])
