"""featurize: typed events -> temporal split, train-only vocabularies and statistics, per-event features, transitions.

`featurize` computes everything per event once (vectorized, no loop per event or per user); `build_transitions`
then cuts one split's compact event table and state index matrix out of it, so a caller holds one split at a
time. Global statistics (vocabularies, popularity, conversion rates) come from train-period events only;
per-user features of any event come from that user's earlier events, whatever split they fall in.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from drlrec.config import FeaturizeConfig
from drlrec.errors import ConfigError, InputError
from drlrec.features.profile import PROFILE_FEATURES, profiles_at, running_counts
from drlrec.features.sessions import sessionize
from drlrec.features.split import SPLITS, TRAIN, SplitBoundaries, assign_split, split_boundaries
from drlrec.features.steps import (
    N_BEHAVIOR_CODES,
    STEP_DIM,
    STEP_FEATURES,
    USER_CONTEXT_COLUMNS,
    TrainStats,
    behavior_counts,
    fit_train_stats,
    step_features,
    time_gaps,
    train_stats_from_counts,
)
from drlrec.features.transitions import SplitWriter, Transitions, split_path
from drlrec.features.users import UserIndex, user_index
from drlrec.features.vocab import UNKNOWN, Vocab, fit_vocab
from drlrec.schema import BEHAVIORS, BUY, EVENT_COLUMNS, EVENT_DTYPES

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


class _SplitRows(NamedTuple):
    """Which events of the whole table a split's file holds."""

    table: np.ndarray  # [E - 1] int64 event rows of the event table (after its padding row), sorted
    actions: np.ndarray  # [T] int64 event rows of the split's events
    action_row: np.ndarray  # [T] int32 event-table row of each action (padding row 0 counted)


def _split_rows(events: EventFeatures, code: int, seq_len: int) -> _SplitRows:
    """The split's events plus, before each user's first one, up to `seq_len` earlier events as context."""
    users = events.users
    in_split = events.split == code
    n_users = int(users.ordinal[-1]) + 1
    earlier = np.bincount(users.ordinal, weights=events.split < code, minlength=n_users).astype(np.int64)
    has_split = np.bincount(users.ordinal, weights=in_split, minlength=n_users) > 0
    first_split_row = users.start + earlier[users.ordinal]  # [n]
    rows = np.arange(len(in_split), dtype=np.int64)
    context = (events.split < code) & has_split[users.ordinal] & (rows >= first_split_row - seq_len)
    included = in_split | context
    actions = np.flatnonzero(in_split)
    # table row of an included event = how many included events up to it (row 0 is padding)
    action_row = np.cumsum(included, dtype=np.int32)[actions]
    return _SplitRows(table=np.flatnonzero(included), actions=actions, action_row=action_row)


