"""One obligation merge, strictest wins, wherever obligations meet: the engine's applying rules and
``Decision.combine`` across stages. Adding an authoriser never loosens any obligation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcpgov import Auditor, Decision, Effect, GovContext, GovernedClient, Hooks, govern
from mcpgov._decision import merge_obligations
from mcpgov.audit import Redactor
from mcpgov.credentials import ClientCredentials, CredentialRequest, IssuerTokenSource
from mcpgov.credentials._claims import Credential
from mcpgov.policy import Policy, PolicyEngine, PolicyMiddleware
from mcpgov.policy._ratelimit import RateLimitSpec
from mcpgov.testing import InMemoryAuditSink

from .policies.support import LookupIdentity, as_
from .test_credentials_client import AGENT, identify
from .test_credentials_support import AUDIENCE, build_governed, make_issuer

pytestmark = pytest.mark.anyio

FIELDS = ("alpha", "beta", "gamma")


# -- the merge itself -------------------------------------------------------------------------------

_obligations = st.fixed_dictionaries(
    {},
    optional={
        "max_credential_ttl": st.one_of(st.integers(1, 3600), st.floats(0.5, 3600.0)),
        "bind_arguments": st.booleans(),
        "redact": st.lists(st.sampled_from(FIELDS), max_size=3).map(tuple),
        "rate_limit": st.lists(
            st.builds(
                RateLimitSpec, st.sampled_from(["r1", "r2"]), st.integers(1, 5), st.just(60.0), st.just(("tool",))
            ),
            max_size=2,
        ).map(tuple),
    },
)


def _at_least_as_strict(merged: dict[str, Any], part: dict[str, Any]) -> None:
    if "max_credential_ttl" in part:
        assert merged["max_credential_ttl"] <= part["max_credential_ttl"]
    if part.get("bind_arguments"):
        assert merged["bind_arguments"] is True
    assert set(part.get("redact", ())) <= set(merged.get("redact", ()))
    assert set(part.get("rate_limit", ())) <= set(merged.get("rate_limit", ()))


@given(_obligations, _obligations)
def test_merge_is_at_least_as_strict_as_each_side(first: dict[str, Any], second: dict[str, Any]) -> None:
    merged = merge_obligations(first, second)
    _at_least_as_strict(merged, first)
    _at_least_as_strict(merged, second)
    assert merge_obligations(second, first).get("max_credential_ttl") == merged.get("max_credential_ttl")


@given(
    st.sampled_from([Effect.ALLOW, Effect.REQUIRE_APPROVAL, Effect.DENY]),
    st.sampled_from([Effect.ALLOW, Effect.REQUIRE_APPROVAL, Effect.DENY]),
    _obligations,
    _obligations,
)
def test_combine_never_loosens_and_names_the_stricter_rule(
    a: Effect, b: Effect, first: dict[str, Any], second: dict[str, Any]
) -> None:
    one = Decision(a, "one", obligations=first)
    two = Decision(b, "two", obligations=second)
    combined = one.combine(two)
    rank = {Effect.ALLOW: 0, Effect.REQUIRE_APPROVAL: 1, Effect.DENY: 2}
    assert rank[combined.effect] == max(rank[a], rank[b])
    assert combined.rule == ("two" if rank[b] > rank[a] else "one")
    if combined.effect is not Effect.DENY:
        _at_least_as_strict(dict(combined.obligations), first)
        _at_least_as_strict(dict(combined.obligations), second)


@pytest.mark.parametrize("bad", ["30", None, float("nan"), float("inf"), -5, 0, True])
def test_a_ttl_that_is_not_a_positive_number_merges_to_zero(bad: Any) -> None:
    assert merge_obligations({"max_credential_ttl": bad}, {"max_credential_ttl": 60})["max_credential_ttl"] == 0.0


def test_redact_given_as_one_string_is_one_field_and_unknown_keys_keep_both_values() -> None:
    merged = merge_obligations({"redact": "alpha", "x-custom": 1}, {"redact": ["beta"], "x-custom": 2})
    assert merged["redact"] == ("alpha", "beta")
    assert merged["x-custom"] == (1, 2)


def test_the_engine_uses_the_same_merge() -> None:
    engine = PolicyEngine(
        Policy.from_yaml(
            """
rules:
  - {id: a, effect: allow, tools: [t], obligations: {max_credential_ttl: 300, redact: [alpha], bind_arguments: true}}
  - {id: b, effect: allow, tools: [t], obligations: {max_credential_ttl: 30, redact: [beta]}}
"""
        )
    )
    ctx = GovContext(side="server", method="tools/call", kind="tool", target="t", arguments={})
    from mcpgov import Principal

    decision = engine.decide(ctx.replace(principal=Principal("https://idp", "p", tenant="t")))
    assert decision.rule == "a"
    assert dict(decision.obligations) == merge_obligations(
        {"max_credential_ttl": 300.0, "redact": ("alpha",), "bind_arguments": True},
        {"max_credential_ttl": 30.0, "redact": ("beta",)},
    )


# -- through real sessions -------------------------------------------------------------------------


class RecordingSource(IssuerTokenSource):
    """The issuer's token source, remembering every credential it minted."""

    minted: list[Credential]

    async def obtain(self, request: CredentialRequest, principal: Any = None) -> Credential:
        credential = await super().obtain(request, principal)
        self.minted.append(credential)
        return credential


