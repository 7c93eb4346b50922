"""The Optuna study of one model: seeded TPE, trial 0 = params' own values, every trial fitted at the
model's budget and scored on the same validation events, resumable from its RDB storage."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from drlrec.config import Params
from drlrec.errors import ConfigError, InputError
from drlrec.tune.space import (
    OBJECTIVE,
    TrialRecord,
    TuneResult,
    covering,
    current_values,
    search_space,
    study_name,
    suggest,
    validate_space,
    with_values,
)


def _record(trial: Any) -> TrialRecord:
    return TrialRecord(
        number=trial.number,
        value=float(trial.value),
        params=dict(trial.params),
        metrics=dict(trial.user_attrs.get("metrics", {})),
        seconds=float(trial.user_attrs.get("seconds", math.nan)),
    )


def resolved_sentinels(name: str, params: Params, data: Any) -> Params:
    """params with each data-dependent "auto" value replaced by the value the fit resolves it to, so that
    trial 0 (params' own values) is a point of the search space and fits exactly what params ships:
    the DQN-LSTM's `train.cold_item_rate` -1 is the validation period's cold share."""
    if name == "dqn_lstm" and params.train.cold_item_rate < 0:
        import dataclasses

        from drlrec.rl.dqn import cold_rate

        rate = float(cold_rate(params.train, data.valid))
        params = dataclasses.replace(params, train=dataclasses.replace(params.train, cold_item_rate=rate))
    return params


def tune_model(
    name: str,
    data: Any,
    params: Params,
    n_trials: int,
    storage: str,
    timeout: float = 0.0,
    features_report: Mapping[str, Any] | None = None,
    on_trial: Callable[[TrialRecord | None, int, TrialRecord | None], None] | None = None,
) -> TuneResult:
    """Run (or resume) the study of model `name` until it holds `n_trials` finished trials.

    `data`: TrainingData (train + valid; the test split is not part of it). `storage`: an Optuna RDB URL
    (sqlite:///...). `timeout` > 0: no new trial starts after that many seconds of this call.
    `on_trial(record, number, best)` is called after every trial of this call (record None: it failed).
    Trials left RUNNING by a killed run are marked FAIL first (one tune per study at a time).
    """
    import optuna
    from optuna.trial import TrialState

    from drlrec.evaluate import validation_evaluator
    from drlrec.model_factory import fit_model

    if n_trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {n_trials}")
    if timeout < 0:
        raise ConfigError(f"--timeout must be >= 0 seconds, got {timeout}")
    params = resolved_sentinels(name, params, data)
    space = search_space(name)
    validate_space(space, params)
    space = covering(space, params)
    if data.valid.num_transitions == 0:
        raise InputError("the validation split has no transitions: nothing to score trials on")
    evaluate, index = validation_evaluator(data.valid, params.tune.eval_max_events, params.base.seed)
    study_id = study_name(name, features_report or {}, params, space, len(index))

    study = optuna.create_study(storage=storage, study_name=study_id, direction="maximize", load_if_exists=True)
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        study.tell(stale.number, state=TrialState.FAIL)
    before = len(study.trials)
    if not study.trials:  # a new study starts from params' own values (trial 0), then searches
        study.enqueue_trial(current_values(params, space))
    # A resumed call draws from a new stream: the same seed would repeat the first call's random start.
    study.sampler = optuna.samplers.TPESampler(
        seed=params.base.seed + len(study.trials), n_startup_trials=params.tune.startup_trials
    )
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    missing = max(n_trials - done, 0)

    def objective(trial: Any) -> float:
        values = suggest(trial, space)
        started = time.perf_counter()
        model = fit_model(name, data, with_values(params, values))
        metrics = evaluate(model)
        trial.set_user_attr("metrics", {k: float(v) for k, v in metrics.items()})
        trial.set_user_attr("seconds", time.perf_counter() - started)
        return float(metrics[OBJECTIVE])

    failed = 0

    def after_trial(study: Any, trial: Any) -> None:
        nonlocal failed
        record = _record(trial) if trial.state == TrialState.COMPLETE else None
        failed += record is None
        if on_trial is not None:
            finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            best = _record(max(finished, key=lambda t: t.value)) if finished else None
            on_trial(record, trial.number, best)

    if missing:
        study.optimize(objective, n_trials=missing, timeout=timeout or None, callbacks=[after_trial])
    finished = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    if not finished:
        raise InputError(f"study {study_id}: no trial finished (every trial failed or the timeout came first)")
    records = [_record(t) for t in finished]
    return TuneResult(
        model=name,
        study=study_id,
        trials=records,
        best=_record(study.best_trial),
        ran=len(study.trials) - before,
        failed=failed,
        valid_events=len(index),
    )
