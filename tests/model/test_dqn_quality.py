"""What the DQN-LSTM's rankings are worth, not only its losses: each head against the no-learning baselines
on validation (fixed seeds). The regression pin on the default model's README figure is in
tests/integration/test_train_pipeline.py, on the pipeline that module trains once."""

from __future__ import annotations

import pytest
import torch
from pipeline_config import write_pipeline_params

from drlrec.config import load_params
from drlrec.evaluate import validation_evaluator
from drlrec.model_factory import build_model
from drlrec.models.base import TrainingData
from drlrec.rl.dqn import fit_dqn_lstm

#: a small generated log on which a model that learns nothing ranks like popularity (seconds per fit)
SMALL_LOG = (
    "synth.users=200",
    "synth.items=3000",
    "synth.categories=150",
    "model.item_dim=16",
    "model.category_dim=8",
    "model.behavior_dim=4",
    "model.hidden=32",
    "model.layers=1",
    "model.fc=[32,32]",
    "train.steps=300",
    "train.batch_size=64",
    "train.eval_every=100",
    "train.eval_max_events=600",
    "train.candidates=256",
    "train.threads=1",
    "base.progress=false",
)


@pytest.fixture(scope="module")
def small_features(tmp_path_factory: pytest.TempPathFactory):
    from drlrec.stages import featurize_stage, ingest_stage, synth_stage

    folder = tmp_path_factory.mktemp("quality")
    params = load_params(write_pipeline_params(folder, base=SMALL_LOG))
    synth_stage(params)
    ingest_stage(params)
    featurize_stage(params)
    return params, TrainingData.load(params.paths.features)


def fit(params, data, *overrides: str):
    from drlrec.config import apply_overrides, params_from_dict, params_to_dict

    params = params_from_dict(apply_overrides(params_to_dict(params), list(overrides)))
    torch.manual_seed(params.base.seed)
    model = build_model("dqn_lstm", data.n_items, data.n_categories, params)
    return params, fit_dqn_lstm(model, data, params.train, params.base.seed)


@pytest.fixture(scope="module")
def served_fit(small_features):
    """One fit in the served setting (params as shipped), shared by the tests that only read it."""
    params, data = small_features
    return fit(params, data)


@pytest.mark.parametrize("overrides", [("train.ce_weight=0",), ()], ids=["pure-dqn", "served-setting"])
def test_the_q_head_alone_beats_popularity_on_validation(small_features, served_fit, overrides):
    params, data = small_features
    params, result = fit(params, data, *overrides) if overrides else served_fit
    q_ndcg = result.valid_by_head["q"]["valid/ndcg_at_10"]
    popularity = result.popularity_metrics["valid/ndcg_at_10"]
    # the Q-head scored alone: at chance (the old plain-DQN head) it ranks like popularity or worse
    assert q_ndcg > popularity + 0.005, (q_ndcg, popularity)
    assert q_ndcg > 2 * popularity, (q_ndcg, popularity)


def test_the_served_head_is_the_better_one_on_validation(small_features, served_fit):
    _, data = small_features
    params, result = served_fit
    by_head = {h: m["valid/ndcg_at_10"] for h, m in result.valid_by_head.items()}
    assert set(by_head) == {"q", "ce"}
    assert result.served_head == max(by_head, key=by_head.get)
    evaluate, _ = validation_evaluator(data.valid, params.train.eval_max_events, params.base.seed)
    assert evaluate(result.model)["valid/ndcg_at_10"] == pytest.approx(by_head[result.served_head])


def test_each_head_is_scored_at_its_own_best_validated_weights(small_features, served_fit, tmp_path):
    """The Q-head and the CE head peak at different steps: each keeps the weights of its own best validation
    NDCG@10, is reported at them, and keeps them through save and load (compare and simulate use them)."""
    from drlrec.model_factory import DQNLSTMModel

    _, data = small_features
    params, result = served_fit
    evaluate, _ = validation_evaluator(data.valid, params.train.eval_max_events, params.base.seed)
    model = result.model
    for head in ("q", "ce"):
        best, step = result.train.kept_best[f"valid_{head}/ndcg_at_10"]
        history = {int(e["step"]): e[f"valid_{head}/ndcg_at_10"] for e in result.train.evaluations}
        assert best == max(history.values()) and history[step] == best
        model.use_head(head)
        assert evaluate(model)["valid/ndcg_at_10"] == pytest.approx(result.valid_by_head[head]["valid/ndcg_at_10"])
    model.use_head("q")  # saving while another head is in use still writes the served head's weights
    model.save(tmp_path)  # the registry's folder: model.pt + meta.json
    model.use_head(result.served_head)  # the fit is shared: leave it as it was
    loaded = DQNLSTMModel.load(tmp_path)
    assert loaded.served_head == loaded.score_with == result.served_head
    assert evaluate(loaded)["valid/ndcg_at_10"] == pytest.approx(result.valid_by_head[result.served_head]["valid/ndcg_at_10"])
    for head in ("q", "ce"):
        loaded.use_head(head)
        assert evaluate(loaded)["valid/ndcg_at_10"] == pytest.approx(result.valid_by_head[head]["valid/ndcg_at_10"])
