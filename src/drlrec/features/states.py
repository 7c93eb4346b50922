"""The one state builder: the state a model scores, built from users' histories in one place.

A state is the user's last N interactions (item, category, behaviour token and the 20-d step encoding of
each, left-padded) and the 10-d profile at the decision time. Every path gets it from here:

    featurize      `encode_events` writes the step encodings of its event table (and `profile.profiles_at`
                   the profiles); training and evaluation gather stored states with `window_states`
    serving        `build_states` on the users' raw histories (serving.recommender.states_of_histories)
    environments   `build_states` on each simulated session's history after every event
                   (rl.envs.SimulatedEnv); the log-replay env reads the stored states

`build_states` runs the same vectorized steps featurize runs over its whole table (user index, running
counts, profiles before each event, time gaps, `encode_events`, `window_states`) over a batch of
histories, so a history that holds a user's whole past gives the state featurize stored for that user's
next event, bit for bit (tests/unit/test_features.py feeds one set of histories through every path).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from drlrec.config import FeaturizeConfig
from drlrec.features.profile import PROFILE_DIM, profiles_at, running_counts
from drlrec.features.steps import STEP_DIM, USER_CONTEXT_COLUMNS, TrainStats, step_features, time_gaps
from drlrec.features.users import user_index


class StateBatch(NamedTuple):
    """A batch of states, left-padded (index 0 = padding), the most recent interaction last."""

    item_seq: np.ndarray  # [B, L] int   item vocab indices
    category_seq: np.ndarray  # [B, L] int   category vocab indices
    behavior_seq: np.ndarray  # [B, L] int   behaviour tokens: code + 1 (1 pv, 2 cart, 3 fav, 4 buy), 0 = padding
    step_features: np.ndarray  # [B, L, 20] float32  per-step encoding
    profile: np.ndarray  # [B, 10] float32  user profile as of the state

    @property
    def batch_size(self) -> int:
        return int(self.item_seq.shape[0])

    def slice(self, start: int, stop: int) -> StateBatch:
        return StateBatch(*(a[start:stop] for a in self))


class Histories(NamedTuple):
    """B users' histories, oldest event first, stored user after user in flat arrays (R events in all).

    Items and categories are vocabulary indices; `category_id` keeps the raw category ids, because the
    profile counts distinct categories and the unknown index pools many of them. `skipped` counts the
    user's events before the first one held (serving keeps only its last few: positions count them all)."""

    offsets: np.ndarray  # [B + 1] int64: user b's events are rows offsets[b]:offsets[b + 1]
    item_idx: np.ndarray  # [R] int64
    category_idx: np.ndarray  # [R] int64
    category_id: np.ndarray  # [R] int64 raw category ids
    behavior: np.ndarray  # [R] int8 behaviour codes
    timestamp: np.ndarray  # [R] int64 Unix seconds, non-decreasing within a user
    skipped: np.ndarray  # [B] int64 events of the user before the first one held

    @property
    def size(self) -> int:
        """B, the number of users."""
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """[B] int64 events held per user."""
        return np.diff(self.offsets)

    @classmethod
    def from_lengths(cls, lengths, item_idx, category_idx, category_id, behavior, timestamp, skipped=None) -> Histories:
        """Histories from flat event columns and the number of events of each user."""
        lengths = np.asarray(lengths, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(
            offsets,
            np.asarray(item_idx, dtype=np.int64),
            np.asarray(category_idx, dtype=np.int64),
            np.asarray(category_id, dtype=np.int64),
            np.asarray(behavior, dtype=np.int8),
            np.asarray(timestamp, dtype=np.int64),
            np.zeros(len(lengths), np.int64) if skipped is None else np.asarray(skipped, dtype=np.int64),
        )

    def append(self, users, item_idx, category_idx, category_id, behavior, timestamp) -> Histories:
        """The histories with one new event at the end of each of `users` ([b] distinct user numbers, each
        with its event's fields [b]); the other users' histories are unchanged."""
        users = np.asarray(users, dtype=np.int64)
        if len(users) == 0:
            return self
        order = np.argsort(users, kind="stable")
        users = users[order]
        at = self.offsets[users + 1]  # insert after each user's last event
        added = np.zeros(self.size, dtype=np.int64)
        added[users] = 1

        def put(column: np.ndarray, values) -> np.ndarray:
            return np.insert(column, at, np.asarray(values)[order].astype(column.dtype))

        offsets = self.offsets.copy()
        offsets[1:] += np.cumsum(added)
        return Histories(
            offsets,
            put(self.item_idx, item_idx),
            put(self.category_idx, category_idx),
            put(self.category_id, category_id),
            put(self.behavior, behavior),
            put(self.timestamp, timestamp),
            self.skipped,
        )

    def take(self, users: np.ndarray) -> Histories:
        """The histories of `users` ([b] user numbers), in that order."""
        users = np.asarray(users, dtype=np.int64)
        lengths = self.lengths[users]
        rows = np.repeat(self.offsets[users], lengths) + ranks(lengths)
        return Histories.from_lengths(
            lengths, self.item_idx[rows], self.category_idx[rows], self.category_id[rows], self.behavior[rows],
            self.timestamp[rows], self.skipped[users],
        )

    def last_timestamp(self) -> np.ndarray:
        """[B] int64 time of each user's newest event (0 for an empty history)."""
        out = np.zeros(self.size, dtype=np.int64)
        held = self.lengths > 0
        out[held] = self.timestamp[self.offsets[1:][held] - 1]
        return out


def encode_events(
    item_idx: np.ndarray,
    category_idx: np.ndarray,
    behavior: np.ndarray,
    time_gap: np.ndarray,
    position: np.ndarray,
    profile: np.ndarray,
    stats: TrainStats,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The 20-d step encodings [m, 20] of m events, given each event's profile before it ([m, 10]) and its
    time gap and position in the user's sequence (features.steps.step_features on the profile's user
    context). featurize encodes its event table with this, `build_states` a batch of histories."""
    return step_features(
        item_idx,
        category_idx,
        behavior,
        time_gap,
        position,
        np.asarray(profile)[:, USER_CONTEXT_COLUMNS],
        stats,
        out=out,
    )


def window_states(
    item_idx: np.ndarray,
    category_idx: np.ndarray,
    behavior_token: np.ndarray,
    step_rows: np.ndarray,
    rows: np.ndarray,
    profile: np.ndarray,
) -> StateBatch:
    """States from an event table whose row 0 is padding: `rows` [B, N] are each state's table rows, oldest
    first, 0 where the window is padded (`window_rows`); `profile` [B, 10]."""
    return StateBatch(
        item_seq=item_idx[rows],
        category_seq=category_idx[rows],
        behavior_seq=behavior_token[rows],
        step_features=step_rows[rows],
        profile=profile,
    )


def window_rows(
    row: np.ndarray, start: np.ndarray, n: int, indices: np.ndarray | None, end_offset: int
) -> np.ndarray:
    """[B, n] int32 rows [row - n + end_offset, row + end_offset) of each transition at `indices`, oldest
    first; rows below the transition's `start` (another user's, or none) are padding (0)."""
    if indices is None:
        end, floor = row.astype(np.int64) + end_offset, start
    else:
        indices = np.asarray(indices, dtype=np.int64)
        end, floor = row[indices].astype(np.int64) + end_offset, start[indices]
    window = end[:, None] - np.arange(n, 0, -1, dtype=np.int64)[None, :]  # [B, n]: n..1 rows before the end
    return np.where(window >= floor[:, None], window, 0).astype(np.int32)


def build_states(
    histories: Histories,
    stats: TrainStats,
    cfg: FeaturizeConfig,
    seq_len: int,
    now: np.ndarray | int | None = None,
) -> StateBatch:
    """The states of B users after their histories, at decision times `now` ([B] or one value; default:
    each user's newest event). Vectorized over all events of the batch; no loop over users or events.

    The profile is computed from every event held and measured at `now`; the step encodings of the last
    `seq_len` events are those featurize gives each of them (profile before the event, time since the
    previous event, position counting the skipped events). An empty history is the all-padding state."""
    b, n = histories.size, int(seq_len)
    lengths = histories.lengths
    at = _decision_times(histories, now)
    owner = np.repeat(np.arange(b, dtype=np.int64), lengths)  # [R] user number of each event
    index = user_index(owner)
    running = running_counts(index, histories.category_id, histories.behavior)

    # the last n events of each user: the rows the window shows
    held = np.minimum(lengths, n)
    last_rows = np.repeat(histories.offsets[1:] - held, held) + ranks(held)  # [S] flat rows, user by user
    before, profile = _profiles(histories, running, index, cfg, at, last_rows)
    s = len(last_rows)
    gap = time_gaps(histories.timestamp, index.is_first)[last_rows]
    position = index.position[last_rows].astype(np.int64) + histories.skipped[owner[last_rows]]
    # an event table over the shown events (row 0 padding), then the same window gather featurize uses
    table_steps = np.zeros((s + 1, STEP_DIM), dtype=np.float32)
    encode_events(
        histories.item_idx[last_rows],
        histories.category_idx[last_rows],
        histories.behavior[last_rows],
        gap,
        position,
        before,
        stats,
        out=table_steps[1:],
    )

    def table(column: np.ndarray, dtype, shift: int = 0) -> np.ndarray:
        out = np.zeros(s + 1, dtype=dtype)
        out[1:] = column[last_rows] + shift
        return out

    end = np.cumsum(held) + 1  # [B] one past each user's last table row (the next event's row)
    rows = window_rows(end, end - held, n, None, end_offset=0)  # [B, n]
    return window_states(
        table(histories.item_idx, np.int64),
        table(histories.category_idx, np.int64),
        table(histories.behavior, np.int8, shift=1),
        table_steps,
        rows,
        profile,
    )


def profiles_of_histories(histories: Histories, cfg: FeaturizeConfig, now: np.ndarray | int | None = None) -> np.ndarray:
    """[B, 10] float32: the profile part of `build_states` alone (each user's profile after the events
    held, measured at `now`; default each user's newest event). No vocabulary or statistics needed."""
    owner = np.repeat(np.arange(histories.size, dtype=np.int64), histories.lengths)
    index = user_index(owner)
    running = running_counts(index, histories.category_id, histories.behavior)
    return _profiles(histories, running, index, cfg, _decision_times(histories, now), np.zeros(0, np.int64))[1]


def _decision_times(histories: Histories, now: np.ndarray | int | None) -> np.ndarray:
    if now is None:
        return histories.last_timestamp()
    return np.broadcast_to(np.asarray(now, dtype=np.int64), (histories.size,))


def _profiles(histories: Histories, running, index, cfg: FeaturizeConfig, at: np.ndarray,
              shown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One gather of the running counts for both: the profile before each of the `shown` rows (at the row's
    own time) [S, 10], and each user's profile after the newest event held, at `at` [B, 10] (zeros for an
    empty history)."""
    has = histories.lengths > 0
    newest = histories.offsets[1:][has] - 1
    s = len(shown)
    profiles = profiles_at(
        running, index, histories.timestamp, cfg,
        rows=np.concatenate([shown, newest]),
        include_event=np.r_[np.zeros(s, dtype=bool), np.ones(len(newest), dtype=bool)],
        at=np.concatenate([histories.timestamp[shown], at[has]]),
    )
    after = np.zeros((histories.size, PROFILE_DIM), dtype=np.float32)
    after[has] = profiles[s:]
    return profiles[:s], after


def ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., c - 1 for each c of `counts`, concatenated ([sum(counts)] int64)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts
