"""The monitoring flow: drift report of recent interactions, and on drift a new data version and a retrain.

One cycle (`monitoring_cycle`, a plain function; `monitoring_flow` runs each step as a Prefect task):

1. load the window (the last monitor.window_days of the interaction log, or a raw batch);
2. run the Evidently report against the training period (drlrec.monitoring) and write it;
3. log it to MLflow (metrics per column, the report folder as artifacts);
4. on drift (drifted share >= monitor.drift_share, or an online-quality drop), unless debounced:
   append the window's new interactions to the raw data, `dvc add` it and git-commit the .dvc file
   (where the project allows), then run the training flow (its deployment through the Prefect API
   when there is one, else as a subflow) on a window slid to the new data; the registry gate decides.

Debounce: a state file (paths.monitoring/state.json) keeps the last retrain's time, the hash of the data
that triggered it and how far the raw data was extended, so one drift does not retrain on every run:
no second retrain within monitor.debounce_hours, and never twice for the same data.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from drlrec.atomic import write_json
from drlrec.config import Params, load_params
from drlrec.settings import apply_offline_env, load_settings

apply_offline_env()

STATE_FILE = "state.json"
_DAY = 86400

Step = Callable[..., Any]


# ---------------------------------------------------------------------------------------------- state


def state_path(params: Params) -> Path:
    return Path(params.paths.monitoring) / STATE_FILE


def read_state(path: str | Path) -> dict[str, Any]:
    """The debounce state ({} before the first retrain)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}  # a state file cut by a crash (writes are atomic, so only by hand): start afresh


def window_hash(window) -> str:
    """Content hash of a window of interactions (order-independent: the rows are sorted first)."""
    from drlrec.monitoring import sort_events

    frame = sort_events(window)
    digest = hashlib.sha256()
    for column in ("user_id", "item_id", "category_id", "behavior", "timestamp"):
        digest.update(frame[column].to_numpy().astype("int64").tobytes())
    return digest.hexdigest()[:16]


def should_retrain(state: dict[str, Any], data_hash: str, now: float, debounce_hours: float) -> tuple[bool, str]:
    """The debounce rule: (retrain?, why)."""
    if state.get("last_data_hash") == data_hash:
        return False, f"this window (data {data_hash}) already triggered a retrain"
    last = state.get("last_retrain_at")
    if last is not None and now - float(last) < debounce_hours * 3600:
        hours = (now - float(last)) / 3600
        return False, f"debounced: last retrain {hours:.1f} h ago (< monitor.debounce_hours {debounce_hours:g})"
    return True, "drift and no retrain within the debounce period"


# ---------------------------------------------------------------------------------------------- data


def append_new_interactions(params: Params, events, appended_until: int) -> dict[str, Any]:
    """Append the interactions later than `appended_until` to the raw data (header-less raw CSV, one write
    and fsync); returns rows appended and the newest timestamp."""
    import os

    import numpy as np

    from drlrec.errors import InputError
    from drlrec.schema import BEHAVIORS

    raw = Path(params.paths.raw_data)
    if raw.suffix == ".gz":
        raise InputError(f"{raw}: cannot append to a compressed raw log; use a plain CSV for paths.raw_data")
    new = events[events["timestamp"].to_numpy() > appended_until]
    if new.empty:
        return {"rows": 0, "until": int(appended_until), "path": str(raw)}
    names = np.asarray(BEHAVIORS, dtype=object)[new["behavior"].to_numpy().astype(np.int64)]
    lines = (
        new["user_id"].astype(str) + "," + new["item_id"].astype(str) + "," + new["category_id"].astype(str)
        + "," + names + "," + new["timestamp"].astype(str)
    )  # fmt: skip
    payload = ("\n".join(lines) + "\n").encode()
    needs_newline = raw.is_file() and raw.stat().st_size > 0 and not raw.read_bytes()[-1:] == b"\n"
    fd = os.open(raw, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (b"\n" if needs_newline else b"") + payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"rows": int(len(new)), "until": int(new["timestamp"].max()), "path": str(raw)}


def _repo_root(start: Path, marker: str) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / marker).exists():
            return folder
    return None


