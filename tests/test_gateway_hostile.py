"""Gateway configurations written to mislead or break the loader: each is one clear error, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mcpgov import ConfigurationError
from mcpgov.cli import main
from mcpgov.gateway import load_config
from mcpgov.pinning import ServerRegistry
from tests.test_gateway_config import example_dir


def _check(path: Path) -> str:
    result = CliRunner().invoke(main, ["gateway", "--config", str(path), "--check"], env={"NOTES_API_KEY": "k" * 20})
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: "), result.output
    return result.output


@pytest.mark.parametrize(
    ("suffix", "text", "key"),
    [
        (".yaml", "name: first\npolicy: policy.yaml\nname: second\n", "name"),
        (".yaml", "upstreams:\n  - id: notes\n    timeout: 5\n    timeout: 500\n", "timeout"),
        (".json", '{"name": "first", "name": "second", "policy": "policy.yaml"}', "name"),
    ],
)
def test_a_duplicated_key_is_refused_not_silently_overridden(tmp_path: Path, suffix: str, text: str, key: str) -> None:
    path = tmp_path / f"gateway{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as bad:
        load_config(path)
    assert str(path) in bad.value.detail
    assert "duplicate key" in str(bad.value.__cause__ or bad.value) or "duplicate key" in bad.value.detail
    assert key in bad.value.detail


def test_a_duplicated_key_in_the_registry_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "approved-servers.yaml"
    path.write_text("servers:\n  - id: notes\n    command: python\n    command: evil\n")
    with pytest.raises(ConfigurationError) as bad:
        ServerRegistry.from_file(path)
    assert "duplicate key" in bad.value.detail and "command" in bad.value.detail


@pytest.mark.parametrize(
    ("line", "value"),
    [("concurrency: 010", "010"), ("start_timeout: 1:30", "1:30"), ("timeout: 0x1F", "0x1F")],
)
def test_a_yaml_1_1_only_number_is_refused(tmp_path: Path, line: str, value: str) -> None:
    base = example_dir(tmp_path)
    path = base / "gateway.yaml"
    path.write_text(
        path.read_text().replace("    timeout: 30\n", "").replace("  - id: notes\n", f"  - id: notes\n    {line}\n")
    )
    assert value in _check(path)


def test_the_example_configuration_still_checks(tmp_path: Path) -> None:
    path = example_dir(tmp_path) / "gateway.yaml"
    result = CliRunner().invoke(main, ["gateway", "--config", str(path), "--check"], env={"NOTES_API_KEY": "k" * 20})
    assert result.exit_code == 0, result.output
