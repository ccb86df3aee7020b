"""Stored artefacts in real SDK sessions: a credential minted by an earlier release, verified with
its stored public keys, still runs exactly the call it was bound to (in both protocol modes), and
a server that writes the hash-chained audit log still produces a log that verifies."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, cast

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import META_CREDENTIAL, Decision, GovContext, Hooks, govern
from mcpgov.audit import JsonlSink, verify_chain
from mcpgov.credentials import CredentialMiddleware, CredentialVerifier, RevocationList, VerificationKeys
from mcpgov.testing import InMemoryAuditSink

pytestmark = pytest.mark.anyio

VECTORS = Path(__file__).resolve().parent / "vectors"
CREDENTIAL = json.loads((VECTORS / "credentials/credential.json").read_text("utf-8"))
PAYLOAD = CREDENTIAL["payload"]
BOUND_ARGS = {"path": "/reports/q4.txt"}


class Files:
    """A governed file server accepting credentials of the stored issuer, at a frozen time."""

    def __init__(self, now: float, *, log: Path | None = None) -> None:
        self.ran: list[str] = []
        self.sink = InMemoryAuditSink()
        self.server = MCPServer("files", version="1.0.0")

        @self.server.tool()
        def read_file(path: str) -> str:
            self.ran.append(path)
            return f"contents of {path}"

        hooks = Hooks()

        @hooks.tool("*")
        def allow(ctx: GovContext) -> Decision:
            return Decision.allow("allow-all")

        verifier = CredentialVerifier(
            issuer=CREDENTIAL["inputs"]["issuer"],
            audience=PAYLOAD["aud"],
            keys=VerificationKeys.from_file(VECTORS / "credentials/jwks.json"),
            revocations=RevocationList(max_ttl=300.0, clock=lambda: now),
            max_ttl=300.0,
            clock=lambda: now,
        )
        sinks: list[Any] = [self.sink]
        if log is not None:
            self.jsonl = JsonlSink(log, max_bytes=None)
            sinks.append(self.jsonl)
        govern(self.server, CredentialMiddleware(verifier), hooks, audit=sinks)

    async def call(self, client: Client, args: dict[str, Any], token: str) -> Any:
        return await client.call_tool("read_file", args, meta=cast(Any, {META_CREDENTIAL: token}))


async def test_a_stored_credential_runs_its_bound_call_once(mode: str) -> None:
    files = Files(PAYLOAD["iat"] + 1.0)
    async with Client(files.server, mode=mode) as client:
        result = await files.call(client, BOUND_ARGS, CREDENTIAL["token"])
        assert result.is_error is False
        # Single use: the same stored token is refused the second time.
        with pytest.raises(MCPError) as caught:
            await files.call(client, BOUND_ARGS, CREDENTIAL["token"])
        assert (caught.value.code, caught.value.message) == (-32002, "Invalid credential")
    assert files.ran == [BOUND_ARGS["path"]]
    allowed = [e for e in files.sink.decisions() if e.effect == "allow"]
    assert [(e.credential_id, e.tenant, e.task_id, e.purpose) for e in allowed] == [
        (PAYLOAD["jti"], PAYLOAD["tenant"], PAYLOAD["task"], PAYLOAD["purpose"])
    ]
    (refused,) = [e for e in files.sink.decisions() if e.effect == "deny"]
    assert (refused.reason, refused.credential_id) == ("replayed", PAYLOAD["jti"])


@pytest.mark.parametrize(
    ("offset", "args", "reason"),
    [
        (1.0, {"path": "/reports/q3.txt"}, "args_mismatch"),
        (1.0, {"path": "/reports/q4.txt "}, "args_mismatch"),
        (1.0, {"path": "/REPORTS/q4.txt"}, "args_mismatch"),
        (PAYLOAD["exp"] - PAYLOAD["iat"] + 60.0, BOUND_ARGS, "expired"),
    ],
    ids=["other-arguments", "trailing-space", "other-case", "expired"],
)
async def test_a_stored_credential_is_refused_for_anything_else(
    mode: str, offset: float, args: dict[str, Any], reason: str
) -> None:
    files = Files(PAYLOAD["iat"] + offset)
    async with Client(files.server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await files.call(client, args, CREDENTIAL["token"])
    assert (caught.value.code, caught.value.message) == (-32002, "Invalid credential")
    assert CREDENTIAL["token"] not in str(caught.value)
    assert files.ran == []
    (refused,) = [e for e in files.sink.decisions() if e.effect == "deny"]
    assert refused.reason == reason


async def test_a_tampered_stored_credential_is_refused(mode: str) -> None:
    header, payload, signature = CREDENTIAL["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tools"] = ["read_file", "delete_file"]
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    files = Files(PAYLOAD["iat"] + 1.0)
    async with Client(files.server, mode=mode) as client:
        with pytest.raises(MCPError):
            await files.call(client, BOUND_ARGS, f"{header}.{forged_payload}.{signature}")
    assert files.ran == []
    (refused,) = [e for e in files.sink.decisions() if e.effect == "deny"]
    assert refused.reason == "bad_signature"


async def test_a_governed_session_writes_a_log_that_verifies_and_continues_a_stored_one(
    tmp_path: Path, mode: str
) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_bytes((VECTORS / "audit/chain.jsonl").read_bytes())
    stored_head = json.loads((VECTORS / "audit/chain.json").read_text("utf-8"))["head"]
    files = Files(PAYLOAD["iat"] + 1.0, log=log)
    async with Client(files.server, mode=mode) as client:
        await files.call(client, BOUND_ARGS, CREDENTIAL["token"])
    files.jsonl.close()
    report = verify_chain([log], head=files.jsonl.head)
    assert report.ok, report.problems
    lines = log.read_bytes().splitlines()
    assert json.loads(lines[4])["prev"] == stored_head  # the first new line chains to the stored head
    assert len(lines) == 4 + len(files.sink.events)