def version_data(params: Params, message: str) -> dict[str, Any]:
    """`dvc add` the raw data's folder and git-commit its .dvc file, each where the project allows
    (monitor.dvc_add / git_commit, a DVC or git repository around the data). Returns what was done."""
    cfg = params.monitor
    data_dir = Path(params.paths.raw_data).resolve().parent
    done: dict[str, Any] = {"dvc": None, "git": None}
    dvc_root = _repo_root(data_dir, ".dvc") if cfg.dvc_add else None
    if dvc_root is None:
        done["dvc"] = "skipped (monitor.dvc_add is false)" if not cfg.dvc_add else "skipped (no DVC repository)"
        return done
    dvc = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "dvc"
    command = [str(dvc) if dvc.is_file() else "dvc", "add", str(data_dir.relative_to(dvc_root))]
    out = subprocess.run(command, cwd=dvc_root, capture_output=True, text=True)
    if out.returncode != 0:
        done["dvc"] = f"failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}"
        return done
    dvc_file = data_dir.with_name(data_dir.name + ".dvc")
    done["dvc"] = f"dvc add {data_dir.relative_to(dvc_root)} -> {dvc_file.name}"
    git_root = _repo_root(dvc_root, ".git") if cfg.git_commit else None
    if git_root is None:
        done["git"] = "skipped (monitor.git_commit is false)" if not cfg.git_commit else "skipped (no git repository)"
        return done
    rel = str(dvc_file.relative_to(git_root))
    subprocess.run(["git", "add", rel], cwd=git_root, capture_output=True, text=True)
    # a pathspec commit records only the .dvc file, whatever else is staged
    out = subprocess.run(["git", "commit", "-m", message, "--", rel], cwd=git_root, capture_output=True, text=True)
    if out.returncode == 0:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=git_root, capture_output=True, text=True)
        done["git"] = f"committed {rel} ({sha.stdout.strip()})"
    else:
        done["git"] = f"not committed: {(out.stdout or out.stderr).strip().splitlines()[-1:]}"
    return done


def slid_window(params: Params, newest: int) -> list[str]:
    """Overrides that move the ingest window (same length, whole days from the old start) to end after
    the newest appended interaction; [] when the data does not reach past the current window."""
    start, end = params.ingest.window_start, params.ingest.window_end
    if newest < end:
        return []
    new_end = start + math.ceil((newest + 1 - start) / _DAY) * _DAY
    return [f"ingest.window_start={new_end - (end - start)}", f"ingest.window_end={new_end}"]


# ---------------------------------------------------------------------------------------------- training


def _run_training_deployment(params_path: str, overrides: list[str], params: Params) -> dict[str, Any] | None:
    """Run the training deployment on the Prefect server and wait for it; None when the server has no
    such deployment (the caller then runs the flow in this process). The gate's decision is read back
    only from a completed run (a failed one leaves the previous decision file, which is not this run's)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    name = f"training-flow/{params.flow.deployment}"
    try:
        flow_run = run_deployment(name, parameters={"params_path": str(Path(params_path).resolve()), "overrides": overrides})
    except ObjectNotFound:
        return None
    completed = flow_run.state is not None and flow_run.state.is_completed()
    decision_path = Path(params.paths.registry)
    decision = json.loads(decision_path.read_text()) if completed and decision_path.is_file() else None
    return {
        "mode": f"deployment {name}",
        "flow_run": flow_run.name,
        "state": flow_run.state.name if flow_run.state else None,
        "register": decision,
    }


def trigger_training(params_path: str, overrides: list[str], params: Params) -> dict[str, Any]:
    """Run the training flow: through its deployment when a Prefect server knows it (waits for the run),
    else in this process as a subflow. Returns how it ran and the registry gate's decision."""
    if load_settings().prefect_api_url:
        ran = _run_training_deployment(params_path, overrides, params)
        if ran is not None:
            return ran
    from flows.training_flow import training_flow

    result = training_flow(params_path=str(params_path), overrides=list(overrides))
    return {"mode": "subflow", "register": result.get("register")}


# ---------------------------------------------------------------------------------------------- cycle


def _plain_step(name: str, fn: Callable[..., Any], *args: Any, io: bool = False) -> Any:
    return fn(*args)


