"""FastMCP 4 support: :func:`~mcpgov.govern` accepts a ``fastmcp.FastMCP`` server.

FastMCP 4 is built on the same SDK (``mcp`` 2.3): every FastMCP server runs on an SDK lowlevel
``Server`` whose ``ServerMiddleware`` chain sees every request. mcpgov installs its governance
middleware there, after FastMCP's own root dispatch and the SDK's request-state boundary, so
that exactly the same code governs an ``MCPServer``, a lowlevel ``Server`` and a FastMCP
server: the governance chain decides before FastMCP's own middleware, FastMCP's tool-call
interceptors and the tool run, and FastMCP handlers see the request without mcpgov's tokens.

FastMCP's own ``Middleware`` hooks are not used for this: its component middleware runs inside
the request handler, after FastMCP has bound the request context that tool code reads, and also
for in-process calls (``FastMCP.call_tool``) that carry no wire request at all.

FastMCP 4 names no public accessor for that SDK server, so this module is the one place that
reaches it, and it refuses any FastMCP version or layout it was not written for.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

from mcp.server.lowlevel import Server
from packaging.version import InvalidVersion, Version

from mcpgov._errors import ConfigurationError, InvalidRequest
from mcpgov._sdk import compat

__all__ = [
    "SUPPORTED_FASTMCP",
    "addressed_by_identity",
    "check_converted_text",
    "check_no_version_chosen",
    "decided_tool_arguments",
    "governed_only",
    "is_fastmcp",
    "sdk_server",
    "served_names",
]

logger = logging.getLogger("mcpgov.server")

SUPPORTED_FASTMCP = (4,)
"""FastMCP major versions :func:`~mcpgov.govern` supports."""

_INSTALL_HINT = "mcpgov supports FastMCP 4.x (pip install 'mcpgov[fastmcp]', i.e. fastmcp>=4,<5)"


def is_fastmcp(server: object) -> bool:
    """Whether ``server`` is a ``fastmcp.FastMCP`` (without importing FastMCP when it is not loaded)."""
    module = sys.modules.get("fastmcp")
    cls = getattr(module, "FastMCP", None) if module is not None else None
    return isinstance(cls, type) and isinstance(server, cls)


def sdk_server(server: Any) -> Server[Any]:
    """The SDK lowlevel ``Server`` a FastMCP 4 server runs on.

    Raises:
        ConfigurationError: the FastMCP version is not supported, or the server does not have
            the layout FastMCP 4 has.
    """
    module = sys.modules.get("fastmcp")
    raw = str(getattr(module, "__version__", "unknown"))
    try:
        major = Version(raw).major
    except InvalidVersion:
        major = -1
    if major not in SUPPORTED_FASTMCP:
        raise ConfigurationError(f"{_INSTALL_HINT}; this server is FastMCP {raw}")
    lowlevel = compat.fastmcp_lowlevel_of(server)
    if not isinstance(lowlevel, Server) or not any(
        type(mw).__name__ == "FastMCPServerMiddleware" for mw in lowlevel.middleware
    ):
        raise ConfigurationError(
            f"this FastMCP {raw} server does not run on an SDK server mcpgov can govern; {_INSTALL_HINT}"
        )
    return lowlevel


_HASHED_NAME = re.compile(r"__[0-9a-f]+_.", re.DOTALL)
"""A superset of FastMCP's ``__<hash>_<name>`` spelling, for a FastMCP without its parser."""


def addressed_by_identity(name: str) -> bool:
    """Whether FastMCP may resolve tool name ``name`` by a tool's identity hash (``__<hash>_<local
    name>``, its route to app-visible tools) rather than as the name a tool is listed under.

    Such a name can run a tool whose own name the chain never judged (``allow *`` beside ``deny
    delete_note`` would run ``delete_note``), so a governed FastMCP server does not serve it.
    """
    try:
        from fastmcp.server.providers.addressing import parse_hashed_backend_name  # noqa: PLC0415 - optional extra
    except ImportError:  # pragma: no cover - a FastMCP 4 release that moved it: the broader spelling
        return _HASHED_NAME.match(name) is not None
    return parse_hashed_backend_name(name) is not None


def check_no_version_chosen(meta: Mapping[str, Any]) -> None:
    """Refuse a request whose ``_meta`` names the version of the component to run
    (``{"fastmcp": {"version": ...}}``, which FastMCP honours): the chain decides on a name, and
    the version the server lists under it is the one that runs.

    Raises:
        InvalidRequest: a version is chosen (reason ``version_selected``).
    """
    fastmcp_meta = meta.get("fastmcp")
    if isinstance(fastmcp_meta, Mapping) and "version" in fastmcp_meta:
        raise InvalidRequest(
            "a governed server runs the version of a component it lists; the request names another "
            "in _meta.fastmcp.version",
            reason="version_selected",
        )


