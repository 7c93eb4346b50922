"""The serving pieces that need no model or server: A/B assignment and statistics, the circuit breaker,
the LRU cache, the interaction log's torn-line repair, the vectorized per-user state table. (Moved from
tests/api/test_api_ab.py, whose other tests need the API's trained pipeline.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def test_assignment_is_deterministic_and_follows_the_split():
    from drlrec.config import ABConfig, VariantConfig
    from drlrec.serving.abtest import assign_variant

    cfg = ABConfig(variants=(VariantConfig("a", "champion", 0.2), VariantConfig("b", "challenger", 0.8)), control="a")
    first = [assign_variant(u, cfg).name for u in range(20000)]
    assert first == [assign_variant(u, cfg).name for u in range(20000)]
    assert abs(first.count("a") / 20000 - 0.2) < 0.015
    other = ABConfig(salt="another", variants=cfg.variants, control="a")
    assert first != [assign_variant(u, other).name for u in range(20000)]


def test_report_statistics_on_known_logs():
    from drlrec.config import ABConfig, VariantConfig
    from drlrec.schema import BEHAVIOR_CODE
    from drlrec.serving.abtest import ab_report, two_proportion_z, wilson_interval

    z, p = two_proportion_z(100, 1000, 150, 1000)
    assert z == pytest.approx(0.05 / np.sqrt(0.125 * 0.875 * 0.002)) and p == pytest.approx(0.000723, abs=2e-6)
    lo, hi = wilson_interval(10, 100, 0.95)
    assert (lo, hi) == pytest.approx((0.0552, 0.1744), abs=1e-3)
    cfg = ABConfig(variants=(VariantConfig("a", "champion", 0.5), VariantConfig("b", "champion", 0.5)), control="a")
    # 300 users of a, 100 users of b: a 50/50 split this uneven is a sample-ratio mismatch
    exposures = pd.DataFrame({
        "served_at": 100.5, "user_id": np.arange(400), "variant": ["a"] * 300 + ["b"] * 100, "alias": "champion",
        "model_version": "1", "fallback": "", "cached": 0, "items": "7 8 9",
    })
    clicks = pd.DataFrame({"user_id": [0, 1, 300, 301, 302, 5], "item_id": [8, 9, 7, 7, 99, 8],
                           "category_id": 1,  # typed as drlrec.data.logs.read_interactions returns them
                           "behavior": [BEHAVIOR_CODE[b] for b in ("pv", "buy", "pv", "buy", "pv", "pv")],
                           "timestamp": [101, 100, 100, 200, 100, 99]})
    report = ab_report(exposures, clicks, cfg)
    a, b = report["variants"]["a"], report["variants"]["b"]
    # user 5 acted before the list was shown and user 302 on an item not shown: neither counts
    assert (a["clicked"], a["converted"], b["clicked"], b["converted"]) == (2, 1, 2, 1)
    assert report["srm"]["mismatch"] is True and report["srm"]["observed"] == [300, 100]


def test_circuit_breaker_opens_and_recovers():
    from drlrec.serving.cache import CircuitBreaker

    now = [0.0]
    breaker = CircuitBreaker(failures=2, reset_seconds=5, clock=lambda: now[0])
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 5.0
    assert breaker.allow() and not breaker.allow()  # one trial call only
    breaker.failure()
    assert breaker.state == "open"
    now[0] = 10.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_lru_evicts_and_expires():
    from drlrec.serving.cache import LRUCache

    lru = LRUCache(2)
    lru.set(1, "f", "one", expires_at=10)
    lru.set(2, "f", "two", expires_at=10)
    assert lru.get(1, "f", now=0) == "one"
    lru.set(3, "f", "three", expires_at=10)  # user 2 is the least recently used
    assert lru.get(2, "f", now=0) is None and lru.get(1, "f", now=0) == "one"
    assert lru.get(1, "f", now=11) is None
    lru.invalidate(3)
    assert lru.get(3, "f", now=0) is None


def test_interaction_log_cuts_a_torn_last_line(tmp_path):
    from drlrec.data.logs import InteractionLog, read_interactions

    path = tmp_path / "log.csv"
    path.write_bytes(b"1,2,3,pv,100\n4,5,6,bu")
    log = InteractionLog(path)
    assert log.repaired_bytes == len(b"4,5,6,bu")
    log.append(7, 8, 9, "buy", 200)
    log.close()
    assert path.read_text() == "1,2,3,pv,100\n7,8,9,buy,200\n"
    assert read_interactions(path)["item_id"].tolist() == [2, 8]


def test_last_events_per_user_is_vectorized_and_right():
    from drlrec.serving.state import last_events_per_user

    user = np.array([5, 5, 5, 2, 2, 9])
    item = np.array([1, 2, 3, 4, 5, 6])
    base = last_events_per_user(user, item, item * 10, np.zeros(6), np.arange(6), keep=2)
    assert base.users.tolist() == [2, 5, 9] and base.total.tolist() == [2, 3, 1]
    assert base.item_id.tolist() == [4, 5, 2, 3, 6] and base.offsets.tolist() == [0, 2, 4, 5]
