"""``mcpgov pin``: snapshot a server's manifest, diff it against the pin, approve changes, check in CI.

Exit codes: 0 success (``check``/``diff``: no drift), 1 drift (``check``/``diff``), 2 bad input
(unreadable or malformed file, bad signature, unreachable server...). Errors are one line on stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio
import click
from joserfc.jwk import Key

from mcpgov._errors import McpGovError, PinningError
from mcpgov._keyfile import private_key, public_keys
from mcpgov.audit._printable import printable
from mcpgov.pinning._diff import ManifestDiff, approve_changes, diff_manifests
from mcpgov.pinning._keys import PublisherKeys, load_signing_key
from mcpgov.pinning._manifest import Manifest, dump_manifest, read_manifest, write_manifest
from mcpgov.pinning._registry import ServerRegistry

if TYPE_CHECKING:
    from mcpgov.pinning._snapshot import SnapshotTarget

__all__ = ["pin"]

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_BAD_INPUT = 2

_T = TypeVar("_T")


class _Failure(Exception):
    """A bad input: reported as one line, exit code 2."""


def _describe(exc: BaseException) -> str:
    # An exception group (from a task group) is described by its first failure.
    inner = getattr(exc, "exceptions", None)
    while isinstance(inner, tuple) and inner and isinstance(inner[0], BaseException):
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    if isinstance(exc, McpGovError):
        return exc.detail
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _fail(message: str) -> NoReturn:
    # The message may quote what a server or a file said: it is shown escaped, on one line.
    click.echo(f"error: {printable(message)}", err=True)
    raise SystemExit(EXIT_BAD_INPUT)


def _guard(action: Callable[[], _T], what: str) -> _T:
    try:
        return action()
    except _Failure as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - every failure of a command is one readable line and exit 2
        _fail(f"{what}: {_describe(exc)}")


@dataclass
class _Source:
    """Where the server is and where its pin lives, from the command line or a registry entry."""

    target: SnapshotTarget
    label: str
    pin: Path | None
    publisher: PublisherKeys | None
    mode: str = "auto"
    require_signature: bool = False


def _source(*, mode: str = "auto", require_signature: bool = False, **where: Any) -> _Source:
    """The server and pin the options name (``where``: the keywords of :func:`_locate`), checked."""
    source = _locate(**where)
    source.mode = _check_mode(mode)
    source.require_signature = require_signature
    if require_signature and source.publisher is None:
        raise _Failure(
            "--require-signature needs the publisher's public key: give --public-key FILE "
            "(`mcpgov keys jwks KEYFILE` prints it) or a registry entry with 'publisher_key'"
        )
    return source


def _check_mode(mode: str) -> str:
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS  # noqa: PLC0415

    if mode in ("auto", "legacy") or mode in MODERN_PROTOCOL_VERSIONS:
        return mode
    hint = " (a handshake-era version: use --mode legacy)" if mode in HANDSHAKE_PROTOCOL_VERSIONS else ""
    choices = ", ".join(["auto", "legacy", *MODERN_PROTOCOL_VERSIONS])
    raise _Failure(f"--mode {mode!r} is not supported{hint}; use one of: {choices}")


def _locate(
    *,
    target: tuple[str, ...],
    stdio: bool,
    env_pairs: tuple[str, ...],
    pin_path: Path | None,
    registry_path: Path | None,
    server_id: str | None,
    public_key: Path | None,
    app_dir: str,
) -> _Source:
    env = _environment(env_pairs)
    if env and not stdio and registry_path is None:
        raise _Failure("--env applies to a --stdio command only")
    if registry_path is not None or server_id is not None:
        if registry_path is None or server_id is None:
            raise _Failure("--registry and --server go together")
        if target:
            raise _Failure("give either a target or --registry/--server, not both")
        registry = ServerRegistry.from_file(registry_path)
        entry = registry.get(server_id)
        if entry is None:
            raise _Failure(f"server {server_id!r} is not in registry file {registry_path}")
        if pin_path is None:
            if not isinstance(entry.pin, str):
                raise _Failure(f"server {server_id!r} has an inline pin; give --pin to write one")
            pin_path = registry.base_dir / entry.pin
        publisher = entry.publisher
        if public_key is not None:
            publisher = _publisher_keys(public_key)
        connection = entry.connection()
        if env:
            if isinstance(connection, str):
                raise _Failure("--env applies to a server started over stdio only")
            connection = connection.model_copy(update={"env": {**(connection.env or {}), **env}})
        return _Source(connection, f"server {server_id!r}", pin_path, publisher)
    if not target:
        raise _Failure("give a target (URL, module:attribute, or --stdio COMMAND [ARGS]...) or --registry/--server")
    if not stdio and len(target) > 1:
        raise _Failure("several target words: add --stdio to start a command over stdio")
    from mcpgov.pinning._snapshot import resolve_target  # noqa: PLC0415 - the SDK loads only to reach a server

    resolved = resolve_target(
        target[0], stdio_args=tuple(target[1:]) if stdio else None, stdio_env=env, app_dir=app_dir
    )
    publisher = _publisher_keys(public_key) if public_key is not None else None
    return _Source(resolved, " ".join(target), pin_path, publisher)


def _environment(pairs: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise _Failure(f"--env takes NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def _take(source: _Source) -> Manifest:
    target = source.target

    async def take() -> Manifest:
        from mcpgov.pinning._snapshot import snapshot  # noqa: PLC0415 - the SDK loads only to reach a server

        return await snapshot(target, mode=source.mode)

    return _guard(lambda: anyio.run(take), f"cannot take a snapshot of {source.label}")


def _is_signed(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "signature" in data


def _pinned(source: _Source) -> Manifest:
    if source.pin is None:
        raise _Failure("give --pin FILE (the pinned manifest)")
    manifest = read_manifest(source.pin, publisher=source.publisher, require_signature=False)
    if source.publisher is not None:
        click.echo(f"signature of {source.pin} verified", err=True)
    elif _is_signed(source.pin):
        click.echo(
            f"warning: the signature of {source.pin} was NOT verified (no publisher key); give --public-key FILE "
            "and --require-signature to require it",
            err=True,
        )
    return manifest


def _signing_key(path: Path | None) -> Key | None:
    return load_signing_key(private_key(path, purpose="pin signing")) if path is not None else None


def _publisher_keys(path: Path) -> PublisherKeys:
    return PublisherKeys.from_jwk(public_keys(path))


_target = click.argument("target", nargs=-1)
_stdio = click.option("--stdio", is_flag=True, help="TARGET is a command (and its arguments) started over stdio.")
_env = click.option(
    "--env",
    "env_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An environment variable for a --stdio command (repeatable); the command otherwise gets "
    "only the SDK's safe default environment.",
)
_pin = click.option(
    "--pin", "pin_path", type=click.Path(path_type=Path, dir_okay=False), help="The pinned manifest (a pin file)."
)
_registry = click.option(
    "--registry",
    "registry_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="An approved-server registry file; with --server, gives the target, pin file and publisher key.",
)
_server = click.option("--server", "server_id", help="The server's id in --registry.")
_public_key = click.option(
    "--public-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The publisher's public JWK (or JWK set): the pin file must be signed with it.",
)
_mode = click.option(
    "--mode",
    default="auto",
    show_default=True,
    metavar="MODE",
    help="How to connect: 'auto' (discover, fall back to initialize), 'legacy' (initialize handshake), "
    "or a protocol version such as 2026-07-28.",
)
_require_signature = click.option(
    "--require-signature",
    is_flag=True,
    help="Refuse (exit 2) unless the pin file is signed with the publisher's key (--public-key or the registry's).",
)
_app_dir = click.option(
    "--app-dir", default=".", show_default=True, help="Directory put on sys.path to import module:attribute."
)


_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _against_pin(*extra: _Decorator) -> _Decorator:
    """The options of a command that compares a server with its pin; ``extra`` ones follow ``--pin``."""
    options: tuple[_Decorator, ...] = (
        *(_target, _stdio, _env, _pin),
        *extra,
        *(_registry, _server, _public_key, _require_signature, _mode, _app_dir),
    )

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def pin() -> None:
    """Pin server manifests: snapshot, diff, approve, check.

    TARGET is an http(s):// URL (Streamable HTTP), module:attribute naming an MCPServer, or with
    --stdio a command and its arguments (put them after --).
    """


@pin.command("snapshot")
@_target
@_stdio
@_env
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="Write the pin file here (atomically)."
)
@click.option(
    "--sign-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The publisher's private JWK: sign the manifest with it.",
)
@_registry
@_server
@_mode
@_app_dir
def snapshot_command(*, output: Path | None, sign_key: Path | None, **options: Any) -> None:
    """Take a server's manifest and print it (or write it with -o)."""
    source = _guard(lambda: _source(pin_path=None, public_key=None, **options), "bad target")
    key = _guard(lambda: _signing_key(sign_key), "bad signing key")
    manifest = _take(source)
    if output is None:
        click.echo(dump_manifest(manifest.succeeding(), signing_key=key), nl=False)
        return
    # A pin written over another continues its numbering, so a registry that accepts it refuses the one it replaces.
    previous = _guard(lambda: _previous(output), f"cannot read {output}")
    manifest = manifest.succeeding(previous)
    _guard(lambda: write_manifest(output, manifest, signing_key=key), f"cannot write {output}")
    click.echo(_shown(f"pinned {len(manifest.tools)} tool(s) of server {manifest.server.name!r} into {output}"))


