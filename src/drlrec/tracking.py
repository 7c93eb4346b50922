"""The only module that talks to MLflow's run API: params, metrics, artifacts and the logged model.

The tracking URI comes from MLFLOW_TRACKING_URI; by default a SQLite store `mlflow.db` in the project
folder with artifacts in `mlartifacts/` beside it. (The registry lives in registry.py.)
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from drlrec.settings import apply_offline_env, load_settings

EXPERIMENT = "drlrec"


def default_tracking_uri(project_root: str | Path | None = None) -> str:
    """MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db."""
    uri = load_settings().mlflow_tracking_uri
    if uri:
        return uri
    root = Path(project_root or Path.cwd()).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def pinned_requirements() -> list[str]:
    """pip requirements of a logged model, pinned to what is installed (what requirements.lock installs)."""
    names = ["torch", "numpy", "mlflow", "pandas", "pyyaml"]
    return [f"{name}=={metadata.version(name)}" for name in names]


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 0.1}} -> {"train.lr": "0.1"}; lists are JSON."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


class RunTracker:
    """One MLflow run: `with start_run(...) as run: run.log_metrics(...)`."""

    def __init__(self, mlflow_module, run) -> None:
        self._mlflow = mlflow_module
        self.run = run

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def artifact_uri(self) -> str:
        return self.run.info.artifact_uri

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = flatten(params)
        items = list(flat.items())
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._mlflow.log_params(dict(items[start : start + 100]))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        clean = {k.replace("@", "_at_"): float(v) for k, v in metrics.items() if v == v}  # drop NaN
        if clean:
            self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_artifact_dir(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log every file of a folder (keeping its layout) under `artifact_path`."""
        self._mlflow.log_artifacts(str(path), artifact_path=artifact_path)

    def log_dict(self, payload: Mapping[str, Any], name: str) -> None:
        self._mlflow.log_dict(dict(payload), name)

    def log_input_file(self, path: str | Path, name: str, context: str, digest: str | None = None,
                       tags: Mapping[str, Any] | None = None) -> None:
        """Declare a file as the run's input dataset (MLflow's dataset inputs), with `digest` (default: the
        file's md5, what DVC records for it) so two runs on the same bytes show the same dataset."""
        import warnings

        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        from drlrec.runinfo import file_md5

        with warnings.catch_warnings():  # a local path matches two equivalent source types
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(str(Path(path).resolve()))
        dataset = MetaDataset(source, name=name, digest=(digest or file_md5(path))[:36])
        self._mlflow.log_input(dataset, context=context, tags={k: str(v) for k, v in (tags or {}).items()} or None)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._mlflow.set_tags({k: str(v) for k, v in tags.items()})


@contextmanager
def start_run(
    run_name: str,
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
    nested: bool = False,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
) -> Iterator[RunTracker]:
    """Open an MLflow run (creating the experiment with a local artifact folder if needed).

    `parent_run_id` nests the run under a run of another process (the pipeline's train run: evaluate,
    simulate and register are its children in the MLflow UI), through MLflow's `mlflow.parentRunId` tag;
    a parent that is not in this store is ignored (the run is then top-level)."""
    apply_offline_env()
    import mlflow

    uri = tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        artifact_location = None
        if uri.startswith("sqlite:///"):
            artifact_location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
        mlflow.create_experiment(experiment, artifact_location=artifact_location)
    mlflow.set_experiment(experiment)
    tags = dict(tags or {})
    if parent_run_id and not nested:
        from mlflow.exceptions import MlflowException

        try:
            mlflow.MlflowClient(uri).get_run(parent_run_id)
            tags["mlflow.parentRunId"] = parent_run_id
        except MlflowException:
            pass
    with mlflow.start_run(run_name=run_name, nested=nested, tags=tags) as run:
        yield RunTracker(mlflow, run)


def scratch_dir() -> Path:
    """A temporary folder for artifacts that are logged and then not needed locally."""
    return Path(tempfile.mkdtemp(prefix="drlrec-mlflow-"))
