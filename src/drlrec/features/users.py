"""Where each user's events start in an events table sorted by user then time, and each event's position."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class UserIndex(NamedTuple):
    """Per-event user bookkeeping of a table sorted by (user, time); n = number of events."""

    start: np.ndarray  # [n] int32: row of the user's first event
    position: np.ndarray  # [n] int32: events of the same user before this one (0 for the first)
    is_first: np.ndarray  # [n] bool: the user's first event
    ordinal: np.ndarray  # [n] int32: 0, 1, 2, ... per distinct user, in table order


def user_index(user_id: np.ndarray) -> UserIndex:
    """Index the user runs of `user_id` (sorted, so each user is one contiguous run). No loop over users.

    int32 keeps the per-event bookkeeping small (tables up to 2^31 events).
    """
    user_id = np.asarray(user_id)
    n = len(user_id)
    is_first = np.ones(n, dtype=bool)
    if n > 1:
        np.not_equal(user_id[1:], user_id[:-1], out=is_first[1:])
    rows = np.arange(n, dtype=np.int32)
    # the running max of "row where a run starts" is the start of the current run
    start = np.maximum.accumulate(np.where(is_first, rows, 0))
    position = np.subtract(rows, start, out=rows)
    ordinal = np.cumsum(is_first, dtype=np.int32) - 1
    return UserIndex(start=start, position=position, is_first=is_first, ordinal=ordinal)


def exclusive_cumsum(values: np.ndarray, index: UserIndex) -> np.ndarray:
    """Per event: the sum of `values` over the same user's earlier events (0 for the first event)."""
    total = np.cumsum(values, dtype=np.int64)
    before = total - values  # sum over every earlier row of the table
    return before - before[index.start]


def inclusive_cumsum(values: np.ndarray, index: UserIndex) -> np.ndarray:
    """Per event: the sum of `values` over the same user's events up to and including this one."""
    total = np.cumsum(values, dtype=np.int64)
    return total - (total - values)[index.start]
