"""The service's two append-only logs, owned here: the writers serving appends with and the one reader of
each that monitoring, the A/B report, the raw-data append and serving's warm-up all use.

- The interaction log (`paths.interactions`): header-less CSV rows in the raw data's schema
  `user_id,item_id,category_id,behavior_type,timestamp`, so `drlrec ingest --input` reads it like the raw
  log. Retraining and monitoring read it, so an acknowledged interaction must survive a kill -9: each row
  is one `write` on an O_APPEND descriptor followed by `fsync` before the API answers 202. A torn last row
  left by a crash (no trailing newline) is cut off when the log is opened again, and skipped by the reader.
  `read_interactions` returns typed events; an absent file is an InputError unless `missing_ok`.
- The exposure log (`paths.exposures`): a CSV with a header (EXPOSURE_COLUMNS), one row per served list;
  flushed per row, not fsynced. `read_exposures` returns a frame, empty when the file is absent.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drlrec.errors import InputError
from drlrec.schema import BEHAVIOR_CODE, RAW_COLUMNS

#: the exposure log's columns, in file order (a log begun before the exploration columns has only the first
#: eight: it is read with those columns empty, and appended to in its own layout)
EXPOSURE_COLUMNS: tuple[str, ...] = (
    "served_at", "user_id", "variant", "alias", "model_version", "fallback", "cached", "items",
    # the policy that chose the list and how it explored (drlrec.serving.exploration.describe)
    "policy", "exploration",
    # P(shown item at its slot | state), one per item of `items`; P(exactly this ordered list | state)
    "propensities", "list_propensity",
    # the state the model saw: the kept history (oldest first) and the user's events in all
    "history_total", "state_items", "state_categories", "state_behaviors", "state_timestamps",
)
#: the columns of a log written before exploration was logged
LEGACY_EXPOSURE_COLUMNS: tuple[str, ...] = EXPOSURE_COLUMNS[:8]

def empty_interactions() -> pd.DataFrame:
    """A typed interaction frame with no rows."""
    frame = pd.DataFrame({"user_id": pd.Series(dtype=np.int64), "item_id": pd.Series(dtype=np.int64),
                          "category_id": pd.Series(dtype=np.int64), "behavior": pd.Series(dtype=np.int8),
                          "timestamp": pd.Series(dtype=np.int64)})
    frame.attrs["skipped_rows"] = 0
    return frame


def read_interactions(path: str | Path, missing_ok: bool = False) -> pd.DataFrame:
    """Read an interaction log or raw batch (raw schema, with or without header, extra columns such as
    `variant` ignored) into typed events (user_id, item_id, category_id, behavior code, timestamp) sorted
    by user then time. Rows with an unknown behaviour or a non-integer field, and a torn last line (a
    crash mid-write), are left out and counted in `frame.attrs["skipped_rows"]`. An absent or empty file
    is an InputError, or an empty frame with `missing_ok` (the A/B report and serving's warm-up: no
    interactions yet); a file with rows but no usable one is an InputError."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    torn: list[int] = []

    def skip_row(row) -> str:  # a row with another number of fields (a torn last line): left out, counted
        torn.append(row.number)
        return "skip"

    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return empty_interactions()
        raise InputError(f"{path}: no such interaction log")
    with open(path, "rb") as fh:
        first = fh.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    if not first:
        if missing_ok:
            return empty_interactions()
        raise InputError(f"{path}: interaction log is empty")
    has_header = not first.split(",", 1)[0].strip().strip('"').lstrip("-").isdigit()
    names = [n.strip().strip('"').lower() for n in first.split(",")] if has_header else None
    if names is not None:
        names = ["behavior_type" if n in ("behavior", "behaviour") else n for n in names]
        missing = [c for c in RAW_COLUMNS if c not in names]
        if missing:
            raise InputError(f"{path}: header lacks {', '.join(missing)} (expected {', '.join(RAW_COLUMNS)})")
    else:
        n_fields = first.count(",") + 1
        if n_fields < len(RAW_COLUMNS):
            raise InputError(f"{path}: {n_fields} fields per row; expected {', '.join(RAW_COLUMNS)}")
        names = list(RAW_COLUMNS) + [f"extra_{i}" for i in range(n_fields - len(RAW_COLUMNS))]
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1 if has_header else 0),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=skip_row),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(RAW_COLUMNS), column_types={c: pa.string() for c in RAW_COLUMNS}
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: not a CSV interaction log ({str(exc).splitlines()[0]})") from exc
    frame = table.to_pandas()
    ids = {c: pd.to_numeric(frame[c], errors="coerce") for c in ("user_id", "item_id", "category_id", "timestamp")}
    behavior = frame["behavior_type"].str.strip().str.lower().map(BEHAVIOR_CODE)
    ok = behavior.notna()
    for values in ids.values():
        ok &= values.notna()
    if not ok.any():
        raise InputError(f"{path}: no valid interaction rows")
    events = pd.DataFrame(
        {
            "user_id": ids["user_id"][ok].astype(np.int64).to_numpy(),
            "item_id": ids["item_id"][ok].astype(np.int64).to_numpy(),
            "category_id": ids["category_id"][ok].astype(np.int64).to_numpy(),
            "behavior": behavior[ok].astype(np.int8).to_numpy(),
            "timestamp": ids["timestamp"][ok].astype(np.int64).to_numpy(),
        }
    )
    events = sort_events(events)
    events.attrs["skipped_rows"] = int(len(torn) + (~ok).sum())
    return events