def build_transitions(result: FeaturizeResult, split: str, selected: _SplitRows | None = None) -> Transitions:
    """One split's transitions (see drlrec.features.transitions for the layout and shapes); `selected` is
    `_split_rows` of the split when the caller has it already."""
    ev = result.events
    n_steps = result.seq_len
    if selected is None:
        selected = _split_rows(ev, SPLITS.index(split), n_steps)
    table, actions = selected.table, selected.actions
    n_rows = len(table) + 1  # E, with the padding row 0

    item_idx = np.zeros(n_rows, dtype=np.int32)
    item_idx[1:] = ev.item_idx[table]
    category_idx = np.zeros(n_rows, dtype=np.int32)
    category_idx[1:] = ev.category_idx[table]
    behavior_token = np.zeros(n_rows, dtype=np.int8)
    behavior_token[1:] = ev.behavior[table] + 1
    steps = np.zeros((n_rows, STEP_DIM), dtype=np.float32)  # [E, 20]
    context_columns = np.asarray(USER_CONTEXT_COLUMNS)[None, :]
    block_rows = 1 << 16  # the column-wise writes into a [block_rows, 20] block stay in cache
    for lo in range(0, len(table), block_rows):
        rows = table[lo : lo + block_rows]
        step_features(
            ev.item_idx[rows],
            ev.category_idx[rows],
            ev.behavior[rows],
            ev.time_gap[rows],
            ev.users.position[rows],
            ev.profile[rows[:, None], context_columns],  # [b, 3]
            result.globals.stats,
            out=steps[1 + lo : 1 + lo + len(rows)],
        )

    # event-table row of every action, and of its user's first row in the table
    row = selected.action_row  # [T]
    table_users = user_index(ev.user_id[table])
    first_row = (table_users.start[row - 1] + 1).astype(np.int32)  # [T]: the floor of every state's window

    behavior = ev.behavior[actions]
    done = ev.episode_end[actions]
    terminal_rank = np.cumsum(ev.episode_end) - 1  # [n] position among all episode ends
    terminal_row = np.full(len(actions), -1, dtype=np.int32)
    done_actions = actions[done]
    terminal_row[done] = np.arange(len(done_actions), dtype=np.int32)
    return Transitions(
        item_idx=item_idx,
        category_idx=category_idx,
        behavior_token=behavior_token,
        step_features=steps,
        row=row,
        state_start=first_row,
        state_len=np.asarray(n_steps, dtype=np.int32),
        profile=ev.profile[actions],
        reward_purchase=(behavior == BUY).astype(np.float32),
        reward_business=result.reward_weights[behavior],
        done=done,
        session_end=ev.session_end[actions],
        user_id=ev.user_id[actions],
        timestamp=ev.timestamp[actions],
        session_index=ev.session_index[actions],
        session_position=ev.session_position[actions],
        terminal_row=terminal_row,
        terminal_profile=ev.terminal_profile[terminal_rank[done_actions]],
    )


def write_featurize_outputs(result: FeaturizeResult, out_dir: str | Path) -> dict[str, Any]:
    """Write what `drlrec featurize` outputs into `out_dir` from an in-memory result: the train globals, the
    split folders {train,valid,test}/ (one split's arrays in memory at a time) and featurize_report.json;
    return the report. `featurize_file` writes the same bytes from events.parquet in bounded memory."""
    out_dir = Path(out_dir)
    result.globals.save(out_dir)
    writers = _split_writers(out_dir, result.seq_len)
    counts = ReportCounts()
    with contextlib.ExitStack() as stack:
        for writer in writers.values():
            stack.enter_context(writer)
        _write_part(result, writers, counts)
    return _finish(out_dir, counts.report(result.globals, result.bounds, result.seq_len, result.reward_weights))


def _split_writers(out_dir: Path, seq_len: int) -> dict[str, SplitWriter]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return {split: SplitWriter(split_path(out_dir, split), seq_len) for split in SPLITS}


def _write_part(result: FeaturizeResult, writers: dict[str, SplitWriter] | None, counts: ReportCounts) -> None:
    """Count the report's figures of `result` (whole users, after those already written) and append its
    transitions to every split (`writers` None: count only)."""
    for code, split in enumerate(SPLITS):
        selected = _split_rows(result.events, code, result.seq_len)
        counts.add(result, code, selected)
        if writers is not None and len(selected.actions):
            writers[split].append(build_transitions(result, split, selected))
    counts.add_events(result.events)


