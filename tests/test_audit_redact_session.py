"""Secrets a tool call carries stay out of the audit trail and every log record, through a real
session: generated secrets, planted in generated shapes, travel in a call's arguments, its result
and the error its tool raises, while every logger (mcpgov's and the SDK's ``mcp.*``) records at
DEBUG and a JSON Lines sink records every event with its arguments."""

from __future__ import annotations

import contextlib
import logging
import traceback
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from mcpgov import Auditor, Decision, GovContext, Hooks, govern
from mcpgov.audit import JsonlSink, Redactor

from .test_audit_redact_property import planted as planted_pairs
from .test_audit_redact_shapes import planted as planted_shapes


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage(), repr(record.__dict__)]
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        self.lines.append("\n".join(parts))


def _server(path: Path) -> tuple[MCPServer, JsonlSink]:
    server = MCPServer("redact")
    hooks = Hooks()

    @server.tool()
    def echo(text: str) -> str:
        return f"got {text}"

    @server.tool()
    def connect(url: str) -> str:
        raise RuntimeError(f"could not connect with {url}")

    @hooks.tool("echo")
    @hooks.tool("connect")
    def allow(ctx: GovContext) -> Decision:
        return Decision.allow("allow-tools")

    sink = JsonlSink(path)
    govern(server, hooks, audit=Auditor([sink], redactor=Redactor(record_arguments=True)))
    return server, sink


async def _calls(server: MCPServer, text: str, mode: str) -> None:
    async with Client(server, mode=mode) as client:
        for tool, arguments in (("echo", {"text": text}), ("connect", {"url": text}), ("missing", {"text": text})):
            with contextlib.suppress(MCPError):  # the unknown tool is refused
                await client.call_tool(tool, arguments)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plant=st.one_of(planted_pairs(), planted_shapes()), mode=st.sampled_from(["auto", "legacy"]))
def test_no_planted_secret_reaches_the_trail_or_any_log_record(
    tmp_path: Path, plant: tuple[str, str], mode: str
) -> None:
    text, secret = plant
    path = tmp_path / "audit.jsonl"
    path.unlink(missing_ok=True)
    handler = _Keep()
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in ("mcp", "mcpgov")]
    levels = [logger.level for logger in (root, *loggers)]
    root.addHandler(handler)
    for logger in (root, *loggers):
        logger.setLevel(logging.DEBUG)
    server, sink = _server(path)
    try:
        anyio.run(_calls, server, text, mode)
    finally:
        sink.close()
        root.removeHandler(handler)
        for logger, level in zip((root, *loggers), levels, strict=True):
            logger.setLevel(level)
    written = path.read_text("utf-8")
    assert '"arguments"' in written and "allow-tools" in written
    assert secret not in written, text
    for line in handler.lines:
        assert secret not in line, (text, line)


@pytest.fixture(autouse=True)
def _quiet_hypothesis() -> None:
    logging.getLogger("hypothesis").setLevel(logging.WARNING)
