"""No-learning "recent items" baseline: recommend the state's own items again, the most recent first.

Taobao-like logs are dominated by re-views and view-then-buy of the same items, so the user's last
interactions are a strong next-item guess. For a state of L positions (left-padded, the latest last):

    score(item) = sum over positions p holding the item of  behavior_weight[b_p] * decay ** age_p
                  + popularity_prior * floor * count(item) / max(count)

with age_p = L - 1 - p (0 = the latest interaction) and floor = the smallest score a state item can
have (min positive behaviour weight * decay ** (L - 1)); popularity_prior < 1, so the popularity term
fills the list but never lifts an item above a state item. Padding and unknown items never score.
`fit` only counts the train items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from drlrec.config import BaselinesConfig, RecentItemsConfig
from drlrec.errors import ConfigError
from drlrec.models.base import FIRST_REAL_ITEM, Recommender, ScoreBlocks, StateBatch, TrainingData
from drlrec.models.popularity import item_counts
from drlrec.schema import BEHAVIORS


def check_recent_items_config(cfg: RecentItemsConfig) -> None:
    """Raise ConfigError (one line) for values the score formula can't use."""
    where = "baselines.recent_items"
    if not 0.0 < cfg.decay <= 1.0:
        raise ConfigError(f"{where}.decay must be in (0, 1], got {cfg.decay}")
    unknown = sorted(set(cfg.behavior_weights) - set(BEHAVIORS))
    if unknown:
        raise ConfigError(f"{where}.behavior_weights: unknown behaviour(s) {', '.join(unknown)} (known: {', '.join(BEHAVIORS)})")
    if any(w < 0 for w in cfg.behavior_weights.values()) or not any(w > 0 for w in behavior_token_weights(cfg)):
        raise ConfigError(f"{where}.behavior_weights must be >= 0 with at least one > 0, got {cfg.behavior_weights}")
    if not 0.0 <= cfg.popularity_prior < 1.0:
        raise ConfigError(f"{where}.popularity_prior must be in [0, 1), got {cfg.popularity_prior}")


def behavior_token_weights(cfg: RecentItemsConfig) -> np.ndarray:
    """[5] float64 weight by behaviour token (0 padding -> 0; 1 pv, 2 cart, 3 fav, 4 buy; missing -> 1)."""
    return np.array([0.0] + [float(cfg.behavior_weights.get(b, 1.0)) for b in BEHAVIORS])


def recency_scores(item_seq: np.ndarray, behavior_seq: np.ndarray, n_items: int, cfg: RecentItemsConfig) -> sp.csr_matrix:
    """[B, n_items] CSR float64: sum of behaviour weight * decay ** age over each state's positions."""
    item_seq = np.asarray(item_seq, dtype=np.int64)  # [B, L]
    behavior_seq = np.asarray(behavior_seq, dtype=np.int64)  # [B, L]
    batch, length = item_seq.shape
    age = np.arange(length - 1, -1, -1, dtype=np.float64)  # [L]
    token_weight = behavior_token_weights(cfg)
    weight = cfg.decay**age[None, :] * token_weight[np.clip(behavior_seq, 0, len(token_weight) - 1)]  # [B, L]
    real = (item_seq >= FIRST_REAL_ITEM) & (item_seq < n_items) & (weight > 0)
    rows = np.broadcast_to(np.arange(batch)[:, None], (batch, length))
    out = sp.csr_matrix((weight[real], (rows[real], item_seq[real])), shape=(batch, n_items))
    out.sum_duplicates()
    return out


