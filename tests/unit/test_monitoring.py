"""Drift monitoring: no drift on a window from the same distribution, named drifted columns on a shifted one,
and the monitoring cycle's retrain trigger with its debounce (training injected as a callable)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drlrec import monitoring
from drlrec.config import DriftConfig, FeaturizeConfig, MonitorConfig, SynthConfig
from drlrec.data import logs, synth
from drlrec.errors import InputError

SEED = 11
SYNTH = SynthConfig()  # the default generator: 2,000 users, 9 days
NO_SHIFT = DriftConfig(days=4, category_shift=0, new_item_share=0.0, behavior_mix=None)
SHIFT = DriftConfig(days=4)
TRAIN_END = SYNTH.start + 7 * 86400


@pytest.fixture(scope="module")
def world() -> dict:
    """The training log, a same-distribution continuation and a shifted one (last day of each)."""
    base = synth.generate(SYNTH, SEED, progress=False)
    events = base.to_pandas()
    train = events[events["timestamp"] < TRAIN_END]
    same = synth.generate_drift(SYNTH, NO_SHIFT, SEED, progress=False)
    shifted = synth.generate_drift(SYNTH, SHIFT, SEED, progress=False)
    return {
        "base": base,
        "train": train,
        "same": same,
        "shifted": shifted,
        "reference": monitoring.build_reference(train, MonitorConfig()),
        "known": np.unique(train["item_id"].to_numpy()),
    }


def _last_day(table) -> pd.DataFrame:
    return monitoring.window_of(monitoring.sort_events(table.to_pandas()), 1.0)


def test_window_from_the_same_distribution_reports_no_drift(world: dict) -> None:
    run = monitoring.monitor(world["reference"], _last_day(world["same"]), world["known"], MonitorConfig(), FeaturizeConfig())
    result = run.result
    assert result.status == "no drift", result.decision_line()
    assert not result.drift and result.drift_share < MonitorConfig().drift_share
    assert set(result.columns) == set(monitoring.MONITORED_COLUMNS)
    assert result.decision_line().startswith("no drift: ")


def test_shifted_window_reports_drift_naming_the_columns(world: dict) -> None:
    result = monitoring.monitor(
        world["reference"], _last_day(world["shifted"]), world["known"], MonitorConfig(), FeaturizeConfig()
    ).result
    assert result.drift and result.status == "drift"
    assert result.drift_share >= MonitorConfig().drift_share
    # what the shift changed: preferred categories, new items, the behaviour mix (and the profile rates)
    assert {"category", "item_unknown", "behavior", "profile_buy_rate"} <= set(result.drifted_columns)
    assert not result.columns["hour"]["drifted"]  # the daily rhythm did not change
    assert result.unknown_item_share["current"] > 0.25 > result.unknown_item_share["reference"]
    line = result.decision_line()
    assert line.startswith("drift: ") and "category" in line and "item_unknown" in line


def test_drift_period_is_deterministic_and_after_the_window(world: dict) -> None:
    again = synth.generate_drift(SYNTH, SHIFT, SEED, progress=False)
    assert again.equals(world["shifted"])
    ts = world["shifted"].column("timestamp").to_numpy()
    assert ts.min() >= SYNTH.start + SYNTH.days * 86400 and ts.max() < SYNTH.start + (SYNTH.days + 4) * 86400
    same_items = np.isin(world["same"].column("item_id").to_numpy(), world["base"].column("item_id").to_numpy())
    new_items = np.isin(world["shifted"].column("item_id").to_numpy(), world["base"].column("item_id").to_numpy())
    assert same_items.mean() > 0.9 and new_items.mean() < 0.8  # new ids only with new_item_share > 0


def test_online_quality_and_prediction_drift_from_serving_logs(world: dict) -> None:
    window = _last_day(world["same"])
    # served lists: before each of the first 1,500 interactions, a list of 10 items holding the next item
    # for every other list (HR@10 = 0.5 exactly)
    rows = window.iloc[:3000:2]
    items = np.tile(world["known"][:10], (len(rows), 1))
    hit = np.arange(len(rows)) % 2 == 0
    items[hit, 0] = rows["item_id"].to_numpy()[hit]
    exposures = pd.DataFrame(
        {
            "served_at": rows["timestamp"].to_numpy() - 0.5,
            "user_id": rows["user_id"].to_numpy(),
            "items": [" ".join(map(str, r)) for r in items],
        }
    )
    cfg = dataclasses.replace(MonitorConfig(), quality_min_lists=100)
    result = monitoring.monitor(
        world["reference"], window, world["known"], cfg, FeaturizeConfig(), exposures=exposures, offline_hr=0.8
    ).result
    quality = result.quality
    # a list served (a second) before the window's first interaction is outside the window
    assert len(rows) - 1 <= quality["lists"] <= len(rows) and quality["hr"] == pytest.approx(0.5, abs=0.002)
    assert quality["judged"] and quality["dropped"]  # 0.5 < 0.8 - 0.05
    assert result.drift  # a quality drop alone declares drift
    assert result.prediction is not None and result.prediction["recommended_items"] == 10 * quality["lists"]
    assert result.prediction["drifted"]  # 9 of 10 served items come from the 10 lowest ids' categories


def test_read_interactions_takes_the_serving_log_and_rejects_bad_files(tmp_path: Path) -> None:
    log = tmp_path / "interactions.csv"
    log.write_text("5,10,3,pv,1512400000\n5,11,3,buy,1512400100\n6,12,4,oops,1512400200\n4,13,4,cart,1512400050\n")
    events = logs.read_interactions(log)
    assert events["user_id"].tolist() == [4, 5, 5]  # unknown behaviour dropped, sorted by user then time
    assert events["behavior"].tolist() == [1, 0, 3]
    headered = tmp_path / "with_variant.csv"
    headered.write_text("user_id,item_id,category_id,behavior_type,timestamp,variant\n1,2,3,fav,1512400000,champion\n")
    assert logs.read_interactions(headered)["behavior"].tolist() == [2]
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        logs.read_interactions(tmp_path / "empty.csv")
    with pytest.raises(InputError, match="no such"):
        logs.read_interactions(tmp_path / "absent.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="header lacks"):
        logs.read_interactions(tmp_path / "other.csv")


def test_small_window_is_not_judged(world: dict) -> None:
    window = _last_day(world["shifted"]).iloc[:50]
    result = monitoring.monitor(world["reference"], window, world["known"], MonitorConfig(), FeaturizeConfig()).result
    assert result.status == "not enough data" and not result.drift


# ---------------------------------------------------------------------------------------------- the cycle


@pytest.fixture()
def project(tmp_path: Path, world: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A params.yaml in tmp_path with raw data, events.parquet and an item vocabulary (no registry)."""
    import pyarrow.parquet as pq
    import yaml

    from drlrec.features.vocab import Vocab

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    raw["paths"] = {k: str(tmp_path / v) for k, v in raw["paths"].items()}
    raw["base"]["progress"] = False
    raw["monitor"]["dvc_add"] = False
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    (tmp_path / "artifacts" / "features").mkdir(parents=True)
    pq.write_table(world["base"], raw["paths"]["events"])
    Vocab(world["known"]).save(tmp_path / "artifacts" / "features" / "item_vocab.npz")
    synth.write_csv(world["base"], raw["paths"]["raw_data"])
    for name in ("same", "shifted"):
        synth.write_csv(world[name], tmp_path / f"{name}.csv")
    shifted = world["shifted"]
    first_day = shifted.filter(pd.Series(shifted.column("timestamp").to_numpy() < SYNTH.start + 10 * 86400).to_numpy())
    synth.write_csv(first_day, tmp_path / "shifted_day1.csv")
    return {"params": params_file, "dir": tmp_path, "raw": Path(raw["paths"]["raw_data"])}


