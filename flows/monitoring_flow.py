"""The monitoring flow: Prefect drives drlrec.monitoring.cycle (the drift report of recent interactions, and
on drift a new data version and a retrain), each step as a task, I/O steps with the retries of params.flow.
What the cycle does (debounce, append, `dvc add`, window sliding) is in drlrec.monitoring; this module only
wires it: tasks, how training is triggered (the training deployment through the Prefect API when there is
one, else the training flow as a subflow) and the flow's artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from drlrec.config import Params, load_params
from drlrec.monitoring.cycle import Trigger, monitoring_cycle
from drlrec.settings import apply_offline_env, load_settings

apply_offline_env()


# ---------------------------------------------------------------------------------------------- training


def _run_training_deployment(params_path: str, overrides: list[str], params: Params) -> dict[str, Any] | None:
    """Run the training deployment on the Prefect server and wait for it; None when the server has no
    such deployment (the caller then runs the flow in this process). The deployment runs in another
    process, so it gets the params file and the window as `--set` strings (the hand-off between
    processes). The gate's decision is read back only from a completed run (a failed one leaves the
    previous decision file, which is not this run's)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    name = f"training-flow/{params.flow.deployment}"
    window = [f"ingest.window_start={params.ingest.window_start}", f"ingest.window_end={params.ingest.window_end}"]
    try:
        flow_run = run_deployment(name, parameters={"params_path": str(Path(params_path).resolve()),
                                                    "overrides": list(overrides) + window})
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


def training_trigger(params_path: str, overrides: list[str]) -> Trigger:
    """How the cycle trains on `params` (its window applied): through the training deployment when a
    Prefect server knows it (waits for the run), else in this process as a subflow given `params`."""

    def trigger(params: Params) -> dict[str, Any]:
        if load_settings().prefect_api_url:
            ran = _run_training_deployment(params_path, overrides, params)
            if ran is not None:
                return ran
        from flows.training_flow import training_flow_of

        result = training_flow_of(params)
        return {"mode": "subflow", "register": result.get("register")}

    return trigger


# ---------------------------------------------------------------------------------------------- flow


def prefect_step(params: Params) -> Callable[..., Any]:
    """The cycle's `step`: each step a Prefect task; I/O steps retry on I/O errors, params.flow.io_retries
    times, params.flow.io_retry_delay_seconds apart."""
    from flows.training_flow import retry_on_io_error

    def step(name: str, fn: Callable[..., Any], *args: Any, io: bool = False) -> Any:
        options: dict[str, Any] = {"name": name, "cache_policy": NO_CACHE}
        if io:
            options |= {"retries": params.flow.io_retries, "retry_delay_seconds": params.flow.io_retry_delay_seconds,
                        "retry_condition_fn": retry_on_io_error}
        return task(**options)(fn)(*args)

    return step


def summary_rows(cycle: dict[str, Any]) -> list[dict[str, Any]]:
    """The Prefect table artifact: one row per monitored column, then the decision and the action."""
    result = cycle["result"]
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
    overrides = list(overrides or [])
    params = load_params(params_path, tuple(overrides))
    cycle = monitoring_cycle(params, training_trigger(params_path, overrides), current, window_days,
                             step=prefect_step(params), log=logger.info)
    result = cycle["result"]
    create_table_artifact(
        key="drift-summary", table=summary_rows(cycle), description=f"drift per column: {result['decision']}"
    )
    create_markdown_artifact(
        key="drift-report",
        markdown=(
            f"# Drift report {result['window']}\n\n**{result['decision']}**\n\n"
            f"Report: `{cycle['report']}` (open it in a browser)\n\nAction: {cycle['action']}\n"
        ),
        description="monitoring: decision, report path and action",
    )
    return cycle


def monitoring_deployment(params_path: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()):
    """The monitoring flow as a deployment with the cron schedule monitor.cron (time zone monitor.timezone)."""
    from flows.deploy import scheduled_deployment

    params = load_params(params_path, tuple(overrides))
    return scheduled_deployment(
        monitoring_flow, params.monitor.deployment, params.monitor.cron, params.monitor.timezone, params_path,
        overrides, "drlrec: Evidently drift of recent interactions; on drift append + dvc add + retrain",
        ["drlrec", "monitoring"],
    )
