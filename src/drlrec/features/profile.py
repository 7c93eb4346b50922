"""The paper's 10-d user profile as of each step, vectorized over a (user, time)-sorted events table (a
batch of histories goes through the same code: features.states).

The profile of a step is computed from the user's events strictly before it (earlier rows of the same user in
the (user, time)-sorted table), never from the step itself or later, so it is safe as a state feature. With
p = number of past events (all features are 0 when p == 0):

    purchase_density     buys among the user's last `density_window` events / density_window
    buy_rate             past buys / p
    cart_rate            past carts / p
    fav_rate             past favs / p
    view_rate            past page views / p
    category_diversity   distinct categories among past events / p   (1 = every event a new category)
    actions_per_day      log1p(p / max(days since the first event, activity_floor_days))
    has_purchases        1 if any past buy, else 0
    top_category_ratio   past events in the user's most frequent category so far / p
    account_age          days since the user's first event / age_scale_days

"Days since the first event" are measured at the step's own timestamp (or at a given decision time: see
`profiles_at`). Categories are raw ids (any id one-to-one with them works).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from drlrec.config import FeaturizeConfig
from drlrec.features.users import UserIndex, inclusive_cumsum, user_index
from drlrec.schema import BUY, CART, FAV, PV

PROFILE_FEATURES: tuple[str, ...] = (
    "purchase_density",
    "buy_rate",
    "cart_rate",
    "fav_rate",
    "view_rate",
    "category_diversity",
    "actions_per_day",
    "has_purchases",
    "top_category_ratio",
    "account_age",
)
PROFILE_DIM = len(PROFILE_FEATURES)
_SECONDS_PER_DAY = 86400.0
_COL = {name: i for i, name in enumerate(PROFILE_FEATURES)}
#: Below this many events, categories are coded by a sort (any one-to-one code gives the same counts).
_SMALL = 1 << 16


def category_running_counts(index: UserIndex, category_id: np.ndarray) -> np.ndarray:
    """Per event: how many of the user's events up to and including it share its category ([n] int64).

    A cumcount per (user, category): one stable argsort of the pair key, positions within equal-key runs.
    """
    n = len(category_id)
    category_id = np.asarray(category_id)
    if n < _SMALL:  # a few histories (a request, a batch of sessions): a sort beats pandas' hashing overhead
        category_code = np.unique(category_id, return_inverse=True)[1].astype(np.int64).reshape(-1)
    else:
        category_code = pd.factorize(category_id)[0].astype(np.int64)
    pair = index.ordinal.astype(np.int64) * (int(category_code.max(initial=0)) + 1) + category_code  # [n]
    order = np.argsort(pair, kind="stable")
    sorted_pair = pair[order]
    run_start = np.ones(n, dtype=bool)
    if n > 1:
        np.not_equal(sorted_pair[1:], sorted_pair[:-1], out=run_start[1:])
    rows = np.arange(n, dtype=np.int64)
    within = rows - np.maximum.accumulate(np.where(run_start, rows, 0))
    counts = np.empty(n, dtype=np.int64)
    counts[order] = within + 1
    return counts


class RunningCounts(NamedTuple):
    """Inclusive per-user counts through each row of a (user, time)-sorted table; n = number of events."""

    behavior: np.ndarray  # [4, n] int32: events of each behaviour code up to and including the row
    distinct_categories: np.ndarray  # [n] int32: distinct categories up to and including the row
    top_category: np.ndarray  # [n] int32: events in the most frequent category up to and including the row


def running_counts(index: UserIndex, category_id: np.ndarray, behavior: np.ndarray) -> RunningCounts:
    """Everything a profile counts, as running per-user counts: cumulative sums, a cumcount per
    (user, category) and a running max per user; no Python loop per event or per user."""
    n = len(behavior)
    behavior = np.asarray(behavior)
    counts = np.empty((4, n), dtype=np.int32)
    for code in (PV, CART, FAV, BUY):
        counts[code] = _through(behavior == code, index)
    category_count = category_running_counts(
        index, category_id
    )  # [n] inclusive count of each event's category
    distinct = _through(category_count == 1, index)
    # running max per user of those counts; an offset per user stops the max leaking across users
    offset = index.ordinal.astype(np.int64) * (n + 1)
    top = (np.maximum.accumulate(category_count + offset) - offset).astype(np.int32)
    return RunningCounts(counts, distinct, top)


def profiles_at(
    running: RunningCounts,
    index: UserIndex,
    timestamp: np.ndarray,
    cfg: FeaturizeConfig,
    rows: np.ndarray | None = None,
    include_event: bool | np.ndarray = False,
    at: np.ndarray | None = None,
) -> np.ndarray:
    """Profiles at `rows` (default: every event), at each row's timestamp (or at the times `at` [len(rows)]):
    one gather of the running counts at the last history row. By default the history is the user's events
    strictly before the row (the state feature); with `include_event` (one flag, or one per row) it also
    holds the row's own event (the
    profile after the action: the next state at the end of an episode, or a state built from a history, at
    its decision time `at`). Returns [len(rows), 10] float32."""
    timestamp = np.asarray(timestamp, dtype=np.int64)
    n = len(timestamp)
    rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    m = len(rows)
    start = index.start[rows]  # [m]
    history_len = index.position[rows] + np.asarray(include_event, dtype=np.int64)  # [m] p
    last = np.maximum(start + history_len - 1, 0)  # [m] last history row (meaningless where p == 0)
    has_past = history_len > 0
    p = history_len.astype(np.float64)
    profile = np.zeros((m, PROFILE_DIM), dtype=np.float32)

    def share(count_through: np.ndarray) -> np.ndarray:
        """count over the history (an inclusive per-user count gathered at the last history row) / p"""
        return np.divide(count_through[last], p, out=np.zeros(m), where=has_past)

    for name, code in (("buy_rate", BUY), ("cart_rate", CART), ("fav_rate", FAV), ("view_rate", PV)):
        profile[:, _COL[name]] = share(running.behavior[code])
    buys_through = running.behavior[BUY]
    buys = np.where(has_past, buys_through[last], 0)
    # buys in the last `density_window` history rows: subtract the count through the row before them
    older = np.where(
        history_len > cfg.density_window, buys_through[np.maximum(last - cfg.density_window, 0)], 0
    )
    profile[:, _COL["purchase_density"]] = (buys - older) / cfg.density_window
    profile[:, _COL["has_purchases"]] = buys > 0
    profile[:, _COL["category_diversity"]] = share(running.distinct_categories)
    profile[:, _COL["top_category_ratio"]] = share(running.top_category)

    measured = timestamp[rows] if at is None else np.asarray(at, dtype=np.int64)
    days = (measured - timestamp[start]) / _SECONDS_PER_DAY  # [m] at the row's own timestamp, or at `at`
    activity = np.zeros(m)
    np.log1p(p / np.maximum(days, cfg.activity_floor_days), out=activity, where=has_past)
    profile[:, _COL["actions_per_day"]] = activity
    profile[:, _COL["account_age"]] = np.where(has_past, days / cfg.age_scale_days, 0.0)
    return profile


def user_profiles(
    user_id: np.ndarray,
    category_id: np.ndarray,
    behavior: np.ndarray,
    timestamp: np.ndarray,
    cfg: FeaturizeConfig,
    index: UserIndex | None = None,
    rows: np.ndarray | None = None,
    include_event: bool = False,
) -> np.ndarray:
    """Profiles of a (user, time)-sorted table at `rows` (default: every event): `running_counts` then
    `profiles_at` (see there). Returns [len(rows), 10] float32 in PROFILE_FEATURES order."""
    index = index or user_index(user_id)
    running = running_counts(index, category_id, behavior)
    return profiles_at(running, index, timestamp, cfg, rows=rows, include_event=include_event)


def _through(flags: np.ndarray, index: UserIndex) -> np.ndarray:
    """Per row: how many of the user's events up to and including it have `flags` set ([n] int32)."""
    return inclusive_cumsum(flags.astype(np.int32), index).astype(np.int32)
