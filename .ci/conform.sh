#!/usr/bin/env bash
# Protocol conformance gate: the official MCP conformance suite's server legs (2025-11-25,
# 2026-07-28 and the harness default) against the SDK's everything-server, bare and governed by
# mcpgov (an allow-all chain, and a chain that allows tools, resources and prompts but no other
# method), and through `mcpgov gateway` (allow-all) fronting it as a Streamable HTTP upstream
# and as a stdio upstream. Fails on any difference in results (tests/conformance/compare.py;
# tests/conformance/known-differences.yml lists the intended ones).
#
# MCPGOV_CONFORM_SERVERS picks the servers compared with the bare one (default: all of
# allow-all targets gateway gateway-stdio).
#
# Installs what it needs into .ci/.conform (gitignored): the sdist of the installed `mcp`
# version (its everything-server, and the conformance package version its own CI pins in
# .github/workflows/conformance.yml), Node 22 from npm when the machine's Node is older, and the
# conformance package. Needs python (the project's environment, active), npm and network.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${MCPGOV_CONFORM_CACHE:-.ci/.conform}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
PY="${PYTHON:-python}"

MCP_VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("mcp"))')"
SDIST_DIR="$CACHE/mcp-$MCP_VERSION"
if [ ! -d "$SDIST_DIR/examples/servers/everything-server" ]; then
  echo "== conformance: fetching the mcp $MCP_VERSION sdist"
  rm -rf "$SDIST_DIR" "$CACHE/sdist"
  "$PY" -m pip download --quiet --no-deps --no-binary :all: "mcp==$MCP_VERSION" -d "$CACHE/sdist"
  tar -xzf "$CACHE/sdist/mcp-$MCP_VERSION.tar.gz" -C "$CACHE"
fi
EVERYTHING="$SDIST_DIR/examples/servers/everything-server"
WORKFLOW="$SDIST_DIR/.github/workflows/conformance.yml"
CONFORMANCE_PKG="$(sed -n 's/^ *CONFORMANCE_PKG: *"\(.*\)" *$/\1/p' "$WORKFLOW" | head -n 1)"
case "$CONFORMANCE_PKG" in
  @modelcontextprotocol/conformance@?*) ;;
  *) echo "error: no pinned CONFORMANCE_PKG found in $WORKFLOW" >&2; exit 2 ;;
esac
echo "== conformance: $CONFORMANCE_PKG (pinned by mcp $MCP_VERSION's CI)"

if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is needed to install Node 22 and $CONFORMANCE_PKG; install Node.js with npm first" >&2
  exit 2
fi
NODE="node"
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 22 ? 0 : 1)' >/dev/null 2>&1; then
  NODE="$CACHE/node22/node_modules/.bin/node"
  if [ ! -x "$NODE" ]; then
    echo "== conformance: installing Node 22 from npm (this machine has $(node --version 2>/dev/null || echo none))"
    npm install --silent --no-audit --no-fund --prefix "$CACHE/node22" node@22 >/dev/null
  fi
fi
PKG_DIR="$CACHE/npm-${CONFORMANCE_PKG##*@}"
HARNESS="$PKG_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
if [ ! -f "$HARNESS" ]; then
  echo "== conformance: installing $CONFORMANCE_PKG"
  npm install --silent --no-audit --no-fund --prefix "$PKG_DIR" "$CONFORMANCE_PKG" >/dev/null
fi
echo "== conformance: node $("$NODE" --version)"

RUN="$CACHE/run"
rm -rf "$RUN"
mkdir -p "$RUN"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_ready() { # name port pid
  "$PY" - "$2" "$3" "$1" <<'PYEOF'
import os, sys, time, urllib.error, urllib.request
port, pid, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for _ in range(120):
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"error: the {name} server exited before it was ready")
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/mcp", timeout=2)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)  # it answers (an HTTP error for a bare GET is an answer)
    except OSError:
        time.sleep(0.25)
sys.exit(f"error: the {name} server did not start on port {port}")
PYEOF
}

declare -A PORTS
start() { # name command...
  local name="$1"
  shift
  local port
  port="$(free_port)"
  "$@" --port "$port" --log-level warning >"$RUN/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  PORTS[$name]="$port"
  if ! wait_ready "$name" "$port" "$pid"; then
    cat "$RUN/$name.log" >&2
    exit 1
  fi
}

GOVERNED="tests/conformance/governed_everything.py"
GATEWAY="tests/conformance/gateway_everything.py"
read -r -a SERVERS <<<"${MCPGOV_CONFORM_SERVERS:-allow-all targets gateway gateway-stdio}"
start bare env PYTHONPATH="$EVERYTHING${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m mcp_everything_server
for name in "${SERVERS[@]}"; do
  case "$name" in
    allow-all | targets) start "$name" "$PY" "$GOVERNED" --everything-dir "$EVERYTHING" --chain "$name" -- ;;
    gateway)
      # The gateway's own upstream: a second everything-server, so no state is shared with the bare run.
      start upstream env PYTHONPATH="$EVERYTHING${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m mcp_everything_server
      start gateway "$PY" "$GATEWAY" --everything-dir "$EVERYTHING" \
        --upstream-url "http://127.0.0.1:${PORTS[upstream]}/mcp" --
      ;;
    gateway-stdio) start gateway-stdio "$PY" "$GATEWAY" --everything-dir "$EVERYTHING" --upstream-stdio -- ;;
    *) echo "error: unknown server $name in MCPGOV_CONFORM_SERVERS" >&2; exit 2 ;;
  esac
done

harness() { # server output-dir log harness-args...
  local name="$1" out="$2" log="$3"
  shift 3
  # The harness exits non-zero when any check fails (the bare server fails some too): the
  # verdict is the comparison, which also fails when a run produced no results.
  PATH="$(dirname "$NODE"):$PATH" "$NODE" "$HARNESS" server --url "http://127.0.0.1:${PORTS[$name]}/mcp" \
    --output-dir "$out" "$@" >"$log" 2>&1 || true
}

status=0
for leg in 2025-11-25 2026-07-28 default; do
  spec=()
  if [ "$leg" != default ]; then spec=(--spec-version "$leg"); fi
  for name in bare "${SERVERS[@]}"; do
    harness "$name" "$RUN/$leg/$name" "$RUN/$leg-$name.log" --suite all "${spec[@]}"
  done
  for name in "${SERVERS[@]}"; do
    echo "-- $leg: bare vs governed ($name)"
    differing="$RUN/$leg-$name.differing"
    if "$PY" tests/conformance/compare.py --leg "$leg" --server "$name" --differing "$differing" "$RUN/$leg/bare" "$RUN/$leg/$name"; then
      continue
    fi
    # Scenarios with real-time waits can be disturbed by a loaded machine. Run each differing
    # scenario again alone against both servers: a real difference reproduces there too.
    solo="$RUN/$leg/solo-$name"
    while read -r scenario; do
      [ -n "$scenario" ] || continue
      echo "   re-running $scenario alone against both servers"
      for server in bare "$name"; do
        harness "$server" "$solo/$server" "$solo-$server.log" --scenario "$scenario" "${spec[@]}"
      done
    done <"$differing"
    "$PY" tests/conformance/compare.py --leg "$leg" --server "$name" --only "$differing" "$solo/bare" "$solo/$name" || status=1
  done
done
if [ "$status" -ne 0 ]; then
  echo "conformance: the governed server differs from the bare one (logs in $RUN)" >&2
  exit 1
fi
echo "conformance: governed and bare servers agree on every leg"
