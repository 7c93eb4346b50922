"""User-level (cluster) bootstrap, paired model differences and the target-type breakdown, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from drlrec.evaluate import (
    TARGET_TYPES,
    UNRANKABLE,
    Evaluation,
    EventRanks,
    FirstSeen,
    Interval,
    bootstrap_means,
    excludes_zero,
    paired_comparison,
    paired_difference,
    paired_table,
    per_event_values,
    target_types,
    type_breakdown,
    type_table,
    user_bootstrap_means,
)
from drlrec.features.transitions import Transitions

# ------------------------------------------------------------------------------------------ user bootstrap


def test_user_bootstrap_is_wider_when_a_users_events_move_together() -> None:
    rng = np.random.default_rng(0)
    per_user = rng.integers(0, 2, size=40).astype(np.float64)  # each user hits always or never
    users = np.repeat(np.arange(40) * 11 + 5, 25)  # 25 events per user, ids not 0..U-1
    values = np.repeat(per_user, 25)
    [events] = bootstrap_means(values, n_boot=2000, seed=1)
    [clustered] = user_bootstrap_means(values, users, n_boot=2000, seed=1)
    assert clustered.value == events.value == pytest.approx(values.mean())
    # 25 perfectly correlated events per user carry the information of one: the CI is ~sqrt(25) = 5x wider
    assert clustered.high - clustered.low > 3 * (events.high - events.low)
    assert clustered.low <= clustered.value <= clustered.high


def test_user_bootstrap_point_is_the_event_mean_and_one_event_per_user_is_the_event_bootstrap() -> None:
    values = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.5], [0.0, 0.0]])
    users = np.array([3, 3, 3, 8])  # user 3: three events, user 8: one
    ivs = user_bootstrap_means(values, users, n_boot=300, seed=2)
    assert [iv.value for iv in ivs] == pytest.approx(values.mean(axis=0).tolist())  # not the mean of user means
    x = np.random.default_rng(4).random((300, 3))
    singles = user_bootstrap_means(x, np.arange(300), n_boot=400, seed=9)
    events = bootstrap_means(x, n_boot=400, seed=9)  # the same draws when every cluster is one event
    assert np.array(singles) == pytest.approx(np.array(events), rel=1e-12)
    # seeded, chunking gives the same result
    assert user_bootstrap_means(x, np.arange(300) // 3, 200, seed=1) == user_bootstrap_means(
        x, np.arange(300) // 3, 200, seed=1, max_cells=100 * 7)
    [none] = user_bootstrap_means(np.zeros(0), np.zeros(0), n_boot=10)
    assert np.isnan(none.value)
    with pytest.raises(ValueError, match="one user per event"):
        user_bootstrap_means(np.zeros(3), np.zeros(2), n_boot=10)


# ------------------------------------------------------------------------------------------ paired differences


def test_paired_difference_excludes_zero_only_when_one_model_is_better() -> None:
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(60), 5)
    ranks_b = rng.integers(1, 40, size=len(users))
    ranks_a = np.maximum(ranks_b - 3, 1)  # A ranks every target at least as high as B, strictly where B > 1
    _, va = per_event_values(ranks_a, (10,))
    _, vb = per_event_values(ranks_b, (10,))
    better = paired_difference(va, vb, users, n_boot=1000, seed=0)
    hr, ndcg, rr = better
    assert hr.value == pytest.approx(va[:, 0].mean() - vb[:, 0].mean())
    assert all(excludes_zero(iv) and iv.low > 0 for iv in better)
    same = paired_difference(va, va, users, n_boot=1000, seed=0)
    assert all(iv == Interval(0.0, 0.0, 0.0) and not excludes_zero(iv) for iv in same)
    with pytest.raises(ValueError, match="not the same events"):
        paired_difference(va, vb[:-1], users, n_boot=10)


def test_pairing_finds_a_small_consistent_gain_that_separate_intervals_miss() -> None:
    rng = np.random.default_rng(5)
    users = np.repeat(np.arange(50), 8)
    base = np.repeat(rng.random(50), 8) + 0.05 * rng.standard_normal(len(users))  # large between-user spread
    a, b = base + 0.02, base  # A is better by 0.02 on every event
    [ia], [ib] = user_bootstrap_means(a, users, 1000, seed=0), user_bootstrap_means(b, users, 1000, seed=0)
    assert ia.low < ib.high  # the separate CIs overlap
    [diff] = paired_difference(a, b, users, n_boot=1000, seed=0)
    assert diff.value == pytest.approx(0.02) and diff.low > 0


def _evaluation(name: str, ranks: np.ndarray, users: np.ndarray, index: np.ndarray | None = None) -> Evaluation:
    index = np.arange(len(ranks)) if index is None else index
    types = np.zeros(len(ranks), np.int8)
    _, values = per_event_values(ranks, (10,))
    groups = {g: {"hr_at_10": Interval(values[:, 0].mean(), 0.0, 1.0), "ndcg_at_10": Interval(values[:, 1].mean(), 0.0, 1.0)}
              for g in ("next_item", "next_purchase")}
    events = {g: EventRanks(index, users, ranks, types) for g in ("next_item", "next_purchase")}
    return Evaluation(name, groups, {}, 0.0, events)


def test_paired_comparison_and_table() -> None:
    users = np.repeat(np.arange(30), 4)
    ref = _evaluation("ref", np.full(120, 50), users)
    good = _evaluation("good", np.ones(120, np.int64), users)
    paired = {"good": paired_comparison(good, ref, n_boot=200)}
    assert paired["good"]["next_item/hr_at_10"] == Interval(1.0, 1.0, 1.0)
    assert paired["good"]["next_purchase/ndcg_at_10"].value == pytest.approx(1.0)
    table = paired_table([ref, good], "ref", paired, {"ref": 0.01, "good": 0.2}, notes={"good": "head q, served"})
    header = table.splitlines()[0]
    for column in ("valid NDCG@10", "next item NDCG@10", "Δ next item NDCG@10 vs ref", "Δ next item HR@10 vs ref",
                   "Δ next purchase NDCG@10 vs ref", "Δ next purchase HR@10 vs ref"):
        assert column in header
    good_row = next(line for line in table.splitlines() if line.startswith("| good (head q, served) |"))
    assert "+1.0000 [+1.0000, +1.0000] *" in good_row and "| 0.2000 |" in good_row
    assert "reference" in next(line for line in table.splitlines() if line.startswith("| ref |"))
    other = _evaluation("other", np.ones(120, np.int64), users, index=np.arange(120) + 1)
    with pytest.raises(ValueError, match="same next_item events"):
        paired_comparison(other, ref, n_boot=10)


# ------------------------------------------------------------------------------------------ target types


def tiny_split(rows: list[tuple[int, int, int, list[int]]], seq_len: int = 2) -> Transitions:
    """A Transitions of hand-written (user, time, action item, state items oldest first) rows: each state item
    and each action gets its own event-table row; row 0 is padding."""
    items, state_start, action_rows = [0], [], []
    for _, _, item, state in rows:
        state_start.append(len(items))  # the state's items sit right before the action
        items.extend(state)
        items.append(item)
        action_rows.append(len(items) - 1)
    n_events, n = len(items), len(rows)
    return Transitions(
        item_idx=np.array(items, np.int32),
        category_idx=np.zeros(n_events, np.int32),
        behavior_token=np.ones(n_events, np.int8) * (np.arange(n_events) > 0),
        step_features=np.zeros((n_events, 20), np.float32),
        row=np.array(action_rows, np.int32),
        state_start=np.array(state_start, np.int32),
        state_len=np.asarray(seq_len, np.int32),
        profile=np.zeros((n, 10), np.float32),
        reward_purchase=np.zeros(n, np.float32),
        reward_business=np.zeros(n, np.float32),
        done=np.zeros(n, bool),
        session_end=np.zeros(n, bool),
        user_id=np.array([r[0] for r in rows], np.int64),
        timestamp=np.array([r[1] for r in rows], np.int64),
        session_index=np.zeros(n, np.int32),
        session_position=np.zeros(n, np.int32),
        terminal_row=np.full(n, -1, np.int32),
        terminal_profile=np.zeros((0, 10), np.float32),
    )


def test_target_types_by_hand() -> None:
    train = tiny_split([(7, 100, 5, []), (9, 100, 6, []), (7, 110, 1, [5])])
    valid = tiny_split([(9, 500, 8, [6])])
    test = tiny_split([
        (7, 1000, 4, [3, 4]),  # in the state
        (7, 1010, 5, [4, 4]),  # user 7 viewed 5 in train, not in the state
        (7, 1020, 8, [4, 5]),  # known, user 7 never touched 8 (user 9 did)
        (7, 1030, 1, [5, 8]),  # unknown to the vocabulary
        (9, 1000, 7, [6, 8]),  # known_new: user 9 touches 7 here for the first time
        (9, 1000, 7, [8, 7]),  # same time as the first touch, but 7 is in the state
        (9, 1000, 7, [6, 8]),  # same time as the first touch, not in the state: not strictly before
        (9, 1005, 7, [6, 8]),  # touched at 1000 in this split: earlier history
        (9, 1006, 8, [3, 2]),  # touched in valid at 500
        (9, 1007, 0, [3, 2]),  # padding target: cold
    ])
    first_seen = FirstSeen([train, valid, test])
    codes = target_types(test, np.arange(test.num_transitions), first_seen)
    assert [TARGET_TYPES[c] for c in codes] == [
        "in_state", "in_history", "known_new", "cold", "known_new", "in_state", "known_new", "in_history",
        "in_history", "cold",
    ]
    # a subset keeps each event's own label; users outside FirstSeen's users have no history
    assert target_types(test, np.array([7, 1]), first_seen).tolist() == [codes[7], codes[1]]
    only_9 = FirstSeen([train, valid, test], users=np.array([9]))
    assert TARGET_TYPES[target_types(test, np.array([1]), only_9)[0]] == "known_new"


def test_type_breakdown_splits_the_overall_metric() -> None:
    ranks = np.array([1, 3, 20, UNRANKABLE, 2, 15, UNRANKABLE, 1])
    types = np.array([0, 0, 1, 3, 2, 1, 3, 2], np.int8)
    users = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    out = type_breakdown(ranks, types, users, n_boot=100, ci=0.95, seed=0)
    assert [out[f"{t}/share"].value for t in TARGET_TYPES] == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert out["reachable"].value == pytest.approx(0.75)
    assert out["in_state/hr_at_10"].value == 1.0 and out["in_history/hr_at_10"].value == 0.0
    assert out["cold/hr_at_10"].value == 0.0
    assert out["in_state/ndcg_at_10"].value == pytest.approx((1 + 1 / np.log2(4)) / 2)
    _, values = per_event_values(ranks, (10,))
    total = sum(out[f"{t}/share"].value * out[f"{t}/hr_at_10"].value for t in TARGET_TYPES)
    assert total == pytest.approx(values[:, 0].mean())
    ev = Evaluation("m", {"next_item_by_type": out}, {}, 0.0, {"next_item": EventRanks(np.arange(8), users, ranks, types)})
    table = type_table([ev], "next_item")
    assert "in_state NDCG@10" in table and "cold HR@10" in table
    assert "in_state 25.0%" in table and "(2)" in table and "Reachable ceiling" in table and "75.0%" in table
