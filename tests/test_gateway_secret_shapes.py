"""Upstream secrets stay behind the gateway in whatever shape an upstream echoes them.

A property plants generated secrets inside generated text, encodes the whole the ways client
libraries and servers do (base64 at any byte offset, broken over lines or not; percent escapes
in either case; JSON ``\\u`` escapes; HTML character references; hexadecimal), and checks that no
decoder recovers the secret from what the gateway would relay. The decoders here are written
independently of the scrubber's own list of forms. One test drives the same shapes through a
real gateway session.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from mcpgov import ConfigurationError
from mcpgov.gateway._config import SecretRef
from mcpgov.gateway._upstream import SecretRedactor, scrub, secret_forms

from .test_gateway_isolation import build

pytestmark = pytest.mark.anyio


def _b64_runs(text: str) -> list[bytes]:
    """Every byte string a base64 run in ``text`` decodes to, from each of its four offsets."""
    out: list[bytes] = []
    for run in re.findall(r"[A-Za-z0-9+/_-]{4,}=*", "".join(text.split())):
        body = run.rstrip("=").replace("-", "+").replace("_", "/")
        for offset in range(4):
            piece = body[offset:]
            if len(piece) % 4 == 1:
                piece = piece[:-1]  # a lone last character encodes no whole byte
            piece += "=" * (-len(piece) % 4)
            try:
                out.append(base64.b64decode(piece, validate=True))
            except (binascii.Error, ValueError):
                continue
    return out


def _hex_runs(text: str) -> list[bytes]:
    out: list[bytes] = []
    for run in re.findall(r"[0-9A-Fa-f]{4,}", text):
        for offset in (0, 1):
            piece = run[offset:]
            out.append(bytes.fromhex(piece[: len(piece) - len(piece) % 2]))
    return out


def _json_unescape(text: str) -> str:
    try:
        value = json.loads(f'"{text}"')
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def recoverable(text: str, secret: str) -> bool:
    """Whether any decoder gets ``secret`` back from ``text``."""
    raw = secret.encode("utf-8")
    texts = {text, unquote(text), unquote_plus(text), html.unescape(text), _json_unescape(text)}
    if any(secret in t for t in texts):
        return True
    return any(raw in data for data in (*_b64_runs(text), *_hex_runs(text)))


def _mixed_case_percent(text: str) -> str:
    encoded = quote(text, safe="")
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0)[:2] + m.group(0)[2].lower(), encoded)


def _all_unicode_escapes(text: str) -> str:
    return "".join(f"\\u{unit:04x}" for unit in _utf16_units(text))


def _utf16_units(text: str) -> list[int]:
    data = text.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


ENCODINGS: dict[str, Callable[[str], str]] = {
    "plain": lambda t: t,
    "json": lambda t: json.dumps(t)[1:-1],
    "json-unicode": _all_unicode_escapes,
    "percent": lambda t: quote(t, safe=""),
    "percent-lower": _mixed_case_percent,
    "form": quote_plus,
    "html": lambda t: "".join(f"&#{ord(c)};" for c in t),
    "html-hex": lambda t: "".join(f"&#x{ord(c):x};" for c in t),
    "base64": lambda t: base64.b64encode(t.encode()).decode(),
    "base64-unpadded": lambda t: base64.b64encode(t.encode()).decode().rstrip("="),
    "base64url": lambda t: base64.urlsafe_b64encode(t.encode()).decode().rstrip("="),
    "base64-mime": lambda t: base64.encodebytes(t.encode()).decode(),
    "hex": lambda t: t.encode().hex(),
    "HEX": lambda t: t.encode().hex().upper(),
}

_SECRET_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, exclude_categories=("Cs", "Cc", "Zs"))
_PLAIN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ", max_size=20)


@settings(max_examples=400, deadline=None)
@given(
    secret=st.text(alphabet=_SECRET_CHARS, min_size=8, max_size=40),
    prefix=st.sampled_from(["", "Bearer ", "token="]),
    pre=_PLAIN,
    post=_PLAIN,
    before=_PLAIN,
    after=_PLAIN,
    encoding=st.sampled_from(sorted(ENCODINGS)),
)
def test_no_decoder_recovers_a_planted_secret(  # noqa: PLR0917 - one argument per generated part
    secret: str, prefix: str, pre: str, post: str, before: str, after: str, encoding: str
) -> None:
    forms = secret_forms([(prefix, secret)])
    relayed = before + ENCODINGS[encoding](pre + prefix + secret + post) + after
    assert recoverable(relayed, secret)  # the planted secret is there to find
    assert not recoverable(scrub(relayed, forms), secret)


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(alphabet=_SECRET_CHARS, min_size=8, max_size=40),
    prefix=st.sampled_from(["", "Bearer ", "token="]),
    pre=_PLAIN,
    post=_PLAIN,
    encoding=st.sampled_from(sorted(ENCODINGS)),
    where=st.sampled_from(["target", "detail", "reason", "hidden", "attribute", "attribute-key", "nested"]),
)
def test_no_decoder_recovers_a_secret_planted_in_an_audit_event(  # noqa: PLR0917 - one argument per generated part
    secret: str, prefix: str, pre: str, post: str, encoding: str, where: str
) -> None:
    """What an upstream names reaches audit events in any field: the gateway's redactor leaves
    none of its secrets recoverable from any of them."""
    from mcpgov import AuditEvent, Auditor
    from mcpgov.audit import Redactor

    forms = secret_forms([(prefix, secret)])
    planted = ENCODINGS[encoding](pre + prefix + secret + post)
    fields: dict[str, Any] = {
        "target": planted if where == "target" else "tool",
        "detail": f"tool {planted!r} is not pinned" if where == "detail" else None,
        "reason": planted if where == "reason" else "tool.new",
        "hidden": ("a", planted) if where == "hidden" else (),
        "attributes": {
            "attribute": {"server_id": planted},
            "attribute-key": {planted: 1},
            "nested": {"listing": [{"names": ["x", planted]}]},
        }.get(where, {}),
    }
    event = AuditEvent.model_validate(
        {"id": "e1", "type": "pin.mismatch", "time": "2026-01-01T00:00:00Z", "side": "client", "method": "m", **fields}
    )
    assert recoverable(planted, secret)  # the planted secret is there to find
    prepared = Auditor([print], redactor=SecretRedactor(Redactor(), lambda: forms)).prepare(event)
    for value in prepared.model_dump(mode="json").values():  # the event's values, not its field names
        for text in _strings(value):
            assert not recoverable(text, secret), (where, text)


def _strings(value: Any) -> list[str]:
    """Every string in JSON data, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [t for v in value for t in _strings(v)]
    return []


