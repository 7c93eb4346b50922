"""Sessions: a user's events split at gaps longer than `session_gap` seconds."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from drlrec.features.users import UserIndex, exclusive_cumsum


class Sessions(NamedTuple):
    """Per-event session bookkeeping of a (user, time)-sorted table; n = number of events.

    A session is identified by (user_id, session_index). Numbering is per user, so it depends only on the
    user's own past: deleting later events (or other users) never renumbers earlier sessions.
    """

    session_index: np.ndarray  # [n] int32: 0 for the user's first session, then 1, 2, ...
    session_position: np.ndarray  # [n] int32: events of the same session before this one
    is_session_end: np.ndarray  # [n] bool: the last event of its session (so it looks one event ahead)


def sessionize(timestamp: np.ndarray, index: UserIndex, session_gap: int) -> Sessions:
    """Split each user's events at gaps > `session_gap` seconds (a gap of exactly `session_gap` continues)."""
    timestamp = np.asarray(timestamp, dtype=np.int64)
    n = len(timestamp)
    gap = np.zeros(n, dtype=np.int64)
    gap[1:] = np.diff(timestamp)
    starts = index.is_first | (gap > session_gap)  # [n]
    rows = np.arange(n, dtype=np.int64)
    session_start = np.maximum.accumulate(np.where(starts, rows, 0))
    session_index = exclusive_cumsum(starts.astype(np.int64), index) + starts - 1
    is_end = np.ones(n, dtype=bool)
    is_end[:-1] = starts[1:]
    return Sessions(
        session_index=session_index.astype(np.int32),
        session_position=(rows - session_start).astype(np.int32),
        is_session_end=is_end,
    )
