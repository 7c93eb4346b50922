"""`drlrec simulate`: simulator + calibration + reference policies written and logged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from drlrec.config import load_params
from drlrec.models.base import StateBatch
from drlrec.rl.envs import recent_items_policy
from drlrec.stages import simulate_stage


def test_recent_items_policy_newest_first_distinct_real_items() -> None:
    seq = np.array([[0, 0, 5, 7, 5, 9], [3, 3, 3, 3, 3, 3], [0, 0, 0, 0, 0, 1]])
    states = StateBatch(seq, seq, seq, np.zeros((3, 6, 20), np.float32), np.zeros((3, 10), np.float32))
    np.testing.assert_array_equal(
        recent_items_policy(4)(states), [[9, 5, 7, 0], [3, 0, 0, 0], [0, 0, 0, 0]]
    )


def test_simulate_stage_writes_calibration_and_ranks_reference_policies(featurized, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    params = load_params(
        root / "params.yaml",
        [f"paths.simulator={tmp_path / 'sim'}", f"paths.model={tmp_path / 'no_model'}", "base.progress=false"],
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        calibration, results = simulate_stage(params, features_dir=featurized.features_dir, sessions=300)
    finally:
        mp.undo()
    out = tmp_path / "sim"
    for name in ("simulator.npz", "calibration.md", "calibration.csv", "calibration.png", "simulate.md"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "policies.json").read_text())
    assert set(saved["policies"]) == {"popularity", "recent_items", "random"}  # no trained model: no dqn_lstm
    assert saved["calibration"]["auc"] == pytest.approx(calibration.auc) and calibration.auc > 0.7
    # re-views dominate Taobao-like logs: the user's own recent items beat random lists by far
    assert results["recent_items"]["ctr"] > 5 * results["random"]["ctr"]
    assert results["recent_items"]["mean_return"] > results["random"]["mean_return"]
