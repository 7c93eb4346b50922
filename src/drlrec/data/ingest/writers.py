"""The outputs of ingest: the events Parquet writer (in a background thread) and the quarantine, each
rejected row with its physical line number, reason and raw bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from drlrec.config import IngestConfig
from drlrec.data.ingest.parse import _LineMapper
from drlrec.schema import (
    BEHAVIORS,
    EVENT_COLUMNS,
    EVENTS_SCHEMA,
    QUARANTINE_REASONS,
    QUARANTINE_SCHEMA,
    REASON_FIELD_COUNT,
)


def _events_writer(path: Path, cfg: IngestConfig) -> pq.ParquetWriter:
    # Dictionary-encoding high-cardinality int64 ids costs time and gains nothing; behaviour has 4 values.
    return pq.ParquetWriter(
        str(path), EVENTS_SCHEMA, compression=cfg.compression, use_dictionary=["behavior"]
    )


class _BackgroundWriter:
    """Writes tables on one background thread (Arrow releases the GIL), at most one write in flight,
    so Parquet encoding overlaps CSV parsing while memory stays bounded by two batches."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.writer = writer
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drlrec-ingest-writer")
        self.pending = None

    def write_table(self, table: pa.Table) -> None:
        self.flush()
        self.pending = self.pool.submit(self.writer.write_table, table)

    def flush(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.pool.shutdown(wait=True)
            self.writer.close()


class _QuarantineWriter:
    def __init__(self, path: Path) -> None:
        self.writer = pq.ParquetWriter(str(path), QUARANTINE_SCHEMA, compression="zstd")
        self.counts = dict.fromkeys(QUARANTINE_REASONS, 0)

    def write(self, lines: np.ndarray, reasons: np.ndarray, raw: list[bytes]) -> None:
        if len(lines) == 0:
            return
        for reason, count in zip(*np.unique(reasons.astype(str), return_counts=True), strict=True):
            self.counts[str(reason)] += int(count)
        self.writer.write_table(
            pa.table(
                {"line": pa.array(lines, pa.int64()), "reason": pa.array(reasons.astype(str)), "raw": pa.array(raw, pa.binary())},
                schema=QUARANTINE_SCHEMA,
            )
        )

    def close(self) -> None:
        self.writer.close()


def quarantine_batch(batch, lines: _LineMapper, quarantine: _QuarantineWriter) -> list[int]:
    """Send one parsed batch's rejected rows to the quarantine with their physical line numbers: rows with
    the wrong field count (known by line) and rows that failed a value check (known by ordinal). Returns
    the lines of the wrong-field-count rows (the line mapper has recorded them)."""
    bad_lines = [line for line, _ in batch.invalid_rows]
    lines.add_invalid(bad_lines)
    if bad_lines:
        quarantine.write(
            np.array(bad_lines, dtype=np.int64),
            np.full(len(bad_lines), REASON_FIELD_COUNT, dtype=object),
            [text for _, text in batch.invalid_rows],
        )
    quarantine.write(lines.lines(batch.bad_ordinal), batch.bad_reason, batch.bad_raw)
    return bad_lines


def _events_table(table: pa.Table) -> pa.Table:
    return table.select(list(EVENT_COLUMNS)).cast(EVENTS_SCHEMA)


def _raw_of_rows(table: pa.Table) -> list[bytes]:
    names = np.asarray(BEHAVIORS)[table.column("behavior").to_numpy()]
    cols = [table.column(c).to_numpy() for c in ("user_id", "item_id", "category_id")]
    ts = table.column("timestamp").to_numpy()
    return [f"{u},{i},{c},{b},{t}".encode() for u, i, c, b, t in zip(*cols, names, ts, strict=True)]