async def check_converted_text(server: Any, method: str, target: str, arguments: Any, _depth: int = 0) -> None:
    """Refuse a ``prompts/get`` or ``resources/read`` whose text FastMCP would convert to a value
    spelled otherwise: each prompt argument, and each parameter of the resource template that
    would serve the URI, must be the canonical text of the value its function receives (FastMCP
    converts them after the decision: ``notes://01`` and ``notes://+1`` both read note 1).

    A prompt or template of a mounted server is checked as the mounted server serves it (under
    its own name or URI there), down to the function that runs.

    Raises:
        InvalidRequest: a value is not canonical, or the component could not be looked up.
    """
    from fastmcp.exceptions import NotFoundError  # noqa: PLC0415 - optional extra
    from fastmcp.resources.template import forward_uri  # noqa: PLC0415 - optional extra
    from fastmcp.server.context import Context  # noqa: PLC0415 - optional extra
    from fastmcp.server.providers.fastmcp_provider import (  # noqa: PLC0415 - optional extra
        FastMCPProviderPrompt,
        FastMCPProviderResourceTemplate,
    )

    from mcpgov._sdk.validation import check_canonical_arguments  # noqa: PLC0415 - keeps the import graph flat

    if _depth > _MAX_DELEGATIONS:
        raise InvalidRequest("the request's target could not be checked", reason="target_unchecked")
    try:
        async with Context(fastmcp=server):
            if method == "prompts/get":
                component = await server.get_prompt(target)
                what, values = f"prompt {target!r}", arguments
            elif await server.get_resource(target) is not None:
                return  # a concrete resource: nothing is converted
            else:
                component = await server.get_resource_template(target)
                values = component.matches(target) if component is not None else None
                what = f"resource template {getattr(component, 'uri_template', '')!r}"
        # A mounted server's component: checked as that server serves it.
        if isinstance(component, FastMCPProviderPrompt):
            child, name = component._server, component._original_name
            inner = name if isinstance(name, str) else None
        elif isinstance(component, FastMCPProviderResourceTemplate) and isinstance(values, dict):
            child, template = component._server, component._original_uri_template
            inner = forward_uri(template, values, target) if isinstance(template, str) else None
        else:
            child = inner = None
    except NotFoundError:
        return  # FastMCP answers that itself, once the caller may know
    except Exception as exc:  # noqa: BLE001 - what would run cannot be known: refused
        logger.warning("could not look up a FastMCP component to check its arguments (%s)", type(exc).__name__)
        raise InvalidRequest("the request's target could not be checked", reason="target_unchecked") from None
    if child is not None or inner is not None:
        if child is None or inner is None:
            raise InvalidRequest("the request's target could not be checked", reason="target_unchecked")
        await check_converted_text(child, method, inner, arguments, _depth + 1)
        return
    fn = getattr(component, "fn", None)
    if fn is None or not isinstance(values, dict) or not values:
        return
    check_canonical_arguments(what, fn, values)


