"""The training flow: ingest -> validate -> featurize -> train -> evaluate -> register, as Prefect tasks.
With scale.partitions > 1, ingest and featurize run per user-hash partition on Dask (flows/partitioned.py).

Each task wraps one whole stage function of drlrec.stages (the same function the CLI and `dvc repro`
call), so the three drivers never diverge. Only I/O tasks retry (reading the raw log, talking to the
registry), and only on I/O errors; a failed expectation suite fails the flow at once with the
expectation's message. The flow leaves Prefect artifacts: the validation result, the metrics table, the
MLflow run (id and link) and the registry gate's decision.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from drlrec.config import Params, load_params
from drlrec.settings import apply_offline_env

apply_offline_env()

#: retried I/O failures (a flaky disk or network share, an MLflow server restarting); never data errors
IO_ERRORS = (OSError, ConnectionError, TimeoutError)


def retry_on_io_error(task_, task_run, state) -> bool:
    """Prefect retry condition: retry only when the task failed with an I/O error."""
    try:
        state.result()
    except IO_ERRORS:
        return True
    except BaseException:
        return False
    return False


def _io_task(name: str):
    """A task that may retry, only on I/O errors; the flow sets how often from params (flow.io_retries)."""
    return task(name=name, retries=0, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)


def _with_io_retries(task_, params: Params):
    """`task_` with the retries and delay of params.flow (the I/O tasks only)."""
    return task_.with_options(
        retries=params.flow.io_retries, retry_delay_seconds=params.flow.io_retry_delay_seconds
    )


def _compute_task(name: str):
    return task(name=name, retries=0, cache_policy=NO_CACHE)


# ---------------------------------------------------------------------------------------------- tasks


@_io_task("ingest")
def ingest(params: Params) -> dict[str, Any]:
    from drlrec.stages import ingest_stage

    return ingest_stage(params).to_dict()


def validation_markdown(summary: dict[str, Any], params: Params) -> str:
    """The validation result as markdown: outcome, counts and every failed expectation."""
    ok = summary.get("success")
    lines = [
        f"# Validation: {'passed' if ok else 'FAILED'}",
        "",
        f"{summary.get('successful_expectations', 0)} of {summary.get('evaluated_expectations', 0)} expectations "
        f"passed on {summary.get('rows', 0):,} rows of `{params.paths.events}` (suite `{params.paths.expectations}`; "
        f"details in `{params.paths.validation}`).",
    ]
    failed = summary.get("failed_expectations") or []
    if failed:
        lines += ["", "| expectation | column | unexpected | observed |", "|---|---|---:|---|"]
        for f in failed:
            column = (f.get("kwargs") or {}).get("column", "")
            lines.append(f"| {f.get('expectation')} | {column} | {f.get('unexpected_count')} | {f.get('observed_value')} |")
    return "\n".join(lines)


@task(name="validate", retries=0, cache_policy=NO_CACHE)
def validate(params: Params) -> dict[str, Any]:
    """Validate, and publish the result as an artifact whether it passed or not. A failed suite raises
    ValidationFailed with the failing expectation's message, which fails the flow (no retry)."""
    import json
    from pathlib import Path

    from drlrec.errors import ValidationFailed
    from drlrec.stages import validate_stage

    try:
        summary = validate_stage(params).to_dict()
    except ValidationFailed:
        path = Path(params.paths.validation)
        if path.is_file():
            create_markdown_artifact(
                key="validation",
                markdown=validation_markdown(json.loads(path.read_text()), params),
                description="Great Expectations result of the validate stage",
            )
        raise
    create_markdown_artifact(
        key="validation",
        markdown=validation_markdown(summary, params),
        description="Great Expectations result of the validate stage",
    )
    return {k: summary[k] for k in ("success", "rows", "evaluated_expectations", "successful_expectations")}


@_compute_task("featurize")
def featurize(params: Params) -> dict[str, Any]:
    from drlrec.stages import featurize_stage

    return featurize_stage(params)


@_compute_task("train")
def train(params: Params) -> dict[str, Any]:
    from drlrec.stages import train_stage

    result = train_stage(params)
    return {"mlflow_run_id": result.mlflow_run_id, **result.metrics}


@_compute_task("evaluate")
def evaluate(params: Params) -> dict[str, Any]:
    from drlrec.stages import evaluate_stage

    return evaluate_stage(params).payload