def _finish(out_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    from drlrec.atomic import write_json

    write_json(out_dir / REPORT_FILE, report)
    for split in SPLITS:  # the single-file layout of earlier versions, which load_split no longer reads
        split_path(out_dir, split).with_suffix(".npz").unlink(missing_ok=True)
    return report


class ReportCounts:
    """The featurize report's counts, added up over groups of whole users (each count is a sum over users,
    so the report of the parts equals the report of the whole)."""

    def __init__(self) -> None:
        self.events = 0
        self.users = 0
        self.splits = {
            name: {"transitions": 0, "users": 0, "episodes": 0, "table": 0, "unknown_item": 0,
                   "unknown_category": 0, "behaviors": [0] * len(BEHAVIORS)}
            for name in SPLITS
        }  # fmt: skip

    def add_events(self, ev: EventFeatures) -> None:
        self.events += len(ev.user_id)
        self.users += int(ev.users.ordinal[-1]) + 1

    def add(self, result: FeaturizeResult, code: int, selected: _SplitRows) -> None:
        ev, actions = result.events, selected.actions
        n = len(actions)
        c = self.splits[SPLITS[code]]
        c["transitions"] += n
        c["table"] += len(selected.table)
        if not n:
            return
        c["users"] += int(np.count_nonzero(np.diff(ev.users.ordinal[actions])) + 1)
        c["episodes"] += int(np.count_nonzero(ev.episode_end[actions]))
        c["unknown_item"] += int(np.count_nonzero(ev.item_idx[actions] == UNKNOWN))
        c["unknown_category"] += int(np.count_nonzero(ev.category_idx[actions] == UNKNOWN))
        behaviors = np.bincount(ev.behavior[actions], minlength=len(BEHAVIORS))
        c["behaviors"] = [a + int(b) for a, b in zip(c["behaviors"], behaviors, strict=True)]

    def report(self, fitted: TrainGlobals, bounds: SplitBoundaries, seq_len: int, weights: np.ndarray) -> dict[str, Any]:
        """Counts per split, vocabulary sizes, unknown shares and the boundaries, for featurize_report.json."""
        splits = {}
        for name, c in self.splits.items():
            n = c["transitions"]
            splits[name] = {
                "transitions": n,
                "users": c["users"],
                "episodes": c["episodes"],
                "event_table_rows": c["table"] + 1,
                "context_rows": c["table"] - n,
                "unknown_item_share": c["unknown_item"] / n if n else 0.0,
                "unknown_category_share": c["unknown_category"] / n if n else 0.0,
                "behaviors": dict(zip(BEHAVIORS, c["behaviors"], strict=True)),
            }
        return {
            "events": self.events,
            "users": self.users,
            "seq_len": seq_len,
            "boundaries": bounds.to_dict(),
            "splits": splits,
            "item_vocab_size": fitted.item_vocab.size,
            "items_in_vocab": len(fitted.item_vocab.raw_ids),
            "category_vocab_size": fitted.category_vocab.size,
            "categories_in_vocab": len(fitted.category_vocab.raw_ids),
            "done": DONE_DEFINITION,
            "profile_features": list(PROFILE_FEATURES),
            "step_features": list(STEP_FEATURES),
            "reward_weights": dict(zip(BEHAVIORS, map(float, weights), strict=True)),
        }


def featurize_report(result: FeaturizeResult) -> dict[str, Any]:
    """Counts per split, vocabulary sizes, unknown shares and the boundaries, for featurize_report.json."""
    counts = ReportCounts()
    _write_part(result, None, counts)
    return counts.report(result.globals, result.bounds, result.seq_len, result.reward_weights)


# ---------------------------------------------------------------------------------------------- streaming


def id_behavior_counts(raw_ids: np.ndarray, behavior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids [k], events per (id, behaviour code) [k, 4] int64)."""
    ids, inverse = np.unique(np.asarray(raw_ids, dtype=np.int64), return_inverse=True)
    return ids, behavior_counts(inverse.ravel(), behavior, len(ids))


def merge_id_counts(ids: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Add up (ids, [k, 4] counts) pairs of disjoint event sets: (sorted distinct ids, summed counts)."""
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, N_BEHAVIOR_CODES), np.int64)
    distinct, inverse = np.unique(np.concatenate(ids), return_inverse=True)
    inverse = inverse.ravel()
    stacked = np.concatenate(counts)
    totals = np.zeros((len(distinct), stacked.shape[1]), dtype=np.int64)
    for j in range(stacked.shape[1]):  # a bincount per column: exact (counts stay far below 2**53)
        totals[:, j] = np.bincount(inverse, weights=stacked[:, j], minlength=len(distinct)).astype(np.int64)
    return distinct, totals