def _stage(obligations: dict[str, Any], rule: str) -> Hooks:
    hooks = Hooks()

    @hooks.tool("*")
    def allow(_ctx: GovContext) -> Decision:
        return Decision.allow(rule, **obligations)

    return hooks


async def _observed(stages: list[dict[str, Any]], mode: str, ttl: float | None = 300.0) -> tuple[float, bool, set[str]]:
    """Run one call under ``stages``: the credential's lifetime, whether it was bound, what audit hid."""
    issuer = make_issuer()
    governed = build_governed(issuer)
    source = RecordingSource(issuer)
    source.minted = []
    creds = ClientCredentials(source, audience=AUDIENCE, ttl=ttl)
    sink = InMemoryAuditSink()
    auditor = Auditor([sink], redactor=Redactor(record_arguments=True))
    hooks = [_stage(o, f"stage-{i}") for i, o in enumerate(stages)]
    arguments = {"version": "alpha beta gamma"}
    async with GovernedClient(
        governed.server, identify(AGENT), *hooks, creds, principal=AGENT, audit=auditor, mode=mode
    ) as client:
        assert (await client.call_tool("deploy", arguments)).is_error is False
    (credential,) = source.minted
    lifetime = credential.claims.expires_at - credential.claims.issued_at
    (decision,) = [e for e in sink.decisions() if e.target == "deploy"]
    recorded = decision.attributes["arguments"]
    assert set(recorded) == set(arguments)
    redacted = {name for name, value in recorded.items() if value != arguments[name]}
    return lifetime, credential.claims.args_hash is not None, redacted


_stage_obligations = st.fixed_dictionaries(
    {},
    optional={
        "max_credential_ttl": st.sampled_from([10, 30, 60, 120]),
        "bind_arguments": st.booleans(),
        "redact": st.lists(st.sampled_from(["version"]), max_size=1).map(tuple),
    },
)


@given(st.lists(_stage_obligations, min_size=1, max_size=2), _stage_obligations, st.sampled_from(["auto", "legacy"]))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
async def test_adding_an_authoriser_never_loosens_what_the_session_gets(
    stages: list[dict[str, Any]], added: dict[str, Any], protocol: str
) -> None:
    before = await _observed(stages, protocol)
    after = await _observed([*stages, added], protocol)
    assert after[0] <= before[0]
    assert after[1] >= before[1]
    assert after[2] >= before[2]
    caps = [o["max_credential_ttl"] for o in [*stages, added] if "max_credential_ttl" in o]
    if caps:
        assert after[0] <= min(caps)
    if any(o.get("bind_arguments") for o in [*stages, added]):
        assert after[1] is True
    if any(o.get("redact") for o in [*stages, added]):
        assert after[2] == {"version"}


async def test_hooks_and_policy_on_a_server_both_redact_in_audit(mode: str) -> None:
    server = MCPServer("s")
    sink = InMemoryAuditSink()

    @server.tool()
    def send(alpha: str, beta: str, gamma: str) -> str:
        return "sent"

    hooks = _stage({"redact": ("beta",), "max_credential_ttl": 3600}, "hook")
    policy = PolicyMiddleware(
        Policy.from_yaml(
            "rules: [{id: p, effect: allow, tools: [send], obligations: {redact: [alpha], max_credential_ttl: 30}}]"
        )
    )
    seen: list[Any] = []

    async def capture(ctx: GovContext, call_next: Any) -> Any:
        if ctx.method == "tools/call":
            seen.append(ctx.decision)
        return await call_next(ctx)

    govern(
        server,
        LookupIdentity(),
        policy,
        hooks,
        capture,
        audit=Auditor([sink], redactor=Redactor(record_arguments=True)),
    )
    async with Client(server, mode=mode) as client:
        arguments = {"alpha": "SECRET-A", "beta": "SECRET-B", "gamma": "public"}
        assert (await client.call_tool("send", arguments, meta=as_("alice"))).is_error is False
    (decision,) = seen
    assert decision.obligations["max_credential_ttl"] == 30
    assert decision.obligations["redact"] == ("alpha", "beta")
    dumped = "\n".join(e.model_dump_json() for e in sink.events)
    assert "SECRET-A" not in dumped
    assert "SECRET-B" not in dumped
    assert "public" in dumped


async def test_a_ttl_cap_never_lengthens_a_credential_without_a_configured_ttl(mode: str) -> None:
    before = await _observed([{}], mode, ttl=None)
    after = await _observed([{}, {"max_credential_ttl": 120}], mode, ttl=None)
    assert after[0] <= before[0]
