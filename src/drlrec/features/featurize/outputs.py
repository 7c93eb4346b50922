"""What featurize writes: the split folders (appended part by part), the globals and the report with its
counts."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from drlrec.features.featurize.core import (
    DONE_DEFINITION,
    REPORT_FILE,
    EventFeatures,
    FeaturizeResult,
    TrainGlobals,
)
from drlrec.features.featurize.splits import _split_rows, _SplitRows, build_transitions
from drlrec.features.profile import PROFILE_FEATURES
from drlrec.features.split import SPLITS, SplitBoundaries
from drlrec.features.steps import (
    STEP_FEATURES,
)
from drlrec.features.transitions import SplitWriter, split_path
from drlrec.features.vocab import UNKNOWN
from drlrec.schema import BEHAVIORS


def write_featurize_outputs(result: FeaturizeResult, out_dir: str | Path) -> dict[str, Any]:
    """Write what `drlrec featurize` outputs into `out_dir` from an in-memory result: the train globals, the
    split folders {train,valid,test}/ (one split's arrays in memory at a time) and featurize_report.json;
    return the report. `featurize_file` writes the same bytes from events.parquet in bounded memory."""
    out_dir = Path(out_dir)
    result.globals.save(out_dir)
    writers = _split_writers(out_dir, result.seq_len)
    counts = ReportCounts()
    with contextlib.ExitStack() as stack:
        for writer in writers.values():
            stack.enter_context(writer)
        _write_part(result, writers, counts)
    return _finish(out_dir, counts.report(result.globals, result.bounds, result.seq_len, result.reward_weights))


def _split_writers(out_dir: Path, seq_len: int) -> dict[str, SplitWriter]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return {split: SplitWriter(split_path(out_dir, split), seq_len) for split in SPLITS}


def _write_part(result: FeaturizeResult, writers: dict[str, SplitWriter] | None, counts: ReportCounts) -> None:
    """Count the report's figures of `result` (whole users, after those already written) and append its
    transitions to every split (`writers` None: count only)."""
    for code, split in enumerate(SPLITS):
        selected = _split_rows(result.events, code, result.seq_len)
        counts.add(result, code, selected)
        if writers is not None and len(selected.actions):
            writers[split].append(build_transitions(result, split, selected))
    counts.add_events(result.events)


def _finish(out_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    from drlrec.atomic import write_json

    write_json(out_dir / REPORT_FILE, report)
    for split in SPLITS:  # the single-file layout of earlier versions, which load_split no longer reads
        split_path(out_dir, split).with_suffix(".npz").unlink(missing_ok=True)
    return report


class ReportCounts:
    """The featurize report's counts, added up over groups of whole users (each count is a sum over users,
    so the report of the parts equals the report of the whole)."""

    def __init__(self) -> None:
        self.events = 0
        self.users = 0
        self.splits = {
            name: {"transitions": 0, "users": 0, "episodes": 0, "table": 0, "unknown_item": 0,
                   "unknown_category": 0, "behaviors": [0] * len(BEHAVIORS)}
            for name in SPLITS
        }  # fmt: skip

    def add_events(self, ev: EventFeatures) -> None:
        self.events += len(ev.user_id)
        self.users += int(ev.users.ordinal[-1]) + 1

    def add(self, result: FeaturizeResult, code: int, selected: _SplitRows) -> None:
        ev, actions = result.events, selected.actions
        n = len(actions)
        c = self.splits[SPLITS[code]]
        c["transitions"] += n
        c["table"] += len(selected.table)
        if not n:
            return
        c["users"] += int(np.count_nonzero(np.diff(ev.users.ordinal[actions])) + 1)
        c["episodes"] += int(np.count_nonzero(ev.episode_end[actions]))
        c["unknown_item"] += int(np.count_nonzero(ev.item_idx[actions] == UNKNOWN))
        c["unknown_category"] += int(np.count_nonzero(ev.category_idx[actions] == UNKNOWN))
        behaviors = np.bincount(ev.behavior[actions], minlength=len(BEHAVIORS))
        c["behaviors"] = [a + int(b) for a, b in zip(c["behaviors"], behaviors, strict=True)]

    def report(self, fitted: TrainGlobals, bounds: SplitBoundaries, seq_len: int, weights: np.ndarray) -> dict[str, Any]:
        """Counts per split, vocabulary sizes, unknown shares and the boundaries, for featurize_report.json."""
        splits = {}
        for name, c in self.splits.items():
            n = c["transitions"]
            splits[name] = {
                "transitions": n,
                "users": c["users"],
                "episodes": c["episodes"],
                "event_table_rows": c["table"] + 1,
                "context_rows": c["table"] - n,
                "unknown_item_share": c["unknown_item"] / n if n else 0.0,
                "unknown_category_share": c["unknown_category"] / n if n else 0.0,
                "behaviors": dict(zip(BEHAVIORS, c["behaviors"], strict=True)),
            }
        return {
            "events": self.events,
            "users": self.users,
            "seq_len": seq_len,
            "boundaries": bounds.to_dict(),
            "splits": splits,
            "item_vocab_size": fitted.item_vocab.size,
            "items_in_vocab": len(fitted.item_vocab.raw_ids),
            "category_vocab_size": fitted.category_vocab.size,
            "categories_in_vocab": len(fitted.category_vocab.raw_ids),
            "done": DONE_DEFINITION,
            "profile_features": list(PROFILE_FEATURES),
            "step_features": list(STEP_FEATURES),
            "reward_weights": dict(zip(BEHAVIORS, map(float, weights), strict=True)),
        }


def featurize_report(result: FeaturizeResult) -> dict[str, Any]:
    """Counts per split, vocabulary sizes, unknown shares and the boundaries, for featurize_report.json."""
    counts = ReportCounts()
    _write_part(result, None, counts)
    return counts.report(result.globals, result.bounds, result.seq_len, result.reward_weights)