def add_id_counts(
    ids: np.ndarray, totals: np.ndarray, more_ids: np.ndarray, more: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Running counts (sorted distinct `ids`, [k, 4] `totals`) plus one batch's (sorted distinct ids, counts):
    known ids add in place; new ones are appended and the two sorted runs merged (a stable sort of two runs
    is a linear merge). Memory is a few copies of the distinct ids, whatever the number of events."""
    pos = np.searchsorted(ids, more_ids)
    found = pos < len(ids)
    found[found] = ids[pos[found]] == more_ids[found]
    totals[pos[found]] += more[found]  # more_ids are distinct: no position repeats
    if found.all():
        return ids, totals
    ids = np.concatenate([ids, more_ids[~found]])
    totals = np.concatenate([totals, more[~found]])
    order = np.argsort(ids, kind="stable")
    return ids[order], totals[order]


def vocab_from_counts(ids: np.ndarray, totals: np.ndarray, min_count: int) -> tuple[Vocab, np.ndarray]:
    """The vocabulary `fit_vocab` fits and [V, 4] counts per vocabulary index (rare ids pool into UNKNOWN,
    as `encode` maps them), from train events counted per raw id (`merge_id_counts`)."""
    vocab = Vocab(ids[totals.sum(axis=1) >= max(min_count, 1)])
    per_index = np.zeros((vocab.size, totals.shape[1]), dtype=np.int64)
    index = vocab.encode(ids)
    for j in range(totals.shape[1]):
        per_index[:, j] = np.bincount(index, weights=totals[:, j], minlength=vocab.size).astype(np.int64)
    return vocab, per_index


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


def _batches(path: Path, columns: tuple[str, ...], batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """events.parquet row group by row group (a row group over 4 x `batch_rows` rows in batches of
    `batch_rows`), as numpy columns (EVENT_DTYPES). Reading row groups one at a time keeps Arrow's memory
    flat: one `iter_batches` over the whole file kept about 13 MB more per 2M rows read here (pyarrow
    25.0.1, the 100M-row file), so memory grew with the file."""
    import pyarrow as pa

    parquet = _open_events(path)

    def arrays(table) -> dict[str, np.ndarray]:
        return {
            c: table.column(c).to_numpy(zero_copy_only=False).astype(EVENT_DTYPES[c], copy=True) for c in columns
        }

    try:
        for group in range(parquet.metadata.num_row_groups):
            if parquet.metadata.row_group(group).num_rows <= 4 * batch_rows:
                yield arrays(parquet.read_row_group(group, columns=list(columns)))
            else:
                for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=list(columns)):
                    yield arrays(batch)
            pa.default_memory_pool().release_unused()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable events Parquet file ({str(exc).splitlines()[0]})") from exc


def iter_user_chunks(path: str | Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """events.parquet (sorted by user, then time) as DataFrames of whole users: batches of up to
    `chunk_rows` rows are read until `chunk_rows` are pending, and everything before the last user's first
    row goes out (that user may go on in the next batch). One user's events are never split, so a chunk
    holds fewer than 2 x chunk_rows rows plus one user's. Users must ascend across chunks."""
    path = Path(path)
    pending: list[dict[str, np.ndarray]] = []
    pending_rows = 0
    last_user: int | None = None

    def emit(columns: dict[str, np.ndarray]) -> pd.DataFrame:
        nonlocal last_user
        user = columns["user_id"]
        if last_user is not None and user[0] <= last_user:
            raise InputError(
                "events are not sorted by user then time (featurize reads what `drlrec ingest` writes)"
            )
        last_user = int(user[-1])
        return pd.DataFrame(columns, copy=False)

    for columns in _batches(path, EVENT_COLUMNS, min(chunk_rows, 1 << 20)):
        if not len(columns["user_id"]):
            continue
        pending.append(columns)
        pending_rows += len(columns["user_id"])
        if pending_rows < chunk_rows:
            continue
        joined = {c: np.concatenate([p[c] for p in pending]) for c in EVENT_COLUMNS}
        user = joined["user_id"]
        changes = np.flatnonzero(user[1:] != user[:-1])
        if len(changes):  # cut before the last user, whose events may go on in the next batch
            cut = int(changes[-1]) + 1
            yield emit({c: v[:cut] for c, v in joined.items()})
            joined = {c: v[cut:].copy() for c, v in joined.items()}
        pending, pending_rows = [joined], len(joined["user_id"])
    if pending_rows:
        yield emit({c: np.concatenate([p[c] for p in pending]) for c in EVENT_COLUMNS})
    elif last_user is None:
        raise InputError(f"{path}: no events to featurize")


def fit_globals_file(
    path: str | Path, cfg: FeaturizeConfig, window_start: int, batch_rows: int = 1 << 21, progress: bool = False
) -> TrainGlobals:
    """The vocabularies and train statistics `featurize` fits, from events.parquet in batches: train-period
    events are counted per (raw id, behaviour) batch by batch and the counts added up, so memory grows with
    the number of distinct items, not with the number of events."""
    path = Path(path)
    bounds = split_boundaries(window_start, cfg)
    empty = (np.zeros(0, np.int64), np.zeros((0, N_BEHAVIOR_CODES), np.int64))
    items, categories = empty, empty
    bar = _progress(path, "featurize: fit vocabularies", progress)
    for columns in _batches(path, ("item_id", "category_id", "behavior", "timestamp"), batch_rows):
        train = assign_split(columns["timestamp"], bounds) == TRAIN
        behavior = columns["behavior"][train]
        items = add_id_counts(*items, *id_behavior_counts(columns["item_id"][train], behavior))
        categories = add_id_counts(*categories, *id_behavior_counts(columns["category_id"][train], behavior))
        bar.update(len(columns["timestamp"]))
    bar.close()
    item_vocab, item_counts = vocab_from_counts(*items, cfg.min_count)
    category_vocab, category_counts = vocab_from_counts(*categories, cfg.min_count)
    return TrainGlobals(item_vocab, category_vocab, train_stats_from_counts(item_counts, category_counts, cfg))


def _progress(path: Path, desc: str, enabled: bool):
    from tqdm import tqdm

    total = _open_events(path).metadata.num_rows
    return tqdm(total=total, desc=desc, unit="event", unit_scale=True, disable=not enabled, file=sys.stderr)


def featurize_file(
    events_path: str | Path,
    cfg: FeaturizeConfig,
    window_start: int,
    out_dir: str | Path,
    fitted: TrainGlobals | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """`drlrec featurize` in bounded memory: events.parquet -> `out_dir` (globals, split folders, report).

    Two passes over the file. The first fits the train-only globals from counts (`fit_globals_file`;
    skipped when `fitted` is given). The second featurizes groups of whole users of about
    `cfg.chunk_rows` events (every per-event feature depends on the user's own events and the globals
    only) and appends each group's transitions to the split folders. Memory is one group, whatever the
    file's size, and the outputs are byte-identical to `write_featurize_outputs(featurize(all events))`."""
    check_config(cfg)
    events_path, out_dir = Path(events_path), Path(out_dir)
    _open_events(events_path)
    if fitted is None:
        fitted = fit_globals_file(events_path, cfg, window_start, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    fitted.save(out_dir)
    writers = _split_writers(out_dir, cfg.seq_len)
    counts = ReportCounts()
    bar = _progress(events_path, "featurize", progress)
    with contextlib.ExitStack() as stack:
        for writer in writers.values():
            stack.enter_context(writer)
        for chunk in iter_user_chunks(events_path, cfg.chunk_rows):
            result = featurize(chunk, cfg, window_start, fitted=fitted)
            del chunk
            _write_part(result, writers, counts)
            bar.update(len(result.events.user_id))
            del result
    bar.close()
    return _finish(out_dir, counts.report(fitted, split_boundaries(window_start, cfg), cfg.seq_len, reward_weight_table(cfg)))
