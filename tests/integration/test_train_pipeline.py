"""End to end on the embedded default data: synth -> ingest -> featurize -> train, with MLflow in tmp_path.

Asserts the issue's claims on a fixed seed: the DQN-LSTM beats popularity on validation NDCG@10 by a
clear margin, and its MLflow run holds params, metrics, curves and a model that loads back with
identical scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from drlrec.config import load_params
from drlrec.stages import featurize_stage, ingest_stage, synth_stage, train_stage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    import yaml

    root = Path(__file__).resolve().parents[2]
    tmp = tmp_path_factory.mktemp("pipeline")
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["base"]["progress"] = False
    raw["paths"] = {k: str(root / v) if k == "expectations" else str(tmp / v) for k, v in raw["paths"].items()}
    params_file = tmp / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    params = load_params(params_file, ["train.steps=700", "train.eval_every=350"])
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    try:
        synth_stage(params)
        ingest_stage(params)
        featurize_stage(params)
        fit = train_stage(params)
    finally:
        mp.undo()
    return params, fit, tmp


def test_dqn_lstm_beats_popularity_on_the_embedded_default(trained) -> None:
    params, fit, _ = trained
    metrics = json.loads(Path(params.paths.train_metrics).read_text())
    ours, popularity = metrics["valid/ndcg_at_10"], metrics["valid_popularity/ndcg_at_10"]
    assert ours > 5 * popularity and ours > popularity + 0.01, (ours, popularity)
    assert metrics["valid/hr_at_10"] > metrics["valid_popularity/hr_at_10"]


def test_mlflow_run_holds_params_metrics_curves_and_a_reloadable_model(trained) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from drlrec.features.transitions import load_split
    from drlrec.models.dqn_lstm import pack_states
    from drlrec.rl.logged import state_batch

    params, fit, tmp = trained
    meta = json.loads((Path(params.paths.model) / "meta.json").read_text())
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(meta["mlflow_run_id"])
    assert run.data.params["train.steps"] == "700"
    assert run.data.params["model.variant"] == "lstm"
    assert run.data.metrics["valid/ndcg_at_10"] == pytest.approx(json.loads(Path(params.paths.train_metrics).read_text())["valid/ndcg_at_10"])
    history = client.get_metric_history(run.info.run_id, "train/td_loss")
    assert len(history) >= 50
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"training_curves.png", "meta.json", "params.json", "vocab"} <= artifacts

    mlflow.set_tracking_uri(uri)
    logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert logged, "no model logged"
    module = mlflow.pytorch.load_model(logged[0].model_uri)
    module.eval()
    valid = load_split(params.paths.features, "valid")
    states = state_batch(valid, np.arange(32))
    with torch.no_grad():
        reloaded = module(torch.as_tensor(pack_states(states))).numpy()
    np.testing.assert_array_equal(reloaded, fit.model.score(states))
