"""Run a stdio MCP server and record every message it receives (one JSON line each) to a file.

Usage: python gateway_wiretap.py LOG COMMAND [ARGS...]

The gateway starts this instead of the server; the tests read LOG to see exactly what reached
the server on its own wire.
"""

from __future__ import annotations

import subprocess
import sys
import threading


def main() -> int:
    log_path, command = sys.argv[1], sys.argv[2:]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=sys.stdout.buffer)  # noqa: S603
    assert child.stdin is not None

    def pump() -> None:
        with open(log_path, "ab", buffering=0) as log:
            for line in sys.stdin.buffer:
                log.write(line)
                child.stdin.write(line)  # type: ignore[union-attr]
                child.stdin.flush()  # type: ignore[union-attr]
        child.stdin.close()  # type: ignore[union-attr]

    threading.Thread(target=pump, daemon=True).start()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
