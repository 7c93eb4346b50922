"""Streaming ingest: raw behaviour CSV (plain or gzip, with or without header) -> typed, sorted events.parquet.

Two input formats (`ingest.format`):

- `taobao`: the UserBehavior schema `user_id,item_id,category_id,behavior_type,timestamp`.
- `diginetica`: the CIKM Cup 2016 `train-item-views.csv`, `;`-separated with the header
  `sessionId;userId;itemId;timeframe;eventdate` (as published; SR-GNN's copy spells it `session_id;...`),
  views only. Sessions stand in for users (user_id = session_id; the `user_id` column is mostly `NA`,
  anonymous, and is only checked for form); behaviour = pv; timestamp = Unix seconds of `eventdate` at
  00:00 UTC + `timeframe` // 1000 (timeframe is milliseconds since the session's first query);
  category_id = DIGINETICA_CATEGORY for every row, because Diginetica's item categories are in a separate
  file (product-categories.csv) that ingest does not read. Two views of the same item in the same second
  of a session are exact duplicates after this mapping (quarantined as `duplicate`).

Memory is bounded by the Arrow block size and `ingest.bucket_rows`, never by the file size:

1. One pass streams the CSV in Arrow record batches (every column read as raw bytes, so no row can abort
   the reader) and rejects bad rows with vectorized checks. While the input is sorted by (user, time),
   as generated logs are, duplicates are removed on the fly and kept rows go straight to the output.
2. From the first out-of-order row on (the original Taobao file orders users as strings, not numbers),
   rows go to a spill file; at the end everything is range-partitioned by user id (boundaries from a
   sample of user ids) into buckets of about `bucket_rows` rows, each sorted and deduplicated in memory.

Every rejected row goes to quarantine.parquet with its physical line number, a reason and its raw bytes,
so rows_read == rows_kept + rows_quarantined always holds. Outputs appear atomically (temp file + rename).
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from drlrec.atomic import atomic_path, write_json
from drlrec.config import IngestConfig
from drlrec.errors import ConfigError, InputError
from drlrec.schema import (
    BEHAVIORS,
    EVENT_COLUMNS,
    EVENTS_SCHEMA,
    HEADER_ALIASES,
    QUARANTINE_REASONS,
    QUARANTINE_SCHEMA,
    RAW_COLUMNS,
    REASON_BAD_ID,
    REASON_BAD_TIMESTAMP,
    REASON_DUPLICATE,
    REASON_FIELD_COUNT,
    REASON_OUT_OF_WINDOW,
    REASON_UNKNOWN_BEHAVIOR,
)

_GZIP_MAGIC = b"\x1f\x8b"
_PEEK_BYTES = 1 << 16
_ID_COLUMNS = ("user_id", "item_id", "category_id")
_BEHAVIOR_VALUES = pa.array([b.encode() for b in BEHAVIORS], type=pa.binary())
# 18 digits always fit in int64; longer "ids" are rejected rather than silently wrapped.
_UINT_PATTERN = r"^[0-9]{1,18}$"
_SORTED_WITH_ORDINAL = ["user_id", "timestamp", "_ordinal"]

#: Input formats of `ingest.format`.
FORMATS: tuple[str, ...] = ("taobao", "diginetica")
#: Header of Diginetica's train-item-views.csv (required, in this order; sessionId etc. are accepted too).
DIGINETICA_COLUMNS: tuple[str, ...] = ("session_id", "user_id", "item_id", "timeframe", "eventdate")
#: category_id of every Diginetica row: its categories are in another file, not read here.
DIGINETICA_CATEGORY = 0
_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DELIMITER = {"taobao": ",", "diginetica": ";"}
# Working rows carry their parse ordinal: it orders ties stably and maps rows back to physical lines.
_WORK_SCHEMA = EVENTS_SCHEMA.append(pa.field("_ordinal", pa.int64(), nullable=False))


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


# ---------------------------------------------------------------------------------------------- opening


@dataclass(frozen=True)
class _Source:
    """An opened, sniffed input: how to stream it and what its first line said."""

    path: Path
    compressed: bool
    header: bool
    column_names: tuple[str, ...]
    size: int
    format: str = "taobao"

    @property
    def delimiter(self) -> str:
        return _DELIMITER[self.format]


def _peek(path: Path, compressed: bool) -> bytes:
    try:
        if compressed:
            stream = pa.CompressedInputStream(pa.OSFile(str(path)), "gzip")
            with stream:
                return stream.read(_PEEK_BYTES)
        with open(path, "rb") as fh:
            return fh.read(_PEEK_BYTES)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from exc


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    control = sum(head.count(bytes([c])) for c in range(32) if c not in (9, 10, 13))
    return control > 0.05 * max(len(head), 1)


def sniff(path: str | Path, fmt: str = "taobao") -> _Source:
    """Check that `path` is a readable, non-empty, text CSV in the log schema of `fmt` (FORMATS); find its
    header and codec."""
    if fmt not in FORMATS:
        raise ConfigError(f"ingest.format {fmt!r} is not one of {', '.join(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: file is empty")
    with open(path, "rb") as fh:
        compressed = fh.read(2) == _GZIP_MAGIC
    head = _peek(path, compressed)
    if not head.strip():
        raise InputError(f"{path}: file is empty (no data rows)")
    if _looks_binary(head):
        raise InputError(f"{path}: binary data, not a CSV behaviour log")
    first_line = head.split(b"\n", 1)[0].strip().lstrip(b"\xef\xbb\xbf")
    rest = head.split(b"\n", 1)[1] if b"\n" in head else b""
    if fmt == "diginetica":
        names = _header_names(first_line, ";")
        if not _is_diginetica_header(names):
            raise InputError(
                f"{path}: not a Diginetica train-item-views file: header {';'.join(names)[:200]!r}, "
                f"expected {';'.join(DIGINETICA_COLUMNS)!r}"
            )
        if not rest.strip():
            raise InputError(f"{path}: file has a header but no data rows")
        return _Source(path, compressed, True, DIGINETICA_COLUMNS, size, "diginetica")
    first_field = first_line.split(b",", 1)[0].strip().strip(b'"')
    if first_field.isdigit() or first_field.startswith(b"-"):
        return _Source(path, compressed, False, RAW_COLUMNS, size)
    names = _header_names(first_line, ",")
    if _is_diginetica_header(_header_names(first_line, ";")):
        raise InputError(
            f"{path}: header names other columns {names}: a Diginetica file; set ingest.format=diginetica"
        )
    mapped = [HEADER_ALIASES.get(n) for n in names]
    if None in mapped or sorted(mapped) != sorted(RAW_COLUMNS):
        raise InputError(
            f"{path}: header names other columns {names}; expected {', '.join(RAW_COLUMNS)} "
            "(or no header, as in the original UserBehavior.csv)"
        )
    if not rest.strip():
        raise InputError(f"{path}: file has a header but no data rows")
    return _Source(path, compressed, True, tuple(mapped), size)  # type: ignore[arg-type]


def _header_names(first_line: bytes, delimiter: str) -> list[str]:
    return [n.strip().strip('"').lower() for n in first_line.decode("utf-8", "replace").split(delimiter)]


def _is_diginetica_header(names: list[str]) -> bool:
    """`session_id;...` (SR-GNN's copy) or `sessionId;...` (the CIKM Cup file), already lower-cased."""
    return [n.replace("_", "") for n in names] == [c.replace("_", "") for c in DIGINETICA_COLUMNS]


# ---------------------------------------------------------------------------------------------- parsing


@dataclass
class _Batch:
    """One parsed block: good rows (typed) and the rejected ones, both tagged with their parse ordinal."""

    good: pa.Table  # EVENT_COLUMNS + _ordinal, in file order
    bad_ordinal: np.ndarray  # [n_bad] parse ordinals of rows rejected by the vectorized checks
    bad_reason: np.ndarray  # [n_bad] reason strings
    bad_raw: list[bytes]
    invalid_rows: list[tuple[int, bytes]]  # (physical line, raw text) of rows with a wrong field count
    bytes_read: int


def _raw_text(columns: list[pa.Array], rows: np.ndarray, delimiter: bytes = b",") -> list[bytes]:
    """Rebuild the raw CSV text of a few rejected rows from their byte columns."""
    if len(rows) == 0:
        return []
    taken = [col.take(pa.array(rows)).to_pylist() for col in columns]
    # a blank line parsed as five empty fields: its raw text is empty, not ",,,,"
    return [delimiter.join(fields) if any(fields) else b"" for fields in zip(*taken, strict=True)]


def _parse_ids(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative integer ids from raw bytes: (values int64 with 0 where bad, ok mask)."""
    text = col.view(pa.string())
    try:
        values = pc.cast(text, pa.int64())
        ok = pc.greater_equal(values, 0)
        # "+5" casts fine but is not an id we accept; the regex fallback below decides.
        if pc.all(ok).as_py() and not pc.any(pc.starts_with(text, "+")).as_py():
            return values.to_numpy(zero_copy_only=False), np.ones(len(col), dtype=bool)
    except pa.ArrowInvalid:
        pass
    ok_arr = pc.match_substring_regex(text, _UINT_PATTERN)
    cleaned = pc.if_else(ok_arr, text, pa.scalar("0", pa.string()))
    values = pc.cast(cleaned, pa.int64())
    return values.to_numpy(zero_copy_only=False), ok_arr.to_numpy(zero_copy_only=False)


_REASON_NAMES = np.array(("",) + QUARANTINE_REASONS, dtype=object)
_REASON_CODE = {name: code for code, name in enumerate(_REASON_NAMES)}


def _check_batch(
    batch: pa.RecordBatch, first_ordinal: int, cfg: IngestConfig | None
) -> tuple[pa.Table, np.ndarray, np.ndarray, list[bytes]]:
    """Vectorized row checks. Returns (good typed rows, bad ordinals, bad reasons, bad raw text)."""
    n = batch.num_rows
    columns = [batch.column(name) for name in RAW_COLUMNS]
    reason = np.zeros(n, dtype=np.int8)  # 0: good, else an index into _REASON_NAMES

    def reject(mask: np.ndarray, why: str) -> None:
        reason[mask & (reason == 0)] = _REASON_CODE[why]

    # A blank line parses as five empty fields; it has one field, not five.
    lengths = [pc.binary_length(col) for col in columns]
    all_empty = pc.equal(pc.max_element_wise(*lengths), 0).to_numpy(zero_copy_only=False)
    reject(all_empty, REASON_FIELD_COUNT)

    ids = {}
    for name in _ID_COLUMNS:
        values, ok = _parse_ids(batch.column(name))
        ids[name] = values
        reject(~ok, REASON_BAD_ID)

    behavior = pc.index_in(batch.column("behavior_type"), value_set=_BEHAVIOR_VALUES)
    reject(pc.is_null(behavior).to_numpy(zero_copy_only=False), REASON_UNKNOWN_BEHAVIOR)
    behavior_code = pc.fill_null(behavior, 0).to_numpy(zero_copy_only=False).astype(np.int8)

    ts, ts_ok = _parse_ids(batch.column("timestamp"))
    reject(~ts_ok, REASON_BAD_TIMESTAMP)
    if cfg is not None:
        reject((ts < cfg.window_start) | (ts >= cfg.window_end), REASON_OUT_OF_WINDOW)

    ordinal = np.arange(first_ordinal, first_ordinal + n, dtype=np.int64)
    bad_idx = np.flatnonzero(reason)
    columns_out = {
        "user_id": ids["user_id"],
        "item_id": ids["item_id"],
        "category_id": ids["category_id"],
        "behavior": behavior_code,
        "timestamp": ts,
        "_ordinal": ordinal,
    }
    if len(bad_idx):
        good_mask = reason == 0
        columns_out = {k: v[good_mask] for k, v in columns_out.items()}
    good = pa.table(columns_out, schema=_WORK_SCHEMA)
    return good, ordinal[bad_idx], _REASON_NAMES[reason[bad_idx]], _raw_text(columns, bad_idx)


def _check_diginetica_batch(
    batch: pa.RecordBatch, first_ordinal: int, cfg: IngestConfig | None
) -> tuple[pa.Table, np.ndarray, np.ndarray, list[bytes]]:
    """Vectorized checks and mapping of Diginetica rows (see the module doc); returns as `_check_batch`."""
    n = batch.num_rows
    columns = [batch.column(name) for name in DIGINETICA_COLUMNS]
    reason = np.zeros(n, dtype=np.int8)

    def reject(mask: np.ndarray, why: str) -> None:
        reason[mask & (reason == 0)] = _REASON_CODE[why]

    lengths = [pc.binary_length(col) for col in columns]
    reject(pc.equal(pc.max_element_wise(*lengths), 0).to_numpy(zero_copy_only=False), REASON_FIELD_COUNT)

    session, session_ok = _parse_ids(batch.column("session_id"))  # "NA" or empty: no session, bad_id
    reject(~session_ok, REASON_BAD_ID)
    item, item_ok = _parse_ids(batch.column("item_id"))
    reject(~item_ok, REASON_BAD_ID)
    # user_id is not used (sessions are the users) and NA for anonymous sessions; anything else must be an id
    user_text = batch.column("user_id").view(pa.string())
    user_ok = pc.or_(
        pc.is_in(user_text, value_set=pa.array(["NA", ""])), pc.match_substring_regex(user_text, _UINT_PATTERN)
    )
    reject(~user_ok.to_numpy(zero_copy_only=False), REASON_BAD_ID)

    timeframe_ms, timeframe_ok = _parse_ids(batch.column("timeframe"))
    reject(~timeframe_ok, REASON_BAD_TIMESTAMP)
    date_text = batch.column("eventdate").view(pa.string())
    date = pc.strptime(date_text, format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls 2016-02-30 over to 03-01 and accepts 2016-5-9: the date must print back as written
    date_ok = pc.and_(
        pc.match_substring_regex(date_text, _DATE_PATTERN),
        pc.equal(pc.strftime(date, format="%Y-%m-%d"), date_text),
    )
    date_ok = pc.fill_null(date_ok, False).to_numpy(zero_copy_only=False)
    reject(~date_ok, REASON_BAD_TIMESTAMP)
    midnight = pc.fill_null(pc.cast(date, pa.int64()), 0).to_numpy(zero_copy_only=False)
    ts = midnight + timeframe_ms // 1000
    if cfg is not None:
        reject((ts < cfg.window_start) | (ts >= cfg.window_end), REASON_OUT_OF_WINDOW)

    ordinal = np.arange(first_ordinal, first_ordinal + n, dtype=np.int64)
    bad_idx = np.flatnonzero(reason)
    good_mask = reason == 0
    good = pa.table(
        {
            "user_id": session[good_mask],
            "item_id": item[good_mask],
            "category_id": np.full(int(good_mask.sum()), DIGINETICA_CATEGORY, dtype=np.int64),
            "behavior": np.full(int(good_mask.sum()), BEHAVIORS.index("pv"), dtype=np.int8),
            "timestamp": ts[good_mask],
            "_ordinal": ordinal[good_mask],
        },
        schema=_WORK_SCHEMA,
    )
    return good, ordinal[bad_idx], _REASON_NAMES[reason[bad_idx]], _raw_text(columns, bad_idx, b";")


_CHECKERS = {"taobao": _check_batch, "diginetica": _check_diginetica_batch}


class ByteRange(io.RawIOBase):
    """A read-only view of bytes [start, end) of a plain file that also counts the newlines it returned
    (a partition of the raw log: line numbers of later ranges are offset by the newlines of earlier ones)."""

    def __init__(self, path: str | Path, start: int, end: int) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._fh.seek(start)
        self.start, self.end, self.pos = start, end, start
        self.newlines = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.end - self.pos)
        if n <= 0:
            return 0
        data = self._fh.read(n)
        buffer[: len(data)] = data
        self.pos += len(data)
        self.newlines += data.count(b"\n")
        return len(data)

    def tell(self) -> int:
        return self.pos - self.start

    def close(self) -> None:
        self._fh.close()
        super().close()


def line_aligned_ranges(path: str | Path, parts: int) -> list[tuple[int, int]]:
    """Split a plain file into up to `parts` byte ranges that start at line starts (empty ones dropped)."""
    size = Path(path).stat().st_size
    starts = [0]
    with open(path, "rb") as fh:
        for k in range(1, parts):
            nominal = size * k // parts
            if nominal <= starts[-1]:
                continue
            fh.seek(nominal - 1)
            while True:  # the first line start at or after `nominal`
                block = fh.read(1 << 16)
                if not block:
                    starts.append(size)
                    break
                at = block.find(b"\n")
                if at >= 0:
                    starts.append(fh.tell() - len(block) + at + 1)
                    break
    bounds = sorted(set(starts) | {size})
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _iter_batches(
    source: _Source, cfg: IngestConfig | None, block_size: int, byte_range: ByteRange | None = None
) -> Iterator[_Batch]:
    """Stream `source` (or only `byte_range` of it: a plain file, line-aligned) as checked batches.
    `cfg=None` skips the time-window check. Invalid rows' line numbers count from the range's start.

    A prefetch thread runs the (GIL-free) CSV parser one block ahead while this thread checks the
    previous block, so parsing and checking use both cores.
    """
    import queue
    import threading

    invalid_rows: list[tuple[int, bytes]] = []

    def on_invalid(row) -> str:
        text = row.text if isinstance(row.text, bytes) else str(row.text).encode("utf-8", "surrogateescape")
        invalid_rows.append((int(row.number) if row.number is not None else -1, text))
        return "skip"

    if byte_range is not None:
        raw_file = stream = pa.PythonFile(byte_range, mode="r")
        skip_header = source.header and byte_range.start == 0
    else:
        raw_file = pa.OSFile(str(source.path))
        stream = pa.CompressedInputStream(raw_file, "gzip") if source.compressed else raw_file
        skip_header = source.header
    ready: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            reader = pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(
                    column_names=list(source.column_names),
                    skip_rows=1 if skip_header else 0,
                    block_size=block_size,
                    # Single-threaded parsing keeps physical line numbers for rows with a wrong field count.
                    use_threads=False,
                ),
                parse_options=pa_csv.ParseOptions(
                    delimiter=source.delimiter,
                    invalid_row_handler=on_invalid,
                    ignore_empty_lines=False,
                    newlines_in_values=False,
                ),
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.binary() for name in source.column_names},
                    check_utf8=False,
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            while not stop.is_set():
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                item = (batch, invalid_rows[:], raw_file.tell())
                invalid_rows.clear()
                ready.put(item)
            ready.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            ready.put(exc)

    check = _CHECKERS[source.format]
    thread = threading.Thread(target=produce, name="drlrec-ingest-parser", daemon=True)
    thread.start()
    ordinal = 0
    last_pos = 0
    try:
        while True:
            item = ready.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                if isinstance(item, (pa.ArrowInvalid, OSError)):
                    # e.g. a gzip stream that ends early or is corrupt past the first block
                    raise InputError(f"{source.path}: unreadable CSV ({str(item).splitlines()[0]})") from item
                raise item
            batch, invalid, pos = item
            good, bad_ord, bad_reason, bad_raw = check(batch, ordinal, cfg)
            ordinal += batch.num_rows
            yield _Batch(good, bad_ord, bad_reason, bad_raw, invalid, pos - last_pos)
            last_pos = pos
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get(timeout=0.05)
            except queue.Empty:
                pass
        stream.close()


class _LineMapper:
    """Maps parse ordinals (rows pyarrow returned) to physical line numbers, given the skipped invalid lines."""

    def __init__(self, first_line: int) -> None:
        self.first_line = first_line
        self._invalid: list[int] = []

    def add_invalid(self, lines: list[int]) -> None:
        self._invalid.extend(lines)

    def lines(self, ordinals: np.ndarray) -> np.ndarray:
        invalid = np.sort(np.asarray(self._invalid, dtype=np.int64))
        # valid lines before each invalid line; the k-th valid row is preceded by #{invalid with that <= k}
        shifted = invalid - self.first_line - np.arange(len(invalid), dtype=np.int64)
        return self.first_line + ordinals + np.searchsorted(shifted, ordinals, side="right")


# ---------------------------------------------------------------------------------------------- duplicates


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


# ---------------------------------------------------------------------------------------------- ingest


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


# ---------------------------------------------------------------------------------------------- reading


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
