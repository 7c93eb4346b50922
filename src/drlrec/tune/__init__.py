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

The package: `space` (the search spaces and how a trial's values become Params), `study` (the Optuna
study, resumable from its storage), `report` (the trials table and the JSON) and `params_file` (writing
the best values into a params file, comments kept).
"""

from __future__ import annotations

from drlrec.tune.params_file import (  # noqa: F401
    _KEY_LINE,
    _OLD_NOTE,
    _render,
    _split_comment,
    edit_params_text,
    yaml_scalar,
)
from drlrec.tune.report import (  # noqa: F401
    best_params_note,
    format_trials,
    result_payload,
    short_key,
    show_value,
)
from drlrec.tune.space import (  # noqa: F401
    NOTHING_TO_TUNE,
    OBJECTIVE,
    SEARCH_SPACES,
    Choice,
    Dimension,
    FloatRange,
    IntRange,
    TrialRecord,
    TuneResult,
    _annotation,
    _field,
    covering,
    current_values,
    search_space,
    study_name,
    suggest,
    validate_space,
    with_values,
)
from drlrec.tune.study import (  # noqa: F401
    _record,
    resolved_sentinels,
    tune_model,
)
