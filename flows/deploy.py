"""`drlrec deploy`: serve the training flow (and the monitoring flow, when present) as scheduled deployments.

The deployments are served by this process (Prefect's `serve`): it registers them with the Prefect server
named by PREFECT_API_URL, with the cron schedules from params.yaml, and runs their flow runs as local
subprocesses until interrupted. Open the Prefect UI at the server's address to see the schedules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drlrec.config import load_params
from drlrec.errors import ConfigError
from drlrec.settings import apply_offline_env, load_settings


def scheduled_deployment(flow_, name: str, cron: str, timezone: str, params_path: str,
                         overrides: list[str] | tuple[str, ...], description: str, tags: list[str]):
    """`flow_` as a deployment on a cron schedule, called with (params_path as an absolute path, overrides)."""
    from prefect.schedules import Cron

    return flow_.to_deployment(
        name=name,
        schedule=Cron(cron, timezone=timezone),
        parameters={"params_path": str(Path(params_path).resolve()), "overrides": list(overrides)},
        description=description,
        tags=tags,
    )


def training_deployment(params_path: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()):
    """The training flow as a deployment with the cron schedule flow.cron (time zone flow.timezone)."""
    from flows.training_flow import training_flow

    params = load_params(params_path, tuple(overrides))
    return scheduled_deployment(
        training_flow, params.flow.deployment, params.flow.cron, params.flow.timezone, params_path, overrides,
        "drlrec: ingest -> validate -> featurize -> train -> evaluate -> register (registry gate)",
        ["drlrec", "training"],
    )


def deployments(params_path: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> list[Any]:
    """Every deployment drlrec serves: training, plus monitoring when flows.monitoring_flow provides it."""
    items = [training_deployment(params_path, overrides)]
    try:
        from flows.monitoring_flow import monitoring_deployment
    except ImportError:
        return items
    items.append(monitoring_deployment(params_path, overrides))
    return items


def serve_deployments(
    params_path: str = "params.yaml", overrides: list[str] | tuple[str, ...] = (), run_now: bool = False
) -> None:
    """Register the deployments with the Prefect server and serve them until Ctrl-C."""
    apply_offline_env()
    if not load_settings().prefect_api_url:
        raise ConfigError(
            "PREFECT_API_URL is not set: start a server (`prefect server start --host 127.0.0.1 --port 4200`) "
            "and export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    items = deployments(params_path, overrides)
    if run_now:
        from prefect.deployments import run_deployment

        deployment_id = items[0].apply()
        run = run_deployment(deployment_id, timeout=0)
        print(f"deploy: triggered flow run {run.name} ({run.id}) of {items[0].name}")
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in items)
    print(f"deploy: serving {names}; Ctrl-C stops")
    serve_until_stopped(items)


STOP_REASON = "drlrec deploy stopped ({signal}) while the run was in progress"


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (Linux /proc; elsewhere os.kill's answer)."""
    import os

    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def stop_processes(pids: list[int], grace: float = 15.0) -> None:
    """SIGTERM each flow-run process by its PID (Prefect's engine reports the run on the way out), SIGKILL
    what is still alive after `grace` seconds."""
    import os
    import signal
    import time

    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def finish_interrupted_runs(deployment_ids: list[Any], reason: str) -> list[str]:
    """Every flow run of these deployments still Pending/Running/Cancelling becomes Cancelled, and its task
    runs still Pending/Running become Crashed, each with `reason`: a stopped `drlrec deploy` leaves nothing
    "Running" in the UI for good. Returns the flow run ids it finished."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled, Crashed

    unfinished = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    done = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=list(deployment_ids)),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished)),
        ))
        for run in runs:
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                task_run_filter=TaskRunFilter(state=TaskRunFilterState(
                    type=TaskRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING])
                )),
            )
            for task in tasks:
                client.set_task_run_state(task.id, Crashed(message=reason), force=True)
            client.set_flow_run_state(run.id, Cancelled(message=reason), force=True)
            done.append(str(run.id))
    return done


def serve_until_stopped(items: list[Any]) -> None:
    """Prefect's `serve`, plus a clean stop: on SIGTERM or Ctrl-C the flow-run processes this runner started
    are stopped by PID and every run of these deployments left unfinished is marked Cancelled (its running
    task runs Crashed), where Prefect alone would leave them "Running" in the UI."""
    import asyncio

    from prefect.runner import Runner

    class StoppingRunner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            self._logger.info("SIGTERM received: stopping the flow runs in progress and marking them cancelled")
            shutdown(self, "SIGTERM")
            super().handle_sigterm(*args, **kwargs)

    finished: list[str] = []

    def shutdown(runner: Any, how: str) -> None:
        pids = [int(entry["pid"]) for entry in list(runner._flow_run_process_map.values()) if entry.get("pid")]
        stop_processes(pids)
        finished.extend(finish_interrupted_runs(deployment_ids, STOP_REASON.format(signal=how)))

    runner = StoppingRunner(pause_on_shutdown=True)
    deployment_ids = [runner.add_deployment(deployment) for deployment in items]
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        shutdown(runner, "SIGINT")
    finally:
        if finished:
            print(f"deploy: marked {len(finished)} unfinished flow run(s) cancelled: {', '.join(finished)}", flush=True)
