"""GovernedClient.complete sends exactly what its chain decided on: the reference and the
argument are copied when the decision starts, so a caller (or another task) changing its
objects meanwhile sends nothing the chain did not allow."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcp_types import Completion, PromptReference, ResourceTemplateReference

from mcpgov import Decision, GovContext, GovernedClient, Hooks

pytestmark = pytest.mark.anyio


def _server(received: list[tuple[str, str, str]]) -> MCPServer:
    server = MCPServer("completions")

    @server.prompt()
    def summarise(text: str) -> str:
        return text

    @server.resource("notes://{name}")
    def note(name: str) -> str:
        return name

    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]  # the SDK's decorator is untyped
    async def complete(ref: Any, argument: Any, context: Any) -> Completion:
        target = ref.name if isinstance(ref, PromptReference) else ref.uri
        received.append((str(target), argument.name, argument.value))
        return Completion(values=["a"])

    return server


def _hooks() -> Hooks:
    hooks = Hooks()

    @hooks.prompt("summarise")
    @hooks.resource("notes://{name}")
    def allowed(ctx: GovContext) -> Decision:
        if (ctx.arguments or {}).get("value") == "secret":
            return Decision.deny("no-secrets", "not that value")
        return Decision.allow("completions-ok")

    return hooks


@pytest.mark.parametrize("kind", ["prompt", "resource"])
@pytest.mark.parametrize("changes", ["ref", "argument"])
async def test_complete_sends_what_was_decided_whatever_the_caller_changes_meanwhile(
    mode: str, kind: str, changes: str
) -> None:
    ref: PromptReference | ResourceTemplateReference
    if kind == "prompt":
        ref, change = PromptReference(type="ref/prompt", name="summarise"), {"name": "jailbreak"}
    else:
        ref, change = ResourceTemplateReference(type="ref/resource", uri="notes://{name}"), {"uri": "secrets://{name}"}
    received: list[tuple[str, str, str]] = []
    argument = {"name": "text", "value": "pub"}
    decided_target = ref.name if isinstance(ref, PromptReference) else ref.uri

    async def caller_changes_its_objects(ctx: GovContext, call_next: Any) -> Any:
        # What a caller sharing these objects with another task can do while the chain decides.
        if changes == "ref":
            for key, value in change.items():
                setattr(ref, key, value)
        else:
            argument["value"] = "secret"
        return await call_next(ctx)

    async with GovernedClient(_server(received), _hooks(), caller_changes_its_objects, mode=mode) as client:
        await client.complete(ref, argument)
    assert received == [(decided_target, "text", "pub")]
