"""The study as a table, as JSON, and the note written beside tuned values."""

from __future__ import annotations

import math
from typing import Any

from drlrec.tune.space import OBJECTIVE, SEARCH_SPACES, TuneResult


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