def _previous(path: Path) -> Manifest | None:
    """The manifest in ``path`` when there is one (its signature is not checked: only its number is read)."""
    try:
        return read_manifest(path)
    except PinningError as exc:
        if exc.reason == "pin.missing":
            return None
        raise


def _drift(source: _Source) -> tuple[Manifest, Manifest, ManifestDiff]:
    pinned = _guard(lambda: _pinned(source), "bad pin")
    current = _take(source)
    return pinned, current, diff_manifests(pinned, current)


@pin.command("diff")
@_against_pin()
def diff_command(**options: Any) -> None:
    """Show how the server's tools differ from the pin (exit 1 when they do)."""
    source = _guard(lambda: _source(**options), "bad target")
    _, _, diff = _drift(source)
    click.echo(_shown(diff.render()))
    raise SystemExit(EXIT_DRIFT if diff.drifted else EXIT_OK)


@pin.command("check")
@_against_pin()
def check_command(**options: Any) -> None:
    """Exit 0 when the server matches its pin; 1 on drift (the diff is printed); 2 on bad input."""
    source = _guard(lambda: _source(**options), "bad target")
    pinned, _, diff = _drift(source)
    if diff.drifted:
        click.echo(_shown(f"server {pinned.server.name!r} drifted from its pin {source.pin}:"))
        click.echo(_shown(diff.render()))
        raise SystemExit(EXIT_DRIFT)
    click.echo(_shown(f"server {pinned.server.name!r} matches its pin {source.pin} ({len(pinned.tools)} tool(s))"))


