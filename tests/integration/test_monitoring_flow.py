"""The monitoring flow end to end on a tiny pipeline: a champion, a shifted period in the interaction log,
drift detected, the raw data extended, the real training flow run once as a subflow, the gate deciding,
and a second run on the same window debounced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drlrec import registry

pytestmark = pytest.mark.slow

MONITOR = ("monitor.min_rows=200", "monitor.window_days=0", "monitor.dvc_add=false")


def test_drift_retrains_once_and_the_gate_decides(prefect_harness, tiny_pipeline: Path) -> None:
    from drlrec.config import load_params
    from drlrec.monitoring.retrain import read_state
    from drlrec.stages import synth_stage
    from flows.monitoring_flow import monitoring_flow
    from flows.training_flow import training_flow

    uri = os.environ["MLFLOW_TRACKING_URI"]
    first = training_flow(str(tiny_pipeline))
    assert registry.alias_version("champion", uri) == first["register"]["version"] == "1"
    params = load_params(tiny_pipeline, MONITOR)
    shifted = synth_stage(params, out=tiny_pipeline.parent / "shifted.csv", drift=True)
    raw_rows = len(Path(params.paths.raw_data).read_text().splitlines())

    out = monitoring_flow(str(tiny_pipeline), list(MONITOR), current=str(shifted))
    result = out["result"]
    assert result["drift"] and {"category", "item_unknown"} <= set(result["drifted_columns"])
    assert out["action"] == "retrained" and out["retrain"]["mode"] == "subflow"
    assert out["appended"]["rows"] == len(shifted.read_text().splitlines())
    assert len(Path(params.paths.raw_data).read_text().splitlines()) == raw_rows + out["appended"]["rows"]
    decision = out["retrain"]["register"]
    assert decision["version"] == "2" and isinstance(decision["promoted"], bool)
    assert registry.alias_version("champion", uri) == ("2" if decision["promoted"] else "1")
    assert Path(out["report"]).is_file() and out["mlflow_run_id"]
    state = read_state(Path(params.paths.monitoring) / "state.json")
    assert state["training_window"] == out["training_window"] and state["last_decision"]["version"] == "2"

    # the next run sees the same window: reported, but no second retrain
    again = monitoring_flow(str(tiny_pipeline), list(MONITOR), current=str(shifted))
    assert "already triggered" in again["action"]
    assert sorted(v["version"] for v in registry.describe(uri)) == ["1", "2"]
