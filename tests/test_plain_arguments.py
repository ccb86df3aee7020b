"""Arguments of plain tools are decided without building a model, and exactly as if one were built.

A tool whose parameters are all ``int``, ``str`` or ``bool`` with no constraint, alias or
validator has its arguments accepted as given when every one is present and of exactly its type.
The property: for generated tools (plain ones and ones with constraints, aliases, defaults,
validators, wider types) and generated arguments, the quick answer equals the full strict
validation's answer: the same decided arguments (values and types), or the same refusal.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field, SecretStr, StringConstraints, field_validator

from mcpgov import Decision, GovContext, Hooks, InvalidRequest, govern
from mcpgov._sdk import compat
from mcpgov._sdk.validation import _plain_fields, _ToolModel

_ANNOTATIONS: dict[str, Any] = {
    "int": int,
    "str": str,
    "bool": bool,
    "float": float,
    "int_ge0": Annotated[int, Field(ge=0)],
    "str_short": Annotated[str, Field(max_length=3)],
    "str_alias": Annotated[str, Field(alias="Alias")],
    "int_desc": Annotated[int, Field(description="a described number")],
    "opt_int": int | None,
    "list_str": list[str],
}

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["0", "1", "true", "false", "[]", '["a"]', "1.0", " 1", "null", "abcd"]),
    st.lists(st.text(max_size=2), max_size=2),
)

# Values of exactly a plain field's type, so the quick answer is taken often.
_EXACT = {
    "int": st.integers(-(2**53) + 1, 2**53 - 1),
    "int_desc": st.integers(-(2**53) + 1, 2**53 - 1),
    "str": st.text(max_size=6),
    "bool": st.booleans(),
}


def _server(params: list[tuple[str, str, bool]], validated: bool) -> MCPServer:
    """A server with one tool ``t`` of ``params`` (name, annotation key, has a default)."""
    server = MCPServer("plain")
    ordered = sorted(params, key=lambda p: p[2])
    namespace: dict[str, Any] = {"_" + k: v for k, v in _ANNOTATIONS.items()}
    signature = ", ".join(
        f"{n}: {'_' + t if t in _ANNOTATIONS else t}" + (" = None" if d else "") for n, t, d in ordered
    )
    exec(f"def t({signature}) -> str:\n    return 'ok'\n", namespace)  # noqa: S102 - a generated test tool
    server.tool(name="t")(namespace["t"])
    if validated:
        # A model-level validator: never plain, whatever the fields.
        meta = compat.tool_of(server, "t").fn_metadata
        base = meta.arg_model

        class Checked(base):  # type: ignore[misc, valid-type]
            @field_validator("*")
            @classmethod
            def keep(cls, value: Any) -> Any:
                return value

        meta.arg_model = Checked
    return server


def _answer(model: _ToolModel, wire: dict[str, Any]) -> tuple[Any, ...]:
    try:
        decided = model(wire)
    except InvalidRequest as exc:
        return "refused", exc.reason
    return (
        "decided",
        json.dumps(dict(decided), sort_keys=True),
        sorted((k, type(v).__name__) for k, v in decided.items()),
    )


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[tuple[str, str, bool]], bool, dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, min_size=1, max_size=3))
    kinds = sorted(_EXACT) if draw(st.booleans()) else sorted(_ANNOTATIONS)
    params = [(n, draw(st.sampled_from(kinds)), draw(st.booleans())) for n in names]
    wire: dict[str, Any] = {}
    for name, kind, _ in params:
        key = "Alias" if kind == "str_alias" and draw(st.booleans()) else name
        if draw(st.integers(0, 4)):
            exact = _EXACT.get(kind)
            wire[key] = draw(exact if exact is not None and draw(st.integers(0, 3)) else _VALUES)
    if draw(st.integers(0, 9)) == 0:
        wire["zz"] = draw(_VALUES)
    return params, draw(st.integers(0, 5)) == 0, wire


@settings(max_examples=300, deadline=None)
@given(case=_cases())
def test_property_the_quick_answer_is_the_full_validations_answer(case: Any) -> None:
    params, validated, wire = case
    meta = compat.tool_of(_server(params, validated), "t").fn_metadata
    quick = _ToolModel("t", meta)
    full = _ToolModel("t", meta)
    full.plain = None
    assert _answer(quick, wire) == _answer(full, wire)
    plain_kinds = {"int", "str", "bool", "int_desc"}
    expect_plain = not validated and all(kind in plain_kinds and not default for _, kind, default in params)
    if all(kind in plain_kinds for _, kind, _ in params) and not validated:
        assert quick.plain is not None  # a default does not make a field less plain
    if quick.plain is None:
        assert not expect_plain


def test_what_makes_a_model_not_plain() -> None:
    class Constrained(BaseModel):
        a: Annotated[int, Field(gt=0)]

    assert _plain_fields(Constrained) is None  # not the SDK's argument model
    for kind in ("float", "int_ge0", "str_short", "str_alias", "opt_int", "list_str"):
        meta = compat.tool_of(_server([("a", kind, False)], False), "t").fn_metadata
        assert _plain_fields(meta.arg_model) is None, kind
    meta = compat.tool_of(_server([("a", "int", False), ("b", "int_desc", True)], False), "t").fn_metadata
    assert _plain_fields(meta.arg_model) == {"a": int, "b": int}
    meta = compat.tool_of(_server([("a", "int", False)], True), "t").fn_metadata
    assert _plain_fields(meta.arg_model) is None


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(
    ("arguments", "refused"),
    [
        ({"a": 1, "b": 2}, False),
        ({"a": True, "b": 2}, True),  # a bool is not an int here
        ({"a": "1", "b": 2}, True),  # text is not a number
        ({"a": 1.0, "b": 2}, True),  # nor is a float
        ({"a": 1}, True),  # missing b
        ({"a": 1, "b": 2, "c": 3}, True),  # unknown c
        ({"a": 1, "B": 2}, True),  # another spelling of b
    ],
)
def test_a_plain_tool_through_a_real_session(mode: str, arguments: dict[str, Any], refused: bool) -> None:
    server = MCPServer("plain")
    ran: list[tuple[Any, Any]] = []
    decided: list[Any] = []

    @server.tool()
    def add(a: int, b: int) -> int:
        ran.append((a, b))
        return a + b

    hooks = Hooks()

    @hooks.tool("add")
    def allow(ctx: GovContext) -> Decision:
        if ctx.action == "execute":  # not the listing the SDK asks for to check the result
            decided.append(dict(ctx.arguments or {}))
        return Decision.allow("allow")

    govern(server, hooks)

    async def main() -> None:
        async with Client(server, mode=mode) as client:
            if refused:
                with pytest.raises(MCPError) as caught:
                    await client.call_tool("add", arguments)
                assert caught.value.code == -32602
                assert decided == [] and ran == []
            else:
                result = await client.call_tool("add", arguments)
                assert result.structured_content == {"result": 3}
                assert decided == [arguments] and ran == [(1, 2)]
                assert all(type(v) is int for v in decided[0].values())

    anyio.run(main)


def test_an_argument_model_replaced_after_use_is_the_one_checked() -> None:
    """The SDK reads a tool's argument model live: one swapped in after calls were decided (here,
    with a validator refusing every value) must be the one the arguments are checked against,
    not the plain model the quick answer was derived from."""
    server = _server([("a", "int", False), ("b", "str", False)], validated=False)
    meta = compat.tool_of(server, "t").fn_metadata
    model = _ToolModel("t", meta)
    assert model.plain is not None
    assert model({"a": 1, "b": "x"}) == {"a": 1, "b": "x"}

    class Refusing(meta.arg_model):  # type: ignore[misc, name-defined]
        @field_validator("*")
        @classmethod
        def never(cls, value: Any) -> Any:
            raise ValueError("refused")

    meta.arg_model = Refusing
    with pytest.raises(InvalidRequest):
        model({"a": 1, "b": "x"})
    assert model.plain is None


@pytest.mark.parametrize("spelling", ["DELETE", "Delete", " delete"])
@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_prompt_argument_its_annotation_converts_is_refused(mode: str, spelling: str) -> None:
    """An ``Annotated`` constraint converts prompt text too (``"DELETE"`` to ``"delete"``): only
    the form the prompt receives is decided on, anything else is refused before it renders."""
    server = MCPServer("prompts")
    hooks = Hooks()
    rendered: list[str] = []

    @hooks.prompt("*")
    def no_deletes(ctx: GovContext) -> Decision:
        if (ctx.arguments or {}).get("mode") == "delete":
            return Decision.deny("no-deletes", "nothing is deleted")
        return Decision.allow("anything else")

    @server.prompt()
    def lowered(mode: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True)]) -> str:
        rendered.append(mode)
        return mode

    govern(server, hooks)

    async def main() -> None:
        async with Client(server, mode=mode) as client:
            with pytest.raises(MCPError) as refused:
                await client.get_prompt("lowered", {"mode": spelling})
            assert refused.value.code in (-32003, -32602)
            await client.get_prompt("lowered", {"mode": "read"})

    anyio.run(main)
    assert rendered == ["read"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_tool_is_never_handed_the_masked_form_of_a_secret_argument(mode: str) -> None:
    """A ``SecretStr`` dumps as ``**********``: the decided form of the arguments would hand the
    tool the mask instead of what was sent, so such a call is refused before anything runs."""
    server = MCPServer("secrets")
    hooks = Hooks()
    received: list[str] = []
    hooks.tool("*")(lambda ctx: Decision.allow("anything"))

    @server.tool()
    def login(user: str, password: SecretStr) -> str:
        received.append(password.get_secret_value())
        return user

    govern(server, hooks)

    async def main() -> None:
        async with Client(server, mode=mode) as client:
            with pytest.raises(MCPError) as refused:
                await client.call_tool("login", {"user": "ada", "password": "hunter2"})
            assert refused.value.code == -32602

    anyio.run(main)
    assert received == []
