"""The generator: catalogue, timestamps, interests and repeats, chunk by chunk of users, vectorized; and
the drifted period that continues the same users and catalogue."""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from drlrec.config import DriftConfig, SynthConfig
from drlrec.errors import ConfigError
from drlrec.schema import BEHAVIORS, BUY, CART, EVENTS_SCHEMA, LOCAL_UTC_OFFSET_S, PV

#: Users generated per chunk: bounds memory (about 5M events) and is the progress-bar step.
CHUNK_USERS = 50_000

#: Item and category ids are drawn without replacement from [1, ID_SPACE), like Taobao's sparse ids.
ID_SPACE = 5_200_000

#: Relative activity per local hour (UTC+8), 00:00 first: the shape of the Taobao log's day.
HOURLY_ACTIVITY: tuple[float, ...] = (
    3.0, 1.3, 0.5, 0.25, 0.25, 0.4, 1.0, 2.2, 3.2, 3.8, 4.4, 4.6,
    4.5, 4.6, 4.8, 4.9, 4.9, 4.6, 4.5, 5.4, 6.6, 7.2, 6.9, 5.0,
)  # fmt: skip

#: Log-space spread of the gaps between events inside a session (the real log: median 56 s, mean 140 s).
GAP_SIGMA = 1.35

#: Weight of preferred category k is PREFERENCE_DECAY**k: the first preference dominates.
PREFERENCE_DECAY = 0.6

#: A remembered item is chosen as the floor(count * U**(1/RECENCY)) -th earlier one: recent ones first.
RECENCY = 3.0

#: Passes that redraw an event repeating the previous event's item (each pass fixes nearly all).
REPEAT_FIX_PASSES = 6


class Catalogue(NamedTuple):
    """Items and categories; internal indices are positions in these arrays."""

    item_ids: np.ndarray  # [I] int64, Taobao-like ids, items in category blocks
    item_category: np.ndarray  # [I] int32 category index of each item
    item_key: np.ndarray  # [I] float64: category index + within-category popularity CDF (increasing)
    category_ids: np.ndarray  # [C] int64
    category_cdf: np.ndarray  # [C] float64 popularity CDF over category indices, last = 1