def test_text_without_a_secret_is_left_as_it_is() -> None:
    forms = secret_forms([("", "sk-upstream-5555555555")])
    for text in ("plain text", "a%20b+c", "line\nbreak", "&amp; \\u0041 \\n", "dGhpcyBpcyBiYXNlNjQ="):
        assert scrub(text, forms) == text


@pytest.mark.parametrize("short", ["", "1234567", " abc "])
def test_a_secret_too_short_to_scrub_is_refused(tmp_path: Path, short: str) -> None:
    (tmp_path / "key").write_text(short)
    for ref, environ in ((SecretRef(env="KEY"), {"KEY": short}), (SecretRef(file="key"), {})):
        with pytest.raises(ConfigurationError) as refused:
            ref.resolve(tmp_path, environ)
        assert ("KEY" in str(refused.value)) or ("key" in str(refused.value))


SECRET = "sk-upstream-" + "5" * 24


def shapes_server() -> MCPServer:
    server = MCPServer("shapes", version="1.0.0")

    @server.tool()
    def echo(shape: str) -> str:
        """Echo the key, wrapped in some text, encoded one way."""
        return "auth header: " + ENCODINGS[shape](f"user:{SECRET}\n")

    return server


async def test_every_shape_is_scrubbed_through_a_gateway_session(mode: str) -> None:
    rig = await build(
        {"shapes": shapes_server()},
        [{"id": "all", "effect": "allow", "tenants": ["acme"], "tools": ["shapes_*"]}],
        configs={"shapes": {"secret_env": {"KEY": {"env": "GW_SHAPES_KEY"}}}},
        environ={"GW_SHAPES_KEY": SECRET},
    )
    async with rig.gateway, rig.agent(mode) as agent:
        for shape in sorted(ENCODINGS):
            result = await agent.call_tool("shapes_echo", {"shape": shape})
            text = result.model_dump_json()
            assert not recoverable(json.loads(text)["content"][0]["text"], SECRET), shape