class FakeTraining:
    """Stands in for the training flow: records each trigger."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (window_start, window_end) of each training

    def __call__(self, params) -> dict:
        self.calls.append((params.ingest.window_start, params.ingest.window_end))
        return {"mode": "fake", "register": {"version": str(len(self.calls)), "promoted": True, "reason": "fake gate"}}


def test_cycle_without_drift_triggers_nothing(project: dict) -> None:
    from drlrec.config import load_params
    from drlrec.monitoring.cycle import monitoring_cycle

    training = FakeTraining()
    before = project["raw"].read_bytes()
    out = monitoring_cycle(
        load_params(project["params"]), current=str(project["dir"] / "same.csv"), trigger=training, now=1e9, track=False, log=lambda _: None
    )  # fmt: skip
    assert out["result"]["status"] == "no drift" and out["action"] == "none (no drift)"
    assert training.calls == []
    assert project["raw"].read_bytes() == before
    assert not (project["dir"] / "artifacts" / "monitoring" / "state.json").exists()
    folder = Path(out["report"]).parent
    assert {p.name for p in folder.iterdir()} >= {"report.html", "report.json", "decision.txt"}
    assert (folder / "decision.txt").read_text().startswith("no drift: ")


def test_cycle_with_drift_retrains_once_then_debounces(project: dict) -> None:
    from drlrec.config import load_params
    from drlrec.monitoring.cycle import monitoring_cycle
    from drlrec.monitoring.retrain import read_state

    training = FakeTraining()
    rows_before = len(project["raw"].read_text().splitlines())
    day1, four_days = str(project["dir"] / "shifted_day1.csv"), str(project["dir"] / "shifted.csv")
    run = lambda now, current: monitoring_cycle(  # noqa: E731
        load_params(project["params"]), current=current, trigger=training, now=now, track=False, log=lambda _: None
    )

    first = run(1e9, day1)
    assert first["result"]["drift"] and first["action"] == "retrained"
    assert len(training.calls) == 1
    # the raw data grew by the window's interactions; the retrain's window slid to end after them
    window = logs.read_interactions(day1)
    assert first["appended"]["rows"] == len(window)
    assert len(project["raw"].read_text().splitlines()) == rows_before + len(window)
    end = SYNTH.start + (SYNTH.days + 1) * 86400
    assert training.calls[0] == (end - SYNTH.days * 86400, end)
    state = read_state(project["dir"] / "artifacts" / "monitoring" / "state.json")
    assert state["last_retrain_at"] == 1e9 and state["appended_until"] == int(window["timestamp"].max())
    assert first["versioned"]["dvc"].startswith("skipped")

    # the same window again, even after the debounce period: never twice for the same data
    again = run(1e9 + 10 * 86400, day1)
    assert again["result"]["drift"] and "already triggered" in again["action"]
    # a later day's drifted data within the debounce period: debounced
    assert "debounced" in run(1e9 + 3600, four_days)["action"]
    assert len(training.calls) == 1
    # after the debounce period the new day is appended and retrains, on a window slid to its end
    later = run(1e9 + 25 * 3600, four_days)
    assert later["action"] == "retrained" and len(training.calls) == 2
    # every logged interaction newer than the last append, not only the reported window
    assert later["appended"]["rows"] == len(logs.read_interactions(four_days)) - len(window)
    assert training.calls[1][1] == end + 3 * 86400


def test_version_data_dvc_add_and_git_commit(tmp_path: Path) -> None:
    dvc = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "dvc"
    if not dvc.is_file() or shutil.which("git") is None:
        pytest.skip("dvc (in .venv) or git is absent")
    import yaml

    from drlrec.config import load_params
    from drlrec.monitoring.retrain import version_data

    def sh(*command: str) -> str:
        return subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    sh("git", "init", "-q")
    sh("git", "config", "user.email", "t@example.com")
    sh("git", "config", "user.name", "t")
    sh(str(dvc), "init", "-q")
    sh(str(dvc), "config", "core.analytics", "false")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "log.csv").write_text("1,2,3,pv,1512400000\n")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"paths": {"raw_data": str(tmp_path / "data" / "log.csv")}}))
    done = version_data(load_params(params_file), "data: test append")
    assert done["dvc"].startswith("dvc add data") and done["git"].startswith("committed data.dvc")
    assert "data: test append" in sh("git", "log", "--oneline", "-1")
    assert sh("git", "show", "--name-only", "--format=", "HEAD").split() == ["data.dvc"]
