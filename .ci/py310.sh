#!/usr/bin/env bash
# The test suite on the oldest supported Python (3.10), in its own environment: everything but
# the slow subprocess tests, which the main leg runs. Usage: .ci/py310.sh PATH-TO-PYTHON3.10
set -euo pipefail
cd "$(dirname "$0")/.."
PY310="$1"
rm -rf .ci/.venv310
"$PY310" -m venv .ci/.venv310
.ci/.venv310/bin/python -m pip install --quiet --upgrade pip
.ci/.venv310/bin/python -m pip install --quiet -e '.[dev,redis,cedar,otel]'
.ci/.venv310/bin/python -m pytest -q -p no:cacheprovider -m "not slow"
