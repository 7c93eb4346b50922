"""`drlrec evaluate` (DVC stage evaluate): one model on the test period, under the shared protocol."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drlrec.config import Params
from drlrec.stages.common import (
    EvalInputs,
    evaluate_one,
    fit_for_evaluation,
    flat_metrics,
    log_events_input,
    say,
    trained_dqn_lstm,
)


@dataclass(frozen=True)
class EvaluateResult:
    """What `drlrec evaluate` produced."""

    evaluation: Any
    """drlrec.evaluate.Evaluation: every metric with its CI, per-event ranks, counts."""
    payload: dict[str, Any]
    """What paths.metrics holds (the protocol and the evaluation)."""
    mlflow_run_id: str


def evaluate_stage(params: Params, model_name: str = "dqn_lstm", features_dir: str | Path | None = None) -> EvaluateResult:
    """Evaluate one model on the test period with the shared protocol; write metrics.json, a markdown
    table and a bar chart; log them to MLflow. dqn_lstm is read from paths.model (the train stage's
    output); any other model is fitted on the train split first with its budget from params."""
    import dataclasses

    from drlrec.atomic import write_json, write_text
    from drlrec.evaluate import full_table, markdown_table, protocol_text
    from drlrec.plots import metric_bars
    from drlrec.tracking import start_run

    inputs = EvalInputs(Path(features_dir or params.paths.features))
    protocol = protocol_text(params.evaluate, params.base.seed)
    reports = Path(params.paths.reports)
    from drlrec import runinfo

    train_run = runinfo.train_run_id(params) if model_name == "dqn_lstm" else None
    with start_run(f"evaluate-{model_name}", tags={"model": model_name, "stage": "evaluate", "train_run_id": train_run or ""},
                   parent_run_id=train_run) as run:
        run.log_params({"model": model_name, "base.seed": params.base.seed, "evaluate": dataclasses.asdict(params.evaluate)})
        log_events_input(run, params, "evaluate")
        model = (
            trained_dqn_lstm(params) if model_name == "dqn_lstm" else fit_for_evaluation(params, model_name, inputs)
        )
        evaluation = evaluate_one(params, model, model_name, inputs)
        payload = {"protocol": protocol, **evaluation.to_dict()}
        write_json(params.paths.metrics, payload)
        md = reports / f"metrics_{model_name}.md"
        write_text(
            md,
            f"# {model_name}: test period\n\n"
            + full_table(evaluation)
            + "\n"
            + markdown_table([evaluation], protocol),
        )
        png = metric_bars([evaluation], reports / f"metrics_{model_name}.png")
        run.log_metrics({**flat_metrics(evaluation), "evaluate/seconds": evaluation.seconds})
        run.log_dict(payload, "metrics.json")
        if model_name == "dqn_lstm" and features_dir is None:
            from drlrec import runinfo

            runinfo.record(params, "evaluate", mlflow_run_id=run.run_id, seconds=evaluation.seconds)
        run.log_artifact(md)
        run.log_artifact(png)
    ni = evaluation.groups["next_item"]["ndcg_at_10"]
    npur = evaluation.groups["next_purchase"]["ndcg_at_10"]
    say(
        f"evaluate: {model_name} test NDCG@10 next item {ni.value:.4f} [{ni.low:.4f}, {ni.high:.4f}], next purchase "
        f"{npur.value:.4f} [{npur.low:.4f}, {npur.high:.4f}] ({evaluation.counts['next_item_events']:,} events, "
        f"{evaluation.seconds:.1f}s) -> {params.paths.metrics}"
    )
    return EvaluateResult(evaluation, payload, run.run_id)
