"""``@hooks.guard`` guards the function wherever it is served: a tool that runs a guarded function
under a name its guard does not name is refused, at ``govern()`` or on use, since the guard would
not be asked there."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import ConfigurationError, Decision, GovContext, Hooks, Principal, govern
from mcpgov.testing import InMemoryAuditSink

pytestmark = pytest.mark.anyio

CALLER = Principal(issuer="https://idp.example", subject="agent-1", tenant="acme")


def frozen(ctx: GovContext) -> Decision:
    return Decision.deny("deploys-frozen", "deploys are frozen")


def open_hooks() -> Hooks:
    """Every tool allowed, unless a guard says otherwise: a guard not asked is an allow."""
    hooks = Hooks()
    hooks.tool("*")(lambda ctx: Decision.allow("open"))
    return hooks


async def as_caller(ctx: GovContext, call_next: Any) -> Any:
    return await call_next(ctx.replace(principal=CALLER, tenant=CALLER.tenant))


def _logged(fn: Callable[..., str]) -> Callable[..., str]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        return fn(*args, **kwargs)

    return wrapper


class Deployer:
    def __init__(self, ran: list[str]) -> None:
        self.ran = ran

    def deploy(self) -> str:
        self.ran.append("deploy")
        return "deployed"


def served_under_another_name(spelling: str, hooks: Hooks, ran: list[str]) -> MCPServer:
    """A server that runs the guarded function ``deploy`` as the tool ``deploy_prod``, spelled
    with the decorators in either order, through a wrapper, as a method, or guarded by name."""
    server = MCPServer("deployer")

    def deploy() -> str:
        ran.append("deploy")
        return "deployed"

    if spelling == "tool-outside":
        server.tool(name="deploy_prod")(hooks.guard(frozen)(deploy))
    elif spelling == "guard-outside":
        hooks.guard(frozen)(server.tool(name="deploy_prod")(deploy))
    elif spelling == "wrapped":
        server.tool(name="deploy_prod")(_logged(hooks.guard(frozen)(deploy)))
    elif spelling == "method":
        server.tool(name="deploy_prod")(hooks.guard(frozen)(Deployer(ran).deploy))
    elif spelling == "named-otherwise":
        server.tool(name="deploy_prod")(hooks.guard(frozen, name="deploy")(deploy))
    elif spelling == "partial":
        bound = functools.partial(hooks.guard(frozen, name="deploy")(lambda _why: deploy()), "release")
        bound.__name__ = "bound"  # type: ignore[attr-defined]  # the SDK names a tool's function
        server.tool(name="deploy_prod")(bound)
    elif spelling == "second-name":
        server.tool(name="deploy")(hooks.guard(frozen)(deploy))
        server.tool(name="deploy_prod")(deploy)
    else:
        raise AssertionError(spelling)
    return server


SPELLINGS = ["tool-outside", "guard-outside", "wrapped", "method", "named-otherwise", "partial", "second-name"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_govern_refuses_a_server_running_a_guarded_function_under_another_name(spelling: str) -> None:
    hooks = open_hooks()
    server = served_under_another_name(spelling, hooks, [])
    with pytest.raises(ConfigurationError, match=r"'deploy_prod' runs a function guarded as 'deploy'"):
        govern(server, hooks)


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_a_tool_added_later_under_another_name_is_refused_on_use_and_audited(mode: str, spelling: str) -> None:
    ran: list[str] = []
    hooks = open_hooks()
    staging = served_under_another_name(spelling, hooks, ran)  # only to build the guarded function
    deploy_fn = staging._tool_manager.get_tool("deploy_prod").fn  # type: ignore[union-attr]
    server = MCPServer("deployer")

    @server.tool()
    def status() -> str:
        return "green"

    sink = InMemoryAuditSink()
    govern(server, as_caller, hooks, audit=sink)
    server.add_tool(deploy_fn, name="deploy_prod")
    async with Client(server, mode=mode) as client:
        assert (await client.call_tool("status", {})).is_error is False
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy_prod", {})
        assert caught.value.error.code == -32602
    assert ran == []
    refusals = [e for e in sink.decisions() if e.target == "deploy_prod"]
    assert [(e.effect, e.reason, e.principal) for e in refusals] == [("deny", "guard_not_applied", CALLER.id)]


async def test_a_guard_named_for_the_served_tool_is_asked(mode: str) -> None:
    ran: list[str] = []
    hooks = open_hooks()
    server = MCPServer("deployer")

    @server.tool(name="deploy_prod")
    @hooks.guard(frozen, name="deploy_prod")
    def deploy() -> str:
        ran.append("deploy")
        return "deployed"

    @server.tool(name="deploy_staging")
    @hooks.guard(lambda ctx: Decision.allow("staging-open"), name="deploy_staging")
    @hooks.guard(frozen, name="deploy_prod")
    def deploy_anywhere() -> str:
        ran.append("staging")
        return "deployed"

    govern(server, hooks)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy_prod", {})
        assert caught.value.error.code == -32003
        assert (await client.call_tool("deploy_staging", {})).is_error is False
    assert ran == ["staging"]


def test_a_guard_that_cannot_mark_its_function_is_a_configuration_error() -> None:
    hooks = open_hooks()
    with pytest.raises(ConfigurationError, match="cannot mark"):
        hooks.guard(frozen)(len)
    with pytest.raises(ConfigurationError, match="needs the tool's name"):
        hooks.guard(frozen)(functools.partial(print, "x"))


class _Hiding:
    """A wrapper over ``fn`` on which reading a guard's mark raises (other missing attributes are
    missing, as the SDK's inspection of a callable expects)."""

    def __init__(self, fn: Callable[..., str]) -> None:
        self.__wrapped__ = fn
        self.__name__ = "hidden"

    def __call__(self) -> str:
        return self.__wrapped__()

    def __getattr__(self, name: str) -> Any:
        if "mcpgov" in name:
            raise RuntimeError(f"no attribute {name} here")
        raise AttributeError(name)


