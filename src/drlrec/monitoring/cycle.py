"""One monitoring cycle: the drift report of recent interactions, and on drift a new data version and a
retrain. The Prefect flow (flows/monitoring_flow.py) only drives it: it runs each step as a task and says
how training is triggered.

1. load the window (the last monitor.window_days of the interaction log, or a raw batch);
2. run the Evidently report against the training period (drlrec.monitoring.window) and write it;
3. log it to MLflow (metrics per column, the report folder as artifacts);
4. on drift (drifted share >= monitor.drift_share, or an online-quality drop), unless debounced
   (drlrec.monitoring.retrain): append the window's new interactions to the raw data, `dvc add` it and
   git-commit the .dvc file (where the project allows), then train on a window slid to the new data; the
   registry gate decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drlrec.atomic import write_json
from drlrec.config import Params
from drlrec.monitoring.retrain import (
    append_new_interactions,
    read_state,
    should_retrain,
    slid_window,
    state_path,
    state_window,
    version_data,
    window_hash,
)

#: `step(name, fn, *args, io=...)`: runs one step of the cycle (a Prefect task in the flow; `io` steps may
#: retry on I/O errors)
Step = Callable[..., Any]
#: `trigger(params)`: trains on `params` (the active training window applied) and returns how it ran and
#: the registry gate's decision under "register"
Trigger = Callable[[Params], dict[str, Any]]


def plain_step(name: str, fn: Callable[..., Any], *args: Any, io: bool = False) -> Any:
    """Run a step as a plain call (no orchestration)."""
    return fn(*args)


def log_to_mlflow(result: dict[str, Any], folder: str) -> str | None:
    """The monitored window as an MLflow run: decision metrics, per-column drift, the report folder."""
    from drlrec.tracking import start_run

    with start_run(f"monitor-{result['window']}", tags={"stage": "monitor", "status": result["status"]}) as run:
        run.log_params({"monitor.window": result["window"], "monitor.threshold": result["threshold"]})
        metrics = {
            "monitor/drift": float(result["drift"]),
            "monitor/drift_share": result["drift_share"],
            "monitor/drifted_columns": float(len(result["drifted_columns"])),
            "monitor/rows_current": float(result["rows"]["current"]),
        }
        metrics |= {f"monitor/unknown_item_share_{k}": v for k, v in result["unknown_item_share"].items()}
        metrics |= {f"drift/{name}": c["score"] for name, c in result["columns"].items()}
        if result.get("prediction"):
            metrics["monitor/prediction_drift"] = result["prediction"]["score"]
        if result.get("quality") and result["quality"].get("hr") is not None:
            metrics[f"monitor/online_hr_at_{result['quality']['k']}"] = result["quality"]["hr"]
        run.log_metrics(metrics)
        run.log_artifact_dir(folder, "monitoring")
        return run.run_id


def monitoring_cycle(
    params: Params,
    trigger: Trigger,
    current: str | None = None,
    window_days: float | None = None,
    now: float | None = None,
    step: Step = plain_step,
    log: Callable[[str], None] = print,
    track: bool = True,
) -> dict[str, Any]:
    """One monitoring cycle (see the module docstring) on `params` (built once by the caller); returns the
    decision, the report and what was done.

    After a retrain on a slid window, the state holds that window (as data) and later cycles compare with
    its training period: `params` with the window applied (TrainingWindow.apply). `trigger(params)` trains
    (the flow runs the training flow; tests inject their own); `now` is the clock of the debounce
    (default: time.time()); `step` runs one step; `track` logs to MLflow."""
    from drlrec.data.logs import read_interactions
    from drlrec.monitoring.columns import window_of
    from drlrec.monitoring.window import monitor_window

    now = time.time() if now is None else float(now)
    state_file = state_path(params)
    state = read_state(state_file)
    window_now = state_window(state)
    active = window_now.apply(params) if window_now else params

    log_events = step("load-log", read_interactions, current or active.paths.interactions, io=True)
    window = window_of(log_events, active.monitor.window_days if window_days is None else window_days)
    run, folder, champion = step("drift-report", monitor_window, active, window)
    result = run.result.to_dict()
    log(f"monitor: {len(window):,} interactions vs the training period ({champion.source})")
    log(f"monitor: {result['decision']}")
    log(f"monitor: report {Path(folder) / 'report.html'}")
    cycle: dict[str, Any] = {"result": result, "report": str(Path(folder) / "report.html"), "retrain": None}
    if track:
        cycle["mlflow_run_id"] = step("log-mlflow", log_to_mlflow, result, str(folder), io=True)

    if not result["drift"]:
        cycle["action"] = "none (no drift)" if result["status"] == "no drift" else f"none ({result['status']})"
        return cycle
    if not active.monitor.retrain:
        cycle["action"] = "none (monitor.retrain is false)"
        return cycle
    data_hash = window_hash(window)
    go, why = should_retrain(state, data_hash, now, active.monitor.debounce_hours)
    if not go:
        cycle["action"] = f"none ({why})"
        log(f"monitor: drift, no retrain: {why}")
        return cycle

    appended_until = int(state.get("appended_until", active.ingest.window_end - 1))
    # every interaction of the log newer than what the raw data already holds, not only the window
    appended = step("append-data", append_new_interactions, active, log_events, appended_until, io=True)
    log(f"monitor: appended {appended['rows']:,} new interactions to {appended['path']}")
    versioned = step(
        "version-data", version_data, active, f"data: append {appended['rows']} interactions (drift window {result['window']})", io=True
    )  # fmt: skip
    log(f"monitor: data version: {versioned}")
    training_window = window_now
    if active.monitor.slide_window:
        training_window = slid_window(params, appended["until"]) or window_now
    retrain = trigger(training_window.apply(params) if training_window else params)
    decision = (retrain or {}).get("register") or {}
    log(f"monitor: retrained ({retrain.get('mode')}); registry gate: {decision.get('reason', decision)}")
    state.pop("training_overrides", None)  # an older state's strings: the window is kept as data now
    state |= {
        "last_retrain_at": now,
        "last_data_hash": data_hash,
        "last_window": result["window"],
        "appended_until": appended["until"],
        "training_window": None if training_window is None else training_window._asdict(),
        "last_decision": decision,
    }
    write_json(state_file, state)
    cycle |= {"action": "retrained", "appended": appended, "versioned": versioned, "retrain": retrain,
              "training_window": state["training_window"]}  # fmt: skip
    return cycle
