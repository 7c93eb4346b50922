"""`drlrec register` (DVC stage register): the trained model as a registry version, and the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drlrec.config import Params
from drlrec.stages.common import say


def register_stage(params: Params, tracking_uri: str | None = None, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bundle the trained DQN-LSTM, register it as a new version with @challenger, and let the gate
    decide whether it becomes @champion (see registry.py). Writes the decision to paths.registry.
    `metrics`: the evaluate stage's payload when the caller has it (the flow); else paths.metrics is read
    (the hand-off between the `drlrec evaluate` and `drlrec register` processes)."""
    from drlrec.atomic import write_json
    from drlrec.bundle import write_bundle
    from drlrec.errors import InputError
    from drlrec.evaluate import evaluate_bundle
    from drlrec.registry import evaluation_split_id, register_model

    metrics_path = Path(params.paths.metrics)
    if metrics is None:
        if not metrics_path.is_file():
            raise InputError(f"{metrics_path}: no evaluation metrics (run `drlrec evaluate` first)")
        metrics = json.loads(metrics_path.read_text())
    if metrics.get("model") != "dqn_lstm":
        raise InputError(f"{metrics_path}: holds metrics of {metrics.get('model')!r}, not the DQN-LSTM")
    from drlrec import runinfo

    trained = runinfo.train_record(params)  # {} when the record is of another model file
    train_run_id = trained.get("mlflow_run_id")
    if train_run_id is None:
        say("register: no train run recorded for this model.pt (artifacts/runinfo/train.json): the version is not linked to one")
    bundle = write_bundle(params.paths.model, params.paths.features, params.featurize, params.paths.bundle)
    decision = register_model(
        params,
        bundle,
        metrics,
        split_id=evaluation_split_id(params.paths.events, params),
        train_run_id=train_run_id,
        model_uri=trained.get("model_uri"),
        ope_check=lambda: _ope_check(params, bundle, tracking_uri),
        tracking_uri=tracking_uri,
        reevaluate=lambda champion: evaluate_bundle(champion, params),
    )
    write_json(params.paths.registry, decision)
    champ = decision["champion_value"]
    say(
        f"register: {decision['model_name']} version {decision['version']} (@challenger) "
        f"{decision['metric']} {decision['challenger_value']:.4f} vs champion "
        + ("none" if champ is None else f"v{decision['champion_version']} {champ:.4f} ({decision['champion_value_source']})")
        + f" -> {'PROMOTED to @champion' if decision['promoted'] else 'not promoted'}: {decision['reason']}"
    )
    return decision


def _ope_check(params: Params, bundle_dir: Path, tracking_uri: str | None):
    """register.ope_gate: the challenger (the bundle) estimated from the service's logs (drlrec.ope_logs)."""
    from drlrec.bundle import load_bundle
    from drlrec.ope_logs import estimate_policy, ope_gate
    from drlrec.registry import alias_version, load_model

    result = estimate_policy(params, load_bundle(bundle_dir), "challenger",
                             logger_loader=lambda ref: load_model(ref, tracking_uri=tracking_uri, name=params.register.model_name))
    return ope_gate(result, params.register.ope_reward, params.register.ope_margin,
                    champion_version=alias_version("champion", tracking_uri, name=params.register.model_name))
