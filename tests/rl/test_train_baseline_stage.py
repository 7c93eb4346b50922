"""`drlrec train --model NAME`: a comparison model fitted, saved, reloaded with identical scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from drlrec.cli import main
from drlrec.config import load_params
from drlrec.errors import ConfigError
from drlrec.model_factory import load_model
from drlrec.rl.logged import state_batch
from drlrec.stages import train_baseline_stage


def _params(tmp_path: Path, *extra: str):
    root = Path(__file__).resolve().parents[2]
    return load_params(root / "params.yaml", [f"paths.artifacts={tmp_path}", "base.progress=false", *extra])


def test_train_model_item_knn_saves_a_reloadable_model_and_its_metrics(featurized, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    model, metrics = train_baseline_stage(_params(tmp_path), "item_knn", features_dir=featurized.features_dir)
    out = tmp_path / "models" / "item_knn"
    saved = json.loads((out / "train_metrics.json").read_text())
    assert saved["model"] == "item_knn" and saved["valid/ndcg_at_10"] == pytest.approx(metrics["valid/ndcg_at_10"])
    assert metrics["valid/ndcg_at_10"] > 0
    states = state_batch(featurized.data.valid, np.arange(16))
    np.testing.assert_array_equal(load_model(out).score(states), model.score(states))


def test_unknown_model_is_a_config_error(featurized, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        train_baseline_stage(_params(tmp_path), "nope", features_dir=featurized.features_dir)


def test_cli_train_model_unknown_is_one_line_exit_2(featurized, tmp_path: Path, capsys) -> None:
    code = main(["train", "--model", "nope", "--features", str(featurized.features_dir), "--set", f"paths.artifacts={tmp_path}"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model" in err[0]
