"""A rate limit cannot be walked around by spelling: a caller, tenant or tool spelled another way
(case, fullwidth or mathematical letters, look-alike letters of another script, invisible
characters, decomposed accents, ligatures, surrounding whitespace) shares the counter of the
name a reader takes it for."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp_types import RequestParamsMeta

from mcpgov import CallNext, GovContext, Principal, govern
from mcpgov.policy import Policy, PolicyMiddleware

ISSUER = "https://idp.acme.example"

LOOKALIKES = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441", "x": "\u0445", "i": "\u0456"}


def _fullwidth(ch: str) -> str:
    return chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch


def _bold(ch: str) -> str:
    if "a" <= ch <= "z":
        return chr(0x1D41A + ord(ch) - ord("a"))
    if "A" <= ch <= "Z":
        return chr(0x1D400 + ord(ch) - ord("A"))
    return ch


CHAR_SPELLINGS: dict[str, Callable[[str], str]] = {
    "same": lambda ch: ch,
    "upper": str.upper,
    "fullwidth": _fullwidth,
    "bold": _bold,
    "lookalike": lambda ch: LOOKALIKES.get(ch, ch),
    "zero-width-after": lambda ch: ch + "\u200b",
    "word-joiner-after": lambda ch: ch + "\u2060",
    "soft-hyphen-after": lambda ch: ch + "\u00ad",
    "decomposed": lambda ch: unicodedata.normalize("NFD", ch),
}

names = st.text(alphabet="abcdefghiklmnopstuxyzé", min_size=1, max_size=10)


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, str]:
    """A name and another spelling of it, one transform per character."""
    name = draw(names)
    kinds = draw(st.lists(st.sampled_from(sorted(CHAR_SPELLINGS)), min_size=len(name), max_size=len(name)))
    spelled = "".join(CHAR_SPELLINGS[kind](ch) for kind, ch in zip(kinds, name, strict=True))
    if draw(st.booleans()):
        spelled = spelled.replace("fi", "\ufb01")  # the ligature, folded by NFKC
    if draw(st.booleans()):
        spelled = f" {spelled}\u3000"
    return name, spelled


class _MetaIdentity:
    """The caller's subject and tenant, from ``_meta``."""

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        subject = ctx.meta.get("test/subject")
        tenant = ctx.meta.get("test/tenant")
        principal = Principal(ISSUER, subject, tenant=tenant) if isinstance(subject, str) else None
        return await call_next(ctx.replace(principal=principal, tenant=tenant))


def _meta(subject: str, tenant: str) -> RequestParamsMeta:
    return cast("RequestParamsMeta", {"test/subject": subject, "test/tenant": tenant})


def _server(by: str) -> tuple[MCPServer, list[str]]:
    server = MCPServer("search")
    ran: list[str] = []

    @server.tool()
    def search(query: str) -> str:
        ran.append(query)
        return query

    policy = Policy.from_dict(
        {
            "rules": [
                {
                    "id": "one-each",
                    "effect": "allow",
                    "tools": ["search"],
                    "obligations": {"rate_limit": {"limit": 1, "per": 60, "by": [by]}},
                }
            ]
        }
    )
    govern(server, _MetaIdentity(), PolicyMiddleware(policy, clock=lambda: 1_000.0))
    return server, ran


async def _admitted(client: Client, subject: str, tenant: str) -> bool:
    try:
        await client.call_tool("search", {"query": subject}, meta=_meta(subject, tenant))
    except MCPError as exc:
        code = exc.code
    else:
        return True
    assert code == -32003
    return False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=spellings(), by=st.sampled_from(["principal", "tenant"]))
@pytest.mark.anyio
async def test_property_every_spelling_of_a_name_shares_its_limit(pair: tuple[str, str], by: str) -> None:
    name, spelled = pair
    server, ran = _server(by)
    async with Client(server) as client:
        if by == "principal":
            assert await _admitted(client, name, "acme")
            assert not await _admitted(client, spelled, "acme")
        else:
            assert await _admitted(client, "alice", name)
            assert not await _admitted(client, "bob", spelled)
    assert len(ran) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    "spelled",
    ["\u0430lice", "\uff41\uff4c\uff49\uff43\uff45", "ALICE", "al\u200bice", "\U0001d41alice", "a1ice", " alice\t"],
    ids=ascii,
)
async def test_a_look_alike_caller_shares_the_callers_limit(spelled: str, mode: str) -> None:
    server, ran = _server("principal")
    async with Client(server, mode=mode) as client:
        assert await _admitted(client, "alice", "acme")
        assert not await _admitted(client, spelled, "acme")
        assert await _admitted(client, "bob", "acme")
    assert ran == ["alice", "bob"]
