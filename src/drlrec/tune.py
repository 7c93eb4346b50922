"""Hyper-parameter search on validation NDCG@10: a seeded, resumable Optuna study per model, never the test split.

    space = search_space("item_knn")                       # {params key: FloatRange | IntRange | Choice}
    result = tune_model("item_knn", data, params, n_trials=20, storage="sqlite:///artifacts/tune/item_knn.db")
    text = edit_params_text(params_yaml_text, result.best.params, best_params_note(result))

A trial is a copy of Params with the trial's values (`with_values`), fitted with
`drlrec.model_factory.fit_model` on the train split with the model's own budget from params, and scored by
`drlrec.evaluate.validation_evaluator` on one fixed, seeded subset of the validation split: the same events
for every trial and every model. `data` is a TrainingData (train + valid only), so the test split is never
loaded. The study lives in an RDB storage (SQLite), so `n_trials` counts finished trials in total and a
resumed study runs only the missing ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
import typing
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from drlrec.config import Params
from drlrec.errors import ConfigError, InputError

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
        "train.cold_item_rate": FloatRange(0.0, 0.9),
        "model.item_dim": Choice((32, 64, 128)),
        "model.hidden": Choice((64, 128, 256)),
        "model.dropout": FloatRange(0.0, 0.5),
        "model.repeat_init": FloatRange(0.0, 3.0),
        "model.repeat_mode": Choice(("additive", "mixture")),
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


# ---------------------------------------------------------------------------------------------- search space


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


def _annotation(params: Params, key: str) -> Any:
    node: Any = params
    annotation: Any = Params
    parts = key.split(".")
    for i, part in enumerate(parts):
        node, annotation = _field(node, part, ".".join(parts[: i + 1]))
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


def current_values(params: Params, space: Mapping[str, Dimension]) -> dict[str, Any]:
    """The values params already holds for the keys of `space` that the space can express (a value outside
    its range or choices is left out): the first trial of a new study, so that its best is never worse
    on validation than what params ships with."""
    out: dict[str, Any] = {}
    for key, dim in space.items():
        node: Any = params
        for i, part in enumerate(key.split(".")):
            node, _ = _field(node, part, ".".join(key.split(".")[: i + 1]))
        if isinstance(dim, Choice):
            if node in dim.values:
                out[key] = node
        elif isinstance(node, int | float) and not isinstance(node, bool) and dim.low <= node <= dim.high:
            out[key] = int(node) if isinstance(dim, IntRange) else float(node)
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


# ---------------------------------------------------------------------------------------------- the study


def _record(trial: Any) -> TrialRecord:
    return TrialRecord(
        number=trial.number,
        value=float(trial.value),
        params=dict(trial.params),
        metrics=dict(trial.user_attrs.get("metrics", {})),
        seconds=float(trial.user_attrs.get("seconds", math.nan)),
    )


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
    space = search_space(name)
    validate_space(space, params)
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


# ---------------------------------------------------------------------------------------------- reporting


def short_key(key: str, model: str) -> str:
    """`baselines.item_knn.window` -> `window`; dqn_lstm keys keep their section (`train.lr`)."""
    return key.removeprefix(f"baselines.{model}.")


def show_value(value: Any) -> str:
    """A trial value for the table and progress lines (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_trials(result: TuneResult) -> str:
    """A markdown table of the finished trials (the best marked *), then the best figure and values."""
    keys = list(result.best.params)
    head = ["trial", "valid NDCG@10", "valid HR@10", "seconds", *(short_key(k, result.model) for k in keys)]
    rows = [
        [
            f"{t.number}{' *' if t.number == result.best.number else ''}",
            f"{t.value:.4f}",
            f"{t.metrics.get('valid/hr_at_10', math.nan):.4f}",
            f"{t.seconds:.1f}",
            *(show_value(t.params.get(k, "-")) for k in keys),
        ]
        for t in result.trials
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    best = ", ".join(f"{k}={show_value(v)}" for k, v in result.best.params.items())
    lines.append("")
    lines.append(
        f"best: trial {result.best.number}, valid NDCG@10 {result.best.value:.4f} "
        f"({len(result.trials)} finished trials, {result.valid_events:,} validation events): {best}"
    )
    return "\n".join(lines)


def result_payload(result: TuneResult, storage: str, protocol: str) -> dict[str, Any]:
    """What <paths.tune>/<model>.json holds."""
    return {
        "model": result.model,
        "study": result.study,
        "storage": storage,
        "objective": OBJECTIVE,
        "protocol": protocol,
        "search_space": {k: {"kind": type(d).__name__, **d._asdict()} for k, d in SEARCH_SPACES[result.model].items()},
        "finished_trials": len(result.trials),
        "ran_this_call": result.ran,
        "failed_this_call": result.failed,
        "best": result.best._asdict(),
        "trials": [t._asdict() for t in result.trials],
    }


def best_params_note(result: TuneResult) -> str:
    """The trailing comment --write-params puts on each edited line."""
    return f"tuned: valid NDCG@10 {result.best.value:.4f} (drlrec tune, {len(result.trials)} trials)"


# ---------------------------------------------------------------------------------------------- --write-params

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>(?:\s.*)?)$")
_OLD_NOTE = re.compile(r"^tuned: valid NDCG@10 [0-9.]+ \(drlrec tune, \d+ trials\)(?:; )?")


def yaml_scalar(value: Any) -> str:
    """A value as a YAML plain scalar that reads back as the same type (floats to 6 significant digits)."""
    import yaml

    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = repr(float(f"{value:.6g}"))
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:  # PyYAML reads 1e-05 as a string; 1.0e-05 as a float
            text = f"{mantissa}.0e{exponent}"
    elif isinstance(value, str):
        text = value if yaml.safe_load(value) == value and "#" not in value and value.strip() == value else json.dumps(value)
    else:
        raise ConfigError(f"cannot write {value!r} into params.yaml (not a number, boolean or string)")
    back = yaml.safe_load(text)
    if type(back) is not type(value) or (isinstance(value, float) and not math.isclose(back, value, rel_tol=1e-5)):
        raise ConfigError(f"cannot write {value!r} into params.yaml as a plain scalar")
    return text


def _split_comment(rest: str) -> tuple[str, str | None, int]:
    """(value text, comment text without '#' or None, column offset of '#' in rest) of a key line's rest."""
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[:i].rstrip(), rest[i + 1 :].strip(), i
    return rest.rstrip(), None, -1


def _render(indent: str, key: str, value_text: str, old_comment: str | None, comment_col: int, note: str) -> str:
    kept = _OLD_NOTE.sub("", old_comment or "").strip()
    comment = f"# {note}" + (f"; {kept}" if kept else "")
    head = f"{indent}{key}: {value_text}"
    pad = comment_col - len(head) if comment_col > len(head) + 1 else 2
    return f"{head}{' ' * pad}{comment}"


def edit_params_text(text: str, values: Mapping[str, Any], note: str) -> str:
    """params.yaml text with only the given keys' values replaced (block-style YAML, edited line by line, so
    comments and layout stay): each edited line gets the trailing comment `# <note>` (an earlier tuned note
    is replaced, any other comment kept after it). A key missing from the file is added at the end of its
    section. The result is checked: it parses to the old document with exactly those values changed."""
    import yaml

    lines = text.splitlines(keepends=True)
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing sections
    section_end: dict[str, int] = {}  # section path -> index of its last line
    child_indent: dict[str, int] = {}  # section path -> indent of its keys
    inline: set[str] = set()  # keys whose value is written on their own line (flow collections included)
    seen: set[str] = set()
    rendered = {key: yaml_scalar(value) for key, value in values.items()}
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        if not body.strip() or body.lstrip().startswith("#"):
            continue
        indent = len(body) - len(body.lstrip(" "))
        match = _KEY_LINE.match(body)
        if match:
            while stack and stack[-1][0] >= indent:
                stack.pop()
        parents = [k for _, k in stack]
        for depth in range(len(parents) + 1):
            section_end[".".join(parents[:depth])] = i
        if not match:
            continue
        parent = ".".join(parents)
        child_indent.setdefault(parent, indent)
        path = ".".join([*parents, match["key"]])
        value_text, comment, col = _split_comment(match["rest"])
        if value_text.strip():
            inline.add(path)
        if path in values:
            if not value_text.strip():
                raise ConfigError(f"{path}: a section in the params file, not a value")
            newline = line[len(body):]
            comment_col = len(body) - len(match["rest"]) + col if comment is not None else -1
            lines[i] = _render(match["indent"], match["key"], rendered[path], comment, comment_col, note) + newline
            seen.add(path)
        stack.append((indent, match["key"]))

    inserts: dict[int, list[str]] = {}
    for path in values:
        if path in seen:
            continue
        parent, _, leaf = path.rpartition(".")
        if parent in inline:
            raise ConfigError(f"{path}: {parent} is written inline in the params file; write it as a block mapping")
        if parent not in section_end or parent not in child_indent:
            raise ConfigError(f"{path}: the params file has no section {parent}; add it first")
        line = _render(" " * child_indent[parent], leaf, rendered[path], None, -1, note) + "\n"
        inserts.setdefault(section_end[parent], []).append(line)
    for index in sorted(inserts, reverse=True):
        if not lines[index].endswith("\n"):
            lines[index] += "\n"
        lines[index + 1 : index + 1] = inserts[index]
    new_text = "".join(lines)

    expected = yaml.safe_load(text) or {}
    for path in values:
        *parents, leaf = path.split(".")
        node = expected
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(rendered[path])
    if yaml.safe_load(new_text) != expected:
        raise ConfigError("editing the params file in place went wrong (it would change other keys); nothing written")
    return new_text
