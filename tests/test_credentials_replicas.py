"""Two server replicas sharing one real redis-server: revocation reaches both, survives the store
going down and coming back, and cascades to derived credentials."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client, MCPError

from mcpgov import CredentialError
from mcpgov.credentials import RevocationList
from mcpgov.testing import serve_http

from .test_credentials_support import AUDIENCE, FrozenClock, build_governed, call, make_issuer, principal, refusals

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

redis_asyncio = pytest.importorskip("redis.asyncio", reason="the 'redis' extra is not installed")
from mcpgov.redis import RedisStateStore  # noqa: E402 - after the importorskip guard

AGENT = principal("agent-1", "acme")
SUB = principal("sub-agent", "acme")


class RedisServer:
    """A private redis-server on 127.0.0.1 that a test can stop and restart on the same port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - a fixed local binary with fixed arguments
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_revocation_made_while_redis_is_down_reaches_both_replicas_once_it_is_back(
    redis_server: RedisServer, mode: str
) -> None:
    clock = FrozenClock(time.time())
    prefix = f"replicas-{time.monotonic_ns()}:"
    options: dict[str, Any] = {"timeout": 1.0, "prefix": prefix}
    async with (
        RedisStateStore.from_url(redis_server.url, **options) as issuer_store,
        RedisStateStore.from_url(redis_server.url, **options) as store_a,
        RedisStateStore.from_url(redis_server.url, **options) as store_b,
    ):
        issuer = make_issuer(clock, revocations=RevocationList(issuer_store, max_ttl=300, clock=clock))
        replicas = [
            build_governed(issuer, revocations=RevocationList(s, max_ttl=300, clock=clock)) for s in (store_a, store_b)
        ]
        cred = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"], may_act=[SUB])
        child = await issuer.delegate(cred.token, subject=SUB)
        other = await issuer.mint(AGENT, audience=AUDIENCE, tools=["status"])
        async with (
            serve_http(replicas[1].server.streamable_http_app()) as base,
            Client(replicas[0].server, mode=mode) as in_process,
            Client(f"{base}/mcp", mode=mode) as over_http,
        ):
            clients = (in_process, over_http)
            for client in clients:
                await call(client, "status", {}, cred.token, AGENT)
            redis_server.stop()
            with pytest.raises(CredentialError) as caught:
                await issuer.revoke(cred)
            assert caught.value.reason == "revocation_failed"
            assert issuer.revocations.pending == 1
            for client in clients:  # the store is down: nothing is admitted
                with pytest.raises(MCPError) as refused:
                    await call(client, "status", {}, other.token, AGENT)
                assert refused.value.code == -32002
            redis_server.start()  # an empty store: everything it held is gone
            assert await issuer.revocations.flush() == 0
            for client in clients:
                for token, who in ((cred.token, AGENT), (child.token, SUB)):
                    with pytest.raises(MCPError) as refused:
                        await call(client, "status", {}, token, who)
                    assert refused.value.code == -32002
                await call(client, "status", {}, other.token, AGENT)
            await issuer.revoke_principal(AGENT)
            for client in clients:
                with pytest.raises(MCPError):
                    await call(client, "status", {}, other.token, AGENT)
    for replica in replicas:
        # Down: refused as unavailable. Back: the revocations arrived (a store round trip that
        # times out on a loaded machine is refused as unavailable, which fails closed too).
        down, *back = [e.reason for e in refusals(replica.sink)]
        assert down == "revocation_unavailable"
        assert len(back) == 3 and "revoked" in back
        assert set(back) <= {"revoked", "revocation_unavailable"}
        assert replica.ran.count("status") == 2
        assert cred.token not in repr(replica.sink.events)
