"""Calibration: the generator's parameters fitted so that its profile matches a real log's."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from drlrec.config import SynthConfig
from drlrec.data.stats import profile_log
from drlrec.data.synth.generator import generate
from drlrec.errors import InputError
from drlrec.schema import BEHAVIORS


class _Target(NamedTuple):
    """A generator knob fitted by matching one statistic of generated logs to the real log's."""

    field: str
    statistic: tuple[str, ...]  # path into the profile
    update: str  # "add": knob += gain * (real - generated); "ratio": knob *= real / generated
    gain: float
    low: float
    high: float


#: Knobs fitted by simulation (indirect inference): each moves the statistic it is paired with.
CALIBRATION_TARGETS: tuple[_Target, ...] = (
    _Target("review_rate", ("review_rate",), "add", 1.0, 0.0, 0.95),
    _Target("cart_after_view", ("cart_after_view",), "add", 1.0, 0.0, 1.0),
    _Target("fav_after_view", ("fav_after_view",), "add", 1.0, 0.0, 1.0),
    _Target("buy_after_view", ("buy_after_view",), "add", 1.0, 0.0, 1.0),
    _Target("buy_via_cart", ("buy_after_cart",), "ratio", 1.0, 0.0, 1.0),
    _Target("category_stickiness", ("same_category_in_session",), "add", 1.5, 0.0, 0.95),
    _Target("preference_strength", ("top_category_share_median",), "add", 2.0, 0.0, 1.0),
    _Target("preference_drift", ("top_category_overlap", "last_over_middle"), "add", -3.0, 0.0, 1.0),
    _Target("session_events_mean", ("sessions", "events_mean"), "ratio", 1.0, 1.0, 1000.0),
    _Target("event_gap_median", ("sessions", "gap_median_s"), "ratio", 1.0, 1.0, 1800.0),
    _Target("category_zipf", ("popularity_slope", "category"), "add", 1.0, 0.0, 3.0),
    _Target("item_zipf", ("popularity_slope", "item_in_category"), "add", 2.0, 0.0, 3.0),
)

#: Users simulated per calibration round (replicates of the real log's user count, averaged).
CALIBRATION_USERS = 3000

#: Larger real logs are profiled on this many users drawn at random (popularity slopes depend on size).
CALIBRATION_MAX_USERS = 5000

CALIBRATION_MAX_REPLICATES = 10

CALIBRATION_ROUNDS = 6


def _lookup(profile: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = profile
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return None if value is None else float(value)


def calibrate(events: pd.DataFrame, cfg: SynthConfig) -> dict[str, Any]:
    """Fit SynthConfig fields to a real typed log; return {field: value} for the fields fitted.

    Events per user and the behaviour mix are read off the log. The other knobs interact with chance
    (a popular item is re-viewed by luck; a small sample flattens popularity), so they are fitted by
    simulation: generate logs with the same number of users, profile them, and move each knob until
    its statistic matches the real log's. The catalogue size, window and preference count stay as in
    `cfg`. Deterministic: the simulations use fixed seeds.
    """
    if events.empty:
        raise InputError("cannot calibrate the generator on an empty log")
    per_user = events.groupby("user_id", sort=False).size().to_numpy()
    median = float(np.median(per_user))
    mix = np.bincount(events["behavior"].to_numpy(np.int64), minlength=len(BEHAVIORS))[: len(BEHAVIORS)]
    fitted: dict[str, Any] = {
        "events_median": round(median, 3),
        "events_mean": round(max(float(per_user.mean()), median), 3),
        "behavior_mix": tuple(round(float(x), 6) for x in mix / mix.sum()),
    }
    users = pd.unique(events["user_id"].to_numpy())
    if len(users) > CALIBRATION_MAX_USERS:
        keep = np.random.default_rng(0).choice(users, CALIBRATION_MAX_USERS, replace=False)
        events = events[events["user_id"].isin(keep)]
        users = keep
    real = profile_log(events, session_gap=cfg.session_gap)
    targets = [(t, _lookup(real, t.statistic)) for t in CALIBRATION_TARGETS]
    targets = [(t, value) for t, value in targets if value is not None]
    knobs = {t.field: float(getattr(cfg, t.field)) for t, _ in targets}
    sim_cfg = dataclasses.replace(cfg, **fitted, users=len(users))
    replicates = min(CALIBRATION_MAX_REPLICATES, max(1, -(-CALIBRATION_USERS // len(users))))
    for _ in range(CALIBRATION_ROUNDS):
        sim_cfg = dataclasses.replace(sim_cfg, **knobs)
        profiles = [
            profile_log(generate(sim_cfg, seed, progress=False).to_pandas(), cfg.session_gap)
            for seed in range(replicates)
        ]
        for target, wanted in targets:
            seen = [v for v in (_lookup(p, target.statistic) for p in profiles) if v is not None]
            if not seen:
                continue
            got = float(np.mean(seen))
            value = knobs[target.field]
            if target.update == "ratio":  # floors keep a knob at 0 (or a statistic at 0) from sticking
                value = max(value, 0.01) * wanted / max(got, 1e-3)
            else:
                value = value + target.gain * (wanted - got)
            knobs[target.field] = min(target.high, max(target.low, value))
    for field, value in knobs.items():
        fitted[field] = round(value, 4)
    return fitted
