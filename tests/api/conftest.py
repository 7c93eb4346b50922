"""Fixtures of the API tests: a small pipeline built once per session (synth -> ingest -> featurize ->
train, plus the user simulator) in a temporary folder, a bundle of its model, params with every output in
tmp_path, a real uvicorn server in a thread, and a temporary MLflow registry."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: where the session's small pipeline lives (built by the autouse fixture below, removed after the session)
PIPELINE_ROOT = Path(tempfile.mkdtemp(prefix="drlrec-api-tests-"))
ARTIFACTS = PIPELINE_ROOT / "artifacts"
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: big enough that the trained model clearly beats popularity in the simulator, small enough for ~1 minute
API_PIPELINE = (
    "synth.users=2000",
    "synth.items=60000",
    "synth.categories=1500",
    "model.item_dim=32",
    "model.hidden=64",
    "model.layers=1",
    "model.fc=[64,64]",
    "train.steps=1500",
    "train.batch_size=128",
    "train.eval_every=500",
    "train.checkpoint_every=500",
    "train.candidates=1024",
)


@pytest.fixture(scope="session", autouse=True)
def api_pipeline(tmp_path_factory):
    """Build ARTIFACTS once: events.parquet, features/, model/ and simulator/simulator.npz (MLflow in tmp)."""
    from pipeline_config import write_pipeline_params

    from drlrec.config import load_params
    from drlrec.rl.simulator import fit_simulator_from_features
    from drlrec.stages import featurize_stage, ingest_stage, synth_stage, train_stage

    params = load_params(write_pipeline_params(PIPELINE_ROOT, API_PIPELINE))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{PIPELINE_ROOT / 'mlflow.db'}")
    try:
        synth_stage(params)
        ingest_stage(params)
        featurize_stage(params)
        train_stage(params)
        simulator = fit_simulator_from_features(params.paths.features, params.simulator, params.base.seed)
        simulator.save(Path(params.paths.simulator) / "simulator.npz")
    finally:
        mp.undo()
    yield ARTIFACTS
    shutil.rmtree(PIPELINE_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, api_pipeline) -> Path:
    """A model bundle of the session pipeline's DQN-LSTM."""
    from drlrec.bundle import write_bundle
    from drlrec.config import load_params

    return write_bundle(ARTIFACTS / "model", ARTIFACTS / "features", load_params(PROJECT_ROOT / "params.yaml").featurize,
                        tmp_path_factory.mktemp("bundle") / "bundle")


def make_params(tmp_path: Path, **sections):
    """The project's params with the serving outputs in tmp_path, events from artifacts/ (read only),
    and `sections` replacing fields: make_params(tmp, serve={"cache_ttl": 0}, ab={"enabled": False})."""
    from drlrec.config import VariantConfig, load_params

    params = load_params(PROJECT_ROOT / "params.yaml")
    paths = dataclasses.replace(
        params.paths, events=str(ARTIFACTS / "events.parquet"), interactions=str(tmp_path / "interactions.csv"),
        exposures=str(tmp_path / "exposures.csv"), ab_report=str(tmp_path / "ab_report.json"),
    )
    params = dataclasses.replace(params, paths=paths)
    for name, changes in sections.items():
        changes = dict(changes)
        if "variants" in changes:
            changes["variants"] = tuple(v if isinstance(v, VariantConfig) else VariantConfig(**v) for v in changes["variants"])
        params = dataclasses.replace(params, **{name: dataclasses.replace(getattr(params, name), **changes)})
    return params


def write_params_yaml(params, path: Path) -> Path:
    import yaml

    from drlrec.config import params_to_dict

    path.write_text(yaml.safe_dump(params_to_dict(params), sort_keys=False))
    return path


@pytest.fixture()
def source(bundle_dir):
    """Every alias the tests use points at version 1 = the bundle."""
    from drlrec.serving.models import BundleDirSource

    return BundleDirSource({a: ("1", str(bundle_dir)) for a in ("champion", "challenger")})


@pytest.fixture()
def client(tmp_path, source):
    """A TestClient on an app without Redis, A/B on (champion/challenger both version 1)."""
    from fastapi.testclient import TestClient

    from drlrec.serving.app import create_app

    app = create_app(make_params(tmp_path, serve={"poll_seconds": 0}), source=source, redis_url="", api_token=TOKEN)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


class ServerThread:
    """A real uvicorn server on 127.0.0.1:<free port> in a thread of the test process."""

    def __init__(self, app) -> None:
        import uvicorn

        from drlrec.serving.run import free_port

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        import httpx

        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)


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
