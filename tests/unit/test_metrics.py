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


def test_top_k_equals_a_full_sort_with_ties_across_the_cut() -> None:
    """top_k against a reference that sorts every row (score descending, then item ascending): integer
    scores put runs of ties inside the list, across its k-th place and after it; rows with every item or
    all but a few excluded, and k up to the catalogue's size."""
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, (200, 9)).astype(np.float32)
    exclude = np.zeros(scores.shape, dtype=bool)
    exclude[:5, 2:] = True  # nothing rankable
    exclude[5:10, 2:6] = True  # fewer rankable items than k
    for k in (1, 2, 3, 5, 7):
        items, top = top_k(scores, k, exclude)
        for row in range(len(scores)):
            cols = np.flatnonzero(~exclude[row, 2:]) + 2
            order = cols[np.lexsort((cols, -scores[row, cols]))][:k]
            want = np.full(k, -1)
            want[: len(order)] = order
            assert items[row].tolist() == want.tolist(), (k, row)
            assert top[row, : len(order)].tolist() == scores[row, order].tolist(), (k, row)
            assert np.isneginf(top[row, len(order):]).all(), (k, row)


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


@pytest.mark.parametrize("item_block", [0, 1, 5, 16, 64])
@pytest.mark.parametrize("first_scores", ["exact", "none", "rounding", "wrong"])
@pytest.mark.parametrize("near_cap", [4096, 2])
def test_block_ranking_equals_whole_catalogue_ranking(item_block: int, first_scores: str, near_cap: int,
                                                      monkeypatch) -> None:
    """Ranks and top-k lists from blocks of items equal those from the whole score matrix: ties (integer
    scores), NaN, excluded items, unknown and out-of-range targets, k beyond a block; whether the scorer
    gives the targets' scores up front exactly (no margin), not at all, up to rounding, or wrongly (past the
    margin); and with rows past the cap on kept near scores (near_cap 2: counted again)."""
    import drlrec.evaluate.ranking
    from drlrec.evaluate import exclusion_pairs, rank_blocks
    from drlrec.models.base import FullScores

    monkeypatch.setattr(drlrec.evaluate.ranking, "NEAR_CAP", near_cap)

    class Perturbed(FullScores):
        exact_targets = first_scores == "exact"

        def target_scores(self, items):
            exact = super().target_scores(items)
            if first_scores == "none":
                return None
            shift = {"exact": 0.0, "rounding": 1e-6, "wrong": 0.5}[first_scores]
            return exact + shift * np.where(np.arange(len(items)) % 2, 1, -1)

    rng = np.random.default_rng(item_block)
    scores = rng.integers(0, 4, (40, 61)).astype(np.float32)
    scores[3, 10] = np.nan
    targets = rng.integers(0, 61, 40)
    targets[:3] = [1, 0, 70]  # unknown, padding, outside the catalogue
    exclude = rng.random((40, 61)) < 0.1
    ranks, lists = rank_blocks(Perturbed(scores), targets, 12, exclusion_pairs(exclude), item_block)
    np.testing.assert_array_equal(ranks, target_ranks(scores, targets, exclude))
    np.testing.assert_array_equal(lists, top_k(scores, 12, exclude)[0])
    assert (ranks[:3] == UNRANKABLE).all() and (ranks[3:] < UNRANKABLE).any()


def test_popularity_ranks_block_by_block() -> None:
    from drlrec.evaluate import rank_events
    from drlrec.models.base import StateBatch
    from drlrec.models.popularity import Popularity

    rng = np.random.default_rng(3)
    model = Popularity(50).fit(rng.integers(2, 50, 400))
    states = StateBatch(np.zeros((9, 3), np.int64), np.zeros((9, 3), np.int64), np.zeros((9, 3), np.int64),
                        np.zeros((9, 3, 20), np.float32), np.zeros((9, 10), np.float32))
    targets = rng.integers(0, 50, 9)
    whole = rank_events(model, states, targets, batch_size=4, item_block=0).ranks
    np.testing.assert_array_equal(rank_events(model, states, targets, batch_size=4, item_block=6).ranks, whole)
    np.testing.assert_array_equal(whole, target_ranks(model.score(states), targets))


def test_recent_items_ranks_block_by_block_with_the_same_scores() -> None:
    """RecentItems hands out [B, block] dense scores from its sparse state matrix (no [B, n_items]): the blocks,
    the target scores, the ranks and the lists equal the whole-catalogue ones exactly."""
    from drlrec.config import BaselinesConfig, RecentItemsConfig
    from drlrec.evaluate import rank_events
    from drlrec.models.base import StateBatch
    from drlrec.models.recent_items import RecentItems

    rng = np.random.default_rng(5)
    cfg = BaselinesConfig(recent_items=RecentItemsConfig(decay=0.9, popularity_prior=0.5))
    model = RecentItems(60, cfg=cfg).fit_items(rng.integers(2, 60, 500))
    seq = rng.integers(0, 60, (11, 6))
    seq[:2, :4] = 0  # padded slots
    behavior = rng.integers(1, 5, (11, 6))
    states = StateBatch(seq, np.zeros_like(seq), behavior, np.zeros((11, 6, 20), np.float32), np.zeros((11, 10), np.float32))
    whole = model.score(states)
    blocks = model.score_blocks(states)
    np.testing.assert_array_equal(np.concatenate([blocks.block(lo, min(lo + 7, 60)).numpy() for lo in range(0, 60, 7)], 1), whole)
    targets = np.where(rng.random(11) < 0.5, seq[:, -1], rng.integers(2, 60, 11))  # half of them in the state
    np.testing.assert_array_equal(blocks.target_scores(targets), whole[np.arange(11), targets])
    expected = target_ranks(whole, targets)
    assert (expected < expected.max()).any() and len(set(expected.tolist())) > 3  # not a degenerate case
    got = rank_events(model, states, targets, batch_size=4, item_block=7, list_k=5)
    np.testing.assert_array_equal(got.ranks, expected)
    np.testing.assert_array_equal(got.lists, top_k(whole, 5)[0])
