"""BaseMiddleware: per-operation hooks, driven through real SDK sessions on both sides."""

from __future__ import annotations

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp_types import Completion, PromptReference

from mcpgov import (
    BaseMiddleware,
    CallNext,
    ChainResult,
    Decision,
    Denied,
    ExtensionKey,
    GovContext,
    GovernedClient,
    Hooks,
    Listing,
    ListNext,
    McpGovError,
    govern,
)
from mcpgov.testing import InMemoryAuditSink

pytestmark = pytest.mark.anyio

SEEN_BY: ExtensionKey[str] = ExtensionKey("tests.seen_by")


class Recorder(BaseMiddleware):
    """Records each hook that ran, hides ``secret_*`` entries, refuses ``forbidden``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    def _saw(self, hook: str, ctx: GovContext) -> None:
        self.calls.append((ctx.side, hook, ctx.target))

    async def on_call_tool(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        self._saw("call_tool", ctx)
        if ctx.target == "forbidden":
            raise Denied(Decision.deny("recorder", "not this one", "forbidden_tool"))
        return await call_next(ctx.with_extension(SEEN_BY, "recorder"))

    async def on_read_resource(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        self._saw("read_resource", ctx)
        return await call_next(ctx)

    async def on_get_prompt(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        self._saw("get_prompt", ctx)
        return await call_next(ctx)

    async def on_list_tools(self, ctx: GovContext, call_next: ListNext) -> Listing:
        self._saw("list_tools", ctx)
        listing = await call_next(ctx)
        return listing.keep(lambda item: not item.name.startswith("secret_"))

    async def on_list_resources(self, ctx: GovContext, call_next: ListNext) -> Listing:
        self._saw("list_resources", ctx)
        return await call_next(ctx)

    async def on_list_resource_templates(self, ctx: GovContext, call_next: ListNext) -> Listing:
        self._saw("list_resource_templates", ctx)
        return await call_next(ctx)

    async def on_list_prompts(self, ctx: GovContext, call_next: ListNext) -> Listing:
        self._saw("list_prompts", ctx)
        return await call_next(ctx)


class ReadsExtension(BaseMiddleware):
    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def on_call_tool(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        self.seen.append(ctx.extension(SEEN_BY))
        return await call_next(ctx)


def _server() -> MCPServer:
    server = MCPServer("hooks")

    @server.tool()
    def echo(text: str) -> str:
        return text

    @server.tool()
    def forbidden() -> str:
        return "ran"

    @server.tool()
    def secret_admin() -> str:
        return "admin"

    @server.resource("docs://readme")
    def readme() -> str:
        return "read me"

    @server.resource("docs://pages/{page}")
    def page(page: str) -> str:
        return page

    @server.prompt()
    def summarise(text: str) -> str:
        return f"Summarise {text}"

    return server


def _allow_all() -> Hooks:
    hooks = Hooks()

    @hooks.tool("*")
    @hooks.resource("*")
    @hooks.prompt("*")
    def anything(ctx: GovContext) -> Decision:
        return Decision.allow("open")

    return hooks


async def _exercise(client: Client) -> None:
    assert [tool.name for tool in (await client.list_tools()).tools] == ["echo", "forbidden"]
    assert (await client.call_tool("echo", {"text": "hi"})).structured_content == {"result": "hi"}
    await client.list_resources()
    await client.list_resource_templates()
    await client.read_resource("docs://readme")
    await client.list_prompts()
    await client.get_prompt("summarise", {"text": "x"})
    with pytest.raises(MCPError) as refused:
        await client.call_tool("forbidden", {})
    assert refused.value.error.message == "Request denied"


_EXPECTED_HOOKS = [
    ("list_tools", None),
    ("call_tool", "echo"),
    ("list_resources", None),
    ("list_resource_templates", None),
    ("read_resource", "docs://readme"),
    ("list_prompts", None),
    ("get_prompt", "summarise"),
    ("call_tool", "forbidden"),
]


async def test_server_side_hooks_run_per_operation(mode: str) -> None:
    server = _server()
    recorder, reader, sink = Recorder(), ReadsExtension(), InMemoryAuditSink()
    govern(server, recorder, reader, _allow_all(), audit=sink)
    async with Client(server, mode=mode) as client:
        await _exercise(client)
    ran = [(hook, target) for _, hook, target in recorder.calls]
    assert {side for side, _, _ in recorder.calls} == {"server"}
    # The SDK lists tools again on its own (to validate results): such listings are hooked too.
    assert [entry for entry in ran if entry[0] != "list_tools"] == [e for e in _EXPECTED_HOOKS if e[0] != "list_tools"]
    assert ran[0] == ("list_tools", None)
    assert reader.seen == ["recorder"]  # the refused call never reached the next stage
    hidden = [event.hidden for event in sink.events if event.type == "list.filtered"]
    assert ("secret_admin",) in hidden
    denials = [event for event in sink.events if event.type == "decision" and event.rule == "recorder"]
    assert [event.target for event in denials] == ["forbidden"]


async def test_client_side_hooks_run_before_anything_is_sent(mode: str) -> None:
    server = _server()
    recorder = Recorder()
    govern(server, _allow_all())
    async with GovernedClient(server, recorder, _allow_all(), mode=mode) as client:
        await _exercise(client)
    assert {side for side, _, _ in recorder.calls} == {"client"}
    ran = [(hook, target) for _, hook, target in recorder.calls]
    assert [entry for entry in ran if entry[0] != "list_tools"] == [e for e in _EXPECTED_HOOKS if e[0] != "list_tools"]
    assert ran[0] == ("list_tools", None)


async def test_methods_without_a_hook_pass_through_on_request(mode: str) -> None:
    server = _server()
    recorder = Recorder()
    hooks = _allow_all()

    @hooks.method("completion/complete")
    def completions(ctx: GovContext) -> Decision:
        return Decision.allow("completions")

    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]  # the SDK's decorator is untyped
    async def complete(ref: object, argument: object, context: object) -> Completion:
        return Completion(values=["alpha"])

    govern(server, recorder, hooks)
    async with Client(server, mode=mode) as client:
        done = await client.complete(
            PromptReference(type="ref/prompt", name="summarise"), {"name": "text", "value": "a"}
        )
    assert done.completion.values == ["alpha"]
    assert recorder.calls == []


class BreaksListings(BaseMiddleware):
    async def on_request(self, ctx: GovContext, call_next: CallNext) -> ChainResult:
        if ctx.method == "tools/list":
            return {"tools": []}  # not a Listing: breaks the chain's contract
        return await call_next(ctx)


async def test_a_list_hook_refuses_a_chain_that_returns_no_listing() -> None:
    recorder = Recorder()
    ctx = GovContext(side="server", method="tools/list", kind="tool")

    async def terminal(c: GovContext) -> ChainResult:
        return await BreaksListings()(c, _never)

    with pytest.raises(McpGovError) as broken:
        await recorder(ctx, terminal)
    assert broken.value.reason == "listing_invalid"


async def _never(ctx: GovContext) -> ChainResult:
    raise AssertionError("not reached")
