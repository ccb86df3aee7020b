"""Gateway configurations written to mislead or break the loader: each is one clear error, exit 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
import yaml
from click.testing import CliRunner
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from mcpgov import ConfigurationError, GovernedClient
from mcpgov.cli import main
from mcpgov.gateway import Gateway, UpstreamConfig, load_config
from mcpgov.identity import IdentityMiddleware
from mcpgov.pinning import ServerRegistry, snapshot
from mcpgov.policy import Policy, PolicyMiddleware
from mcpgov.testing import IdentityIssuer, InMemoryAuditSink
from tests.gateway_support import AUDIENCE, Seen, build_world, entry, files_server
from tests.test_gateway_config import example_dir


def _check(path: Path) -> str:
    result = CliRunner().invoke(main, ["gateway", "--config", str(path), "--check"], env={"NOTES_API_KEY": "k" * 20})
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: "), result.output
    return result.output


@pytest.mark.parametrize(
    ("suffix", "text", "key"),
    [
        (".yaml", "name: first\npolicy: policy.yaml\nname: second\n", "name"),
        (".yaml", "upstreams:\n  - id: notes\n    timeout: 5\n    timeout: 500\n", "timeout"),
        (".json", '{"name": "first", "name": "second", "policy": "policy.yaml"}', "name"),
    ],
)
def test_a_duplicated_key_is_refused_not_silently_overridden(tmp_path: Path, suffix: str, text: str, key: str) -> None:
    path = tmp_path / f"gateway{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as bad:
        load_config(path)
    assert str(path) in bad.value.detail
    assert "duplicate key" in str(bad.value.__cause__ or bad.value) or "duplicate key" in bad.value.detail
    assert key in bad.value.detail


def test_a_duplicated_key_in_the_registry_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "approved-servers.yaml"
    path.write_text("servers:\n  - id: notes\n    command: python\n    command: evil\n")
    with pytest.raises(ConfigurationError) as bad:
        ServerRegistry.from_file(path)
    assert "duplicate key" in bad.value.detail and "command" in bad.value.detail


@pytest.mark.parametrize(
    ("line", "value"),
    [("concurrency: 010", "010"), ("start_timeout: 1:30", "1:30"), ("timeout: 0x1F", "0x1F")],
)
def test_a_yaml_1_1_only_number_is_refused(tmp_path: Path, line: str, value: str) -> None:
    base = example_dir(tmp_path)
    path = base / "gateway.yaml"
    path.write_text(
        path.read_text().replace("    timeout: 30\n", "").replace("  - id: notes\n", f"  - id: notes\n    {line}\n")
    )
    assert value in _check(path)


def _edit(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    base = example_dir(tmp_path)
    path = base / "gateway.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))
    return path


def _upstream(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda data: change(data["upstreams"][0])


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "http://user:hunter2-secret@redis:6379/0",
        "postgres://user:hunter2-secret@db/0",
        "",
        "redis://user:hunter2-secret@redis:notaport/0",
    ],
)
def test_a_state_url_redis_cannot_use_is_a_config_error_that_does_not_echo_it(tmp_path: Path, url: str) -> None:
    path = _edit(tmp_path, lambda d: d.update(state={"redis": url}))
    output = _check(path)
    assert "state.redis" in output
    assert "hunter2" not in output


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_upstream(lambda u: u.update(env={"": "x"})), "env"),
        (_upstream(lambda u: u.update(env={"A=B": "x"})), "env"),
        (_upstream(lambda u: u.update(env={"A": "x\x00y"})), "env"),
        (_upstream(lambda u: u.update(secret_env={"A\x00": {"env": "NOTES_API_KEY"}})), "secret_env"),
        (_upstream(lambda u: u.update(headers={"X-A": "a\r\nInjected: yes"})), "headers"),
        (_upstream(lambda u: u.update(headers={"X A:": "a"})), "headers"),
        (_upstream(lambda u: u.update(headers={"": "a"})), "headers"),
        (_upstream(lambda u: u.update(secret_headers={"X\nY": {"env": "NOTES_API_KEY"}})), "secret_headers"),
        (
            _upstream(lambda u: u.update(secret_headers={"Authorization": {"env": "K", "prefix": "Bearer\r\nX: "}})),
            "prefix",
        ),
    ],
)
def test_environment_and_header_entries_a_process_or_http_cannot_carry_are_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], field: str
) -> None:
    path = _edit(tmp_path, change)
    output = _check(path)
    assert str(path) in output and field in output


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_upstream(lambda u: u.update(secret_env={"K": {"file": "missing-secret.txt"}})), "missing-secret.txt"),
        (_upstream(lambda u: u.update(secret_env={"K": {"env": "MCPGOV_TEST_UNSET_VAR"}})), "MCPGOV_TEST_UNSET_VAR"),
        (_upstream(lambda u: u.update(cwd="no/such/dir")), "no/such/dir"),
    ],
)
def test_check_resolves_secret_references_and_the_working_directory(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], words: str
) -> None:
    path = _edit(tmp_path, change)
    output = _check(path)
    assert words in output and "'notes'" in output


# --- upstreams whose listings never end, repeat themselves or grow without bound -----------------------

LOOP_POLICY: dict[str, Any] = {
    "version": 1,
    "rules": [{"id": "all", "effect": "allow", "tenants": ["acme"], "tools": ["*"], "prompts": ["*"]}],
}


def _paging_server(pages: Callable[[str | None], types.ListPromptsResult]) -> Server:
    async def list_prompts(ctx: ServerRequestContext[Any], params: Any) -> types.ListPromptsResult:
        return pages(params.cursor if params is not None else None)

    async def list_tools(ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="t", input_schema={"type": "object"})])

    return Server("pager", version="1.0.0", on_list_prompts=list_prompts, on_list_tools=list_tools)


async def _listed_prompts(
    mode: str, pages: Callable[[str | None], types.ListPromptsResult], sink: InMemoryAuditSink | None = None
) -> list[str]:
    good_seen = Seen()
    good = files_server(good_seen)
    pager = _paging_server(pages)
    registry = ServerRegistry(
        [
            entry("files", "files", "1.0.0", await snapshot(good)),
            entry("pager", "pager", "1.0.0", await snapshot(pager)),
        ]
    )
    idp = IdentityIssuer(audience=AUDIENCE)
    upstreams = [
        UpstreamConfig.model_validate({"id": "files", "namespace": {"prefix": "files_"}}),
        UpstreamConfig.model_validate({"id": "pager", "namespace": {"prefix": "pager_"}}),
    ]
    gateway = Gateway(
        upstreams,
        registry,
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(LOOP_POLICY)),
        audit=sink or InMemoryAuditSink(),
        servers={"files": good, "pager": pager},
    )
    async with gateway, GovernedClient(gateway.server, identity=idp.token("a", tenant="acme"), mode=mode) as agent:
        with anyio.fail_after(30):
            result = await agent.list_prompts()
    return [prompt.name for prompt in result.prompts]


def _page(names: list[str], cursor: str | None) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=[types.Prompt(name=n) for n in names], next_cursor=cursor)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("pages", "reason"),
    [
        pytest.param(lambda cursor: _page(["a", "b"], "again"), "listing.loop", id="cursor-repeats"),
        pytest.param(lambda cursor: _page(["a"], str(int(cursor or 0) + 1)), "listing.unending", id="never-ends"),
        pytest.param(lambda cursor: _page([f"p{i}" for i in range(10_001)], None), "listing.too_large", id="huge"),
    ],
)
async def test_a_listing_that_loops_never_ends_or_is_huge_leaves_that_upstream_out(
    mode: str, pages: Callable[[str | None], types.ListPromptsResult], reason: str
) -> None:
    sink = InMemoryAuditSink()
    names = await _listed_prompts(mode, pages, sink)
    assert "files_greet" in names  # the other upstream still serves
    assert not [n for n in names if n.startswith("pager_")]
    (left_out,) = sink.of_type("upstream.left_out")  # an auditor sees why the entries are missing
    assert (left_out.target, left_out.reason, left_out.method) == ("pager", reason, "prompts/list")
    assert left_out.principal is not None and left_out.principal.endswith("#a") and left_out.tenant == "acme"
    assert left_out.attributes == {"server_id": "pager", "listing": "prompt"}
    assert left_out.detail is not None and "pager" in left_out.detail


@pytest.mark.anyio
async def test_a_name_listed_twice_by_one_upstream_is_left_out(mode: str) -> None:
    def pages(cursor: str | None) -> types.ListPromptsResult:
        return _page(["twice", "once"], "2") if cursor is None else _page(["twice"], None)

    sink = InMemoryAuditSink()
    names = await _listed_prompts(mode, pages, sink)
    assert "pager_once" in names and "pager_twice" not in names
    assert len(names) == len(set(names))
    assert sink.of_type("upstream.left_out") == []


@pytest.mark.anyio
async def test_upstreams_whose_listings_hang_are_waited_for_together_not_one_after_another(mode: str) -> None:
    def hanging(name: str) -> Server:
        async def list_prompts(ctx: ServerRequestContext[Any], params: Any) -> types.ListPromptsResult:
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def list_tools(ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(tools=[])

        return Server(name, version="1.0.0", on_list_prompts=list_prompts, on_list_tools=list_tools)

    good = files_server(Seen())
    servers: dict[str, Any] = {"files": good, **{f"hang{i}": hanging(f"hang{i}") for i in range(3)}}
    registry = ServerRegistry([entry(uid, uid, "1.0.0", await snapshot(srv)) for uid, srv in servers.items()])
    idp = IdentityIssuer(audience=AUDIENCE)
    upstreams = [
        UpstreamConfig.model_validate({"id": uid, "namespace": {"prefix": f"{uid}_"}, "timeout": 2}) for uid in servers
    ]
    gateway = Gateway(
        upstreams,
        registry,
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(LOOP_POLICY)),
        servers=servers,
    )
    async with gateway, GovernedClient(gateway.server, identity=idp.token("a", tenant="acme"), mode=mode) as agent:
        started = anyio.current_time()
        with anyio.fail_after(30):
            result = await agent.list_prompts()
        elapsed = anyio.current_time() - started
    assert [p.name for p in result.prompts] == ["files_greet"]
    assert elapsed < 5, elapsed  # one after another: at least 3 x 2 seconds


@pytest.mark.anyio
async def test_entries_listed_together_are_each_scrubbed_of_their_own_upstreams_secrets(mode: str) -> None:
    secrets = {"alpha": "alpha-secret-value-1", "beta": "beta-secret-value-22"}

    def echoing(name: str) -> Server:
        async def list_prompts(ctx: ServerRequestContext[Any], params: Any) -> types.ListPromptsResult:
            # Answers at different times, so that the fetches of the two upstreams interleave.
            await anyio.sleep(0.05 if name == "alpha" else 0.0)
            return types.ListPromptsResult(prompts=[types.Prompt(name="leak", description=f"key {secrets[name]}")])

        async def list_tools(ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(tools=[])

        return Server(name, version="1.0.0", on_list_prompts=list_prompts, on_list_tools=list_tools)

    servers: dict[str, Any] = {uid: echoing(uid) for uid in secrets}
    registry = ServerRegistry([entry(uid, uid, "1.0.0", await snapshot(srv)) for uid, srv in servers.items()])
    idp = IdentityIssuer(audience=AUDIENCE)
    upstreams = [
        UpstreamConfig.model_validate(
            {"id": uid, "namespace": {"prefix": f"{uid}_"}, "secret_env": {"KEY": {"env": f"{uid.upper()}_KEY"}}}
        )
        for uid in servers
    ]
    gateway = Gateway(
        upstreams,
        registry,
        IdentityMiddleware(idp.verifier()),
        PolicyMiddleware(Policy.from_dict(LOOP_POLICY)),
        servers=servers,
        environ={f"{uid.upper()}_KEY": value for uid, value in secrets.items()},
    )
    async with gateway, GovernedClient(gateway.server, identity=idp.token("a", tenant="acme"), mode=mode) as agent:
        for _ in range(5):
            result = await agent.list_prompts()
            assert sorted(p.name for p in result.prompts) == ["alpha_leak", "beta_leak"]
            text = " ".join(p.description or "" for p in result.prompts)
            assert not any(value in text for value in secrets.values()), text


@pytest.mark.anyio
async def test_a_drain_waits_for_calls_queued_behind_the_concurrency_limit(mode: str) -> None:
    world, _ = await build_world(files_config={"concurrency": 1})
    results: list[str] = []
    async with world.gateway:

        async def call() -> None:
            async with world.agent(mode) as agent:
                result = await agent.call_tool("files_slow", {"seconds": 0.5})
                results.append("error" if result.is_error else "ok")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(call)
                for _ in range(1000):
                    if world.gateway.upstreams["files"].stats.in_flight:
                        break
                    await anyio.sleep(0.01)
                await anyio.sleep(0.1)  # the other two wait for the one slot
                await world.gateway.drain(10)
    assert results == ["ok", "ok", "ok"]


@pytest.mark.anyio
async def test_a_call_that_finds_every_concurrency_slot_taken_fails_at_the_upstreams_timeout(mode: str) -> None:
    world, _ = await build_world(files_config={"concurrency": 1, "timeout": 2.0})
    upstream = world.gateway.upstreams["files"]
    holder = object()  # stands for a call that hangs holding the only slot
    async with world.gateway, world.agent(mode) as agent:
        assert not (await agent.call_tool("files_read_file", {"path": "/data/a"})).is_error
        await upstream._limiter.acquire_on_behalf_of(holder)
        try:
            with anyio.fail_after(30):
                for _ in range(2):
                    with pytest.raises(MCPError) as busy:
                        await agent.call_tool("files_slow", {"seconds": 0})
                    assert "did not answer in time" in busy.value.message
                    assert "files" not in busy.value.message  # the detail stays in the audit trail
                listed = {t.name for t in (await agent.list_tools()).tools}
        finally:
            upstream._limiter.release_on_behalf_of(holder)
        assert "clock_now" in listed and not [n for n in listed if n.startswith("files_")]
        assert upstream._queued == 0 and upstream.stats.in_flight == 0
        assert not (await agent.call_tool("files_slow", {"seconds": 0})).is_error  # the slot is free again
    assert [c for c in world.files.calls if c[0] == "slow"] == [("slow", {"seconds": 0})]
    refused = [e for e in world.sink.events if e.target == "files_slow" and e.error_code is not None]
    assert len(refused) == 2
    assert all(e.error_code == "mcpgov.gateway.upstream_timeout" and e.reason == "upstream_busy" for e in refused)
    assert all(e.principal is not None for e in refused)
    left_out = [(e.target, e.reason, e.method) for e in world.sink.of_type("upstream.left_out")]
    # The listing made while the slot was held is left out as busy. On a loaded machine a listing
    # made before it may also have run out of time: left out and audited as well.
    assert ("files", "upstream_busy", "tools/list") in left_out
    assert set(left_out) <= {("files", "upstream_busy", "tools/list"), ("files", "upstream_timeout", "tools/list")}


class _StuckAgent:
    """An agent connection that never takes a notification (a full pipe, a stalled stream)."""

    def __init__(self) -> None:
        self.waiting = anyio.Event()

    async def notify(self, method: str, params: Any) -> None:
        self.waiting.set()
        await anyio.Event().wait()


@pytest.mark.anyio
async def test_an_agent_that_never_takes_a_notification_holds_up_no_other_agent() -> None:
    # Handshake-era agents are told of changes one connection at a time (2026-07-28 ones listen).
    world, _ = await build_world(clock_config={"timeout": 2})
    changed = anyio.Event()

    async def on_message(message: object) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            changed.set()

    stuck = _StuckAgent()
    async with world.gateway, world.agent("legacy", message_handler=on_message) as agent:
        await agent.call_tool("clock_now", {"timezone": "UTC"})
        connections = world.gateway._connections
        known = list(connections.items())
        assert known
        connections.clear()
        connections[stuck] = known[0][1]  # the same caller, heard of first: the first to be told
        # ... on the strength of the same decided request.
        stuck._mcpgov_gateway_hearing = known[0][0]._mcpgov_gateway_hearing  # type: ignore[attr-defined]
        connections.update(known)
        await agent.call_tool("clock_announce", {})
        with anyio.fail_after(20):
            await stuck.waiting.wait()
            await changed.wait()  # told although the first agent never takes it
