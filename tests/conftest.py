"""Shared fixtures: the real Taobao slices in ../shared/data (skip, or fail under DRLREC_REQUIRE_SHARED_DATA=1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drlrec.settings import apply_offline_env, load_settings

apply_offline_env()
os.environ.setdefault("MPLBACKEND", "Agg")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _shared_file(name: str) -> Path:
    settings = load_settings()
    path = settings.shared_data_dir / name
    if not path.is_file():
        message = f"real data slice {path} is absent (set DRLREC_SHARED_DATA to the folder holding it)"
        if settings.require_shared_data:
            pytest.fail(f"DRLREC_REQUIRE_SHARED_DATA=1 but {message}")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def taobao_head() -> Path:
    """../shared/data/taobao_userbehavior_head.csv.gz: 30,959 rows, 294 whole user histories."""
    return _shared_file("taobao_userbehavior_head.csv.gz")


@pytest.fixture(scope="session")
def taobao_timewindow() -> Path:
    """../shared/data/taobao_userbehavior_timewindow_jason-wang1.csv.gz: 110,300 rows in a 2-hour window."""
    return _shared_file("taobao_userbehavior_timewindow_jason-wang1.csv.gz")


@pytest.fixture(scope="session")
def diginetica_sample() -> Path:
    """../shared/data/diginetica_sample_train-item-views_srgnn.csv.gz (Diginetica session format)."""
    return _shared_file("diginetica_sample_train-item-views_srgnn.csv.gz")


@pytest.fixture()
def params_path(tmp_path: Path) -> Path:
    """A copy of the project's params.yaml whose paths all point inside tmp_path."""
    import yaml

    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["base"]["progress"] = False
    for key, value in raw["paths"].items():
        if key == "expectations":
            raw["paths"][key] = str(PROJECT_ROOT / value)
        else:
            raw["paths"][key] = str(tmp_path / value)
    out = tmp_path / "params.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


# ---------------------------------------------------------------------------------------------- Prefect, pipeline


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory):
    """One temporary Prefect API (its own SQLite database) for the whole session."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def tiny_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny pipeline in tmp_path: params.yaml, generated raw data, and MLflow in tmp_path/mlflow.db.
    Returns the params file; cwd is tmp_path (so data.dvc and git provenance are looked up there)."""
    from pipeline_config import write_pipeline_params

    from drlrec.config import load_params
    from drlrec.stages import synth_stage

    params_file = write_pipeline_params(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    synth_stage(load_params(params_file))
    return params_file


# ---------------------------------------------------------------------------------------------- test tiers

TESTS = Path(__file__).resolve().parent
#: folders whose every test builds a pipeline, trains a model or starts a server (the API tests share a
#: session pipeline with a trained model; the integration tests run stages, flows, MLflow, Prefect, chromium;
#: every model test fits a model)
SLOW_FOLDERS = ("api", "integration", "model")
#: fixtures that build a pipeline, fit a model or run the monitoring on generated logs: a test that uses one
#: (directly or through another fixture) is slow wherever it lives
SLOW_FIXTURES = frozenset({
    "prefect_harness",  # a Prefect API server
    "tiny_pipeline",  # synth + MLflow store for the stages
    "protocol_params",  # synth -> ingest -> featurize (test_evaluate_protocol)
    "features_without_test",  # the same for the tune study (test_tune)
    "head_features",  # the featurize stage on the real head slice (test_featurize_real)
    "featurized",  # synth -> featurize in memory, and the user simulator fitted on it (tests/rl)
    "world",  # generated logs and Evidently drift reports (test_monitoring)
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` on everything that builds a pipeline, trains or starts a server, so that `pytest -m "not
    slow"` is the fast tier (under 2 minutes on 2 cores); `make test` and CI run every test."""
    for item in items:
        try:
            folder = Path(str(item.fspath)).resolve().relative_to(TESTS).parts[0]
        except ValueError:
            folder = ""
        if folder in SLOW_FOLDERS or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
