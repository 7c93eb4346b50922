"""The `drlrec flow` and `drlrec deploy` commands. The drivers add them to the drlrec CLI through the
`drlrec.commands` entry point (pyproject.toml), so the drlrec package never imports flows/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def register(add: Callable[..., argparse.ArgumentParser], load_params: Callable[[argparse.Namespace], Any]) -> None:
    """Add `flow` and `deploy` with drlrec.cli's `add` (common options --params/--set included)."""

    def cmd_flow(args: argparse.Namespace) -> int:
        params = load_params(args)  # a bad params file or override fails here with one line, before Prefect starts
        from drlrec.stages import summary_report
        from flows.training_flow import training_flow

        # the flow is given the file and overrides (what a deployment run gets) and builds its own Params
        state = training_flow(args.params, args.overrides, return_state=True)
        if not state.is_completed():
            print(f"drlrec: error: training flow {state.name}: {state.message}", file=sys.stderr)
            return 1
        summary_report(params)
        return 0

    def cmd_deploy(args: argparse.Namespace) -> int:
        load_params(args)
        from flows.deploy import serve_deployments

        serve_deployments(args.params, args.overrides, run_now=args.run_now)
        return 0

    add(
        "flow",
        cmd_flow,
        "run the Prefect training flow once: ingest -> validate -> featurize -> train -> evaluate -> register",
        "Run the training flow now, as Prefect tasks (PREFECT_API_URL when set, else Prefect's\n"
        "ephemeral local API). The flow run, its task runs and its artifacts (metrics table, MLflow run,\n"
        "validation result, gate decision) show in the Prefect UI when a server is used.",
    )
    p = add(
        "deploy",
        cmd_deploy,
        "serve the training flow as a Prefect deployment on the cron schedule from params (flow.cron)",
        "Create the deployment flow.deployment of the training flow with the cron schedule flow.cron\n"
        "(and the monitoring deployment when flows/monitoring_flow.py provides one) and serve them\n"
        "until interrupted (Ctrl-C). Needs a Prefect server: `prefect server start --host 127.0.0.1`\n"
        "and PREFECT_API_URL=http://127.0.0.1:4200/api. Trigger a run by hand with\n"
        "`prefect deployment run 'training-flow/drlrec-training'` or from the UI.",
    )
    p.add_argument("--run-now", action="store_true", help="also trigger one run of the training deployment at start")
