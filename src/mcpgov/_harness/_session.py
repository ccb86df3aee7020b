"""``GovernedHarness``: a real governed in-process session for policy tests.

The harness performs each request as production would: a test identity token (minted by a test
:class:`~mcpgov.testing.IdentityIssuer`) verified by the server's ``IdentityMiddleware``, a
credential minted per call by a test :class:`~mcpgov.credentials.CredentialIssuer` carrying the
task and purpose (verified by ``CredentialMiddleware``), the policy, and the audit trail, in
which it reads the decision the server made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from mcp import MCPError
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from typing_extensions import Unpack

from mcpgov._arguments import ArgumentLimits, freeze_and_hash
from mcpgov._audit import AuditEvent
from mcpgov._chain import Middleware
from mcpgov._context import GovContext
from mcpgov._errors import ConfigurationError, IdentityError
from mcpgov._methods import EXECUTE_METHOD, LIST_METHOD
from mcpgov._principal import Actor, Principal, act_claim
from mcpgov._sdk.compat import lowlevel_of
from mcpgov._server import ServerGovernance, govern
from mcpgov._state import StateStore

if TYPE_CHECKING:
    from mcpgov._harness._inventory import Inventory
    from mcpgov._harness._issuers import IdentityIssuer, InMemoryAuditSink
    from mcpgov.credentials import CredentialIssuer
    from mcpgov.identity import IdentityMiddleware
    from mcpgov.policy import Explanation, PolicyDecorators, PolicyMiddleware, PolicySource

__all__ = [
    "CREDENTIAL_ISSUER",
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "Caller",
    "GovernedHarness",
    "Kind",
    "Verdict",
    "Visibility",
    "Who",
]

DEFAULT_ISSUER = "https://issuer.test"
"""The test identity issuer a workload shorthand (``tenant=..., workload=...``) is minted by."""
DEFAULT_AUDIENCE = "mcp://test-server"
"""The audience of the harness's identity tokens and credentials."""
CREDENTIAL_ISSUER = "https://credentials.test"
"""The id of the harness's test credential issuer."""

Kind = Literal["tool", "resource", "prompt"]

_RESERVED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "act"})


class _Missing:
    """The tenant was not given (``None`` means: a principal without a tenant)."""

    def __repr__(self) -> str:
        return "<tenant not given>"


MISSING: Any = _Missing()


class Who(TypedDict, total=False):
    """Who a test request comes from, as every request, listing and assertion takes it (keywords).

    Each key is the argument of the same name of :meth:`GovernedHarness.caller`, which resolves
    it (and holds the defaults): ``principal``, or the shorthand ``tenant``, ``workload``,
    ``issuer``, with ``claims`` and ``actors``.
    """

    principal: Principal | None
    tenant: str | None
    workload: str | None
    issuer: str | None
    claims: Mapping[str, Any] | None
    actors: Sequence[str | Actor]


@dataclass(frozen=True)
class Caller:
    """Who a test request comes from: a principal of one of the harness's test issuers.

    Attributes:
        issuer: the identity issuer (``iss``).
        subject: the workload (``sub``).
        tenant: the tenant claim (``None``: the token names no tenant).
        claims: further identity claims (``scope``, ``role``...).
        actors: who the workload acts for, nearest first (the ``act`` chain).
    """

    issuer: str
    subject: str
    tenant: str | None
    claims: Mapping[str, Any] = field(default_factory=dict)
    actors: tuple[Actor, ...] = ()

    @property
    def id(self) -> str:
        """``issuer#subject``, as audit events name the principal."""
        return f"{self.issuer}#{self.subject}"

    def describe(self) -> str:
        """One line: who, in which tenant."""
        tenant = f"tenant {self.tenant!r}" if self.tenant is not None else "no tenant"
        acting = f", acting for {', '.join(a.subject for a in self.actors)}" if self.actors else ""
        return f"{self.id} ({tenant}{acting})"


