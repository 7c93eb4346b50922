"""The generated log on disk: the real file's row order or sorted, written as the header-less raw CSV
(plain or gzip), and the full-scale preset."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from drlrec.atomic import atomic_path
from drlrec.errors import ConfigError
from drlrec.schema import BEHAVIORS, RAW_COLUMNS

#: gzip level of `.gz` output: the gzip tool's default (level 9 is 3x slower for a few % smaller files).
GZIP_LEVEL = 6

#: `drlrec synth --scale full`: the published size of the real UserBehavior file (users, items, categories);
#: with the default 101 events per user that is about 100M rows.
FULL_SCALE: dict[str, int] = {"users": 987_994, "items": 4_162_024, "categories": 9_439}


def order_rows(table: pa.Table, order: str) -> pa.Table:
    """The generated rows (sorted by user id, then time) in `order` (SynthConfig.order): `user` as they are,
    `original` with users in lexicographic string order of their ids (the real file: "1", "100", "1000",
    ...), `time` by timestamp over the whole log (ties keep user order). Time order within a user is kept."""
    if order == "user":
        return table
    if order == "original":
        user = table.column("user_id").to_numpy()
        users, first = np.unique(user, return_index=True)  # numeric order; rows of a user are contiguous
        lexicographic = np.argsort(users.astype(str), kind="stable")  # [U] users in string order
        counts = np.diff(np.r_[first, len(user)])
        # each user's contiguous rows, users taken in string order: a permutation built from run lengths
        starts = first[lexicographic]
        lengths = counts[lexicographic]
        perm = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(len(user))
    elif order == "time":
        perm = np.argsort(table.column("timestamp").to_numpy(), kind="stable")
    else:
        raise ConfigError(f"synth.order must be one of user, original, time (got {order!r})")
    return table.take(pa.array(perm))


def _raw_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Typed events -> the raw Taobao columns (behaviour codes become their names)."""
    names = pa.array(BEHAVIORS, type=pa.string())
    return pa.RecordBatch.from_arrays(
        [
            batch.column("user_id"),
            batch.column("item_id"),
            batch.column("category_id"),
            names.take(batch.column("behavior").cast(pa.int32())),
            batch.column("timestamp"),
        ],
        names=list(RAW_COLUMNS),
    )


def write_csv(table: pa.Table, path: str | Path) -> None:
    """Write the original header-less Taobao CSV (behaviour names, unquoted) atomically; `.gz` compresses.

    Written batch by batch, so the text form of the behaviours never exists for the whole table at once.
    """
    path = Path(path)
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none", batch_size=1 << 16)
    schema = pa.schema(
        [(name, pa.string() if name == "behavior_type" else pa.int64()) for name in RAW_COLUMNS]
    )

    def write(sink: Any) -> None:
        with pa_csv.CSVWriter(sink, schema, write_options=options) as writer:
            for batch in table.to_batches(max_chunksize=1 << 20):
                writer.write_batch(_raw_batch(batch))

    with atomic_path(path) as tmp:
        if path.suffix == ".gz":
            # no file name and mtime 0 in the gzip header: the same table gives the same bytes (DVC md5)
            with open(tmp, "wb") as handle, gzip.GzipFile("", "wb", GZIP_LEVEL, handle, mtime=0) as sink:
                write(sink)
        else:
            write(str(tmp))
