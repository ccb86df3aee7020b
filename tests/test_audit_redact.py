"""Redaction before any sink: tokens, configured secrets and named fields never reach a sink's
output (searched for in the memory sink, a callback, the log, the JSON Lines file and the spans);
arguments are a hash plus only the fields configuration allows."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mcpgov import (
    AuditEvent,
    Auditor,
    ConfigurationError,
    Decision,
    GovContext,
    Hooks,
    IdentityError,
    govern,
)
from mcpgov.audit import REDACT_FIELDS, FanOut, JsonlSink, LoggingSink, OTelSink, QueuedSink, Redactor
from mcpgov.audit._redact import REDACTED
from mcpgov.testing import InMemoryAuditSink
from tests.test_audit_otel import spans  # noqa: F401 - fixture

pytestmark = pytest.mark.anyio

JWT = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZ2VudC03IiwidGVuYW50IjoiYWNtZSJ9.c2lnbmF0dXJlLWJ5dGVz"
BEARER_VALUE = "opaque-access-token-0123456789abcdef"
PASSWORD = "correct-horse-battery-staple"
ACCOUNT = "acct-77889900"  # matched only by a configured pattern
SSN = "123-45-6789"  # a field the policy's obligation names
DECLARED = "tool-declared-value-4242"  # a field the tool's declaration names
PLANTED = (JWT, BEARER_VALUE, PASSWORD, ACCOUNT, SSN, DECLARED)


def build(auditor: Auditor) -> MCPServer:
    server = MCPServer("redact")
    hooks = Hooks()

    @server.tool()
    def deploy(  # noqa: PLR0917 - the tool's parameters are its arguments on the wire
        version: str, ssn: str = "", password: str = "", note: str = "", auth: str = "", pin: str = ""
    ) -> str:
        return f"deployed {version}"

    @server.tool()
    def transfer(account: str) -> str:
        return "moved"

    async def declare_and_fail(ctx: GovContext, call_next: Any) -> Any:
        if ctx.target == "whoami":
            raise IdentityError(f"token {JWT} has expired", reason="expired")
        if ctx.target == "deploy":
            ctx = ctx.with_extension(REDACT_FIELDS, ("pin",))
        if ctx.audit is not None and ctx.target == "deploy":
            await ctx.audit.emit(
                AuditEvent.from_context(
                    ctx,
                    "credential.verified",
                    attributes={"client_secret": PASSWORD, "header": f"Bearer {BEARER_VALUE}"},
                )
            )
        return await call_next(ctx)

    @hooks.tool("deploy")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("release-managers", redact=("ssn",))

    @hooks.tool("transfer")
    def deny(ctx: GovContext) -> Decision:
        return Decision.deny("no-transfers", f"account {ctx.arguments['account'] if ctx.arguments else ''} is frozen")

    govern(server, declare_and_fail, hooks, audit=auditor)
    return server


async def test_no_token_or_secret_reaches_any_sink(
    tmp_path: Path,
    mode: str,
    spans: InMemorySpanExporter,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "audit.jsonl"
    memory = InMemoryAuditSink()
    dumped: list[str] = []

    async def callback(event: AuditEvent) -> None:
        dumped.append(event.model_dump_json())

    auditor = Auditor(
        [memory, callback, OTelSink(), QueuedSink(FanOut(JsonlSink(path), LoggingSink()))],
        redactor=Redactor(patterns=[r"acct-\d{8}"], record_arguments=True),
    )
    server = build(auditor)
    with caplog.at_level(logging.INFO, logger="mcpgov.audit.events"):
        async with Client(server, mode=mode) as client:
            arguments = {
                "version": "1.2.3",
                "ssn": SSN,
                "password": PASSWORD,
                "note": f"ping me with {JWT}",
                "auth": f"Bearer {BEARER_VALUE}",
                "pin": DECLARED,
            }
            assert (await client.call_tool("deploy", arguments)).is_error is False
            with pytest.raises(MCPError) as caught:
                await client.call_tool("transfer", {"account": ACCOUNT})
            assert ACCOUNT not in str(caught.value.error)
            with pytest.raises(MCPError):
                await client.call_tool("whoami", {})
        assert auditor.flush(5.0)
    log_text = caplog.text + "\n".join(json.dumps(r.__dict__.get("mcpgov_audit", {})) for r in caplog.records)
    span_text = "\n".join(s.to_json() for s in spans.get_finished_spans())
    outputs = {
        "memory": "\n".join(e.model_dump_json() for e in memory.events),
        "callback": "\n".join(dumped),
        "jsonl": path.read_text(),
        "logging": log_text,
        "otel": span_text,
        "reprs": "\n".join(repr(e) for e in memory.events) + repr(auditor) + repr(auditor.redactor),
    }
    for name, text in outputs.items():
        assert text, name
        for secret in PLANTED:
            assert secret not in text, (name, secret)
    # What may be recorded still is: the allowed, non-secret argument, and the redaction markers.
    (allowed,) = [e for e in memory.decisions() if e.target == "deploy"]
    recorded = allowed.attributes["arguments"]
    assert recorded["version"] == "1.2.3"
    assert recorded["ssn"] == recorded["password"] == recorded["pin"] == REDACTED
    assert recorded["note"] == f"ping me with {REDACTED}"
    assert allowed.args_hash is not None and allowed.args_hash.startswith("sha256:")
    (refused,) = [e for e in memory.decisions() if e.target == "whoami"]
    assert refused.detail == f"token {REDACTED} has expired"
    auditor.close()


async def test_arguments_are_only_a_hash_by_default(mode: str) -> None:
    memory = InMemoryAuditSink()
    server = build(Auditor([memory]))
    async with Client(server, mode=mode) as client:
        await client.call_tool("deploy", {"version": "9.9.9-unique"})
    assert "9.9.9-unique" not in "\n".join(e.model_dump_json() for e in memory.events)
    assert all(e.args_hash for e in memory.events if e.target == "deploy")


async def test_record_arguments_per_tool_keeps_only_the_listed_fields(mode: str) -> None:
    memory = InMemoryAuditSink()
    redactor = Redactor(record_arguments={"deploy": ["version", "ssn"]})
    server = build(Auditor([memory], redactor=redactor))
    async with Client(server, mode=mode) as client:
        await client.call_tool("deploy", {"version": "2.0", "ssn": SSN, "note": "hello"})
    (decision,) = [e for e in memory.decisions() if e.target == "deploy"]
    # "ssn" is listed but the policy's obligation names it: redacted; "note" is not listed: absent.
    assert decision.attributes["arguments"] == {"version": "2.0", "ssn": REDACTED}


def test_redactor_finds_tokens_and_configured_secrets_in_text() -> None:
    redactor = Redactor(patterns=[r"acct-\d{8}"])
    assert redactor.text(f"Authorization: Bearer {BEARER_VALUE}") == f"Authorization: {REDACTED}"
    assert redactor.text(f"id_token={JWT}&x=1") == f"id_token={REDACTED}&x=1"
    assert redactor.text(f"see {ACCOUNT}.") == f"see {REDACTED}."
    assert redactor.text("api_key = sk-live-abcdefghijklmnopqrstuv") == f"api_key = {REDACTED}"
    assert redactor.text("resource secret://keys stays") == "resource secret://keys stays"
    assert redactor.text("ghp_" + "a" * 36) == REDACTED
    jwe = ".".join(
        (
            "eyJhbGciOiJSU0EtT0FFUCJ9",
            "OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGe",
            "48V1_ALb6US04U3b",
            "5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A",
            "XFBoMYUZodetZdvTiFvSkQ",
        )
    )
    assert redactor.text(f"x {jwe} y") == f"x {REDACTED} y"


def test_secret_names_are_redacted_but_identifiers_kept() -> None:
    redactor = Redactor(fields=["ssn"])
    value = {
        "password": "p",
        "GitHub-Token": "t",
        "credential_id": "jti-1",
        "token_count": 3,
        "nested": [{"ssn": "1", "ok": "fine", "private_key": "k"}],
    }
    assert redactor.value(value) == {
        "password": REDACTED,
        "GitHub-Token": REDACTED,
        "credential_id": "jti-1",
        "token_count": 3,
        "nested": [{"ssn": REDACTED, "ok": "fine", "private_key": REDACTED}],
    }


def test_redactor_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="invalid redaction pattern"):
        Redactor(patterns=["("])
    with pytest.raises(ConfigurationError, match="matches the empty string"):
        Redactor(patterns=[".*"])
    with pytest.raises(ConfigurationError):
        Redactor(fields="ssn")
    with pytest.raises(ConfigurationError):
        Redactor(record_arguments="version")
    with pytest.raises(ConfigurationError):
        Auditor(redactor="strict")  # type: ignore[arg-type]


_b64url = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=8, max_size=40)


@given(
    before=st.text(max_size=30),
    after=st.text(max_size=30),
    header=_b64url,
    payload=_b64url,
    signature=_b64url,
)
def test_any_jwt_anywhere_in_text_is_redacted(
    before: str, after: str, header: str, payload: str, signature: str
) -> None:
    token = f"eyJ{header}.{payload}.{signature}"
    redacted = Redactor().text(f"{before}{token}{after}")
    assert token not in redacted
    assert Redactor().text(redacted) == redacted  # redaction is idempotent


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()


@given(st.recursive(_scalars, lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=20))
def test_any_value_becomes_json_safe_without_raising(value: Any) -> None:
    import rfc8785

    cleaned = Redactor().value(value)
    rfc8785.dumps(cleaned)  # canonical JSON accepts whatever redaction returns


_TEXT_FIELDS = (
    "side",
    "effect",
    "outcome",
    "error_code",
    "method",
    "kind",
    "target",
    "principal",
    "tenant",
    "session_id",
    "task_id",
    "purpose",
    "rule",
    "reason",
    "detail",
    "credential_id",
    "engine",
    "policy_version",
    "approver",
    "auth_method",
    "request_id",
)


def _plain_event(**fields: Any) -> AuditEvent:
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="read_file", tenant="acme")
    given: dict[str, Any] = {"effect": "allow", "rule": "r", "reason": "allowed", **fields}
    return AuditEvent.from_context(ctx, "decision", **given)


@pytest.mark.parametrize("field", _TEXT_FIELDS)
def test_a_redactor_that_remembers_clean_values_still_redacts_every_text_field(field: str) -> None:
    """Values found clean are remembered so usual events are cleared at once; a new value in any text
    field is still checked, also after the remembered values were dropped at their bound."""
    redactor = Redactor()
    assert redactor.event_changes(_plain_event()) is None  # remembered
    token = "Bearer " + "Zk" * 12
    changes = redactor.event_changes(_plain_event(**{field: f"see {token}"}))
    assert changes == {field: "see [redacted]"}
    for i in range(5_000):  # past the bound: the remembered values are dropped and refilled
        assert redactor.event_changes(_plain_event(detail=f"clean note {i}")) is None
    assert redactor.event_changes(_plain_event()) is None
    changes = redactor.event_changes(_plain_event(**{field: f"again {token}"}))
    assert changes == {field: "again [redacted]"}


@pytest.mark.parametrize(
    "secret",
    [
        "github_pat_" + "A1b2" * 10,
        "glpat-" + "x9Y8-" * 5,
        "npm_" + "a1B2c3" * 6,
        "AIza" + "Sy-_9" * 7,
        "sk_live_" + "51Hq" * 6,
        "rk_test_" + "Zz09" * 5,
        "sk-proj-" + "aB3_" * 8,
        "sk-ant-api03-" + "Q7w-" * 8,
    ],
)
def test_vendor_key_formats_are_redacted_by_default(secret: str) -> None:
    redactor = Redactor()
    for text in (secret, f"deploy with {secret} now", f'{{"value": "{secret}"}}'):
        redacted = redactor.text(text)
        assert secret not in redacted
        assert REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "PASSeyJ00000000.00000000.00000000=0",
        "x-api-token-eyJhbGciOi.eyJzdWIi.c2lnbmF0=abc",
        "db_passwordeyJ0eXAi.eyJpc3Mi.AAAA: value",
    ],
)
def test_a_token_inside_the_name_of_a_redacted_pair_is_redacted_too(text: str) -> None:
    redacted = Redactor().text(text)
    token = re.search(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_=-]+", text)
    assert token is not None
    assert token.group(0) not in redacted
    assert REDACTED in redacted


async def test_a_secret_in_the_key_of_a_recorded_argument_reaches_no_sink(tmp_path: Path, mode: str) -> None:
    """A mapping argument keyed by a token (sessions by id, headers as names) is recorded with
    its keys redacted like its values, in every sink, and no entry is dropped."""
    github = "ghp_" + "Q7r8A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"
    memory = InMemoryAuditSink()
    log = tmp_path / "audit.jsonl"
    sink = JsonlSink(log)
    server = MCPServer("mapper")

    @server.tool()
    def store(entries: dict[str, str]) -> str:
        return f"{len(entries)} stored"

    hooks = Hooks()

    @hooks.tool("store")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("store-ok")

    govern(server, hooks, audit=Auditor([memory, sink], redactor=Redactor(record_arguments=True)))
    entries = {github: "a", f"Authorization: Bearer {BEARER_VALUE}": "b", "password=hunter2-xyz": "c", "plain": "d"}
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("store", {"entries": entries})
    assert result.is_error is False
    sink.close()
    (decision,) = [e for e in memory.decisions() if e.target == "store"]
    recorded = decision.attributes["arguments"]["entries"]
    assert len(recorded) == len(entries) and recorded["plain"] == "d"
    for text in ("\n".join(e.model_dump_json() for e in memory.events), log.read_text("utf-8")):
        for secret in (github, BEARER_VALUE, "hunter2-xyz"):
            assert secret not in text


async def test_a_secret_beside_its_name_in_a_recorded_argument_reaches_no_sink(mode: str) -> None:
    """Environment variables as name/value objects, headers as [name, value] pairs: the value of
    an entry named like a secret is redacted, the other entries stay readable."""
    memory = InMemoryAuditSink()
    server = MCPServer("deployer")

    @server.tool()
    def deploy(env: list[dict[str, str]], headers: list[list[str]]) -> str:
        return f"{len(env)} variables, {len(headers)} headers"

    hooks = Hooks()

    @hooks.tool("deploy")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("deploy-ok")

    govern(server, hooks, audit=Auditor([memory], redactor=Redactor(record_arguments=True)))
    env = [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "ADMINPASS", "value": "pa55-word-9"}]
    headers = [["Accept", "text/plain"], ["X-Service-Token", "svc-0123456789"]]
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("deploy", {"env": env, "headers": headers})
    assert result.is_error is False
    (decision,) = [e for e in memory.decisions() if e.target == "deploy"]
    assert decision.attributes["arguments"] == {
        "env": [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "ADMINPASS", "value": REDACTED}],
        "headers": [["Accept", "text/plain"], ["X-Service-Token", REDACTED]],
    }
    recorded = "\n".join(e.model_dump_json() for e in memory.events)
    assert "pa55-word-9" not in recorded and "svc-0123456789" not in recorded