def failing_server() -> MCPServer:
    server = MCPServer("failing", version="1.0.0")

    @server.tool()
    def protocol_error(shape: str) -> str:
        """Refuse with a protocol error whose message and data carry the key."""
        encoded = ENCODINGS[shape](f"user:{SECRET}\n")
        raise MCPError(-32050, f"login failed for {encoded}", {"detail": encoded, "nested": [{encoded: encoded}]})

    @server.tool()
    def crash(shape: str) -> str:
        """Fail with an exception whose message carries the key."""
        raise RuntimeError("could not connect: " + ENCODINGS[shape](f"user:{SECRET}\n"))

    @server.tool()
    def tool_error(shape: str) -> str:
        """Fail with a tool error whose message carries the key."""
        raise ToolError("denied by " + ENCODINGS[shape](f"user:{SECRET}\n"))

    return server


async def test_no_upstream_error_carries_a_secret_to_the_agent_in_any_encoding(mode: str) -> None:
    """An upstream's error (a protocol error's message and data, a tool's exception or tool
    error) reaches the agent with none of the upstream's secrets recoverable, in any encoding."""
    rig = await build(
        {"failing": failing_server()},
        [{"id": "all", "effect": "allow", "tenants": ["acme"], "tools": ["failing_*"]}],
        configs={"failing": {"secret_env": {"KEY": {"env": "GW_FAILING_KEY"}}}},
        environ={"GW_FAILING_KEY": SECRET},
    )
    seen = 0
    async with rig.gateway, rig.agent(mode) as agent:
        for shape in sorted(ENCODINGS):
            for tool in ("failing_protocol_error", "failing_crash", "failing_tool_error"):
                try:
                    result = await agent.call_tool(tool, {"shape": shape})
                except MCPError as exc:
                    relayed = [exc.error.message, *_strings(exc.error.data)]
                    seen += 1
                else:
                    relayed = _strings(result.model_dump(mode="json"))
                for text in relayed:
                    assert not recoverable(text, SECRET), (shape, tool, text)
    assert seen == len(ENCODINGS)  # the protocol errors came back as errors


async def test_no_error_text_in_a_gateway_process_carries_an_upstream_secret(mode: str) -> None:
    """mcpgov's own errors raised while a gateway runs (what ``str(error)``, tracebacks, command
    output and any logger show) hold none of its upstreams' secrets, in any encoding."""
    import mcpgov

    rig = await build(
        {"shapes": shapes_server()},
        [{"id": "all", "effect": "allow", "tenants": ["acme"], "tools": ["shapes_*"]}],
        configs={"shapes": {"secret_env": {"KEY": {"env": "GW_SHAPES_KEY"}}}},
        environ={"GW_SHAPES_KEY": SECRET},
    )
    async with rig.gateway, rig.agent(mode) as agent:
        await agent.call_tool("shapes_echo", {"shape": "plain"})  # the upstream has started
        for shape in sorted(ENCODINGS):
            for error in ("McpGovError", "IdentityError", "CredentialError", "ConfigurationError", "PinningError"):
                raised = getattr(mcpgov, error)("upstream said: " + ENCODINGS[shape](f"user:{SECRET}\n"))
                for shown in (str(raised), raised.detail, repr(raised.args)):
                    assert not recoverable(shown, SECRET), (shape, error, shown)
