"""The approved-server registry: which servers an agent may use, for whom, and what they must be."""

from __future__ import annotations

import fnmatch
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from mcpgov._datafile import read_data_file
from mcpgov._errors import ConfigurationError, PinningError
from mcpgov._principal import Principal
from mcpgov._state import StateStore, StateStoreError
from mcpgov._types import Clock
from mcpgov.pinning._keys import PublisherKeys
from mcpgov.pinning._manifest import FilePinStore, InlinePinStore, Manifest, PinStore

if TYPE_CHECKING:
    from mcp.client.stdio import StdioServerParameters

__all__ = ["ApprovedServer", "ExpectedServer", "ServerRegistry"]

_FLOOR_TTL = 100 * 365 * 24 * 3600.0
"""How long a state store keeps the highest manifest sequence accepted for a server: an older
manifest without ``not_after`` would be accepted for ever, so its refusal lives as long."""

_CACHE_SIZE = 1024
"""Answers remembered per entry (callers, self-descriptions); the entry is immutable, so they stay true."""


class ExpectedServer(BaseModel):
    """What an approved server must say about itself.

    Attributes:
        name: the exact name in the server's self-description.
        version: a PEP 440 version range (``">=1.4,<2"``) its version must fall in; ``None``
            (left out) approves the server by name, publisher key and pinned fingerprints
            whatever version it states. Leave it out for a server that states no version
            (the SDK's default ``""``), and for an SDK 1.x server that sets none: it reports the
            SDK's own version, which says nothing about the server.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    version: str | None = Field(default=None, min_length=1)
    _specifier: SpecifierSet | None = PrivateAttr(default=None)
    _seen: dict[tuple[object, object], str | None] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _parse_version(self) -> ExpectedServer:
        if self.version is None:
            return self
        try:
            self._specifier = SpecifierSet(self.version)
        except InvalidSpecifier as exc:
            raise ValueError(f"version {self.version!r} is not a PEP 440 version range") from exc
        return self

    def mismatch(self, name: object, version: object) -> str | None:
        """Why a server calling itself ``name`` at ``version`` is not this server, or ``None``."""
        key = (name, version)
        try:
            return self._seen[key]
        except (KeyError, TypeError):
            pass
        why = self._mismatch(name, version)
        if isinstance(name, str) and isinstance(version, str):
            if len(self._seen) >= _CACHE_SIZE:
                self._seen.clear()
            self._seen[key] = why
        return why

    def _mismatch(self, name: object, version: object) -> str | None:
        if name != self.name:
            return f"server calls itself {name!r}, expected {self.name!r}"
        if not isinstance(version, str):
            return "server did not state a version"
        if self._specifier is None:
            return None
        if not version:
            return (
                f"server {name!r} states no version, but the registry expects {self.version!r}: leave out "
                "'version' to approve it by name, publisher key and pinned fingerprints"
            )
        try:
            parsed = Version(version)
        except InvalidVersion:
            return f"server version {version!r} is not a PEP 440 version"
        if parsed not in self._specifier:
            return f"server version {version} is outside the approved range {self.version!r}"
        return None


class ApprovedServer(BaseModel):
    """One approved server.

    Attributes:
        id: the registry key (what :class:`~mcpgov.pinning.PinningMiddleware` is given).
        owner: who answers for this approval (a team, an address).
        tenants: the tenants it may serve (exact names).
        workloads: glob patterns (``fnmatch``; ``*`` also matches ``/``) matched against the
            caller's SPIFFE ID or subject.
        url: where it is reached over Streamable HTTP, or
        command, args, env, cwd: how it is started over stdio (``env``: the variables it gets
            over the SDK's safe default environment; ``cwd``: an absolute working directory).
            A client must connect exactly there: a connection to another URL or command is
            refused, and so is one whose command resolves (in the ``PATH`` of the environment
            the process gets, from the directory it starts in) to another executable than the
            entry's, or to none; with ``cwd``, one started in another directory.
        server: the expected self-description.
        publisher_key: the publisher's public JWK (or JWK set); when set, its pinned manifest
            must be signed with it.
        pin: the pinned manifest: a pin-file path (relative to the registry file) or the
            manifest inline.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    tenants: tuple[str, ...] = Field(min_length=1)
    workloads: tuple[str, ...] = Field(min_length=1)
    url: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] | None = Field(default=None, repr=False)
    cwd: str | None = Field(default=None, min_length=1)
    server: ExpectedServer
    publisher_key: dict[str, Any] | None = Field(default=None, repr=False)
    pin: str | dict[str, Any] = Field(repr=False)
    _publisher: PublisherKeys | None = PrivateAttr(default=None)
    _callers: dict[tuple[str | None, str | None, str | None], str | None] = PrivateAttr(default_factory=dict)

    @field_validator("tenants", "workloads")
    @classmethod
    def _non_empty_entries(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if any(not v for v in values):
            raise ValueError("entries must be non-empty strings")
        return values

    @model_validator(mode="after")
    def _check(self) -> ApprovedServer:
        if (self.url is None) == (self.command is None):
            raise ValueError("give exactly one of 'url' or 'command'")
        if self.url is not None and not self.url.lower().startswith(("http://", "https://")):
            raise ValueError("'url' must be an http:// or https:// URL")
        if self.args and self.command is None:
            raise ValueError("'args' needs 'command'")
        if self.env is not None and self.command is None:
            raise ValueError("'env' applies to a server started over stdio: it needs 'command'")
        if self.cwd is not None and (self.command is None or not os.path.isabs(self.cwd)):
            raise ValueError("'cwd' is the absolute working directory of a server started over stdio")
        if self.publisher_key is not None:
            self._publisher = PublisherKeys.from_jwk(self.publisher_key)
        return self

    @property
    def publisher(self) -> PublisherKeys | None:
        """The publisher's keys, when the manifest must be signed."""
        return self._publisher

    def connection(self) -> str | StdioServerParameters:
        """What to give ``GovernedClient`` to reach this server: its URL, or stdio parameters."""
        if self.url is not None:
            return self.url
        from mcp.client.stdio import StdioServerParameters  # noqa: PLC0415 - the SDK loads on first use

        return StdioServerParameters(command=self.command or "", args=list(self.args), env=self.env, cwd=self.cwd)

    def target_mismatch(self, target: object) -> str | None:
        """Why a client connected to ``target`` is not connected to this server, or ``None``.

        Args:
            target: what the client connected to: a URL, stdio parameters (anything with
                ``command``, ``args`` and ``env``), a transport that says where it goes (a ``url``
                attribute), or an in-process ``MCPServer`` or lowlevel ``Server`` (not judged: it
                is the application's own object, with no address to compare). Anything else
                cannot be compared with the entry, and is refused.

        Returns:
            The reason, which names no credentials of the URL, or ``None``.
        """
        if isinstance(target, str):
            return self._url_mismatch(target)
        if target is None:
            return f"server {self.id!r}: the client did not say what it connected to"
        command = getattr(target, "command", None)
        if isinstance(command, str):
            if self.command is None:
                return f"server {self.id!r} is approved over HTTP, but the client started a command"
            args = getattr(target, "args", None)
            env = getattr(target, "env", None)
            if command != self.command or list(args or ()) != list(self.args):
                return (
                    f"server {self.id!r} is approved as command {self.command!r} with its arguments; "
                    "the client started another"
                )
            given = dict(env or {})
            if any(given.get(name) != value for name, value in (self.env or {}).items()):
                # Every variable the entry names must be given exactly; others (secrets injected
                # at start, which a registry must not hold) are not judged.
                return f"server {self.id!r} is approved with another environment than the client gave its command"
            return self._executable_mismatch(command, given, getattr(target, "cwd", None))
        url = getattr(target, "url", None)
        if isinstance(url, str) and command is None:
            return self._url_mismatch(url)
        if command is None and url is None and _in_process(target):
            return None
        # A transport that does not say where it goes (or says it in a form that cannot be
        # compared): the client may be connected anywhere.
        return (
            f"server {self.id!r}: the client connected through a {type(target).__name__}, whose destination "
            "cannot be compared with the approved one"
        )

    def _executable_mismatch(self, command: str, env: Mapping[str, str], cwd: object) -> str | None:
        """Why ``command``, started with ``env`` in ``cwd``, is not the entry's executable, or ``None``.

        The same name can start another program: a ``PATH`` the entry does not name, or a relative
        name or ``PATH`` entry read from another directory. What is compared is the executable
        each resolves to, as the SDK's stdio client starts it; one that resolves to nothing is
        refused.
        """
        if cwd is not None and not isinstance(cwd, str | os.PathLike):
            return f"server {self.id!r}: the working directory the client gave its command cannot be judged"
        try:
            moved = self.cwd is not None and _directory(cwd) != _directory(self.cwd)
        except (OSError, ValueError, TypeError):
            return f"server {self.id!r}: the working directory the client gave its command cannot be judged"
        if moved:
            return f"server {self.id!r} is approved to start in another working directory than the client gave it"
        approved = _executable(self.command or "", self.env or {}, self.cwd)
        if approved is None:
            return f"server {self.id!r}: the approved command {self.command!r} resolves to no executable here"
        actual = _executable(command, env, cwd)
        if actual is None:
            return f"server {self.id!r}: the command the client started resolves to no executable"
        if actual != approved:
            return (
                f"server {self.id!r} is approved as command {self.command!r}, which resolves to another "
                "executable than the client started"
            )
        return None

    def _url_mismatch(self, url: str) -> str | None:
        if self.url is None:
            return f"server {self.id!r} is approved over stdio, but the client connected to a URL"
        if _url_key(url) != _url_key(self.url):
            return f"server {self.id!r} is approved at {_url_label(self.url)}, not {_url_label(url)}"
        return None

    def refusal(self, tenant: str | None, principal: Principal | None) -> str | None:
        """Why this server may not serve ``tenant`` and ``principal``, or ``None`` when it may."""
        if principal is None:
            return self._refusal(tenant, None)
        key = (tenant, principal.spiffe_id, principal.subject)
        try:
            return self._callers[key]
        except KeyError:
            pass
        why = self._refusal(tenant, principal)
        if len(self._callers) >= _CACHE_SIZE:
            self._callers.clear()
        self._callers[key] = why
        return why

    def _refusal(self, tenant: str | None, principal: Principal | None) -> str | None:
        if tenant is None:
            return "the caller has no tenant"
        if tenant not in self.tenants:
            return f"server {self.id!r} is not approved for tenant {tenant!r}"
        if principal is None:
            return "the caller has no verified identity"
        candidates = [value for value in (principal.spiffe_id, principal.subject) if value]
        if not any(fnmatch.fnmatchcase(value, pattern) for pattern in self.workloads for value in candidates):
            return f"server {self.id!r} is not approved for workload {principal.spiffe_id or principal.subject!r}"
        return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _floor(stored: str | None) -> int:
    """A stored highest sequence (absent: 0); anything else is a store fault."""
    if stored is None:
        return 0
    try:
        value = float(stored)
    except ValueError:
        raise StateStoreError("a stored pin sequence is not a number", reason="bad_value") from None
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise StateStoreError("a stored pin sequence is not a whole number", reason="bad_value")
    return int(value)


def _directory(cwd: object) -> str:
    """The real path of the directory a process started with ``cwd`` runs in (``None``: this one's)."""
    path = os.getcwd() if cwd is None else os.fspath(cwd)  # type: ignore[call-overload]
    return os.path.realpath(os.path.abspath(path))


def _executable(command: str, env: Mapping[str, str], cwd: object) -> str | None:
    """The real path of the executable the SDK's stdio client starts for ``command``, or ``None``.

    The process gets the SDK's default environment with ``env`` over it; a name without a
    directory is looked up in that environment's ``PATH`` (the system default when it has none),
    as ``execvpe`` does, and a relative name or ``PATH`` entry is read from ``cwd``.
    """
    if not command or "\x00" in command:
        return None
    from mcp.client.stdio import get_default_environment  # noqa: PLC0415 - the SDK loads on first use

    full = {**get_default_environment(), **env}
    try:
        base = _directory(cwd)
        if sys.platform == "win32":  # pragma: no cover - judged by the platform's own lookup
            found = shutil.which(command, path=full.get("PATH"))
            return os.path.realpath(os.path.join(base, found)) if found else None
        if os.sep in command or (os.altsep is not None and os.altsep in command):
            candidates = [os.path.join(base, command)]
        else:
            candidates = [os.path.join(base, entry or ".", command) for entry in os.get_exec_path(full)]
        for candidate in candidates:
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return os.path.realpath(candidate)
    except (OSError, ValueError, TypeError):
        return None
    return None


def _in_process(target: object) -> bool:
    """``target`` is an in-process SDK server (the application's own object)."""
    from mcp.server.lowlevel import Server  # noqa: PLC0415 - the SDK loads on first use
    from mcp.server.mcpserver import MCPServer  # noqa: PLC0415

    return isinstance(target, MCPServer | Server)


def _url_key(url: str) -> tuple[str, str, int | None, str, str]:
    """A URL as compared: scheme and host without case, default port, empty path as ``/``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ("", url, None, "", "")
    scheme = parts.scheme.lower()
    return (scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme), parts.path or "/", parts.query)


def _url_label(url: str) -> str:
    """The URL without user information, query or fragment (safe to print)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an invalid URL"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _format_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


class ServerRegistry:
    """The approved servers, built in code or read from a YAML or JSON file.

    File form::

        servers:
          - id: billing
            owner: payments-team
            tenants: [acme]
            workloads: ["spiffe://acme.example/agents/*"]
            url: https://billing.acme.example/mcp      # or: command: ..., args: [...], env: {...}
            server: {name: billing, version: ">=1.4,<2"}   # version optional
            publisher_key: {kty: OKP, crv: Ed25519, x: "..."}   # optional
            pin: pins/billing.json                     # or the manifest inline

    Pin freshness: a manifest with a ``sequence`` (``mcpgov.pins/2``) lower than the highest one
    accepted for its server, or without one once a sequenced one was accepted, is refused
    (reason ``pin.rollback``), and one past its ``not_after`` too (reason ``pin.expired``). The
    highest sequence is remembered in this process and, with ``state``, in the state store, so
    replicas and restarts agree (:meth:`current_manifest` consults it; a store that fails
    refuses).

    Args:
        servers: the approved servers (models or mappings).
        base_dir: what relative pin paths are relative to (default: the working directory).
        state: where the highest accepted sequence of each server is shared (memory, Redis).
        clock: the time ``not_after`` is compared with.

    Raises:
        ConfigurationError: an entry is invalid, or two entries share an id.
    """

    def __init__(
        self,
        servers: Iterable[ApprovedServer | Mapping[str, Any]] = (),
        *,
        base_dir: str | os.PathLike[str] | None = None,
        state: StateStore | None = None,
        clock: Clock = time.time,
    ) -> None:
        if state is not None and not isinstance(state, StateStore):
            raise ConfigurationError(f"state must be a StateStore, got {type(state).__name__}")
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.state = state
        self._clock = clock
        self._floors: dict[str, int] = {}
        """The highest manifest sequence accepted per server id, in this process."""
        self._servers: dict[str, ApprovedServer] = {}
        self._stores: dict[str, PinStore] = {}
        for server in servers:
            self.add(server)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, state: StateStore | None = None) -> ServerRegistry:
        """Read a registry file (``.yaml``/``.yml`` or ``.json``); relative pin paths are relative to it.

        Args:
            path: the file.
            state: where the highest accepted pin sequence of each server is shared.

        Raises:
            ConfigurationError: the file cannot be read or is not a valid registry.
        """
        path = Path(path)
        data = read_data_file(path, "registry file")
        return cls.from_mapping(data, base_dir=path.resolve().parent, source=f"registry file {path}", state=state)

    @classmethod
    def from_mapping(
        cls,
        data: Any,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        source: str = "registry",
        state: StateStore | None = None,
    ) -> ServerRegistry:
        """Build from parsed data ``{"servers": [...]}``.

        Raises:
            ConfigurationError: ``data`` is not a valid registry.
        """
        if not isinstance(data, Mapping) or set(data) != {"servers"} or not isinstance(data["servers"], list):
            raise ConfigurationError(f"{source} must be a mapping with one key, 'servers', holding a list")
        registry = cls(base_dir=base_dir, state=state)
        for index, entry in enumerate(data["servers"]):
            try:
                registry.add(entry)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{source}: servers[{index}]: {exc.detail}") from exc
        return registry

    def add(self, server: ApprovedServer | Mapping[str, Any]) -> ApprovedServer:
        """Approve a server (validated now).

        Returns:
            The entry.

        Raises:
            ConfigurationError: the entry is invalid, its inline manifest is invalid, or its id is taken.
        """
        if not isinstance(server, ApprovedServer):
            try:
                server = ApprovedServer.model_validate(server)
            except ValidationError as exc:
                raise ConfigurationError(f"invalid approved server: {_format_error(exc)}") from exc
        if server.id in self._servers:
            raise ConfigurationError(f"server id {server.id!r} is approved twice")
        store: PinStore
        if isinstance(server.pin, str):
            if not server.pin:
                raise ConfigurationError(f"server {server.id!r}: 'pin' is an empty path")
            store = FilePinStore(self.base_dir / server.pin, publisher=server.publisher)
        else:
            try:
                store = InlinePinStore(server.pin, publisher=server.publisher)
            except PinningError as exc:
                raise ConfigurationError(f"server {server.id!r}: {exc.detail}") from exc
        self._servers[server.id] = server
        self._stores[server.id] = store
        return server

    def remove(self, server_id: str) -> None:
        """Withdraw an approval (requests to that server are refused from now on)."""
        self._servers.pop(server_id, None)
        self._stores.pop(server_id, None)

    def get(self, server_id: str) -> ApprovedServer | None:
        """The entry for ``server_id``, or ``None``."""
        return self._servers.get(server_id)

    def __contains__(self, server_id: object) -> bool:
        return server_id in self._servers

    def __iter__(self) -> Iterator[ApprovedServer]:
        return iter(list(self._servers.values()))

    def __len__(self) -> int:
        return len(self._servers)

    def __repr__(self) -> str:
        return f"ServerRegistry(servers={list(self._servers)!r})"

    def pin_store(self, server_id: str) -> PinStore:
        """The pin store of an approved server.

        Raises:
            PinningError: reason ``server.refused`` when ``server_id`` is not approved.
        """
        store = self._stores.get(server_id)
        if store is None:
            raise PinningError(f"server {server_id!r} is not in the registry", reason="server.refused")
        return store

    def manifest(self, server_id: str) -> Manifest:
        """The pinned manifest of ``server_id``, checked against the expected server name.

        Raises:
            PinningError: the server is not approved, or its pin store fails (missing,
                unreadable, malformed, wrongly signed, or pinned for another server).
        """
        server = self._servers.get(server_id)
        manifest = self.pin_store(server_id).load()
        if server is not None and manifest.server.name != server.server.name:
            raise PinningError(
                f"the pin of server {server_id!r} is for server {manifest.server.name!r}, not {server.server.name!r}",
                reason="pin.wrong_server",
            )
        self._check_fresh(server_id, manifest, self._floors.get(server_id, 0))
        if manifest.sequence is not None and manifest.sequence > self._floors.get(server_id, 0):
            self._floors[server_id] = manifest.sequence
        return manifest

    async def current_manifest(self, server_id: str) -> Manifest:
        """:meth:`manifest`, also held to the highest sequence the state store has for the server.

        Raises:
            PinningError: see :meth:`manifest`; reason ``pin.rollback`` when the store has a higher
                sequence, ``pin.unverifiable`` when the store cannot answer or record.
        """
        manifest = self.manifest(server_id)
        if self.state is None:
            return manifest
        key = f"pin:sequence:{server_id}"
        try:
            stored = await self.state.get(key)
            floor = _floor(stored)
            self._check_fresh(server_id, manifest, floor)
            if manifest.sequence is not None and manifest.sequence > floor:
                put_max = getattr(self.state, "put_max", None)
                if callable(put_max):
                    await put_max(key, float(manifest.sequence), _FLOOR_TTL)
                else:
                    await self.state.put(key, repr(float(manifest.sequence)), _FLOOR_TTL)
        except StateStoreError as exc:
            raise PinningError(
                f"the newest pin of server {server_id!r} cannot be checked: the state store failed ({exc.reason})",
                reason="pin.unverifiable",
            ) from exc
        if floor > self._floors.get(server_id, 0):
            self._floors[server_id] = floor
        return manifest

    def _check_fresh(self, server_id: str, manifest: Manifest, floor: int) -> None:
        if manifest.sequence is None and floor > 0:
            raise PinningError(
                f"the pin of server {server_id!r} has no sequence, but one numbered {floor} was accepted",
                reason="pin.rollback",
            )
        if manifest.sequence is not None and manifest.sequence < floor:
            raise PinningError(
                f"the pin of server {server_id!r} is number {manifest.sequence}, older than number {floor} "
                "which was accepted",
                reason="pin.rollback",
            )
        expires = manifest.expires_at
        if expires is not None and self._clock() >= expires:
            raise PinningError(f"the pin of server {server_id!r} expired at {manifest.not_after}", reason="pin.expired")

    def check(
        self,
        server_id: str,
        *,
        tenant: str | None,
        principal: Principal | None,
        server_info: Any,
        target: object,
    ) -> ApprovedServer:
        """Check that ``server_id`` is approved for this caller and describes itself as expected.

        Args:
            server_id: the registry id.
            tenant: the caller's tenant.
            principal: the caller.
            server_info: the server's self-description, a mapping with ``name`` and ``version``.
            target: what the client connected to (see :meth:`ApprovedServer.target_mismatch`);
                always given: a target that cannot be judged, ``None`` included, is refused.

        Returns:
            The entry.

        Raises:
            PinningError: reason ``server.refused``; ``detail`` says why.
        """
        server = self._servers.get(server_id)
        if server is None:
            raise PinningError(f"server {server_id!r} is not in the registry", reason="server.refused")
        why = server.refusal(tenant, principal)
        if why is None:
            why = server.target_mismatch(target)
        if why is None:
            if not isinstance(server_info, Mapping):
                why = f"server {server_id!r} has not described itself"
            else:
                why = server.server.mismatch(server_info.get("name"), server_info.get("version"))
        if why is not None:
            raise PinningError(why, reason="server.refused")
        return server
