"""The gateway configuration file: validated with pydantic, every error naming file and field."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcpgov._datafile import read_data_file
from mcpgov._errors import ConfigurationError

__all__ = [
    "AuditConfig",
    "CredentialsConfig",
    "GatewayConfig",
    "HealthConfig",
    "HttpListenConfig",
    "IdentityConfig",
    "IssuerConfig",
    "NamespaceConfig",
    "RestartConfig",
    "SecretRef",
    "StateConfig",
    "UpstreamConfig",
    "load_config",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


MIN_SECRET_LENGTH = 8
"""The shortest upstream secret a gateway accepts."""

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP field name (RFC 9110 token)."""
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters an HTTP field value cannot carry (CR and LF would start another header)."""


def _env_entries(mapping: Mapping[str, Any], values: bool) -> None:
    for name, value in mapping.items():
        if not name or "=" in name or "\x00" in name:
            raise ValueError(f"environment variable name {name!r} is not allowed (empty, or holds '=' or NUL)")
        if values and "\x00" in value:
            raise ValueError(f"the value of environment variable {name!r} holds a NUL character")


def _header_entries(mapping: Mapping[str, Any], values: bool) -> None:
    for name, value in mapping.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"header name {name!r} is not an HTTP field name")
        if values and _HEADER_VALUE_FORBIDDEN.search(value):
            raise ValueError(f"the value of header {name!r} holds a control character (CR, LF, NUL...)")


class SecretRef(_Model):
    """Where an upstream secret comes from: an environment variable of the gateway, or a file.

    The value is read when the upstream starts; it is never part of a listing, an error or an
    audit event (the gateway scrubs it from upstream error messages too).
    """

    env: str | None = Field(default=None, min_length=1)
    file: str | None = Field(default=None, min_length=1)
    prefix: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        if _HEADER_VALUE_FORBIDDEN.search(self.prefix):
            raise ValueError("the prefix holds a control character (CR, LF, NUL...)")
        return self

    def resolve(self, base_dir: Path, environ: Mapping[str, str]) -> str:
        """The secret's value.

        Raises:
            ConfigurationError: the variable is unset or the file cannot be read.
        """
        if self.env is not None:
            value = environ.get(self.env)
            if not value:
                raise ConfigurationError(f"environment variable {self.env} (an upstream secret) is not set")
            where = f"environment variable {self.env}"
        else:
            path = base_dir / (self.file or "")
            try:
                value = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigurationError(f"secret file {path} cannot be read ({type(exc).__name__})") from exc
            where = f"secret file {path}"
        if len(value) < MIN_SECRET_LENGTH:
            # Too short to keep out of relayed data: every occurrence of it would be scrubbed.
            raise ConfigurationError(f"the upstream secret in {where} is shorter than {MIN_SECRET_LENGTH} characters")
        return self.prefix + value


class NamespaceConfig(_Model):
    """How an upstream's names appear on the gateway.

    Attributes:
        prefix: put before every tool and prompt name (``"time_"``: ``get_current_time`` is
            served as ``time_get_current_time``).
        resource_prefix: put before every resource URI and URI template (default: the
            upstream id and ``+``, e.g. ``docs+file:///readme``).
        tools: explicit names for some tools (``{upstream name: gateway name}``); they win over
            the prefix.
        prompts: the same for prompts.
    """

    prefix: str = ""
    resource_prefix: str | None = None
    tools: dict[str, str] = Field(default_factory=dict)
    prompts: dict[str, str] = Field(default_factory=dict)

    @field_validator("tools", "prompts")
    @classmethod
    def _non_empty(cls, mapping: dict[str, str]) -> dict[str, str]:
        for key, value in mapping.items():
            if not key or not value:
                raise ValueError("mapped names must be non-empty strings")
        if len(set(mapping.values())) != len(mapping):
            raise ValueError("two names are mapped to the same gateway name")
        return mapping


class RestartConfig(_Model):
    """Restarting an upstream that died: exponential backoff between ``initial`` and ``maximum`` seconds."""

    initial: float = Field(default=0.5, gt=0, le=60)
    maximum: float = Field(default=30.0, gt=0, le=3600)


class HealthConfig(_Model):
    """Watching a URL upstream between requests: a probe every ``interval`` seconds.

    The probe is the cheapest request of the era spoken (``ping``, or ``server/discover`` at
    2026-07-28). An upstream that cannot be reached, lost its session, or leaves an idle probe
    unanswered for ``timeout`` seconds is marked down and reconnected with the restart backoff.
    """

    interval: float = Field(default=2.0, gt=0, le=3600)
    timeout: float = Field(default=5.0, gt=0, le=3600)


class UpstreamConfig(_Model):
    """One upstream: a server of the approved-server registry, as the gateway reaches it.

    Attributes:
        id: its id in the registry (the registry says how to reach it: ``url`` or ``command``).
        namespace: how its names appear on the gateway.
        env: extra environment for a stdio upstream (plain values).
        secret_env: environment variables for a stdio upstream whose values are secrets.
        cwd: the working directory of a stdio upstream (relative to the config file).
        headers: plain HTTP headers for a URL upstream.
        secret_headers: HTTP headers for a URL upstream whose values are secrets
            (``Authorization: {env: DOCS_TOKEN, prefix: "Bearer "}``).
        start: ``eager`` (when the gateway starts) or ``lazy`` (at the first request).
        timeout: seconds one request may take upstream before the agent gets a clean error.
        start_timeout: seconds to wait for the upstream to come up before a request fails.
        concurrency: requests in flight to this upstream at once (the rest wait their turn).
        restart: backoff when it dies.
        health: how a URL upstream is watched between requests (a stdio upstream's exit is
            noticed at once without probing).
        mode: the protocol era the gateway speaks to it: ``legacy`` (the default: the
            handshake era, in which an upstream can ask for sampling and elicitation and send
            notifications outside a request), ``auto`` (probe for 2026-07-28 first), or
            ``match`` (the agent's era: a handshake-era connection serves legacy agents and a
            second one, opened at the first 2026-07-28 agent's request, serves those).
    """

    id: str = Field(min_length=1)
    namespace: NamespaceConfig = Field(default_factory=NamespaceConfig)
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, SecretRef] = Field(default_factory=dict)
    cwd: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    secret_headers: dict[str, SecretRef] = Field(default_factory=dict)
    start: Literal["eager", "lazy"] = "eager"
    timeout: float = Field(default=60.0, gt=0, le=86_400)
    start_timeout: float = Field(default=30.0, gt=0, le=3600)
    concurrency: int = Field(default=64, ge=1, le=100_000)
    restart: RestartConfig = Field(default_factory=RestartConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    mode: Literal["auto", "legacy", "match"] = "legacy"

    @field_validator("env", "secret_env")
    @classmethod
    def _environment(cls, mapping: dict[str, Any]) -> dict[str, Any]:
        _env_entries(mapping, values=all(isinstance(v, str) for v in mapping.values()))
        return mapping

    @field_validator("headers", "secret_headers")
    @classmethod
    def _headers(cls, mapping: dict[str, Any]) -> dict[str, Any]:
        _header_entries(mapping, values=all(isinstance(v, str) for v in mapping.values()))
        return mapping


class IssuerConfig(_Model):
    """One identity issuer whose tokens the gateway accepts from agents.

    Attributes:
        issuer: the issuer URL (``iss``).
        audience: the gateway's audience (``aud``).
        jwks_file: a JWKS file (relative to the config), or
        jwks_url: a JWKS URL, or
        discovery: the issuer's OIDC discovery base URL.
        tenant_claim: the claim naming the caller's tenant.
        tenant: a fixed tenant for this issuer's callers.
        max_ttl: the longest lifetime of an accepted token, in seconds (24 hours).
    """

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_file: str | None = None
    jwks_url: str | None = None
    discovery: str | None = None
    tenant_claim: str | None = None
    tenant: str | None = None
    max_ttl: float = Field(default=86400.0, ge=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerConfig:
        given = [k for k in (self.jwks_file, self.jwks_url, self.discovery) if k is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'jwks_file', 'jwks_url' or 'discovery'")
        if (self.tenant_claim is None) == (self.tenant is None):
            raise ValueError("give exactly one of 'tenant_claim' or 'tenant'")
        return self


class IdentityConfig(_Model):
    """How agents prove who they are.

    Attributes:
        issuers: the accepted issuers.
        env: on stdio, the environment variable holding the agent's identity token.
        resource_server_url: the gateway's public URL (HTTP: advertised to agents).
    """

    issuers: tuple[IssuerConfig, ...] = Field(min_length=1)
    env: str | None = None
    resource_server_url: str | None = None


class CredentialsConfig(_Model):
    """Short-lived credentials agents must present on each tool call (verified by the front chain).

    Attributes:
        issuer: the credential issuer (``iss``).
        audience: the gateway's audience (``aud`` of the credentials it accepts).
        jwks_file: the issuer's public keys (relative to the config file).
        single_use: treat every credential as single use (shared across replicas through ``state``).
        max_ttl: the longest credential lifetime accepted, in seconds.
    """

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_file: str = Field(min_length=1)
    single_use: bool = False
    max_ttl: float = Field(default=3600.0, gt=0, le=86_400)


class AuditConfig(_Model):
    """Where audit events go: a hash-chained JSON Lines file, and/or standard logging.

    ``queued: true`` writes the JSON Lines file from a worker thread, in batches, off the request
    path (:class:`~mcpgov.audit.QueuedSink`); what is queued is written on drain (SIGTERM) and at
    exit. Off (the default), each event is in the file before the request goes on.
    """

    jsonl: str | None = None
    log: bool = False
    queued: bool = False


class StateConfig(_Model):
    """Shared state (revocations, single use, rate limits, approvals) for several gateway replicas."""

    redis: str | None = None
    prefix: str = "mcpgov:"

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        # The URL may hold a password: the message never repeats it.
        if value is not None:
            scheme = value.partition("://")[0].lower() if "://" in value else ""
            if scheme not in ("redis", "rediss", "unix"):
                raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class HttpListenConfig(_Model):
    """Where the gateway listens for Streamable HTTP."""

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    path: str = "/mcp"

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


class GatewayConfig(_Model):
    """A gateway configuration file (YAML or JSON).

    Example::

        version: 1
        name: acme-gateway
        registry: approved-servers.yaml      # the approved-server registry format
        policy: policy.yaml                  # the mcpgov policy format
        identity:
          issuers:
            - {issuer: "https://id.acme.example", audience: "https://gw.acme.example/mcp",
               jwks_file: jwks.json, tenant_claim: tenant}
        audit: {jsonl: audit.jsonl}
        upstreams:
          - id: time
            namespace: {prefix: "time_"}

    Attributes:
        version: the format version (1).
        name: the gateway's server name, as agents see it.
        registry: the approved-server registry: a file path (relative to this file) or inline.
        policy: the policy file (relative to this file).
        identity: how agents prove who they are.
        credentials: short-lived credentials required on tool calls (revocations and single use
            are shared through ``state``).
        audit: where audit events go.
        state: shared state for replicas.
        http: where to listen for Streamable HTTP.
        upstreams: the servers behind the gateway.
        drain_timeout: seconds the requests in flight get to finish on shutdown (SIGTERM),
            while new ones are refused; then the upstreams are stopped.
    """

    version: Literal[1] = 1
    name: str = Field(default="mcpgov-gateway", min_length=1)
    registry: str | dict[str, Any] = Field(repr=False)
    policy: str = Field(min_length=1)
    identity: IdentityConfig
    credentials: CredentialsConfig | None = None
    audit: AuditConfig = Field(default_factory=AuditConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    http: HttpListenConfig = Field(default_factory=HttpListenConfig)
    upstreams: tuple[UpstreamConfig, ...] = Field(min_length=1)
    drain_timeout: float = Field(default=10.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _unique_ids(self) -> GatewayConfig:
        seen: set[str] = set()
        for upstream in self.upstreams:
            if upstream.id in seen:
                raise ValueError(f"upstream {upstream.id!r} is listed twice")
            seen.add(upstream.id)
        return self


def _where(error: Any, data: Any) -> str:
    loc = tuple(error["loc"])
    parts: list[str] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(part, int):
            label = f"[{part}]"
            if isinstance(node, list) and part < len(node) and isinstance(node[part], Mapping):
                ident = node[part].get("id")
                if isinstance(ident, str) and i > 0 and loc[i - 1] == "upstreams":
                    label = f"[{part}] ({ident!r})"
            parts.append(label)
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            parts.append(("." if parts else "") + str(part))
            node = node.get(part) if isinstance(node, Mapping) else None
    return "".join(parts)


def parse_config(
    data: Any, *, source: str = "<config>", base_dir: str | os.PathLike[str] | None = None
) -> GatewayConfig:
    """Validate parsed configuration data.

    Raises:
        ConfigurationError: one line per problem, each naming ``source`` and the field.
    """
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{source}: a gateway configuration must be a mapping, got {type(data).__name__}")
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = _where(error, data)
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{source}: field {where!r}: {message}" if where else f"{source}: {message}")
        raise ConfigurationError("\n".join(lines)) from None
    return config


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and validate a gateway configuration file (``.yaml``/``.yml`` or ``.json``).

    Raises:
        ConfigurationError: the file cannot be read, is not valid YAML/JSON, or is not a valid
            configuration (the message names the file and the field).
    """
    path = Path(path)
    return parse_config(read_data_file(path, "gateway config"), source=str(path))
