"""Popularity baselines: global train-period counts, or counts over a recent window of the train period."""

from __future__ import annotations

from typing import Any

import numpy as np

from drlrec.models.base import Recommender, StateBatch, TrainingData


class Popularity(Recommender):
    """Scores every item by how often it occurred in the training data (the same list for everyone)."""

    name = "popularity"

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.counts = np.zeros(n_items, dtype=np.float32)

    def fit(self, data: TrainingData | np.ndarray, cfg: Any = None) -> Popularity:
        """Count training events per item (`data`: TrainingData, or an array of item indices)."""
        items = data.train.action_item if isinstance(data, TrainingData) else np.asarray(data)
        self.counts = np.bincount(items.astype(np.int64), minlength=self.n_items)[: self.n_items].astype(np.float32)
        return self

    def score(self, states: StateBatch) -> np.ndarray:
        return np.repeat(self.counts[None, :], states.batch_size, axis=0)  # [B, n_items], writable
