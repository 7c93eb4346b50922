"""Append-only logs of the service: the durable interaction log (raw-data schema) and the exposure log.

The interaction log is what retraining and monitoring read, so an acknowledged interaction must survive a
kill -9: each row is one `write` on an O_APPEND descriptor followed by `fsync` before the API answers 202.
A torn last row left by a crash (no trailing newline) is cut off when the log is opened again.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from pathlib import Path

from drlrec.serving.abtest import EXPOSURE_COLUMNS


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
    """CSV with a header (abtest.EXPOSURE_COLUMNS), one row per served list; flushed per row, not fsynced
    (an exposure lost in a crash costs one impression in the A/B counts, not an acknowledged write)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_torn_tail(self.path)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self._fh = open(self.path, "a", encoding="utf-8", newline="")
        self._lock = threading.Lock()
        if new:
            self._fh.write(",".join(EXPOSURE_COLUMNS) + "\n")
            self._fh.flush()

    def append(
        self, served_at: float, user_id: int, variant: str, alias: str, model_version: str, fallback: str,
        cached: bool, items: list[int],
    ) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [f"{served_at:.3f}", int(user_id), variant, alias, model_version, fallback, int(cached),
             " ".join(str(int(i)) for i in items)]
        )
        with self._lock:
            self._fh.write(buf.getvalue())
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()