def _log_to_mlflow(result: dict[str, Any], folder: str) -> str | None:
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
    params_path: str = "params.yaml",
    overrides: list[str] | None = None,
    current: str | None = None,
    window_days: float | None = None,
    trigger: Callable[[str, list[str], Params], dict[str, Any]] = trigger_training,
    now: float | None = None,
    step: Step = _plain_step,
    log: Callable[[str], None] = print,
    track: bool = True,
) -> dict[str, Any]:
    """One monitoring cycle (see the module docstring); returns the decision, the report and what was done.

    `trigger(params_path, overrides, params)` runs training (injectable for tests); `now` is the clock of
    the debounce (default: time.time()); `step(name, fn, *args, io=...)` runs one step (Prefect task in
    the flow); `track` logs to MLflow."""
    from drlrec import monitoring
    from drlrec.data.logs import read_interactions

    overrides = list(overrides or [])
    now = time.time() if now is None else float(now)
    base_params = load_params(params_path, tuple(overrides))
    state_file = state_path(base_params)
    state = read_state(state_file)
    # after a retrain on a slid window, the reference is that window's training period
    active = overrides + list(state.get("training_overrides", []))
    params = load_params(params_path, tuple(active))

    log_events = step("load-log", read_interactions, current or params.paths.interactions, io=True)
    window = monitoring.window_of(log_events, params.monitor.window_days if window_days is None else window_days)
    run, folder, champion = step("drift-report", monitoring.monitor_window, params, window)
    result = run.result.to_dict()
    log(f"monitor: {len(window):,} interactions vs the training period ({champion.source})")
    log(f"monitor: {result['decision']}")
    log(f"monitor: report {Path(folder) / 'report.html'}")
    out: dict[str, Any] = {"result": result, "report": str(Path(folder) / "report.html"), "retrain": None}
    if track:
        out["mlflow_run_id"] = step("log-mlflow", _log_to_mlflow, result, str(folder), io=True)

    if not result["drift"]:
        out["action"] = "none (no drift)" if result["status"] == "no drift" else f"none ({result['status']})"
        return out
    if not params.monitor.retrain:
        out["action"] = "none (monitor.retrain is false)"
        return out
    data_hash = window_hash(window)
    go, why = should_retrain(state, data_hash, now, params.monitor.debounce_hours)
    if not go:
        out["action"] = f"none ({why})"
        log(f"monitor: drift, no retrain: {why}")
        return out

    appended_until = int(state.get("appended_until", params.ingest.window_end - 1))
    # every interaction of the log newer than what the raw data already holds, not only the window
    appended = step("append-data", append_new_interactions, params, log_events, appended_until, io=True)
    log(f"monitor: appended {appended['rows']:,} new interactions to {appended['path']}")
    versioned = step(
        "version-data", version_data, params, f"data: append {appended['rows']} interactions (drift window {result['window']})", io=True
    )  # fmt: skip
    log(f"monitor: data version: {versioned}")
    training_overrides = list(state.get("training_overrides", []))
    if params.monitor.slide_window:
        training_overrides = slid_window(base_params, appended["until"]) or training_overrides
    retrain = trigger(str(params_path), overrides + training_overrides, params)
    decision = (retrain or {}).get("register") or {}
    log(f"monitor: retrained ({retrain.get('mode')}); registry gate: {decision.get('reason', decision)}")
    state |= {
        "last_retrain_at": now,
        "last_data_hash": data_hash,
        "last_window": result["window"],
        "appended_until": appended["until"],
        "training_overrides": training_overrides,
        "last_decision": decision,
    }
    write_json(state_file, state)
    out |= {"action": "retrained", "appended": appended, "versioned": versioned, "retrain": retrain,
            "training_overrides": training_overrides}  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------- flow


def _prefect_step(name: str, fn: Callable[..., Any], *args: Any, io: bool = False) -> Any:
    from flows.training_flow import retry_on_io_error

    options: dict[str, Any] = {"name": name, "cache_policy": NO_CACHE}
    if io:
        options |= {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": retry_on_io_error}
    return task(**options)(fn)(*args)


def summary_rows(out: dict[str, Any]) -> list[dict[str, Any]]:
    """The Prefect table artifact: one row per monitored column, then the decision and the action."""
    result = out["result"]
    rows = [
        {"item": name, "score": round(c["score"], 4), "threshold": c["threshold"], "drift": c["drifted"]}
        for name, c in result["columns"].items()
    ]
    rows.append({"item": "decision", "score": round(result["drift_share"], 4), "threshold": result["threshold"],
                 "drift": result["drift"]})  # fmt: skip
    return rows


@flow(name="monitoring-flow", log_prints=True)
def monitoring_flow(
    params_path: str = "params.yaml",
    overrides: list[str] | None = None,
    current: str | None = None,
    window_days: float | None = None,
) -> dict[str, Any]:
    """Drift report of the latest interactions; on drift a new data version, a retrain and the gate."""
    logger = get_run_logger()
    out = monitoring_cycle(params_path, overrides, current, window_days, step=_prefect_step, log=logger.info)
    result = out["result"]
    create_table_artifact(
        key="drift-summary", table=summary_rows(out), description=f"drift per column: {result['decision']}"
    )
    create_markdown_artifact(
        key="drift-report",
        markdown=(
            f"# Drift report {result['window']}\n\n**{result['decision']}**\n\n"
            f"Report: `{out['report']}` (open it in a browser)\n\nAction: {out['action']}\n"
        ),
        description="monitoring: decision, report path and action",
    )
    return out


def monitoring_deployment(params_path: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()):
    """The monitoring flow as a deployment with the cron schedule monitor.cron (time zone monitor.timezone)."""
    from flows.deploy import scheduled_deployment

    params = load_params(params_path, tuple(overrides))
    return scheduled_deployment(
        monitoring_flow, params.monitor.deployment, params.monitor.cron, params.monitor.timezone, params_path,
        overrides, "drlrec: Evidently drift of recent interactions; on drift append + dvc add + retrain",
        ["drlrec", "monitoring"],
    )
