"""Partitioned ingest: line-aligned byte ranges parsed in parallel, rows routed to user-hash partitions,
each sorted and deduplicated, then combined into the single pass's outputs."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drlrec.config import IngestConfig, Params
from drlrec.partitioned.common import ORDINAL_BITS, check_partitions, partition_of


@dataclass(frozen=True)
class IngestPlan:
    """What every ingest task needs: the input, its line-aligned byte ranges and the shared work folder."""

    input_path: str
    work_dir: str
    partitions: int
    ranges: tuple[tuple[int, int], ...]  # byte ranges; ((0, -1),) = the whole stream (gzip)
    header: bool
    cfg: IngestConfig

    def chunk_dir(self, chunk: int) -> Path:
        return Path(self.work_dir) / f"chunk-{chunk:04d}"

    def partition_file(self, chunk: int, partition: int) -> Path:
        return self.chunk_dir(chunk) / f"part-{partition:04d}.parquet"

    def sorted_file(self, partition: int) -> Path:
        return Path(self.work_dir) / f"events-{partition:04d}.parquet"

    def duplicates_file(self, partition: int) -> Path:
        return Path(self.work_dir) / f"duplicates-{partition:04d}.parquet"


def plan_ingest(input_path: str | Path, work_dir: str | Path, partitions: int, cfg: IngestConfig) -> IngestPlan:
    """Check the input (the single pass's one-line errors) and cut it into `partitions` byte ranges."""
    from drlrec.data.ingest import line_aligned_ranges, sniff

    check_partitions(partitions)
    source = sniff(input_path, cfg.format)
    ranges = ((0, -1),) if source.compressed else tuple(line_aligned_ranges(source.path, partitions))
    work = Path(work_dir) / "ingest"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return IngestPlan(str(source.path), str(work), partitions, ranges, source.header, cfg)


def ingest_chunk(plan: IngestPlan, chunk: int) -> dict[str, Any]:
    """Parse and check one byte range; write its kept rows per partition and its quarantined rows (line
    numbers counted from the range's first line). Returns counts, newlines and the range's sort keys."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from drlrec.data.ingest import (
        _WORK_SCHEMA,
        ByteRange,
        _iter_batches,
        _LineMapper,
        _QuarantineWriter,
        _sorted_by_user_time,
        quarantine_batch,
        sniff,
    )

    source = sniff(plan.input_path, plan.cfg.format)
    start, end = plan.ranges[chunk]
    byte_range = None if end < 0 else ByteRange(source.path, start, end)
    folder = plan.chunk_dir(chunk)
    folder.mkdir(parents=True, exist_ok=True)
    quarantine = _QuarantineWriter(folder / "quarantine.parquet")
    lines = _LineMapper(first_line=2 if plan.header and start == 0 else 1)
    writers: dict[int, pq.ParquetWriter] = {}
    invalid_lines: list[int] = []
    rows_parsed = invalid_count = 0
    in_order, first_key, last_key = True, None, None
    offset = np.int64(chunk) << np.int64(ORDINAL_BITS)
    try:
        for batch in _iter_batches(source, plan.cfg, plan.cfg.block_size_mb << 20, byte_range):
            rows_parsed += batch.good.num_rows + len(batch.bad_ordinal)
            invalid_count += len(batch.invalid_rows)
            invalid_lines.extend(quarantine_batch(batch, lines, quarantine))
            good = batch.good
            if good.num_rows == 0:
                continue
            user = good.column("user_id").to_numpy()
            ts = good.column("timestamp").to_numpy()
            keys = ((int(user[0]), int(ts[0])), (int(user[-1]), int(ts[-1])))
            in_order = in_order and _sorted_by_user_time(user, ts) and (last_key is None or keys[0] >= last_key)
            first_key = first_key or keys[0]
            last_key = keys[1]
            ordinal = good.column("_ordinal").to_numpy() + offset
            good = good.set_column(good.schema.get_field_index("_ordinal"), _WORK_SCHEMA.field("_ordinal"), pa.array(ordinal))
            part = partition_of(user, plan.partitions)
            order = np.argsort(part, kind="stable")
            good = good.take(pa.array(order))
            cuts = np.searchsorted(part[order], np.arange(plan.partitions + 1))
            for p in range(plan.partitions):
                if cuts[p + 1] > cuts[p]:
                    if p not in writers:
                        writers[p] = pq.ParquetWriter(str(plan.partition_file(chunk, p)), _WORK_SCHEMA, compression="lz4")
                    writers[p].write_table(good.slice(int(cuts[p]), int(cuts[p + 1] - cuts[p])))
    finally:
        for writer in writers.values():
            writer.close()
        quarantine.close()
    np.save(folder / "invalid_lines.npy", np.asarray(invalid_lines, dtype=np.int64))
    return {
        "chunk": chunk,
        "rows_parsed": rows_parsed,
        "invalid_rows": invalid_count,
        "newlines": byte_range.newlines if byte_range is not None else 0,
        "in_order": in_order,
        "first_key": first_key,
        "last_key": last_key,
    }


def ingest_partition(plan: IngestPlan, partition: int) -> dict[str, Any]:
    """Sort one partition's rows by (user, time, file order) and drop exact duplicates (the first kept),
    as the single pass does; write the sorted events and the duplicates (ordinal + raw text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from drlrec.data.ingest import (
        _SORTED_WITH_ORDINAL,
        _WORK_SCHEMA,
        _count_new_users,
        _duplicate_mask,
        _events_table,
        _raw_of_rows,
    )
    from drlrec.schema import EVENTS_SCHEMA

    files = [plan.partition_file(c, partition) for c in range(len(plan.ranges))]
    parts = [pq.read_table(str(f)) for f in files if f.exists()]
    table = pa.concat_tables(parts) if parts else _WORK_SCHEMA.empty_table()
    del parts
    for f in files:
        f.unlink(missing_ok=True)
    table = table.sort_by([(c, "ascending") for c in _SORTED_WITH_ORDINAL])
    dup = _duplicate_mask(table)
    dups = table.filter(pa.array(dup))
    pq.write_table(
        pa.table({"ordinal": dups.column("_ordinal"), "raw": pa.array(_raw_of_rows(dups), pa.binary())}),
        str(plan.duplicates_file(partition)),
    )
    table = table.filter(pa.array(~dup))
    events = _events_table(table) if table.num_rows else EVENTS_SCHEMA.empty_table()
    pq.write_table(events, str(plan.sorted_file(partition)), compression="lz4", row_group_size=1 << 20)
    return {
        "partition": partition,
        "rows": table.num_rows,
        "users": _count_new_users(table.column("user_id").to_numpy(), None),
        "duplicates": dups.num_rows,
    }


def _merge_by_user(files: list[Path], writer, batch_rows: int) -> int:
    """Merge user-disjoint files, each sorted by (user, time), into one stream sorted by user: a k-way
    merge on user id holding about one batch per file. Returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    readers = [pq.ParquetFile(str(f)).iter_batches(batch_size=batch_rows) for f in files]
    buffers: list[pa.Table | None] = [None] * len(files)
    exhausted = [False] * len(files)
    written = 0

    def users(table: pa.Table) -> np.ndarray:
        return table.column("user_id").to_numpy()

    while True:
        for k, reader in enumerate(readers):
            # hold at least one complete user (the last user of a buffer may continue in the next batch)
            while not exhausted[k] and (
                buffers[k] is None or buffers[k].num_rows == 0 or users(buffers[k])[0] == users(buffers[k])[-1]
            ):
                batch = next(reader, None)
                if batch is None:
                    exhausted[k] = True
                    break
                more = pa.Table.from_batches([batch])
                buffers[k] = more if buffers[k] is None else pa.concat_tables([buffers[k], more])
        if all(buffers[k] is None or buffers[k].num_rows == 0 for k in range(len(files))):
            return written
        open_ends = [int(users(buffers[k])[-1]) for k in range(len(files)) if not exhausted[k]]
        bound = min(open_ends) if open_ends else None  # users below it are complete in every buffer
        pieces = []
        for k, table in enumerate(buffers):
            if table is None or table.num_rows == 0:
                continue
            cut = table.num_rows if bound is None else int(np.searchsorted(users(table), bound, side="left"))
            if cut:
                pieces.append(table.slice(0, cut))
                buffers[k] = table.slice(cut)
        merged = pa.concat_tables(pieces)
        merged = merged.take(pa.array(np.argsort(users(merged), kind="stable"))).cast(writer.schema)
        writer.write_table(merged, row_group_size=1 << 20)
        written += merged.num_rows


def ingest_combine(
    plan: IngestPlan,
    chunks: list[dict[str, Any]],
    partitions: list[dict[str, Any]],
    events_path: str | Path,
    quarantine_path: str | Path,
    report_path: str | Path,
    started: float | None = None,
):
    """events.parquet (partitions merged by user), quarantine.parquet (rows in line order) and the report,
    each written atomically. Returns the IngestResult; the work folder is removed."""
    import dataclasses

    import pyarrow as pa
    import pyarrow.parquet as pq

    from drlrec.atomic import atomic_path, write_json
    from drlrec.data.ingest import IngestResult, _events_writer, _LineMapper
    from drlrec.schema import QUARANTINE_REASONS, QUARANTINE_SCHEMA, REASON_DUPLICATE

    started = time.perf_counter() if started is None else started
    chunks = sorted(chunks, key=lambda c: c["chunk"])
    line_offset = np.concatenate([[0], np.cumsum([c["newlines"] for c in chunks])[:-1]]).astype(np.int64)
    mappers = []
    parts = []
    for c in chunks:
        folder = plan.chunk_dir(c["chunk"])
        mapper = _LineMapper(first_line=2 if plan.header and plan.ranges[c["chunk"]][0] == 0 else 1)
        mapper.add_invalid(np.load(folder / "invalid_lines.npy").tolist())
        mappers.append(mapper)
        table = pq.read_table(str(folder / "quarantine.parquet"))
        line = table.column("line").to_numpy() + line_offset[c["chunk"]]
        parts.append(table.set_column(0, "line", pa.array(line, pa.int64())))
    for p in sorted(partitions, key=lambda r: r["partition"]):
        dups = pq.read_table(str(plan.duplicates_file(p["partition"])))
        ordinal = dups.column("ordinal").to_numpy()
        chunk_of = ordinal >> ORDINAL_BITS
        local = ordinal & ((1 << ORDINAL_BITS) - 1)
        line = np.zeros(len(ordinal), dtype=np.int64)
        for c in np.unique(chunk_of):
            rows = chunk_of == c
            line[rows] = mappers[c].lines(local[rows]) + line_offset[c]
        parts.append(
            pa.table(
                {"line": pa.array(line, pa.int64()), "reason": pa.array([REASON_DUPLICATE] * len(line), pa.string()), "raw": dups.column("raw")},
                schema=QUARANTINE_SCHEMA,
            )
        )
    quarantine = pa.concat_tables([t.cast(QUARANTINE_SCHEMA) for t in parts])
    quarantine = quarantine.take(pa.array(np.argsort(quarantine.column("line").to_numpy(), kind="stable")))
    reasons, counts = np.unique(np.asarray(quarantine.column("reason").to_pylist(), dtype=object).astype(str), return_counts=True)
    by_reason = dict.fromkeys(QUARANTINE_REASONS, 0) | {str(r): int(n) for r, n in zip(reasons, counts, strict=True)}

    events_path, quarantine_path, report_path = Path(events_path), Path(quarantine_path), Path(report_path)
    files = [plan.sorted_file(p) for p in range(plan.partitions)]
    batch_rows = max(1 << 16, (1 << 22) // plan.partitions)
    with atomic_path(events_path) as events_tmp, atomic_path(quarantine_path) as quarantine_tmp:
        with _events_writer(events_tmp, plan.cfg) as writer:
            kept = _merge_by_user(files, writer, batch_rows)
        pq.write_table(quarantine, str(quarantine_tmp), compression="zstd")
        rows_read = sum(c["rows_parsed"] + c["invalid_rows"] for c in chunks)
        if rows_read != kept + quarantine.num_rows:  # an internal invariant, not a user error
            raise AssertionError(f"ingest lost rows: read {rows_read} != kept {kept} + quarantined {quarantine.num_rows}")
        keyed = [c for c in chunks if c["first_key"] is not None]
        sorted_input = all(c["in_order"] for c in keyed) and all(
            tuple(a["last_key"]) <= tuple(b["first_key"]) for a, b in zip(keyed[:-1], keyed[1:], strict=True)
        )
        result = IngestResult(
            input_path=plan.input_path,
            rows_read=rows_read,
            rows_kept=kept,
            rows_quarantined=quarantine.num_rows,
            quarantined_by_reason=by_reason,
            users=sum(p["users"] for p in partitions),
            header=plan.header,
            compressed=plan.ranges == ((0, -1),),
            sorted_input=sorted_input,
            buckets=plan.partitions,
            seconds=0.0,
            window=(plan.cfg.window_start, plan.cfg.window_end),
            outputs={"events": str(events_path), "quarantine": str(quarantine_path), "report": str(report_path)},
        )
        write_json(report_path, result.to_dict())
    shutil.rmtree(plan.work_dir, ignore_errors=True)
    return dataclasses.replace(result, seconds=time.perf_counter() - started)


def run_partitioned_ingest(
    params: Params,
    input_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    map_fn: Callable[..., Iterable] = map,
):
    """The partitioned ingest with `map_fn` running the per-chunk and per-partition steps (builtin map:
    in this process, one after another). Same outputs as `drlrec ingest`."""
    started = time.perf_counter()
    events, quarantine, report = ingest_outputs(params, out_dir)
    plan = plan_ingest(input_path or params.paths.raw_data, params.paths.partitions, params.scale.partitions, params.ingest)
    chunks = list(map_fn(lambda c: ingest_chunk(plan, c), range(len(plan.ranges))))
    parts = list(map_fn(lambda p: ingest_partition(plan, p), range(plan.partitions)))
    return ingest_combine(plan, chunks, parts, events, quarantine, report, started)


def ingest_outputs(params: Params, out_dir: str | Path | None = None) -> tuple[Path, Path, Path]:
    """(events, quarantine, report) paths: params.paths, or the same names inside `out_dir`."""
    paths = params.paths
    names = (Path(paths.events), Path(paths.quarantine), Path(paths.ingest_report))
    if out_dir is None:
        return names
    return tuple(Path(out_dir) / n.name for n in names)  # type: ignore[return-value]
