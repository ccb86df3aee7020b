"""A completion is judged as the prompt it completes: completing argument ``a`` with value ``v``
reads ``arguments.a == v``, so a rule that would deny the prompt for that value denies the
completion, and an allow admits it only for a value it admits; a condition on another argument,
which a completion does not carry, fails. Cedar reads the same ``context.args``."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp_types import Completion, PromptReference

from mcpgov import CallNext, GovContext, govern
from mcpgov.policy import CedarPolicy, Policy, PolicyMiddleware

from .policies.support import PRINCIPALS

pytestmark = pytest.mark.anyio


def _server(received: list[tuple[str, str]], contexts: list[Any] | None = None) -> MCPServer:
    server = MCPServer("files")

    @server.prompt()
    def show(path: str, mode: str = "short") -> str:
        return path

    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]  # the SDK's decorator is untyped
    async def complete(ref: Any, argument: Any, context: Any) -> Completion:
        received.append((argument.name, argument.value))
        if contexts is not None:
            contexts.append(context)
        return Completion(values=[argument.value + "x"])

    return server


ALLOW_SHOW = {"id": "show", "effect": "allow", "prompts": ["show"]}


def _deny_etc(optional: bool) -> dict[str, Any]:
    return {
        "id": "no-etc",
        "effect": "deny",
        "prompts": ["show"],
        "when": {"arguments": {"path": {"glob": "/etc/*", "optional": optional}}},
    }


class _Alice:
    """Every request comes from alice (the SDK's ``complete()`` sends no ``_meta``)."""

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        principal = PRINCIPALS["alice"]
        return await call_next(ctx.replace(principal=principal, tenant=principal.tenant))


async def _complete(client: Client, name: str, value: str, context: dict[str, str] | None = None) -> bool:
    ref = PromptReference(type="ref/prompt", name="show")
    try:
        await client.complete(ref, {"name": name, "value": value}, context)
    except MCPError as exc:
        code = exc.code
    else:
        return True
    assert code == -32003
    return False


@pytest.mark.parametrize("optional", [False, True])
async def test_a_deny_on_an_argument_denies_completing_it_with_a_value_it_denies(optional: bool, mode: str) -> None:
    received: list[tuple[str, str]] = []
    server = _server(received)
    policy = Policy.from_dict({"rules": [ALLOW_SHOW, _deny_etc(optional)]})
    govern(server, _Alice(), PolicyMiddleware(policy))
    async with Client(server, mode=mode) as client:
        assert not await _complete(client, "path", "/etc/pa")
        assert not await _complete(client, "path", "/etc/passwd", context={"mode": "long"})
        assert await _complete(client, "path", "/home/al")
        # Completing another argument carries no path: the deny applies only if path is optional.
        assert await _complete(client, "mode", "lo") is not optional
    assert received[0] == ("path", "/home/al")


async def test_an_allow_on_an_argument_admits_completing_it_only_with_a_value_it_admits(mode: str) -> None:
    received: list[tuple[str, str]] = []
    server = _server(received)
    allow_home = {**ALLOW_SHOW, "when": {"arguments": {"path": {"glob": "/home/*"}}}}
    govern(server, _Alice(), PolicyMiddleware(Policy.from_dict({"rules": [allow_home]})))
    async with Client(server, mode=mode) as client:
        assert await _complete(client, "path", "/home/al")
        assert not await _complete(client, "path", "/etc/pa")
        # The context a client claims is not what the prompt will be called with: not read.
        assert not await _complete(client, "mode", "lo", context={"path": "/home/al"})
    assert received == [("path", "/home/al")]


async def test_an_allow_without_argument_conditions_still_completes_everything(mode: str) -> None:
    received: list[tuple[str, str]] = []
    server = _server(received)
    govern(server, _Alice(), PolicyMiddleware(Policy.from_dict({"rules": [ALLOW_SHOW]})))
    async with Client(server, mode=mode) as client:
        assert await _complete(client, "path", "/etc/pa")
        assert await _complete(client, "mode", "lo")
    assert received == [("path", "/etc/pa"), ("mode", "lo")]


CEDAR = """
permit(principal, action, resource == Prompt::"show");
forbid(principal, action == Action::"execute", resource == Prompt::"show")
  when { context.args has path && context.args.path like "/etc/*" };
"""


async def test_a_cedar_forbid_on_an_argument_denies_completing_it(mode: str) -> None:
    received: list[tuple[str, str]] = []
    server = _server(received)
    govern(server, _Alice(), PolicyMiddleware(CedarPolicy(CEDAR)))
    async with Client(server, mode=mode) as client:
        assert not await _complete(client, "path", "/etc/pa")
        assert await _complete(client, "path", "/home/al")
    assert received == [("path", "/home/al")]


async def test_the_handler_gets_no_context_the_chain_did_not_decide(mode: str) -> None:
    """What a client claims as already filled in is not decided on: the completion handler gets
    only the decided argument, so a path the policy denies never reaches it as context."""
    received: list[tuple[str, str]] = []
    contexts: list[Any] = []
    server = _server(received, contexts)
    policy = Policy.from_dict({"rules": [ALLOW_SHOW, _deny_etc(False)]})
    govern(server, _Alice(), PolicyMiddleware(policy))
    async with Client(server, mode=mode) as client:
        assert await _complete(client, "mode", "lo", context={"path": "/etc/passwd"})
    assert received == [("mode", "lo")]
    assert contexts == [None]
