"""Shared pieces of the policy tests: a file server governed by a policy, and test identities.

``LookupIdentity`` stands in for identity middleware: it takes the caller's name from the
request's ``_meta`` and sets the principal and its verified tenant from a fixed table (the
tenant is never read from arguments). Task id and purpose come from ``_meta`` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from mcp.server.mcpserver import MCPServer
from mcp_types import RequestParamsMeta

from mcpgov import Actor, CallNext, GovContext, Principal, ServerGovernance, StateStore, govern
from mcpgov.policy import PolicyMiddleware, PolicySource
from mcpgov.testing import InMemoryAuditSink

POLICIES = Path(__file__).parent
TWO_TENANTS = POLICIES / "two_tenants.yaml"

ACME = "https://idp.acme.example"
GLOBEX = "https://idp.globex.example"

PRINCIPALS: dict[str, Principal] = {
    "alice": Principal(ACME, "alice", tenant="acme", claims={"scope": "files:read files:write"}),
    "reader": Principal(ACME, "reader", tenant="acme", claims={"scope": "files:read"}),
    "bob": Principal(GLOBEX, "bob", tenant="globex", claims={"scope": "files:read files:write"}),
    "sub-agent": Principal(ACME, "sub-agent", tenant="acme", actors=(Actor("alice", ACME),)),
    "sub-sub-agent": Principal(
        ACME, "sub-sub-agent", tenant="acme", actors=(Actor("sub-agent", ACME), Actor("alice", ACME))
    ),
    "no-tenant": Principal(ACME, "no-tenant", tenant=None),
}


def as_(name: str, *, task: str | None = None, purpose: str | None = None) -> RequestParamsMeta:
    """The ``_meta`` that makes a request come from ``name`` (in ``task``, for ``purpose``)."""
    meta: dict[str, Any] = {"test/as": name}
    if task is not None:
        meta["test/task"] = task
    if purpose is not None:
        meta["test/purpose"] = purpose
    return cast("RequestParamsMeta", meta)


class LookupIdentity:
    """Test identity middleware: principal and tenant from a lookup table keyed by ``_meta``."""

    async def __call__(self, ctx: GovContext, call_next: CallNext) -> Any:
        name = ctx.meta.get("test/as")
        principal = PRINCIPALS.get(name) if isinstance(name, str) else None
        task = ctx.meta.get("test/task")
        purpose = ctx.meta.get("test/purpose")
        return await call_next(
            ctx.replace(
                principal=principal,
                tenant=principal.tenant if principal is not None else None,
                task_id=task if isinstance(task, str) else None,
                purpose=purpose if isinstance(purpose, str) else None,
            )
        )


@dataclass
class FileServer:
    """A governed server and what ran on it."""

    server: MCPServer
    policy: PolicyMiddleware
    sink: InMemoryAuditSink
    middleware: ServerGovernance
    ran: list[str] = field(default_factory=list)


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def build_file_server(
    policy: PolicySource = TWO_TENANTS,
    *,
    state: StateStore | None = None,
    clock: FrozenClock | None = None,
    **policy_kwargs: Any,
) -> FileServer:
    """A file server with tools, resources and prompts, governed by ``policy``."""
    server = MCPServer("files")
    ran: list[str] = []

    @server.tool()
    def read_file(path: str) -> str:
        ran.append(f"read_file:{path}")
        return f"contents of {path}"

    @server.tool()
    def write_file(path: str, content: str) -> str:
        ran.append(f"write_file:{path}")
        return "written"

    @server.tool()
    def send_email(to: str, body: str) -> str:
        ran.append(f"send_email:{to}")
        return "sent"

    @server.tool()
    def plan_step(step: str) -> str:
        ran.append(f"plan_step:{step}")
        return "planned"

    @server.tool()
    def search(query: str) -> str:
        ran.append(f"search:{query}")
        return "results"

    @server.tool()
    def delete_everything() -> str:
        ran.append("delete_everything")
        return "gone"

    @server.resource("docs://readme")
    def readme() -> str:
        ran.append("docs://readme")
        return "README"

    @server.resource("secret://payroll")
    def payroll() -> str:
        ran.append("secret://payroll")
        return "PAYROLL"

    @server.resource("notes://acme/{page}")
    def acme_notes(page: str) -> str:
        ran.append(f"notes://acme/{page}")
        return f"acme note {page}"

    @server.resource("notes://globex/{page}")
    def globex_notes(page: str) -> str:
        ran.append(f"notes://globex/{page}")
        return f"globex note {page}"

    @server.prompt()
    def summarise(text: str) -> str:
        ran.append("summarise")
        return f"Summarise: {text}"

    @server.prompt()
    def jailbreak(text: str) -> str:
        ran.append("jailbreak")
        return text

    if clock is not None:
        policy_kwargs["clock"] = clock
    mw = PolicyMiddleware(policy, state=state, **policy_kwargs)
    sink = InMemoryAuditSink()
    installed = govern(server, LookupIdentity(), mw, audit=sink)
    return FileServer(server, mw, sink, installed, ran)
