"""Gateway configuration: validation naming file and field, namespacing collisions refused at start, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from mcpgov import ConfigurationError
from mcpgov.cli import main
from mcpgov.gateway import Gateway, Namespace, Router, UpstreamConfig, load_config
from mcpgov.gateway._build import build_chain
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry, read_manifest
from mcpgov.testing import IdentityIssuer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gateway"


def example_dir(tmp_path: Path) -> Path:
    for name in ("gateway.yaml", "approved-servers.yaml", "policy.yaml", "notes_server.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    shutil.copytree(EXAMPLE / "pins", tmp_path / "pins")
    (tmp_path / "jwks.json").write_text(json.dumps(IdentityIssuer("https://id.acme.example").jwks()))
    return tmp_path


def write_config(tmp_path: Path, change: Any) -> Path:
    base = example_dir(tmp_path)
    data = yaml.safe_load((base / "gateway.yaml").read_text())
    change(data)
    path = base / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_example_configuration_loads_and_checks(tmp_path: Path) -> None:
    path = example_dir(tmp_path) / "gateway.yaml"
    result = CliRunner().invoke(main, ["gateway", "--config", str(path), "--check"], env={"NOTES_API_KEY": "k" * 20})
    assert result.exit_code == 0, result.output
    assert "configuration OK: 1 upstream(s): notes" in result.output


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["upstreams"][0].update(timeout=-1), "upstreams[0] ('notes').timeout"),
        (lambda d: d["upstreams"][0].update(start="sometimes"), "upstreams[0] ('notes').start"),
        (lambda d: d["upstreams"][0].update(concurency=3), "upstreams[0] ('notes').concurency"),
        (lambda d: d["upstreams"][0]["secret_env"].update(K={"env": "A", "file": "b"}), "secret_env.K"),
        (lambda d: d["identity"]["issuers"][0].pop("jwks_file"), "identity.issuers[0]"),
        (lambda d: d["identity"]["issuers"][0].update(max_ttl=0), "identity.issuers[0].max_ttl"),
        (lambda d: d["identity"]["issuers"][0].update(max_ttl="forever"), "identity.issuers[0].max_ttl"),
        (lambda d: d.pop("policy"), "policy"),
        (lambda d: d.update(upstreams=[]), "upstreams"),
        (lambda d: d["http"].update(path="mcp"), "http.path"),
        (lambda d: d.update(version=2), "version"),
    ],
)
def test_a_bad_field_is_one_clear_error_naming_file_and_field(tmp_path: Path, change: Any, field: str) -> None:
    path = write_config(tmp_path, change)
    with pytest.raises(ConfigurationError) as bad:
        load_config(path)
    assert str(path) in bad.value.detail
    assert field in bad.value.detail
    result = CliRunner().invoke(main, ["gateway", "--config", str(path), "--check"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and str(path) in result.output


@pytest.mark.parametrize(("given", "expected"), [(None, 86400.0), (600, 600.0)])
def test_an_issuer_max_ttl_reaches_the_identity_verifier(tmp_path: Path, given: int | None, expected: float) -> None:
    def change(data: dict[str, Any]) -> None:
        if given is not None:
            data["identity"]["issuers"][0]["max_ttl"] = given

    path = write_config(tmp_path, change)
    chain, _auditor = build_chain(load_config(path), base_dir=path.parent)
    identity = chain[0]
    assert isinstance(identity, IdentityMiddleware)
    (issuer,) = identity.verifier._oidc.values()
    assert issuer.config.max_ttl == expected


@pytest.mark.parametrize("max_ttl", [None, 60, 7200, 86400])
def test_a_credentials_max_ttl_reaches_the_verifier_and_its_revocations(tmp_path: Path, max_ttl: int | None) -> None:
    from mcpgov.credentials import CredentialMiddleware, SigningKeySet

    def change(data: dict[str, Any]) -> None:
        data["credentials"] = {
            "issuer": "https://credentials.acme.example",
            "audience": "https://gateway.acme.example",
            "jwks_file": "credentials-jwks.json",
            **({"max_ttl": max_ttl} if max_ttl is not None else {}),
        }

    path = write_config(tmp_path, change)
    jwks = SigningKeySet.generate().jwks()
    (path.parent / "credentials-jwks.json").write_text(json.dumps(jwks))
    chain, _auditor = build_chain(load_config(path), base_dir=path.parent)
    (middleware,) = [m for m in chain if isinstance(m, CredentialMiddleware)]
    expected = 3600.0 if max_ttl is None else float(max_ttl)
    assert middleware.verifier.max_ttl == expected
    # a revocation is kept as long as any credential it covers could still be accepted
    assert middleware.verifier.revocations.max_ttl == expected


def test_unreadable_or_malformed_files_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert CliRunner().invoke(main, ["gateway", "--config", str(missing)]).exit_code == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("upstreams: [\n")
    result = CliRunner().invoke(main, ["gateway", "--config", str(broken)])
    assert result.exit_code == 2 and "not valid YAML" in result.output


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d["upstreams"][0].update(id="unknown"), "not in the approved-server registry"),
        (lambda d: d.update(policy="missing-policy.yaml"), "missing-policy.yaml"),
        (lambda d: d.update(registry="missing-registry.yaml"), "missing-registry.yaml"),
        (lambda d: d["identity"]["issuers"][0].update(jwks_file="missing.json"), "missing.json"),
    ],
)
def test_missing_references_exit_2_naming_them(tmp_path: Path, change: Any, words: str) -> None:
    path = write_config(tmp_path, change)
    result = CliRunner().invoke(main, ["gateway", "--config", str(path), "--check"])
    assert result.exit_code == 2
    assert words in result.output


@pytest.mark.parametrize(
    ("a", "b"),
    [("a_", "a_b_"), ("", "x_"), ("Time_", "time_"), ("db", "db2")],
)
def test_overlapping_prefixes_are_refused(a: str, b: str) -> None:
    with pytest.raises(ConfigurationError, match="overlap"):
        Router([Namespace("one", prefix=a, resource_prefix="one+"), Namespace("two", prefix=b, resource_prefix="two+")])


def test_mapped_names_must_be_unique_valid_and_outside_other_prefixes() -> None:
    with pytest.raises(ConfigurationError, match="collides"):
        Router(
            [
                Namespace("one", prefix="o_", resource_prefix="1+", tools={"now": "clock"}),
                Namespace("two", prefix="t_", resource_prefix="2+", tools={"time": "Clock"}),
            ]
        )
    with pytest.raises(ConfigurationError, match="not allowed"):
        Router([Namespace("one", prefix="o_", resource_prefix="1+", tools={"now": "bad name!"})])
    with pytest.raises(ConfigurationError, match="falls inside the prefix"):
        Router(
            [
                Namespace("one", prefix="o_", resource_prefix="1+", tools={"now": "t_now"}),
                Namespace("two", prefix="t_", resource_prefix="2+"),
            ]
        )


def test_a_mapped_tool_is_reachable_only_under_its_gateway_name() -> None:
    router = Router(
        [
            Namespace("one", prefix="o_", resource_prefix="1+", tools={"now": "clock"}),
            Namespace("two", prefix="t_", resource_prefix="2+"),
        ]
    )
    assert router.route("tool", "clock") == ("one", "now")
    assert router.route("tool", "o_now") is None
    assert router.route("tool", "o_other") == ("one", "other")
    assert router.route("tool", "t_") is None
    assert router.route_uri("2+file:///x") == ("two", "file:///x")
    assert router.route_uri("3+file:///x") is None


@given(
    prefixes=st.lists(st.text(alphabet="abcAB_", min_size=0, max_size=4), min_size=2, max_size=4, unique=True),
    name=st.text(alphabet="abcAB_xyz", min_size=1, max_size=8),
)
def test_a_gateway_name_routes_to_at_most_one_upstream(prefixes: list[str], name: str) -> None:
    """Whatever prefixes are accepted, every tool name means exactly its upstream's tool."""
    spaces = [Namespace(f"u{i}", prefix=p, resource_prefix=f"r{i}+") for i, p in enumerate(prefixes)]
    try:
        router = Router(spaces)
    except ConfigurationError:
        return
    matches = [ns for ns in spaces if name.startswith(ns.prefix) and len(name) > len(ns.prefix)]
    assert len(matches) <= 1
    for ns in spaces:
        assert router.route("tool", ns.front("tool", name)) == (ns.upstream, name)


