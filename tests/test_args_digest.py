"""The argument hash is computed when first read, once per side; every check stays at freeze time."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, GovContext, GovernedClient, Hooks, InvalidRequest, govern
from mcpgov._arguments import ArgsDigest, ArgumentLimits, freeze_lazily
from mcpgov._context import args_hash_source
from mcpgov._governor import Governor

pytestmark = pytest.mark.anyio

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(arguments=st.dictionaries(st.text(max_size=8), _JSON, max_size=5))
def test_a_deferred_hash_reads_as_the_canonical_hash(arguments: dict[str, Any]) -> None:
    frozen, digest = freeze_lazily(arguments, ArgumentLimits())
    assert isinstance(digest, ArgsDigest)
    expected = "sha256:" + hashlib.sha256(rfc8785.dumps(arguments)).hexdigest()
    ctx = GovContext(side="server", method="tools/call", arguments=frozen, args_hash=digest)  # type: ignore[arg-type]
    copy = ctx.replace(target="t")
    assert args_hash_source(copy) is digest  # copies keep it deferred
    assert copy.args_hash == expected == ctx.args_hash
    assert args_hash_source(copy) == expected  # kept once read


@pytest.mark.parametrize(
    "arguments",
    [{"a": "\ud800"}, {"a": "x" * 100 + "\udfff"}, {"a": {"\ud800": 1}}, {"a": ["ok", "\udc00"]}],
)
async def test_text_with_no_unicode_form_is_refused_before_anything_is_hashed(arguments: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        freeze_lazily(arguments, ArgumentLimits())
    assert caught.value.reason == "argument_invalid"
    with pytest.raises(InvalidRequest):
        await Governor("client", []).begin("tools/call", arguments)


async def test_a_client_with_no_audit_sink_never_hashes_and_the_server_hashes_once(mode: str) -> None:
    server = MCPServer("digest")
    seen: list[GovContext] = []

    @server.tool()
    async def echo(text: str) -> int:
        return len(text)

    def allow(ctx: GovContext) -> Any:
        seen.append(ctx)
        return Decision.allow("digest")

    hooks = Hooks()
    hooks.register("echo", allow, kind="tool")
    events: list[Any] = []
    govern(server, hooks, audit=events.append)
    client_contexts: list[GovContext] = []

    async def watch(ctx: GovContext, call_next: Any) -> Any:
        client_contexts.append(ctx)
        return await call_next(ctx)

    async with GovernedClient(server, watch, mode=mode) as client:
        result = await client.call_tool("echo", {"text": "hello"})
    assert result.structured_content == {"result": 5}
    (client_ctx,) = [c for c in client_contexts if c.method == "tools/call"]
    assert isinstance(args_hash_source(client_ctx), ArgsDigest)
    assert args_hash_source(client_ctx)._value is None  # type: ignore[union-attr]  # never computed
    expected = "sha256:" + hashlib.sha256(rfc8785.dumps({"text": "hello"})).hexdigest()
    assert [e.args_hash for e in events if e.type in ("decision", "outcome")] == [expected, expected]
    assert seen and seen[0].args_hash == expected
