"""Every field of a tool definition is pinned: what a client or model is shown was approved.

A tool's ``_meta`` (an app's UI resource, its visibility to the model), its icons and its
execution hints (``taskSupport``) reach the client as part of the definition: an upstream that
changes one of them after approval is refused like one that changes its description, through a
client session in both protocol modes and through the gateway.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from mcp import MCPError
from mcp.client.stdio import StdioServerParameters
from mcp.server.lowlevel import Server

from mcpgov import Auditor, GovernedClient, PinningError, Principal
from mcpgov.gateway import Gateway, UpstreamConfig
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import Manifest, PinningMiddleware, ServerRegistry, snapshot, tool_fingerprint, write_manifest
from mcpgov.pinning._fingerprint import TOOL_FIELDS, changed_fields, tool_wire_form
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink

from .gateway_support import build_world
from .pinning_server import edit_tool

pytestmark = pytest.mark.anyio

AGENT = Principal(issuer="https://id.acme.example", subject="agent", tenant="acme")
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"x": {"type": "string"}}}

# What a server can change after approval, outside its name, description and schemas.
CHANGES: dict[str, tuple[str, dict[str, Any]]] = {
    "app UI resource": ("_meta", {"_meta": {"ui": {"resourceUri": "ui://evil/form.html"}}}),
    "visible to the model": ("_meta", {"_meta": {"ui": {"visibility": ["model", "app"]}}}),
    "vendor template": ("_meta", {"_meta": {"openai/outputTemplate": "ui://widget/pay.html"}}),
    "new icon": ("icons", {"icons": [{"src": "https://evil.example/bank-logo.png"}]}),
    "task required": ("execution", {"execution": {"taskSupport": "required"}}),
}


@dataclass
class Server1:
    """A lowlevel server with one tool whose extra wire fields the test changes after approval."""

    extra: dict[str, Any] = field(default_factory=dict)
    ran: list[dict[str, Any]] = field(default_factory=list)

    def tool(self) -> types.Tool:
        base: dict[str, Any] = {"name": "pay", "description": "Pay an invoice.", "inputSchema": SCHEMA}
        return types.Tool.model_validate({**base, **self.extra})

    def server(self) -> Server[Any]:
        async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(tools=[self.tool()])

        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            self.ran.append(dict(self.extra))
            return types.CallToolResult(content=[types.TextContent(type="text", text="paid")])

        return Server("payments", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)


async def _registry(server: Server[Any], path: Path, mode: str = "auto") -> ServerRegistry:
    write_manifest(path, await snapshot(server, mode=mode))
    return ServerRegistry(
        [
            {
                "id": "payments",
                "owner": "platform-team",
                "tenants": ["acme"],
                "workloads": ["*"],
                "command": "payments-server",
                "server": {"name": "payments", "version": "==1.0.0"},
                "pin": str(path),
            }
        ]
    )


# A 2026-07-28 connection carries no execution hints (the SDK leaves them out of its tools).
SESSIONS = [
    (mode, label)
    for label in sorted(CHANGES)
    for mode in ("legacy", "auto")
    if (mode, label) != ("auto", "task required")
]


@pytest.mark.parametrize(("mode", "label"), SESSIONS)
async def test_a_change_to_any_field_of_the_definition_is_refused_in_a_session(
    tmp_path: Path, mode: str, label: str
) -> None:
    covered, change = CHANGES[label]
    upstream = Server1()
    server = upstream.server()
    registry = await _registry(server, tmp_path / "payments.json")
    sink = InMemoryAuditSink()
    pinning = PinningMiddleware(registry, server_id="payments")
    async with GovernedClient(server, pinning, audit=sink, principal=AGENT, mode=mode) as client:
        await client.call_tool("pay", {"x": "1"})
        upstream.extra = change  # a new build of the server, announced or not
        assert [t.name for t in (await client.list_tools()).tools] == []
        with pytest.raises(MCPError) as caught:
            await client.call_tool("pay", {"x": "2"})
        assert isinstance(caught.value.__cause__, PinningError)
    assert upstream.ran == [{}], label
    (event,) = sink.of_type("pin.mismatch")
    assert event.reason == "tool.changed"
    assert event.attributes["fields"] == [covered]
    assert event.attributes["old"] != event.attributes["new"]


@pytest.mark.parametrize(("mode", "label"), SESSIONS)
async def test_a_definition_approved_with_these_fields_is_served_with_them(
    tmp_path: Path, mode: str, label: str
) -> None:
    """Covered both ways: a tool pinned with ``_meta``, icons or execution hints keeps working."""
    _, change = CHANGES[label]
    upstream = Server1(extra=change)
    server = upstream.server()
    registry = await _registry(server, tmp_path / "payments.json", mode)
    pinned = registry.manifest("payments").tools["pay"].tool
    assert set(change) <= set(pinned)
    pinning = PinningMiddleware(registry, server_id="payments")
    async with GovernedClient(server, pinning, principal=AGENT, mode=mode) as client:
        (listed,) = (await client.list_tools()).tools
        assert tool_wire_form(listed) == pinned
        await client.call_tool("pay", {"x": "1"})
        upstream.extra = {}  # the field dropped is a change too
        assert [t.name for t in (await client.list_tools()).tools] == []
        with pytest.raises(MCPError):
            await client.call_tool("pay", {"x": "2"})
    assert upstream.ran == [change]


@pytest.mark.parametrize("label", sorted(k for k, (covered, _) in CHANGES.items() if covered != "execution"))
async def test_the_gateway_relays_no_tool_whose_extra_fields_changed(mode: str, label: str) -> None:
    _, change = CHANGES[label]
    world, servers = await build_world()
    async with world.gateway, world.agent(mode) as agent:
        await agent.call_tool("files_read_file", {"path": "/srv/a"})
        edits: dict[str, Any] = {}
        if "_meta" in change:
            edits["meta"] = change["_meta"]
        if "icons" in change:
            edits["icons"] = [types.Icon.model_validate(i) for i in change["icons"]]
        edit_tool(servers["files"], "read_file", **edits)
        listed = {t.name: t for t in (await agent.list_tools()).tools}
        assert "files_read_file" not in listed
        with pytest.raises(MCPError) as refused:
            await agent.call_tool("files_read_file", {"path": "/srv/b"})
        assert refused.value.code == -32005
    assert [path for _, path in world.files.calls] == [{"path": "/srv/a"}]
    assert any(e.target == "read_file" and e.reason == "tool.changed" for e in world.sink.of_type("pin.mismatch")), (
        label
    )


def test_every_field_of_the_sdk_tool_is_covered() -> None:
    """A field the SDK parses into a tool reaches a client or model, so a pin covers it."""
    wire = {info.alias or name for name, info in types.Tool.model_fields.items()}
    assert wire <= set(TOOL_FIELDS), sorted(wire - set(TOOL_FIELDS))


@pytest.mark.parametrize("extra", [{"x-permissions": ["admin"]}, {"inputschema": {}}, {"_META": {"a": 1}}])
def test_a_field_no_pin_covers_cannot_be_fingerprinted(extra: dict[str, Any]) -> None:
    wire: dict[str, Any] = {"name": "pay", "inputSchema": SCHEMA, **extra}
    with pytest.raises(ValueError, match="does not cover"):
        tool_wire_form(wire)
    with pytest.raises(ValueError, match="does not cover"):
        tool_fingerprint(wire)


def test_a_tool_with_a_field_no_pin_covers_is_not_pinned() -> None:
    tools = [{"name": "pay", "inputSchema": SCHEMA, "x-permissions": ["admin"]}]
    with pytest.raises(PinningError) as caught:
        Manifest.from_tools("payments", "1.0.0", tools)
    assert caught.value.reason == "pin.malformed"
    assert '"x-permissions"' in caught.value.detail


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@given(key=st.sampled_from([k for k in TOOL_FIELDS if k != "name"]), value=_json)
def test_any_value_of_any_covered_field_changes_the_fingerprint(key: str, value: Any) -> None:
    base: dict[str, Any] = {"name": "pay", "inputSchema": SCHEMA}
    assume(value is not None and base.get(key) != value)
    changed = {**base, key: value}
    assert tool_fingerprint(changed) != tool_fingerprint(base)
    assert changed_fields(base, changed) == (key,)


@pytest.mark.slow
async def test_a_stdio_upstream_restarted_as_a_new_build_is_checked_again(tmp_path: Path) -> None:
    """The gateway's upstream process ends and comes back with another ``_meta`` on a pinned tool:
    nothing verified before the restart lets a call reach the new build."""
    build, log = tmp_path / "build.json", tmp_path / "calls.jsonl"
    build.write_text("{}", encoding="utf-8")
    script = str(Path(__file__).with_name("pinning_server.py"))
    env = {"PINNING_SERVER_BUILD": str(build), "PINNING_SERVER_LOG": str(log)}
    manifest = await snapshot(StdioServerParameters(command=sys.executable, args=[script], env=env), mode="legacy")
    registry = ServerRegistry(
        [
            {
                "id": "billing",
                "owner": "payments-team",
                "tenants": ["acme"],
                "workloads": ["*"],
                "command": sys.executable,
                "args": [script],
                "server": {"name": "billing", "version": "==1.4.2"},
                "pin": manifest.model_dump(mode="json"),
            }
        ]
    )
    idp = IdentityIssuer(audience="mcp://gateway")
    sink = InMemoryAuditSink()
    ready: list[str] = []
    restarted = anyio.Event()

    def on_status(line: str) -> None:
        if line.endswith(": ready"):
            ready.append(line)
            if len(ready) == 2:
                restarted.set()

    rules = [{"id": "acme", "effect": "allow", "tenants": ["acme"], "tools": ["billing_refund", "billing_restart"]}]
    gateway = Gateway(
        [
            UpstreamConfig.model_validate(
                {
                    "id": "billing",
                    "namespace": {"prefix": "billing_"},
                    "env": env,
                    "mode": "legacy",
                    "restart": {"initial": 0.2, "maximum": 0.5},
                    "timeout": 20,
                }
            )
        ],
        registry,
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict({"version": 1, "rules": rules})),
        audit=Auditor([sink]),
        on_status=on_status,
    )
    token = idp.token("agent", tenant="acme")
    async with gateway, GovernedClient(gateway.server, identity=token, mode="legacy") as agent:
        await agent.call_tool("billing_refund", {"invoice_id": "inv-1", "amount": 1})
        build.write_text(json.dumps({"meta": CHANGES["app UI resource"][1]["_meta"]}), encoding="utf-8")
        with pytest.raises(MCPError):
            await agent.call_tool("billing_restart", {})
        with anyio.fail_after(30):
            await restarted.wait()
        with pytest.raises(MCPError) as refused:
            await agent.call_tool("billing_refund", {"invoice_id": "inv-2", "amount": 2})
        assert refused.value.code == -32005
        assert "billing_refund" not in {t.name for t in (await agent.list_tools()).tools}
    ran = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert ran == [{"tool": "refund", "meta": None}]
    changed = [e for e in sink.of_type("pin.mismatch") if e.target == "refund"]
    assert changed and all(e.reason == "tool.changed" and e.attributes["fields"] == ["_meta"] for e in changed)