async def decided_tool_arguments(
    server: Any, name: str, arguments: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """The arguments FastMCP tool ``name`` receives for ``arguments``, in their JSON form
    (FastMCP converts them with pydantic after the decision: ``"DELETE"`` for a parameter
    constrained to lower case runs the tool with ``"delete"``), so the chain decides on them and
    they are what the tool is handed; ``None`` when nothing converts them (an unknown tool, a
    proxy).

    The function tool that runs is followed through a mount (a mounted server's tool) and a
    transformed tool that forwards to its parent (under the parent's argument names). A
    transformed tool with its own function receives the arguments as sent and may forward them:
    an argument its parent would convert is refused rather than decided on as sent.

    Raises:
        InvalidRequest: an argument is invalid or cannot be decided on in the form the tool
            receives it, or the tool could not be looked up.
    """
    if not arguments:
        return None
    try:
        tool = await _tool_of(server, name, None)
    except Exception as exc:  # noqa: BLE001 - what would run cannot be known: refused
        _unchecked(exc)
    return await _decided_by(tool, f"tool {name!r}", arguments, 0)


_MAX_DELEGATIONS = 16
"""How many mounts and transformations are followed to the tool that runs."""


def _unchecked(exc: BaseException) -> NoReturn:
    logger.warning("could not look up a FastMCP tool to check its arguments (%s)", type(exc).__name__)
    raise InvalidRequest("the request's target could not be checked", reason="target_unchecked") from None


async def _tool_of(server: Any, name: str, version: Any) -> Any:
    from fastmcp.exceptions import NotFoundError  # noqa: PLC0415 - optional extra
    from fastmcp.server.context import Context  # noqa: PLC0415 - optional extra

    try:
        async with Context(fastmcp=server):
            return await server.get_tool(name, version=version)
    except NotFoundError:
        return None  # FastMCP answers that itself, once the caller may know


async def _mounted(tool: Any) -> Any:
    """The tool a mounted server's tool stands for: its own server runs the tool it names, as
    that version.

    Raises:
        InvalidRequest: it cannot be looked up (``target_unchecked``).
    """
    from fastmcp.utilities.versions import VersionSpec  # noqa: PLC0415 - optional extra

    child_server, child_name = tool._server, tool._original_name  # no public accessor
    if child_server is None or not isinstance(child_name, str):
        raise InvalidRequest("the request's target could not be checked", reason="target_unchecked")
    version = VersionSpec(eq=tool.version) if tool.version else None
    try:
        return await _tool_of(child_server, child_name, version)
    except Exception as exc:  # noqa: BLE001 - what would run cannot be known: refused
        _unchecked(exc)


async def _decided_by(tool: Any, what: str, arguments: Mapping[str, Any], depth: int) -> Mapping[str, Any] | None:
    from fastmcp.server.providers.fastmcp_provider import FastMCPProviderTool  # noqa: PLC0415 - optional extra
    from fastmcp.tools.function_tool import FunctionTool  # noqa: PLC0415 - optional extra
    from fastmcp.tools.tool_transform import TransformedTool  # noqa: PLC0415 - optional extra

    from mcpgov._sdk.validation import converted_tool_arguments  # noqa: PLC0415 - keeps the import graph flat

    if depth > _MAX_DELEGATIONS:
        raise InvalidRequest("the request's target could not be checked", reason="target_unchecked")
    if isinstance(tool, FunctionTool):
        return converted_tool_arguments(what, tool.fn, arguments)
    if isinstance(tool, FastMCPProviderTool):
        return await _decided_by(await _mounted(tool), what, arguments, depth + 1)
    if isinstance(tool, TransformedTool):
        to_parent: dict[str, str] = {}
        for old in tool.parent_tool.parameters.get("properties", {}):
            transform = tool.transform_args.get(old)
            if transform is not None and transform.hide:
                continue
            new = transform.name if transform is not None and isinstance(transform.name, str) else old
            to_parent[new] = old
        forwarded = {to_parent.get(key, key): value for key, value in arguments.items()}
        decided = await _decided_by(tool.parent_tool, what, forwarded, depth + 1)
        if decided is None or decided is forwarded:
            return None
        if tool.fn is not tool.forwarding_fn:
            # Its own function receives the arguments as sent and may forward them to the parent,
            # which would convert them: only the form the parent would keep is decided on.
            raise InvalidRequest(
                f"{what}: an argument would be converted by the tool it forwards to", reason="arguments_converted"
            )
        from_parent = {old: new for new, old in to_parent.items()}
        return {from_parent.get(key, key): value for key, value in decided.items()}
    return None


async def check_guards(server: Any, name: str) -> None:
    """Refuse FastMCP tool ``name`` when a function it runs (its own, through a mount or a
    transformation) was guarded (:meth:`mcpgov.Hooks.guard`) under other names only, so that
    guard would not be asked.

    Raises:
        InvalidRequest: it was (``guard_not_applied``), or the tool could not be looked up
            (``target_unchecked``).
    """
    from mcpgov._hooks import any_guards  # noqa: PLC0415 - keeps the import graph flat

    if not any_guards():
        return
    try:
        tool = await _tool_of(server, name, None)
    except Exception as exc:  # noqa: BLE001 - what would run cannot be known: refused
        _unchecked(exc)
    problem = await _guard_problem_in(tool, name, 0)
    if problem is not None:
        raise InvalidRequest(problem, reason="guard_not_applied")


async def _guard_problem_in(tool: Any, served_as: str, depth: int) -> str | None:
    from fastmcp.server.providers.fastmcp_provider import FastMCPProviderTool  # noqa: PLC0415 - optional extra
    from fastmcp.tools.function_tool import FunctionTool  # noqa: PLC0415 - optional extra
    from fastmcp.tools.tool_transform import TransformedTool  # noqa: PLC0415 - optional extra

    from mcpgov._hooks import guard_problem  # noqa: PLC0415 - keeps the import graph flat

    if depth > _MAX_DELEGATIONS:
        raise InvalidRequest("the request's target could not be checked", reason="target_unchecked")
    if isinstance(tool, FunctionTool):
        return guard_problem(tool.fn, served_as)
    if isinstance(tool, FastMCPProviderTool):
        return await _guard_problem_in(await _mounted(tool), served_as, depth + 1)
    if isinstance(tool, TransformedTool):
        own = guard_problem(tool.fn, served_as) if tool.fn is not tool.forwarding_fn else None
        return own or await _guard_problem_in(tool.parent_tool, served_as, depth + 1)
    return None


async def served_names(server: Any, kind: str) -> frozenset[str]:
    """The names FastMCP ``server`` serves its ``kind`` (``"tool"`` or ``"prompt"``) under now,
    read in process (as its listing would show them to a caller allowed everything).

    Raises:
        InvalidRequest: the names could not be read (``target_unchecked``).
    """
    from fastmcp.server.context import Context  # noqa: PLC0415 - optional extra

    try:
        async with Context(fastmcp=server):
            listing = server.list_tools if kind == "tool" else server.list_prompts
            components = await listing(run_middleware=False)
        return frozenset(str(component.name) for component in components)
    except Exception as exc:  # noqa: BLE001 - what the server serves cannot be known: refused
        logger.warning("could not read the names a FastMCP server serves (%s)", type(exc).__name__)
        raise InvalidRequest("the request's target could not be checked", reason="target_unchecked") from None


_NOT_GOVERNED = (
    "this server is governed: a tool, resource or prompt runs only as the one its own chain decided on "
    "for the request (not through a server it is mounted into, in process, nor from within another one)"
)


def governed_only(server: Any, governance: Any) -> None:
    """Refuse every tool call, resource read and prompt get on FastMCP ``server`` that is not
    exactly the one a request ``governance`` allowed, and list nothing outside an allowed listing.

    FastMCP reaches a server's components past its SDK server too: mounted into another FastMCP
    server (whose requests never pass this chain), called in process (``call_tool``), or from
    within a component the chain allowed (FastMCP's search transform ``call_tool`` proxy,
    ``ResourcesAsTools``, a tool calling ``ctx.fastmcp``). The server's own FastMCP middleware
    runs on every one of those paths; this one refuses them (``-32003``): one decision runs the
    one component it decided on, once.
    """
    from fastmcp.server.middleware import Middleware  # noqa: PLC0415 - FastMCP is an optional extra
    from mcp import MCPError  # noqa: PLC0415 - with the FastMCP import

    from mcpgov._errors import Denied  # noqa: PLC0415 - keeps the import graph flat
    from mcpgov._server import admitted, listing_admitted  # noqa: PLC0415 - _server imports this module

    def refuse(what: str) -> MCPError:
        logger.warning("refused a %s on a governed FastMCP server that its chain did not decide", what)
        return MCPError(Denied.rpc_code, _NOT_GOVERNED)

    class GovernedOnly(Middleware):
        """Lets through only what the governed server's own chain allowed (see governed_only)."""

        async def on_call_tool(self, context: Any, call_next: Any) -> Any:
            if not admitted(governance, "tool", str(context.message.name)):
                raise refuse("tool call")
            return await call_next(context)

        async def on_read_resource(self, context: Any, call_next: Any) -> Any:
            if not admitted(governance, "resource", str(context.message.uri)):
                raise refuse("resource read")
            return await call_next(context)

        async def on_get_prompt(self, context: Any, call_next: Any) -> Any:
            if not admitted(governance, "prompt", str(context.message.name)):
                raise refuse("prompt get")
            return await call_next(context)

        # A listing other than one the chain filters (through a mount, in process, from within a
        # component) lists nothing: what the chain hides from a caller is not told to anyone.
        async def on_list_tools(self, context: Any, call_next: Any) -> Any:
            return await listed(context, call_next, "tool", "tools")

        async def on_list_resources(self, context: Any, call_next: Any) -> Any:
            return await listed(context, call_next, "resource", "resources")

        async def on_list_resource_templates(self, context: Any, call_next: Any) -> Any:
            return await listed(context, call_next, "resource", "resource templates")

        async def on_list_prompts(self, context: Any, call_next: Any) -> Any:
            return await listed(context, call_next, "prompt", "prompts")

    async def listed(context: Any, call_next: Any, kind: str, what: str) -> Any:
        if not listing_admitted(governance, kind):
            logger.warning("listed no %s of a governed FastMCP server past its chain", what)
            return []
        return await call_next(context)

    server.add_middleware(GovernedOnly())