def sort_events(events: pd.DataFrame) -> pd.DataFrame:
    """Events sorted by user then time (stable), with a fresh index."""
    order = np.lexsort((events["timestamp"].to_numpy(), events["user_id"].to_numpy()))
    return events.iloc[order].reset_index(drop=True)


def read_exposures(path: str | Path) -> pd.DataFrame:
    """The exposure log (header row + one row per served list; `items` space-separated raw ids). An absent
    or empty file is an empty log (no list served yet); a torn or malformed row is skipped."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EXPOSURE_COLUMNS})
    text = {c: str for c in EXPOSURE_COLUMNS if c not in ("served_at", "user_id", "cached")}
    frame = pd.read_csv(path, dtype=text, keep_default_na=False, on_bad_lines="skip")
    missing = [c for c in LEGACY_EXPOSURE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: not an exposure log (missing columns {', '.join(missing)})")
    for column in EXPOSURE_COLUMNS[len(LEGACY_EXPOSURE_COLUMNS):]:  # a log begun before exploration was logged
        if column not in frame.columns:
            frame[column] = ""
    frame = frame[list(EXPOSURE_COLUMNS)]
    frame["served_at"] = pd.to_numeric(frame["served_at"], errors="coerce")
    frame["user_id"] = pd.to_numeric(frame["user_id"], errors="coerce")
    return frame.dropna(subset=["served_at", "user_id"]).astype({"user_id": np.int64})



def _repair_torn_tail(path: Path) -> int:
    """Truncate a last line that has no newline (a write cut by a crash); returns the bytes removed."""
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(max(0, size - 65536))
        tail = fh.read()
        if tail.endswith(b"\n"):
            return 0
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size)
        fh.truncate(keep)
        os.fsync(fh.fileno())
        return size - keep


class InteractionLog:
    """Header-less CSV rows `user_id,item_id,category_id,behavior_type,timestamp`, fsynced per append."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_bytes = _repair_torn_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self.appended = 0

    def append(self, user_id: int, item_id: int, category_id: int, behavior: str, timestamp: int) -> None:
        """Write one row and fsync it: when this returns, the row is on disk."""
        line = f"{int(user_id)},{int(item_id)},{int(category_id)},{behavior},{int(timestamp)}\n".encode()
        with self._lock:
            written = os.write(self._fd, line)
            if written != len(line):  # regular files do not write short unless the disk is full
                raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")
            os.fsync(self._fd)
            self.appended += 1

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class ExposureLog:
    """CSV with a header (EXPOSURE_COLUMNS), one row per served list; flushed per row, not fsynced
    (an exposure lost in a crash costs one impression in the A/B counts, not an acknowledged write).
    A log begun by an older drlrec (LEGACY_EXPOSURE_COLUMNS) is appended to in its own layout, so that no
    row is lost or misaligned; `legacy` is then True and the exploration columns are not written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_torn_tail(self.path)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self.legacy = False
        if not new:
            with open(self.path, encoding="utf-8") as fh:
                header = tuple(fh.readline().strip().split(","))
            self.legacy = header == LEGACY_EXPOSURE_COLUMNS
            if header not in (EXPOSURE_COLUMNS, LEGACY_EXPOSURE_COLUMNS):
                raise InputError(f"{self.path}: not an exposure log (header {','.join(header)[:120]})")
        self._fh = open(self.path, "a", encoding="utf-8", newline="")
        self._lock = threading.Lock()
        if new:
            self._fh.write(",".join(EXPOSURE_COLUMNS) + "\n")
            self._fh.flush()

    def append(
        self, served_at: float, user_id: int, variant: str, alias: str, model_version: str, fallback: str,
        cached: bool, items: list[int], policy: str = "", exploration: str = "off",
        propensities: list[float] | None = None, history: Any = None, list_propensity: float = 1.0,
    ) -> None:
        """One served list. `propensities`: P(item at its slot | state) per item (default 1 each: a greedy
        list); `list_propensity`: P(this ordered list | state); `history`: the drlrec.serving.state.History
        the model ranked from (None: no state)."""
        row = [f"{served_at:.3f}", int(user_id), variant, alias, model_version, fallback, int(cached),
               " ".join(str(int(i)) for i in items)]
        if not self.legacy:
            shown = [1.0] * len(items) if propensities is None else propensities
            row += [policy, exploration, " ".join(f"{float(p):.6g}" for p in shown), f"{float(list_propensity):.6g}"]
            if history is None:
                row += [0, "", "", "", ""]
            else:
                row += [int(history.total)] + [" ".join(str(int(v)) for v in part) for part in
                                               (history.item_id, history.category_id, history.behavior, history.timestamp)]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        with self._lock:
            self._fh.write(buf.getvalue())
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()
