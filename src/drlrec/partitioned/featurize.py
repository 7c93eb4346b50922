"""Partitioned featurize: counts per partition, the globals fitted once from them, transitions per
partition, then combined into the single pass's split folders."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drlrec.config import FeaturizeConfig, Params
from drlrec.partitioned.common import _FEATURE_FIELDS, check_partitions, partition_of


@dataclass(frozen=True)
class FeaturizePlan:
    events_path: str
    work_dir: str
    partitions: int
    cfg: FeaturizeConfig
    window_start: int

    def events_file(self, partition: int) -> Path:
        return Path(self.work_dir) / f"events-{partition:04d}.parquet"

    def counts_file(self, partition: int) -> Path:
        return Path(self.work_dir) / f"counts-{partition:04d}.npz"

    def features_file(self, partition: int) -> Path:
        return Path(self.work_dir) / f"features-{partition:04d}.npz"


def plan_featurize(params: Params, events_path: str | Path | None = None) -> FeaturizePlan:
    from drlrec.errors import InputError
    from drlrec.features.featurize import check_config

    check_partitions(params.scale.partitions)
    check_config(params.featurize)
    events = Path(events_path or params.paths.events)
    if not events.is_file():
        raise InputError(f"{events}: no such file (run `drlrec ingest` first)")
    work = Path(params.paths.partitions) / "featurize"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return FeaturizePlan(str(events), str(work), params.scale.partitions, params.featurize, params.ingest.window_start)


def _read_partition(events_path: str, partition: int, partitions: int):
    """The events of one partition's users from events.parquet, in file order (so still user, time)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from drlrec.schema import EVENT_COLUMNS, EVENT_DTYPES

    parts = {c: [] for c in EVENT_COLUMNS}
    for batch in pq.ParquetFile(events_path).iter_batches(batch_size=1 << 20, columns=list(EVENT_COLUMNS)):
        keep = partition_of(batch.column("user_id").to_numpy(), partitions) == partition
        for c in EVENT_COLUMNS:
            parts[c].append(batch.column(c).to_numpy(zero_copy_only=False)[keep])
    return pd.DataFrame(
        {c: np.concatenate(parts[c]).astype(EVENT_DTYPES[c], copy=False) if parts[c] else np.zeros(0, EVENT_DTYPES[c]) for c in EVENT_COLUMNS}
    )


def featurize_count(plan: FeaturizePlan, partition: int) -> dict[str, Any]:
    """Cut one partition out of events.parquet and count its train-period events per (item, behaviour)
    and (category, behaviour)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from drlrec.features.featurize import id_behavior_counts
    from drlrec.features.split import TRAIN, assign_split, split_boundaries

    events = _read_partition(plan.events_path, partition, plan.partitions)
    pq.write_table(pa.Table.from_pandas(events, preserve_index=False), str(plan.events_file(partition)), compression="lz4")
    train = assign_split(events["timestamp"].to_numpy(), split_boundaries(plan.window_start, plan.cfg)) == TRAIN
    behavior = events["behavior"].to_numpy()[train]
    item_ids, item_counts = id_behavior_counts(events["item_id"].to_numpy()[train], behavior)
    category_ids, category_counts = id_behavior_counts(events["category_id"].to_numpy()[train], behavior)
    np.savez(
        plan.counts_file(partition),
        item_ids=item_ids, item_counts=item_counts, category_ids=category_ids, category_counts=category_counts,
    )  # fmt: skip
    return {"partition": partition, "events": len(events), "train_events": int(train.sum())}


def _merged_vocab_counts(ids: list[np.ndarray], counts: list[np.ndarray], min_count: int):
    """Vocabulary and [V, 4] counts per vocabulary index from per-partition (ids, counts)."""
    from drlrec.features.featurize import merge_id_counts, vocab_from_counts

    return vocab_from_counts(*merge_id_counts(ids, counts), min_count)


def featurize_globals(plan: FeaturizePlan, counted: list[dict[str, Any]]):
    """Vocabularies and train statistics from every partition's counts (= the single pass's fit)."""
    from drlrec.features.featurize import TrainGlobals
    from drlrec.features.steps import train_stats_from_counts

    loaded = [np.load(plan.counts_file(c["partition"])) for c in sorted(counted, key=lambda c: c["partition"])]
    item_vocab, item_counts = _merged_vocab_counts([d["item_ids"] for d in loaded], [d["item_counts"] for d in loaded], plan.cfg.min_count)
    category_vocab, category_counts = _merged_vocab_counts(
        [d["category_ids"] for d in loaded], [d["category_counts"] for d in loaded], plan.cfg.min_count
    )
    return TrainGlobals(item_vocab, category_vocab, train_stats_from_counts(item_counts, category_counts, plan.cfg))


def featurize_partition(plan: FeaturizePlan, partition: int, fitted) -> dict[str, Any]:
    """Every per-event feature of one partition's users, with the merged train globals."""
    from drlrec.features.featurize import featurize, load_events

    path = plan.events_file(partition)
    events = load_events(path)
    path.unlink()
    if len(events) == 0:
        return {"partition": partition, "events": 0}
    ev = featurize(events, plan.cfg, plan.window_start, fitted=fitted).events
    np.savez(plan.features_file(partition), terminal_profile=ev.terminal_profile, **{f: getattr(ev, f) for f in _FEATURE_FIELDS})
    return {"partition": partition, "events": len(events)}


