"""Popularity baselines: global train-period counts, or counts over a recent window of the train period."""

from __future__ import annotations

from typing import Any

import numpy as np

from drlrec.models.base import Recommender, StateBatch


class Popularity(Recommender):
    """Scores every item by how often it occurred in the training data (the same list for everyone)."""

    name = "popularity"

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.counts = np.zeros(n_items, dtype=np.float32)

    def fit(self, data: Any, cfg: Any = None) -> Popularity:
        """`data`: item indices of the training events (any int array), e.g. Transitions.action_item."""
        items = np.asarray(data, dtype=np.int64)
        self.counts = np.bincount(items, minlength=self.n_items)[: self.n_items].astype(np.float32)
        return self

    def score(self, states: StateBatch) -> np.ndarray:
        return np.repeat(self.counts[None, :], states.batch_size, axis=0)  # [B, n_items], writable
