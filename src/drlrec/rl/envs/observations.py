"""Observations: the gymnasium observation space of one state, and observations to and from the StateBatch
every model scores (the states themselves come from the one state builder, features.states)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from gymnasium import spaces

from drlrec.errors import InputError
from drlrec.features.profile import PROFILE_FEATURES
from drlrec.features.steps import STEP_DIM
from drlrec.models.base import StateBatch
from drlrec.schema import BEHAVIORS

OBS_KEYS: tuple[str, ...] = ("item_seq", "category_seq", "behavior_seq", "step_features", "profile")


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
