"""``mcpgov gateway``: run a governed gateway from a configuration file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from mcpgov._cliutil import BadInput

if TYPE_CHECKING:
    import socket
    from types import FrameType

__all__ = ["gateway"]


@click.command("gateway")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The gateway configuration file (YAML or JSON).",
)
@click.option("--stdio", "stdio", is_flag=True, help="Serve one agent on stdin/stdout instead of HTTP.")
@click.option("--host", default=None, help="Listen address (default: the config's http.host).")
@click.option("--port", type=int, default=None, help="Listen port (default: the config's http.port).")
@click.option(
    "--check",
    is_flag=True,
    help="Validate the configuration (files, registry, pins, names, upstream secrets and cwd) and exit.",
)
def gateway(config_path: Path, stdio: bool, host: str | None, port: int | None, check: bool) -> None:
    """Run a governed MCP gateway in front of the upstream servers of a configuration file.

    Over Streamable HTTP (default) it also serves /healthz and /readyz. Status lines go to
    stderr; a bad configuration is one line naming the file and the field, exit status 2.
    """
    import asyncio  # noqa: PLC0415

    import anyio  # noqa: PLC0415 - the CLI stays fast: the gateway loads only when it runs

    from mcpgov._errors import ConfigurationError  # noqa: PLC0415
    from mcpgov.gateway._config import load_config  # noqa: PLC0415
    from mcpgov.gateway._gateway import Gateway  # noqa: PLC0415

    def status(line: str) -> None:
        click.echo(f"mcpgov gateway: {line}", err=True)

    try:
        config = load_config(config_path)
        gw = Gateway.from_config(config, base_dir=config_path.resolve().parent, on_status=status)
        if check:
            gw.check()
    except ConfigurationError as exc:
        raise BadInput(exc.detail) from None
    if check:
        status(f"configuration OK: {len(gw.upstreams)} upstream(s): {', '.join(gw.upstreams)}")
        return
    if stdio:
        anyio.run(gw.serve_stdio)
        return
    import uvicorn  # noqa: PLC0415

    listen_host = host or config.http.host
    listen_port = config.http.port if port is None else port
    url = config.identity.resource_server_url or f"http://{listen_host}:{listen_port}{config.http.path}"
    auth = gw.bearer_auth(url)
    app = gw.http_app(path=config.http.path, host=listen_host, auth=auth)
    status(f"listening on http://{listen_host}:{listen_port}{config.http.path}")

    class DrainingServer(uvicorn.Server):
        """On SIGTERM: refuse new requests at once, let those in flight finish, then stop.

        uvicorn (and the SDK's SSE responses) end every open response as soon as they see
        the signal, so the signal is handed on only once the requests in flight are answered
        (or ``drain_timeout`` ran out). A second signal stops at once.
        """

        loop: asyncio.AbstractEventLoop | None = None
        drain: asyncio.Task[None] | None = None

        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.loop is None or gw.draining:
                super().handle_exit(sig, frame)
                return
            gw.draining = True  # new requests get a clean MCP error from now on
            self.loop.call_soon_threadsafe(self.start_drain, sig, frame)

        def start_drain(self, sig: int, frame: FrameType | None) -> None:
            status("draining: new requests are refused, those in flight finish")
            self.drain = asyncio.ensure_future(self.finish_then_exit(sig, frame))

        async def finish_then_exit(self, sig: int, frame: FrameType | None) -> None:
            if not await gw.idle(gw.drain_timeout):
                status(f"drain: requests still in flight after {gw.drain_timeout:g}s are cancelled")
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            self.config.timeout_graceful_shutdown = 2  # agents' idle streams, once the drain is done
            await super().shutdown(sockets)
            status("stopped")

    server = DrainingServer(uvicorn.Config(app, host=listen_host, port=listen_port, log_level="warning", lifespan="on"))
    server.run()
