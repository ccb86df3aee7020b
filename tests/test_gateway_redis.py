"""Two gateway processes on one real redis-server share their rate limits (scale out)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from mcp import MCPError

from mcpgov import GovernedClient, Principal
from mcpgov.credentials import (
    ClientCredentials,
    CredentialIssuer,
    IssuerTokenSource,
    RevocationList,
    SigningKeySet,
)
from mcpgov.testing import IdentityIssuer

pytest.importorskip("redis.asyncio", reason="the 'redis' extra is not installed")

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gateway"
AUDIENCE = "https://gateway.acme.example/mcp"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(
    predicate: object, what: str, process: subprocess.Popen[bytes], timeout: float = 90.0, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if callable(predicate) and predicate():
                return
        except (OSError, httpx2.HTTPError):
            pass
        if process.poll() is not None:
            err = log.read_text(errors="replace") if log is not None and log.exists() else ""
            raise RuntimeError(f"{what} exited: {err[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603 - a fixed local binary with fixed arguments
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def pong() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as probe:
            probe.sendall(b"PING\r\n")
            return probe.recv(16).startswith(b"+PONG")

    try:
        _wait(pong, "redis-server", process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


CREDENTIALS_ISSUER = "https://credentials.acme.example"
CREDENTIALS_AUDIENCE = "mcp://acme-gateway"


def _config_dir(
    tmp_path: Path, redis_url: str, idp: IdentityIssuer, prefix: str, credentials: dict[str, Any] | None
) -> Path:
    for name in ("approved-servers.yaml", "notes_server.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    shutil.copytree(EXAMPLE / "pins", tmp_path / "pins")
    (tmp_path / "jwks.json").write_text(json.dumps(idp.jwks()))
    registry = yaml.safe_load((tmp_path / "approved-servers.yaml").read_text())
    registry["servers"][0]["command"] = sys.executable
    registry["servers"][0]["workloads"] = ["*"]
    (tmp_path / "approved-servers.yaml").write_text(yaml.safe_dump(registry))
    policy = {
        "version": 1,
        "rules": [
            {
                "id": "list-three-a-minute",
                "effect": "allow",
                "tenants": ["acme"],
                "tools": ["notes_list_notes"],
                "obligations": {"rate_limit": {"limit": 3, "per": 60, "by": ["principal", "tool"]}},
            },
            {"id": "check", "effect": "allow", "tenants": ["acme"], "tools": ["notes_check_key"]},
        ],
    }
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    config = yaml.safe_load((EXAMPLE / "gateway.yaml").read_text())
    config["state"] = {"redis": redis_url, "prefix": prefix}
    if credentials is not None:
        (tmp_path / "credentials-jwks.json").write_text(json.dumps(credentials))
        config["credentials"] = {
            "issuer": CREDENTIALS_ISSUER,
            "audience": CREDENTIALS_AUDIENCE,
            "jwks_file": "credentials-jwks.json",
        }
    config["upstreams"][0].pop("secret_env")
    for replica in ("a", "b"):
        config["audit"] = {"jsonl": f"audit-{replica}.jsonl"}  # one hash chain per process
        (tmp_path / f"gateway-{replica}.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


@dataclass
class Replicas:
    idp: IdentityIssuer
    urls: list[str]
    prefix: str
    keys: SigningKeySet


@pytest.fixture
def gateways(tmp_path: Path, redis_url: str) -> Iterator[Replicas]:
    """Two gateway processes deciding by a policy with a rate limit, sharing one Redis."""
    yield from _replicas(tmp_path, redis_url, credentials=False)


@pytest.fixture
def credential_gateways(tmp_path: Path, redis_url: str) -> Iterator[Replicas]:
    """Two gateway processes that also require short-lived credentials, sharing one Redis."""
    yield from _replicas(tmp_path, redis_url, credentials=True)


def _replicas(tmp_path: Path, redis_url: str, *, credentials: bool) -> Iterator[Replicas]:
    idp = IdentityIssuer("https://id.acme.example", audience=AUDIENCE)
    prefix = f"gw-test-{time.monotonic_ns()}:"
    keys = SigningKeySet.generate("Ed25519")
    base = _config_dir(tmp_path, redis_url, idp, prefix, keys.jwks() if credentials else None)
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for replica in ("a", "b"):
            port = _free_port()
            config = str(base / f"gateway-{replica}.yaml")
            log = base / f"gateway-{replica}.log"
            with log.open("wb") as stderr:
                process = subprocess.Popen(  # noqa: S603 - this interpreter running our own CLI
                    [sys.executable, "-m", "mcpgov.cli", "gateway", "--config", config, "--port", str(port)],
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env={**os.environ, "PYTHONWARNINGS": "ignore"},
                )
            processes.append(process)
            ready = f"http://127.0.0.1:{port}/readyz"
            _wait(lambda url=ready: httpx2.get(url).status_code == 200, "gateway", process, log=log)
            urls.append(f"http://127.0.0.1:{port}/mcp")
        yield Replicas(idp, urls, prefix, keys)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck drain must not leak the process
                process.kill()
                process.wait(timeout=10)
                raise


async def test_two_gateway_processes_share_one_rate_limit_through_redis(gateways: Replicas, redis_url: str) -> None:
    idp, (first, second) = gateways.idp, gateways.urls
    token = idp.token("notes-agent", tenant="acme")
    async with (
        GovernedClient(first, identity=token, mode="legacy") as a,
        GovernedClient(second, identity=token, mode="legacy") as b,
    ):
        assert not (await a.call_tool("notes_list_notes", {})).is_error
        assert not (await b.call_tool("notes_list_notes", {})).is_error
        assert not (await a.call_tool("notes_list_notes", {})).is_error
        with pytest.raises(MCPError) as limited:
            await b.call_tool("notes_list_notes", {})
        assert limited.value.code == -32003
        with pytest.raises(MCPError):
            await a.call_tool("notes_list_notes", {})
        other = idp.token("other-agent", tenant="acme")
    async with GovernedClient(second, identity=other, mode="legacy") as c:
        assert not (await c.call_tool("notes_list_notes", {})).is_error


async def test_a_revocation_made_once_is_enforced_by_every_replica(
    credential_gateways: Replicas, redis_url: str
) -> None:
    gateways = credential_gateways
    from mcpgov.redis import RedisStateStore

    idp, (first, second) = gateways.idp, gateways.urls
    token = idp.token("notes-agent", tenant="acme")
    agent = Principal(issuer="https://id.acme.example", subject="notes-agent", tenant="acme")
    async with RedisStateStore.from_url(redis_url, prefix=gateways.prefix) as store:
        issuer = CredentialIssuer(CREDENTIALS_ISSUER, gateways.keys, revocations=RevocationList(store), max_ttl=120)
        credentials = ClientCredentials(IssuerTokenSource(issuer), audience=CREDENTIALS_AUDIENCE, ttl=60)
        async with (
            GovernedClient(first, credentials, identity=token, principal=agent, mode="legacy") as a,
            GovernedClient(second, credentials, identity=token, principal=agent, mode="legacy") as b,
        ):
            assert not (await a.call_tool("notes_check_key", {})).is_error
            assert not (await b.call_tool("notes_check_key", {})).is_error
            await issuer.revoke_principal(agent)
            for replica in (a, b):
                with pytest.raises(MCPError) as revoked:
                    await replica.call_tool("notes_check_key", {})
                assert revoked.value.code == -32002
        async with GovernedClient(first, identity=token, principal=agent, mode="legacy") as bare:
            with pytest.raises(MCPError) as missing:
                await bare.call_tool("notes_check_key", {})
            assert missing.value.code == -32002
