"""Redaction holds for generated secrets in many shapes (key=value with any key spelling, JSON,
URI user-info, HTTP headers, XML elements, command-line options, base64, hex, URL-encoding), planted
in every recorded field: none reaches any sink (memory, a callback, logging, the JSON Lines file)."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from urllib.parse import quote

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpgov import AuditEvent, Auditor, GovContext, Principal
from mcpgov.audit import JsonlSink, LoggingSink, Redactor, event_to_dict
from mcpgov.testing import InMemoryAuditSink

# A letter no hash or id holds starts each secret, so finding it in a sink means it leaked.
SECRET = st.from_regex(r"[G-Zg-z][A-Za-z0-9_~+.-]{7,23}", fullmatch=True)
WORDS = (
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh-token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "aws_secret_access_key",
    "private_key",
    "auth",
    "credentials",
    "session_key",
)


@st.composite
def key_names(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(WORDS))
    prefix = draw(st.sampled_from(["", "db_", "DB_", "my.", "x-", "AWS_", "github", "service-"]))
    suffix = draw(st.sampled_from(["", "_value", "2", ".prod", "-x"]))
    name = prefix + word + suffix
    case = draw(st.sampled_from(["same", "upper", "lower", "title"]))
    return {"same": name, "upper": name.upper(), "lower": name.lower(), "title": name.title()}[case]


@st.composite
def planted(draw: st.DrawFn) -> tuple[str, str]:
    """A text carrying a secret, and the part of it that must not reach a sink."""
    secret = draw(SECRET)
    key = draw(key_names())
    shape = draw(
        st.sampled_from(
            [
                "kv",
                "kv-space",
                "json",
                "json-nested",
                "escaped-json",
                "uri",
                "header",
                "b64",
                "basic",
                "percent",
                "percent-nested",
                "percent-json",
                "arrow",
                "hex",
                "hex-0x",
                "xml",
                "cli",
            ]
        )
    )
    if shape == "kv":
        text = f"{key}={secret}"
    elif shape == "kv-space":
        text = f"config {key} : {secret} end"
    elif shape == "json":
        text = json.dumps({key: secret})
    elif shape == "json-nested":
        text = json.dumps({"config": {"name": "x", key: secret}})
    elif shape == "escaped-json":
        text = json.dumps(json.dumps({key: secret}))
    elif shape == "uri":
        scheme = draw(st.sampled_from(["https", "postgres", "redis", "amqp", "s3"]))
        text = f"{scheme}://admin:{secret}@db.internal:5432/prod?x=1"
    elif shape == "header":
        header = draw(st.sampled_from(["Authorization: Bearer", "Authorization: Token", "X-Api-Key:", "Cookie: sid="]))
        text = f"{header} {secret}" if not header.endswith("=") else f"{header}{secret}; theme=dark"
    elif shape == "b64":
        encoded = base64.b64encode(f"{key}={secret}".encode()).decode()
        text = f"blob {encoded} end"
        return text, encoded
    elif shape == "basic":
        encoded = base64.b64encode(f"admin:{secret}".encode()).decode()
        text = f"Basic {encoded}"
        return text, encoded
    elif shape == "xml":  # an XML or HTML element (SOAP bodies, settings files)
        attributes = draw(st.sampled_from(["", ' type="string"']))
        text = f"<config><{key}{attributes}>{secret}</{key}></config>"
    elif shape == "cli":  # a long command-line option and its value
        text = f"deploy --region eu --{key} {secret} --verbose"
    elif shape in ("hex", "hex-0x"):  # a hex dump of a config line or a header
        encoded = f"{key}={secret}".encode().hex()
        encoded = encoded.upper() if draw(st.booleans()) else encoded
        prefix = "0x" if shape == "hex-0x" else ""
        return f"payload {prefix}{encoded} end", encoded
    elif shape == "arrow":  # Ruby/PHP hashes, C pointers, Pascal assignment
        arrow = draw(st.sampled_from([" => ", "=>", " -> ", "->", " := "]))
        text = f"{{{key}{arrow}{secret}}}"
    elif shape == "percent":  # a form body or query string, URL-encoded once more (a redirect target)
        encoded = quote(f"{key}={secret}", safe="")
        text = f"https://app.example/cb?state=1&next={encoded}"
        return text, encoded[encoded.index("%3D") + 3 :]
    elif shape == "percent-nested":  # encoded twice: a redirect inside a redirect
        inner = quote(f"https://id.example/cb?{key}={secret}&x=1", safe="")
        encoded = quote(f"https://app.example/login?next={inner}", safe="")
        return f"file:///srv/x?r={encoded}", quote(quote(secret, safe=""), safe="")
    else:
        encoded = quote(json.dumps({key: secret}), safe="")
        return f"data={encoded}", quote(secret, safe="")
    return text, secret


FIELDS = (
    "target",
    "detail",
    "reason",
    "purpose",
    "task_id",
    "rule",
    "tenant",
    "approver",
    "attribute",
    "attribute_key",
    "actors",
)


def _event(field: str, text: str) -> AuditEvent:
    ctx = GovContext(
        side="server",
        method="resources/read",
        kind="resource",
        target="file:///srv/report.txt",
        principal=Principal(issuer="https://idp.example", subject="agent", tenant="acme"),
        tenant="acme",
        request_id="r-1",
    )
    values: dict[str, object] = {"effect": "deny"}
    if field == "attribute":
        values["attributes"] = {"nested": [{"note": text}], "plain": text}
    elif field == "attribute_key":  # a mapping keyed by the text (recorded arguments, upstream data)
        values["attributes"] = {"nested": [{text: "on"}], text: 1, "plain": {"a": {text: None}}}
    elif field == "actors":
        values["actors"] = ("someone", text)
    else:
        values[field] = text
    return AuditEvent.from_context(ctx, "decision", **values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plant=planted(), field=st.sampled_from(FIELDS))
def test_no_planted_secret_reaches_any_sink(tmp_path: Path, plant: tuple[str, str], field: str) -> None:
    text, secret = plant
    memory = InMemoryAuditSink()
    called: list[AuditEvent] = []
    logger = logging.getLogger("tests.redact.property")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    path = tmp_path / "audit.jsonl"
    path.unlink(missing_ok=True)
    sink = JsonlSink(path)
    try:
        auditor = Auditor([memory, called.append, LoggingSink(logger), sink], redactor=Redactor())
        anyio.run(auditor.emit, _event(field, text))
    finally:
        logger.removeHandler(handler)
        sink.close()
    outputs = [
        json.dumps([event_to_dict(e) for e in memory.events]),
        json.dumps([event_to_dict(e) for e in called]),
        "\n".join(r.getMessage() + json.dumps(getattr(r, "mcpgov_audit", None)) for r in records),
        path.read_text("utf-8"),
    ]
    for output in outputs:
        assert secret not in output, (field, text)
    assert "[redacted]" in outputs[0]


def test_resource_uris_recorded_as_targets_lose_their_user_info() -> None:
    redactor = Redactor()
    event = _event("target", "postgres://app:s3cret-Pa55@db/prod")
    changed = redactor.event_changes(event)
    assert changed is not None and changed["target"] == "postgres://[redacted]@db/prod"


def test_ordinary_text_is_left_alone() -> None:
    redactor = Redactor()
    for text in ("read_file", "https://api.example.com/v1/items", "task-20260101-abcdef", "sha256:" + "0" * 64):
        assert redactor.text(text) == text


def test_keys_that_read_the_same_once_redacted_are_all_kept() -> None:
    redactor = Redactor()
    first, second = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
    cleaned = redactor.value({first: 1, second: 2, "[redacted] (2)": 3, "plain": 4})
    assert sorted(cleaned.values()) == [1, 2, 3, 4]
    assert first not in json.dumps(cleaned) and second not in json.dumps(cleaned)
    assert cleaned["plain"] == 4 and cleaned["[redacted]"] == 1


NAMING_FIELDS = ("name", "key", "Name", "Key", "header", "variable", "field")


@st.composite
def named_pairs(draw: st.DrawFn) -> tuple[object, str]:
    """A secret beside its name in a structure: a name/value object (Kubernetes env, HAR headers,
    tags), a [name, value] pair (headers as a list) or a mapping entry."""
    secret, key = draw(SECRET), draw(key_names())
    shape = draw(st.sampled_from(["object", "pair", "pair-nested", "mapping"]))
    if shape == "mapping":  # the name as a mapping's key, as in text ``name=value``
        return {"config": {"region": "eu", key: secret}}, secret
    if shape == "object":
        naming = draw(st.sampled_from(NAMING_FIELDS))
        value_field = draw(st.sampled_from(["value", "Value", "val", "content", "default"]))
        return [{naming: key, value_field: secret}], secret
    if shape == "pair":
        return [[key, secret]], secret
    return {"request": {"headers": [["Accept", "text/plain"], [key, secret]]}}, secret


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plant=named_pairs())
def test_no_secret_beside_its_name_reaches_any_sink(tmp_path: Path, plant: tuple[object, str]) -> None:
    structure, secret = plant
    memory = InMemoryAuditSink()
    path = tmp_path / "audit.jsonl"
    path.unlink(missing_ok=True)
    sink = JsonlSink(path)
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="deploy", tenant="acme")
    try:
        auditor = Auditor([memory, sink], redactor=Redactor())
        anyio.run(auditor.emit, AuditEvent.from_context(ctx, "decision", attributes={"arguments": structure}))
    finally:
        sink.close()
    for output in (json.dumps([event_to_dict(e) for e in memory.events]), path.read_text("utf-8")):
        assert secret not in output, structure


def test_names_and_values_that_are_not_secret_stay() -> None:
    redactor = Redactor()
    value = {"env": [{"name": "LOG_LEVEL", "value": "debug"}], "headers": [["Accept", "text/plain"]], "pair": [1, 2]}
    assert redactor.value(value) == value
