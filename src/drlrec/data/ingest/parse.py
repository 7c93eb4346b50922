"""Arrow record batches of a raw log, every column read as raw bytes, and the vectorized checks that
split each batch into typed good rows and quarantined rows with their reasons."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from drlrec.config import IngestConfig
from drlrec.data.ingest.source import DIGINETICA_CATEGORY, DIGINETICA_COLUMNS, ByteRange, _Source
from drlrec.errors import InputError
from drlrec.schema import (
    BEHAVIORS,
    EVENTS_SCHEMA,
    QUARANTINE_REASONS,
    RAW_COLUMNS,
    REASON_BAD_ID,
    REASON_BAD_TIMESTAMP,
    REASON_FIELD_COUNT,
    REASON_OUT_OF_WINDOW,
    REASON_UNKNOWN_BEHAVIOR,
)

_ID_COLUMNS = ("user_id", "item_id", "category_id")

_BEHAVIOR_VALUES = pa.array([b.encode() for b in BEHAVIORS], type=pa.binary())

# 18 digits always fit in int64; longer "ids" are rejected rather than silently wrapped.
_UINT_PATTERN = r"^[0-9]{1,18}$"

_SORTED_WITH_ORDINAL = ["user_id", "timestamp", "_ordinal"]

_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

# Working rows carry their parse ordinal: it orders ties stably and maps rows back to physical lines.
_WORK_SCHEMA = EVENTS_SCHEMA.append(pa.field("_ordinal", pa.int64(), nullable=False))


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
