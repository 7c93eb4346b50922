"""Popularity baselines: global train-period counts, or counts over a recent window of the train period."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from drlrec.config import BaselinesConfig
from drlrec.models.base import Recommender, ScoreBlocks, StateBatch, TrainingData

SECONDS_PER_DAY = 86400


class Popularity(Recommender):
    """Scores every item by how often it occurred in the training data (the same list for everyone)."""

    name = "popularity"

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.counts = np.zeros(n_items, dtype=np.float32)

    def fit(self, data: TrainingData | np.ndarray, cfg: Any = None) -> Popularity:
        """Count training events per item (`data`: TrainingData, or an array of item indices)."""
        items = data.train.action_item if isinstance(data, TrainingData) else np.asarray(data)
        self.counts = item_counts(items, self.n_items)
        return self

    def score(self, states: StateBatch) -> np.ndarray:
        return np.repeat(self.counts[None, :], states.batch_size, axis=0)  # [B, n_items], writable

    def score_blocks(self, states: StateBatch) -> ScoreBlocks:
        return _CountBlocks(self.counts, states.batch_size)

    def save(self, path: str | Path) -> None:
        """Write the counts into the folder `path` (meta.json + arrays.npz)."""
        from drlrec.models.persistence import save_arrays, write_meta

        save_arrays(path, counts=self.counts)
        write_meta(path, self.name, n_items=self.n_items)

    @classmethod
    def load(cls, path: str | Path) -> Popularity:
        from drlrec.models.persistence import load_arrays, read_meta

        model = cls(int(read_meta(path)["n_items"]))
        model.counts = load_arrays(path)["counts"].astype(np.float32)
        return model


def item_counts(items: np.ndarray, n_items: int) -> np.ndarray:
    """[n_items] float32 number of occurrences of each item index."""
    return np.bincount(np.asarray(items).astype(np.int64), minlength=n_items)[:n_items].astype(np.float32)


class RecentPopularity(Popularity):
    """Popularity over the last `recent_days` of the train period (trends move within days on Taobao).

    The window ends at the last train event; train events strictly older than `recent_days` days before
    it are ignored. Items with no recent event score 0 (ties break toward the lower index).
    """

    name = "recent_popularity"

    def __init__(self, n_items: int, n_categories: int = 0, cfg: BaselinesConfig | None = None, seed: int = 0,
                 progress: bool = False) -> None:
        super().__init__(n_items)
        self.cfg = cfg or BaselinesConfig()

    def fit(self, data: TrainingData, cfg: BaselinesConfig | None = None) -> RecentPopularity:
        """Count the train events of the recent window (cfg: BaselinesConfig; default the constructor's)."""
        self.cfg = cfg or self.cfg
        return self.fit_events(data.train.action_item, data.train.timestamp)

    def fit_events(self, items: np.ndarray, timestamps: np.ndarray) -> RecentPopularity:
        """Count `items` ([T] item indices) whose `timestamps` ([T] Unix seconds) fall in the recent window."""
        timestamps = np.asarray(timestamps, dtype=np.int64)
        if len(timestamps) == 0:
            self.counts = np.zeros(self.n_items, dtype=np.float32)
            return self
        start = timestamps.max() - self.cfg.recent_popularity.recent_days * SECONDS_PER_DAY
        self.counts = item_counts(np.asarray(items)[timestamps >= start], self.n_items)
        return self

    def save(self, path: str | Path) -> None:
        from drlrec.models.persistence import save_arrays, write_meta

        save_arrays(path, counts=self.counts)
        write_meta(path, self.name, self.cfg, n_items=self.n_items)

    @classmethod
    def load(cls, path: str | Path) -> RecentPopularity:
        from drlrec.models.persistence import baselines_from_dict, load_arrays, read_meta

        meta = read_meta(path)
        model = cls(int(meta["n_items"]), cfg=baselines_from_dict(meta.get("config")))
        model.counts = load_arrays(path)["counts"].astype(np.float32)
        return model


class _CountBlocks(ScoreBlocks):
    """The same count row for every state, one block of items at a time (into one reused buffer)."""

    exact_targets = True  # the same float32 counts as the blocks

    def __init__(self, counts: np.ndarray, batch: int) -> None:
        self.counts, self.batch, self.n_items = counts, batch, len(counts)
        self._out = np.empty((batch, 0), dtype=np.float32)

    def target_scores(self, items: np.ndarray) -> np.ndarray:
        return self.counts[items].astype(np.float32)

    def block(self, lo: int, hi: int) -> np.ndarray:
        if self._out.shape[1] < hi - lo:
            self._out = np.empty((self.batch, hi - lo), dtype=np.float32)
        out = self._out[:, : hi - lo]
        out[:] = self.counts[None, lo:hi]
        return out  # [B, hi - lo]