def hidden_beneath(spelling: str, hooks: Hooks, ran: list[str]) -> Callable[..., str]:
    """The guarded ``deploy`` beneath a wrapper whose attributes raise, or beneath more wrappers
    than any decorator stack has."""

    def deploy() -> str:
        ran.append("deploy")
        return "deployed"

    guarded = hooks.guard(frozen)(deploy)
    if spelling == "raising":
        return _Hiding(guarded)
    wrapped: Callable[..., str] = guarded
    for _ in range(40):
        wrapped = _logged(wrapped)
    return wrapped


@pytest.mark.parametrize("spelling", ["raising", "deep"])
def test_govern_refuses_a_tool_whose_wrappers_cannot_be_read_to_the_end(spelling: str) -> None:
    hooks = open_hooks()
    server = MCPServer("deployer")
    server.tool(name="deploy_prod")(hidden_beneath(spelling, hooks, []))
    with pytest.raises(ConfigurationError, match=r"'deploy_prod' runs could not be read to its end"):
        govern(server, hooks)


@pytest.mark.parametrize("spelling", ["raising", "deep"])
async def test_a_tool_whose_wrappers_cannot_be_read_is_refused_on_use(mode: str, spelling: str) -> None:
    ran: list[str] = []
    hooks = open_hooks()
    server = MCPServer("deployer")
    sink = InMemoryAuditSink()
    govern(server, as_caller, hooks, audit=sink)
    server.tool(name="deploy_prod")(hidden_beneath(spelling, hooks, ran))
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("deploy_prod", {})
        assert caught.value.error.code == -32602
    assert ran == []
    refusals = [e for e in sink.decisions() if e.target == "deploy_prod"]
    assert [(e.effect, e.reason) for e in refusals] == [("deny", "guard_not_applied")]


async def test_a_guarded_function_served_under_its_own_name_through_many_readable_wrappers_runs(mode: str) -> None:
    """Reading to the end is what counts: a guard named for the served tool, beneath a few
    ordinary wrappers, is asked, and its allow lets the tool run."""
    ran: list[str] = []
    hooks = open_hooks()
    server = MCPServer("deployer")

    def deploy() -> str:
        ran.append("deploy")
        return "deployed"

    wrapped: Callable[..., str] = hooks.guard(lambda ctx: Decision.allow("ok"), name="deploy_prod")(deploy)
    for _ in range(5):
        wrapped = _logged(wrapped)
    server.tool(name="deploy_prod")(wrapped)
    govern(server, hooks)
    async with Client(server, mode=mode) as client:
        assert (await client.call_tool("deploy_prod", {})).is_error is False
    assert ran == ["deploy"]
