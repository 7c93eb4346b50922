"""Reward schemes of the environments: the paper's purchase indicator and the business-weighted reward.

`purchase_binary`: 1 when the user buys a recommended item, else 0.
`business_weighted`: the behaviour's weight (pv 1, fav 2.5, cart 3, buy 10 by default), plus
`long_tail_bonus` when the item is long-tail (train count below the `long_tail_quantile` of the train
counts of items) and `category_bonus` when its category is the user's preferred one (the most frequent
category in the state; ties go to the most recent). No interaction earns 0 under both.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from drlrec.config import EnvConfig
from drlrec.errors import ConfigError
from drlrec.features.transitions import REWARDS
from drlrec.models.base import FIRST_REAL_ITEM
from drlrec.schema import BEHAVIORS, BUY


def behavior_weight_table(weights: dict[str, float]) -> np.ndarray:
    """[4] float32 weight per behaviour code from a {pv, cart, fav, buy} mapping."""
    if set(weights) != set(BEHAVIORS):
        raise ConfigError(
            f"env.behavior_weights needs exactly {', '.join(BEHAVIORS)} (got {', '.join(sorted(weights))})"
        )
    return np.array([weights[name] for name in BEHAVIORS], dtype=np.float32)


def long_tail_items(item_count: np.ndarray, quantile: float) -> np.ndarray:
    """[Vi] bool: real items whose train count is strictly below the `quantile` of the counts of real items
    seen in train (padding, unknown and never-seen items are not long-tail)."""
    if not 0.0 <= quantile <= 1.0:
        raise ConfigError(f"env.long_tail_quantile must be in [0, 1] (got {quantile})")
    item_count = np.asarray(item_count)
    real = np.arange(len(item_count)) >= FIRST_REAL_ITEM
    seen = real & (item_count > 0)
    if not seen.any():
        return np.zeros(len(item_count), dtype=bool)
    threshold = np.quantile(item_count[seen], quantile)
    return seen & (item_count < threshold)


def preferred_category(category_seq: np.ndarray) -> np.ndarray:
    """[B] the most frequent non-padding category of each state [B, L]; ties go to the most recent; 0 if empty."""
    category_seq = np.asarray(category_seq)
    batch, length = category_seq.shape
    if length == 0:
        return np.zeros(batch, dtype=category_seq.dtype)
    valid = category_seq > 0  # [B, L]
    same = (category_seq[:, :, None] == category_seq[:, None, :]) & valid[:, None, :]  # [B, L, L]
    count = np.where(valid, same.sum(axis=-1), 0)  # [B, L] occurrences of each position's category
    best = np.argmax(count * (length + 1) + np.arange(length), axis=1)  # later positions win ties
    return np.where(valid.any(axis=1), category_seq[np.arange(batch), best], 0)


class RewardModel(NamedTuple):
    """A reward scheme with its tables; call it on a batch of responses."""

    scheme: str  # purchase_binary | business_weighted
    behavior_weights: np.ndarray  # [4] float32
    long_tail: np.ndarray  # [Vi] bool
    long_tail_bonus: float
    category_bonus: float

    @classmethod
    def from_config(cls, cfg: EnvConfig, item_count: np.ndarray) -> RewardModel:
        """The scheme of `env.reward` with its weights; `item_count` [Vi] are the train counts per item."""
        if cfg.reward not in REWARDS:
            raise ConfigError(f"env.reward must be one of {', '.join(REWARDS)} (got {cfg.reward!r})")
        return cls(
            cfg.reward,
            behavior_weight_table(cfg.behavior_weights),
            long_tail_items(item_count, cfg.long_tail_quantile),
            float(cfg.long_tail_bonus),
            float(cfg.category_bonus),
        )

    def __call__(
        self, item: np.ndarray, behavior: np.ndarray, item_category: np.ndarray, preferred: np.ndarray
    ) -> np.ndarray:
        """[B] float32 reward of responses: `item` [B] (-1 = none), `behavior` [B] codes (-1 = none), the
        item's category [B] and the user's preferred category [B]."""
        item = np.asarray(item, dtype=np.int64)
        behavior = np.asarray(behavior, dtype=np.int64)
        acted = (item >= 0) & (behavior >= 0)
        if self.scheme == "purchase_binary":
            return (acted & (behavior == BUY)).astype(np.float32)
        weight = self.behavior_weights[np.clip(behavior, 0, len(BEHAVIORS) - 1)]
        tail = self.long_tail[np.clip(item, 0, len(self.long_tail) - 1)]
        same = (np.asarray(item_category) == np.asarray(preferred)) & (np.asarray(preferred) > 0)
        reward = weight + self.long_tail_bonus * tail + self.category_bonus * same
        return np.where(acted, reward, 0.0).astype(np.float32)
