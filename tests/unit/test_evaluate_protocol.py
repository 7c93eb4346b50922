"""The evaluation protocol: per-user set metrics, list metrics, bootstrap CIs and prior-buy masks against
hand-computed values; interface consistency on a featurized generated log."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from drlrec.config import EvaluateConfig, load_params
from drlrec.evaluate import (
    PriorBuys,
    bootstrap_means,
    coverage_interval,
    evaluate_model,
    list_metrics,
    markdown_table,
    per_event_values,
    ranking_metrics,
    set_metrics,
)
from drlrec.models.base import Recommender, StateBatch


def test_set_metrics_by_hand() -> None:
    lists = np.array([[5, 3, 9], [4, 2, 8]])
    relevant = [np.array([3, 7]), np.array([4, 8, 2])]
    names, v = set_metrics(lists, relevant, ks=(1, 2, 3, 5))
    m = dict(zip(names, v.T, strict=True))
    # user 0: hits at position 2 only; user 1: every position relevant
    assert m["precision_at_1"].tolist() == [0.0, 1.0]
    assert m["precision_at_2"].tolist() == [0.5, 1.0]
    assert m["recall_at_2"].tolist() == pytest.approx([0.5, 2 / 3])
    assert m["f1_at_2"].tolist() == pytest.approx([0.5, 2 * 1 * (2 / 3) / (1 + 2 / 3)])
    assert m["map_at_2"].tolist() == pytest.approx([(1 / 2) / 2, (1 + 1) / 2])
    assert m["map_at_3"].tolist() == pytest.approx([(1 / 2) / 2, 3 / 3])
    # k beyond the list length: precision divides by k, the hits stop at the list's end
    assert m["precision_at_5"].tolist() == pytest.approx([1 / 5, 3 / 5])
    assert m["recall_at_5"].tolist() == pytest.approx([0.5, 1.0])
    assert m["map_at_5"].tolist() == pytest.approx([(1 / 2) / 2, 3 / 3])


def test_set_metrics_ignore_empty_slots() -> None:
    names, v = set_metrics(np.array([[6, -1, -1]]), [np.array([6, 7])], ks=(3,))
    m = dict(zip(names, v[0], strict=True))
    assert m["precision_at_3"] == pytest.approx(1 / 3) and m["recall_at_3"] == pytest.approx(0.5)


def test_per_event_values_average_to_ranking_metrics() -> None:
    ranks = np.array([1, 2, 3, 11, 60, np.iinfo(np.int64).max])
    names, values = per_event_values(ranks, (5, 10, 20, 50))
    assert dict(zip(names, values.mean(axis=0), strict=True)) == pytest.approx(ranking_metrics(ranks))


def test_bootstrap_means() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((400, 2))
    a = bootstrap_means(x, n_boot=500, seed=3)
    b = bootstrap_means(x, n_boot=500, seed=3)
    assert a == b  # seeded
    for iv, col in zip(a, x.T, strict=True):
        assert iv.value == pytest.approx(col.mean())
        assert iv.low < iv.value < iv.high
        se = col.std() / math.sqrt(len(col))
        assert iv.high - iv.low == pytest.approx(2 * 1.96 * se, rel=0.25)  # ~ the normal-theory width
    [const] = bootstrap_means(np.full(50, 0.25), n_boot=100)
    assert (const.value, const.low, const.high) == (0.25, 0.25, 0.25)
    [none] = bootstrap_means(np.zeros(0), n_boot=100)
    assert math.isnan(none.value)
    # chunking over resamples gives the same result as one block
    small = bootstrap_means(x, n_boot=300, seed=5, max_cells=400 * 7)
    big = bootstrap_means(x, n_boot=300, seed=5)
    assert [iv.value for iv in small] == [iv.value for iv in big]


def test_list_metrics_by_hand() -> None:
    item_category = np.array([0, 0, 1, 1, 2, 3])
    counts = np.array([0, 0, 6, 2, 0, 0])  # item 2 popular, items 4 and 5 never seen in train
    diversity, novelty = list_metrics(np.array([[2, 3, 4], [2, 2, -1]]), item_category, counts)
    assert diversity.tolist() == pytest.approx([4 / 6, 0.0])  # ordered pairs of filled slots in different categories
    share = (counts + 1) / (counts.sum() + len(counts))
    assert novelty[0] == pytest.approx(-np.log2(share[[2, 3, 4]]).mean())
    assert novelty[1] == pytest.approx(-np.log2(share[2]))


def test_coverage_by_hand() -> None:
    lists = np.array([[2, 3], [3, 4], [2, -1]])
    iv = coverage_interval(lists, n_items=8, n_boot=200, ci=0.95, seed=0)
    assert iv.value == pytest.approx(3 / 6)  # items 2, 3, 4 of the 6 recommendable (2..7)
    assert iv.low <= iv.value <= iv.high


def test_prior_buys_mask_is_strictly_before() -> None:
    class T:  # the fields PriorBuys reads
        user_id = np.array([7, 7, 9, 7])
        timestamp = np.array([100, 200, 150, 300])
        action_behavior = np.array([3, 3, 3, 0])
        action_item = np.array([4, 5, 6, 2])

    prior = PriorBuys([T])
    mask = prior.mask(np.array([7, 7, 7, 9, 8]), np.array([100, 101, 250, 151, 999]), n_items=8)
    assert [np.flatnonzero(r).tolist() for r in mask] == [[], [4], [4, 5], [6], []]


# ------------------------------------------------------------------------------------------ protocol


class CountScores(Recommender):
    """Not the Popularity class: a hand-written model whose scores are the train counts."""

    name = "counts"

    def __init__(self, counts: np.ndarray) -> None:
        self.counts = counts.astype(np.float32)
        self.n_items = len(counts)

    def fit(self, data, cfg=None):
        return self

    def score(self, states: StateBatch) -> np.ndarray:
        return np.tile(self.counts, (states.batch_size, 1))


@pytest.fixture(scope="module")
def protocol_params(tmp_path_factory: pytest.TempPathFactory):
    """Params whose paths are in a temporary folder holding a featurized generated log of 300 users."""
    import yaml

    from drlrec.stages import featurize_stage, ingest_stage, synth_stage

    root = Path(__file__).resolve().parents[2]
    tmp = tmp_path_factory.mktemp("protocol")
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["base"]["progress"] = False
    raw["paths"] = {k: str(root / v) if k == "expectations" else str(tmp / v) for k, v in raw["paths"].items()}
    (tmp / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp / "params.yaml", ["synth.users=300"])
    synth_stage(params)
    ingest_stage(params)
    featurize_stage(params)
    return params


@pytest.fixture(scope="module")
def features(protocol_params):
    from drlrec.stages.common import EvalInputs

    return EvalInputs(Path(protocol_params.paths.features))


def test_counts_model_gets_exactly_the_popularity_numbers(features) -> None:
    from drlrec.models.popularity import Popularity

    cfg = EvaluateConfig(bootstrap=200, exclude_bought=True)
    args = (features.test, [features.data.train, features.data.valid], features.item_category, features.item_counts, cfg)
    popularity = evaluate_model(Popularity(features.data.n_items).fit(features.data), *args, seed=1)
    counts = evaluate_model(CountScores(features.item_counts), *args, seed=1)
    assert popularity.counts == counts.counts
    assert popularity.counts["next_item_events"] == features.test.num_transitions
    assert popularity.counts["next_purchase_events"] == int((features.test.action_behavior == 3).sum()) > 0
    for group in popularity.groups:
        assert popularity.groups[group] == counts.groups[group], group
    # the table names the protocol and shows value [CI] cells
    table = markdown_table([popularity, counts], "PROTOCOL TEXT")
    assert "PROTOCOL TEXT" in table and table.count("| counts |") == 1 and "[" in table


def test_exclude_bought_removes_exactly_the_earlier_buys(features) -> None:
    from drlrec.evaluate import _score_lists

    test, splits = features.test, [features.data.train, features.data.valid, features.test]
    prior = PriorBuys(splits)
    n_items = len(features.item_category)
    index = np.arange(test.num_transitions)
    earlier = prior.mask(test.user_id, test.timestamp, n_items)
    assert earlier.any(), "fixture has no repeat buyers"

    # a model that puts earlier buys first: without the mask they top the lists, with it they never appear
    boosted = np.asarray(features.item_counts, np.float64)
    calls = {"start": 0}

    class Boost(CountScores):
        def score(self, states: StateBatch) -> np.ndarray:
            s = calls["start"]
            calls["start"] += states.batch_size
            return super().score(states) + 1e6 * earlier[s : s + states.batch_size]

    targets = test.action_item.astype(np.int64)
    _, plain = _score_lists(Boost(boosted), test, index, targets, 10, None, n_items, 256)
    calls["start"] = 0
    _, masked = _score_lists(Boost(boosted), test, index, targets, 10, prior, n_items, 256)
    in_plain = np.take_along_axis(earlier, np.maximum(plain, 0), axis=1) & (plain >= 0)
    in_masked = np.take_along_axis(earlier, np.maximum(masked, 0), axis=1) & (masked >= 0)
    from drlrec.models.base import FIRST_REAL_ITEM

    assert in_plain.sum() == min_count(earlier[:, FIRST_REAL_ITEM:], 10)  # padding/unknown are never listed
    assert not in_masked.any()
    # events of users with no earlier buy get the same list either way
    clean = ~earlier.any(axis=1)
    assert np.array_equal(plain[clean], masked[clean])


def min_count(mask: np.ndarray, k: int) -> int:
    return int(np.minimum(mask.sum(axis=1), k).sum())


def test_max_events_caps_with_a_seeded_sample(features) -> None:
    from drlrec.models.popularity import Popularity

    model = Popularity(features.data.n_items).fit(features.data)
    args = (features.test, [features.data.train, features.data.valid], features.item_category, features.item_counts)
    a = evaluate_model(model, *args, EvaluateConfig(bootstrap=0, max_events=500), seed=3)
    b = evaluate_model(model, *args, EvaluateConfig(bootstrap=0, max_events=500), seed=3)
    assert a.counts["next_item_events"] == 500
    assert a.groups == b.groups
    # the per-user purchase metrics rank one list per buyer: capped the same way, by a seeded sample of buyers
    buyers = a.counts["users_with_test_purchases"]
    few = evaluate_model(model, *args, EvaluateConfig(bootstrap=0, max_events=buyers // 2), seed=3)
    assert buyers > 2 and few.counts["users_with_test_purchases"] == buyers // 2
    assert few.groups["per_user_purchase"] == evaluate_model(
        model, *args, EvaluateConfig(bootstrap=0, max_events=buyers // 2), seed=3
    ).groups["per_user_purchase"]


def test_evaluation_keeps_per_event_ranks_and_the_type_breakdown(features) -> None:
    from drlrec.evaluate import TARGET_TYPES, UNRANKABLE, target_sets
    from drlrec.models.popularity import Popularity

    test = features.test
    cfg = EvaluateConfig(bootstrap=100)
    ev = evaluate_model(Popularity(features.data.n_items).fit(features.data), test,
                        [features.data.train, features.data.valid], features.item_category, features.item_counts, cfg, seed=2)
    for ts in target_sets(test, cfg.max_events, 2):
        events = ev.events[ts.name]
        assert np.array_equal(events.index, ts.index)
        assert np.array_equal(events.user_id, test.user_id[ts.index])
        cold = events.target_type == TARGET_TYPES.index("cold")
        assert np.array_equal(cold, ts.targets < 2) and (events.ranks[cold] == UNRANKABLE).all()
        by_type = ev.groups[f"{ts.name}_by_type"]
        assert sum(by_type[f"{t}/share"].value for t in TARGET_TYPES) == pytest.approx(1.0)
        assert by_type["reachable"].value == pytest.approx(1.0 - cold.mean())
        overall = ev.groups[ts.name]["hr_at_10"]
        weighted = sum(by_type[f"{t}/share"].value * np.nan_to_num(by_type[f"{t}/hr_at_10"].value) for t in TARGET_TYPES)
        assert weighted == pytest.approx(overall.value)
        assert overall.low <= overall.value <= overall.high
    assert (ev.events["next_item"].target_type == TARGET_TYPES.index("in_state")).any()
    assert (ev.events["next_item"].target_type == TARGET_TYPES.index("in_history")).any()
    assert "events" not in ev.to_dict()


def test_compare_reports_paired_differences_both_heads_and_types(protocol_params, tmp_path, monkeypatch) -> None:
    """compare on cheap models plus an untrained small DQN-LSTM standing in for the trained one (its fit is
    the train stage's business): two head rows, the served one marked, an auto reference, paired columns."""
    import dataclasses
    import json

    import drlrec.stages.compare as stages
    from drlrec.config import ModelConfig
    from drlrec.models.dqn_lstm import DQNLSTM

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    fit = stages.fit_for_evaluation

    def fake_fit(params, name, inputs, track=None):
        if name != "dqn_lstm":
            return fit(params, name, inputs, track=track)
        model = DQNLSTM(inputs.data.n_items, inputs.data.n_categories,
                        ModelConfig(item_dim=8, category_dim=4, behavior_dim=4, hidden=8, layers=1, fc=(8, 8)),
                        score_with="q")
        model.served_head = "ce"
        return model

    monkeypatch.setattr(stages, "fit_for_evaluation", fake_fit)
    compare = str(tmp_path / "compare.json")
    params = dataclasses.replace(
        protocol_params,
        paths=dataclasses.replace(protocol_params.paths, compare=compare),
        evaluate=dataclasses.replace(protocol_params.evaluate, bootstrap=50, max_events=600, valid_max_events=400),
    )
    evaluations = stages.compare_stage(params, models=["popularity", "item_knn", "dqn_lstm"])
    assert [ev.model for ev in evaluations] == ["popularity", "item_knn", "dqn_lstm[q]", "dqn_lstm[ce]"]
    payload = json.loads(Path(compare).read_text())
    rows = {m["model"]: m for m in payload["models"]}
    valid = {name: rows[name]["valid_ndcg_at_10"] for name in ("popularity", "item_knn")}
    assert payload["reference"]["model"] == max(valid, key=valid.get)
    assert payload["state_length"] == params.featurize.seq_len
    assert rows["dqn_lstm[ce]"]["served"] and not rows["dqn_lstm[q]"]["served"]
    assert (rows["dqn_lstm[q]"]["head"], rows["dqn_lstm[ce]"]["head"]) == ("q", "ce")
    ref = payload["reference"]["model"]
    assert rows[ref]["paired_vs_reference"] == {}
    for name, row in rows.items():
        if name != ref:
            assert set(row["paired_vs_reference"]) == set(payload["paired_metrics"])
            d = row["paired_vs_reference"]["next_item/ndcg_at_10"]
            own, other = row["metrics"]["next_item"]["ndcg_at_10"], rows[ref]["metrics"]["next_item"]["ndcg_at_10"]
            assert d["value"] == pytest.approx(own["value"] - other["value"])
            assert d["ci_low"] <= d["value"] <= d["ci_high"]
        assert {"next_item_by_type", "next_purchase_by_type"} <= set(row["metrics"])
    md = Path(compare).with_suffix(".md").read_text()
    assert f"Δ next item NDCG@10 vs {ref}" in md and f"Δ next purchase HR@10 vs {ref}" in md
    assert "dqn_lstm[ce] (head ce, served)" in md and f"N = {params.featurize.seq_len}" in md
    assert "Reachable ceiling" in md and "in_history NDCG@10" in md
    assert Path(compare).with_suffix(".png").is_file()
    # the served row against every baseline (the reference and the others), each with its own paired CI
    versus = payload["served_vs_baselines"]
    assert versus["row"] == "dqn_lstm[ce]" and set(versus["differences"]) == {"popularity", "item_knn"}
    for opponent, diffs in versus["differences"].items():
        d = diffs["next_item/ndcg_at_10"]
        own, other = rows["dqn_lstm[ce]"]["metrics"]["next_item"]["ndcg_at_10"], rows[opponent]["metrics"]["next_item"]["ndcg_at_10"]
        assert d["value"] == pytest.approx(own["value"] - other["value"])
        assert d["ci_low"] <= d["value"] <= d["ci_high"]
    assert "| dqn_lstm[ce] − popularity |" in md and "against every baseline" in md
