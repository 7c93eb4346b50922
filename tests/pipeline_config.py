"""A tiny pipeline configuration for tests that run the stages end to end (the figures mean nothing)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: overrides that make the whole pipeline run in seconds (tests only: the figures mean nothing)
TINY_PIPELINE = (
    "synth.users=120",
    "synth.items=3000",
    "synth.categories=200",
    "model.item_dim=16",
    "model.category_dim=8",
    "model.hidden=32",
    "model.layers=1",
    "model.fc=[32,32]",
    "train.steps=40",
    "train.batch_size=64",
    "train.eval_every=20",
    "train.checkpoint_every=20",
    "train.log_every=5",
    "train.eval_max_events=300",
    "train.candidates=512",
    "evaluate.bootstrap=20",
    "evaluate.max_events=2000",
    "base.progress=false",
)


def write_pipeline_params(folder: Path, extra: tuple[str, ...] = (), base: tuple[str, ...] = TINY_PIPELINE) -> Path:
    """params.yaml whose every path is inside `folder` (expectations: the project's), with the `base`
    overrides (default: the tiny pipeline; () for the project's own budgets) and then `extra`."""
    import yaml

    from drlrec.config import apply_overrides

    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["paths"] = {
        k: str(PROJECT_ROOT / v) if k == "expectations" else str(folder / v) for k, v in raw["paths"].items()
    }
    raw = apply_overrides(raw, list(base) + list(extra))
    out = folder / "params.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def run_pipeline(params, folder: Path, evaluate: bool = False):
    """synth -> ingest -> featurize -> train (-> evaluate) on `params`, with MLflow in folder/mlflow.db;
    returns the train stage's fit (drlrec.rl.dqn.DQNFit: the model and the loop's log)."""
    import pytest

    from drlrec.stages import evaluate_stage, featurize_stage, ingest_stage, synth_stage, train_stage

    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    try:
        synth_stage(params)
        ingest_stage(params)
        featurize_stage(params)
        fit = train_stage(params).fit
        if evaluate:
            evaluate_stage(params)
    finally:
        mp.undo()
    return fit