@_io_task("register")
def register(params: Params, metrics: dict[str, Any]) -> dict[str, Any]:
    from drlrec.stages import register_stage

    return register_stage(params, metrics=metrics)


# ---------------------------------------------------------------------------------------------- artifacts


def metrics_markdown(metrics: dict[str, Any], groups: tuple[str, ...] = ("next_item", "next_purchase")) -> str:
    """A markdown table of the evaluation metrics (value and 95% CI) of the groups named."""
    lines = ["| target | metric | value | 95% CI |", "|---|---|---:|---|"]
    for group in groups:
        for name, entry in metrics.get("metrics", {}).get(group, {}).items():
            lines.append(
                f"| {group} | {name} | {entry['value']:.4f} | [{entry['ci_low']:.4f}, {entry['ci_high']:.4f}] |"
            )
    counts = metrics.get("counts", {})
    return "\n".join(lines) + "\n\n" + ", ".join(f"{k}: {v:,}" for k, v in counts.items())


def mlflow_run_link(run_id: str) -> str:
    """Where the MLflow UI shows a run: the tracking server when MLFLOW_TRACKING_URI is http(s), else the
    address `mlflow ui` serves on by default."""
    from drlrec.tracking import default_tracking_uri

    uri = default_tracking_uri()
    base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base}/#/runs/{run_id}"


# ---------------------------------------------------------------------------------------------- flow


@flow(name="training-flow", log_prints=True)
def training_flow(params_path: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    """Run the whole training pipeline once and let the registry gate decide on @champion.

    `params_path`: the params.yaml to use; `overrides`: `section.key=value` strings, as `--set` takes (the
    deployment's parameters). Params are built once, here; the tasks pass their results on."""
    return run_training(load_params(params_path, tuple(overrides or ())))


@flow(name="training-flow", log_prints=True, validate_parameters=False)
def training_flow_of(params: Params) -> dict[str, Any]:
    """The training flow on `params` already built (the monitoring cycle's retrain, in process)."""
    return run_training(params)


def run_training(params: Params) -> dict[str, Any]:
    """The training flow's tasks and artifacts, inside a running flow."""
    logger = get_run_logger()
    if params.scale.partitions > 1:
        # the data stages per user-hash partition on Dask (flows/partitioned.py): same outputs, in parallel
        from flows.partitioned import partitioned_featurize_flow, partitioned_ingest_flow

        results: dict[str, Any] = {"ingest": partitioned_ingest_flow(params)}
        results["validate"] = validate(params)
        results["featurize"] = partitioned_featurize_flow(params)
    else:
        results = {"ingest": _with_io_retries(ingest, params)(params)}
        results["validate"] = validate(params)
        results["featurize"] = featurize(params)
    results["train"] = train(params)
    results["evaluate"] = evaluate(params)
    results["register"] = _with_io_retries(register, params)(params, results["evaluate"])

    run_id = results["train"]["mlflow_run_id"]
    decision = results["register"]
    create_markdown_artifact(
        key="metrics",
        markdown=f"# DQN-LSTM test metrics\n\n{results['evaluate'].get('protocol', '')}\n\n"
        + metrics_markdown(results["evaluate"]),
        description="evaluate stage: test-period metrics with bootstrap CIs",
    )
    create_link_artifact(
        key="mlflow-run",
        link=mlflow_run_link(run_id),
        link_text=f"MLflow run {run_id}",
        description=f"MLflow training run {run_id}",
    )
    champion = decision["champion_value"]
    create_markdown_artifact(
        key="registry-gate",
        markdown=(
            f"# Registry gate\n\n| | version | {decision['metric']} |\n|---|---|---:|\n"
            f"| challenger | {decision['version']} | {decision['challenger_value']:.4f} |\n"
            f"| champion before | {decision['champion_version'] or '-'} | "
            f"{'-' if champion is None else f'{champion:.4f}'} |\n\n"
            f"**{'Promoted' if decision['promoted'] else 'Not promoted'}**: {decision['reason']}. "
            f"@champion is now version {decision['champion']}. MLflow training run `{run_id}`."
        ),
        description="the registry's promotion decision",
    )
    logger.info(
        "registered version %s: %s (champion is version %s)",
        decision["version"],
        "promoted" if decision["promoted"] else "not promoted",
        decision["champion"],
    )
    return results


if __name__ == "__main__":
    training_flow()
