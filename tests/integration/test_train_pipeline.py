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
from drlrec.stages import train_stage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    from pipeline_config import run_pipeline, write_pipeline_params

    tmp = tmp_path_factory.mktemp("pipeline")
    params_file = write_pipeline_params(tmp, ("base.progress=false", "train.steps=700", "train.eval_every=350"), base=())
    params = load_params(params_file)
    fit = run_pipeline(params, tmp)
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


def test_online_mode_trains_against_the_simulator_and_logs_its_curve(trained, tmp_path: Path) -> None:
    """`drlrec train --set train.mode=online`: the simulator is fitted on the train split, the greedy
    return on fixed simulated sessions rises, and MLflow holds the curve and the online metrics."""
    from mlflow.tracking import MlflowClient

    base, _, tmp = trained
    params = load_params(
        tmp / "params.yaml",
        [
            "train.mode=online", "train.episodes=2048", "train.online_updates_per_step=2",
            f"paths.model={tmp_path / 'online_model'}", f"paths.train_metrics={tmp_path / 'online.json'}",
        ],
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    try:
        fit = train_stage(params)
    finally:
        mp.undo()
    metrics = json.loads((tmp_path / "online.json").read_text())
    assert metrics["mode"] == "online" and metrics["online/episodes"] == 2048
    assert metrics["online/greedy_return_last"] > metrics["online/greedy_return_first"] + 0.1, metrics
    assert (tmp_path / "online_model" / "online_curve.png").stat().st_size > 10_000
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    run_id = json.loads((tmp_path / "online_model" / "meta.json").read_text())["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.data.params["train.mode"] == "online"
    assert "online_curve.png" in {a.path for a in client.list_artifacts(run_id)}
    greedy = [m.value for m in client.get_metric_history(run_id, "online/greedy_return")]
    assert len(greedy) == len(fit.train.evaluations) and greedy[-1] > greedy[0]
    assert len(client.get_metric_history(run_id, "train/episode_reward")) == 2048 // params.train.online_envs
