"""Real token sources: OAuth client credentials (secret or RFC 7523 private_key_jwt) against a local
token endpoint on 127.0.0.1, refreshed before expiry; projected token files with rotation and expiry.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from joserfc import jwt
from joserfc.jwk import import_key
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcpgov import ConfigurationError, GovernedClient, IdentityError
from mcpgov.cli import main
from mcpgov.identity import OAuthClientCredentials, ProjectedTokenFile
from mcpgov.testing import IdentityIssuer, serve_http

from .test_identity_session import build

pytestmark = pytest.mark.anyio

SECRET = "s3cret-Value-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class TokenEndpoint:
    """A small OAuth token endpoint: client credentials, client_secret_basic/post or private_key_jwt."""

    def __init__(self, issuer: IdentityIssuer, *, public_jwks: dict[str, Any] | None = None, expires_in: Any = 300):
        self.issuer = issuer
        self.public_jwks = public_jwks
        self.expires_in = expires_in
        self.url = ""
        self.seen: list[dict[str, str]] = []
        self.jtis: set[str] = set()
        self.delay = 0.0

    async def token(self, request: Request) -> JSONResponse:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.seen.append(form)
        if self.delay:
            await anyio.sleep(self.delay)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        client = self._authenticate(request, form)
        if client is None:
            return JSONResponse({"error": "invalid_client", "error_description": "bad credentials"}, status_code=401)
        token = self.issuer.token(client, ttl=float(self.expires_in) if self.expires_in else 3600)
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if "scope" in form:
            body["scope"] = form["scope"]
        return JSONResponse(body)

    def _authenticate(self, request: Request, form: dict[str, str]) -> str | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return client_id if secret == SECRET else None
        if "client_secret" in form:
            return form.get("client_id") if form["client_secret"] == SECRET else None
        assertion = form.get("client_assertion")
        if assertion is None or self.public_jwks is None:
            return None
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return None
        (jwk,) = self.public_jwks["keys"]
        key = import_key(jwk)
        try:
            token = jwt.decode(assertion, key, algorithms=["Ed25519", "ES256", "RS256"])
        except ValueError:
            return None
        claims = token.claims
        if (
            claims.get("aud") != self.url
            or claims.get("iss") != claims.get("sub")
            or claims.get("exp", 0) < time.time()
        ):
            return None
        jti = claims.get("jti")
        if not isinstance(jti, str) or jti in self.jtis:
            return None  # an assertion is single-use (RFC 7523 section 3)
        self.jtis.add(jti)
        return str(claims["sub"])

    def fetches(self) -> int:
        return len(self.seen)


@asynccontextmanager
async def endpoint(issuer: IdentityIssuer, **options: Any) -> AsyncIterator[TokenEndpoint]:
    ep = TokenEndpoint(issuer, **options)
    app = Starlette(routes=[Route("/oauth/token", ep.token, methods=["POST"])])
    async with serve_http(app) as base:
        ep.url = f"{base}/oauth/token"
        yield ep


def _keys(tmp_path: Path, alg: str) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / f"client-{alg}.json"
    assert CliRunner().invoke(main, ["keys", "generate", "--alg", alg, "--out", str(out)]).exit_code == 0
    printed = CliRunner().invoke(main, ["keys", "jwks", str(out)])
    return out, json.loads(printed.output)


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
async def test_client_secret_gets_a_token_once_and_keeps_it(auth_method: str) -> None:
    issuer = IdentityIssuer()
    async with endpoint(issuer) as ep:
        source = OAuthClientCredentials(
            ep.url, "agent-7", client_secret=SECRET, auth_method=auth_method, scope="mcp:tools"
        )
        first = await source.token()
        for _ in range(5):
            assert await source.token() == first
        assert source.current() == first
    assert ep.fetches() == 1 and source.fetches == 1
    assert ep.seen[0]["scope"] == "mcp:tools"
    assert ("client_secret" in ep.seen[0]) is (auth_method == "client_secret_post")
    assert SECRET not in repr(source) and first not in repr(source)


@pytest.mark.parametrize("alg", ["Ed25519", "ES256"])
async def test_private_key_jwt_with_a_key_from_keys_generate(tmp_path: Path, alg: str) -> None:
    key_file, public = _keys(tmp_path, alg)
    issuer = IdentityIssuer()
    async with endpoint(issuer, public_jwks=public, expires_in=120) as ep:
        clock = Clock()
        source = OAuthClientCredentials(ep.url, "agent-9", private_key=key_file, refresh_before=30, clock=clock)
        first = await source.token()
        clock.now += 89  # 31 s left: still outside the refresh margin
        assert await source.token() == first
        clock.now += 2  # 29 s left: refreshed, with a new single-use assertion
        second = await source.token()
    assert second != first
    assert ep.fetches() == 2 and len(ep.jtis) == 2
    assert all(form["client_assertion_type"].endswith("jwt-bearer") for form in ep.seen)


async def test_a_short_lived_token_is_refreshed_at_half_its_life(tmp_path: Path) -> None:
    issuer = IdentityIssuer()
    async with endpoint(issuer, expires_in=40) as ep:
        clock = Clock()
        source = OAuthClientCredentials(ep.url, "agent", client_secret=SECRET, refresh_before=60, clock=clock)
        await source.token()
        clock.now += 19
        await source.token()
        assert ep.fetches() == 1
        clock.now += 2
        await source.token()
    assert ep.fetches() == 2


async def test_concurrent_requests_share_one_fetch() -> None:
    issuer = IdentityIssuer()
    async with endpoint(issuer) as ep:
        ep.delay = 0.2
        source = OAuthClientCredentials(ep.url, "agent", client_secret=SECRET)
        tokens: list[str] = []

        async def get() -> None:
            tokens.append(await source.token())

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(get)
    assert ep.fetches() == 1 and len(set(tokens)) == 1


async def test_a_refused_client_gets_a_clear_error_without_its_secret() -> None:
    issuer = IdentityIssuer()
    async with endpoint(issuer) as ep:
        source = OAuthClientCredentials(ep.url, "agent", client_secret=SECRET[::-1])
        with pytest.raises(IdentityError) as caught:
            await source.token()
    assert caught.value.reason == "identity_unavailable"
    assert "refused the client (invalid_client)" in caught.value.detail
    assert SECRET[::-1] not in caught.value.detail and SECRET[::-1] not in str(caught.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_endpoint_is_a_clear_identity_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/oauth/token"
    source = OAuthClientCredentials(url, "agent", client_secret=SECRET, timeout=5)
    with pytest.raises(IdentityError) as caught:
        await source.token()
    assert "is unreachable" in caught.value.detail and url in caught.value.detail
    assert source.current() is None


async def test_a_failed_refresh_keeps_the_token_until_it_expires_then_refuses() -> None:
    issuer = IdentityIssuer()
    clock = Clock()
    async with endpoint(issuer, expires_in=100) as ep:
        source = OAuthClientCredentials(ep.url, "agent", client_secret=SECRET, refresh_before=50, clock=clock)
        held = await source.token()
        url = ep.url
    source.token_url = url  # the endpoint is gone now
    clock.now += 60  # due for refresh, still valid
    assert await source.token() == held
    clock.now += 50  # expired
    with pytest.raises(IdentityError, match="unreachable"):
        await source.token()
    assert source.current() is None


@pytest.mark.parametrize("answer", [{"token_type": "Bearer"}, {"access_token": "x", "token_type": "mac"}])
async def test_an_unusable_answer_is_refused(answer: dict[str, Any]) -> None:
    async def token(request: Request) -> JSONResponse:
        return JSONResponse(answer)

    async with serve_http(Starlette(routes=[Route("/t", token, methods=["POST"])])) as base:
        with pytest.raises(IdentityError) as caught:
            await OAuthClientCredentials(f"{base}/t", "agent", client_secret=SECRET).token()
    assert caught.value.reason == "identity_unavailable"


async def test_a_token_from_the_endpoint_identifies_the_agent_in_a_session(mode: str) -> None:
    issuer = IdentityIssuer()
    setup = build(issuer.verifier())
    async with endpoint(issuer) as ep:
        source = OAuthClientCredentials(ep.url, "billing-agent", client_secret=SECRET)
        async with GovernedClient(setup.server, identity=source, mode=mode) as client:
            await client.call_tool("work", {})
            await client.call_tool("work", {})
    assert [p.subject for p, _ in setup.seen if p is not None] == ["billing-agent", "billing-agent"]
    assert ep.fetches() == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token_url": "ftp://x/token"}, "https"),
        ({"token_url": "http://idp.example/token"}, "loopback"),
        ({"token_url": "https://u:p@idp.example/token"}, "credentials"),
        ({"client_secret": None}, "exactly one"),
        ({"private_key": {"kty": "OKP"}}, "exactly one"),
        ({"auth_method": "private_key_jwt"}, "does not go with a client secret"),
        ({"client_id": ""}, "client_id"),
        ({"timeout": 0}, "timeout"),
        ({"refresh_before": -1}, "refresh_before"),
    ],
)
def test_bad_configuration_is_one_clear_error(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "token_url": "https://idp.example/token",
        "client_id": "agent",
        "client_secret": SECRET,
    }
    arguments.update(options)
    with pytest.raises(ConfigurationError, match=message):
        OAuthClientCredentials(**arguments)


def test_a_public_or_symmetric_key_cannot_sign_a_client_assertion(tmp_path: Path) -> None:
    _, public = _keys(tmp_path, "Ed25519")
    path = tmp_path / "public.json"
    path.write_text(json.dumps(public))
    with pytest.raises(ConfigurationError, match="public key"):
        OAuthClientCredentials("https://idp.example/token", "agent", private_key=path)
    oct_key = tmp_path / "oct.json"
    oct_key.write_text(json.dumps({"kty": "oct", "k": base64.urlsafe_b64encode(b"k" * 32).decode()}))
    with pytest.raises(ConfigurationError, match="asymmetric"):
        OAuthClientCredentials("https://idp.example/token", "agent", private_key=oct_key)


async def test_a_projected_token_file_rotates_and_an_expired_one_is_refused(tmp_path: Path, mode: str) -> None:
    issuer = IdentityIssuer()
    setup = build(issuer.verifier())
    data = tmp_path / "..2026_12_01"
    data.mkdir()
    (data / "token").write_text(issuer.token("pod-a"))
    link = tmp_path / "token"
    link.symlink_to(data / "token")  # the kubelet's layout: a symlink swapped atomically
    source = ProjectedTokenFile.kubernetes(link, check_interval=0)
    async with GovernedClient(setup.server, identity=source, mode=mode) as client:
        await client.call_tool("work", {})
        fresh = tmp_path / "..2026_12_02"
        fresh.mkdir()
        (fresh / "token").write_text(issuer.token("pod-a", ttl=900))
        tmp_link = tmp_path / "token.tmp"
        tmp_link.symlink_to(fresh / "token")
        os.replace(tmp_link, link)
        await client.call_tool("work", {})
    assert setup.ran == ["work", "work"] and source.reads == 2
    (fresh / "token").write_text(issuer.token("pod-a", ttl=-120))
    expired = ProjectedTokenFile.spiffe_jwt_svid(link, check_interval=0)
    with pytest.raises(IdentityError, match="expired and was not replaced"):
        await expired.token()
    assert expired.current() is None
