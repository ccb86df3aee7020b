"""A task's history belongs to its owner: another principal of the tenant that obtains a
credential naming the same task id neither writes nor reads it; a delegate acting in the
owner's task shares it. Through real in-process sessions in both modes, on the in-memory store
and on a real redis-server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer

from mcpgov import META_CREDENTIAL, Decision, Effect, GovContext, InMemoryStateStore, Principal, StateStore, govern
from mcpgov._context import TASK_OWNER, task_owner
from mcpgov.approval import ApprovalRequest
from mcpgov.credentials import CredentialIssuer, CredentialMiddleware
from mcpgov.gateway._upstream import CURRENT, CallerMiddleware, FrontCall
from mcpgov.policy import DEFAULT_DENY_RULE, Policy, PolicyMiddleware
from mcpgov.policy._history import HistoryNeeds, TaskHistoryStore
from mcpgov.testing import InMemoryAuditSink

from .redis_support import redis_server
from .test_credentials_support import AUDIENCE, as_principal, identity_from_meta, make_issuer, principal

pytestmark = pytest.mark.anyio

POLICY = """
version: 1
name: task-owners
labels:
  sensitive: {tools: [read_secret]}
rules:
  - {id: review, effect: allow, tools: [review]}
  - {id: read-secret, effect: allow, tools: [read_secret]}
  - id: mail-after-review
    effect: allow
    tools: [send_mail]
    when: {history: {called: [review]}}
  - id: no-mail-after-secret
    effect: deny
    tools: [send_mail]
    when: {history: {seen_labels: [sensitive]}}
  - id: three-steps
    effect: allow
    tools: [step]
    when: {history: {calls_below: 3}}
