"""Baselines behind the shared interface: shapes, save/load, determinism, hand-checked toys, beating popularity.

One small generated log (300 users) is featurized once per module; every model is fitted on it with a tiny
budget (seconds on 2 CPU cores).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from drlrec.config import (
    TAOBAO_WINDOW_START,
    BaselinesConfig,
    FeaturizeConfig,
    Params,
    SynthConfig,
    TrainConfig,
)
from drlrec.models.base import FIRST_REAL_ITEM, StateBatch, TrainingData, item_category_map
from drlrec.models.factory import MODELS, build_model, load_model
from drlrec.models.gru4rec import GRU4Rec
from drlrec.models.item_knn import ItemKNN, top_per_row
from drlrec.models.popularity import Popularity, RecentPopularity
from drlrec.models.tabular_q import TabularQ, category_buckets, q_learning
from drlrec.rl.logged import state_batch
from drlrec.train import validation_evaluator

TORCH_MODELS = ("gru4rec", "sasrec", "drr", "dqn_lstm")


def tiny_params(steps: int = 300, seed: int = 0) -> Params:
    """Params with budgets small enough for a unit test (CPU, one thread, a few hundred steps)."""
    b = BaselinesConfig(device="cpu", threads=1, eval_max_events=1000)
    loop = {"steps": steps, "batch_size": 128, "candidates": 512, "eval_every": max(steps // 3, 1), "patience": 2}
    b = dataclasses.replace(
        b,
        gru4rec=dataclasses.replace(b.gru4rec, hidden=64, **loop),
        sasrec=dataclasses.replace(b.sasrec, dim=32, lr=0.003, **loop),
        drr=dataclasses.replace(b.drr, dim=32, hidden=64, **loop),
    )
    train = TrainConfig(steps=max(steps // 10, 2), batch_size=64, candidates=256, eval_every=10**9, device="cpu", threads=1,
                        eval_max_events=500)
    return dataclasses.replace(Params(), baselines=b, train=train, base=dataclasses.replace(Params().base, seed=seed))


@pytest.fixture(scope="module")
def data() -> TrainingData:
    from drlrec.data.synth import generate
    from drlrec.features.featurize import build_transitions, featurize

    events = generate(SynthConfig(users=300, items=3000, categories=100), seed=0, progress=False).to_pandas()
    result = featurize(events, FeaturizeConfig(), TAOBAO_WINDOW_START)
    train, valid = build_transitions(result, "train"), build_transitions(result, "valid")
    n_items = result.globals.item_vocab.size
    return TrainingData(train, valid, n_items, result.globals.category_vocab.size, item_category_map([train, valid], n_items))


@pytest.fixture(scope="module")
def fitted(data: TrainingData) -> dict:
    """Every registry model fitted once on the module's data with the tiny budget."""
    params = tiny_params(steps=300)
    return {name: build_model(name, data.n_items, data.n_categories, params).fit(data) for name in MODELS}


@pytest.fixture(scope="module")
def valid_states(data: TrainingData) -> StateBatch:
    return state_batch(data.valid, np.arange(64))


def valid_metrics(model, data: TrainingData) -> dict[str, float]:
    evaluate, _ = validation_evaluator(data.valid, 2000, seed=0)
    return evaluate(model)


# ---------------------------------------------------------------------------------------------- interface


