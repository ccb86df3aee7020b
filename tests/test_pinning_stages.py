"""Pins judge the server, policy judges the caller, whatever the order of the client's chain.

Real SDK sessions in both protocol modes (and over Streamable HTTP): a client-side policy that
hides and denies a pinned tool never makes pinning report it as removed, and the refusal of a
call names the policy's rule, not pinning. Servers without a version, the connection target and
stdio environments are checked as the registry says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import MCPError
from mcp.client.stdio import StdioServerParameters
from mcp.server.mcpserver import MCPServer

from mcpgov import Decision, Denied, GovContext, GovernedClient, Hooks, PinningError, Principal, govern
from mcpgov.pinning import PinningMiddleware, ServerRegistry, snapshot, write_manifest
from mcpgov.pinning._middleware import SERVER_TARGET
from mcpgov.testing import InMemoryAuditSink, serve_http

from .pinning_server import build_server

pytestmark = pytest.mark.anyio

AGENT = Principal(
    issuer="https://id.acme.example",
    subject="billing-agent",
    tenant="acme",
    spiffe_id="spiffe://acme.example/agents/billing-agent",
)
INFO = {"name": "billing", "version": "1.4.2"}


def _entry(pin: Path, **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "billing",
        "owner": "payments-team",
        "tenants": ["acme"],
        "workloads": ["spiffe://acme.example/agents/*"],
        "command": "billing-server",
        "server": {"name": "billing", "version": ">=1.4,<2"},
        "pin": str(pin),
    }
    entry.update(changes)
    return entry


def _no_refunds() -> Hooks:
    """A client-side policy: this agent may read invoices, never refund."""
    hooks = Hooks()

    @hooks.tool("read_invoice")
    def readers(ctx: GovContext) -> Decision:
        return Decision.allow("agents-read")

    @hooks.tool("refund")
    def no_refunds(ctx: GovContext) -> Decision:
        return Decision.deny("agents-never-refund", "this agent may not refund")

    return hooks


async def _pinned(tmp_path: Path, server: MCPServer) -> Path:
    pin = tmp_path / "billing.json"
    write_manifest(pin, await snapshot(server))
    return pin


@pytest.mark.parametrize("pinning_first", [True, False], ids=["pinning-then-policy", "policy-then-pinning"])
async def test_a_policy_hidden_tool_is_not_removed_and_its_denial_names_the_policy_rule(
    tmp_path: Path, mode: str, pinning_first: bool
) -> None:
    server = build_server()
    pin = await _pinned(tmp_path, server)
    registry = ServerRegistry([_entry(pin)])
    pinning = PinningMiddleware(registry, server_id="billing")
    policy = _no_refunds()
    chain = (pinning, policy) if pinning_first else (policy, pinning)
    sink = InMemoryAuditSink()
    async with GovernedClient(server, *chain, audit=sink, principal=AGENT, mode=mode) as client:
        for _ in range(3):
            assert [t.name for t in (await client.list_tools()).tools] == ["read_invoice"]
        assert (await client.call_tool("read_invoice", {"invoice_id": "inv-1"})).is_error is False
        with pytest.raises(MCPError) as caught:
            await client.call_tool("refund", {"invoice_id": "inv-1", "amount": 5})
    assert caught.value.code == Denied.rpc_code != PinningError.rpc_code
    assert isinstance(caught.value.__cause__, Denied)
    assert sink.of_type("pin.mismatch") == []
    refusals = [e for e in sink.events if e.target == "refund" and e.method == "tools/call" and e.type == "decision"]
    assert refusals and all(e.rule == "agents-never-refund" for e in refusals)
    assert all(e.rule != "mcpgov:pinning" for e in sink.events)
    # Pins judged the whole server: the hidden tool was verified, not forgotten.
    assert set(pinning.verified) == {"read_invoice", "refund"}


async def test_a_drifted_tool_hidden_by_policy_is_still_reported_by_pinning(tmp_path: Path, mode: str) -> None:
    pin = await _pinned(tmp_path, build_server())
    drifted = build_server(drift=True)
    pinning = PinningMiddleware(ServerRegistry([_entry(pin)]), server_id="billing")
    sink = InMemoryAuditSink()
    async with GovernedClient(drifted, pinning, _no_refunds(), audit=sink, principal=AGENT, mode=mode) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["read_invoice"]
    (event,) = sink.of_type("pin.mismatch")
    assert event.target == "refund" and event.reason == "tool.changed"


@pytest.mark.parametrize("stated", ["", "0.0.0-dev"])
async def test_a_server_without_a_usable_version_is_approved_by_name_and_fingerprints(
    tmp_path: Path, mode: str, stated: str
) -> None:
    server = build_server(version=stated)
    pin = await _pinned(tmp_path, server)
    registry = ServerRegistry([_entry(pin, server={"name": "billing"})])
    async with GovernedClient(
        server, PinningMiddleware(registry, server_id="billing"), principal=AGENT, mode=mode
    ) as client:
        assert sorted(t.name for t in (await client.list_tools()).tools) == ["read_invoice", "refund"]
        assert (await client.call_tool("read_invoice", {"invoice_id": "inv-1"})).is_error is False


async def test_a_versionless_server_against_a_version_range_is_refused_with_what_to_do(
    tmp_path: Path, mode: str
) -> None:
    server = build_server(version="")
    pin = await _pinned(tmp_path, server)
    registry = ServerRegistry([_entry(pin)])
    async with GovernedClient(
        server, PinningMiddleware(registry, server_id="billing"), principal=AGENT, mode=mode
    ) as client:
        with pytest.raises(MCPError) as caught:
            await client.list_tools()
    cause = caught.value.__cause__
    assert isinstance(cause, PinningError) and cause.reason == "server.refused"
    assert "states no version" in cause.detail and "leave out 'version'" in cause.detail


async def test_a_client_connected_to_another_url_is_refused(tmp_path: Path) -> None:
    server = build_server()
    hooks = Hooks()

    @hooks.tool("*")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("all")

    govern(server, hooks)
    pin = await _pinned(tmp_path, server)
    async with serve_http(server.streamable_http_app()) as base:
        actual = f"{base}/mcp"
        for approved, ok in [
            (actual, True),
            (actual.replace("http://", "HTTP://"), True),
            (f"{base}/other", False),
            ("https://billing.acme.example/mcp", False),
        ]:
            registry = ServerRegistry([_entry(pin, command=None, url=approved)])
            pinning = PinningMiddleware(registry, server_id="billing")
            async with GovernedClient(actual, pinning, principal=AGENT) as client:
                if ok:
                    assert len((await client.list_tools()).tools) == 2
                    continue
                with pytest.raises(MCPError) as caught:
                    await client.list_tools()
            cause = caught.value.__cause__
            assert isinstance(cause, PinningError) and cause.reason == "server.refused"
            assert "is approved at" in cause.detail


@pytest.mark.parametrize(
    ("target", "why"),
    [
        (StdioServerParameters(command="billing-server", args=["--port", "1"], env={"MODE": "prod"}), None),
        (StdioServerParameters(command="billing-server", args=["--port", "1"], env={"MODE": "dev"}), "environment"),
        (StdioServerParameters(command="billing-server", args=["--port", "1"]), "environment"),
        (StdioServerParameters(command="billing-server", args=["--port", "2"], env={"MODE": "prod"}), "command"),
        (StdioServerParameters(command="evil-server", args=["--port", "1"], env={"MODE": "prod"}), "command"),
        ("https://billing.acme.example/mcp", "over stdio"),
    ],
)
def test_a_stdio_entry_checks_command_arguments_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: Any, why: str | None
) -> None:
    program = tmp_path / "bin" / "billing-server"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n", encoding="utf-8")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(program.parent))  # where the approved command is found
    registry = ServerRegistry(
        [_entry(tmp_path / "pin.json", args=["--port", "1"], env={"MODE": "prod"}, server={"name": "billing"})]
    )
    entry = registry.get("billing")
    assert entry is not None
    connection = entry.connection()
    assert isinstance(connection, StdioServerParameters) and connection.env == {"MODE": "prod"}
    if why is None:
        registry.check("billing", tenant="acme", principal=AGENT, server_info=INFO, target=target)
        return
    with pytest.raises(PinningError) as caught:
        registry.check("billing", tenant="acme", principal=AGENT, server_info=INFO, target=target)
    assert caught.value.reason == "server.refused" and why in caught.value.detail
    assert "prod" not in caught.value.detail  # the environment's values are never printed


class _HideTarget:
    """Removes what the client connected to from the context (a client that does not say)."""

    async def __call__(self, ctx: GovContext, call_next: Any) -> Any:
        return await call_next(ctx.replace(extensions={k: v for k, v in ctx.extensions.items() if k != SERVER_TARGET}))


async def test_a_client_that_does_not_say_where_it_connected_is_refused(tmp_path: Path, mode: str) -> None:
    server = build_server()
    pin = await _pinned(tmp_path, server)
    pinning = PinningMiddleware(ServerRegistry([_entry(pin)]), server_id="billing")
    async with GovernedClient(server, _HideTarget(), pinning, principal=AGENT, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.list_tools()
    cause = caught.value.__cause__
    assert isinstance(cause, PinningError) and cause.reason == "server.refused"
    assert "did not say what it connected to" in cause.detail


_hosts = st.sampled_from(["billing.acme.example", "127.0.0.1", "mcp.internal"])
_paths = st.sampled_from(["/mcp", "/mcp/", "/v1/mcp", ""])


@given(host=_hosts, path=_paths, upper=st.booleans(), explicit_port=st.booleans())
def test_spellings_of_the_approved_url_pass_and_other_urls_do_not(
    host: str, path: str, upper: bool, explicit_port: bool
) -> None:
    approved = f"https://{host}{path}"
    registry = ServerRegistry([_entry(Path("pin.json"), command=None, url=approved, server={"name": "billing"})])
    scheme = "HTTPS" if upper else "https"
    spelled = f"{scheme}://{host.upper() if upper else host}{':443' if explicit_port else ''}{path or '/'}"
    registry.check("billing", tenant="acme", principal=AGENT, server_info=INFO, target=spelled)
    for other in (
        f"https://{host}:8443{path}",
        f"http://{host}{path}",
        f"https://{host}{path}x",
        f"https://evil.example{path}",
        f"https://{host}.evil.example{path}",
    ):
        with pytest.raises(PinningError) as caught:
            registry.check("billing", tenant="acme", principal=AGENT, server_info=INFO, target=other)
        assert caught.value.reason == "server.refused"


def test_a_url_with_credentials_is_compared_without_printing_them(tmp_path: Path) -> None:
    registry = ServerRegistry([_entry(tmp_path / "p.json", command=None, url="https://billing.acme.example/mcp")])
    with pytest.raises(PinningError) as caught:
        registry.check(
            "billing", tenant="acme", principal=AGENT, server_info=INFO, target="https://user:hunter2@evil.example/mcp"
        )
    assert "hunter2" not in caught.value.detail and "evil.example" in caught.value.detail