def featurize_combine(plan: FeaturizePlan, featurized: list[dict[str, Any]], fitted, out_dir: str | Path) -> dict[str, Any]:
    """Interleave the partitions' per-event features back into the table's (user, time) order and write
    the outputs of `drlrec featurize`; returns its report. The work folder is removed."""
    from drlrec.errors import InputError
    from drlrec.features.featurize import (
        EventFeatures,
        FeaturizeResult,
        reward_weight_table,
        write_featurize_outputs,
    )
    from drlrec.features.split import split_boundaries
    from drlrec.features.users import user_index

    loaded = [np.load(plan.features_file(r["partition"])) for r in sorted(featurized, key=lambda r: r["partition"]) if r["events"]]
    if not loaded:
        raise InputError("no events to featurize")
    user_id = np.concatenate([d["user_id"] for d in loaded])
    # users never span partitions and each partition is (user, time)-sorted: a stable sort on user restores the table
    order = np.argsort(user_id, kind="stable")
    columns = {f: np.concatenate([d[f] for d in loaded])[order] for f in _FEATURE_FIELDS}
    episode_end_before = np.concatenate([d["episode_end"] for d in loaded])
    terminal_rank = (np.cumsum(episode_end_before) - 1)[order][columns["episode_end"]]
    terminal_profile = np.concatenate([d["terminal_profile"] for d in loaded])[terminal_rank]
    del loaded, episode_end_before
    events = EventFeatures(users=user_index(columns["user_id"]), terminal_profile=terminal_profile, **columns)
    result = FeaturizeResult(fitted, split_boundaries(plan.window_start, plan.cfg), events, plan.cfg.seq_len, reward_weight_table(plan.cfg))
    report = write_featurize_outputs(result, out_dir)
    shutil.rmtree(plan.work_dir, ignore_errors=True)
    return report


def run_partitioned_featurize(
    params: Params,
    events_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    map_fn: Callable[..., Iterable] = map,
) -> dict[str, Any]:
    """The partitioned featurize with `map_fn` running the per-partition steps. Same outputs as
    `drlrec featurize`; returns its report."""
    plan = plan_featurize(params, events_path)
    counted = list(map_fn(lambda p: featurize_count(plan, p), range(plan.partitions)))
    fitted = featurize_globals(plan, counted)
    featurized = list(map_fn(lambda p: featurize_partition(plan, p, fitted), range(plan.partitions)))
    return featurize_combine(plan, featurized, fitted, out_dir or params.paths.features)