async def _registry(tmp_path: Path) -> ServerRegistry:
    manifest = read_manifest(EXAMPLE / "pins" / "notes.json").model_dump(mode="json", by_alias=True)
    entry = {
        "owner": "p",
        "tenants": ["acme"],
        "workloads": ["*"],
        "command": "x",
        "server": {"name": "notes", "version": ">=1"},
        "pin": manifest,
    }
    return ServerRegistry([{"id": "a", **entry}, {"id": "b", **entry}], base_dir=tmp_path)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"prefix": "x_"}, {"prefix": "y_", "tools": {"add_note": "x_add_note"}}),
        ({"prefix": "x_", "tools": {"list_notes": "notes"}}, {"prefix": "y_", "tools": {"check_key": "NOTES"}}),
        ({"prefix": "x_", "tools": {"list_notes": "read_fi1e"}}, {"prefix": "y_", "tools": {"check_key": "read_file"}}),
    ],
)
async def test_pinned_tools_of_two_upstreams_that_would_collide_are_refused_at_start(
    tmp_path: Path, a: dict[str, Any], b: dict[str, Any]
) -> None:
    registry = await _registry(tmp_path)
    upstreams = [
        UpstreamConfig.model_validate({"id": "a", "namespace": a}),
        UpstreamConfig.model_validate({"id": "b", "namespace": b}),
    ]
    with pytest.raises(ConfigurationError, match=r"collides|falls inside"):
        Gateway(upstreams, registry, _AllowAll())


class _AllowAll:
    async def __call__(self, ctx: Any, call_next: Any) -> Any:  # pragma: no cover - never runs
        return await call_next(ctx)
