#!/usr/bin/env bash
# Packaging and CLI checks: build the wheel and sdist, check them with twine, install the wheel
# into a fresh virtual environment (no checkout on the path) and run the quickstart and the CLI
# from it; then a smoke run of the CLI start-up benchmark. Installs what it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "== build the wheel and the sdist, check them"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install --quiet --upgrade pip
"$WORK/tools/bin/python" -m pip install --quiet build twine
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" . >/dev/null
ls "$WORK/dist"
"$WORK/tools/bin/python" -m twine check --strict "$WORK"/dist/*

echo "== the quickstart from the installed wheel, in a fresh environment"
"$PYTHON" -m venv "$WORK/wheel"
"$WORK/wheel/bin/python" -m pip install --quiet --upgrade pip
"$WORK/wheel/bin/python" -m pip install --quiet "$WORK"/dist/*.whl
mkdir "$WORK/run"
cp examples/quickstart.py "$WORK/run/"
(
  cd "$WORK/run"
  unset PYTHONPATH
  # The package comes from the wheel, not from this checkout.
  "$WORK/wheel/bin/python" -c 'import mcpgov, sys; assert "site-packages" in mcpgov.__file__, mcpgov.__file__'
  "$WORK/wheel/bin/python" quickstart.py
  "$WORK/wheel/bin/mcpgov" demo >/dev/null
  "$WORK/wheel/bin/mcpgov" --help >/dev/null
  "$WORK/wheel/bin/mcpgov" keys generate --out key.json >/dev/null
  "$WORK/wheel/bin/mcpgov" keys jwks key.json >/dev/null
  # Bad input is one line and exit 2.
  set +e
  "$WORK/wheel/bin/mcpgov" pin check nonexistent:server --pin missing.json 2>err.txt
  code=$?
  set -e
  [ "$code" = 2 ] || { echo "expected exit 2, got $code"; exit 1; }
  [ "$(wc -l <err.txt)" = 1 ] || { cat err.txt; exit 1; }
)

echo "== CLI start-up benchmark (smoke run; figures for the notes)"
BENCH_PYTHON="${MCPGOV_CI_VENV:-.ci/.venv}/bin/python"
[ -x "$BENCH_PYTHON" ] || BENCH_PYTHON=python
"$BENCH_PYTHON" benchmarks/bench_cli.py --rounds 1
