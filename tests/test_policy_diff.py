"""``mcpgov policy diff OLD NEW``: the access delta by meaning. Widening exits 1, narrowing and
reordering do not; bad policies exit 2. ``mcpgov audit unused --policy P`` lists idle grants."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import Auditor, Principal, govern
from mcpgov.audit import JsonlSink
from mcpgov.cli import main
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.policy._diff import diff_policies

BASE: dict[str, Any] = {
    "version": 1,
    "name": "base",
    "rules": [
        {
            "id": "acme-read",
            "effect": "allow",
            "tenants": ["acme"],
            "principals": [{"issuer": "https://idp.acme.example"}],
            "tools": ["read_file", "list_dir"],
            "when": {"arguments": {"path": {"path": {"under": "/srv/acme"}}}},
            "obligations": {"max_credential_ttl": 300},
        },
        {"id": "globex-read", "effect": "allow", "tenants": ["globex"], "tools": ["read_file"]},
        {
            "id": "no-secrets",
            "effect": "deny",
            "tools": ["read_file"],
            "when": {"arguments": {"name": {"glob": ["*.key"]}}},
        },
        {"id": "deploy-approval", "effect": "require_approval", "tenants": ["acme"], "tools": ["deploy"]},
        {"id": "no-drop", "effect": "deny", "tools": ["drop_*"]},
    ],
}


def write(tmp: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--no-color", *args])
    return result.exit_code, result.output


def changed(mutate: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(BASE))
    mutate(data)
    return data


def rule(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in data["rules"] if r["id"] == rule_id)


WIDENINGS = {
    "new tool": lambda d: rule(d, "acme-read")["tools"].append("delete_file"),
    "any tenant": lambda d: rule(d, "globex-read").pop("tenants"),
    "new tenant": lambda d: rule(d, "globex-read")["tenants"].append("initech"),
    "glob tool": lambda d: rule(d, "globex-read").__setitem__("tools", ["read_*"]),
    "any principal": lambda d: rule(d, "acme-read").pop("principals"),
    "condition dropped": lambda d: rule(d, "acme-read").pop("when"),
    "condition changed": lambda d: rule(d, "acme-read")["when"]["arguments"]["path"]["path"].__setitem__("under", "/"),
    "longer ttl": lambda d: rule(d, "acme-read")["obligations"].__setitem__("max_credential_ttl", 3600),
    "new allow rule": lambda d: d["rules"].append({"id": "x", "effect": "allow", "resources": ["payroll://*"]}),
    "deny removed": lambda d: d["rules"].remove(rule(d, "no-drop")),
    "deny narrowed": lambda d: rule(d, "no-drop").__setitem__("tools", ["drop_table"]),
    "deny conditioned": lambda d: rule(d, "no-drop").__setitem__("when", {"purposes": ["cleanup"]}),
    "deny excepted": lambda d: rule(d, "no-drop").__setitem__("unless", {"scopes": ["admin"]}),
    "approval removed": lambda d: d["rules"].remove(rule(d, "deploy-approval")),
    "anonymous": lambda d: rule(d, "globex-read").__setitem__("anonymous", True),
}
NARROWINGS = {
    "tool removed": lambda d: rule(d, "acme-read")["tools"].remove("list_dir"),
    "allow removed": lambda d: d["rules"].remove(rule(d, "globex-read")),
    "principal limited": lambda d: rule(d, "globex-read").__setitem__("principals", [{"issuer": "https://g.example"}]),
    "condition added": lambda d: rule(d, "globex-read").__setitem__("when", {"purposes": ["audit"]}),
    "deny added": lambda d: d["rules"].append({"id": "no-write", "effect": "deny", "tools": ["write_file"]}),
    "deny widened": lambda d: rule(d, "no-drop")["tools"].append("truncate_*"),
}


@pytest.mark.parametrize("name", sorted(WIDENINGS))
def test_widening_exits_1_and_names_who_and_what(tmp_path: Path, name: str) -> None:
    old, new = write(tmp_path, "old.yaml", BASE), write(tmp_path, "new.yaml", changed(WIDENINGS[name]))
    code, out = run("policy", "diff", str(old), str(new))
    assert code == 1, out
    assert "+ widen" in out
    assert run("policy", "diff", "--allow-widening", str(old), str(new))[0] == 0


@pytest.mark.parametrize("name", sorted(NARROWINGS))
def test_narrowing_exits_0(tmp_path: Path, name: str) -> None:
    old, new = write(tmp_path, "old.yaml", BASE), write(tmp_path, "new.yaml", changed(NARROWINGS[name]))
    code, out = run("policy", "diff", str(old), str(new))
    assert code == 0, out
    assert "- narrow" in out and "+ widen" not in out


def test_the_delta_names_the_gained_tool_and_the_tenants() -> None:
    result = diff_policies(Policy.from_dict(BASE), Policy.from_dict(changed(WIDENINGS["new tool"])))
    (change,) = result.changes
    assert change.direction == "widen" and change.rule == "acme-read"
    assert "delete_file" in change.what and "acme" in change.who


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_reordering_and_renaming_unchanged_rules_is_no_change(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - shuffles test data
    data = json.loads(json.dumps(BASE))
    rng.shuffle(data["rules"])
    for entry in data["rules"]:
        for key in ("tools", "tenants"):
            if key in entry:
                rng.shuffle(entry[key])
        if rng.random() < 0.3:
            entry["id"] = entry["id"] + "-renamed"
            entry["description"] = "same access, new words"
    result = diff_policies(Policy.from_dict(BASE), Policy.from_dict(data))
    assert result.changes == ()


def test_identical_policies_print_no_access_change(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", BASE)
    assert run("policy", "diff", str(path), str(path)) == (0, "no access change\n")


def test_bad_policies_exit_2(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", BASE)
    (tmp_path / "bad.yaml").write_text("rules: [{id: x, effect: maybe, tools: [a]}]\n")
    for old, new in ((good, tmp_path / "bad.yaml"), (tmp_path / "missing.yaml", good)):
        code, out = run("policy", "diff", str(old), str(new))
        assert code == 2 and "Traceback" not in out


@pytest.mark.anyio
async def test_audit_unused_lists_the_grants_no_call_used(tmp_path: Path) -> None:
    policy = {
        "version": 1,
        "rules": [
            {"id": "reads", "effect": "allow", "tools": ["read_file"]},
            {"id": "explosions", "effect": "allow", "tools": ["explode"]},
            {"id": "never-used", "effect": "allow", "tools": ["nothing_*"]},
        ],
    }
    policy_file = write(tmp_path, "policy.yaml", policy)
    log = tmp_path / "audit.jsonl"
    auditor = Auditor([JsonlSink(log)])
    server = MCPServer("files")

    @server.tool()
    def read_file(path: str) -> str:
        return path

    @server.tool()
    def explode() -> str:
        return "boom"

    agent = Principal(issuer="https://idp.example", subject="a", tenant="acme")

    async def who(ctx: Any, call_next: Any) -> Any:
        return await call_next(ctx.replace(principal=agent, tenant="acme"))

    govern(server, who, PolicyMiddleware(Policy.from_dict(policy)), audit=auditor)
    async with Client(server) as client:
        await client.call_tool("read_file", {"path": "a"})
    auditor.close()
    code, out = run("audit", "unused", "--policy", str(policy_file), str(log))
    assert code == 0
    assert "never-used" in out and "explosions" in out and "reads" not in out.split("grant(s) unused")[1]
    code, out = run("audit", "unused", "--policy", str(policy_file), "--json", str(log))
    assert sorted(g["rule_id"] for g in json.loads(out)["unused"]) == ["explosions", "never-used"]
    assert run("audit", "unused", "--policy", str(tmp_path / "nope.yaml"), str(log))[0] == 2