"""

TOOLS = ("review", "read_secret", "send_mail", "step")
ALICE = principal("alice", "acme")
MALLORY = principal("mallory", "acme")
HELPER = principal("helper", "acme")
EVE = principal("eve", "globex")


@dataclass
class Served:
    server: MCPServer
    issuer: CredentialIssuer
    sink: InMemoryAuditSink
    ran: list[str] = field(default_factory=list)


def serve(state: StateStore | None = None) -> Served:
    issuer = make_issuer()
    server = MCPServer("mail")
    sink = InMemoryAuditSink()
    served = Served(server, issuer, sink)
    for name in TOOLS:

        def body(name: str = name) -> str:
            served.ran.append(name)
            return name

        server.tool(name=name)(body)
    policy = PolicyMiddleware(Policy.from_yaml(POLICY), state=state if state is not None else InMemoryStateStore())
    govern(server, identity_from_meta, CredentialMiddleware(issuer.verifier(AUDIENCE)), policy, audit=sink)
    return served


async def token_for(served: Served, who: Principal, task: str = "t-1", **options: Any) -> str:
    credential = await served.issuer.mint(who, audience=AUDIENCE, tools=TOOLS, task_id=task, **options)
    return credential.token


async def outcome(client: Client, who: Principal, token: str, tool: str) -> str:
    """``"ran"`` or the rule that refused it (from the error code: -32003 is a policy denial)."""
    try:
        result = await client.call_tool(tool, {}, meta={**as_principal(who), META_CREDENTIAL: token})  # type: ignore[arg-type]
    except MCPError as exc:
        return f"refused {exc.code}"
    return "failed" if result.is_error else "ran"


async def scenario_writes(served: Served, mode: str) -> dict[str, str]:
    """What Alice's requests get after Mallory (same tenant) and Eve (another tenant) used the
    same task id in credentials of their own."""
    alice = await token_for(served, ALICE)
    mallory = await token_for(served, MALLORY)
    eve = await token_for(served, EVE)
    got: dict[str, str] = {}
    async with Client(served.server, mode=mode) as client:
        # Mallory reviews "t-1" and reads a secret in it; Eve steps three times in "t-1".
        got["mallory review"] = await outcome(client, MALLORY, mallory, "review")
        got["mallory secret"] = await outcome(client, MALLORY, mallory, "read_secret")
        got["mallory mail"] = await outcome(client, MALLORY, mallory, "send_mail")
        for n in range(3):
            got[f"eve step {n}"] = await outcome(client, EVE, eve, "step")
            got[f"mallory step {n}"] = await outcome(client, MALLORY, mallory, "step")
        # Alice's task "t-1" saw none of it: no review (mail refused), no secret, no steps.
        got["alice mail before review"] = await outcome(client, ALICE, alice, "send_mail")
        for n in range(3):
            got[f"alice step {n}"] = await outcome(client, ALICE, alice, "step")
        got["alice step 3"] = await outcome(client, ALICE, alice, "step")
        got["alice review"] = await outcome(client, ALICE, alice, "review")
        got["alice mail"] = await outcome(client, ALICE, alice, "send_mail")
        # And Alice's review does not let a fresh principal of the tenant mail in "t-1" either.
        other = await token_for(served, principal("other", "acme"))
        got["other mail"] = await outcome(client, principal("other", "acme"), other, "send_mail")
    return got


EXPECTED = {
    "mallory review": "ran",
    "mallory secret": "ran",
    "mallory mail": "refused -32003",
    **{f"eve step {n}": "ran" for n in range(3)},
    # Mallory's own task counts her own calls: two before her steps.
    "mallory step 0": "ran",
    "mallory step 1": "refused -32003",
    "mallory step 2": "refused -32003",
    "alice mail before review": "refused -32003",
    **{f"alice step {n}": "ran" for n in range(3)},
    "alice step 3": "refused -32003",
    "alice review": "ran",
    "alice mail": "ran",
    "other mail": "refused -32003",
}


async def test_another_principal_naming_the_task_id_neither_writes_nor_reads_its_history(mode: str) -> None:
    served = serve()
    assert await scenario_writes(served, mode) == EXPECTED


async def test_a_delegate_acting_in_the_owners_task_shares_its_history(mode: str) -> None:
    served = serve()
    alice = await served.issuer.mint(ALICE, audience=AUDIENCE, tools=TOOLS, task_id="t-1", may_act=[HELPER])
    helper = await served.issuer.delegate(alice.token, subject=HELPER)
    async with Client(served.server, mode=mode) as client:
        assert await outcome(client, HELPER, helper.token, "send_mail") == "refused -32003"
        # One budget for the task, whoever of the two spends it.
        assert await outcome(client, ALICE, alice.token, "step") == "ran"
        assert await outcome(client, HELPER, helper.token, "step") == "ran"
        assert await outcome(client, ALICE, alice.token, "step") == "ran"
        assert await outcome(client, HELPER, helper.token, "step") == "refused -32003"
        # The helper's review is the task's: Alice may mail now, and so may the helper.
        assert await outcome(client, HELPER, helper.token, "review") == "ran"
        assert await outcome(client, ALICE, alice.token, "send_mail") == "ran"
        assert await outcome(client, HELPER, helper.token, "send_mail") == "ran"
        # A secret the helper reads in the task stops Alice's mail.
        assert await outcome(client, HELPER, helper.token, "read_secret") == "ran"
        assert await outcome(client, ALICE, alice.token, "send_mail") == "refused -32003"
        # The helper with a credential of its own for "t-1" is in its own task.
        own = await token_for(served, HELPER)
        assert await outcome(client, HELPER, own, "send_mail") == "refused -32003"


async def test_explain_through_another_principals_task_id_reads_nothing_of_the_owners(mode: str) -> None:
    served = serve()
    alice = await token_for(served, ALICE)
    mallory = await token_for(served, MALLORY)
    async with Client(served.server, mode=mode) as client:
        assert await outcome(client, ALICE, alice, "review") == "ran"
        assert await outcome(client, ALICE, alice, "read_secret") == "ran"
        # Mallory's decision about mail in "t-1" reads her own (empty) task: refused by the
        # missing review, not by Alice's secret, so nothing of Alice's history shows through.
        assert await outcome(client, MALLORY, mallory, "send_mail") == "refused -32003"
    denials = [e for e in served.sink.events if e.type == "decision" and e.effect == "deny"]
    assert [(e.principal, e.rule) for e in denials] == [(MALLORY.id, DEFAULT_DENY_RULE)]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as (url, _process):
        yield url


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[StateStore]:
    module = pytest.importorskip("mcpgov.redis", reason="the 'redis' extra is not installed")
    async with module.RedisStateStore.from_url(redis_url, prefix=f"owner-{time.monotonic_ns()}:") as store:
        yield store


async def test_task_history_on_redis_belongs_to_the_tasks_owner(redis_store: StateStore, mode: str) -> None:
    served = serve(redis_store)
    assert await scenario_writes(served, mode) == EXPECTED


# -- the key, as the stages read it ------------------------------------------------------------


def test_the_owner_of_a_task_is_the_credentials_owner_else_the_caller() -> None:
    ctx = GovContext(side="server", method="tools/call", principal=MALLORY, tenant="acme", task_id="t-1")
    assert task_owner(ctx) == MALLORY.key
    assert task_owner(ctx.replace(task_id=None)) is None
    minted = {"task": "t-1", "idp": ALICE.issuer, "sub": ALICE.subject}
    assert task_owner(ctx.replace(credential=minted)) == ALICE.key
    derived = {**minted, "sub": "helper", "own": {"iss": ALICE.issuer, "sub": ALICE.subject}}
    assert task_owner(ctx.replace(credential=derived)) == ALICE.key
    # An owner a stage passed on names the task where no credential of it does.
    passed = ctx.with_extension(TASK_OWNER, ALICE.key)
    assert task_owner(passed) == ALICE.key
    assert task_owner(passed.replace(credential=derived | {"own": {"iss": "x", "sub": "y"}})) == ("x", "y")
    assert task_owner(ctx.replace(principal=None)) is None


# -- the property ------------------------------------------------------------------------------

WHO = {"alice": ALICE, "mallory": MALLORY, "eve": EVE, "other": principal("other", "acme")}
step = st.tuples(st.sampled_from(sorted(WHO)), st.sampled_from(TOOLS))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alice_calls=st.lists(st.sampled_from(TOOLS), max_size=5),
    others=st.lists(st.tuples(st.sampled_from(["mallory", "eve", "other"]), st.sampled_from(TOOLS)), max_size=6),
    seed=st.integers(min_value=0, max_value=2**16),
    mode=st.sampled_from(["auto", "legacy"]),
)
def test_requests_of_another_principal_never_change_a_decision_about_the_owners(
    alice_calls: list[str], others: list[tuple[str, str]], seed: int, mode: str
) -> None:
    """Interleaving other principals' requests in the same task id (same tenant or not) changes
    no outcome of Alice's requests: they are decided exactly as with Alice alone."""

    async def run(with_others: bool) -> list[str]:
        served = serve()
        tokens = {name: await token_for(served, who) for name, who in WHO.items()}
        mine: list[str] = []
        pending = list(others) if with_others else []
        async with Client(served.server, mode=mode) as client:
            for index, tool in enumerate(alice_calls):
                # Some of the others' requests before each of Alice's (where: from the seed).
                take = (seed >> index) % 3 if pending else 0
                for name, their in pending[:take]:
                    await outcome(client, WHO[name], tokens[name], their)
                del pending[:take]
                mine.append(await outcome(client, ALICE, tokens["alice"], tool))
            for name, their in pending:
                await outcome(client, WHO[name], tokens[name], their)
            mine.append(await outcome(client, ALICE, tokens["alice"], "send_mail"))
        return mine

    assert anyio.run(run, True) == anyio.run(run, False)


