"""The registered version is an MLflow model: `mlflow.pyfunc.load_model("models:/drlrec@champion")` and
`mlflow models serve` answer a history with the service's own top-10, and the version carries a signature."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory):
    """The tiny pipeline through register (a champion in a temporary MLflow store); (params, tracking uri)."""
    from pipeline_config import write_pipeline_params

    from drlrec.config import load_params
    from drlrec.stages import (
        evaluate_stage,
        featurize_stage,
        ingest_stage,
        register_stage,
        synth_stage,
        train_stage,
        validate_stage,
    )

    folder = tmp_path_factory.mktemp("mlflow-model")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.chdir(folder)
    params = load_params(write_pipeline_params(folder))
    for stage in (synth_stage, ingest_stage, validate_stage, featurize_stage, train_stage, evaluate_stage):
        stage(params)
    decision = register_stage(params)
    assert decision["promoted"]
    yield params, uri
    mp.undo()


def user_histories(params, users: int = 6, events: int = 15) -> pd.DataFrame:
    """The last `events` raw events of a few users of the log, in the model's input schema."""
    from drlrec.schema import BEHAVIORS

    log = pd.read_parquet(params.paths.events).sort_values(["user_id", "timestamp"], kind="stable")
    rows = []
    for _, group in list(log.groupby("user_id"))[:users]:
        tail = group.tail(events)
        rows.append({
            "item_id": tail["item_id"].astype("int64").tolist(),
            "category_id": tail["category_id"].astype("int64").tolist(),
            "behavior_type": [BEHAVIORS[int(b)] for b in tail["behavior"]],
            "timestamp": tail["timestamp"].astype("int64").tolist(),
        })
    return pd.DataFrame(rows)


def service_lists(uri: str, frame: pd.DataFrame, k: int = 10) -> list[list[int]]:
    """What the API ranks with: ServingModel over the champion's bundle (drlrec.registry.load_champion)."""
    from drlrec.config import ServeConfig
    from drlrec.mlflow_model import histories
    from drlrec.registry import load_champion
    from drlrec.serving.recommender import ServingModel

    serving = ServingModel(load_champion(tracking_uri=uri), "champion", retrieval=ServeConfig().retrieval)
    return [serving.recommend(history, k, exclude).item_id.tolist() for history, exclude in histories(frame)]


def test_pyfunc_load_model_gives_the_service_top_10(registered) -> None:
    import mlflow
    from mlflow.models import get_model_info

    params, uri = registered
    mlflow.set_tracking_uri(uri)
    frame = user_histories(params)
    model = mlflow.pyfunc.load_model("models:/drlrec@champion")
    out = model.predict(frame, params={"k": 10})
    expected = service_lists(uri, frame)
    assert [list(x) for x in out["item_id"]] == expected
    assert all(len(x) == 10 for x in expected) and len({tuple(x) for x in expected}) > 1  # real, distinct lists
    assert all(np.all(np.diff(s) <= 0) for s in out["score"])  # best first

    info = get_model_info("models:/drlrec@champion")
    assert info.signature is not None
    assert {c.name for c in info.signature.inputs} >= {"item_id", "category_id", "behavior_type", "timestamp"}
    assert {c.name for c in info.signature.outputs} == {"item_id", "category_id", "score"}
    assert info.signature.params is not None and info.signature.params.to_dict()[0]["name"] == "k"
    # the version is the model the train run logged, in the train run (lineage: data, metrics, model)
    from drlrec import runinfo

    client = mlflow.MlflowClient(uri)
    version = client.get_model_version_by_alias("drlrec", "champion")
    assert version.run_id == runinfo.train_run_id(params)


def test_the_champion_carries_the_native_torch_flavour_and_is_the_train_runs_only_model(registered) -> None:
    """One model object: the version's MLmodel has python_function and pytorch; mlflow.pytorch.load_model on
    the alias gives the network whose scores are the bundle model's; the train run logged exactly one model
    (the registered one), and evaluate and register are nested under the train run."""
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import get_model_info

    from drlrec import runinfo
    from drlrec.bundle import load_bundle
    from drlrec.features.transitions import load_split
    from drlrec.models.dqn_lstm import pack_states
    from drlrec.rl.logged import state_batch

    params, uri = registered
    mlflow.set_tracking_uri(uri)
    info = get_model_info("models:/drlrec@champion")
    assert {"python_function", "pytorch"} <= set(info.flavors)
    module = mlflow.pytorch.load_model("models:/drlrec@champion")
    bundle = load_bundle(params.paths.bundle)
    states = state_batch(load_split(params.paths.features, "valid"), np.arange(16))
    with torch.no_grad():
        scores = module.eval()(torch.as_tensor(pack_states(states))).numpy()
    np.testing.assert_allclose(scores, bundle.model.score(states), rtol=1e-6, atol=1e-6)

    client = mlflow.MlflowClient(uri)
    train_run = runinfo.train_run_id(params)
    experiment = client.get_run(train_run).info.experiment_id
    logged = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")
    assert [m.source_run_id for m in logged] == [train_run]  # no second, unregistered model
    version = client.get_model_version_by_alias("drlrec", "champion")
    assert version.source == logged[0].model_uri or logged[0].model_id in version.source
    children = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{train_run}'")
    assert {r.data.tags["stage"] for r in children} == {"evaluate", "register"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_with_the_service_top_10(registered, tmp_path: Path) -> None:
    params, uri = registered
    frame = user_histories(params, users=3)
    port = free_port()
    # mlflow execs `uvicorn` by name: the venv's bin first on PATH (make test puts it there too)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", "models:/drlrec@champion",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not answer /ping"
            time.sleep(0.5)
        body = {"dataframe_split": frame.to_dict(orient="split"), "params": {"k": 10}}
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["item_id"] for p in predictions] == service_lists(uri, frame)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # by its PID (its own process group: gunicorn/uvicorn workers)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    assert proc.poll() is not None
