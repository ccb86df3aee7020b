"""Tokens in the wrong hands, or spelt another way, are refused: a stolen credential delegated or
exchanged by a thief, the same subject in another tenant or under another issuer spelling, a
child presented by its parent's holder, identity tokens with hostile claims and headers."""

from __future__ import annotations

from typing import Any, cast

import pytest
from mcp import Client, MCPError

from mcpgov import META_CREDENTIAL, CredentialError, IdentityError, Principal
from mcpgov.testing import IdentityIssuer, SpiffeIssuer

from .test_credentials_support import AUDIENCE, as_principal, build_governed, make_issuer, principal

pytestmark = pytest.mark.anyio


async def _parent(issuer: Any, **kw: Any) -> Any:
    kw.setdefault("may_act", [principal("sub-agent")])
    return await issuer.mint(principal(), audience=AUDIENCE, tools=["deploy", "status"], ttl=120, **kw)


async def test_revoking_parent_refuses_child_at_server() -> None:
    issuer = make_issuer()
    g = build_governed(issuer)
    parent = await _parent(issuer)
    child = await issuer.delegate(parent.token, subject=principal("sub-agent"), tools=["status"])
    meta: Any = {**as_principal(principal("sub-agent")), META_CREDENTIAL: child.token}
    async with Client(g.server) as c:
        await c.call_tool("status", {}, meta=meta)
        await issuer.revoke(parent)
        with pytest.raises(MCPError):
            await c.call_tool("status", {}, meta=meta)
    assert g.ran == ["status"]


@pytest.mark.parametrize(
    "actor",
    [
        principal("thief"),
        principal("sub-agent", tenant="globex"),
        Principal(issuer="https://other.example", subject="sub-agent", tenant="acme"),
        Principal(issuer="https://id.example/", subject="sub-agent", tenant="acme"),
        Principal(issuer="https://ID.example", subject="sub-agent", tenant="acme"),
        principal("Sub-agent"),
        principal("sub-agent "),
    ],
)
async def test_others_cannot_derive(actor: Principal) -> None:
    issuer = make_issuer(downstream={AUDIENCE: ["https://r.example"]})
    parent = await _parent(issuer)
    with pytest.raises(CredentialError):
        await issuer.delegate(parent.token, subject=actor)
    with pytest.raises(CredentialError):
        await issuer.exchange(parent.token, audience="https://r.example", tools=["t"], actor=actor)


async def test_widening_and_depth() -> None:
    issuer = make_issuer(max_delegation_depth=1)
    parent = await _parent(issuer)
    for kw in ({"tools": ["rollback"]}, {"ttl": 500}, {"scope": ["admin"]}):
        with pytest.raises(CredentialError):
            await issuer.delegate(parent.token, subject=principal("sub-agent"), **kw)
    child = await issuer.delegate(parent.token, subject=principal("sub-agent"), may_act=[principal()])
    with pytest.raises(CredentialError):
        await issuer.delegate(child.token, subject=principal())  # loop back, depth 2


async def test_child_presented_by_parent_subject_refused() -> None:
    issuer = make_issuer()
    g = build_governed(issuer)
    parent = await _parent(issuer)
    child = await issuer.delegate(parent.token, subject=principal("sub-agent"), tools=["status"])
    async with Client(g.server) as c:
        with pytest.raises(MCPError):
            await c.call_tool("status", {}, meta=cast(Any, {**as_principal(principal()), META_CREDENTIAL: child.token}))
        other: Any = {**as_principal(principal("sub-agent", "globex")), META_CREDENTIAL: child.token}
        with pytest.raises(MCPError):
            await c.call_tool("status", {}, meta=other)


ISS = IdentityIssuer()


@pytest.mark.parametrize(
    "claims",
    [
        {"tenant": 7},
        {"tenant": ""},
        {"tenant": " acme"},
        {"tenant": "acme\n"},
        {"tenant": True},
        {"tenant": {"id": "acme"}},
        {"iss": ISS.issuer + "/"},
        {"iss": ISS.issuer.upper()},
        {"aud": []},
        {"aud": [None]},
        {"aud": ["mcp://test-server", "mcp://test-server"]},
    ],
)
async def test_identity_spellings_refused(claims: dict[str, Any]) -> None:
    verifier = ISS.verifier()
    with pytest.raises(IdentityError):
        await verifier.verify(ISS.token("a", claims=claims))


@pytest.mark.parametrize("header", [{"typ": "at+jwt"}, {"typ": "mcpgov-credential+jwt"}, {"cty": "JWT"}, {"crit": []}])
async def test_identity_headers(header: dict[str, Any]) -> None:
    verifier = ISS.verifier()
    try:
        p = await verifier.verify(ISS.token("a", header=header))
    except IdentityError:
        return
    assert header == {"cty": "JWT"}, p  # cty alone carries nothing


@pytest.mark.parametrize("path", ["/tenant/acme/agent/", "/tenant/acme//agent", "/tenant/acme/./agent"])
async def test_spiffe_spellings(path: str) -> None:
    spire = SpiffeIssuer()
    verifier = spire.verifier() if hasattr(spire, "verifier") else None
    if verifier is None:
        from mcpgov.identity import IdentityVerifier

        verifier = IdentityVerifier(spire.config())
    token = spire.sign(
        {"alg": "ES256", "kid": spire.kid, "typ": "JWT"}, {**_svid_claims(spire), "sub": "spiffe://example.org" + path}
    )
    with pytest.raises(IdentityError):
        await verifier.verify(token)


def _svid_claims(spire: Any) -> dict[str, Any]:
    import base64
    import json

    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(spire.svid("/tenant/acme/agent").split(".")[1] + "=="))
    return claims


async def test_credential_for_agent_refused_under_same_subject_other_issuer() -> None:
    issuer = make_issuer()
    g = build_governed(issuer, with_identity=False)
    cred = await issuer.mint(principal(), audience=AUDIENCE, tools=["status"])
    claims = await g.verifier.verify(cred.token, tool="status", principal=principal())
    with pytest.raises(CredentialError):
        await g.verifier.verify(
            cred.token,
            tool="status",
            principal=Principal(issuer="https://evil.example", subject="agent-1", tenant="acme"),
        )
    assert claims.subject == "agent-1"


@pytest.mark.parametrize("how", ["parent", "principal", "task"])
async def test_revocation_reaches_downstream_child(how: str) -> None:
    reg = "https://registry.example"
    issuer = make_issuer(downstream={AUDIENCE: [reg]})
    g = build_governed(issuer, audience=reg)
    server = principal("deploy-server")
    parent = await issuer.mint(
        principal(), audience=AUDIENCE, tools=["deploy"], ttl=120, task_id="t1", may_act=[server]
    )
    child = await issuer.exchange(parent.token, audience=reg, tools=["status"], actor=server)
    meta: Any = {**as_principal(server), META_CREDENTIAL: child.token}
    async with Client(g.server) as c:
        await c.call_tool("status", {}, meta=meta)
        if how == "parent":
            await issuer.revoke(parent)
        elif how == "principal":
            await issuer.revoke_principal(principal())
        else:
            await issuer.revoke_task(principal(), "t1")
        with pytest.raises(MCPError):
            await c.call_tool("status", {}, meta=meta)
    assert g.ran == ["status"]
