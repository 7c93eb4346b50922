"""Observations: the gymnasium observation space of one state, observations to and from the StateBatch
every model scores, and `advance_states`, the state after each session's new event."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from gymnasium import spaces

from drlrec.config import FeaturizeConfig
from drlrec.errors import InputError
from drlrec.features.profile import PROFILE_FEATURES
from drlrec.features.steps import STEP_DIM, USER_CONTEXT_COLUMNS, TrainStats, step_features
from drlrec.models.base import StateBatch
from drlrec.schema import BEHAVIORS, BUY

OBS_KEYS: tuple[str, ...] = ("item_seq", "category_seq", "behavior_seq", "step_features", "profile")

_P = {name: i for i, name in enumerate(PROFILE_FEATURES)}

_SECONDS_PER_DAY = 86400.0

PolicyFn = Callable[[StateBatch], np.ndarray]


def observation_space(n_items: int, n_categories: int, seq_len: int) -> spaces.Dict:
    """The Dict space of one state (see the module doc)."""
    return spaces.Dict(
        {
            "item_seq": spaces.Box(0, n_items - 1, shape=(seq_len,), dtype=np.int64),
            "category_seq": spaces.Box(0, n_categories - 1, shape=(seq_len,), dtype=np.int64),
            "behavior_seq": spaces.Box(0, len(BEHAVIORS), shape=(seq_len,), dtype=np.int64),
            "step_features": spaces.Box(-np.inf, np.inf, shape=(seq_len, STEP_DIM), dtype=np.float32),
            "profile": spaces.Box(-np.inf, np.inf, shape=(len(PROFILE_FEATURES),), dtype=np.float32),
        }
    )


def state_to_obs(states: StateBatch, row: int = 0) -> dict[str, np.ndarray]:
    """Observation of one row of a StateBatch (copies, with the space's dtypes)."""
    return {
        "item_seq": np.asarray(states.item_seq[row], dtype=np.int64).copy(),
        "category_seq": np.asarray(states.category_seq[row], dtype=np.int64).copy(),
        "behavior_seq": np.asarray(states.behavior_seq[row], dtype=np.int64).copy(),
        "step_features": np.asarray(states.step_features[row], dtype=np.float32).copy(),
        "profile": np.asarray(states.profile[row], dtype=np.float32).copy(),
    }


def obs_to_state_batch(obs: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]) -> StateBatch:
    """Stack one observation or a sequence of them into a StateBatch (B = number of observations)."""
    batch = [obs] if isinstance(obs, Mapping) else list(obs)
    if not batch:
        raise InputError("no observations to stack")
    return StateBatch(
        item_seq=np.stack([o["item_seq"] for o in batch]).astype(np.int64),
        category_seq=np.stack([o["category_seq"] for o in batch]).astype(np.int64),
        behavior_seq=np.stack([o["behavior_seq"] for o in batch]).astype(np.int8),
        step_features=np.stack([o["step_features"] for o in batch]).astype(np.float32),
        profile=np.stack([o["profile"] for o in batch]).astype(np.float32),
    )


#: Alias: stack observations (e.g. from a vector env) into a StateBatch.
stack_obs = obs_to_state_batch


def advance_states(
    states: StateBatch,
    item: np.ndarray,
    category: np.ndarray,
    behavior: np.ndarray,
    stats: TrainStats,
    featurize_cfg: FeaturizeConfig,
    step_seconds: float,
) -> StateBatch:
    """States after each user's new event (`item` [B], -1 = no event: that row is unchanged).

    The event is appended (oldest dropped) with its 20-d step encoding from `features.steps.step_features`
    (time gap `step_seconds`, position and user context read off the profile), and the profile is moved
    forward: counts and rates exactly (the history length is recovered from actions_per_day and the
    account age); purchase density exactly when the state covers featurize.density_window events;
    category diversity and the top-category share from the categories in the state (exact while the
    state holds the whole history, otherwise an approximation).
    """
    item = np.asarray(item, dtype=np.int64)
    out = StateBatch(*(np.array(a, copy=True) for a in states))
    rows = np.flatnonzero(item >= 0)
    if len(rows) == 0:
        return out
    new_item, new_category = item[rows], np.asarray(category, dtype=np.int64)[rows]
    new_behavior = np.asarray(behavior, dtype=np.int64)[rows]
    old_category = out.category_seq[rows]  # [b, N]
    valid = out.item_seq[rows] > 0  # [b, N]
    profile = out.profile[rows].astype(np.float64)  # [b, 10]
    floor, age_scale = featurize_cfg.activity_floor_days, featurize_cfg.age_scale_days
    days = profile[:, _P["account_age"]] * age_scale
    past = np.rint(
        np.expm1(profile[:, _P["actions_per_day"]]) * np.maximum(days, floor)
    )  # [b] history length
    gap = np.where(past > 0, step_seconds, 0.0)
    steps = step_features(
        new_item,
        new_category,
        new_behavior,
        gap,
        past.astype(np.int64),
        profile[:, USER_CONTEXT_COLUMNS],
        stats,
    )  # [b, 20]

    def push(seq: np.ndarray, value: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [seq[rows, 1:], value.astype(seq.dtype).reshape(len(rows), *seq.shape[2:])[:, None]], axis=1
        )

    out.item_seq[rows] = push(out.item_seq, new_item)
    out.category_seq[rows] = push(out.category_seq, new_category)
    out.behavior_seq[rows] = push(out.behavior_seq, new_behavior + 1)
    out.step_features[rows] = push(out.step_features, steps)

    total = past + 1.0
    for name, code in (("buy_rate", BUY), ("cart_rate", 1), ("fav_rate", 2), ("view_rate", 0)):
        profile[:, _P[name]] = (profile[:, _P[name]] * past + (new_behavior == code)) / total
    window = featurize_cfg.density_window
    is_buy = new_behavior == BUY
    if out.behavior_seq.shape[1] >= window:
        profile[:, _P["purchase_density"]] = (
            np.sum(out.behavior_seq[rows, -window:] == BUY + 1, axis=1) / window
        )
    else:
        profile[:, _P["purchase_density"]] = (
            profile[:, _P["purchase_density"]] * (window - 1) / window + is_buy / window
        )
    in_state = np.sum((old_category == new_category[:, None]) & valid, axis=1)  # [b]
    distinct = profile[:, _P["category_diversity"]] * past + (in_state == 0)
    profile[:, _P["category_diversity"]] = distinct / total
    top = np.maximum(profile[:, _P["top_category_ratio"]] * past, in_state + 1)
    profile[:, _P["top_category_ratio"]] = top / total
    profile[:, _P["has_purchases"]] = np.maximum(profile[:, _P["has_purchases"]], is_buy)
    days = days + step_seconds / _SECONDS_PER_DAY
    profile[:, _P["account_age"]] = days / age_scale
    profile[:, _P["actions_per_day"]] = np.log1p(total / np.maximum(days, floor))
    out.profile[rows] = profile.astype(np.float32)
    return out