class RecentItems(Recommender):
    """Recency-weighted presence of the item in the state, with a popularity tie-breaker (see the module doc)."""

    name = "recent_items"

    def __init__(self, n_items: int, n_categories: int = 0, cfg: BaselinesConfig | None = None, seed: int = 0,
                 progress: bool = False) -> None:
        self.n_items = n_items
        self.n_categories = n_categories
        self.cfg = cfg or BaselinesConfig()
        check_recent_items_config(self.cfg.recent_items)
        self.popularity = np.zeros(n_items, dtype=np.float32)  # [n_items] train counts / max count

    def fit(self, data: TrainingData, cfg: BaselinesConfig | None = None) -> RecentItems:
        """Count the train items (the only thing this model reads from the data)."""
        if cfg is not None:
            check_recent_items_config(cfg.recent_items)
            self.cfg = cfg
        return self.fit_items(data.train.action_item)

    def fit_items(self, items: np.ndarray) -> RecentItems:
        """Set the popularity tie-breaker from an array of train item indices."""
        counts = item_counts(items, self.n_items)
        counts[:FIRST_REAL_ITEM] = 0
        self.popularity = (counts / max(float(counts.max(initial=0.0)), 1.0)).astype(np.float32)
        return self

    def _parts(self, states: StateBatch):
        """(sparse [B, n_items] float32 recency scores, the popularity tie-breaker's float32 factor or None)."""
        cfg = self.cfg.recent_items
        item_seq = np.asarray(states.item_seq)  # [B, L]
        sparse = recency_scores(item_seq, states.behavior_seq, self.n_items, cfg).astype(np.float32).tocsr()
        factor = None
        if cfg.popularity_prior:
            floor = behavior_token_weights(cfg)[1:]
            floor = floor[floor > 0].min() * cfg.decay ** max(item_seq.shape[1] - 1, 0)
            factor = np.float32(cfg.popularity_prior * floor)
        return sparse, factor

    def score(self, states: StateBatch) -> np.ndarray:
        sparse, factor = self._parts(states)
        scores = sparse.toarray()  # [B, n_items]
        if factor is not None:
            scores += factor * self.popularity[None, :]
        return scores

    def score_blocks(self, states: StateBatch) -> ScoreBlocks:
        """The same scores a block of items at a time: [B, block] dense at most, never [B, n_items] (the
        state's items are a sparse matrix), so it ranks a 4.2M-item catalogue in bounded memory."""
        sparse, factor = self._parts(states)
        return _RecencyBlocks(sparse, factor, self.popularity)

    def save(self, path: str | Path) -> None:
        """Write the popularity tie-breaker and the config into the folder `path`."""
        from drlrec.models.persistence import save_arrays, write_meta

        save_arrays(path, popularity=self.popularity)
        write_meta(path, self.name, self.cfg, n_items=self.n_items, n_categories=self.n_categories)

    @classmethod
    def load(cls, path: str | Path) -> RecentItems:
        from drlrec.models.persistence import baselines_from_dict, load_arrays, read_meta

        meta = read_meta(path)
        model = cls(int(meta["n_items"]), int(meta["n_categories"]), baselines_from_dict(meta.get("config")))
        model.popularity = load_arrays(path)["popularity"].astype(np.float32)
        return model


class _RecencyBlocks(ScoreBlocks):
    """RecentItems' scores by item block: the sparse recency part densified per block, plus the tie-breaker.
    The same float32 operations as `score`, element by element, so blocks and target scores equal it bit
    for bit."""

    exact_targets = True

    def __init__(self, sparse, factor, popularity: np.ndarray) -> None:
        self.sparse = sparse.tocsc()  # column slices are cheap
        self.factor = factor
        self.popularity = popularity
        self.n_items = int(sparse.shape[1])

    def block(self, lo: int, hi: int):
        import torch

        dense = self.sparse[:, lo:hi].toarray()
        if self.factor is not None:
            dense += self.factor * self.popularity[None, lo:hi]
        return torch.from_numpy(dense)

    def target_scores(self, items: np.ndarray) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64)
        out = np.asarray(self.sparse.tocsr()[np.arange(len(items)), items], dtype=np.float32).ravel()
        if self.factor is not None:
            out += self.factor * self.popularity[items]
        return out

