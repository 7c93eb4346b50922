"""Featurize a frame of events, vectorized: the train-fitted vocabularies and statistics (TrainGlobals) and
every event's features (EventFeatures)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from drlrec.config import FeaturizeConfig
from drlrec.errors import ConfigError, InputError
from drlrec.features.profile import profiles_at, running_counts
from drlrec.features.sessions import sessionize
from drlrec.features.split import TRAIN, SplitBoundaries, assign_split, split_boundaries
from drlrec.features.steps import (
    TrainStats,
    fit_train_stats,
    time_gaps,
)
from drlrec.features.users import UserIndex, user_index
from drlrec.features.vocab import Vocab, fit_vocab
from drlrec.schema import BEHAVIORS, EVENT_COLUMNS, EVENT_DTYPES

ITEM_VOCAB_FILE = "item_vocab.npz"

CATEGORY_VOCAB_FILE = "category_vocab.npz"

TRAIN_STATS_FILE = "train_stats.npz"

REPORT_FILE = "featurize_report.json"

DONE_DEFINITION = "last event of the user in the split (session_end is stored for session episodes)"


class TrainGlobals(NamedTuple):
    """Everything fitted on the train period that later splits and serving must reuse unchanged."""

    item_vocab: Vocab
    category_vocab: Vocab
    stats: TrainStats

    def save(self, features_dir: str | Path) -> None:
        """Write the vocabularies and statistics into `features_dir` (each file atomically)."""
        features_dir = Path(features_dir)
        self.item_vocab.save(features_dir / ITEM_VOCAB_FILE)
        self.category_vocab.save(features_dir / CATEGORY_VOCAB_FILE)
        self.stats.save(features_dir / TRAIN_STATS_FILE)

    @classmethod
    def load(cls, features_dir: str | Path) -> TrainGlobals:
        """Read what `save` wrote (serving maps raw ids and computes step features with these)."""
        features_dir = Path(features_dir)
        return cls(
            Vocab.load(features_dir / ITEM_VOCAB_FILE),
            Vocab.load(features_dir / CATEGORY_VOCAB_FILE),
            TrainStats.load(features_dir / TRAIN_STATS_FILE),
        )


class EventFeatures(NamedTuple):
    """Per-event features of the whole events table, in its (user, time) order; n = number of events."""

    user_id: np.ndarray  # [n] int64 raw user id
    category_id: np.ndarray  # [n] int64 raw category id
    timestamp: np.ndarray  # [n] int64 Unix seconds
    behavior: np.ndarray  # [n] int8 behaviour code
    item_idx: np.ndarray  # [n] int32 train vocabulary index (1 = unknown)
    category_idx: np.ndarray  # [n] int32
    split: np.ndarray  # [n] int8 TRAIN / VALID / TEST
    users: UserIndex  # start, position, is_first, ordinal: each [n]
    time_gap: np.ndarray  # [n] int32 seconds since the user's previous event (0 for the first)
    session_index: np.ndarray  # [n] int32
    session_position: np.ndarray  # [n] int32
    session_end: np.ndarray  # [n] bool
    profile: np.ndarray  # [n, 10] float32 profile before the event
    episode_end: np.ndarray  # [n] bool: the user's last event within the event's split
    terminal_profile: np.ndarray  # [D, 10] float32 profile after each episode-end event, in table order


class FeaturizeResult(NamedTuple):
    """What `featurize` returns; `build_transitions(result, split)` cuts one split out of it."""

    globals: TrainGlobals
    bounds: SplitBoundaries
    events: EventFeatures
    seq_len: int
    reward_weights: np.ndarray  # [4] float32 business reward per behaviour code


def load_events(path: str | Path) -> pd.DataFrame:
    """Read events.parquet into a DataFrame backed by plain numpy arrays (EVENTS_SCHEMA dtypes).

    Record batches are copied into preallocated columns and Arrow's pool is released afterwards, so the
    resident size is the columns themselves (pyarrow's to_pandas keeps about as much again in its pool).
    """
    import pyarrow as pa

    path = Path(path)
    parquet = _open_events(path)
    try:
        n = parquet.metadata.num_rows
        columns = {c: np.empty(n, dtype=EVENT_DTYPES[c]) for c in EVENT_COLUMNS}
        at = 0
        batch = None
        for batch in parquet.iter_batches(batch_size=1 << 20, columns=list(EVENT_COLUMNS)):
            for name in EVENT_COLUMNS:
                columns[name][at : at + batch.num_rows] = batch.column(name).to_numpy(zero_copy_only=False)
            at += batch.num_rows
        del batch, parquet
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable events Parquet file ({str(exc).splitlines()[0]})") from exc
    pa.default_memory_pool().release_unused()
    return pd.DataFrame(columns, copy=False)


def _check_events(events: pd.DataFrame) -> None:
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise InputError(f"events lack column(s) {', '.join(missing)}; expected {', '.join(EVENT_COLUMNS)}")
    if len(events) == 0:
        raise InputError("no events to featurize")
    user = events["user_id"].to_numpy()
    ts = events["timestamp"].to_numpy()
    same_user = user[1:] == user[:-1]
    if np.any(user[1:] < user[:-1]) or np.any(same_user & (ts[1:] < ts[:-1])):
        raise InputError(
            "events are not sorted by user then time (featurize reads what `drlrec ingest` writes)"
        )
    behavior = events["behavior"].to_numpy()
    if behavior.min() < 0 or behavior.max() >= len(BEHAVIORS):
        raise InputError(f"behaviour codes outside 0..{len(BEHAVIORS) - 1}")


def reward_weight_table(cfg: FeaturizeConfig) -> np.ndarray:
    """[4] float32 business-weighted reward per behaviour code, from featurize.reward_weights."""
    if set(cfg.reward_weights) != set(BEHAVIORS):
        raise ConfigError(
            f"featurize.reward_weights needs exactly {', '.join(BEHAVIORS)} (got {', '.join(sorted(cfg.reward_weights))})"
        )
    return np.array([cfg.reward_weights[name] for name in BEHAVIORS], dtype=np.float32)


def check_config(cfg: FeaturizeConfig) -> None:
    """Reject settings that would make featurize meaningless (ConfigError, one line)."""
    minimum = {
        "train_days": 1,
        "valid_days": 0,
        "seq_len": 1,
        "min_count": 1,
        "session_gap": 0,
        "density_window": 1,
        "category_buckets": 1,
        "chunk_rows": 1,
    }
    for name, low in minimum.items():
        if getattr(cfg, name) < low:
            raise ConfigError(f"featurize.{name} must be >= {low} (got {getattr(cfg, name)})")
    for name in ("activity_floor_days", "age_scale_days"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"featurize.{name} must be > 0 (got {getattr(cfg, name)})")
    if cfg.rate_smoothing < 0:
        raise ConfigError(f"featurize.rate_smoothing must be >= 0 (got {cfg.rate_smoothing})")
    reward_weight_table(cfg)


def featurize(
    events: pd.DataFrame,
    cfg: FeaturizeConfig,
    window_start: int,
    fitted: TrainGlobals | None = None,
) -> FeaturizeResult:
    """Split `events` (EVENTS_SCHEMA columns, sorted by user then time) by time, fit the train-only globals
    (unless `fitted` is given: e.g. to featurize new data with the vocabularies of a deployed model) and
    compute every per-event feature. `window_start` is the first second of day 1 (ingest.window_start)."""
    check_config(cfg)
    _check_events(events)
    weights = reward_weight_table(cfg)
    user_id = events["user_id"].to_numpy(dtype=np.int64)
    item_id = events["item_id"].to_numpy(dtype=np.int64)
    category_id = events["category_id"].to_numpy(dtype=np.int64)
    behavior = events["behavior"].to_numpy(dtype=np.int8)
    timestamp = events["timestamp"].to_numpy(dtype=np.int64)

    bounds = split_boundaries(window_start, cfg)
    split = assign_split(timestamp, bounds)
    if fitted is None:
        # vocabularies from train events; statistics from the train rows of the encoded columns
        train = split == TRAIN
        item_vocab = fit_vocab(item_id[train], cfg.min_count)
        category_vocab = fit_vocab(category_id[train], cfg.min_count)
        item_idx = item_vocab.encode(item_id)
        category_idx = category_vocab.encode(category_id)
        stats = fit_train_stats(
            item_idx[train], category_idx[train], behavior[train], item_vocab.size, category_vocab.size, cfg
        )
        fitted = TrainGlobals(item_vocab, category_vocab, stats)
        del train
    else:
        item_idx = fitted.item_vocab.encode(item_id)
        category_idx = fitted.category_vocab.encode(category_id)

    users = user_index(user_id)
    sessions = sessionize(timestamp, users, cfg.session_gap)
    running = running_counts(users, category_id, behavior)
    profile = profiles_at(running, users, timestamp, cfg)
    # an episode is a user's run of events within one split; split codes never decrease along a user
    episode_end = np.ones(len(split), dtype=bool)
    episode_end[:-1] = users.is_first[1:] | (split[1:] != split[:-1])
    terminal_profile = profiles_at(
        running, users, timestamp, cfg, rows=np.flatnonzero(episode_end), include_event=True
    )
    del running
    features = EventFeatures(
        user_id=user_id,
        category_id=category_id,
        timestamp=timestamp,
        behavior=behavior,
        item_idx=item_idx,
        category_idx=category_idx,
        split=split,
        users=users,
        time_gap=time_gaps(timestamp, users.is_first),
        session_index=sessions.session_index,
        session_position=sessions.session_position,
        session_end=sessions.is_session_end,
        profile=profile,
        episode_end=episode_end,
        terminal_profile=terminal_profile,
    )
    return FeaturizeResult(fitted, bounds, features, cfg.seq_len, weights)


def _open_events(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputError(f"{path}: no such file (run `drlrec ingest` first)")
    try:
        parquet = pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable events Parquet file ({str(exc).splitlines()[0]})") from exc
    missing = [c for c in EVENT_COLUMNS if c not in parquet.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: not an events file (missing column(s) {', '.join(missing)})")
    return parquet