async def test_history_entries_of_two_owners_of_one_task_id_are_apart() -> None:
    store = InMemoryStateStore()
    history = TaskHistoryStore(store)
    needs = HistoryNeeds(targets=frozenset({"tool:review"}), count=True)
    base = GovContext(side="server", method="tools/call", kind="tool", target="review", tenant="acme", task_id="t")
    alice, mallory = base.replace(principal=ALICE), base.replace(principal=MALLORY)
    await history.record(alice, [])
    seen = await history.snapshot(mallory, needs)
    assert seen is not None
    assert (seen.calls, seen.called) == (0, frozenset())
    mine = await history.snapshot(alice, needs)
    assert mine is not None
    assert (mine.calls, mine.called) == (1, frozenset({"tool:review"}))
    # A subject spelt to look like another tenant's or issuer's parts is still someone else.
    tricky = base.replace(principal=Principal(ALICE.issuer, "alice", tenant="acme"), tenant="acme")
    assert (await history.snapshot(tricky, needs)) == mine
    forged = base.replace(principal=Principal(ALICE.issuer + '", "alice', "", tenant="acme"))
    other = await history.snapshot(forged, needs)
    assert other is not None
    assert other.calls == 0


async def test_a_gateways_upstream_request_keeps_the_owner_of_the_agents_task() -> None:
    derived = {"task": "t-1", "idp": HELPER.issuer, "sub": HELPER.subject, "own": {"iss": ALICE.issuer, "sub": "alice"}}
    decided = GovContext(
        side="server", method="tools/call", principal=HELPER, tenant="acme", task_id="t-1", credential=derived
    )
    seen: list[GovContext] = []

    async def upstream(ctx: GovContext) -> Any:
        seen.append(ctx)
        return None

    reset = CURRENT.set(FrontCall(decided=decided, session=None, request_id=1))
    try:
        await CallerMiddleware()(GovContext(side="client", method="tools/call"), upstream)
        await CallerMiddleware()(GovContext(side="client", method="tools/call"), upstream)
    finally:
        CURRENT.reset(reset)
    # The upstream side decides as the helper, in Alice's task (no token of the agent copied).
    assert [(c.principal, c.task_id, c.credential, task_owner(c)) for c in seen] == [
        (HELPER, "t-1", None, ALICE.key)
    ] * 2
    # The agent's own task is its own upstream too.
    mine = decided.replace(principal=MALLORY, credential={"task": "t-1", "idp": MALLORY.issuer, "sub": "mallory"})
    reset = CURRENT.set(FrontCall(decided=mine, session=None, request_id=2))
    try:
        await CallerMiddleware()(GovContext(side="client", method="tools/call"), upstream)
    finally:
        CURRENT.reset(reset)
    assert task_owner(seen[-1]) == MALLORY.key


def test_an_approval_request_names_the_owner_of_a_task_the_caller_acts_in() -> None:
    derived = {"task": "t-1", "idp": HELPER.issuer, "sub": HELPER.subject, "own": {"iss": ALICE.issuer, "sub": "alice"}}
    ctx = GovContext(
        side="server", method="tools/call", kind="tool", target="deploy", principal=HELPER, tenant="acme", task_id="t-1"
    )
    decision = Decision(Effect.REQUIRE_APPROVAL, "needs-a-person", "", "approval_required")
    helpers = ApprovalRequest.for_context(ctx.replace(credential=derived), decision, ttl=60)
    own = ApprovalRequest.for_context(ctx, decision, ttl=60)
    assert helpers.action[:8] == own.action[:8] and helpers.action != own.action
    assert (helpers.task_owner, own.task_owner) == (ALICE.id, None)
    assert f'for task "t-1" of "{ALICE.id}" with arguments' in helpers.describe()
    assert 'for task "t-1" with arguments' in own.describe()
