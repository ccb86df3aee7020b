"""Governing a server you did not write: the notes server behind mcpgov's gateway.

The gateway starts ``notes_server.py`` as a stdio subprocess (it could be any MCP server, in
any language), checks it against the approved-server registry and its pinned tools, and serves
it over Streamable HTTP under the ``notes_`` prefix, governed by ``policy.yaml``. An agent with
a verified identity then:

* lists tools: only the pinned tools the policy lets it see;
* adds a note (progress and a log message come back through the gateway);
* is refused ``notes_delete_all_notes``: the server never receives that call;
* checks that the upstream credential reached the server, while the agent never sees it,
  and the agent's identity token never reaches the server.

Run:  python examples/gateway/run.py   (exits non-zero if anything behaves otherwise)
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import MCPError
from mcp_types import LoggingMessageNotificationParams, TextContent

from mcpgov import GovernedClient
from mcpgov.audit import verify_chain
from mcpgov.gateway import Gateway, load_config
from mcpgov.testing import IdentityIssuer, serve_http

HERE = Path(__file__).resolve().parent


def expect(condition: bool, message: str) -> None:
    if not condition:
        print(f"UNEXPECTED: {message}", file=sys.stderr)
        raise SystemExit(1)


def text(result: Any) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def main(workdir: Path) -> None:
    for name in ("gateway.yaml", "approved-servers.yaml", "policy.yaml", "notes_server.py"):
        shutil.copy(HERE / name, workdir / name)
    shutil.copytree(HERE / "pins", workdir / "pins")

    # The identity provider (a stand-in for your OIDC issuer): its public keys go in jwks.json.
    idp = IdentityIssuer("https://id.acme.example", audience="https://gateway.acme.example/mcp")
    (workdir / "jwks.json").write_text(json.dumps(idp.jwks()))

    # The upstream credential lives in the gateway's environment only.
    api_key = "notes-" + secrets.token_hex(16)
    environ = {"NOTES_API_KEY": api_key}

    config = load_config(workdir / "gateway.yaml")
    gateway = Gateway.from_config(config, base_dir=workdir, environ=environ, on_status=lambda s: print(f"   [{s}]"))
    print("1. gateway starting: upstream 'notes' (stdio subprocess, pinned, approved for tenant acme)")
    async with serve_http(gateway.http_app(auth=gateway.bearer_auth("https://gateway.acme.example/mcp"))) as base:
        url = f"{base}/mcp"
        token = idp.token("notes-agent", tenant="acme")
        reported: list[float] = []
        logs: list[str] = []

        async def on_log(params: LoggingMessageNotificationParams) -> None:
            logs.append(str(params.data))

        async with GovernedClient(url, identity=token, logging_callback=on_log, mode="legacy") as agent:
            tools = sorted(t.name for t in (await agent.list_tools()).tools)
            print(f"2. the agent sees: {tools}")
            expect("notes_delete_all_notes" not in tools, "a tool the policy does not allow is not listed")
            expect("notes_add_note" in tools, "an allowed pinned tool is listed")

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                reported.append(progress)

            added = await agent.call_tool("notes_add_note", {"text": "buy milk"}, progress_callback=on_progress)
            print(f"3. notes_add_note -> {text(added)!r}; progress {reported}; log {logs}")
            expect(text(added) == "1 note(s)", "the allowed call ran upstream")
            expect(reported == [1.0], "the server's progress came back through the gateway")
            expect(logs == ["stored a note of 8 characters"], "the server's log message came back")

            try:
                await agent.call_tool("notes_delete_all_notes", {})
            except MCPError as refused:
                print(f"4. notes_delete_all_notes refused: {refused.code} {refused.message}")
                expect(refused.code == -32003, "the refusal is a policy denial")
            else:
                expect(False, "a call the policy does not allow must be refused")

            checked = await agent.call_tool("notes_check_key", {})
            print(f"5. notes_check_key -> {text(checked)!r} (the key itself never leaves the gateway)")
            expect(text(checked) == "key present", "the upstream credential reached the server")

    seen = [json.loads(line) for line in (workdir / "notes-calls.jsonl").read_text().splitlines()]
    print(f"6. the server received: {[s['tool'] for s in seen]}")
    expect([s["tool"] for s in seen] == ["add_note", "check_key"], "the denied call never reached the server")
    expect(token not in json.dumps(seen), "the agent's identity token never reached the server")
    trail = (workdir / "audit.jsonl").read_text()
    expect(api_key not in trail and token not in trail, "no secret is in the audit trail")
    report = verify_chain([workdir / "audit.jsonl"])
    print(f"7. audit trail: {report.lines} events, hash chain intact: {report.ok}")
    expect(report.ok, "the audit chain verifies")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(main, Path(tmp))
