"""Client identity providers: a static token, a token file re-read when it changes, a callable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mcp import MCPError

from mcpgov import ConfigurationError, GovernedClient, IdentityError
from mcpgov.identity import CallableToken, StaticToken, TokenFile
from mcpgov.identity._providers import as_identity_provider
from mcpgov.testing import IdentityIssuer

from .test_identity_session import build

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_token_file_is_reread_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    clock = Clock()
    provider = TokenFile(path, check_interval=1.0, clock=clock)
    assert await provider.token() == "first"
    path.write_text("second")
    assert await provider.token() == "first"  # not checked again within the interval
    clock.now += 2
    assert await provider.token() == "second"
    clock.now += 2
    assert await provider.token() == "second"
    assert provider.reads == 2
    os.replace(tmp_path / "token", tmp_path / "gone")
    clock.now += 2
    with pytest.raises(IdentityError) as caught:
        await provider.token()
    assert caught.value.reason == "identity_unavailable"
    assert "second" not in repr(provider)


async def test_empty_token_file_is_an_identity_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  \n")
    with pytest.raises(IdentityError):
        await TokenFile(path).token()


async def test_rotating_token_file_in_a_session(tmp_path: Path, mode: str) -> None:
    issuer = IdentityIssuer()
    setup = build(issuer.verifier())
    path = tmp_path / "token"
    path.write_text(issuer.token("agent-1"))
    async with GovernedClient(setup.server, identity=TokenFile(path, check_interval=0), mode=mode) as client:
        await client.call_tool("work", {})
        path.write_text(issuer.token("agent-1", ttl=600))  # rotated: same workload, new token
        await client.call_tool("work", {})
    assert setup.ran == ["work", "work"]
    assert setup.identity.verifier.signature_checks == 2


async def test_callable_provider_sync_and_async(mode: str) -> None:
    issuer = IdentityIssuer()
    setup = build(issuer.verifier())

    async def fetch() -> str:
        return issuer.token("async-agent")

    for identity in (lambda: issuer.token("sync-agent"), fetch):
        async with GovernedClient(setup.server, identity=identity, mode=mode) as client:
            await client.call_tool("work", {})
    assert [p.subject for p, _ in setup.seen if p is not None] == ["sync-agent", "async-agent"]


async def test_failing_provider_refuses_on_the_client_before_sending(mode: str) -> None:
    issuer = IdentityIssuer()
    setup = build(issuer.verifier())

    def broken() -> str:
        raise RuntimeError("vault down: secret detail")

    async with GovernedClient(setup.server, identity=broken, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("work", {})
    assert caught.value.code == -32001
    assert "secret detail" not in repr(caught.value.error)
    assert setup.sink.events == []  # nothing reached the server


def test_as_identity_provider_accepts_the_usual_shapes(tmp_path: Path) -> None:
    assert isinstance(as_identity_provider("tok"), StaticToken)
    assert isinstance(as_identity_provider(tmp_path / "t"), TokenFile)
    assert isinstance(as_identity_provider(lambda: "tok"), CallableToken)
    with pytest.raises(ConfigurationError):
        as_identity_provider(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        StaticToken(" ")
    assert repr(StaticToken("very-secret")) == "StaticToken([secure])"
