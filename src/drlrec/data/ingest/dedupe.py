"""Duplicates and order: exact duplicates dropped while the input is sorted by (user, time), and the
external sort (range partitions by user id, each sorted and deduplicated in memory) from the first
out-of-order row on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from drlrec.config import IngestConfig
from drlrec.data.ingest.parse import _SORTED_WITH_ORDINAL, _WORK_SCHEMA, _LineMapper
from drlrec.data.ingest.writers import _events_table, _events_writer, _QuarantineWriter, _raw_of_rows
from drlrec.schema import (
    REASON_DUPLICATE,
)


def _duplicate_mask(table: pa.Table, n_carry: int = 0) -> np.ndarray:
    """Exact-duplicate mask for rows sorted by (user, time); the first occurrence (lowest ordinal) is kept.

    Only rows sharing (user, timestamp) with a neighbour can be duplicates, so the full 5-column sort runs
    on that small candidate set. The first `n_carry` rows are kept rows carried over from the previous
    batch: they can make later rows duplicates but are never marked themselves.
    """
    n = table.num_rows
    mask = np.zeros(n, dtype=bool)
    if n < 2:
        return mask
    user = table.column("user_id").to_numpy()
    ts = table.column("timestamp").to_numpy()
    same_as_next = (user[1:] == user[:-1]) & (ts[1:] == ts[:-1])
    if not same_as_next.any():
        return mask
    cand = np.zeros(n, dtype=bool)
    cand[1:] |= same_as_next
    cand[:-1] |= same_as_next
    idx = np.flatnonzero(cand)
    cols = [table.column(c).to_numpy()[idx] for c in ("_ordinal", "behavior", "category_id", "item_id", "timestamp", "user_id")]
    order = np.lexsort(cols)  # last key is primary: user, time, item, category, behaviour, then ordinal
    keys = np.stack([c[order].astype(np.int64) for c in cols[1:]], axis=1)
    repeat = np.zeros(len(idx), dtype=bool)
    repeat[1:] = (keys[1:] == keys[:-1]).all(axis=1)
    dup_rows = idx[order][repeat]
    mask[dup_rows] = True
    mask[:n_carry] = False
    return mask


def _sorted_by_user_time(user: np.ndarray, ts: np.ndarray) -> bool:
    if len(user) < 2:
        return True
    du = np.diff(user)
    return bool(np.all((du > 0) | ((du == 0) & (np.diff(ts) >= 0))))


def _dedupe_sorted(
    good: pa.Table,
    carry: pa.Table | None,
    last_key: tuple[int, int] | None,
    quarantine: _QuarantineWriter,
    lines: _LineMapper,
) -> tuple[pa.Table, pa.Table, int]:
    """Drop exact duplicates from a sorted batch, looking back at rows kept from the previous batch.

    Returns (kept rows of this batch, the new carry, number of users that start in this batch).
    """
    first_user = good.column("user_id")[0].as_py()
    n_carry = 0
    if carry is not None and (first_user, good.column("timestamp")[0].as_py()) == last_key:
        n_carry = carry.num_rows
        good = pa.concat_tables([carry, good])
    dup = _duplicate_mask(good, n_carry)
    if dup.any():
        dups = good.filter(pa.array(dup))
        quarantine.write(
            lines.lines(dups.column("_ordinal").to_numpy()),
            np.full(dups.num_rows, REASON_DUPLICATE, dtype=object),
            _raw_of_rows(dups),
        )
        good = good.filter(pa.array(~dup))
    # the carry: kept rows sharing the batch's last (user, time), which a later batch may duplicate
    user = good.column("user_id").to_numpy()
    ts = good.column("timestamp").to_numpy()
    tail = int(np.flatnonzero((user == user[-1]) & (ts == ts[-1]))[0])
    new_carry = good.slice(tail)
    kept = good.slice(n_carry)
    previous_user = last_key[0] if last_key is not None else None
    return kept, new_carry, _count_new_users(kept.column("user_id").to_numpy(), previous_user)


def _count_new_users(user: np.ndarray, last_user) -> int:
    """Distinct users in a sorted chunk, not counting one continued from the previous chunk."""
    if len(user) == 0:
        return 0
    starts = 1 + int(np.count_nonzero(user[1:] != user[:-1]))
    return starts - (1 if last_user is not None and user[0] == last_user else 0)


def _work_batches(path: Path) -> Iterator[pa.Table]:
    """Row groups of a prefix (final schema, ordinal -1: it precedes every spilled row) or spill file."""
    if not path.exists():
        return
    parquet = pq.ParquetFile(str(path))
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group)
        if "_ordinal" not in table.column_names:
            table = table.append_column(
                pa.field("_ordinal", pa.int64(), nullable=False), pa.array(np.full(table.num_rows, -1, dtype=np.int64))
            )
        yield table


def _external_sort(
    inputs: list[Path],
    events_tmp: Path,
    work: Path,
    quarantine: _QuarantineWriter,
    lines: _LineMapper,
    sample: np.ndarray,
    n_rows: int,
    cfg: IngestConfig,
    progress: bool,
) -> tuple[int, int, int]:
    """Sort rows by (user, time, ordinal) with memory bounded by about `bucket_rows` rows.

    Rows are range-partitioned by user id into buckets (boundaries: quantiles of a user-id sample), so
    each user lies in one bucket; buckets are then sorted, deduplicated and appended in order.
    """
    from tqdm import tqdm

    n_buckets = max(1, -(-n_rows // cfg.bucket_rows))
    bounds = np.zeros(0, dtype=np.int64)
    if n_buckets > 1 and len(sample):
        bounds = np.unique(np.quantile(sample, np.linspace(0, 1, n_buckets + 1)[1:-1], method="lower"))
    n_buckets = len(bounds) + 1
    bucket_files = [work / f"bucket-{b:04d}.parquet" for b in range(n_buckets)]
    writers = [pq.ParquetWriter(str(p), _WORK_SCHEMA, compression="lz4") for p in bucket_files]
    try:
        for path in inputs:
            for table in tqdm(_work_batches(path), desc="ingest: partition", disable=None if progress else True, leave=False):
                bucket = np.searchsorted(bounds, table.column("user_id").to_numpy(), side="right")
                order = np.argsort(bucket, kind="stable")
                table = table.take(pa.array(order))
                cuts = np.searchsorted(bucket[order], np.arange(n_buckets + 1))
                for b in range(n_buckets):
                    if cuts[b + 1] > cuts[b]:
                        writers[b].write_table(table.slice(int(cuts[b]), int(cuts[b + 1] - cuts[b])))
            path.unlink(missing_ok=True)
    finally:
        for writer in writers:
            writer.close()

    kept = 0
    users = 0
    with _events_writer(events_tmp, cfg) as writer:
        for path in tqdm(bucket_files, desc="ingest: sort", disable=None if progress else True, leave=False):
            table = pq.read_table(str(path))
            path.unlink()
            if table.num_rows == 0:
                continue
            table = table.sort_by([(c, "ascending") for c in _SORTED_WITH_ORDINAL])
            dup = _duplicate_mask(table)
            if dup.any():
                dups = table.filter(pa.array(dup))
                quarantine.write(
                    lines.lines(dups.column("_ordinal").to_numpy()),
                    np.full(dups.num_rows, REASON_DUPLICATE, dtype=object),
                    _raw_of_rows(dups),
                )
                table = table.filter(pa.array(~dup))
            writer.write_table(_events_table(table), row_group_size=1 << 20)
            kept += table.num_rows
            users += _count_new_users(table.column("user_id").to_numpy(), None)
    return kept, users, n_buckets
