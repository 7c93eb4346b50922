"""What the stage shells share: the stderr progress line, the events input of an MLflow run, and the
evaluation inputs and helpers of evaluate, compare and simulate (no stage module imports another)."""

from __future__ import annotations

import sys
from pathlib import Path

from drlrec.config import Params


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def log_events_input(run, params: Params, context: str) -> None:
    """Declare paths.events as the run's input dataset (its md5, as DVC records it), tagged with the raw
    log's DVC md5 (data.dvc); nothing when there is no events file (a stage run on features alone)."""
    from drlrec.registry import data_hash

    events = Path(params.paths.events)
    if events.is_file():
        run.log_input_file(events, "events", context, tags={"raw_data_dvc_md5": data_hash("data.dvc")})


class EvalInputs:
    """The featurize outputs evaluation needs: train/valid/test splits, vocab sizes, item statistics."""

    def __init__(self, features: Path) -> None:
        import numpy as np

        from drlrec.features.transitions import load_split
        from drlrec.models.base import TrainingData, item_category_map

        self.features = features
        self.data = TrainingData.load(features)
        self.test = load_split(features, "test")
        n_items = self.data.n_items
        self.item_category = item_category_map([self.data.train, self.data.valid, self.test], n_items)
        self.item_counts = np.bincount(self.data.train.action_item.astype(np.int64), minlength=n_items)[
            :n_items
        ]


def evaluate_one(params: Params, model, name: str, inputs: EvalInputs):
    from drlrec.evaluate import evaluate_model

    return evaluate_model(
        model,
        inputs.test,
        [inputs.data.train, inputs.data.valid],
        inputs.item_category,
        inputs.item_counts,
        params.evaluate,
        seed=params.base.seed,
        name=name,
        progress=params.base.progress,
    )


def trained_dqn_lstm(params: Params):
    from drlrec.devices import resolve_device
    from drlrec.errors import InputError
    from drlrec.models.dqn_lstm import DQNLSTM

    path = Path(params.paths.model) / "model.pt"
    if not path.is_file():
        raise InputError(f"{path}: no trained DQN-LSTM (run `drlrec train` first)")
    return DQNLSTM.load(path, device=resolve_device(params.train.device))


def fit_for_evaluation(params: Params, name: str, inputs: EvalInputs, track=None):
    """Train model `name` on the train split with the budget from params (dqn_lstm: the train: section)."""
    if name == "dqn_lstm":
        from drlrec.model_factory import build_model
        from drlrec.rl.dqn import fit_dqn_lstm

        model = build_model("dqn_lstm", inputs.data.n_items, inputs.data.n_categories, params)
        return fit_dqn_lstm(model, inputs.data, params.train, params.base.seed, track=track,
                            progress=params.base.progress).model
    from drlrec.model_factory import fit_model

    return fit_model(name, inputs.data, params, progress=params.base.progress)


def flat_metrics(evaluation) -> dict[str, float]:
    import math

    out = {}
    for group, metrics in evaluation.groups.items():  # each value with its CI, comparable across runs
        for metric, iv in metrics.items():
            for suffix, value in (("", iv.value), ("_ci_low", iv.low), ("_ci_high", iv.high)):
                if not math.isnan(value):
                    out[f"test/{group}/{metric}{suffix}"] = value
    return out
