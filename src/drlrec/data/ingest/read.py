"""`read_events`: any log (events.parquet, or a raw CSV with ingest's own checks) as a typed DataFrame, for
profiling and calibration."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drlrec.config import IngestConfig
from drlrec.data.ingest.parse import _iter_batches
from drlrec.data.ingest.source import sniff
from drlrec.data.ingest.writers import _events_table
from drlrec.errors import InputError
from drlrec.schema import (
    EVENT_COLUMNS,
    EVENTS_SCHEMA,
)


def read_events(path: str | Path, cfg: IngestConfig, keep_out_of_window: bool = False) -> pd.DataFrame:
    """Read a log into a typed DataFrame (EVENT_COLUMNS) in file order: events.parquet as is, or any raw CSV.

    For a CSV, rows that ingest would quarantine for their format are dropped (duplicates are kept);
    `keep_out_of_window` also keeps rows outside the configured window. Meant for profiling and
    calibration; the pipeline itself reads events.parquet.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        try:
            return pq.read_table(str(path), columns=list(EVENT_COLUMNS)).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{path}: not a readable events Parquet file ({str(exc).splitlines()[0]})") from exc
    source = sniff(path, cfg.format)
    parts = [b.good for b in _iter_batches(source, None if keep_out_of_window else cfg, cfg.block_size_mb << 20)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=EVENTS_SCHEMA.field(c).type.to_pandas_dtype()) for c in EVENT_COLUMNS})
    return _events_table(pa.concat_tables(parts)).to_pandas()
