"""RFC 8693 token exchange over real HTTP: the issuer's Starlette app and ExchangeTokenSource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError

from mcpgov import ConfigurationError, CredentialError, GovernedClient, Principal
from mcpgov.credentials import (
    ClientCredentials,
    CredentialIssuer,
    ExchangeTokenSource,
    VerificationKeys,
    open_task,
    token_exchange_app,
)
from mcpgov.credentials._claims import CREDENTIAL_TOKEN_TYPE
from mcpgov.credentials._exchange import GRANT_TYPE
from mcpgov.testing import serve_http

from .test_credentials_support import AUDIENCE, as_principal, build_governed, call, make_issuer, principal

pytestmark = pytest.mark.anyio

JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


async def verify_identity(token: str) -> Principal:
    """A stand-in identity verifier: ``id:<subject>:<tenant>`` tokens."""
    kind, _, rest = token.partition(":")
    subject, _, tenant = rest.partition(":")
    if kind != "id" or not subject or not tenant:
        raise ValueError("not a valid identity token")
    return principal(subject, tenant)


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[CredentialIssuer, str]]:
    issuer = make_issuer(downstream={AUDIENCE: ["https://registry.example"]})
    async with serve_http(token_exchange_app(issuer, verify_identity)) as base:
        yield issuer, base


def _form(**fields: Any) -> dict[str, Any]:
    return {"grant_type": GRANT_TYPE, "subject_token_type": JWT_TYPE, **fields}


async def _post(url: str, data: dict[str, Any], **kwargs: Any) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        response: httpx2.Response = await http.post(url, data=data, **kwargs)
        return response


async def test_exchange_returns_a_credential_for_the_verified_workload(endpoint: tuple[CredentialIssuer, str]) -> None:
    issuer, base = endpoint
    response = await _post(
        f"{base}/token",
        _form(
            subject_token="id:agent-1:acme",
            audience=AUDIENCE,
            tool=["deploy", "status"],
            scope="deploy:write",
            task_id="release-42",
            purpose="deploy",
            ttl="90",
        ),
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["issued_token_type"], body["token_type"], body["expires_in"], body["scope"]) == (
        CREDENTIAL_TOKEN_TYPE,
        "N_A",
        90,
        "deploy:write",
    )
    claims = await issuer.verifier(AUDIENCE).verify(body["access_token"], tool="deploy", principal=principal())
    assert (claims.subject, claims.tenant, claims.task_id, claims.purpose) == (
        "agent-1",
        "acme",
        "release-42",
        "deploy",
    )


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
        ({"subject_token": "forged"}, 400, "invalid_grant"),
        ({"subject_token": "id:agent-1:acme", "audience": None}, 400, "invalid_request"),
        ({"subject_token": "id:agent-1:acme", "tool": None}, 400, "invalid_request"),
        ({"subject_token": "id:agent-1:acme", "ttl": "forever"}, 400, "invalid_request"),
        ({"subject_token": "id:agent-1:acme", "resource": "https://other.example"}, 400, "invalid_target"),
        ({"subject_token": "id:agent-1:acme", "subject_token_type": "urn:x"}, 400, "invalid_request"),
        ({"subject_token": "id:agent-1:acme", "requested_token_type": "urn:x"}, 400, "invalid_request"),
    ],
)
async def test_bad_exchange_requests_get_oauth_errors_that_echo_no_token(
    endpoint: tuple[CredentialIssuer, str], fields: dict[str, Any], status: int, error: str
) -> None:
    _, base = endpoint
    data = _form(subject_token="id:agent-1:acme", audience=AUDIENCE, tool="status")
    data.update(fields)
    data = {k: v for k, v in data.items() if v is not None}
    response = await _post(f"{base}/token", data)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert "id:agent-1" not in response.text
    assert "forged" not in response.text


async def test_non_form_and_oversized_bodies_are_refused(endpoint: tuple[CredentialIssuer, str]) -> None:
    _, base = endpoint
    async with httpx2.AsyncClient() as http:
        as_json = await http.post(f"{base}/token", json={"grant_type": GRANT_TYPE})
        huge = await http.post(f"{base}/token", data={"subject_token": "x" * 20_000})
    assert as_json.json()["error"] == "invalid_request"
    assert huge.status_code == 413


async def test_delegation_and_downstream_exchange_over_http(endpoint: tuple[CredentialIssuer, str]) -> None:
    issuer, base = endpoint
    parent = await issuer.mint(
        principal(),
        audience=AUDIENCE,
        tools=["deploy", "status"],
        ttl=120,
        may_act=[principal("sub-agent"), principal("deployer")],
    )
    delegated = await _post(
        f"{base}/token",
        {
            "grant_type": GRANT_TYPE,
            "subject_token": parent.token,
            "subject_token_type": CREDENTIAL_TOKEN_TYPE,
            "actor_token": "id:sub-agent:acme",
            "actor_token_type": JWT_TYPE,
            "tool": "status",
            "ttl": "30",
        },
    )
    assert delegated.status_code == 200, delegated.text
    child = issuer._own.check_token(delegated.json()["access_token"])
    assert (child.subject, child.tools, child.actors[0][0], child.chain) == (
        "sub-agent",
        ("status",),
        "agent-1",
        (parent.id,),
    )
    widened = await _post(
        f"{base}/token",
        {
            "grant_type": GRANT_TYPE,
            "subject_token": delegated.json()["access_token"],
            "subject_token_type": CREDENTIAL_TOKEN_TYPE,
            "tool": "rollback",
        },
    )
    assert widened.json()["error"] == "invalid_request"
    downstream = await _post(
        f"{base}/token",
        {
            "grant_type": GRANT_TYPE,
            "subject_token": parent.token,
            "subject_token_type": CREDENTIAL_TOKEN_TYPE,
            "actor_token": "id:deployer:acme",
            "actor_token_type": JWT_TYPE,
            "audience": "https://registry.example",
            "tool": "tag",
        },
    )
    assert downstream.status_code == 200, downstream.text
    assert issuer._own.check_token(downstream.json()["access_token"]).audience == "https://registry.example"
    elsewhere = await _post(
        f"{base}/token",
        {
            "grant_type": GRANT_TYPE,
            "subject_token": parent.token,
            "subject_token_type": CREDENTIAL_TOKEN_TYPE,
            "actor_token": "id:deployer:acme",
            "actor_token_type": JWT_TYPE,
            "audience": "https://billing.example",
            "tool": "charge",
        },
    )
    assert elsewhere.json()["error"] == "invalid_target"


async def test_jwks_endpoint_serves_public_keys(endpoint: tuple[CredentialIssuer, str]) -> None:
    issuer, base = endpoint
    async with httpx2.AsyncClient() as http:
        jwks = (await http.get(f"{base}/jwks")).json()
    assert VerificationKeys(jwks).find(issuer.keys.current[0], "Ed25519") is not None


async def test_revoke_endpoint_needs_the_holder(endpoint: tuple[CredentialIssuer, str]) -> None:
    issuer, base = endpoint
    cred = await issuer.mint(principal("agent-1"), audience=AUDIENCE, tools=["status"])
    no_auth = await _post(f"{base}/revoke", {"token": cred.token})
    assert no_auth.status_code == 401
    stranger = await _post(f"{base}/revoke", {"token": cred.token}, headers={"Authorization": "Bearer id:mallory:acme"})
    assert stranger.status_code == 403
    holder = await _post(f"{base}/revoke", {"token": cred.token}, headers={"Authorization": "Bearer id:agent-1:acme"})
    assert holder.status_code == 200
    with pytest.raises(CredentialError):
        await issuer.verifier(AUDIENCE).verify(cred.token, tool="status")


async def test_an_agent_in_another_process_runs_a_task_through_the_endpoint(
    endpoint: tuple[CredentialIssuer, str], mode: str
) -> None:
    issuer, base = endpoint
    governed = build_governed(issuer)
    me = principal("agent-1", "acme")
    source = ExchangeTokenSource(f"{base}/token", lambda: "id:agent-1:acme")
    creds = ClientCredentials(source, audience=AUDIENCE)

    async def identify(ctx: Any, call_next: Any) -> Any:
        return await call_next(ctx.replace(meta={**ctx.meta, **as_principal(me)}))

    async with (
        serve_http(governed.server.streamable_http_app()) as mcp_base,
        GovernedClient(f"{mcp_base}/mcp", identify, creds, mode=mode) as client,
    ):
        async with open_task(client, "release-42", purpose="deploy") as task:
            await client.call_tool("deploy", {"version": "3.1"})
            await client.call_tool("status", {})
        assert len(task.credential_ids) == 3  # deploy, status, and the task binding of the SDK's own listing
    assert governed.ran == ["deploy 3.1", "status"]
    assert {s[2:4] for s in governed.seen} == {("release-42", "deploy")}
    async with Client(governed.server, mode=mode) as plain:
        for token in list(governed.tokens):
            with pytest.raises(MCPError):
                await call(plain, "status", {}, token, me)


async def test_exchange_source_failures_are_credential_errors(endpoint: tuple[CredentialIssuer, str]) -> None:
    _, base = endpoint
    from mcpgov.credentials import CredentialRequest

    refused = ExchangeTokenSource(f"{base}/token", "not-an-identity")
    with pytest.raises(CredentialError) as caught:
        await refused.obtain(CredentialRequest(AUDIENCE, ("status",)), None)
    assert caught.value.reason == "exchange_refused"
    assert "not-an-identity" not in caught.value.detail
    unreachable = ExchangeTokenSource("http://127.0.0.1:9/token", "id:a:b", timeout=1)
    with pytest.raises(CredentialError) as caught:
        await unreachable.obtain(CredentialRequest(AUDIENCE, ("status",)), None)
    assert caught.value.reason == "exchange_failed"
    assert "id:a:b" not in repr(unreachable)


def test_exchange_configuration_is_validated() -> None:
    issuer = make_issuer()

    def sync_verifier(token: str) -> Principal:
        return principal()

    with pytest.raises(ConfigurationError):
        token_exchange_app(issuer, sync_verifier)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ExchangeTokenSource("ftp://x", "t")
    with pytest.raises(ConfigurationError):
        ExchangeTokenSource("https://x/token", "")
