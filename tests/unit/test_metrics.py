"""Ranking metrics against hand-computed values, including ties and k beyond the catalogue."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drlrec.evaluate import UNRANKABLE, ranking_metrics, target_ranks
from drlrec.models.base import top_k


def test_ranks_by_hand() -> None:
    # items 0, 1 are padding/unknown and never ranked
    scores = np.array(
        [
            [9.0, 9.0, 0.5, 0.9, 0.1, 0.7],  # target 5 (0.7): only item 3 (0.9) is above -> rank 2
            [0.0, 0.0, 0.3, 0.3, 0.3, 0.1],  # target 4 ties with 2 and 3 (lower index first) -> rank 3
            [0.0, 0.0, 0.3, 0.3, 0.3, 0.1],  # target 2 wins the tie -> rank 1
            [0.0, 0.0, 0.3, 0.3, 0.3, 0.1],  # target 1 is the unknown item -> unrankable
        ]
    )
    ranks = target_ranks(scores, np.array([5, 4, 2, 1]))
    assert ranks.tolist() == [2, 3, 1, UNRANKABLE]


def test_rank_agrees_with_top_k() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, (50, 12)).astype(np.float32)  # many ties
    targets = rng.integers(2, 12, 50)
    ranks = target_ranks(scores, targets)
    for k in (1, 3, 5, 10, 20):
        items, _ = top_k(scores, k)
        in_list = (items == targets[:, None]).any(axis=1)
        assert np.array_equal(in_list, ranks <= k), k


def test_exclusion_mask_removes_items_and_unranks_excluded_targets() -> None:
    scores = np.array([[0, 0, 5.0, 4.0, 3.0], [0, 0, 5.0, 4.0, 3.0]])
    exclude = np.array([[False, False, True, False, False], [False, False, False, True, False]])
    ranks = target_ranks(scores, np.array([4, 3]), exclude)
    assert ranks.tolist() == [2, UNRANKABLE]


def test_metrics_by_hand() -> None:
    ranks = np.array([1, 2, 3, 11, UNRANKABLE])
    m = ranking_metrics(ranks, ks=(1, 2, 10, 50))
    assert m["hr_at_1"] == pytest.approx(1 / 5)
    assert m["hr_at_2"] == pytest.approx(2 / 5)
    assert m["hr_at_10"] == pytest.approx(3 / 5)
    assert m["hr_at_50"] == pytest.approx(4 / 5)
    assert m["ndcg_at_2"] == pytest.approx((1 + 1 / math.log2(3)) / 5)
    assert m["ndcg_at_10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(4)) / 5)
    assert m["ndcg_at_50"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(12)) / 5)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 11 + 0) / 5, abs=1e-12)


def test_k_larger_than_the_catalogue() -> None:
    scores = np.array([[0, 0, 1.0, 2.0, 3.0]])  # 3 recommendable items
    ranks = target_ranks(scores, np.array([2]))
    assert ranks.tolist() == [3]
    m = ranking_metrics(ranks, ks=(50,))
    assert m["hr_at_50"] == 1.0 and m["ndcg_at_50"] == pytest.approx(0.5)
    items, _ = top_k(scores, 50)
    assert items.tolist() == [[4, 3, 2]]
