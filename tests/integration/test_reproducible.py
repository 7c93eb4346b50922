"""Every DVC-tracked output is a pure function of its inputs, params and seed: the small pipeline, run in two
temporary copies, writes byte-identical outputs, so `dvc repro` on a fresh clone leaves dvc.lock unchanged.

Each copy runs the stages as `dvc repro` does: from the copy's root, with params.yaml's relative paths,
its own MLflow store, at a different time (the second copy starts after the first has finished). The outputs
compared are read from dvc.yaml itself (every stage's outs and metrics), so a stage or an output added
later is checked too.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml
from pipeline_config import PROJECT_ROOT, TINY_PIPELINE

pytestmark = pytest.mark.slow

#: the tiny pipeline, plus a simulate stage without baselines to fit (the default fits item_knn and sasrec)
OVERRIDES = (
    *TINY_PIPELINE,
    'simulate.policies=["dqn_lstm[q]", "dqn_lstm[ce]", recent_items, popularity, random]',
    "simulate.bootstrap=50",
    "env.sessions=40",
)


def declared_outputs(params) -> list[Path]:
    """Every path dvc.yaml declares as an out or a metric, with ${paths.*} resolved from params."""
    spec = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())

    def resolve(text: str) -> Path:
        return Path(re.sub(r"\$\{paths\.(\w+)\}", lambda m: str(getattr(params.paths, m.group(1))), text))

    found = []
    for stage in spec["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                found.append(resolve(next(iter(entry)) if isinstance(entry, dict) else entry))
    return sorted(set(found))


def content_hashes(root: Path, outputs: list[Path]) -> dict[str, str]:
    """md5 of every file of every output (a folder: each file by its relative name)."""
    hashes = {}
    for out in outputs:
        path = root / out
        assert path.exists(), f"{out}: declared in dvc.yaml but not written"
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            hashes[str(file.relative_to(root))] = hashlib.md5(file.read_bytes()).hexdigest()
    return hashes


def run_copy(folder: Path, monkeypatch: pytest.MonkeyPatch):
    """The whole DVC pipeline's stage functions in `folder`, as `dvc repro` runs them there."""
    from drlrec.config import apply_overrides, load_params
    from drlrec.stages import (
        evaluate_stage,
        featurize_stage,
        ingest_stage,
        register_stage,
        simulate_stage,
        synth_stage,
        train_stage,
        validate_stage,
    )

    folder.mkdir()
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["paths"]["expectations"] = str(PROJECT_ROOT / raw["paths"]["expectations"])  # the rest stay relative
    (folder / "params.yaml").write_text(yaml.safe_dump(apply_overrides(raw, list(OVERRIDES)), sort_keys=False))
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    params = load_params(folder / "params.yaml")
    synth_stage(params)
    for stage in (ingest_stage, validate_stage, featurize_stage, train_stage, evaluate_stage, simulate_stage,
                  register_stage):
        stage(params)
    return params


def test_two_copies_write_identical_dvc_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from drlrec import runinfo

    params = run_copy(tmp_path / "a", monkeypatch)
    first_train = runinfo.read(params, "train")
    run_copy(tmp_path / "b", monkeypatch)
    outputs = declared_outputs(params)
    assert {Path(params.paths.events), Path(params.paths.validation), Path(params.paths.model),
            Path(params.paths.metrics), Path(params.paths.bundle)} <= set(outputs)
    a, b = content_hashes(tmp_path / "a", outputs), content_hashes(tmp_path / "b", outputs)
    assert len(a) > 20  # the features, model, simulator and bundle folders hold many files
    assert a == b, "outputs that differ between the copies: " + ", ".join(k for k in a if a.get(k) != b.get(k))

    # what differs from run to run is kept, outside the DVC outputs: run ids and durations
    second_train = runinfo.read(params, "train")
    assert first_train["mlflow_run_id"] and second_train["mlflow_run_id"]
    assert first_train["model_md5"] == second_train["model_md5"]  # the same model, trained twice
    for stage in ("ingest", "validate", "train", "evaluate"):
        assert runinfo.read(params, stage)["seconds"] >= 0, stage
    assert (tmp_path / "b" / params.paths.registry).is_file()  # written, but not a DVC output

    # the evaluate run logs each figure of metrics.json with its CI, as metrics comparable across runs
    import json

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    evaluate_run = client.get_run(runinfo.read(params, "evaluate")["mlflow_run_id"])
    logged = evaluate_run.data.metrics
    # lineage: the evaluate run names its train run, and both declare the events file (its DVC md5)
    train_run = client.get_run(runinfo.train_run_id(params))
    assert evaluate_run.data.tags["train_run_id"] == train_run.info.run_id
    assert evaluate_run.data.params["evaluate.bootstrap"] == "20"
    events_md5 = runinfo.file_md5(tmp_path / "b" / params.paths.events)
    for run in (train_run, evaluate_run):
        assert [(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs] == [("events", events_md5)]
    saved = json.loads((tmp_path / "b" / params.paths.metrics).read_text())["metrics"]["next_item"]["ndcg_at_10"]
    assert [logged[f"test/next_item/ndcg_at_10{s}"] for s in ("", "_ci_low", "_ci_high")] == pytest.approx(
        [saved["value"], saved["ci_low"], saved["ci_high"]])
    assert saved["ci_low"] <= saved["value"] <= saved["ci_high"] and logged["evaluate/seconds"] > 0
    assert Path(params.paths.registry) not in outputs
