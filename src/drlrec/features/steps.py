"""The 20-d per-step encoding of an event, and the train-only item/category statistics it looks up.

Every global statistic here (TrainStats) is fitted on train-period events only and keyed by vocabulary index,
so serving, which maps raw ids with the same vocabularies, looks up the same numbers. Per-user parts come
from the user's own events before the step (the profile) or from the step and its predecessor.

    0  item_popularity          log1p(train events of the item) / log1p(max over items); 0 for pad/unknown
    1  item_cart_rate           (train carts + s * global cart rate) / (train views + s), clipped to [0, 1]
    2  item_fav_rate            same for favs
    3  item_buy_rate            same for buys                     (s = rate_smoothing; unknown item: global rate)
    4  category_bucket          popularity-quantile bucket of the category among train categories, in (0, 1]
                                (1 = the most popular bucket); 0 for pad/unknown
    5  category_buy_rate        (train buys + s * global buy rate) / (train views + s) of the category
    6-9  is_pv, is_cart, is_fav, is_buy   behaviour one-hot of the step
    10 log_time_gap             log1p(seconds since the user's previous event) / log1p(86400); 0 for the first
    11 user_buy_rate            profile buy_rate at the step (user's events before it)
    12 user_activity            profile actions_per_day at the step
    13 user_category_diversity  profile category_diversity at the step
    14 position                 min(1, log1p(events of the user before the step) / log1p(1000))
    15-19 reserved_0..4         zero
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from drlrec.atomic import atomic_path
from drlrec.config import FeaturizeConfig
from drlrec.errors import InputError
from drlrec.features.profile import PROFILE_FEATURES
from drlrec.features.vocab import FIRST_INDEX, UNKNOWN
from drlrec.schema import BEHAVIORS, BUY, CART, FAV, PV

STEP_FEATURES: tuple[str, ...] = (
    "item_popularity",
    "item_cart_rate",
    "item_fav_rate",
    "item_buy_rate",
    "category_bucket",
    "category_buy_rate",
    "is_pv",
    "is_cart",
    "is_fav",
    "is_buy",
    "log_time_gap",
    "user_buy_rate",
    "user_activity",
    "user_category_diversity",
    "position",
    "reserved_0",
    "reserved_1",
    "reserved_2",
    "reserved_3",
    "reserved_4",
)
STEP_DIM = len(STEP_FEATURES)
_COL = {name: i for i, name in enumerate(STEP_FEATURES)}
N_BEHAVIOR_CODES = len(BEHAVIORS)
#: A time gap of one day encodes as 1.0.
GAP_SCALE_SECONDS = 86400
#: The 1000th event of a user encodes as position 1.0 (and later ones are clipped there).
POSITION_SCALE = 1000
#: The profile columns that step features 11-13 copy (user_buy_rate, user_activity, user_category_diversity).
USER_CONTEXT_COLUMNS: tuple[int, ...] = tuple(
    PROFILE_FEATURES.index(name) for name in ("buy_rate", "actions_per_day", "category_diversity")
)


class TrainStats(NamedTuple):
    """Train-period statistics keyed by vocabulary index (Vi items, Vc categories, index 0 pad, 1 unknown)."""

    item_count: np.ndarray  # [Vi] int64: train events per item index (index 1 pools every rare/unknown item)
    item_popularity: np.ndarray  # [Vi] float32: step feature 0
    item_rates: np.ndarray  # [Vi, 3] float32: smoothed cart, fav, buy per view (step features 1-3)
    category_count: np.ndarray  # [Vc] int64: train events per category index
    category_bucket: np.ndarray  # [Vc] float32: step feature 4
    category_buy_rate: np.ndarray  # [Vc] float32: step feature 5

    def save(self, path: str | Path) -> None:
        """Write atomically as .npz (one array per field)."""
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **self._asdict())

    @classmethod
    def load(cls, path: str | Path) -> TrainStats:
        """Read statistics written by `save`."""
        path = Path(path)
        try:
            with np.load(path) as data:
                return cls(**{name: data[name] for name in cls._fields})
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{path}: not drlrec train statistics ({exc.__class__.__name__})") from exc


def _smoothed_rate(hits: np.ndarray, views: np.ndarray, prior: float, smoothing: float) -> np.ndarray:
    """(hits + smoothing * prior) / (views + smoothing), clipped to [0, 1] (carts without a view exist)."""
    return np.clip((hits + smoothing * prior) / (views + smoothing), 0.0, 1.0)


def behavior_counts(index: np.ndarray, behavior: np.ndarray, size: int) -> np.ndarray:
    """[size, 4] int64 events per (index, behaviour code): the mergeable sufficient statistic of TrainStats
    (counts of disjoint event sets add up, so partitions of the train period can be counted apart)."""
    index = np.asarray(index, dtype=np.int64)
    behavior = np.asarray(behavior, dtype=np.int64)
    return np.bincount(index * N_BEHAVIOR_CODES + behavior, minlength=size * N_BEHAVIOR_CODES)[
        : size * N_BEHAVIOR_CODES
    ].reshape(size, N_BEHAVIOR_CODES).astype(np.int64)


def fit_train_stats(
    item_idx: np.ndarray,
    category_idx: np.ndarray,
    behavior: np.ndarray,
    item_vocab_size: int,
    category_vocab_size: int,
    cfg: FeaturizeConfig,
) -> TrainStats:
    """Fit the statistics on TRAIN-period events only (indices already mapped with the train vocabularies)."""
    return train_stats_from_counts(
        behavior_counts(item_idx, behavior, item_vocab_size),
        behavior_counts(category_idx, behavior, category_vocab_size),
        cfg,
    )


def train_stats_from_counts(item_counts: np.ndarray, category_counts: np.ndarray, cfg: FeaturizeConfig) -> TrainStats:
    """TrainStats from train events counted per (vocabulary index, behaviour code): `item_counts` [Vi, 4],
    `category_counts` [Vc, 4] (see `behavior_counts`)."""
    s = cfg.rate_smoothing
    item_counts = np.asarray(item_counts, dtype=np.int64)
    category_counts = np.asarray(category_counts, dtype=np.int64)
    item_vocab_size, category_vocab_size = len(item_counts), len(category_counts)
    per_behavior = item_counts.sum(axis=0)  # [4] train events per behaviour code
    views = float(per_behavior[PV])
    prior = {code: float(per_behavior[code]) / max(views, 1.0) for code in (CART, FAV, BUY)}

    item_count = item_counts.sum(axis=1)
    item_views = item_counts[:, PV].astype(np.float64)
    item_rates = np.zeros((item_vocab_size, 3), dtype=np.float32)
    for j, code in enumerate((CART, FAV, BUY)):
        item_rates[:, j] = _smoothed_rate(item_counts[:, code].astype(np.float64), item_views, prior[code], s)
    item_rates[UNKNOWN] = [min(prior[c], 1.0) for c in (CART, FAV, BUY)]  # cold items: the global rates
    item_rates[0] = 0.0
    log_count = np.log1p(item_count.astype(np.float64))
    log_count[:FIRST_INDEX] = 0.0
    item_popularity = (log_count / max(log_count.max(initial=0.0), 1e-12)).astype(np.float32)

    category_count = category_counts.sum(axis=1)
    category_buy_rate = _smoothed_rate(
        category_counts[:, BUY].astype(np.float64),
        category_counts[:, PV].astype(np.float64),
        prior[BUY],
        s,
    ).astype(np.float32)
    category_buy_rate[UNKNOWN] = min(prior[BUY], 1.0)
    category_buy_rate[0] = 0.0
    # rank known categories by train count (most popular first; ties by index, so it is deterministic)
    known = category_count[FIRST_INDEX:]
    rank = np.empty(len(known), dtype=np.int64)
    rank[np.argsort(-known, kind="stable")] = np.arange(len(known))
    buckets = cfg.category_buckets
    category_bucket = np.zeros(category_vocab_size, dtype=np.float32)
    category_bucket[FIRST_INDEX:] = np.ceil((1.0 - rank / max(len(known), 1)) * buckets) / buckets
    return TrainStats(
        item_count, item_popularity, item_rates, category_count, category_bucket, category_buy_rate
    )


def step_features(
    item_idx: np.ndarray,
    category_idx: np.ndarray,
    behavior: np.ndarray,
    time_gap: np.ndarray,
    position: np.ndarray,
    user_context: np.ndarray,
    stats: TrainStats,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The 20-d encoding of m events given their vocab indices, behaviour codes, seconds since the user's
    previous event (0 for the first), position in the user's sequence and the profile columns
    USER_CONTEXT_COLUMNS at the step (user_context [m, 3]: `profile[:, USER_CONTEXT_COLUMNS]`).
    Returns [m, 20] float32 in STEP_FEATURES order (reserved columns zero), written into `out` if given."""
    item_idx = np.asarray(item_idx)
    category_idx = np.asarray(category_idx)
    behavior = np.asarray(behavior)
    if out is None:
        out = np.zeros((len(item_idx), STEP_DIM), dtype=np.float32)
    else:
        out[:] = 0.0
    out[:, _COL["item_popularity"]] = stats.item_popularity[item_idx]
    out[:, _COL["item_cart_rate"] : _COL["item_buy_rate"] + 1] = stats.item_rates[item_idx]
    out[:, _COL["category_bucket"]] = stats.category_bucket[category_idx]
    out[:, _COL["category_buy_rate"]] = stats.category_buy_rate[category_idx]
    for name, code in (("is_pv", PV), ("is_cart", CART), ("is_fav", FAV), ("is_buy", BUY)):
        out[:, _COL[name]] = behavior == code
    out[:, _COL["log_time_gap"]] = np.log1p(np.asarray(time_gap, dtype=np.float64)) / np.log1p(
        GAP_SCALE_SECONDS
    )
    out[:, _COL["user_buy_rate"] : _COL["user_category_diversity"] + 1] = user_context
    out[:, _COL["position"]] = np.minimum(
        np.log1p(np.asarray(position, dtype=np.float64)) / np.log1p(POSITION_SCALE), 1.0
    )
    return out


def time_gaps(timestamp: np.ndarray, is_first: np.ndarray) -> np.ndarray:
    """Seconds since the same user's previous event ([n] int32, saturating at 2^31 - 1; 0 for a first event)."""
    timestamp = np.asarray(timestamp, dtype=np.int64)
    gap = np.zeros(len(timestamp), dtype=np.int32)
    gap[1:] = np.minimum(np.diff(timestamp), np.iinfo(np.int32).max)
    gap[is_first] = 0
    return gap
