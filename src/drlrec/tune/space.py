"""The search spaces: one per model over params.yaml keys, checked against Params, and the Params of a
trial's values."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Mapping
from typing import Any, NamedTuple

from drlrec.config import Params
from drlrec.errors import ConfigError

#: the metric every trial maximizes (from drlrec.evaluate.validation_evaluator)
OBJECTIVE = "valid/ndcg_at_10"


class FloatRange(NamedTuple):
    """A float in [low, high]; `log` samples its logarithm uniformly (low must then be > 0)."""

    low: float
    high: float
    log: bool = False


class IntRange(NamedTuple):
    """An integer in [low, high] (both included); `log` samples on a log scale (low must then be >= 1)."""

    low: int
    high: int
    log: bool = False


class Choice(NamedTuple):
    """One of a few values (numbers of units, an option of a Literal)."""

    values: tuple[Any, ...]


Dimension = FloatRange | IntRange | Choice

#: model name -> {params.yaml key path -> dimension}. Training budgets (steps, patience, eval_every) are not
#: searched: every trial fits with the model's own budget, so models compare at the budget they ship with.
SEARCH_SPACES: dict[str, dict[str, Dimension]] = {
    "dqn_lstm": {
        "train.lr": FloatRange(1e-4, 3e-3, log=True),
        "train.ce_weight": FloatRange(0.1, 10.0, log=True),
        "train.gamma": FloatRange(0.5, 0.99),
        "train.batch_size": Choice((128, 256, 512)),
        "train.n_step": IntRange(1, 3),
        "train.q_negative_weight": FloatRange(0.0, 2.0),
        "train.td_item_grad": Choice((True, False)),
        "train.negative_target": Choice(("online", "target")),
        "train.cold_item_rate": FloatRange(0.0, 0.9),
        "model.item_dim": Choice((32, 64, 128)),
        "model.hidden": Choice((64, 128, 256)),
        "model.dropout": FloatRange(0.0, 0.5),
        "model.repeat_init": FloatRange(0.0, 3.0),
        "model.repeat_mode": Choice(("additive", "mixture")),
        "model.repeat_factors": Choice((False, True)),
    },
    "recent_popularity": {
        "baselines.recent_popularity.recent_days": FloatRange(0.25, 7.0, log=True),
    },
    "item_knn": {
        "baselines.item_knn.neighbours": IntRange(10, 500, log=True),
        "baselines.item_knn.window": IntRange(1, 10),
        "baselines.item_knn.recency_decay": FloatRange(0.3, 1.0),
        "baselines.item_knn.self_weight": FloatRange(0.0, 20.0),
        "baselines.item_knn.popularity_prior": FloatRange(1e-5, 0.1, log=True),
    },
    "recent_items": {
        "baselines.recent_items.decay": FloatRange(0.3, 1.0),
        "baselines.recent_items.behavior_weights.cart": FloatRange(0.25, 4.0, log=True),
        "baselines.recent_items.behavior_weights.fav": FloatRange(0.25, 4.0, log=True),
        "baselines.recent_items.behavior_weights.buy": FloatRange(0.25, 4.0, log=True),
    },
    "session_knn": {
        "baselines.session_knn.k": IntRange(20, 500, log=True),
        "baselines.session_knn.sample_size": IntRange(100, 5000, log=True),
        "baselines.session_knn.weighting": Choice(("linear", "div", "quadratic", "log", "same")),
        "baselines.session_knn.normalization": Choice(("dot", "cosine")),
        "baselines.session_knn.score_weighting": Choice(("same", "div", "linear", "quadratic", "log")),
        "baselines.session_knn.idf_weighting": FloatRange(0.0, 5.0),
    },
    "gru4rec": {
        "baselines.gru4rec.lr": FloatRange(3e-4, 1e-2, log=True),
        "baselines.gru4rec.item_dim": Choice((32, 64, 128)),
        "baselines.gru4rec.hidden": Choice((64, 128, 256)),
        "baselines.gru4rec.dropout": FloatRange(0.0, 0.5),
        "baselines.gru4rec.hidden_dropout": FloatRange(0.0, 0.5),
        "baselines.gru4rec.batch_size": Choice((32, 64, 128)),
        "baselines.gru4rec.unknown_dropout": FloatRange(0.0, 0.3),
    },
    "sasrec": {
        "baselines.sasrec.lr": FloatRange(3e-4, 1e-2, log=True),
        "baselines.sasrec.dim": Choice((32, 64, 128)),
        "baselines.sasrec.heads": Choice((1, 2, 4)),  # every dim above divides by every head count
        "baselines.sasrec.blocks": IntRange(1, 3),
        "baselines.sasrec.dropout": FloatRange(0.0, 0.5),
        "baselines.sasrec.batch_size": Choice((32, 64, 128)),
        "baselines.sasrec.unknown_dropout": FloatRange(0.0, 0.3),
    },
    "tabular_q": {
        "baselines.tabular_q.category_buckets": IntRange(2, 30),
        "baselines.tabular_q.gamma": FloatRange(0.0, 0.99),
        "baselines.tabular_q.alpha": FloatRange(0.05, 1.0),
    },
    "drr": {
        "baselines.drr.actor_lr": FloatRange(1e-4, 3e-3, log=True),
        "baselines.drr.critic_lr": FloatRange(1e-4, 3e-3, log=True),
        "baselines.drr.gamma": FloatRange(0.5, 0.99),
        "baselines.drr.tau": FloatRange(1e-3, 0.1, log=True),
        "baselines.drr.bc_weight": FloatRange(0.1, 100.0, log=True),
        "baselines.drr.dim": Choice((32, 64, 128)),
        "baselines.drr.exploration_noise": FloatRange(0.01, 0.5),
    },
}

#: models of the registry with no hyper-parameter to search, and why
NOTHING_TO_TUNE: dict[str, str] = {
    "popularity": "popularity counts train events and has no hyper-parameters",
}


class TrialRecord(NamedTuple):
    """One finished trial: its values of the search space and what it scored on validation."""

    number: int
    value: float  # valid NDCG@10
    params: dict[str, Any]  # params key path -> value
    metrics: dict[str, float]  # every valid/* metric of the trial
    seconds: float  # fit + validation scoring


class TuneResult(NamedTuple):
    """A study after `tune_model`: every finished trial of it (earlier calls included) and the best."""

    model: str
    study: str  # Optuna study name: model + hash of the data and the fixed config
    trials: list[TrialRecord]  # finished trials, by number
    best: TrialRecord
    ran: int  # trials run by this call (a resumed study runs only the missing ones)
    failed: int  # trials of this call that ended FAIL (e.g. a NaN metric)
    valid_events: int  # validation events every trial is scored on


def search_space(name: str) -> dict[str, Dimension]:
    """The search space of a registry model; ConfigError for an unknown model or one with nothing to tune."""
    from drlrec.model_factory import MODELS

    if name in NOTHING_TO_TUNE:
        raise ConfigError(f"nothing to tune for {name!r}: {NOTHING_TO_TUNE[name]}")
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    if name not in SEARCH_SPACES:
        raise ConfigError(f"no search space for {name!r} in drlrec.tune.SEARCH_SPACES; add one to tune it")
    return SEARCH_SPACES[name]


def _field(node: Any, key: str, where: str) -> tuple[Any, Any]:
    """(value, type annotation) of `key` in a config dataclass or dict node."""
    if dataclasses.is_dataclass(node):
        hints = typing.get_type_hints(type(node))
        if key not in hints:
            raise ConfigError(f"{where}: no such key in params")
        return getattr(node, key), hints[key]
    if isinstance(node, dict):
        if key not in node:
            raise ConfigError(f"{where}: no such key in params")
        return node[key], type(node[key])
    raise ConfigError(f"{where}: not a section of params")


def _walk(params: Params, key: str) -> tuple[Any, Any]:
    """(value, type annotation) at the `section.key[.key]` path of params; ConfigError naming a bad part."""
    node: Any = params
    annotation: Any = Params
    parts = key.split(".")
    for i, part in enumerate(parts):
        node, annotation = _field(node, part, ".".join(parts[: i + 1]))
    return node, annotation


def _annotation(params: Params, key: str) -> Any:
    node, annotation = _walk(params, key)
    if dataclasses.is_dataclass(node) or isinstance(node, dict):
        raise ConfigError(f"{key}: a section, not a value")
    return annotation


def validate_space(space: Mapping[str, Dimension], params: Params) -> None:
    """Every key names a value of params and every value the dimension can draw has that value's type
    (a float range on a float, an int range on an int, choices accepted by the key's type); else ConfigError."""
    from drlrec.config import _coerce

    for key, dim in space.items():
        annotation = _annotation(params, key)
        if isinstance(dim, FloatRange):
            ok = annotation is float and dim.low < dim.high and (not dim.log or dim.low > 0)
            samples: tuple[Any, ...] = (float(dim.low), float(dim.high))
        elif isinstance(dim, IntRange):
            ok = annotation is int and dim.low < dim.high and (not dim.log or dim.low >= 1)
            samples = (int(dim.low), int(dim.high))
        elif isinstance(dim, Choice):
            ok = len(dim.values) >= 2 and len(set(dim.values)) == len(dim.values)
            samples = tuple(dim.values)
        else:
            raise ConfigError(f"{key}: unknown dimension {dim!r}")
        if not ok:
            raise ConfigError(f"{key}: dimension {dim!r} does not fit a value of type {annotation}")
        for value in samples:
            try:
                coerced = _coerce(value, annotation, key)
            except ConfigError as exc:
                raise ConfigError(f"{key}: {dim!r} can draw {value!r}, which params rejects ({exc})") from exc
            if coerced != value or type(coerced) is not type(value):
                raise ConfigError(f"{key}: {dim!r} draws {value!r}, but params holds a {annotation}")


def with_values(params: Params, values: Mapping[str, Any]) -> Params:
    """A copy of params with each `section.key[.key]` path set to its value (frozen dataclasses: replaced)."""

    def put(node: Any, parts: list[str], value: Any, where: str) -> Any:
        current, _ = _field(node, parts[0], where)
        new = value if len(parts) == 1 else put(current, parts[1:], value, f"{where}.{parts[1]}")
        if isinstance(node, dict):
            return {**node, parts[0]: new}
        return dataclasses.replace(node, **{parts[0]: new})

    for key, value in values.items():
        parts = key.split(".")
        params = put(params, parts, value, parts[0])
    return params


def covering(space: Mapping[str, Dimension], params: Params) -> dict[str, Dimension]:
    """`space` widened so that it holds the value params already has for each key (a range stretched to
    it, a choice added): trial 0 of a new study can then be exactly what params ships with. (Without it,
    Optuna replaces an enqueued value outside its distribution by a random draw, and trial 0 would not be
    params: the DQN-LSTM's `repeat_init` 4.0 against a [0, 3] range did exactly that.) A log range cannot
    reach a value <= 0: that is a ConfigError naming the key."""
    out: dict[str, Dimension] = {}
    for key, dim in space.items():
        value = _walk(params, key)[0]
        if isinstance(dim, Choice):
            out[key] = dim if value in dim.values else Choice((*dim.values, value))
            continue
        if dim.log and value <= 0:
            raise ConfigError(f"{key} = {value!r} in params cannot be searched on the log range "
                              f"[{dim.low}, {dim.high}]: set a positive value")
        if dim.low <= value <= dim.high:
            out[key] = dim  # unchanged, so a study over it keeps its name
        elif isinstance(dim, IntRange):
            out[key] = IntRange(min(dim.low, int(value)), max(dim.high, int(value)), dim.log)
        else:
            out[key] = FloatRange(min(float(dim.low), float(value)), max(float(dim.high), float(value)), dim.log)
    return out


def current_values(params: Params, space: Mapping[str, Dimension]) -> dict[str, Any]:
    """The values params holds for every key of `space` (a `covering` space holds them all): the first trial
    of a new study, so that its best is never worse on validation than what params ships with. A value
    the space cannot express is a ConfigError (it would silently become a random draw)."""
    out: dict[str, Any] = {}
    for key, dim in space.items():
        node = _walk(params, key)[0]
        if isinstance(dim, Choice):
            ok = node in dim.values
        else:
            ok = isinstance(node, int | float) and not isinstance(node, bool) and dim.low <= node <= dim.high
        if not ok:
            raise ConfigError(f"{key} = {node!r} in params lies outside the search space {dim}: "
                              "trial 0 would not be params' own values (use tune.space.covering)")
        out[key] = node if isinstance(dim, Choice) else (int(node) if isinstance(dim, IntRange) else float(node))
    return out


def suggest(trial: Any, space: Mapping[str, Dimension]) -> dict[str, Any]:
    """Draw one value per key from an Optuna trial."""
    values: dict[str, Any] = {}
    for key, dim in space.items():
        if isinstance(dim, FloatRange):
            values[key] = trial.suggest_float(key, dim.low, dim.high, log=dim.log)
        elif isinstance(dim, IntRange):
            values[key] = trial.suggest_int(key, dim.low, dim.high, log=dim.log)
        else:
            values[key] = trial.suggest_categorical(key, list(dim.values))
    return values


def study_name(name: str, features_report: Mapping[str, Any], params: Params, space: Mapping[str, Dimension],
               valid_events: int) -> str:
    """`<model>-<hash>`: the hash covers the data (featurize report), the search space, the model's config
    without the searched keys, the seed and the validation events, so a study never mixes trials that
    were fitted or scored on something else."""
    from drlrec.config import params_to_dict

    plain = params_to_dict(params)
    if name == "dqn_lstm":
        fixed: dict[str, Any] = {"model": plain["model"], "train": plain["train"]}
    else:
        shared = {k: v for k, v in plain["baselines"].items() if not isinstance(v, dict)}
        fixed = {"baselines": {**shared, name: plain["baselines"].get(name, {})}}
    for key in space:  # drop the searched keys: trials override them anyway
        *parents, leaf = key.split(".")
        node = fixed
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    payload = [features_report, {k: repr(v) for k, v in space.items()}, fixed, plain["base"]["seed"], valid_events]
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{name}-{digest}"
