"""Identity token lifetime: a correctly signed token that would live longer than its issuer's
``max_ttl`` is refused (``exp - iat``, or what is left of it without ``iat``), as is one whose
dates contradict each other, for OIDC issuers and SPIFFE trust domains alike, through real
sessions in both protocol modes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpgov import ConfigurationError, GovernedClient, IdentityError
from mcpgov.identity import IdentityVerifier
from mcpgov.testing import IdentityIssuer, SpiffeIssuer

from .test_identity_session import build, refused

pytestmark = pytest.mark.anyio

DAY = 86400
YEARS = 10 * 365 * DAY
OIDC = IdentityIssuer(alg="ES256")
SPIRE = SpiffeIssuer("example.org", alg="ES256")


def _token(kind: str, *, ttl: float | None = None, claims: dict[str, Any] | None = None) -> str:
    if kind == "oidc":
        return OIDC.token(ttl=ttl, claims=claims)
    return SPIRE.svid("/tenant/acme/agent", ttl=ttl, claims=claims)


def _verifier(kind: str, **options: Any) -> IdentityVerifier:
    if kind == "oidc":
        return IdentityVerifier(OIDC.config(**options))
    return IdentityVerifier(SPIRE.config(tenant="acme", **options))


def _now() -> int:
    return int(OIDC.clock())


LONG_LIVED: dict[str, tuple[Any, str]] = {
    "ten-years": (lambda kind: _token(kind, ttl=YEARS), "lifetime_too_long"),
    "a-day-and-a-second": (lambda kind: _token(kind, ttl=DAY + 1), "lifetime_too_long"),
    "no-iat-far-exp": (lambda kind: _token(kind, claims={"iat": None, "exp": _now() + YEARS}), "lifetime_too_long"),
    "backdated-iat": (
        lambda kind: _token(kind, claims={"iat": _now() - YEARS, "exp": _now() + 300}),
        "lifetime_too_long",
    ),
    # nbf within the leeway, after (or at) exp: a token valid at no instant
    "nbf-after-exp": (lambda kind: _token(kind, claims={"nbf": _now() + 20, "exp": _now() + 10}), "invalid_claim"),
    "nbf-at-exp": (lambda kind: _token(kind, claims={"nbf": _now() + 10, "exp": _now() + 10}), "invalid_claim"),
    # iat within the leeway, exp before it: never valid
    "exp-before-iat": (lambda kind: _token(kind, claims={"iat": _now() + 20, "exp": _now() + 10}), "invalid_claim"),
    "iat-in-the-future": (
        lambda kind: _token(kind, claims={"iat": _now() + 3600, "exp": _now() + 7200}),
        "issued_in_future",
    ),
}


@pytest.mark.parametrize("kind", ["oidc", "spiffe"])
@pytest.mark.parametrize("case", sorted(LONG_LIVED))
async def test_identity_token_living_too_long_or_with_contradicting_dates_is_refused(
    case: str, kind: str, mode: str
) -> None:
    make, reason = LONG_LIVED[case]
    token = make(kind)
    setup = build(_verifier(kind))
    await refused(setup, token, mode)
    (event,) = setup.sink.events
    assert event.reason == reason
    assert event.principal is None and event.tenant is None


@pytest.mark.parametrize("kind", ["oidc", "spiffe"])
async def test_identity_token_of_exactly_the_longest_lifetime_is_accepted(kind: str, mode: str) -> None:
    setup = build(_verifier(kind))
    async with GovernedClient(setup.server, identity=_token(kind, ttl=DAY), mode=mode) as client:
        result = await client.call_tool("work", {})
    assert result.is_error is False
    assert setup.ran == ["work"]


@pytest.mark.parametrize("kind", ["oidc", "spiffe"])
async def test_identity_max_ttl_is_configurable_per_issuer(kind: str, mode: str) -> None:
    setup = build(_verifier(kind, max_ttl=600))
    await refused(setup, _token(kind, ttl=601), mode)
    assert setup.sink.events[0].reason == "lifetime_too_long"
    setup = build(_verifier(kind, max_ttl=600))
    async with GovernedClient(setup.server, identity=_token(kind, ttl=600), mode=mode) as client:
        assert (await client.call_tool("work", {})).is_error is False


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


NOW = 2_000_000_000


@given(
    iat=st.one_of(st.none(), st.integers(-2 * DAY, 30)),
    exp=st.integers(1, 3 * DAY),
    max_ttl=st.integers(1, 2 * DAY),
)
def test_an_accepted_identity_token_never_lives_longer_than_max_ttl(iat: int | None, exp: int, max_ttl: int) -> None:
    clock = _Clock(NOW)
    issuer = IdentityIssuer(alg="HS256", clock=clock)
    verifier = IdentityVerifier(issuer.config(leeway=30, max_ttl=max_ttl), clock=clock, cache_size=0)
    token = issuer.token(claims={"iat": None if iat is None else NOW + iat, "exp": NOW + exp})
    incoherent = iat is not None and exp <= iat
    too_long = exp > max_ttl + 30 or (iat is not None and exp - iat > max_ttl)
    if incoherent or too_long:
        with pytest.raises(IdentityError) as caught:
            verifier.verify_cached(token)
        assert caught.value.reason == ("invalid_claim" if incoherent else "lifetime_too_long")
        return
    verified = verifier.verify_cached(token)
    assert verified.expires_at - NOW <= max_ttl + 30


@pytest.mark.parametrize("value", [0, -1, 0.5, float("inf"), float("nan"), True, "3600", None])
def test_identity_max_ttl_must_be_a_finite_number_of_seconds(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_ttl"):
        OIDC.config(max_ttl=value)
    with pytest.raises(ConfigurationError, match="max_ttl"):
        SPIRE.config(max_ttl=value)


def test_identity_max_ttl_defaults_to_a_day() -> None:
    assert OIDC.config().max_ttl == DAY
    assert SPIRE.config().max_ttl == DAY
