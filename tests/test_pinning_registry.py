"""The approved-server registry: validated configuration, and who a server may serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc.jwk import OKPKey
from mcp.client.stdio import StdioServerParameters

from mcpgov import ConfigurationError, PinningError, Principal
from mcpgov.pinning import ApprovedServer, InlinePinStore, Manifest, ServerRegistry, write_manifest

AGENT = Principal(
    issuer="https://id.acme.example",
    subject="billing-agent",
    tenant="acme",
    spiffe_id="spiffe://acme.example/agents/billing-agent",
)
INFO = {"name": "billing", "version": "1.4.2"}
TARGET = StdioServerParameters(command="python", args=["-m", "billing"])
"""Where the clients of these tests connected: the entry's own command."""


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "billing",
        "owner": "payments-team",
        "tenants": ["acme"],
        "workloads": ["spiffe://acme.example/agents/*"],
        "command": "python",
        "args": ["-m", "billing"],
        "server": {"name": "billing", "version": ">=1.4,<2"},
        "pin": "pins/billing.json",
    }
    entry.update(changes)
    return entry


def _manifest() -> Manifest:
    return Manifest.from_tools("billing", "1.4.2", [])


def test_registry_file_in_yaml_resolves_pins_next_to_it(tmp_path: Path) -> None:
    (tmp_path / "pins").mkdir()
    write_manifest(tmp_path / "pins" / "billing.json", _manifest())
    path = tmp_path / "approved.yaml"
    path.write_text(
        "servers:\n"
        "  - id: billing\n"
        "    owner: payments-team\n"
        "    tenants: [acme]\n"
        "    workloads: ['spiffe://acme.example/agents/*']\n"
        "    url: https://billing.acme.example/mcp\n"
        "    server: {name: billing, version: '>=1.4,<2'}\n"
        "    pin: pins/billing.json\n"
    )
    registry = ServerRegistry.from_file(path)
    assert "billing" in registry and len(registry) == 1
    assert registry.manifest("billing") == _manifest()
    entry = registry.get("billing")
    assert entry is not None and entry.connection() == "https://billing.acme.example/mcp"
    assert [e.id for e in registry] == ["billing"]


