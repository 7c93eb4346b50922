"""The temporal split: whole days counted from the window start; an event on a boundary goes to the later split."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import NamedTuple

import numpy as np

from drlrec.config import FeaturizeConfig
from drlrec.schema import LOCAL_UTC_OFFSET_S

SPLITS: tuple[str, ...] = ("train", "valid", "test")
TRAIN, VALID, TEST = range(len(SPLITS))
_SECONDS_PER_DAY = 86400
# The Taobao window is defined in China Standard Time; reports show boundaries there.
_UTC8 = timezone(timedelta(seconds=LOCAL_UTC_OFFSET_S))


class SplitBoundaries(NamedTuple):
    """Unix-second boundaries: train [.., train_end), valid [train_end, valid_end), test [valid_end, ..)."""

    window_start: int
    train_end: int
    valid_end: int

    def to_dict(self) -> dict[str, int | str]:
        """Timestamps and their ISO dates in UTC+8, for reports."""
        out: dict[str, int | str] = {}
        for name, value in self._asdict().items():
            out[name] = int(value)
            out[f"{name}_iso"] = datetime.fromtimestamp(int(value), tz=_UTC8).isoformat()
        return out


def split_boundaries(window_start: int, cfg: FeaturizeConfig) -> SplitBoundaries:
    """Boundaries `train_days` and `train_days + valid_days` days after `window_start` (relative, so a
    generated or shifted window splits the same way as the Taobao one)."""
    train_end = int(window_start) + cfg.train_days * _SECONDS_PER_DAY
    return SplitBoundaries(int(window_start), train_end, train_end + cfg.valid_days * _SECONDS_PER_DAY)


def assign_split(timestamp: np.ndarray, bounds: SplitBoundaries) -> np.ndarray:
    """Split code per event ([n] int8: TRAIN, VALID or TEST). Events before the window start count as train,
    events after the valid period (even past the window end) as test."""
    edges = np.array([bounds.train_end, bounds.valid_end], dtype=np.int64)
    return np.searchsorted(edges, np.asarray(timestamp, dtype=np.int64), side="right").astype(np.int8)
