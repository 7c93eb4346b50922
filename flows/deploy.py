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
    from prefect import serve

    items = deployments(params_path, overrides)
    if run_now:
        from prefect.deployments import run_deployment

        deployment_id = items[0].apply()
        run = run_deployment(deployment_id, timeout=0)
        print(f"deploy: triggered flow run {run.name} ({run.id}) of {items[0].name}")
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in items)
    print(f"deploy: serving {names}; Ctrl-C stops")
    serve(*items)