def lognormal_params(median: float, mean: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with this median and mean: median = e^mu, mean = e^(mu + sigma^2/2)."""
    mu = math.log(median)
    return mu, math.sqrt(2.0 * math.log(mean / median))


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


def _segment_starts(sizes: np.ndarray) -> np.ndarray:
    """First index of each segment of the given sizes."""
    starts = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    return starts


def _exclusive_count(flags: np.ndarray, owner: np.ndarray, owner_first: np.ndarray) -> np.ndarray:
    """[N] how many `flags` precede each position inside its owner's segment."""
    flags = flags.astype(np.int64)
    cum = np.cumsum(flags)
    base = cum[owner_first] - flags[owner_first]
    return cum - flags - base[owner]


def _segmented_cummax(values: np.ndarray, owner: np.ndarray, span: int) -> np.ndarray:
    """Running max restarting at each owner; `owner` is non-decreasing and |values| < span / 2."""
    lift = owner.astype(np.int64) * span
    return np.maximum.accumulate(values + lift) - lift


def _segmented_reverse_cummin(values: np.ndarray, owner: np.ndarray, span: int) -> np.ndarray:
    """Running min from the right, restarting at each owner (same preconditions as the cummax)."""
    return -_segmented_cummax(-values[::-1], owner[-1] - owner[::-1], span)[::-1]


def _check(cfg: SynthConfig, seed: int) -> None:
    problems = []
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        problems.append(f"seed must be a non-negative integer, got {seed!r}")
    if cfg.users < 1 or cfg.days < 1 or cfg.start < 0:
        problems.append("users and days must be >= 1 and start >= 0")
    if not 1 <= cfg.categories <= cfg.items:
        problems.append(f"need 1 <= categories <= items, got {cfg.categories} and {cfg.items}")
    if not 0 < cfg.events_median <= cfg.events_mean:
        problems.append(f"need 0 < events_median <= events_mean, got {cfg.events_median}, {cfg.events_mean}")
    if cfg.events_max < 1:
        problems.append("events_max must be >= 1")
    mix = np.asarray(cfg.behavior_mix, dtype=np.float64)
    if mix.shape != (len(BEHAVIORS),) or (mix < 0).any() or mix.sum() <= 0:
        problems.append(f"behavior_mix must be {len(BEHAVIORS)} non-negative shares, got {cfg.behavior_mix}")
    for name in (
        "preference_strength",
        "preference_drift",
        "category_stickiness",
        "review_rate",
        "buy_after_view",
        "buy_via_cart",
        "cart_after_view",
        "fav_after_view",
    ):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            problems.append(f"{name} must be in [0, 1], got {getattr(cfg, name)}")
    if cfg.preferred_categories < 1 or cfg.session_gap < 1:
        problems.append("preferred_categories and session_gap must be >= 1")
    if cfg.session_events_mean < 1 or cfg.event_gap_median <= 0:
        problems.append("session_events_mean must be >= 1 and event_gap_median > 0")
    if cfg.item_zipf < 0 or cfg.category_zipf < 0:
        problems.append("item_zipf and category_zipf must be >= 0")
    if problems:
        raise ConfigError("synth: " + "; ".join(problems))


def build_catalogue(cfg: SynthConfig, rng: np.random.Generator) -> Catalogue:
    """Categories with Zipf popularity, each holding at least one item; items Zipf inside their category."""
    n_items, n_cats = cfg.items, cfg.categories
    category_cdf = _zipf_cdf(n_cats, cfg.category_zipf)
    popularity = np.diff(category_cdf, prepend=0.0)
    # bigger categories hold more items, as in Taobao; every category holds at least one
    per_category = 1 + rng.multinomial(n_items - n_cats, popularity)
    first = _segment_starts(per_category)
    item_category = np.repeat(np.arange(n_cats, dtype=np.int32), per_category)
    rank = np.arange(n_items, dtype=np.float64) - first[item_category] + 1.0
    weight = rank**-cfg.item_zipf
    cum = np.cumsum(weight)
    block_total = np.add.reduceat(weight, first)
    within = (cum - (cum[first] - weight[first])[item_category]) / block_total[item_category]
    within[first + per_category - 1] = 1.0  # exact block ends keep the key strictly increasing across blocks
    space = max(ID_SPACE, 2 * (n_items + n_cats))
    return Catalogue(
        item_ids=rng.choice(space - 1, size=n_items, replace=False).astype(np.int64) + 1,
        item_category=item_category,
        item_key=item_category + within,
        category_ids=rng.choice(space - 1, size=n_cats, replace=False).astype(np.int64) + 1,
        category_cdf=category_cdf,
    )


def _draw_items(cat: Catalogue, categories: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item index per event, by popularity inside the given category indices."""
    return np.searchsorted(cat.item_key, categories + rng.random(len(categories)), side="right")


def _hour_curve(cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """(CDF at hour edges, seconds at hour edges) of the day/night activity over the window."""
    hours = np.arange(cfg.days * 24, dtype=np.int64)
    local_hour = ((cfg.start + hours * 3600 + LOCAL_UTC_OFFSET_S) % 86400) // 3600
    weight = np.asarray(HOURLY_ACTIVITY)[local_hour]
    cdf = np.concatenate([[0.0], np.cumsum(weight)])
    cdf /= cdf[-1]
    return cdf, np.arange(cfg.days * 24 + 1, dtype=np.float64) * 3600.0


def _timestamps(
    cfg: SynthConfig, rng: np.random.Generator, user: np.ndarray, user_first: np.ndarray, n_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps [N] int64, session_start [N] bool) for events laid out user after user."""
    n = len(user)
    window = cfg.days * 86400
    min_gap = cfg.session_gap + 1  # sessions are apart by MORE than session_gap
    # sessions: geometric lengths; each user's session-start rate is spread (gamma) around 1 / mean
    start_rate = rng.gamma(2.0, 0.5, n_users) / cfg.session_events_mean
    start = rng.random(n) < start_rate[user]
    start[user_first] = True
    # at most half the window goes to the gaps between sessions, so every user fits
    max_sessions = max(1, (window // 2) // min_gap + 1)
    start &= _exclusive_count(start, user, user_first) < max_sessions
    session = np.cumsum(start) - 1  # [N] session index of each event
    session_first = np.flatnonzero(start)
    session_user = user[session_first]
    sessions_per_user = np.bincount(session_user, minlength=n_users)

    # gaps inside sessions (lognormal, at most session_gap), scaled down for users who would overflow
    gap = np.rint(rng.lognormal(math.log(cfg.event_gap_median), GAP_SIGMA, n))
    np.clip(gap, 1.0, cfg.session_gap, out=gap)
    gap[start] = 0.0
    cum_gap = np.cumsum(gap)
    offset = cum_gap - cum_gap[session_first][session]  # seconds since the session's first event
    busy = np.bincount(user, weights=gap, minlength=n_users)
    room = (window - 1) - (sessions_per_user - 1) * min_gap
    scale = np.minimum(1.0, 0.9 * room / np.maximum(busy, 1.0))
    offset = np.floor(offset * scale[user]).astype(np.int64)
    session_last = np.append(session_first[1:], n) - 1
    duration = offset[session_last]  # [S]

    # wished start times: sorted per user, drawn from the day/night curve
    anchor_u = rng.random(len(session_first)) * 0.999_999 + session_user
    anchor_u.sort()
    cdf, edges = _hour_curve(cfg)
    anchor = np.floor(np.interp(anchor_u - session_user, cdf, edges)).astype(np.int64)
    # push sessions apart: start_s = c_s + max_{k<=s}(a_k - c_k), c_s = sum_{k<s}(duration_k + min_gap);
    # then pull back from the window end with a running min from the right (both keep the spacing)
    step = duration + min_gap
    cum_step = np.cumsum(step)
    user_first_session = _segment_starts(sessions_per_user)
    c = cum_step - step - (cum_step[user_first_session] - step[user_first_session])[session_user]
    span = 8 * window
    pushed = _segmented_cummax(anchor - c, session_user, span)
    user_last_session = user_first_session + sessions_per_user - 1
    latest = (window - 1) - (c + duration)[user_last_session]  # [U] latest feasible value of start - c
    pulled = np.minimum(_segmented_reverse_cummin(pushed, session_user, span), latest[session_user])
    session_time = cfg.start + c + pulled
    return session_time[session] + offset, start


def _preferences(cfg: SynthConfig, cat: Catalogue, rng: np.random.Generator, n_users: int) -> np.ndarray:
    """[U, days, K] preferred category indices; each day one slot may be replaced (drift)."""
    k = cfg.preferred_categories
    pref = np.empty((n_users, cfg.days, k), dtype=np.int64)
    pref[:, 0] = np.searchsorted(cat.category_cdf, rng.random((n_users, k)), side="right")
    rows = np.arange(n_users)
    for day in range(1, cfg.days):
        pref[:, day] = pref[:, day - 1]
        drift = rng.random(n_users) < cfg.preference_drift
        slot = rng.integers(0, k, n_users)
        fresh = np.searchsorted(cat.category_cdf, rng.random(n_users), side="right")
        pref[rows[drift], day, slot[drift]] = fresh[drift]
    return pref


def _fresh_categories(
    cfg: SynthConfig,
    cat: Catalogue,
    rng: np.random.Generator,
    user: np.ndarray,
    day: np.ndarray,
    session_start: np.ndarray,
    n_users: int,
) -> np.ndarray:
    """[N] category index of each event if it were a fresh pick (before memory overrides it)."""
    n = len(user)
    pref = _preferences(cfg, cat, rng, n_users)
    slot_cdf = np.cumsum(PREFERENCE_DECAY ** np.arange(cfg.preferred_categories))
    slot_cdf /= slot_cdf[-1]
    slot = np.minimum(np.searchsorted(slot_cdf, rng.random(n), side="right"), cfg.preferred_categories - 1)
    category = np.searchsorted(cat.category_cdf, rng.random(n), side="right")
    preferred = rng.random(n) < cfg.preference_strength
    category[preferred] = pref[user[preferred], day[preferred], slot[preferred]]
    # stickiness: inside a session an event keeps the previous event's category (forward fill)
    stay = (rng.random(n) < cfg.category_stickiness) & ~session_start
    source = np.where(stay, 0, np.arange(n))
    np.maximum.accumulate(source, out=source)
    return category[source]


def _pick_earlier(
    rng: np.random.Generator,
    chooser: np.ndarray,
    pool: np.ndarray,
    user: np.ndarray,
    user_first: np.ndarray,
) -> np.ndarray:
    """For each position in `chooser` (sorted indices), an earlier `pool` index of the same user, or -1.

    Recent pool members are likelier; the event right before the chooser is skipped when another exists.
    """
    before = _exclusive_count(pool, user, user_first)[chooser]
    pool_index = np.flatnonzero(pool)
    pool_base = np.cumsum(pool)[user_first] - pool[user_first]  # [U] pool members before each user
    k = np.floor(before * rng.random(len(chooser)) ** (1.0 / RECENCY)).astype(np.int64)
    k = np.minimum(k, np.maximum(before - 1, 0))
    base = pool_base[user[chooser]]
    ref = pool_index[np.minimum(base + k, len(pool_index) - 1)] if len(pool_index) else np.zeros_like(k)
    adjacent = (ref == chooser - 1) & (k > 0)
    k[adjacent] -= 1
    ref[adjacent] = pool_index[base[adjacent] + k[adjacent]]
    return np.where(before > 0, ref, -1)


def _items(
    cfg: SynthConfig,
    cat: Catalogue,
    rng: np.random.Generator,
    behavior: np.ndarray,
    fresh_category: np.ndarray,
    user: np.ndarray,
    user_first: np.ndarray,
) -> np.ndarray:
    """[N] item index of each event: fresh draws, re-views and funnel picks, never the previous item."""
    n = len(user)
    fresh = _draw_items(cat, fresh_category, rng)
    is_pv = behavior == PV
    remember = np.asarray([cfg.review_rate, cfg.cart_after_view, cfg.fav_after_view, cfg.buy_after_view])
    wants_memory = rng.random(n) < remember[behavior]
    # viewed pool: pv events that are fresh picks (every user's first pv is one), so references never chain
    first_pv = is_pv & (_exclusive_count(is_pv, user, user_first) == 0)
    viewed = is_pv & (~wants_memory | first_pv)
    ref = np.arange(n)
    chooser = np.flatnonzero(wants_memory & ~viewed)
    picked = _pick_earlier(rng, chooser, viewed, user, user_first)
    ref[chooser] = np.where(picked >= 0, picked, chooser)
    # some funnel buys go through an earlier cart (whose item is itself resolved through ref)
    buyers = chooser[behavior[chooser] == BUY]
    via_cart = buyers[rng.random(len(buyers)) < cfg.buy_via_cart]
    carted = _pick_earlier(rng, via_cart, behavior == CART, user, user_first)
    ref[via_cart[carted >= 0]] = carted[carted >= 0]
    not_first = np.ones(n, dtype=bool)
    not_first[user_first] = False
    for _ in range(REPEAT_FIX_PASSES):
        item = fresh[ref[ref]]  # references are at most two deep: buy -> cart -> viewed pv
        repeat = np.flatnonzero(not_first[1:] & (item[1:] == item[:-1])) + 1
        if not len(repeat):
            break
        ref[repeat] = repeat
        fresh[repeat] = _draw_items(cat, fresh_category[repeat], rng)
    return fresh[ref[ref]]


def _generate_chunk(
    cfg: SynthConfig, cat: Catalogue, rng: np.random.Generator, first_user_id: int, n_users: int
) -> pa.Table:
    mu, sigma = lognormal_params(cfg.events_median, cfg.events_mean)
    per_user = np.clip(np.rint(rng.lognormal(mu, sigma, n_users)), 1, cfg.events_max).astype(np.int64)
    user = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
    user_first = _segment_starts(per_user)
    timestamp, session_start = _timestamps(cfg, rng, user, user_first, n_users)
    mix = np.cumsum(np.asarray(cfg.behavior_mix, dtype=np.float64))
    mix /= mix[-1]
    behavior = np.minimum(np.searchsorted(mix, rng.random(len(user)), side="right"), len(BEHAVIORS) - 1)
    day = np.minimum((timestamp - cfg.start) // 86400, cfg.days - 1)
    fresh_category = _fresh_categories(cfg, cat, rng, user, day, session_start, n_users)
    item = _items(cfg, cat, rng, behavior, fresh_category, user, user_first)
    columns = {
        "user_id": user + first_user_id,
        "item_id": cat.item_ids[item],
        "category_id": cat.category_ids[cat.item_category[item]],
        "behavior": behavior.astype(np.int8),
        "timestamp": timestamp,
    }
    return pa.Table.from_pydict(columns, schema=EVENTS_SCHEMA)


def generate(cfg: SynthConfig, seed: int, progress: bool = True) -> pa.Table:
    """Generate a Taobao-like log (EVENTS_SCHEMA, sorted by user then time); same cfg and seed, same log."""
    _check(cfg, seed)
    catalogue = build_catalogue(cfg, np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0,))))
    return _generate_users(cfg, catalogue, seed, stream=1, progress=progress)


def shift_catalogue(cat: Catalogue, drift: DriftConfig, rng: np.random.Generator) -> Catalogue:
    """The catalogue of a shifted period: category popularity rotated by `drift.category_shift` ranks (so
    users prefer other categories) and `drift.new_item_share` of the items under fresh, never-used ids."""
    weights = np.roll(np.diff(cat.category_cdf, prepend=0.0), drift.category_shift)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    n_items = len(cat.item_ids)
    n_new = int(round(drift.new_item_share * n_items))
    item_ids = cat.item_ids.copy()
    if n_new:
        # old ids lie below `space` (build_catalogue); fresh ones above it can never collide with them
        space = int(max(ID_SPACE, 2 * (n_items + len(cat.category_ids))))
        fresh = rng.choice(n_items, size=n_new, replace=False)
        item_ids[fresh] = space + rng.choice(space, size=n_new, replace=False).astype(np.int64)
    return cat._replace(item_ids=item_ids, category_cdf=cdf)


def drift_period(cfg: SynthConfig, drift: DriftConfig) -> SynthConfig:
    """The generator config of the shifted period: it starts where `cfg`'s window ends, lasts `drift.days`
    days with the same daily activity (events per user scaled by the period's length) and its own mix."""
    scale = drift.days / cfg.days
    median = max(1.0, cfg.events_median * scale)
    return dataclasses.replace(
        cfg,
        start=cfg.start + cfg.days * 86400,
        days=drift.days,
        events_median=median,
        events_mean=max(median, cfg.events_mean * scale),
        behavior_mix=cfg.behavior_mix if drift.behavior_mix is None else drift.behavior_mix,
    )


def generate_drift(cfg: SynthConfig, drift: DriftConfig, seed: int, progress: bool = True) -> pa.Table:
    """A shifted period after `cfg`'s window for the same users and catalogue (same `seed`): preferred
    categories move, new items arrive, the behaviour mix changes (`drift`). Deterministic by seed; with
    every drift knob neutral it is a continuation from the same distribution."""
    problems = []
    if drift.days < 1:
        problems.append(f"days must be >= 1, got {drift.days}")
    if drift.category_shift < 0:
        problems.append(f"category_shift must be >= 0, got {drift.category_shift}")
    if not 0.0 <= drift.new_item_share <= 1.0:
        problems.append(f"new_item_share must be in [0, 1], got {drift.new_item_share}")
    if problems:
        raise ConfigError("drift: " + "; ".join(problems))
    period = drift_period(cfg, drift)
    _check(period, seed)
    catalogue = build_catalogue(cfg, np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0,))))
    catalogue = shift_catalogue(
        catalogue, drift, np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(2,)))
    )
    return _generate_users(period, catalogue, seed, stream=3, progress=progress)


def _generate_users(cfg: SynthConfig, catalogue: Catalogue, seed: int, stream: int, progress: bool) -> pa.Table:
    """Every user's events, chunk by chunk; chunk i draws from the generator (seed, (stream, i))."""
    n_chunks = -(-cfg.users // CHUNK_USERS)
    chunks = range(n_chunks)
    if progress and n_chunks > 1:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="synth", unit="chunk", file=sys.stderr)
    tables = []
    for index in chunks:
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(stream, index)))
        first = index * CHUNK_USERS
        n_users = min(CHUNK_USERS, cfg.users - first)
        tables.append(_generate_chunk(cfg, catalogue, rng, first + 1, n_users))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
