"""Users' whole histories from the events table, for building states of logged moments from scratch.

The simulated environment starts each session at a logged event of a split and must hold the user's whole
past to build the state there (and after every simulated event) with the one state builder
(features.states.build_states): the event tables of the featurize outputs keep only `seq_len` events of
context before a split and no raw categories or timestamps for them. `EventHistories` reads the users it
is asked for from events.parquet (the file featurize read, in the same (user, time) order), encoded with
the train vocabularies, and cuts out the history before any logged event.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from drlrec.errors import InputError
from drlrec.features.states import Histories, ranks
from drlrec.features.vocab import Vocab

_COLUMNS = ("user_id", "item_id", "category_id", "behavior", "timestamp")


class EventHistories(NamedTuple):
    """Every event of some users, sorted by (user, time) as featurize reads them; R events of U users."""

    users: np.ndarray  # [U] int64 sorted raw user ids
    offsets: np.ndarray  # [U + 1] int64 user u's events are rows offsets[u]:offsets[u + 1]
    item_idx: np.ndarray  # [R] int32 train vocabulary index
    category_idx: np.ndarray  # [R] int32
    category_id: np.ndarray  # [R] int64 raw category id
    behavior: np.ndarray  # [R] int8
    timestamp: np.ndarray  # [R] int64
    category_vocab: Vocab  # to give simulated events their raw category ids

    @classmethod
    def from_columns(
        cls, columns: dict[str, np.ndarray], item_vocab: Vocab, category_vocab: Vocab
    ) -> EventHistories:
        """From event columns (EVENT_COLUMNS) sorted by user then time."""
        user = np.asarray(columns["user_id"], dtype=np.int64)
        timestamp = np.asarray(columns["timestamp"], dtype=np.int64)
        if len(user) > 1 and (np.any(user[1:] < user[:-1]) or np.any((user[1:] == user[:-1]) & (timestamp[1:] < timestamp[:-1]))):
            raise InputError("events are not sorted by user then time (the histories read what `drlrec ingest` writes)")
        starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if len(user) else np.zeros(0, np.int64)
        category_id = np.asarray(columns["category_id"], dtype=np.int64)
        return cls(
            users=user[starts],
            offsets=np.r_[starts, len(user)].astype(np.int64),
            item_idx=item_vocab.encode(columns["item_id"]),
            category_idx=category_vocab.encode(category_id),
            category_id=category_id,
            behavior=np.asarray(columns["behavior"], dtype=np.int8),
            timestamp=timestamp,
            category_vocab=category_vocab,
        )

    @classmethod
    def load(
        cls, events_path: str | Path, item_vocab: Vocab, category_vocab: Vocab, users: np.ndarray | None = None
    ) -> EventHistories:
        """Read the events of `users` (default: everyone) from events.parquet, one record batch at a time, so
        memory holds only the rows kept."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(events_path)
        if not path.is_file():
            raise InputError(f"{path}: no such file (the simulated sessions need the users' events: run `drlrec ingest`)")
        wanted = None if users is None else np.unique(np.asarray(users, dtype=np.int64))
        parts: dict[str, list[np.ndarray]] = {c: [] for c in _COLUMNS}
        try:
            for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=1 << 20, columns=list(_COLUMNS)):
                cols = {c: batch.column(c).to_numpy(zero_copy_only=False) for c in _COLUMNS}
                keep = slice(None) if wanted is None else np.isin(cols["user_id"], wanted)
                for c in _COLUMNS:
                    parts[c].append(np.asarray(cols[c])[keep])
        except (pa.ArrowException, OSError, KeyError) as exc:
            raise InputError(f"{path}: not a readable events Parquet file ({str(exc).splitlines()[0]})") from exc
        columns = {c: np.concatenate(v) if v else np.zeros(0, np.int64) for c, v in parts.items()}
        return cls.from_columns(columns, item_vocab, category_vocab)

    def before(self, user_id: np.ndarray, timestamp: np.ndarray, tie_rank: np.ndarray,
               expect_item: np.ndarray | None = None) -> Histories:
        """The histories before B logged events: user `user_id` [B]'s events up to the one at `timestamp` [B]
        that is the `tie_rank`-th [B] of the user's events at that second (0 = the first), excluded.
        `expect_item` [B]: the logged events' item indices, checked against the events found."""
        user_id = np.asarray(user_id, dtype=np.int64)
        timestamp = np.asarray(timestamp, dtype=np.int64)
        u = np.searchsorted(self.users, user_id)
        found = u < len(self.users)
        found[found] = self.users[u[found]] == user_id[found]
        if not found.all():
            raise InputError(f"user {int(user_id[~found][0])} is not in the events (the events and the features differ)")
        lo, hi = self.offsets[u], self.offsets[u + 1]
        # rows of the user before `timestamp`: a binary search inside each user's time-sorted run
        at = lo + _count_below(self.timestamp, lo, hi, timestamp) + np.asarray(tie_rank, dtype=np.int64)
        bad = (at >= hi) | (self.timestamp[np.minimum(at, len(self.timestamp) - 1)] != timestamp)
        if expect_item is not None:
            bad |= self.item_idx[np.minimum(at, len(self.item_idx) - 1)] != np.asarray(expect_item)
        if bad.any():
            raise InputError(
                f"user {int(user_id[bad][0])}: no event at {int(timestamp[bad][0])} like the logged one "
                "(the events file is not the one the features were built from)"
            )
        lengths = at - lo
        rows = np.repeat(lo, lengths) + ranks(lengths)
        return Histories.from_lengths(
            lengths, self.item_idx[rows], self.category_idx[rows], self.category_id[rows], self.behavior[rows],
            self.timestamp[rows],
        )

    def raw_category(self, category_idx: np.ndarray) -> np.ndarray:
        """Raw category ids of category indices (the unknown index -> -1, one pooled id)."""
        return self.category_vocab.decode(np.asarray(category_idx, dtype=np.int64))


def tie_ranks(user_id: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """[n] int64: for events in (user, time) order, how many earlier events of the same user share the
    event's second (so (user, timestamp, rank) names one event even where seconds repeat)."""
    user_id = np.asarray(user_id)
    timestamp = np.asarray(timestamp)
    n = len(user_id)
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = (user_id[1:] != user_id[:-1]) | (timestamp[1:] != timestamp[:-1])
    rows = np.arange(n, dtype=np.int64)
    return rows - np.maximum.accumulate(np.where(new, rows, 0))


def _count_below(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[B] how many of values[lo:hi] are < target, each run sorted: a vectorized binary search."""
    left, right = lo.astype(np.int64).copy(), hi.astype(np.int64).copy()
    while True:
        open_ = left < right
        if not open_.any():
            return left - lo
        mid = (left + right) // 2
        below = open_ & (values[np.minimum(mid, len(values) - 1)] < target)
        left = np.where(below, mid + 1, left)
        right = np.where(open_ & ~below, mid, right)
