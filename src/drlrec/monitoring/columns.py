"""The monitored columns: a window of interactions and the training-period reference as one table of
per-event columns (see drlrec.monitoring for the list), built without a Python loop over events."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from drlrec.config import FeaturizeConfig, MonitorConfig
from drlrec.data.logs import sort_events
from drlrec.errors import InputError
from drlrec.features.profile import PROFILE_FEATURES, user_profiles
from drlrec.features.users import user_index
from drlrec.schema import BEHAVIORS, LOCAL_UTC_OFFSET_S

_DAY = 86400
OTHER = "other"
CATEGORICAL_COLUMNS: tuple[str, ...] = ("behavior", "category", "hour", "item_unknown")
NUMERICAL_COLUMNS: tuple[str, ...] = (
    "item_popularity_rank",
    "events_per_user_day",
    "session_length",
    *(f"profile_{name}" for name in PROFILE_FEATURES),
)
MONITORED_COLUMNS: tuple[str, ...] = CATEGORICAL_COLUMNS + NUMERICAL_COLUMNS


class Reference(NamedTuple):
    """What the current window is compared with: the training period's events and their summaries."""

    events: pd.DataFrame  # typed events (EVENT_COLUMNS) of the training period
    top_categories: np.ndarray  # [T] int64 category ids, most frequent first
    popular_items: np.ndarray  # [I] int64 item ids sorted by id
    item_events: np.ndarray  # [I] int64 reference events of each of popular_items
    days: int  # distinct local days of the reference
    rates_desc: np.ndarray  # [I] float64 events per day of every reference item, largest first


def window_of(events: pd.DataFrame, window_days: float) -> pd.DataFrame:
    """The events of the last `window_days` days (by event timestamp) of a log; 0 keeps everything."""
    if window_days <= 0 or events.empty:
        return events
    end = int(events["timestamp"].max()) + 1
    return events[events["timestamp"].to_numpy() >= end - int(round(window_days * _DAY))].reset_index(drop=True)


def build_reference(events: pd.DataFrame, cfg: MonitorConfig, seed: int = 0) -> Reference:
    """Summaries of the training period, then a seeded sample of whole user-days beyond reference_max_rows."""
    events = sort_events(events)
    if events.empty:
        raise InputError("the reference (training period) has no events")
    categories, counts = np.unique(events["category_id"].to_numpy(), return_counts=True)
    top = categories[np.argsort(-counts, kind="stable")[: cfg.top_categories]]
    items, item_counts = np.unique(events["item_id"].to_numpy(), return_counts=True)
    days = max(int(len(np.unique(_local_day(events["timestamp"].to_numpy())))), 1)
    rates_desc = np.sort(item_counts / days)[::-1].astype(np.float64)
    if len(events) > cfg.reference_max_rows:
        day = _local_day(events["timestamp"].to_numpy())
        user_day = pd.factorize(pd.MultiIndex.from_arrays([events["user_id"].to_numpy(), day]))[0]
        keep_share = cfg.reference_max_rows / len(events)
        keep = np.random.default_rng(seed).random(user_day.max() + 1) < keep_share
        events = events[keep[user_day]].reset_index(drop=True)
    return Reference(events, top, items, item_counts.astype(np.int64), days, rates_desc)


def _local_day(timestamp: np.ndarray) -> np.ndarray:
    return (np.asarray(timestamp, dtype=np.int64) + LOCAL_UTC_OFFSET_S) // _DAY


def monitored_frame(
    events: pd.DataFrame,
    reference: Reference,
    known_items: np.ndarray | None,
    featurize: FeaturizeConfig,
) -> pd.DataFrame:
    """One row per event (sorted by user, time) with the MONITORED_COLUMNS.

    `known_items` (sorted ids) marks the champion's vocabulary; None means `events` IS the reference, whose
    unknown flag is leave-one-day-out (the item appears on no other reference day)."""
    events = sort_events(events)
    n = len(events)
    user = events["user_id"].to_numpy()
    item = events["item_id"].to_numpy()
    category = events["category_id"].to_numpy()
    behavior = events["behavior"].to_numpy().astype(np.int64)
    ts = events["timestamp"].to_numpy().astype(np.int64)
    day = _local_day(ts)

    out: dict[str, Any] = {}
    out["behavior"] = np.asarray(BEHAVIORS, dtype=object)[behavior]
    in_top = np.isin(category, reference.top_categories)
    out["category"] = np.where(in_top, category.astype(str).astype(object), OTHER)
    out["hour"] = np.char.zfill((((ts + LOCAL_UTC_OFFSET_S) % _DAY) // 3600).astype(str), 2).astype(object)
    pos = np.searchsorted(reference.popular_items, item)
    pos_clip = np.minimum(pos, max(len(reference.popular_items) - 1, 0))
    found = (pos < len(reference.popular_items)) & (reference.popular_items[pos_clip] == item)
    ref_events = np.where(found, reference.item_events[pos_clip], 0).astype(np.float64)  # [n]
    if known_items is None:
        # leave-one-day-out: the item as seen from the other reference days (its own day's events removed),
        # which is how a model trained on the reference sees the items of a later day
        pair = pd.DataFrame({"item": item, "day": day})
        same_day = pair.groupby(["item", "day"], sort=False)["item"].transform("size").to_numpy()
        days_per_item = pair.drop_duplicates().groupby("item", sort=False).size()
        unknown = days_per_item.reindex(item).to_numpy() == 1
        rate = (ref_events - same_day) / max(reference.days - 1, 1)
    else:
        unknown = ~_is_in_sorted(item, known_items)
        rate = ref_events / reference.days
    out["item_unknown"] = np.where(unknown, "unknown", "known").astype(object)
    # rank among the reference items by events per day (1 = most popular); NaN when unseen in the reference
    rank = 1.0 + np.searchsorted(-reference.rates_desc, -rate, side="left")
    out["item_popularity_rank"] = np.where(rate > 0, rank, np.nan)

    # user-days: the unit of the per-user columns and of the profile history
    new_user_day = np.ones(n, dtype=bool)
    if n > 1:
        new_user_day[1:] = (user[1:] != user[:-1]) | (day[1:] != day[:-1])
    user_day = np.cumsum(new_user_day) - 1  # [n] 0, 1, ... (contiguous, since sorted by user then time)
    per_user_day = np.bincount(user_day)
    out["events_per_user_day"] = np.where(new_user_day, per_user_day[user_day], np.nan)
    new_session = new_user_day.copy()
    if n > 1:
        new_session[1:] |= np.diff(ts) > featurize.session_gap
    session = np.cumsum(new_session) - 1
    per_session = np.bincount(session)
    out["session_length"] = np.where(new_session, per_session[session], np.nan)
    profiles = user_profiles(user_day, category, behavior, ts, featurize, index=user_index(user_day))  # [n, 10]
    for j, name in enumerate(PROFILE_FEATURES):
        out[f"profile_{name}"] = profiles[:, j].astype(np.float64)
    return pd.DataFrame(out, columns=list(MONITORED_COLUMNS))


def _is_in_sorted(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    if len(sorted_ids) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return sorted_ids[pos] == values