@dataclass(frozen=True)
class Verdict:
    """What the governed server decided about one request, read from its audit trail.

    Attributes:
        request: a one-line description of the request.
        effect: ``allow``, ``deny``, ``require_approval``, or ``none`` when the server recorded
            no decision (the request was refused on the client side or never arrived).
        rule: the rule (or stage, such as ``mcpgov:identity``) that decided.
        reason: the machine-readable reason (``policy_deny``, ``expired``...).
        detail: the human-readable detail from the audit event.
        event: the server's decision event.
        approval_requested: an ``approval.requested`` event was recorded for the request.
        error: the error the client saw (``None`` on success).
        result: the result the client got (``None`` on error).
        events: every server audit event recorded while the request ran.
    """

    request: str
    effect: str
    rule: str | None
    reason: str | None
    detail: str | None
    event: AuditEvent | None
    approval_requested: bool
    error: MCPError | None
    result: Any
    events: tuple[AuditEvent, ...]

    def describe(self) -> str:
        """The decision in one line: effect, rule, reason and detail."""
        if self.effect == "none":
            seen = f"the client saw error {self.error.code} {self.error.message!r}" if self.error else "no error"
            return f"no decision recorded by the server ({seen})"
        text = f"{self.effect} by rule {self.rule!r}"
        if self.reason:
            text += f" (reason {self.reason})"
        if self.detail:
            text += f": {self.detail}"
        if self.approval_requested and self.effect != "require_approval":
            text += " [approval was requested]"
        if self.error is not None and self.effect == "allow":
            text += f" [the client then saw error {self.error.code} {self.error.message!r}]"
        return text


@dataclass(frozen=True)
class Visibility:
    """What one principal's listing showed.

    Attributes:
        request: a one-line description of the listing.
        kind: ``tool``, ``resource`` or ``prompt``.
        listed: the names (URIs, URI templates) listed.
        hidden: the names the server hid (from its ``list.filtered`` event).
        error: the error the client saw when the listing itself was refused.
        events: every server audit event recorded while the listing ran.
    """

    request: str
    kind: Kind
    listed: tuple[str, ...]
    hidden: tuple[str, ...]
    error: MCPError | None
    events: tuple[AuditEvent, ...]


_INVENTORY_WORKLOAD = "mcpgov-inventory"


class _InventoryProbe:
    """Innermost middleware of a chain the harness builds: records each listing before any
    authoriser filters it (so the harness knows what a lowlevel server declares)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, ...]] = {}

    async def __call__(self, ctx: GovContext, call_next: Any) -> Any:
        from mcpgov._chain import Listing  # noqa: PLC0415 - the chain's listing type

        result = await call_next(ctx)
        if isinstance(result, Listing):
            self.seen[ctx.method] = tuple(item.name for item in result.items)
        return result


def _lowlevel(server: MCPServer | Server[Any]) -> Server[Any]:
    if isinstance(server, MCPServer):
        return lowlevel_of(server)
    if isinstance(server, Server):
        return server
    raise ConfigurationError(f"the harness takes an MCPServer or a lowlevel Server, got {type(server).__name__}")


def _governance(server: MCPServer | Server[Any]) -> ServerGovernance | None:
    for mw in _lowlevel(server).middleware:
        if isinstance(mw, ServerGovernance):
            return mw
    return None


def _policy_issuers(policy_mw: PolicyMiddleware) -> list[str]:
    """The exact issuers the policy's principal matchers name (each gets a test issuer)."""
    from mcpgov.policy import PolicyEngine  # noqa: PLC0415 - policy loads on first use

    engine = policy_mw.engine
    if not isinstance(engine, PolicyEngine):
        return []
    found: list[str] = []
    for rule in engine.policy.document.rules:
        for matcher in rule.principals or ():
            if matcher.issuer is not None and matcher.issuer not in found:
                found.append(matcher.issuer)
    return found


