"""`drlrec tune --model NAME`: the model's Optuna study on validation NDCG@10."""

from __future__ import annotations

import json
from pathlib import Path

from drlrec.config import Params
from drlrec.stages.common import say


def tune_stage(
    params: Params,
    model: str,
    trials: int | None = None,
    timeout: float | None = None,
    write_params: str | Path | None = None,
    features_dir: str | Path | None = None,
):
    """Run or resume the Optuna study of `model` (drlrec.tune) on validation NDCG@10 until it holds `trials`
    finished trials (default tune.trials); log every trial as a nested MLflow run of one `tune-<model>` run,
    print the trials table, write <paths.tune>/<model>.json; with `write_params` (a params.yaml path), write
    the best values into that file in place. Reads train/valid only: the test split is never loaded."""
    import optuna

    from drlrec import tune
    from drlrec.atomic import write_json, write_text
    from drlrec.features.featurize import REPORT_FILE
    from drlrec.models.base import TrainingData
    from drlrec.tracking import start_run

    space = tune.search_space(model)  # unknown model or nothing to tune: one line, before any loading
    n_trials = params.tune.trials if trials is None else trials
    limit = params.tune.timeout if timeout is None else timeout
    features = Path(features_dir or params.paths.features)
    report_path = features / REPORT_FILE
    if not report_path.is_file():
        from drlrec.errors import InputError

        raise InputError(f"{report_path}: no featurize outputs (run `drlrec featurize` first)")
    data = TrainingData.load(features)
    folder = Path(params.paths.tune)
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(folder / f'{model}.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the one line per trial comes from on_trial below
    protocol = (
        f"next item on the validation period, full ranking over all items; the same {params.tune.eval_max_events:,}-event "
        f"seeded subset (seed {params.base.seed}) for every trial; fitted on the train period with the model's own "
        "budget from params; the test period is never read"
    )
    with start_run(f"tune-{model}", tags={"model": model, "stage": "tune"}) as parent:
        parent.log_params({"model": model, "trials": n_trials, "timeout": limit, "tune": params.tune.__dict__,
                           "search_space": {k: repr(v) for k, v in space.items()}})

        def on_trial(record, number, best) -> None:
            if record is None:
                say(f"tune: {model} trial {number} failed (no finite valid NDCG@10)")
                return
            with start_run(f"tune-{model}-trial-{record.number}", nested=True,
                           tags={"model": model, "stage": "tune", "trial": record.number}) as child:
                child.log_params({"trial": record.number, **record.params})
                child.log_metrics({**record.metrics, "fit_seconds": record.seconds})
            shown = ", ".join(f"{tune.short_key(k, model)}={tune.show_value(v)}" for k, v in record.params.items())
            say(f"tune: {model} trial {record.number}: valid NDCG@10 {record.value:.4f} in {record.seconds:.1f}s "
                 f"(best {best.value:.4f}, trial {best.number}) {shown}")

        result = tune.tune_model(model, data, params, n_trials, storage, timeout=limit,
                                 features_report=json.loads(report_path.read_text()), on_trial=on_trial)
        payload = tune.result_payload(result, storage, protocol)
        out = folder / f"{model}.json"
        write_json(out, payload)
        parent.set_tags({"study": result.study, "best_trial": result.best.number})
        parent.log_metrics({tune.OBJECTIVE: result.best.value, "finished_trials": len(result.trials), "ran": result.ran})
        parent.log_artifact(out)
    print(tune.format_trials(result))
    say(f"tune: study {result.study}: {result.ran} trial(s) run now, {len(result.trials)} finished in total "
         f"({storage}) -> {out}")
    if write_params is not None:
        path = Path(write_params)
        note = tune.best_params_note(result)
        write_text(path, tune.edit_params_text(path.read_text(encoding="utf-8"), result.best.params, note))
        say(f"tune: wrote {len(result.best.params)} tuned values of {model} into {path} ({note})")
    return result
