"""Profile a behaviour log: volumes, events per user, behaviour mix, re-views, the funnel, categories, sessions.

Everything is vectorized (numpy / pandas groupby); no Python loop runs per event or per user. The same
measurements drive `drlrec stats` and `synth.calibrate`, so a generated log and the real log it was fitted
on are compared with one ruler.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from drlrec.schema import BEHAVIORS, BUY, CART, EVENT_COLUMNS, FAV, PV
from drlrec.schema import LOCAL_UTC_OFFSET_S

#: Seconds of inactivity that end a session (the usual 30 minutes).
SESSION_GAP_S = 1800
_QUANTILES: tuple[tuple[str, float], ...] = (
    ("p25", 0.25),
    ("median", 0.5),
    ("p75", 0.75),
    ("p90", 0.9),
    ("p99", 0.99),
)


class SortedLog(NamedTuple):
    """A log as numpy columns sorted by (user, timestamp), ties kept in input order."""

    user: np.ndarray  # [N] int64
    item: np.ndarray  # [N] int64
    category: np.ndarray  # [N] int64
    behavior: np.ndarray  # [N] int8
    timestamp: np.ndarray  # [N] int64
    user_start: np.ndarray  # [N] bool: first event of its user
    session_start: np.ndarray  # [N] bool: first event of its session (user start or gap > session_gap)


def sort_log(events: pd.DataFrame, session_gap: int = SESSION_GAP_S) -> SortedLog:
    """Sort a typed log by (user, timestamp) stably and mark user and session starts."""
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events lack column(s) {', '.join(missing)}")
    user = events["user_id"].to_numpy(np.int64)
    ts = events["timestamp"].to_numpy(np.int64)
    order = np.lexsort((ts, user))  # lexsort is stable: equal (user, time) keep their input order
    user, ts = user[order], ts[order]
    n = len(user)
    user_start = np.ones(n, dtype=bool)
    user_start[1:] = user[1:] != user[:-1]
    session_start = user_start.copy()
    session_start[1:] |= (ts[1:] - ts[:-1]) > session_gap
    return SortedLog(
        user=user,
        item=events["item_id"].to_numpy(np.int64)[order],
        category=events["category_id"].to_numpy(np.int64)[order],
        behavior=events["behavior"].to_numpy(np.int8)[order],
        timestamp=ts,
        user_start=user_start,
        session_start=session_start,
    )


def segment_sizes(starts: np.ndarray) -> np.ndarray:
    """Lengths of the segments that begin where `starts` is True (starts[0] must be True)."""
    first = np.flatnonzero(starts)
    return np.diff(np.append(first, len(starts)))


def earlier_behavior_on_item(log: SortedLog, behavior: int) -> np.ndarray:
    """[N] bool: the same user had an event of `behavior` on the same item at an earlier position."""
    frame = pd.DataFrame(
        {"user": log.user, "item": log.item, "hit": (log.behavior == behavior).astype(np.int32)}
    )
    before = frame.groupby(["user", "item"], sort=False)["hit"].cumsum().to_numpy() - frame["hit"].to_numpy()
    return before > 0


def earlier_behavior_of_user(log: SortedLog, behavior: int) -> np.ndarray:
    """[N] bool: the same user had an event of `behavior` (on any item) at an earlier position."""
    hit = (log.behavior == behavior).astype(np.int64)
    cum = np.cumsum(hit)
    first = np.flatnonzero(log.user_start)
    base = np.repeat(cum[first] - hit[first], segment_sizes(log.user_start))
    return (cum - hit - base) > 0


def _share(mask: np.ndarray, where: np.ndarray) -> float | None:
    """Mean of `mask` over the rows selected by `where` (None when nothing is selected)."""
    count = int(where.sum())
    return float(mask[where].sum() / count) if count else None


def _quantiles(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    out = {"min": float(values.min())}
    for name, q in _QUANTILES[:2]:
        out[name] = float(np.quantile(values, q))
    out["mean"] = float(values.mean())
    for name, q in _QUANTILES[2:]:
        out[name] = float(np.quantile(values, q))
    out["max"] = float(values.max())
    return out


def _top_share(counts: np.ndarray, fraction: float) -> float:
    """Share of all events that fall on the top `fraction` of keys (at least one key)."""
    counts = np.sort(counts)[::-1]
    k = max(1, int(round(len(counts) * fraction)))
    return float(counts[:k].sum() / counts.sum())


def rank_slope(counts: np.ndarray, min_count: int = 2) -> float | None:
    """Zipf exponent seen in popularity counts: minus the log-log slope of count against rank.

    Only keys seen at least `min_count` times take part (the singletons of a sample are flat noise).
    """
    counts = np.sort(np.asarray(counts))[::-1]
    counts = counts[counts >= min_count]
    if len(counts) < 3 or counts[0] == counts[-1]:
        return None
    rank = np.log(np.arange(1, len(counts) + 1, dtype=np.float64))
    return float(-np.polyfit(rank, np.log(counts), 1)[0])


def within_group_rank_slope(group: np.ndarray, key: np.ndarray, min_keys: int = 5) -> float | None:
    """Zipf exponent of key popularity inside groups (items inside categories), pooled over the groups.

    Inside each group with at least `min_keys` keys, log count is regressed on log rank, both centred on
    the group's mean, so the groups' sizes do not mix into the slope.
    """
    counts = pd.DataFrame({"group": group, "key": key}).groupby(["group", "key"], sort=False).size()
    frame = counts.rename("n").reset_index()
    by_group = frame.groupby("group", sort=False)["n"]
    frame = frame[by_group.transform("size").to_numpy() >= min_keys]
    if frame.empty:
        return None
    rank = frame.groupby("group", sort=False)["n"].rank(method="first", ascending=False)
    x = np.log(rank.to_numpy())
    y = np.log(frame["n"].to_numpy(np.float64))
    x = x - pd.Series(x).groupby(frame["group"].to_numpy()).transform("mean").to_numpy()
    y = y - pd.Series(y).groupby(frame["group"].to_numpy()).transform("mean").to_numpy()
    denominator = float((x * x).sum())
    return float(-(x * y).sum() / denominator) if denominator > 0 else None


def top_category_overlap(log: SortedLog, top: int = 3) -> dict[str, float | None]:
    """How much a user's top categories persist: mean share of the top `top` categories of the first
    third of the log's time range also among the top of the middle third and of the last third.

    The range runs from the 1st to the 99th percentile of timestamps, so a few stray rows do not
    stretch it; users active in all three thirds count. Drifting interests give first_vs_last <
    first_vs_middle.
    """
    low, high = np.quantile(log.timestamp, [0.01, 0.99])
    third = np.clip(((log.timestamp - low) * 3) // max(high - low, 1), 0, 2).astype(np.int8)
    counts = (
        pd.DataFrame({"user": log.user, "third": third, "cat": log.category})
        .groupby(["user", "third", "cat"], sort=False)
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["user", "third", "n", "cat"], ascending=[True, True, False, True], kind="stable")
    )
    tops = counts[counts.groupby(["user", "third"], sort=False).cumcount().to_numpy() < top]
    active = tops.groupby("user")["third"].nunique()
    tops = tops[tops["user"].isin(active.index[active.to_numpy() == 3])]
    n_users = tops["user"].nunique()
    out: dict[str, float | None] = {}
    first = tops[tops["third"] == 0][["user", "cat"]]
    for name, other in (("first_vs_middle", 1), ("first_vs_last", 2)):
        shared = first.merge(tops[tops["third"] == other][["user", "cat"]], on=["user", "cat"]).shape[0]
        out[name] = float(shared / (top * n_users)) if n_users else None
    middle, last = out["first_vs_middle"], out["first_vs_last"]
    out["last_over_middle"] = float(last / middle) if middle and last is not None else None
    return out


def profile_log(events: pd.DataFrame, session_gap: int = SESSION_GAP_S) -> dict[str, Any]:
    """Measure a typed log (EVENT_COLUMNS, any row order) and return a JSON-ready dict of plain numbers.

    "Earlier" means an earlier position after a stable sort by (user, timestamp). Sessions end after more
    than `session_gap` seconds of inactivity.
    """
    log = sort_log(events, session_gap)
    n = len(log.user)
    profile: dict[str, Any] = {
        "rows": n,
        "users": int(log.user_start.sum()),
        "items": int(pd.unique(log.item).size),
        "categories": int(pd.unique(log.category).size),
    }
    if n == 0:
        return profile

    per_user = segment_sizes(log.user_start)
    profile["events_per_user"] = _quantiles(per_user)
    counts = np.bincount(log.behavior.astype(np.int64), minlength=len(BEHAVIORS))[: len(BEHAVIORS)]
    profile["behavior_counts"] = {name: int(c) for name, c in zip(BEHAVIORS, counts, strict=True)}
    profile["behavior_mix"] = {name: float(c / n) for name, c in zip(BEHAVIORS, counts, strict=True)}

    # re-views and the pv -> cart/fav -> buy funnel
    viewed_before = earlier_behavior_on_item(log, PV)
    carted_before = earlier_behavior_on_item(log, CART)
    is_pv, is_cart, is_fav, is_buy = (log.behavior == b for b in (PV, CART, FAV, BUY))
    profile["review_rate"] = _share(viewed_before, is_pv)
    profile["cart_after_view"] = _share(viewed_before, is_cart)
    profile["fav_after_view"] = _share(viewed_before, is_fav)
    profile["buy_after_view"] = _share(viewed_before, is_buy)
    profile["buy_after_cart"] = _share(carted_before, is_buy)
    previous_same_item = np.zeros(n, dtype=bool)
    previous_same_item[1:] = (log.item[1:] == log.item[:-1]) & ~log.user_start[1:]
    profile["repeat_previous_item"] = float(previous_same_item.sum() / max(1, n - profile["users"]))

    # categories: concentration per user, catalogue shape, popularity
    user_cat = (
        pd.DataFrame({"user": log.user, "cat": log.category}).groupby(["user", "cat"], sort=False).size()
    )
    by_user = user_cat.groupby(level=0, sort=False)
    top_share = by_user.max().to_numpy() / by_user.sum().to_numpy()
    profile["top_category_share_median"] = float(np.median(top_share))
    profile["categories_per_user_median"] = float(np.median(by_user.size().to_numpy()))
    items = pd.DataFrame({"item": log.item, "cat": log.category})
    cats_per_item = items.drop_duplicates().groupby("item", sort=False).size().to_numpy()
    profile["items_in_several_categories"] = int((cats_per_item > 1).sum())
    items_per_cat = items.drop_duplicates().groupby("cat", sort=False).size().to_numpy()
    profile["items_per_category"] = {
        "median": float(np.median(items_per_cat)),
        "mean": float(items_per_cat.mean()),
        "max": int(items_per_cat.max()),
    }
    profile["top1pct_item_share"] = _top_share(pd.Series(log.item).value_counts(sort=False).to_numpy(), 0.01)
    profile["top1pct_category_share"] = _top_share(
        pd.Series(log.category).value_counts(sort=False).to_numpy(), 0.01
    )
    profile["popularity_slope"] = {
        "category": rank_slope(pd.Series(log.category).value_counts(sort=False).to_numpy()),
        "item_in_category": within_group_rank_slope(log.category, log.item),
    }
    profile["top_category_overlap"] = top_category_overlap(log)
    same_category = np.zeros(n, dtype=bool)
    same_category[1:] = log.category[1:] == log.category[:-1]
    profile["same_category_in_session"] = _share(same_category, ~log.session_start)

    # time: span, day/night rhythm (UTC+8), sessions
    profile["time"] = {
        "min": int(log.timestamp.min()),
        "max": int(log.timestamp.max()),
        "span_days": float((log.timestamp.max() - log.timestamp.min()) / 86400),
    }
    local_hour = ((log.timestamp + LOCAL_UTC_OFFSET_S) % 86400) // 3600
    profile["night_share_02_06"] = float(((local_hour >= 2) & (local_hour < 6)).mean())
    profile["evening_share_20_24"] = float((local_hour >= 20).mean())
    per_session = segment_sizes(log.session_start)
    sessions_per_user = np.add.reduceat(log.session_start.astype(np.int64), np.flatnonzero(log.user_start))
    inner_gaps = np.diff(log.timestamp)[~log.session_start[1:]]
    profile["sessions"] = {
        "per_user_median": float(np.median(sessions_per_user)),
        "per_user_mean": float(sessions_per_user.mean()),
        "events_median": float(np.median(per_session)),
        "events_mean": float(per_session.mean()),
        "gap_median_s": float(np.median(inner_gaps)) if inner_gaps.size else None,
    }
    return profile


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)


def _local_time(ts: int) -> str:
    return pd.Timestamp(ts + LOCAL_UTC_OFFSET_S, unit="s").strftime("%Y-%m-%d %H:%M UTC+8")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_profile(profile: dict[str, Any], title: str) -> str:
    """Render a profile from `profile_log` as an aligned, sectioned text table."""
    rows: list[tuple[str, str]] = []

    def add(label: str, value: str) -> None:
        rows.append((label, value))

    def section(name: str) -> None:
        rows.append(("", ""))
        rows.append((f"[{name}]", ""))

    add("rows", _fmt(profile.get("rows")))
    add("users", _fmt(profile.get("users")))
    add("items", _fmt(profile.get("items")))
    add("categories", _fmt(profile.get("categories")))
    if profile.get("rows"):
        epu = profile["events_per_user"]
        section("events per user")
        for key in ("min", "p25", "median", "mean", "p75", "p90", "p99", "max"):
            add(key, _fmt(epu[key]))
        section("behaviours")
        for name in BEHAVIORS:
            add(name, f"{_pct(profile['behavior_mix'][name]):>6}  ({_fmt(profile['behavior_counts'][name])})")
        section("re-views and funnel (same user, same item, earlier)")
        add("pv re-viewing a viewed item", _pct(profile["review_rate"]))
        add("cart after a view", _pct(profile["cart_after_view"]))
        add("fav after a view", _pct(profile["fav_after_view"]))
        add("buy after a view", _pct(profile["buy_after_view"]))
        add("buy after a cart", _pct(profile["buy_after_cart"]))
        add("same item as previous event", _pct(profile["repeat_previous_item"]))
        section("categories and items")
        add("top category share / user (median)", _pct(profile["top_category_share_median"]))
        add("categories / user (median)", _fmt(profile["categories_per_user_median"]))
        add("same category as previous (in session)", _pct(profile["same_category_in_session"]))
        ipc = profile["items_per_category"]
        add(
            "items / category (median, mean, max)",
            f"{_fmt(ipc['median'])}, {_fmt(ipc['mean'])}, {_fmt(ipc['max'])}",
        )
        add("items in several categories", _fmt(profile["items_in_several_categories"]))
        add("events on top 1% items", _pct(profile["top1pct_item_share"]))
        add("events on top 1% categories", _pct(profile["top1pct_category_share"]))
        slope = profile["popularity_slope"]
        add("Zipf slope: categories", _fmt(slope["category"]))
        add("Zipf slope: items in a category", _fmt(slope["item_in_category"]))
        overlap = profile["top_category_overlap"]
        add(
            "top-3 categories kept: 1st third -> 2nd, 3rd",
            f"{_pct(overlap['first_vs_middle'])}, {_pct(overlap['first_vs_last'])}",
        )
        section("time and sessions (30-min gap, UTC+8)")
        t = profile["time"]
        add("first timestamp", f"{t['min']}  ({_local_time(t['min'])})")
        add("last timestamp", f"{t['max']}  ({_local_time(t['max'])})")
        add("span (days)", f"{t['span_days']:.2f}")
        add("events 02:00-06:00", _pct(profile["night_share_02_06"]))
        add("events 20:00-24:00", _pct(profile["evening_share_20_24"]))
        s = profile["sessions"]
        add("sessions / user (median, mean)", f"{_fmt(s['per_user_median'])}, {_fmt(s['per_user_mean'])}")
        add("events / session (median, mean)", f"{_fmt(s['events_median'])}, {_fmt(s['events_mean'])}")
        add("gap inside a session (median s)", _fmt(s["gap_median_s"]))
    width = max(len(label) for label, value in rows if value)
    lines = [title, "=" * max(len(title), width + 12)]
    for label, value in rows:
        lines.append(f"{label:<{width}}  {value}".rstrip() if label or value else "")
    return "\n".join(lines) + "\n"
