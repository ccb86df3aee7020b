#!/usr/bin/env bash
# The gateway against real third-party software: installs mcp-server-time (an SDK 2.x and an
# SDK 1.x build, each in its own virtual environment), @modelcontextprotocol/server-everything
# and the official TypeScript SDK (npm) into .ci/.gateway-ext, then runs the tests that need
# them (which must not skip here) and the gateway example. Run from the CI virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
# .ci/run may have left its virtual environment (the Python 3.10 step): use it again.
VENV="${MCPGOV_CI_VENV:-.ci/.venv}"
if [ -f "$VENV/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
fi

EXT="${MCPGOV_GATEWAY_EXT:-.ci/.gateway-ext}"
mkdir -p "$EXT/node"
EXT="$(cd "$EXT" && pwd)"

if [ ! -x "$EXT/time-venv/bin/mcp-server-time" ]; then
  echo "-- installing mcp-server-time (SDK 2.x build)"
  python3 -m venv "$EXT/time-venv"
  "$EXT/time-venv/bin/python" -m pip install --quiet "mcp-server-time==2026.10.19"
fi
if [ ! -x "$EXT/time1-venv/bin/mcp-server-time" ]; then
  echo "-- installing mcp-server-time (SDK 1.x build)"
  python3 -m venv "$EXT/time1-venv"
  "$EXT/time1-venv/bin/python" -m pip install --quiet "mcp-server-time==0.6.2" "mcp>=1.0,<2"
fi
if ! command -v node >/dev/null 2>&1; then
  echo "-- installing node and npm"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -f "$EXT/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js" ] \
  || [ ! -d "$EXT/node/node_modules/@modelcontextprotocol/sdk" ]; then
  echo "-- installing @modelcontextprotocol/server-everything and @modelcontextprotocol/sdk"
  (cd "$EXT/node" && { [ -f package.json ] || npm init -y >/dev/null; } \
    && npm install --silent --no-audit --no-fund \
      "@modelcontextprotocol/server-everything@2026.8.31" "@modelcontextprotocol/sdk@1.32.2")
fi

export MCPGOV_GATEWAY_EXT="$EXT"
export MCPGOV_REQUIRE_EXTERNAL=1
echo "-- gateway tests against third-party servers and the TypeScript client"
pytest -q -p no:cacheprovider tests/test_gateway_external.py
echo "-- examples/gateway/run.py"
python examples/gateway/run.py
