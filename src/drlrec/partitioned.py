"""Partitioned ingest and featurize: the single pass's outputs, computed per user-hash partition.

Every user belongs to one partition (`partition_of`), so everything per user is computed inside one
partition, in parallel; only three small steps see all partitions:

ingest     1. `ingest_chunk` (one per line-aligned byte range of the raw log; one for gzip): parse and check
              rows exactly as the single pass, quarantine bad rows, route kept rows to their user's partition.
           2. `ingest_partition` (one per partition): sort by (user, time, file order), drop exact duplicates.
           3. `ingest_combine`: merge the sorted partitions by user id into events.parquet (bounded memory),
              map every quarantined row to its physical line, write the report.
featurize  1. `featurize_count` (per partition): train-period events per (item, behaviour), (category, behaviour).
           2. `featurize_globals`: add the counts up -> vocabularies and train statistics (counts of disjoint
              event sets add up, so they equal the single pass's fit).
           3. `featurize_partition` (per partition): every per-event feature with those globals.
           4. `featurize_combine`: interleave the partitions' events back into (user, time) order and write
              the transitions, vocabularies, statistics and report as `drlrec featurize` does.

Tasks exchange file paths and small dicts, never large arrays, so they run on any Dask cluster whose
workers share `paths.partitions` (flows/partitioned.py maps them as Prefect tasks on a DaskTaskRunner);
`run_partitioned_ingest` / `run_partitioned_featurize` run them with any `map` (the builtin one by default).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drlrec.config import FeaturizeConfig, IngestConfig, Params
from drlrec.errors import ConfigError

#: Kept rows carry `chunk << ORDINAL_BITS | row ordinal within the chunk`: file order across chunks.
ORDINAL_BITS = 40
_FEATURE_FIELDS = (
    "user_id", "category_id", "timestamp", "behavior", "item_idx", "category_idx", "split", "time_gap",
    "session_index", "session_position", "session_end", "profile", "episode_end",
)  # fmt: skip


def partition_of(user_id: np.ndarray, partitions: int) -> np.ndarray:
    """[n] int64 partition of each user id: the splitmix64 finalizer of the id, modulo `partitions`
    (consecutive ids spread evenly; the same id always lands in the same partition)."""
    z = np.asarray(user_id, dtype=np.int64).astype(np.uint64)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(partitions)).astype(np.int64)


def check_partitions(partitions: int) -> None:
    if partitions < 1:
        raise ConfigError(f"scale.partitions must be >= 1 (got {partitions})")


# ---------------------------------------------------------------------------------------------- ingest


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


# ---------------------------------------------------------------------------------------------- featurize


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
