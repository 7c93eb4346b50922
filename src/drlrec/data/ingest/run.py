"""`ingest_file`: one streaming pass from the raw log to events.parquet, quarantine.parquet and the
report, outputs written atomically."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from drlrec.atomic import atomic_path, write_json
from drlrec.config import IngestConfig
from drlrec.data.ingest.dedupe import _dedupe_sorted, _external_sort, _sorted_by_user_time
from drlrec.data.ingest.parse import _WORK_SCHEMA, _iter_batches, _LineMapper
from drlrec.data.ingest.source import _Source, sniff
from drlrec.data.ingest.writers import (
    _BackgroundWriter,
    _events_table,
    _events_writer,
    _QuarantineWriter,
    quarantine_batch,
)


@dataclass(frozen=True)
class IngestResult:
    """What one ingest did; also written as ingest_report.json (without the wall time, so that a re-run on
    the same input writes the same bytes and DVC sees nothing new)."""

    input_path: str
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    quarantined_by_reason: dict[str, int]
    users: int
    header: bool
    compressed: bool
    sorted_input: bool
    buckets: int
    seconds: float
    window: tuple[int, int]
    outputs: dict[str, str] = field(default_factory=dict)
    format: str = "taobao"

    def to_dict(self) -> dict:
        return {
            "input": self.input_path,
            "format": self.format,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_quarantined": self.rows_quarantined,
            "quarantined_by_reason": self.quarantined_by_reason,
            "users": self.users,
            "header": self.header,
            "compressed": self.compressed,
            "input_sorted_by_user_time": self.sorted_input,
            "sort_buckets": self.buckets,
            "window": list(self.window),
            "outputs": self.outputs,
        }


def ingest_file(
    input_path: str | Path,
    events_path: str | Path,
    quarantine_path: str | Path,
    report_path: str | Path,
    cfg: IngestConfig,
    progress: bool = False,
) -> IngestResult:
    """Stream a raw log into typed, sorted, deduplicated Parquet; quarantine every rejected row.

    Raises InputError (nothing written) when the file is missing, empty, binary or has a foreign header
    (for `cfg.format`). Duplicates are exact duplicates of the typed row; their quarantined raw text is
    that row in the Taobao column order.
    """
    started = time.perf_counter()
    source = sniff(input_path, cfg.format)
    events_path, quarantine_path, report_path = Path(events_path), Path(quarantine_path), Path(report_path)
    events_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ingest-", dir=events_path.parent))
    try:
        with atomic_path(events_path) as events_tmp, atomic_path(quarantine_path) as quarantine_tmp:
            result = _ingest(source, events_tmp, quarantine_tmp, work, cfg, progress)
            result = dataclasses.replace(
                result,
                seconds=time.perf_counter() - started,
                outputs={"events": str(events_path), "quarantine": str(quarantine_path), "report": str(report_path)},
            )
            write_json(report_path, result.to_dict())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _ingest(source: _Source, events_tmp: Path, quarantine_tmp: Path, work: Path, cfg: IngestConfig, progress: bool) -> IngestResult:
    from tqdm import tqdm

    block_size = cfg.block_size_mb << 20
    # While the input stays sorted, kept rows stream straight into the final file ("prefix");
    # after the first out-of-order row the rest goes to a spill file and is sorted at the end.
    prefix = _BackgroundWriter(_events_writer(events_tmp, cfg))
    spill_path = work / "spill.parquet"
    spill: pq.ParquetWriter | None = None
    quarantine = _QuarantineWriter(quarantine_tmp)
    lines = _LineMapper(first_line=2 if source.header else 1)
    bar = tqdm(
        total=source.size, unit="B", unit_scale=True, desc=f"ingest {source.path.name}",
        disable=None if progress else True, leave=False,
    )
    rows_parsed = 0
    invalid_count = 0
    prefix_rows = 0
    spill_rows = 0
    prefix_users = 0
    last_key: tuple[int, int] | None = None
    carry: pa.Table | None = None  # kept rows sharing the last (user, time) of the previous batch
    sample_parts: list[np.ndarray] = []
    try:
        for batch in _iter_batches(source, cfg, block_size):
            bar.update(batch.bytes_read)
            rows_parsed += batch.good.num_rows + len(batch.bad_ordinal)
            invalid_count += len(batch.invalid_rows)
            quarantine_batch(batch, lines, quarantine)

            good = batch.good
            if good.num_rows == 0:
                continue
            user = good.column("user_id").to_numpy()
            ts = good.column("timestamp").to_numpy()
            sample_parts.append(user[:: max(1, len(user) // 1000)])
            if spill is None:
                in_order = _sorted_by_user_time(user, ts) and (last_key is None or (user[0], ts[0]) >= last_key)
                if in_order:
                    good, carry, new_users = _dedupe_sorted(good, carry, last_key, quarantine, lines)
                    last_key = (int(carry.column("user_id")[0].as_py()), int(carry.column("timestamp")[0].as_py()))
                    prefix.write_table(_events_table(good))
                    prefix_rows += good.num_rows
                    prefix_users += new_users
                    continue
                spill = pq.ParquetWriter(str(spill_path), _WORK_SCHEMA, compression="lz4")
            spill.write_table(good)
            spill_rows += good.num_rows
    finally:
        prefix.close()
        if spill is not None:
            spill.close()
        bar.close()

    buckets = 1
    kept, users = prefix_rows, prefix_users
    is_sorted = spill is None
    if not is_sorted:
        # the prefix is sorted too, but must be merged with the spill: move it aside and sort both
        prefix_path = work / "prefix.parquet"
        shutil.move(str(events_tmp), prefix_path)
        sample = np.concatenate(sample_parts)
        kept, users, buckets = _external_sort(
            [prefix_path, spill_path], events_tmp, work, quarantine, lines, sample, prefix_rows + spill_rows, cfg, progress
        )
    quarantine.close()

    rows_read = rows_parsed + invalid_count
    rows_quarantined = sum(quarantine.counts.values())
    if rows_read != kept + rows_quarantined:  # an internal invariant, not a user error
        raise AssertionError(f"ingest lost rows: read {rows_read} != kept {kept} + quarantined {rows_quarantined}")
    return IngestResult(
        input_path=str(source.path),
        rows_read=rows_read,
        rows_kept=kept,
        rows_quarantined=rows_quarantined,
        quarantined_by_reason=dict(quarantine.counts),
        users=users,
        header=source.header,
        compressed=source.compressed,
        sorted_input=is_sorted,
        buckets=buckets,
        seconds=0.0,
        window=(cfg.window_start, cfg.window_end),
        format=source.format,
    )
