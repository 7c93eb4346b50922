"""Featurize a file whatever its size: id counts merged across batches, the globals fitted from them, then
groups of whole users of about featurize.chunk_rows events featurized and appended."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drlrec.config import FeaturizeConfig
from drlrec.errors import InputError
from drlrec.features.featurize.core import (
    TrainGlobals,
    _open_events,
    check_config,
    featurize,
    reward_weight_table,
)
from drlrec.features.featurize.outputs import ReportCounts, _finish, _split_writers, _write_part
from drlrec.features.split import TRAIN, assign_split, split_boundaries
from drlrec.features.steps import (
    N_BEHAVIOR_CODES,
    behavior_counts,
    train_stats_from_counts,
)
from drlrec.features.vocab import Vocab
from drlrec.schema import EVENT_COLUMNS, EVENT_DTYPES


def id_behavior_counts(raw_ids: np.ndarray, behavior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids [k], events per (id, behaviour code) [k, 4] int64)."""
    ids, inverse = np.unique(np.asarray(raw_ids, dtype=np.int64), return_inverse=True)
    return ids, behavior_counts(inverse.ravel(), behavior, len(ids))


def merge_id_counts(ids: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Add up (ids, [k, 4] counts) pairs of disjoint event sets: (sorted distinct ids, summed counts)."""
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, N_BEHAVIOR_CODES), np.int64)
    distinct, inverse = np.unique(np.concatenate(ids), return_inverse=True)
    inverse = inverse.ravel()
    stacked = np.concatenate(counts)
    totals = np.zeros((len(distinct), stacked.shape[1]), dtype=np.int64)
    for j in range(stacked.shape[1]):  # a bincount per column: exact (counts stay far below 2**53)
        totals[:, j] = np.bincount(inverse, weights=stacked[:, j], minlength=len(distinct)).astype(np.int64)
    return distinct, totals


def add_id_counts(
    ids: np.ndarray, totals: np.ndarray, more_ids: np.ndarray, more: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Running counts (sorted distinct `ids`, [k, 4] `totals`) plus one batch's (sorted distinct ids, counts):
    known ids add in place; new ones are appended and the two sorted runs merged (a stable sort of two runs
    is a linear merge). Memory is a few copies of the distinct ids, whatever the number of events."""
    pos = np.searchsorted(ids, more_ids)
    found = pos < len(ids)
    found[found] = ids[pos[found]] == more_ids[found]
    totals[pos[found]] += more[found]  # more_ids are distinct: no position repeats
    if found.all():
        return ids, totals
    ids = np.concatenate([ids, more_ids[~found]])
    totals = np.concatenate([totals, more[~found]])
    order = np.argsort(ids, kind="stable")
    return ids[order], totals[order]


def vocab_from_counts(ids: np.ndarray, totals: np.ndarray, min_count: int) -> tuple[Vocab, np.ndarray]:
    """The vocabulary `fit_vocab` fits and [V, 4] counts per vocabulary index (rare ids pool into UNKNOWN,
    as `encode` maps them), from train events counted per raw id (`merge_id_counts`)."""
    vocab = Vocab(ids[totals.sum(axis=1) >= max(min_count, 1)])
    per_index = np.zeros((vocab.size, totals.shape[1]), dtype=np.int64)
    index = vocab.encode(ids)
    for j in range(totals.shape[1]):
        per_index[:, j] = np.bincount(index, weights=totals[:, j], minlength=vocab.size).astype(np.int64)
    return vocab, per_index


def _batches(path: Path, columns: tuple[str, ...], batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """events.parquet row group by row group (a row group over 4 x `batch_rows` rows in batches of
    `batch_rows`), as numpy columns (EVENT_DTYPES). Reading row groups one at a time keeps Arrow's memory
    flat: one `iter_batches` over the whole file kept about 13 MB more per 2M rows read here (pyarrow
    25.0.1, the 100M-row file), so memory grew with the file."""
    import pyarrow as pa

    parquet = _open_events(path)

    def arrays(table) -> dict[str, np.ndarray]:
        return {
            c: table.column(c).to_numpy(zero_copy_only=False).astype(EVENT_DTYPES[c], copy=True) for c in columns
        }

    try:
        for group in range(parquet.metadata.num_row_groups):
            if parquet.metadata.row_group(group).num_rows <= 4 * batch_rows:
                yield arrays(parquet.read_row_group(group, columns=list(columns)))
            else:
                for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=list(columns)):
                    yield arrays(batch)
            pa.default_memory_pool().release_unused()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable events Parquet file ({str(exc).splitlines()[0]})") from exc


def iter_user_chunks(path: str | Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """events.parquet (sorted by user, then time) as DataFrames of whole users: batches of up to
    `chunk_rows` rows are read until `chunk_rows` are pending, and everything before the last user's first
    row goes out (that user may go on in the next batch). One user's events are never split, so a chunk
    holds fewer than 2 x chunk_rows rows plus one user's. Users must ascend across chunks."""
    path = Path(path)
    pending: list[dict[str, np.ndarray]] = []
    pending_rows = 0
    last_user: int | None = None

    def emit(columns: dict[str, np.ndarray]) -> pd.DataFrame:
        nonlocal last_user
        user = columns["user_id"]
        if last_user is not None and user[0] <= last_user:
            raise InputError(
                "events are not sorted by user then time (featurize reads what `drlrec ingest` writes)"
            )
        last_user = int(user[-1])
        return pd.DataFrame(columns, copy=False)

    for columns in _batches(path, EVENT_COLUMNS, min(chunk_rows, 1 << 20)):
        if not len(columns["user_id"]):
            continue
        pending.append(columns)
        pending_rows += len(columns["user_id"])
        if pending_rows < chunk_rows:
            continue
        joined = {c: np.concatenate([p[c] for p in pending]) for c in EVENT_COLUMNS}
        user = joined["user_id"]
        changes = np.flatnonzero(user[1:] != user[:-1])
        if len(changes):  # cut before the last user, whose events may go on in the next batch
            cut = int(changes[-1]) + 1
            yield emit({c: v[:cut] for c, v in joined.items()})
            joined = {c: v[cut:].copy() for c, v in joined.items()}
        pending, pending_rows = [joined], len(joined["user_id"])
    if pending_rows:
        yield emit({c: np.concatenate([p[c] for p in pending]) for c in EVENT_COLUMNS})
    elif last_user is None:
        raise InputError(f"{path}: no events to featurize")


def fit_globals_file(
    path: str | Path, cfg: FeaturizeConfig, window_start: int, batch_rows: int = 1 << 21, progress: bool = False
) -> TrainGlobals:
    """The vocabularies and train statistics `featurize` fits, from events.parquet in batches: train-period
    events are counted per (raw id, behaviour) batch by batch and the counts added up, so memory grows with
    the number of distinct items, not with the number of events."""
    path = Path(path)
    bounds = split_boundaries(window_start, cfg)
    empty = (np.zeros(0, np.int64), np.zeros((0, N_BEHAVIOR_CODES), np.int64))
    items, categories = empty, empty
    bar = _progress(path, "featurize: fit vocabularies", progress)
    for columns in _batches(path, ("item_id", "category_id", "behavior", "timestamp"), batch_rows):
        train = assign_split(columns["timestamp"], bounds) == TRAIN
        behavior = columns["behavior"][train]
        items = add_id_counts(*items, *id_behavior_counts(columns["item_id"][train], behavior))
        categories = add_id_counts(*categories, *id_behavior_counts(columns["category_id"][train], behavior))
        bar.update(len(columns["timestamp"]))
    bar.close()
    item_vocab, item_counts = vocab_from_counts(*items, cfg.min_count)
    category_vocab, category_counts = vocab_from_counts(*categories, cfg.min_count)
    return TrainGlobals(item_vocab, category_vocab, train_stats_from_counts(item_counts, category_counts, cfg))


def _progress(path: Path, desc: str, enabled: bool):
    from tqdm import tqdm

    total = _open_events(path).metadata.num_rows
    return tqdm(total=total, desc=desc, unit="event", unit_scale=True, disable=not enabled, file=sys.stderr)


def featurize_file(
    events_path: str | Path,
    cfg: FeaturizeConfig,
    window_start: int,
    out_dir: str | Path,
    fitted: TrainGlobals | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """`drlrec featurize` in bounded memory: events.parquet -> `out_dir` (globals, split folders, report).

    Two passes over the file. The first fits the train-only globals from counts (`fit_globals_file`;
    skipped when `fitted` is given). The second featurizes groups of whole users of about
    `cfg.chunk_rows` events (every per-event feature depends on the user's own events and the globals
    only) and appends each group's transitions to the split folders. Memory is one group, whatever the
    file's size, and the outputs are byte-identical to `write_featurize_outputs(featurize(all events))`."""
    check_config(cfg)
    events_path, out_dir = Path(events_path), Path(out_dir)
    _open_events(events_path)
    if fitted is None:
        fitted = fit_globals_file(events_path, cfg, window_start, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    fitted.save(out_dir)
    writers = _split_writers(out_dir, cfg.seq_len)
    counts = ReportCounts()
    bar = _progress(events_path, "featurize", progress)
    with contextlib.ExitStack() as stack:
        for writer in writers.values():
            stack.enter_context(writer)
        for chunk in iter_user_chunks(events_path, cfg.chunk_rows):
            result = featurize(chunk, cfg, window_start, fitted=fitted)
            del chunk
            _write_part(result, writers, counts)
            bar.update(len(result.events.user_id))
            del result
    bar.close()
    return _finish(out_dir, counts.report(fitted, split_boundaries(window_start, cfg), cfg.seq_len, reward_weight_table(cfg)))
