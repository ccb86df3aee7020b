"""Redaction is a total function that holds for secrets in the shapes people write them in.

Properties plant generated secrets under generated key names in text shapes beyond ``key=value``
(escaped separators and quotes, command-line options short and long, YAML block scalars, a name and
its value with no separator, prose, argument vectors split over list items), and check that none
reaches a sink. Others check that text without a planted secret keeps its words, that adversarial
inputs of a megabyte are redacted in bounded time, and that a redactor that fails never lets an
event through in the clear.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import mcpgov
from mcpgov import AuditEvent, Auditor, ConfigurationError, GovContext
from mcpgov.audit import JsonlSink, Redactor, event_to_dict
from mcpgov.identity._keys import _check_url
from mcpgov.testing import InMemoryAuditSink

SECRET = st.from_regex(r"[G-Zg-z][A-Za-z0-9_~+.-]{7,23}", fullmatch=True)
WORDS = (
    "password",
    "Password",
    "PASSWORD",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "client_secret",
    "clientSecret",
    "token",
    "access_token",
    "X_AUTH_TOKEN",
    "refresh-token",
    "api_key",
    "apiKey",
    "Api-Key",
    "APIKEY",
    "private_key",
    "privateKey",
    "aws_secret_access_key",
    "credentials",
    "session_key",
)


@st.composite
def planted(draw: st.DrawFn) -> tuple[str, str]:
    secret, key = draw(SECRET), draw(st.sampled_from(WORDS))
    shape = draw(
        st.sampled_from(
            [
                "escaped-separator",
                "escaped-double-quote",
                "escaped-single-quote",
                "backslash-value",
                "unclosed-quote",
                "short-option",
                "short-option-attached",
                "short-option-quoted",
                "long-option-equals",
                "yaml-block",
                "no-separator",
                "no-separator-tab",
                "prose",
                "prose-colon",
                "export",
                "env-file",
                "session-cookie",
                "query",
                "json-encoded-deeply",
                "base64-twice",
                "json-pair-in-text",
                "xml-attributes",
                "user-option",
            ]
        )
    )
    if shape == "escaped-separator":  # a properties file or a shell word escaping the separator
        sep = draw(st.sampled_from(["\\=", "\\:"]))
        text = draw(st.sampled_from([f"{key}{sep}x={secret}", f"db{sep}{key}={secret}", f"{key}{sep}={secret}"]))
        return text, secret
    if shape == "escaped-double-quote":
        return '{"' + key + '": "a\\"' + secret + '"}', secret
    if shape == "escaped-single-quote":
        return f"{key}='a\\'{secret}'", secret
    if shape == "backslash-value":
        return f"{key}=\\\\{secret}", secret
    if shape == "unclosed-quote":
        quote = draw(st.sampled_from(["'", '"']))
        return f"{key}={quote}{secret} and more", secret
    if shape == "short-option":
        return f"mysql -u root -p {secret} prod", secret
    if shape == "short-option-attached":
        return f"mysqldump -uroot -p{secret} prod", secret
    if shape == "short-option-quoted":
        return f"mysql -p '{secret}' prod", secret
    if shape == "long-option-equals":
        return f"deploy --{key}={secret} --verbose", secret
    if shape == "yaml-block":
        style = draw(st.sampled_from(["|", ">", "|-", ">+", "|2"]))
        return f"db:\n  {key}: {style}\n    {secret}\n    {secret[::-1]}x\n  port: 5432\n", secret
    if shape == "no-separator":
        return f"{key} {secret}\nport 5432", secret
    if shape == "no-separator-tab":
        return f"{key}\t{secret}", secret
    if shape == "prose":
        verb = draw(st.sampled_from(["is", "was", "=", "reads", "set to"]))
        return f"note: the {key} {verb} {secret} for now", secret
    if shape == "prose-colon":
        return f"The {key} is: {secret}.", secret
    if shape == "export":
        return f"export {key.upper().replace('-', '_')}={secret}", secret
    if shape == "env-file":
        return f'# env\nLOG_LEVEL=debug\n{key.upper().replace("-", "_")}="{secret}"\n', secret
    if shape == "session-cookie":
        name = draw(st.sampled_from(["session", "sid", "SESSION", "connect.sid"]))
        return f"sent {name}={secret}; path=/", secret
    if shape == "json-encoded-deeply":  # JSON in a string in a string...
        text = json.dumps({key: secret})
        for _ in range(draw(st.integers(2, 4))):
            text = json.dumps(text)
        return text, secret
    if shape == "base64-twice":
        once = base64.b64encode(f"{key}={secret}".encode())
        encoded = base64.b64encode(once).decode() if draw(st.booleans()) else base64.urlsafe_b64encode(once).decode()
        return f"blob {encoded} end", encoded
    if shape == "json-pair-in-text":  # a name/value structure serialised into a text field
        naming = draw(st.sampled_from(["name", "key", "Name"]))
        data = draw(
            st.sampled_from(
                [[key, secret], [{naming: key, "value": secret}], {"env": [{naming: key, "value": secret}]}]
            )
        )
        text = json.dumps(data, indent=draw(st.sampled_from([None, 2])))
        return draw(st.sampled_from([text, f"could not connect with {text}", f"args={json.dumps(text)}"])), secret
    if shape == "xml-attributes":  # .NET app.config, Java properties XML
        naming = draw(st.sampled_from(["key", "name"]))
        return f'<appSettings><add {naming}="{key}" value="{secret}" /></appSettings>', secret
    if shape == "user-option":
        option = draw(st.sampled_from(["-u ", "-u", "--user ", "--user="]))
        return f"curl {option}admin:{secret} https://api.example/v1", secret
    param = draw(st.sampled_from(["access_token", "api_key", "apiKey", "sig", "pw", "otp", "pin"]))
    return f"https://api.example/v1/items?x=1&{param}={secret}&y=2", secret


def _event(field: str, text: str) -> AuditEvent:
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="deploy", tenant="acme")
    values: dict[str, Any] = {"effect": "deny"}
    if field == "attribute":
        values["attributes"] = {"result": [{"text": text}]}
    elif field == "attribute_key":
        values["attributes"] = {"result": {text: 1}}
    else:
        values[field] = text
    return AuditEvent.from_context(ctx, "decision", **values)


def _written(tmp_path: Path, event: AuditEvent, redactor: Redactor | None = None) -> list[str]:
    memory = InMemoryAuditSink()
    path = tmp_path / "audit.jsonl"
    path.unlink(missing_ok=True)
    sink = JsonlSink(path)
    try:
        anyio.run(Auditor([memory, sink], redactor=redactor or Redactor()).emit, event)
    finally:
        sink.close()
    return [json.dumps([event_to_dict(e) for e in memory.events]), path.read_text("utf-8")]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plant=planted(), field=st.sampled_from(["detail", "reason", "attribute", "attribute_key"]))
def test_no_secret_in_any_shape_reaches_a_sink(tmp_path: Path, plant: tuple[str, str], field: str) -> None:
    text, secret = plant
    for output in _written(tmp_path, _event(field, text)):
        assert secret not in output, text


@settings(max_examples=300, deadline=None)
@given(plant=planted())
def test_redacting_twice_changes_nothing(plant: tuple[str, str]) -> None:
    text, _ = plant
    once = Redactor().text(text)
    assert Redactor().text(once) == once


@st.composite
def argv(draw: st.DrawFn) -> tuple[list[str], str]:
    """A command line as an argument vector: the option naming a secret and its value are two items."""
    secret = draw(SECRET)
    option = draw(st.sampled_from(["-p", "--password", "--token", "--api-key", "--client-secret", "-P"]))
    before = draw(st.lists(st.sampled_from(["-u", "root", "--verbose", "-h", "db"]), max_size=4))
    return ["mysql", *before, option, secret, "prod"], secret


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plant=argv())
def test_no_secret_split_over_argument_items_reaches_a_sink(tmp_path: Path, plant: tuple[list[str], str]) -> None:
    vector, secret = plant
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="run", tenant="acme")
    event = AuditEvent.from_context(ctx, "decision", attributes={"arguments": {"argv": vector}})
    for output in _written(tmp_path, event):
        assert secret not in output, vector
        assert "prod" in output and "mysql" in output


ORDINARY = st.sampled_from(
    [
        "deploy",
        "region",
        "eu-west-1",
        "version",
        "2.4.1",
        "the",
        "report",
        "is",
        "ready",
        "for",
        "review",
        "user",
        "alice",
        "port",
        "5432",
        "https://example.com/docs",
        "file:///srv/report.txt",
        "count=3",
        "mode:fast",
        "--verbose",
        "-v",
        "root",
        "task-20260101-abcdef",
        "a1b2c3d4e5f6",
        "sha256:" + "0" * 64,
        "denied",
        "tool",
        "policy",
        "rule",
        "read_file",
        "MixedCase",
        "x_y.z",
    ]
)


@settings(max_examples=300, deadline=None)
@given(words=st.lists(ORDINARY, min_size=1, max_size=12), seps=st.sampled_from([" ", "\n", ", ", "\t", " | "]))
def test_text_without_secrets_keeps_its_words(words: list[str], seps: str) -> None:
    text = seps.join(words)
    assert Redactor().text(text) == text
    assert Redactor().value({"note": text, "items": words}) == {"note": text, "items": words}


@settings(max_examples=200, deadline=None)
@given(
    word=st.sampled_from(["token", "password", "secret", "api key"]),
    status=st.sampled_from(["expired", "is invalid", "is missing", "was revoked", "has expired", "not found"]),
)
def test_status_words_after_a_secret_name_are_kept(word: str, status: str) -> None:
    text = f"the {word} {status}"
    assert Redactor().text(text) == text


# Adversarial inputs: long runs of what the patterns look for, without the ending they need.
ADVERSARIAL_UNITS = (
    "pass",
    "passx",
    "a",
    "eyJ",
    "eyJa.",
    "x-key",
    "<pass",
    "--pass ",
    "-p",
    "token ",
    "password is ",
    "password: |\n ",
    '"password":"\\',
    "password='",
    "a=",
    "://a",
    "%2",
    "%41",
    "A",
    "ab",
    "Bearer ",
    "_eyJ",
    "\\",
    "pass\\",
    "api key ",
    '["pass',
    '{"name":"pass',
    '"name": "pass  ',
    "-u a",
    "[",
    '{"a":',
    '["password", "',
    "<add key='pass",
)
# The loose shapes: a value on the next line, YAML tags and anchors, encoded separators, names split,
# in leetspeak, with invisible or fullwidth characters (each one is run).
LOOSE_ADVERSARIAL_UNITS = (
    "password\n",
    "--password\n",
    "password: !a ",
    "password: &a !!str ",
    "password&#61;",
    "\\u003d",
    "pas\\=sword",
    "pa55w0rd=",
    "pass\u200b",
    "\uff50\uff41\uff53\uff53",
    "to-ken ",
)


_F = TypeVar("_F", bound=Callable[..., Any])


def _each_example(units: tuple[str, ...], tail: str) -> Callable[[_F], _F]:
    """Hypothesis ``example`` decorators running each of ``units`` with ``tail``."""

    def decorate(test: _F) -> _F:
        for unit in units:
            test = example(unit=unit, tail=tail)(test)
        return test

    return decorate


def _finishes(function: Any, *args: Any) -> Any:
    """``function(*args)``, failing the test if it has not returned after a long while."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(function(*args)), daemon=True)
    worker.start()
    worker.join(120)
    assert result, f"redaction did not finish on {args[0][:40]!r}..."
    return result[0]