class GovernedHarness:
    """A governed in-process session for tests: real identity, credential, policy and audit.

    Two ways to build one:

    * ``GovernedHarness(server, policy)`` governs your (ungoverned) ``server`` with
      ``IdentityMiddleware`` (trusting the harness's test issuers), ``CredentialMiddleware``
      (trusting its test credential issuer), any ``middleware`` you add, and a
      ``PolicyMiddleware`` for ``policy``, all on ``clock``, auditing into ``audit``;
    * ``GovernedHarness(server, identities=..., credentials=...)`` (no policy) uses a server you
      already governed with your own chain, built to trust those test issuers; the harness
      adds its audit sink to that chain's auditor.

    Every request opens a fresh :class:`~mcpgov.GovernedClient` session (``mode``: ``"auto"``
    for 2026-07-28 requests, ``"legacy"`` for the initialize handshake) whose identity is a
    token minted for the caller, and whose tool calls carry a credential minted for the task and
    purpose: the server sets ``ctx.purpose`` and ``ctx.task_id`` from that signed credential, as
    in production, never from arguments. Listings carry no credential (so, as in production,
    the server decides them without a purpose). The decision is read from the server's audit
    trail, so one harness performs its requests one at a time (concurrent requests about the
    same target could read each other's events).

    Args:
        server: your ``MCPServer`` (or lowlevel ``Server``).
        policy: the policy to govern ``server`` with: a file path, a :class:`~mcpgov.policy.Policy`
            or :class:`~mcpgov.policy.CedarPolicy`, or a configured
            :class:`~mcpgov.policy.PolicyMiddleware`. ``None``: ``server`` is already governed.
        middleware: further server middleware, placed between the credential check and the
            policy (hooks, an ``ApprovalMiddleware``...).
        declarations: ``@gov.tool`` declarations for the policy middleware.
        identities: test identity issuers to use (the harness adds one per exact issuer its
            policy names, and :data:`DEFAULT_ISSUER`, when it governs the server).
        issuers: further issuer URLs to create test issuers for.
        credentials: the test credential issuer (one is created when the harness governs the
            server; with an already-governed server, pass the one its ``CredentialMiddleware``
            trusts, or none when its chain has no credential check).
        audience: the server's audience (identity tokens and credentials are minted for it).
        clock: the time source for everything the harness builds (a
            :class:`~mcpgov.testing.FrozenClock` by default).
        mode: ``"auto"`` or ``"legacy"``.
        audit: the sink the server's audit trail is captured in.
        state: the policy middleware's state store (task history, rate counters).
        inventory: what the server declares (an :class:`~mcpgov.testing.Inventory`). Every
            request and assertion must name a declared target. Without it: an ``MCPServer``'s
            own declarations; a lowlevel ``Server`` the harness governs is asked for its
            listings (read before the policy filters them); a lowlevel ``Server`` governed by
            your own chain needs ``inventory=``.

    Raises:
        ConfigurationError: an inconsistent setup (a governed server given a policy, an
            ungoverned one given none, an unknown mode...).
    """

    def __init__(
        self,
        server: MCPServer | Server[Any],
        policy: PolicySource | PolicyMiddleware | None = None,
        *,
        middleware: Sequence[Middleware] = (),
        declarations: PolicyDecorators | None = None,
        identities: IdentityIssuer | Iterable[IdentityIssuer] | None = None,
        issuers: Iterable[str] = (),
        credentials: CredentialIssuer | None = None,
        audience: str = DEFAULT_AUDIENCE,
        clock: Any = None,
        mode: str = "auto",
        audit: InMemoryAuditSink | None = None,
        state: StateStore | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        from mcpgov._harness._clock import FrozenClock  # noqa: PLC0415
        from mcpgov._harness._issuers import IdentityIssuer, InMemoryAuditSink  # noqa: PLC0415
        from mcpgov.credentials import CredentialIssuer  # noqa: PLC0415 - capability packages load on use

        if mode not in ("auto", "legacy"):
            raise ConfigurationError(f"mode must be 'auto' or 'legacy', got {mode!r}")
        if not isinstance(audience, str) or not audience:
            raise ConfigurationError("audience must be a non-empty string")
        from mcpgov._harness._inventory import Inventory  # noqa: PLC0415 - avoids an import cycle

        if inventory is not None and not isinstance(inventory, Inventory):
            raise ConfigurationError(f"inventory must be an Inventory, got {type(inventory).__name__}")
        self.inventory: Inventory | None = inventory
        self._probe: _InventoryProbe | None = None
        self.server = server
        self.mode = mode
        self.audience = audience
        self.clock: Any = clock if clock is not None else FrozenClock()
        if not callable(self.clock):
            raise ConfigurationError("clock must be callable")
        self.audit: InMemoryAuditSink = audit if audit is not None else InMemoryAuditSink()
        given: list[IdentityIssuer] = []
        if isinstance(identities, IdentityIssuer):
            given = [identities]
        elif identities is not None:
            given = list(identities)
            if not all(isinstance(i, IdentityIssuer) for i in given):
                raise ConfigurationError("identities must be test IdentityIssuers (mcpgov.testing.IdentityIssuer)")
        self.identities: dict[str, IdentityIssuer] = {i.issuer: i for i in given}
        if credentials is not None and not isinstance(credentials, CredentialIssuer):
            raise ConfigurationError("credentials must be a CredentialIssuer")
        self.credentials: CredentialIssuer | None = credentials
        existing = _governance(server)
        if policy is None:
            if existing is None:
                raise ConfigurationError(
                    "this server is not governed: give the harness a policy to govern it with, "
                    "or govern it yourself (trusting the harness's test issuers) first"
                )
            if not self.identities:
                raise ConfigurationError(
                    "an already-governed server needs identities=: the test IdentityIssuer(s) its "
                    "IdentityMiddleware trusts"
                )
            self.governance = existing
            self.governance.governor.auditor.add_sink(self.audit)
        else:
            if existing is not None:
                raise ConfigurationError(
                    "this server is already governed: build the harness without a policy (it then uses "
                    "the server's own chain)"
                )
            self.governance = self._govern(policy, middleware, declarations, issuers, state)
        self._inspect_chain()

    def _govern(
        self,
        policy: PolicySource | PolicyMiddleware,
        middleware: Sequence[Middleware],
        declarations: PolicyDecorators | None,
        issuers: Iterable[str],
        state: StateStore | None,
    ) -> ServerGovernance:
        """Govern the server: identity, credential, the caller's middleware, policy; audit into the sink."""
        from mcpgov._harness._issuers import IdentityIssuer  # noqa: PLC0415
        from mcpgov.credentials import CredentialIssuer, CredentialMiddleware, SigningKeySet  # noqa: PLC0415
        from mcpgov.identity import IdentityMiddleware, IdentityVerifier  # noqa: PLC0415
        from mcpgov.policy import PolicyMiddleware  # noqa: PLC0415

        policy_mw = (
            policy
            if isinstance(policy, PolicyMiddleware)
            else PolicyMiddleware(policy, declarations=declarations, clock=self.clock, state=state)
        )
        for url in [DEFAULT_ISSUER, *_policy_issuers(policy_mw), *issuers]:
            if url not in self.identities:
                self.identities[url] = IdentityIssuer(url, audience=self.audience, clock=self.clock)
        verifier = IdentityVerifier(*(i.config() for i in self.identities.values()), clock=self.clock)
        if self.credentials is None:
            keys = SigningKeySet.generate("Ed25519", clock=self.clock)
            self.credentials = CredentialIssuer(CREDENTIAL_ISSUER, keys, clock=self.clock)
        self._probe = _InventoryProbe()
        chain: list[Middleware] = [
            IdentityMiddleware(verifier),
            CredentialMiddleware(self.credentials.verifier(self.audience)),
            *middleware,
            policy_mw,
            self._probe,
        ]
        return govern(self.server, *chain, audit=self.audit)

    def _inspect_chain(self) -> None:
        """Find the chain's identity and policy middleware; check the harness can drive the chain."""
        from mcpgov.credentials import CredentialMiddleware  # noqa: PLC0415
        from mcpgov.identity import IdentityMiddleware  # noqa: PLC0415
        from mcpgov.policy import PolicyMiddleware  # noqa: PLC0415

        chain_now = self.governance.governor.middleware
        self.identity: IdentityMiddleware | None = next(
            (mw for mw in chain_now if isinstance(mw, IdentityMiddleware)), None
        )
        self.policy: PolicyMiddleware | None = next((mw for mw in chain_now if isinstance(mw, PolicyMiddleware)), None)
        if self.credentials is None and any(isinstance(mw, CredentialMiddleware) for mw in chain_now):
            raise ConfigurationError(
                "the server's chain verifies credentials: pass the CredentialIssuer its verifier trusts (credentials=)"
            )
        if self.identity is not None:
            unknown = [url for url in self.identities if url not in self.identity.verifier.issuers]
            if unknown:
                raise ConfigurationError(f"the server's IdentityMiddleware does not trust the test issuer(s) {unknown}")

    def __repr__(self) -> str:
        return (
            f"GovernedHarness(server={getattr(self.server, 'name', '?')!r}, mode={self.mode!r}, "
            f"issuers={sorted(self.identities)!r}, policy={self.policy!r})"
        )

    # -- callers ----------------------------------------------------------------------------

    def caller(
        self,
        principal: Principal | None = None,
        *,
        tenant: str | None = MISSING,
        workload: str | None = None,
        issuer: str | None = None,
        claims: Mapping[str, Any] | None = None,
        actors: Sequence[str | Actor] = (),
    ) -> Caller:
        """Resolve who a request comes from: a :class:`~mcpgov.Principal`, or the shorthand.

        Args:
            principal: a principal of one of the harness's issuers (its tenant, claims and actors
                are minted into the token).
            tenant: the tenant (required with the shorthand; ``None`` explicitly: no tenant).
            workload: the workload (subject) for the shorthand.
            issuer: the issuer for the shorthand (default :data:`DEFAULT_ISSUER`).
            claims: further identity claims (``{"scope": "files:write"}``...).
            actors: who the workload acts for, nearest first (subjects or :class:`~mcpgov.Actor`).

        Raises:
            ConfigurationError: no principal and no workload, a missing tenant, an issuer the
                harness cannot mint for, or a principal given together with the shorthand.
        """
        extra = dict(claims or {})
        chain = tuple(a if isinstance(a, Actor) else Actor(str(a)) for a in actors)
        if principal is not None:
            if not isinstance(principal, Principal):
                raise ConfigurationError(f"principal must be a Principal, got {type(principal).__name__}")
            if workload is not None or issuer is not None:
                raise ConfigurationError("give either a principal or the workload shorthand, not both")
            if tenant is not MISSING and tenant != principal.tenant:
                raise ConfigurationError(
                    f"tenant {tenant!r} contradicts the principal's tenant {principal.tenant!r}; "
                    "set it on the principal"
                )
            mint = self.identities.get(principal.issuer)
            reserved = _RESERVED_CLAIMS | {mint.tenant_claim if mint is not None else "tenant"}
            base = {k: v for k, v in principal.claims.items() if k not in reserved}
            base.update(extra)
            caller = Caller(principal.issuer, principal.subject, principal.tenant, base, chain or principal.actors)
        else:
            if not isinstance(workload, str) or not workload:
                raise ConfigurationError("say who calls: principal=Principal(...) or workload='...' with tenant='...'")
            if tenant is MISSING:
                raise ConfigurationError(
                    f"the principal {workload!r} needs a tenant: pass tenant='...' (or tenant=None for a "
                    "principal without one)"
                )
            caller = Caller(issuer or DEFAULT_ISSUER, workload, tenant, extra, chain)
        if caller.tenant is not None and (not isinstance(caller.tenant, str) or not caller.tenant):
            raise ConfigurationError(f"tenant must be a non-empty string or None, got {caller.tenant!r}")
        if caller.issuer not in self.identities:
            raise ConfigurationError(
                f"the harness cannot mint identities for issuer {caller.issuer!r}; its test issuers are "
                f"{sorted(self.identities)} (add one with issuers=[...])"
            )
        return caller

    def token(self, caller: Caller) -> str:
        """A fresh identity token for ``caller``, minted by its test issuer."""
        return self.identities[caller.issuer].token(
            caller.subject, tenant=caller.tenant, act=act_claim(caller.actors), claims=dict(caller.claims) or None
        )

    def _client(self, caller: Caller, token: str, purpose: str | None, task_id: str | None) -> Any:
        from mcpgov._client import GovernedClient  # noqa: PLC0415 - the client adapter loads with the first request
        from mcpgov.credentials import ClientCredentials, IssuerTokenSource  # noqa: PLC0415

        chain: list[Middleware] = []
        issuer = self.identities[caller.issuer]
        principal = Principal(
            caller.issuer,
            caller.subject,
            tenant=caller.tenant,
            claims=MappingProxyType({"exp": self.clock() + issuer.ttl}),
            actors=caller.actors,
            auth_method="jwt",
        )
        if self.credentials is not None and caller.tenant is not None:
            # A workload without a tenant can obtain no credential: its request goes without one
            # (and the server refuses it at identity, as in production).
            chain.append(
                ClientCredentials(IssuerTokenSource(self.credentials), audience=self.audience, clock=self.clock)
            )
        elif purpose is not None and self.credentials is None:
            raise ConfigurationError(
                "purpose travels in a signed credential, and this harness has no credential issuer: "
                "pass credentials= (the CredentialIssuer the server's CredentialMiddleware trusts)"
            )
        return GovernedClient(
            self.server,
            *chain,
            identity=token,
            principal=principal,
            purpose=purpose,
            task_id=task_id,
            mode=self.mode,
        )

    async def declared(self) -> Inventory:
        """What the server declares: ``inventory=``, an ``MCPServer``'s declarations, or a governed
        lowlevel server's listings read inside the chain, before any policy filters them.

        Raises:
            ConfigurationError: a lowlevel server governed by your own chain, without ``inventory=``.
        """
        from mcpgov._harness._inventory import Inventory, inventory_of  # noqa: PLC0415 - avoids an import cycle

        if self.inventory is not None:
            return self.inventory
        if isinstance(self.server, MCPServer):
            return await inventory_of(self.server)
        probe = self._probe
        if probe is None:
            raise ConfigurationError(
                "cannot tell what this lowlevel Server declares (it is governed by your own chain): "
                "pass inventory=Inventory.of(tools=..., resources=..., prompts=...) to the harness"
            )
        probe.seen.clear()
        for kind in ("tool", "resource", "prompt"):
            await self.listing(kind, workload=_INVENTORY_WORKLOAD, tenant=_INVENTORY_WORKLOAD)
        seen = probe.seen
        self.inventory = Inventory.of(
            seen.get("tools/list", ()),
            seen.get("resources/list", ()),
            seen.get("prompts/list", ()),
            seen.get("resources/templates/list", ()),
        )
        return self.inventory

    async def check_declared(self, kind: Kind, target: str) -> None:
        """Refuse a target the server does not declare: a misspelt tool must not pass as "denied".

        Raises:
            ConfigurationError: the server does not declare ``target`` (or what it declares
                cannot be known; see :meth:`declared`).
        """
        inventory = await self.declared()
        known = {"tool": inventory.has_tool, "resource": inventory.has_resource, "prompt": inventory.has_prompt}[kind]
        if not known(target):
            declared = {
                "tool": sorted(inventory.tools),
                "resource": [*inventory.resources, *inventory.templates],
                "prompt": list(inventory.prompts),
            }[kind]
            raise ConfigurationError(f"unknown {kind} {target!r}: the server declares {declared}")

    # -- requests ---------------------------------------------------------------------------

    async def request(
        self,
        target: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        kind: Kind = "tool",
        purpose: str | None = None,
        task_id: str | None = None,
        **who: Unpack[Who],
    ) -> Verdict:
        """Perform one request (call a tool, read a resource, get a prompt) and return the verdict.

        ``who`` says who calls (see :class:`Who` and :meth:`caller`).

        Raises:
            ConfigurationError: see :meth:`caller`; an unknown ``kind``; arguments to a resource.
        """
        if kind not in EXECUTE_METHOD:
            raise ConfigurationError(f"kind must be 'tool', 'resource' or 'prompt', got {kind!r}")
        if kind == "resource" and arguments:
            raise ConfigurationError("a resource read takes no arguments")
        if kind != "tool" and (purpose is not None or task_id is not None):
            raise ConfigurationError(
                "only a tool call carries a purpose and task (in its signed credential); a resource or "
                "prompt request reaches the server without them, as in production"
            )
        caller = self.caller(**who)
        await self.check_declared(kind, target)
        method = EXECUTE_METHOD[kind]
        request = _describe(method, target, caller, purpose, task_id)
        token = self.token(caller)
        start = len(self.audit.events)
        error: MCPError | None = None
        result: Any = None
        async with self._client(caller, token, purpose, task_id) as client:
            try:
                if kind == "tool":
                    result = await client.call_tool(target, dict(arguments or {}))
                elif kind == "resource":
                    result = await client.read_resource(target)
                else:
                    result = await client.get_prompt(target, {k: str(v) for k, v in (arguments or {}).items()})
            except MCPError as exc:
                error = exc
        events = tuple(self.audit.events[start:])
        return _verdict(
            request=request, method=method, target=target, caller=caller, events=events, error=error, result=result
        )

    async def listing(
        self,
        kind: Kind = "tool",
        **who: Unpack[Who],
    ) -> Visibility:
        """List tools, resources (and resource templates) or prompts as the caller (``who``: see :class:`Who`).

        Raises:
            ConfigurationError: see :meth:`caller`; an unknown ``kind``.
        """
        if kind not in LIST_METHOD:
            raise ConfigurationError(f"kind must be 'tool', 'resource' or 'prompt', got {kind!r}")
        caller = self.caller(**who)
        request = f"{LIST_METHOD[kind]} by {caller.describe()}"
        start = len(self.audit.events)
        listed: list[str] = []
        error: MCPError | None = None
        async with self._client(caller, self.token(caller), None, None) as client:
            try:
                if kind == "tool":
                    listed = [t.name for t in (await client.list_tools()).tools]
                elif kind == "prompt":
                    listed = [p.name for p in (await client.list_prompts()).prompts]
                else:
                    listed = [str(r.uri) for r in (await client.list_resources()).resources]
                    listed += [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
            except MCPError as exc:
                error = exc
        events = tuple(self.audit.events[start:])
        hidden: list[str] = []
        for event in events:
            if event.type == "list.filtered" and event.principal == caller.id and event.kind == kind:
                hidden.extend(h for h in event.hidden if h not in hidden)
        return Visibility(request, kind, tuple(listed), tuple(hidden), error, events)

    async def explain(
        self,
        target: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        kind: Kind = "tool",
        action: Literal["execute", "discover"] = "execute",
        purpose: str | None = None,
        task_id: str | None = None,
        caller: Caller,
    ) -> Explanation | None:
        """The policy middleware's explanation of a request (``None`` without a policy middleware).

        The principal is what the server's identity middleware verifies from a fresh token of
        ``caller``; purpose and task are what the credential would carry (none for a listing).
        Explain reads task history as it is now and does not evaluate rate limits.
        """
        if self.policy is None:
            return None
        principal: Principal | None = None
        if self.identity is not None:
            try:
                principal = (await self.identity.verifier.verify_identity(self.token(caller))).principal
            except IdentityError:
                principal = None
        frozen, args_hash = freeze_and_hash(dict(arguments or {}) if action == "execute" else None, ArgumentLimits())
        carried = self.credentials is not None and action == "execute" and kind == "tool"
        ctx = GovContext(
            side="server",
            method=EXECUTE_METHOD[kind],
            kind=kind,
            target=target,
            action=action,
            arguments=frozen,
            args_hash=args_hash,
            principal=principal,
            tenant=principal.tenant if principal is not None else None,
            purpose=purpose if carried else None,
            task_id=task_id if carried else None,
        )
        return await self.policy.explain(ctx)

    # -- assertions (async forms of mcpgov.testing.assert_*) ----------------------------------

    async def expect(
        self,
        expected: Literal["allow", "deny", "require_approval"],
        /,
        target: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        rule: str | None = None,
        kind: Kind = "tool",
        purpose: str | None = None,
        task_id: str | None = None,
        **who: Unpack[Who],
    ) -> Verdict:
        """Assert the server decides ``expected`` for the request (``who``: principal, tenant,
        workload, issuer, claims, actors); the async form of :func:`~mcpgov.testing.assert_allowed`,
        :func:`~mcpgov.testing.assert_denied` and :func:`~mcpgov.testing.assert_requires_approval`.

        ``require_approval`` also holds when an approval was requested for the request (an approval
        middleware in the chain asked an approver, whatever the answer).

        Raises:
            PolicyAssertionError: the decision differs (the message shows it, its rule and the
                policy's explanation).
            ConfigurationError: a bad request description (see :meth:`caller`).
        """
        __tracebackhide__ = True
        from mcpgov._harness._assertions import effect_failure  # noqa: PLC0415 - avoids an import cycle

        if expected not in ("allow", "deny", "require_approval"):
            raise ConfigurationError(f"expected must be allow, deny or require_approval, got {expected!r}")
        verdict = await self.request(target, arguments, kind=kind, purpose=purpose, task_id=task_id, **who)
        matched = verdict.effect == expected or (expected == "require_approval" and verdict.approval_requested)
        if matched and (rule is None or verdict.rule == rule):
            return verdict
        caller = self.caller(**who)
        explanation = await self.explain(target, arguments, kind=kind, purpose=purpose, task_id=task_id, caller=caller)
        raise effect_failure(self, expected, rule, verdict, explanation)

    async def assert_allowed(self, target: str, arguments: Mapping[str, Any] | None = None, **options: Any) -> Verdict:
        """Async :func:`~mcpgov.testing.assert_allowed` (options as for :meth:`expect`)."""
        __tracebackhide__ = True
        return await self.expect("allow", target, arguments, **options)

    async def assert_denied(self, target: str, arguments: Mapping[str, Any] | None = None, **options: Any) -> Verdict:
        """Async :func:`~mcpgov.testing.assert_denied`."""
        __tracebackhide__ = True
        return await self.expect("deny", target, arguments, **options)

    async def assert_requires_approval(
        self, target: str, arguments: Mapping[str, Any] | None = None, **options: Any
    ) -> Verdict:
        """Async :func:`~mcpgov.testing.assert_requires_approval`."""
        __tracebackhide__ = True
        return await self.expect("require_approval", target, arguments, **options)

    async def expect_listed(
        self, visible: bool, /, target: str, *, kind: Kind = "tool", **who: Unpack[Who]
    ) -> Visibility:
        """Assert ``target`` is (``visible``) or is not listed for the caller; the async form of
        :func:`~mcpgov.testing.assert_visible` and :func:`~mcpgov.testing.assert_hidden`."""
        __tracebackhide__ = True
        from mcpgov._harness._assertions import listing_failure  # noqa: PLC0415 - avoids an import cycle

        await self.check_declared(kind, target)
        seen = await self.listing(kind, **who)
        if (target in seen.listed) == visible and (seen.error is None or not visible):
            return seen  # a refused listing shows nothing: hidden holds, visible does not
        explanation = await self.explain(target, kind=kind, action="discover", caller=self.caller(**who))
        raise listing_failure(self, visible, target, seen, explanation)

    async def assert_visible(self, target: str, **options: Any) -> Visibility:
        """Async :func:`~mcpgov.testing.assert_visible`."""
        __tracebackhide__ = True
        return await self.expect_listed(True, target, **options)

    async def assert_hidden(self, target: str, **options: Any) -> Visibility:
        """Async :func:`~mcpgov.testing.assert_hidden`."""
        __tracebackhide__ = True
        return await self.expect_listed(False, target, **options)


def _describe(method: str, target: str, caller: Caller, purpose: str | None, task_id: str | None) -> str:
    bits = [f"{method} {target!r} by {caller.describe()}"]
    if purpose is not None:
        bits.append(f"purpose {purpose!r}")
    if task_id is not None:
        bits.append(f"task {task_id!r}")
    return ", ".join(bits)


def _verdict(
    *,
    request: str,
    method: str,
    target: str,
    caller: Caller,
    events: tuple[AuditEvent, ...],
    error: MCPError | None,
    result: Any,
) -> Verdict:
    event_id = error.data.get("event") if error is not None and isinstance(error.data, dict) else None
    decisions = [e for e in events if e.type == "decision" and e.method == method and e.target == target]
    chosen = next((e for e in decisions if e.id == event_id), None)
    if chosen is None and decisions:
        chosen = decisions[-1]
    if chosen is None and error is not None:
        # Refused before the request itself was sent: the client lists first (to learn the tool),
        # and the server refused that listing (an identity it does not accept).
        refusals = [
            e
            for e in events
            if e.type == "decision" and e.effect != "allow" and e.principal in (caller.id, None) and e.side == "server"
        ]
        chosen = refusals[-1] if refusals else None
    approval = any(
        e.type == "approval.requested" and e.target == target and e.principal in (caller.id, None) for e in events
    )
    if chosen is None:
        return Verdict(request, "none", None, None, None, None, approval, error, result, events)
    return Verdict(
        request,
        chosen.effect or "deny",
        chosen.rule,
        chosen.reason,
        chosen.detail,
        chosen,
        approval,
        error,
        result,
        events,
    )