@pytest.mark.parametrize("name", list(MODELS))
def test_scores_every_item_and_never_recommends_padding(name: str, fitted: dict, valid_states: StateBatch,
                                                        data: TrainingData) -> None:
    model = fitted[name]
    scores = model.score(valid_states)
    assert scores.shape == (64, data.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    items, top = model.recommend(valid_states, k=10)
    assert items.shape == (64, 10) and (items >= FIRST_REAL_ITEM).all()
    assert (np.diff(top, axis=1) <= 0).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_save_and_load_give_identical_scores(name: str, fitted: dict, valid_states: StateBatch, tmp_path: Path) -> None:
    model = fitted[name]
    model.save(tmp_path / name)
    again = load_model(tmp_path / name)
    assert type(again) is type(model)
    np.testing.assert_array_equal(again.score(valid_states), model.score(valid_states))


@pytest.mark.parametrize("name", list(MODELS))
def test_same_seed_same_scores_other_seed_other_scores(name: str, data: TrainingData, valid_states: StateBatch) -> None:
    def run(seed: int) -> np.ndarray:
        return build_model(name, data.n_items, data.n_categories, tiny_params(steps=20, seed=seed)).fit(data).score(valid_states)

    first = run(3)
    np.testing.assert_array_equal(first, run(3))
    if name in TORCH_MODELS:
        assert not np.array_equal(first, run(4))


def test_registry_names_and_unknown_model() -> None:
    assert set(MODELS) == {"popularity", "recent_popularity", "item_knn", "gru4rec", "sasrec", "drr", "tabular_q", "dqn_lstm"}
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", 10, 3)


def test_params_carry_the_baseline_budgets() -> None:
    model = build_model("gru4rec", 50, 5, tiny_params(steps=7))
    assert model.cfg.gru4rec.steps == 7 and model.cfg.device == "cpu"


# ---------------------------------------------------------------------------------------------- behaviour


def test_learned_models_beat_popularity_on_validation(fitted: dict, data: TrainingData) -> None:
    """Measured with this budget: popularity HR@10 ~0.013; item_knn ~0.10, gru4rec ~0.08, sasrec ~0.06."""
    popularity = valid_metrics(fitted["popularity"], data)["valid/hr_at_10"]
    for name in ("item_knn", "gru4rec", "sasrec"):
        ours = valid_metrics(fitted[name], data)["valid/hr_at_10"]
        assert ours > 2 * popularity and ours > popularity + 0.02, (name, ours, popularity)


def test_popularity_is_consistent_with_its_counts(data: TrainingData, valid_states: StateBatch) -> None:
    model = Popularity(data.n_items).fit(data)
    counts = np.bincount(data.train.action_item, minlength=data.n_items).astype(np.float32)
    np.testing.assert_array_equal(model.counts, counts)
    np.testing.assert_array_equal(Popularity(data.n_items).fit(data.train.action_item).counts, counts)
    scores = model.score(valid_states)
    assert (scores == scores[:1]).all()  # the same list for everyone
    items, _ = model.recommend(valid_states, k=5)
    real = np.arange(FIRST_REAL_ITEM, data.n_items)
    expected = real[np.lexsort((real, -counts[real]))][:5]  # count desc, lower index first
    assert (items == expected).all()


def test_recent_popularity_counts_only_the_recent_window(data: TrainingData) -> None:
    cfg = BaselinesConfig()
    model = RecentPopularity(data.n_items, cfg=cfg).fit(data)
    t = data.train
    recent = t.timestamp >= t.timestamp.max() - cfg.recent_popularity.recent_days * 86400
    assert 0 < recent.sum() < t.num_transitions
    np.testing.assert_array_equal(model.counts, np.bincount(t.action_item[recent], minlength=data.n_items))
    # a hand-made log: item 2 is popular only long ago, item 3 in the last day
    day = 86400
    toy = RecentPopularity(5, cfg=cfg).fit_events(np.array([2, 2, 2, 2, 3, 3, 4]),
                                                  np.array([0, 1, 2, 3, 9 * day, 9 * day + 5, 10 * day]))
    np.testing.assert_array_equal(toy.counts, [0, 0, 0, 2, 1])


def test_item_knn_ranks_the_item_that_always_follows_first() -> None:
    # sessions of a toy log: item 5 always co-occurs with item 2; items 3 and 4 are more popular overall
    sessions = [[2, 5], [2, 5], [3, 4, 3, 4], [2, 5, 3], [3, 4], [4, 6], [2, 5]]
    items = np.concatenate([np.array(s) for s in sessions])
    key = np.repeat(np.arange(len(sessions)), [len(s) for s in sessions])
    cfg = dataclasses.replace(BaselinesConfig(), item_knn=dataclasses.replace(BaselinesConfig().item_knn, self_weight=0.0))
    model = ItemKNN(8, cfg=cfg).fit_events(items, key)
    state = StateBatch(np.array([[0, 0, 3, 2]]), np.zeros((1, 4), np.int64), np.ones((1, 4), np.int64),
                       np.zeros((1, 4, 20), np.float32), np.zeros((1, 10), np.float32))
    top, _ = model.recommend(state, k=3)
    assert top[0, 0] == 5
    sim = model.similarity.toarray()
    assert sim[2, 5] == pytest.approx(4 / np.sqrt(4 * 4))  # 4 sessions at distance 1, 4 events each
    assert sim[2, 5] == sim[5, 2] and sim[2, 2] == 0


def test_item_knn_keeps_the_top_neighbours_per_row() -> None:
    matrix = sp.csr_matrix(np.array([[0, 3, 1, 2], [5, 0, 5, 1], [0, 0, 0, 0], [1, 1, 1, 0]], dtype=np.float32))
    kept = top_per_row(matrix, 2).toarray()
    np.testing.assert_array_equal(kept, [[0, 3, 0, 2], [5, 0, 5, 0], [0, 0, 0, 0], [1, 1, 0, 0]])


def test_tabular_q_matches_a_hand_computed_update() -> None:
    # states 0 and 1, items 2 and 3: (s0, a2, r1 -> s1), (s1, a3, r2, done), (s0, a3, r0 -> s1)
    q = q_learning(
        state=np.array([0, 1, 0]), action=np.array([2, 3, 3]), reward=np.array([1.0, 2.0, 0.0]),
        next_state=np.array([1, 0, 1]), done=np.array([False, True, False]),
        n_states=2, n_items=4, gamma=0.5, alpha=0.5, sweeps=2,
    ).toarray()
    # sweep 1: V = 0 -> Q(0,2) = 0.5, Q(1,3) = 1, Q(0,3) = 0
    # sweep 2: V = [0.5, 1] -> Q(0,2) = 0.5 + 0.5 (1 + 0.5 - 0.5) = 1, Q(1,3) = 1 + 0.5 (2 - 1) = 1.5,
    #          Q(0,3) = 0 + 0.5 (0 + 0.5 * 1 - 0) = 0.25
    np.testing.assert_allclose(q, [[0, 0, 1.0, 0.25], [0, 0, 0, 1.5]])


def test_tabular_q_state_buckets_and_scores(fitted: dict, data: TrainingData, valid_states: StateBatch) -> None:
    np.testing.assert_array_equal(category_buckets(np.array([0, 9, 5, 1, 3, 0]), 2), [0, 0, 2, 1, 2, 0])
    model: TabularQ = fitted["tabular_q"]
    state = model.state_id(valid_states.category_seq[:, -1], valid_states.behavior_seq[:, -1])
    np.testing.assert_array_equal(model.score(valid_states), model.q[state].toarray())
    assert model.q.nnz > 0 and model.q.data.min() >= 0


def test_gru4rec_scores_cold_items_by_category(data: TrainingData, valid_states: StateBatch) -> None:
    """Four items never seen in train (two per category): finite scores, equal within a category, different across."""
    extra_categories = np.array([3, 3, 4, 4], dtype=np.int32)
    n_items = data.n_items + 4
    cold = np.arange(data.n_items, n_items)
    extended = data._replace(n_items=n_items, item_category=np.concatenate([data.item_category, extra_categories]))
    model = GRU4Rec(n_items, data.n_categories, tiny_params(steps=60).baselines, seed=0).fit(extended)
    scores = model.score(valid_states)[:, cold]
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores[:, 0], scores[:, 1], rtol=1e-6)
    np.testing.assert_allclose(scores[:, 2], scores[:, 3], rtol=1e-6)
    assert np.abs(scores[:, 0] - scores[:, 2]).max() > 1e-4


def test_drr_simulator_hook_runs_ddpg_updates(data: TrainingData) -> None:
    """fit_simulated against a toy simulator: the reward is 1 when the recommended item is even."""

    class Toy:
        def __init__(self) -> None:
            self.states = state_batch(data.train, np.arange(16))

        def reset(self) -> StateBatch:
            return self.states

        def step(self, items: np.ndarray):
            return self.states, (items % 2 == 0).astype(np.float32), np.zeros(len(items), bool)

    model = build_model("drr", data.n_items, data.n_categories, tiny_params(steps=10))
    log = model.fit_simulated(Toy(), episodes=2, max_steps=4, warmup=32)
    assert log.steps_done == 7 and np.isfinite(log.losses).all()
