"""Sessions are bound to the principal AND its tenant, in-process and over Streamable HTTP."""

from __future__ import annotations

import pytest
from mcp import MCPError

from mcpgov import GovernedClient
from mcpgov.identity import IdentityVerifier
from mcpgov.testing import IdentityIssuer

from .test_identity_http import RESOURCE, served
from .test_identity_session import build

pytestmark = pytest.mark.anyio

OTHER_TENANTS = ["globex", "acme ", "ACME", "acme\u200b", "acmé"]
"""Other tenants, some spelt almost like the bound one."""


@pytest.mark.parametrize("other", OTHER_TENANTS)
async def test_a_legacy_session_refuses_the_same_subject_with_another_tenant_in_process(other: str) -> None:
    issuer = IdentityIssuer("https://a.test")
    setup = build(IdentityVerifier(issuer.config()))
    current = {"token": issuer.token("agent-1", tenant="acme")}
    async with GovernedClient(setup.server, identity=lambda: current["token"], mode="legacy") as client:
        await client.call_tool("work", {})
        current["token"] = issuer.token("agent-1", tenant=other)
        with pytest.raises(MCPError) as caught:
            await client.call_tool("work", {})
        assert caught.value.code == -32001
        current["token"] = issuer.token("agent-1", tenant="acme")  # the bound tenant is still served
        await client.call_tool("work", {})
    assert setup.ran == ["work", "work"]
    denies = [e for e in setup.sink.decisions() if e.effect == "deny"]
    (deny,) = denies
    # A tenant name the verifier already refuses never gets as far as the session binding.
    assert deny.reason in {"tenant_changed", "tenant_invalid"}
    assert deny.reason == "tenant_changed" or deny.tenant is None


@pytest.mark.parametrize("other", ["globex", "ACME"])
async def test_a_legacy_http_session_refuses_the_same_subject_with_another_tenant(other: str) -> None:
    issuer = IdentityIssuer(issuer=None, audience=RESOURCE)
    async with served(issuer) as s:
        current = {"token": issuer.token("agent-1", tenant="acme")}
        async with GovernedClient(s.url, identity=lambda: current["token"], mode="legacy") as client:
            await client.call_tool("work", {})
            current["token"] = issuer.token("agent-1", tenant=other)
            with pytest.raises(MCPError) as caught:
                await client.call_tool("work", {})
            assert caught.value.code == -32001
    assert s.ran == ["work"]
    denies = [e for e in s.sink.decisions() if e.effect == "deny"]
    assert [e.reason for e in denies] == ["tenant_changed"]
