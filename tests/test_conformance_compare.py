"""The conformance gate's comparison: any difference fails unless listed, stale entries fail, empty runs fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conformance.compare import ResultsError, compare, load_known, load_results, main

STATUSES = st.sampled_from(["SUCCESS", "FAILURE", "WARNING", "INFO", "SKIPPED"])
RESULTS = st.dictionaries(
    st.tuples(st.sampled_from(["tools-list", "server-stateless", "ping"]), st.sampled_from(["a", "b", "c-d"])),
    STATUSES,
    min_size=1,
)


def _write(folder: Path, results: dict[tuple[str, str], str]) -> Path:
    by_scenario: dict[str, list[dict[str, str]]] = {}
    for (scenario, check), status in results.items():
        by_scenario.setdefault(scenario, []).append({"id": check, "status": status})
    for scenario, checks in by_scenario.items():
        run = folder / f"server-{scenario}-2026-12-01T06-23-40-536Z"
        run.mkdir(parents=True)
        (run / "checks.json").write_text(json.dumps(checks), encoding="utf-8")
    return folder


@given(bare=RESULTS, governed=RESULTS)
def test_any_unlisted_difference_is_reported(
    bare: dict[tuple[str, str], str], governed: dict[tuple[str, str], str]
) -> None:
    problems = compare(bare, governed, {})
    assert (problems == []) == (bare == governed)


@given(bare=RESULTS, data=st.data())
def test_a_listed_difference_passes_only_while_it_occurs(bare: dict[tuple[str, str], str], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(bare)))
    other = data.draw(STATUSES.filter(lambda s: s != bare[key]))
    governed = {**bare, key: other}
    assert compare(bare, governed, {key: (bare[key], other)}) == []
    stale = compare(bare, bare, {key: (bare[key], other)})
    assert len(stale) == 1
    assert stale[0][0] == key[0]
    assert "no longer differs" in stale[0][1]


def test_folders_round_trip_and_the_cli_verdict(tmp_path: Path) -> None:
    results = {("tools-list", "tools-list"): "SUCCESS", ("server-stateless", "x-404"): "FAILURE"}
    bare = _write(tmp_path / "bare", results)
    same = _write(tmp_path / "same", results)
    worse = _write(tmp_path / "worse", {**results, ("tools-list", "tools-list"): "FAILURE"})
    known = tmp_path / "known.yml"
    known.write_text("differences: []\n", encoding="utf-8")
    assert load_results(bare) == results
    assert main(["--leg", "default", "--known", str(known), str(bare), str(same)]) == 0
    assert main(["--leg", "default", "--known", str(known), str(bare), str(worse)]) == 1
    differing = tmp_path / "differing.txt"
    assert main(["--leg", "default", "--known", str(known), "--differing", str(differing), str(bare), str(worse)]) == 1
    assert differing.read_text(encoding="utf-8").split() == ["tools-list"]
    # the same run compared on the other scenario only agrees
    only = tmp_path / "only.txt"
    only.write_text("server-stateless\n", encoding="utf-8")
    assert main(["--leg", "default", "--known", str(known), "--only", str(only), str(bare), str(worse)]) == 0
    assert main(["--leg", "default", "--known", str(known), "--only", str(differing), str(bare), str(worse)]) == 1
    (tmp_path / "empty").mkdir()
    assert main(["--leg", "default", "--known", str(known), str(bare), str(tmp_path / "empty")]) == 2


def test_the_shipped_known_differences_file_is_valid() -> None:
    known = load_known(Path(__file__).parent / "conformance" / "known-differences.yml", "default")
    assert known
    assert all(pair == ("SUCCESS", "FAILURE") for pair in known.values())


def test_entries_naming_their_servers_apply_only_to_those(tmp_path: Path) -> None:
    path = tmp_path / "known.yml"
    path.write_text(
        "differences:\n"
        "  - {legs: [default], scenario: s, check: a, bare: SUCCESS, governed: FAILURE, reason: r}\n"
        "  - {legs: [default], servers: [gateway], scenario: s, check: b, bare: SUCCESS, governed: INFO, reason: r}\n",
        encoding="utf-8",
    )
    assert set(load_known(path, "default", "gateway")) == {("s", "a"), ("s", "b")}
    assert set(load_known(path, "default", "allow-all")) == {("s", "a")}
    assert set(load_known(path, "default")) == {("s", "a")}
    path.write_text(
        "differences: [{legs: [default], servers: gateway, scenario: s, check: a, bare: X, governed: Y, reason: r}]",
        encoding="utf-8",
    )
    with pytest.raises(ResultsError):
        load_known(path, "default", "gateway")
    # An unquoted protocol version reads as a YAML date and would never match a leg.
    path.write_text(
        "differences: [{legs: [2026-07-28], scenario: s, check: a, bare: X, governed: Y, reason: r}]", encoding="utf-8"
    )
    with pytest.raises(ResultsError, match="quote dates"):
        load_known(path, "2026-07-28")


@pytest.mark.parametrize(
    "text",
    ["[]", "differences: [{legs: [default], scenario: s}]", "differences: {}", ": not yaml"],
)
def test_a_malformed_known_differences_file_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "known.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ResultsError):
        load_known(path, "default")
