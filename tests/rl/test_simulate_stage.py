"""`drlrec simulate`: simulator + calibration + policies on the same seeded sessions, written and logged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from drlrec.config import ModelConfig, load_params
from drlrec.errors import ConfigError, InputError
from drlrec.models.base import StateBatch
from drlrec.models.dqn_lstm import DQNLSTM
from drlrec.rl.envs import recent_items_policy
from drlrec.stages import simulate_stage

ROOT = Path(__file__).resolve().parents[2]


def _params(tmp_path: Path, model: Path, *extra: str):
    return load_params(
        ROOT / "params.yaml",
        [f"paths.simulator={tmp_path / 'sim'}", f"paths.model={model}", "base.progress=false",
         "simulate.bootstrap=200", *extra],
    )


def _simulate(params, featurized, tmp_path: Path, **kwargs):
    import dataclasses

    # the sessions start from the fixture's own events (the ones its features were built from)
    params = dataclasses.replace(params, paths=dataclasses.replace(params.paths, events=str(featurized.events_path)))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        return simulate_stage(params, features_dir=featurized.features_dir, **kwargs)
    finally:
        mp.undo()


def test_recent_items_policy_newest_first_distinct_real_items() -> None:
    seq = np.array([[0, 0, 5, 7, 5, 9], [3, 3, 3, 3, 3, 3], [0, 0, 0, 0, 0, 1]])
    states = StateBatch(seq, seq, seq, np.zeros((3, 6, 20), np.float32), np.zeros((3, 10), np.float32))
    np.testing.assert_array_equal(
        recent_items_policy(4)(states), [[9, 5, 7, 0], [3, 0, 0, 0], [0, 0, 0, 0]]
    )


def test_simulate_stage_writes_calibration_and_ranks_reference_policies(featurized, tmp_path: Path) -> None:
    params = _params(
        tmp_path, tmp_path / "no_model",
        'simulate.policies=[recent_items, popularity, random, "dqn_lstm[q]"]',
    )
    with pytest.raises(InputError, match="no trained DQN-LSTM"):  # asked for by name: an error
        _simulate(params, featurized, tmp_path, sessions=10, policies=["dqn_lstm[q]", "random"])
    with pytest.raises(ConfigError, match="unknown policy"):
        _simulate(params, featurized, tmp_path, sessions=10, policies=["dqn_lstm", "random"])
    calibration, results, paired = _simulate(params, featurized, tmp_path, sessions=300)
    out = tmp_path / "sim"
    for name in ("simulator.npz", "calibration.md", "calibration.csv", "calibration.png", "simulate.md"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "policies.json").read_text())
    assert set(saved["policies"]) == {"popularity", "recent_items", "random"}  # no trained model: no dqn_lstm
    assert set(saved["not_run"]) == {"dqn_lstm[q]"} and paired is None and saved["paired_q_minus_ce"] is None
    assert "Not run: dqn_lstm[q]" in (out / "simulate.md").read_text()
    assert saved["calibration"]["auc"] == pytest.approx(calibration.auc) and calibration.auc > 0.7
    # re-views dominate Taobao-like logs: the user's own recent items beat random lists by far
    assert results["recent_items"].ctr > 5 * results["random"].ctr
    assert results["recent_items"].mean_return > results["random"].mean_return
    for name, r in results.items():
        low, high = saved["policies"][name]["ci"]["mean_return"]
        assert saved["policies"][name]["mean_return"] == pytest.approx(r.mean_return) and low <= r.mean_return <= high


def test_simulate_stage_compares_both_dqn_heads_on_the_same_sessions(featurized, tmp_path: Path) -> None:
    """A DQN-LSTM in paths.model (untrained and small: this checks the wiring, not what it learns) gives a
    Q row and a CE row on the same sessions as every other policy, and their paired return difference."""
    data = featurized.data
    small = ModelConfig(item_dim=16, category_dim=8, hidden=16, layers=1, fc=(16, 16))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    DQNLSTM(data.n_items, data.n_categories, small, score_with="ce").save(model_dir / "model.pt")
    params = _params(tmp_path, model_dir, "env.max_steps=8")
    policies = ["dqn_lstm[q]", "dqn_lstm[ce]", "recent_items", "item_knn", "random"]
    _, results, paired = _simulate(params, featurized, tmp_path, sessions=200, policies=policies)
    assert list(results) == policies
    for r in results.values():  # the same seeded sessions for all
        np.testing.assert_array_equal(r.outcomes.start, results["random"].outcomes.start)
    q, ce = results["dqn_lstm[q]"], results["dqn_lstm[ce]"]
    assert paired["mean_return"].value == pytest.approx(q.mean_return - ce.mean_return)
    assert paired["mean_return"].low <= paired["mean_return"].value <= paired["mean_return"].high
    report = (tmp_path / "sim" / "simulate.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ")}
    assert "head q |" in rows["dqn_lstm[q]"] and "head ce, served" in rows["dqn_lstm[ce]"]
    assert f"{q.mean_return:.3f} [{q.ci['mean_return'][0]:.3f}, {q.ci['mean_return'][1]:.3f}]" in rows["dqn_lstm[q]"]
    assert "dqn_lstm[q] - dqn_lstm[ce] = " in report and "95% CI" in report
    saved = json.loads((tmp_path / "sim" / "policies.json").read_text())
    assert saved["paired_q_minus_ce"]["mean_return"]["value"] == pytest.approx(paired["mean_return"].value)
    assert results["recent_items"].mean_return > results["random"].mean_return
