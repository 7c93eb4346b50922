"""Fixtures of the API tests: a small pipeline built once per session (synth -> ingest -> featurize ->
train, plus the user simulator) in a temporary folder, a bundle of its model, params with every output in
tmp_path, a real uvicorn server in a thread, and a temporary MLflow registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from api_support import API_PIPELINE, ARTIFACTS, PIPELINE_ROOT, PROJECT_ROOT, TOKEN, make_params


@pytest.fixture(scope="session", autouse=True)
def api_pipeline(tmp_path_factory):
    """Build ARTIFACTS once: events.parquet, features/, model/ and simulator/simulator.npz (MLflow in tmp)."""
    from pipeline_config import run_pipeline, write_pipeline_params

    from drlrec.config import load_params
    from drlrec.rl.simulator import fit_simulator_from_features

    params = load_params(write_pipeline_params(PIPELINE_ROOT, API_PIPELINE))
    run_pipeline(params, PIPELINE_ROOT)
    simulator = fit_simulator_from_features(params.paths.features, params.simulator, params.base.seed)
    simulator.save(Path(params.paths.simulator) / "simulator.npz")
    yield ARTIFACTS
    shutil.rmtree(PIPELINE_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, api_pipeline) -> Path:
    """A model bundle of the session pipeline's DQN-LSTM."""
    from drlrec.bundle import write_bundle
    from drlrec.config import load_params

    return write_bundle(ARTIFACTS / "model", ARTIFACTS / "features", load_params(PROJECT_ROOT / "params.yaml").featurize,
                        tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture()
def source(bundle_dir):
    """Every alias the tests use points at version 1 = the bundle."""
    from drlrec.serving.model_store import BundleDirSource

    return BundleDirSource({a: ("1", str(bundle_dir)) for a in ("champion", "challenger")})


@pytest.fixture()
def client(tmp_path, source):
    """A TestClient on an app without Redis, A/B on (champion/challenger both version 1)."""
    from fastapi.testclient import TestClient

    from drlrec.serving.app import create_app

    app = create_app(make_params(tmp_path, serve={"poll_seconds": 0}), source=source, redis_url="", api_token=TOKEN)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def registry_uri(tmp_path_factory, bundle_dir) -> str:
    """A temporary MLflow store (SQLite) with the bundle registered twice: version 1 @champion,
    version 2 @challenger (same metric, so the gate keeps version 1)."""
    from drlrec.config import load_params
    from drlrec.registry import alias_version, register_model

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    params = load_params(PROJECT_ROOT / "params.yaml")
    metrics = {"metrics": {"next_item": {"ndcg_at_10": {"value": 0.1}}}}
    for _ in range(2):
        register_model(params, bundle_dir, metrics, split_id="api-tests", tracking_uri=uri, project_root=PROJECT_ROOT)
    assert alias_version("champion", uri, params.register.model_name) == "1"
    assert alias_version("challenger", uri, params.register.model_name) == "2"
    return uri