@pin.command("approve")
@_against_pin(
    click.option("--tool", "tools", multiple=True, help="Approve only this tool's change (repeatable)."),
    click.option(
        "--sign-key",
        type=click.Path(path_type=Path, dir_okay=False),
        help="The publisher's private JWK: sign the approved manifest with it.",
    ),
)
def approve_command(*, tools: tuple[str, ...], sign_key: Path | None, **options: Any) -> None:
    """Write the server's current tools (or the --tool ones) into the pin file, atomically."""
    source = _guard(lambda: _source(**options), "bad target")
    key = _guard(lambda: _signing_key(sign_key), "bad signing key")
    pinned, current, diff = _drift(source)
    if not diff.drifted and diff.server_version is None:
        click.echo(_shown(f"nothing to approve: server {pinned.server.name!r} matches its pin {source.pin}"))
        return
    approved = _guard(lambda: approve_changes(pinned, current, tools or None), "cannot approve")
    if source.pin is None:  # pragma: no cover - _pinned already required it
        _fail("give --pin FILE")
    out = source.pin
    _guard(lambda: write_manifest(out, approved, signing_key=key), f"cannot write {out}")
    click.echo(_shown(diff_manifests(pinned, approved).render()))
    click.echo(f"approved into {out}")
    if key is None and source.publisher is not None:
        click.echo("note: the approved pin is unsigned; pass --sign-key to sign it", err=True)


def _shown(text: str) -> str:
    """``text`` (a server's names and descriptions in it) safe for a terminal, line by line:
    escape sequences, bidirectional and invisible characters (Unicode tags included) are shown
    escaped, so what an operator reads is what the model would read."""
    return "\n".join(printable(line) for line in text.split("\n"))