@settings(max_examples=25, deadline=None)
@given(
    unit=st.sampled_from(ADVERSARIAL_UNITS + LOOSE_ADVERSARIAL_UNITS), tail=st.sampled_from(["", "=", ":", "@", "."])
)
@_each_example(LOOSE_ADVERSARIAL_UNITS, "=")
def test_a_long_adversarial_text_is_redacted_in_bounded_time(unit: str, tail: str) -> None:
    """A quarter of a million characters of each shape: redaction that backtracks or rescans
    (quadratic or worse) would take hours on it, linear redaction a second or so."""
    text = unit * (250_000 // len(unit)) + tail
    redactor = Redactor()
    cleaned = _finishes(redactor.text, text)
    assert isinstance(cleaned, str)
    _finishes(redactor.value, {text: [text]})


class _Odd:
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize(
    "value",
    [b"password=abc", bytearray(b"x"), _Odd(), {1: 2, None: 3}, [object()], {"a": {"b": [{"c": _Odd()}]}}, 1e400],
)
def test_redaction_takes_any_value(value: Any) -> None:
    json.dumps(Redactor().value(value))


class _Failing(Redactor):
    def event_changes(self, event: AuditEvent) -> dict[str, Any] | None:
        raise RuntimeError("redaction failed")


def test_an_event_the_redactor_fails_on_is_written_without_its_text(tmp_path: Path) -> None:
    secret = "Zq9-unredacted-7Kp"
    ctx = GovContext(side="server", method="tools/call", kind="tool", target=f"t-{secret}", tenant="acme")
    event = AuditEvent.from_context(ctx, "decision", effect="deny", detail=secret, attributes={"x": secret})
    outputs = _written(tmp_path, event, _Failing())
    for output in outputs:
        assert secret not in output
        assert "[redacted]" in output
    assert '"decision"' in outputs[1]


@settings(max_examples=200, deadline=None)
@given(plant=planted(), error=st.sampled_from(["ConfigurationError", "IdentityError", "CredentialError"]))
def test_no_secret_an_error_message_carries_reaches_its_text(plant: tuple[str, str], error: str) -> None:
    text, secret = plant
    raised = getattr(mcpgov, error)(f"could not use {text}")
    for shown in (str(raised), repr(raised), repr(raised.args), raised.detail):
        assert secret not in shown, text


def test_a_configured_url_is_not_echoed_with_its_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        _check_url("http://admin:Zq9xLeak77@idp.example/token?client_secret=Yk3Leak88", "token_url")
    assert "Zq9xLeak77" not in str(caught.value) and "Yk3Leak88" not in str(caught.value)
    assert "idp.example" in str(caught.value)


@st.composite
def encoded_tokens(draw: st.DrawFn) -> tuple[str, str]:
    """A compact JWS (a credential or identity token), encoded whole or inside other data."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": "ES256", "kid": draw(SECRET)}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps({"sub": draw(SECRET)}).encode()).rstrip(b"=")
    signature = base64.urlsafe_b64encode(draw(st.binary(min_size=32, max_size=64))).rstrip(b"=")
    token = b".".join((header, payload, signature)).decode()
    around = draw(st.sampled_from(["{}", '{{"auth": "{}"}}', "Bearer {}", "x {} y"]))
    data = around.format(token).encode()
    encoding = draw(st.sampled_from(["b64", "b64url", "hex", "HEX", "b64-b64"]))
    if encoding == "b64":
        encoded = base64.b64encode(data).decode()
    elif encoding == "b64url":
        encoded = base64.urlsafe_b64encode(data).decode().rstrip("=")
    elif encoding == "b64-b64":
        encoded = base64.b64encode(base64.b64encode(data)).decode()
    else:
        encoded = data.hex() if encoding == "hex" else data.hex().upper()
    return f"blob={encoded};", encoded


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plant=encoded_tokens(), field=st.sampled_from(["detail", "attribute"]))
def test_no_encoded_token_reaches_a_sink(tmp_path: Path, plant: tuple[str, str], field: str) -> None:
    text, encoded = plant
    for output in _written(tmp_path, _event(field, text)):
        assert encoded not in output, text
