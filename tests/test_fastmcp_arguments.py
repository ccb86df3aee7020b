"""A governed FastMCP server decides on exactly the arguments its tools and prompts receive.

FastMCP converts tool arguments with pydantic (lax) and prompt arguments from text: a
constraint that lower-cases or strips a string, an ``AfterValidator``, a model field, a UUID
in capitals. The chain must judge the value the function gets, never a spelling that turns
into it after the decision.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import pytest

fastmcp = pytest.importorskip("fastmcp", reason="FastMCP support needs the extra: pip install 'mcpgov[fastmcp]'")

from fastmcp import FastMCP  # noqa: E402
from fastmcp.tools import FunctionTool, Tool  # noqa: E402
from fastmcp.tools.tool_transform import ArgTransform, forward  # noqa: E402
from mcp import Client, MCPError  # noqa: E402
from pydantic import AfterValidator, BaseModel, Field, SecretStr, StringConstraints  # noqa: E402

from mcpgov import Decision, GovContext, Hooks, govern  # noqa: E402
from mcpgov._fastmcp import sdk_server  # noqa: E402
from mcpgov._types import thaw  # noqa: E402

pytestmark = pytest.mark.anyio

FORBIDDEN_ID = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")

Lowered = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True)]


class Options(BaseModel):
    mode: Lowered = "read"
    depth: int = 1


def _forbidden(arguments: dict[str, Any]) -> bool:
    values = [
        arguments.get("mode"),
        arguments.get("renamed_mode"),
        arguments.get("target"),
        (arguments.get("options") or {}).get("mode"),
    ]
    return "delete" in values or str(FORBIDDEN_ID) in values


class Server:
    def __init__(self) -> None:
        self.server: FastMCP[Any] = FastMCP("fast")
        self.decided: list[tuple[str, dict[str, Any]]] = []
        self.ran: list[tuple[str, Any]] = []
        hooks = Hooks()

        @hooks.tool("*")
        @hooks.prompt("*")
        def no_deletes(ctx: GovContext) -> Decision:
            arguments = thaw(ctx.arguments) if ctx.arguments is not None else {}
            if ctx.action == "execute":
                self.decided.append((str(ctx.target), arguments))
            if _forbidden(arguments):
                return Decision.deny("no-deletes", "nothing is deleted")
            return Decision.allow("anything else")

        @self.server.tool
        def lowered(mode: Lowered) -> str:
            self.ran.append(("lowered", mode))
            return mode

        @self.server.tool
        def validated(mode: Annotated[str, AfterValidator(str.lower)]) -> str:
            self.ran.append(("validated", mode))
            return mode

        @self.server.tool
        def described(mode: str = Field(description="the mode", pattern="^[a-zA-Z ]+$")) -> str:
            self.ran.append(("described", mode))
            return mode

        @self.server.tool
        def configured(options: Options) -> str:
            self.ran.append(("configured", options.model_dump()))
            return options.mode

        @self.server.tool
        def by_id(target: uuid.UUID) -> str:
            self.ran.append(("by_id", str(target)))
            return str(target)

        @self.server.prompt
        def lowered_prompt(mode: Lowered) -> str:
            self.ran.append(("lowered_prompt", mode))
            return mode

        # The same tools reached through a mount and through a transformation of a tool.
        child: FastMCP[Any] = FastMCP("child")

        @child.tool
        def lowered_below(mode: Lowered) -> str:
            self.ran.append(("mounted_lowered_below", mode))
            return mode

        self.server.mount(child, namespace="mounted")
        self.server.add_tool(
            Tool.from_tool(
                FunctionTool.from_function(lowered, name="lowered_parent"),
                name="renamed",
                transform_args={"mode": ArgTransform(name="renamed_mode")},
            )
        )
        self.server.add_tool(Tool.from_tool(FunctionTool.from_function(lowered, name="lowered_kept"), name="kept"))

        async def passes_on(mode: str) -> Any:
            return await forward(mode=mode)

        self.server.add_tool(
            Tool.from_tool(FunctionTool.from_function(lowered, name="lowered_own"), name="own", transform_fn=passes_on)
        )
        govern(self.server, hooks)


CONVERTED_CALLS = [
    ("lowered", {"mode": "DELETE"}),
    ("lowered", {"mode": " delete"}),
    ("lowered", {"mode": "Delete\t"}),
    ("validated", {"mode": "DeLeTe"}),
    ("configured", {"options": {"mode": "DELETE"}}),
    ("configured", {"options": {"mode": " delete ", "depth": 2}}),
    ("by_id", {"target": str(FORBIDDEN_ID).upper()}),
    ("by_id", {"target": FORBIDDEN_ID.hex}),
    ("by_id", {"target": "{" + str(FORBIDDEN_ID) + "}"}),
    ("mounted_lowered_below", {"mode": "DELETE"}),
    ("renamed", {"renamed_mode": "DELETE"}),
    ("kept", {"mode": " Delete"}),
    ("own", {"mode": "DELETE"}),
    ("own", {"mode": "Delete "}),
]


@pytest.mark.parametrize(("tool", "arguments"), CONVERTED_CALLS)
async def test_a_converted_argument_is_decided_as_the_tool_receives_it(
    mode: str, tool: str, arguments: dict[str, Any]
) -> None:
    s = Server()
    async with Client(sdk_server(s.server), mode=mode) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool(tool, arguments)
    assert refused.value.code in (-32003, -32602)
    assert s.ran == []


@pytest.mark.parametrize("spelling", ["DELETE", " delete", "Delete"])
async def test_a_converted_prompt_argument_is_refused(mode: str, spelling: str) -> None:
    s = Server()
    async with Client(sdk_server(s.server), mode=mode) as client:
        with pytest.raises(MCPError) as refused:
            await client.get_prompt("lowered_prompt", {"mode": spelling})
    assert refused.value.code in (-32003, -32602)
    assert s.ran == []


@pytest.mark.parametrize(
    ("tool", "arguments", "received"),
    [
        ("lowered", {"mode": "READ"}, "read"),
        ("lowered", {"mode": "read"}, "read"),
        ("validated", {"mode": "Read"}, "read"),
        ("described", {"mode": "Read Only"}, "Read Only"),
        ("configured", {"options": {}}, {"mode": "read", "depth": 1}),
        ("configured", {"options": {"mode": "LIST", "depth": 3}}, {"mode": "list", "depth": 3}),
        ("by_id", {"target": str(uuid.UUID(int=7)).upper()}, str(uuid.UUID(int=7))),
        ("mounted_lowered_below", {"mode": "READ"}, "read"),
        ("renamed", {"renamed_mode": "READ"}, "read"),
        ("kept", {"mode": "Read"}, "read"),
        ("own", {"mode": "read"}, "read"),
    ],
)
async def test_an_allowed_call_runs_with_exactly_the_arguments_decided(
    mode: str, tool: str, arguments: dict[str, Any], received: Any
) -> None:
    s = Server()
    async with Client(sdk_server(s.server), mode=mode) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error
    assert [value for _, value in s.ran] == [received]
    assert s.decided == [(tool, {next(iter(arguments)): received})]


async def test_an_argument_whose_converted_value_has_no_json_form_is_refused(mode: str) -> None:
    """A ``SecretStr`` dumps masked: the value the tool would get cannot be decided on in JSON."""
    server: FastMCP[Any] = FastMCP("fast")
    hooks = Hooks()
    ran: list[str] = []

    @hooks.tool("*")
    def anything(ctx: GovContext) -> Decision:
        return Decision.allow("anything")

    @server.tool
    def login(password: SecretStr) -> str:
        ran.append(password.get_secret_value())
        return "ok"

    govern(server, hooks)
    async with Client(sdk_server(server), mode=mode) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("login", {"password": "hunter2"})
    assert refused.value.code == -32602
    assert ran == []


def _mounted() -> tuple[FastMCP[Any], list[Any]]:
    ran: list[Any] = []
    child: FastMCP[Any] = FastMCP("child")

    @child.prompt
    def lowered(mode: Lowered) -> str:
        ran.append(mode)
        return mode

    @child.resource("notes://{number}")
    def note(number: int) -> str:
        ran.append(number)
        return str(number)

    parent: FastMCP[Any] = FastMCP("parent")
    parent.mount(child, namespace="mounted")
    hooks = Hooks()

    @hooks.prompt("*")
    @hooks.resource("*")
    def not_note_one(ctx: GovContext) -> Decision:
        if ctx.target == "notes://mounted/1" or (ctx.arguments or {}).get("mode") == "delete":
            return Decision.deny("not-that", "not that one")
        return Decision.allow("anything else")

    govern(parent, hooks)
    return parent, ran


@pytest.mark.parametrize(
    "uri", ["notes://mounted/01", "notes://mounted/+1", "notes://mounted/1_0", "notes://mounted/001"]
)
async def test_a_mounted_templates_parameter_is_decided_as_its_function_receives_it(mode: str, uri: str) -> None:
    parent, ran = _mounted()
    async with Client(sdk_server(parent), mode=mode) as client:
        with pytest.raises(MCPError) as refused:
            await client.read_resource(uri)
        assert refused.value.code in (-32003, -32602)
        with pytest.raises(MCPError) as denied:
            await client.read_resource("notes://mounted/1")
        assert denied.value.code == -32003
        await client.read_resource("notes://mounted/2")
    assert ran == [2]


@pytest.mark.parametrize("spelling", ["DELETE", " delete", "Delete"])
async def test_a_mounted_prompts_argument_is_decided_as_its_function_receives_it(mode: str, spelling: str) -> None:
    parent, ran = _mounted()
    async with Client(sdk_server(parent), mode=mode) as client:
        with pytest.raises(MCPError) as refused:
            await client.get_prompt("mounted_lowered", {"mode": spelling})
        assert refused.value.code in (-32003, -32602)
        await client.get_prompt("mounted_lowered", {"mode": "read"})
    assert ran == ["read"]