def test_registry_file_in_json_with_an_inline_pin(tmp_path: Path) -> None:
    path = tmp_path / "approved.json"
    path.write_text(json.dumps({"servers": [_entry(pin=_manifest().body())]}))
    registry = ServerRegistry.from_file(path)
    assert isinstance(registry.pin_store("billing"), InlinePinStore)
    assert registry.manifest("billing") == _manifest()
    entry = registry.get("billing")
    assert entry is not None
    assert entry.connection() == StdioServerParameters(command="python", args=["-m", "billing"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tenants": []}, "tenants"),
        ({"workloads": [""]}, "non-empty"),
        ({"url": "https://x.example/mcp"}, "exactly one of 'url' or 'command'"),
        ({"command": None, "args": []}, "exactly one of 'url' or 'command'"),
        ({"command": None, "url": "ftp://x.example"}, "http"),
        ({"command": None, "url": "https://x.example", "args": ["-v"]}, "'args' needs 'command'"),
        ({"server": {"name": "billing", "version": "newest"}}, "PEP 440"),
        ({"server": {"name": "billing", "version": ""}}, "version"),
        (
            {"command": None, "args": [], "url": "https://x.example", "env": {"A": "1"}},
            "'env' applies to a server started over stdio",
        ),
        ({"publisher_key": {"kty": "oct", "k": "c2VjcmV0"}}, "asymmetric"),
        ({"pin": ""}, "empty path"),
        ({"pin": {"format": "mcpgov.pins/1"}}, "not a valid pinned manifest"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_entries_are_configuration_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ServerRegistry([_entry(**changes)])


def test_a_private_publisher_key_in_the_registry_is_refused() -> None:
    private = OKPKey.generate_key("Ed25519").as_dict(private=True)
    with pytest.raises(ConfigurationError, match="public JWK"):
        ServerRegistry([_entry(publisher_key=private)])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "one key, 'servers'"),
        ({"servers": {}}, "one key, 'servers'"),
        ({"servers": [], "extra": 1}, "one key, 'servers'"),
        ({"servers": [_entry(), _entry()]}, r"servers\[1\]: server id 'billing' is approved twice"),
    ],
)
def test_malformed_registries_are_refused(data: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ServerRegistry.from_mapping(data)


def test_unreadable_registry_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        ServerRegistry.from_file(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("servers: [unclosed\n")
    with pytest.raises(ConfigurationError, match="not valid"):
        ServerRegistry.from_file(bad)


def test_approved_caller_and_matching_server_pass() -> None:
    registry = ServerRegistry([_entry()])
    assert registry.check("billing", tenant="acme", principal=AGENT, server_info=INFO, target=TARGET).id == "billing"


@pytest.mark.parametrize(
    ("tenant", "principal", "info", "why"),
    [
        ("globex", AGENT, INFO, "not approved for tenant 'globex'"),
        (None, AGENT, INFO, "no tenant"),
        ("acme", None, INFO, "no verified identity"),
        (
            "acme",
            Principal(issuer="https://id.acme.example", subject="intruder", tenant="acme"),
            INFO,
            "not approved for workload 'intruder'",
        ),
        ("acme", AGENT, {"name": "billing-clone", "version": "1.4.2"}, "calls itself 'billing-clone'"),
        ("acme", AGENT, {"name": "billing", "version": "2.0.0"}, "outside the approved range"),
        ("acme", AGENT, {"name": "billing", "version": "latest"}, "not a PEP 440 version"),
        ("acme", AGENT, {"name": "billing"}, "did not state a version"),
        ("acme", AGENT, None, "has not described itself"),
    ],
)
def test_refusals_name_the_reason(tenant: str | None, principal: Principal | None, info: Any, why: str) -> None:
    registry = ServerRegistry([_entry()])
    with pytest.raises(PinningError, match=why) as caught:
        registry.check("billing", tenant=tenant, principal=principal, server_info=info, target=TARGET)
    assert caught.value.reason == "server.refused"
    assert caught.value.code == "mcpgov.pinning" and caught.value.rpc_code == -32005


def test_workload_patterns_match_the_subject_when_there_is_no_spiffe_id() -> None:
    registry = ServerRegistry([_entry(workloads=["agent-*"])])
    agent = Principal(issuer="https://id.acme.example", subject="agent-7", tenant="acme")
    assert registry.check("billing", tenant="acme", principal=agent, server_info=INFO, target=TARGET).id == "billing"


def test_unknown_and_withdrawn_servers_are_refused() -> None:
    registry = ServerRegistry([_entry()])
    with pytest.raises(PinningError, match="not in the registry"):
        registry.check("payroll", tenant="acme", principal=AGENT, server_info=INFO, target=TARGET)
    registry.remove("billing")
    with pytest.raises(PinningError) as caught:
        registry.check("billing", tenant="acme", principal=AGENT, server_info=INFO, target=TARGET)
    assert caught.value.reason == "server.refused"
    with pytest.raises(PinningError):
        registry.manifest("billing")


def test_a_pin_taken_from_another_server_is_refused(tmp_path: Path) -> None:
    write_manifest(tmp_path / "billing.json", Manifest.from_tools("payroll", "1.0", []))
    registry = ServerRegistry([_entry(pin="billing.json")], base_dir=tmp_path)
    with pytest.raises(PinningError) as caught:
        registry.manifest("billing")
    assert caught.value.reason == "pin.wrong_server"


def test_reprs_show_no_key_material() -> None:
    key = OKPKey.generate_key("Ed25519", {"kid": "pub"})
    registry = ServerRegistry([_entry(publisher_key=key.as_dict(private=False))])
    entry = registry.get("billing")
    assert isinstance(entry, ApprovedServer)
    assert key.as_dict()["x"] not in repr(entry)
    assert repr(registry) == "ServerRegistry(servers=['billing'])"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=20,
)


@given(changes=st.dictionaries(st.sampled_from(sorted(_entry())), _json_values, max_size=3))
def test_registry_entries_are_either_valid_or_a_configuration_error(changes: dict[str, Any]) -> None:
    outcome: ServerRegistry | ConfigurationError
    try:
        outcome = ServerRegistry([_entry(**changes)], base_dir="/nonexistent")
    except ConfigurationError as exc:
        outcome = exc
    if isinstance(outcome, ConfigurationError):
        assert outcome.detail.startswith(("invalid approved server", "server "))
    else:
        assert len(outcome) == 1
