"""The plain-dict LRU used by per-session caches, and the strings verified claims share."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

from mcpgov import ConfigurationError
from mcpgov._lru import LRU
from mcpgov._shared import shared_claims, shared_text
from mcpgov.credentials._verify import _SeenCredentials


def test_a_full_lru_drops_the_least_recently_used() -> None:
    cache: LRU[str, int] = LRU(2)
    cache["a"] = 1
    cache["b"] = 2
    assert cache.get("a") == 1  # "a" is now the most recent
    cache["c"] = 3
    assert "b" not in cache
    assert cache.get("a") == 1
    assert cache.get("c") == 3
    assert len(cache) == 2


def test_replacing_an_item_does_not_evict_another() -> None:
    cache: LRU[str, int] = LRU(2)
    cache["a"] = 1
    cache["b"] = 2
    cache["a"] = 10
    assert (cache.get("a"), cache.get("b")) == (10, 2)


def test_an_lru_can_be_emptied_while_iterated() -> None:
    cache: LRU[tuple[str, int], int] = LRU(8)
    for i in range(5):
        cache[("t", i)] = i
    for key in cache:
        if key[1] % 2:
            cache.pop(key)
    assert sorted(k[1] for k in cache) == [0, 2, 4]
    assert cache.pop(("t", 1)) is None
    cache.clear()
    assert len(cache) == 0


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_an_lru_needs_a_positive_size(size: int) -> None:
    with pytest.raises(ConfigurationError):
        LRU(size)


def test_claims_share_their_recurring_strings_but_not_the_token_id() -> None:
    a = shared_claims(
        {"iss": "".join(["https://", "id.test"]), "jti": "".join(["x", "1"]), "aud": ["".join(["a", "b"])]}
    )
    b = shared_claims(
        {"iss": "".join(["https://", "id.test"]), "jti": "".join(["x", "1"]), "aud": ["".join(["a", "b"])]}
    )
    assert a == b
    assert a["iss"] is b["iss"]
    assert a["aud"][0] is b["aud"][0]
    assert next(iter(a)) is next(iter(b))  # claim names too
    assert a["jti"] is not b["jti"]
    long = "x" * 1000
    assert shared_text(long) is long


def _claims(jti: str, exp: float) -> Any:
    return SimpleNamespace(jti=jti, expires_at=exp)


def test_audited_credential_ids_are_remembered_until_they_expire_and_stay_bounded() -> None:
    now = [1000.0]
    seen = _SeenCredentials(2048, lambda: now[0])
    assert seen.first(_claims("a", 1100.0))
    assert not seen.first(_claims("a", 1100.0))
    for i in range(1500):  # expired by the time the dict is pruned
        seen.first(_claims(f"old{i}", 1050.0))
    now[0] = 1060.0
    for i in range(600):
        seen.first(_claims(f"new{i}", 1200.0))
    assert len(seen) < 1000  # the expired ones went at the pruning
    assert not seen.first(_claims("a", 1100.0))  # still live: still remembered
    for i in range(10_000):  # all live: never more than the bound
        seen.first(_claims(f"live{i}", 2000.0))
        assert len(seen) <= 2048


def test_audited_credential_ids_keep_the_table_their_bound_needs() -> None:
    """Ids that keep coming and expiring (a server seen by ever new agents) churn the dict: its
    table stays the size that ``maxsize`` live ids need, instead of doubling once the holes left
    by the expired ones are refilled."""
    maxsize = 4096
    bound = sys.getsizeof({f"jti-{i:022d}": 0.0 for i in range(maxsize)})
    now = [0.0]
    seen = _SeenCredentials(maxsize, lambda: now[0])
    for i in range(40_000):
        now[0] = i / 10  # ten a second, each live for 300 s: 3,000 live at a time
        assert seen.first(_claims(f"jti-{i:022d}", now[0] + 300))
        assert sys.getsizeof(seen._expiry) <= bound
    assert 2_000 < len(seen) <= maxsize
    assert not seen.first(_claims("jti-0000000000000000039999", 9e9))  # the latest are remembered
