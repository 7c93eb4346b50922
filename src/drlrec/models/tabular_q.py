"""Tabular Q-learning on a coarse state, the lower bound of the RL models.

State: (popularity bucket of the last interaction's category, behaviour token of the last interaction),
(category_buckets + 1) x 5 states (bucket 0: padding or a category with no train event; token 0: empty
state). Action: the item. The Q table is sparse: one value per (state, item) pair seen in the logs; an
unseen pair is worth 0 (rewards are non-negative, so 0 is also what an untried action is worth).

Learning is synchronous (batch) Q-learning over every logged transition, `sweeps` times:

    V(s)      = max(0, max_a Q(s, a))
    y_i       = r_i + gamma (1 - done_i) V(s'_i)
    Q(s, a)  <- Q(s, a) + alpha (mean of y_i over the transitions with (s_i, a_i) = (s, a) - Q(s, a))

s'_i is the state after the action: the action's own category bucket and behaviour. Each sweep is a few
bincounts over all transitions, never a loop over events.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from drlrec.config import BaselinesConfig
from drlrec.models.base import FIRST_REAL_ITEM, Recommender, StateBatch, TrainingData

#: behaviour tokens 0 (padding) .. 4 (buy)
N_BEHAVIOR_TOKENS = 5


def category_buckets(category_counts: np.ndarray, n_buckets: int) -> np.ndarray:
    """[n_categories] int64 popularity-quantile bucket 1..n_buckets of each category with train events
    (n_buckets = the most popular), 0 for padding, unknown and categories never seen in train."""
    counts = np.asarray(category_counts, dtype=np.int64)
    counts = counts.copy()
    counts[:FIRST_REAL_ITEM] = 0
    seen = np.flatnonzero(counts > 0)
    out = np.zeros(len(counts), dtype=np.int64)
    if len(seen):
        order = seen[np.lexsort((seen, -counts[seen]))]  # most frequent first, ties by index
        rank = np.arange(len(order))
        out[order] = np.ceil((1.0 - rank / len(order)) * n_buckets).astype(np.int64)
    return out


def q_learning(
    state: np.ndarray,
    action: np.ndarray,
    reward: np.ndarray,
    next_state: np.ndarray,
    done: np.ndarray,
    n_states: int,
    n_items: int,
    gamma: float,
    alpha: float,
    sweeps: int,
) -> sp.csr_matrix:
    """Synchronous tabular Q-learning (module doc) on logged transitions; returns Q as [n_states, n_items] CSR.

    state, action, next_state [T] ints; reward [T] float; done [T] bool.
    """
    state = np.asarray(state, dtype=np.int64)
    action = np.asarray(action, dtype=np.int64)
    key = state * n_items + action
    pairs, pair_of = np.unique(key, return_inverse=True)  # sorted by state, then item
    pair_state = pairs // n_items
    visits = np.bincount(pair_of, minlength=len(pairs)).astype(np.float64)
    reward = np.asarray(reward, dtype=np.float64)
    not_done = 1.0 - np.asarray(done, dtype=np.float64)
    next_state = np.asarray(next_state, dtype=np.int64)
    q = np.zeros(len(pairs), dtype=np.float64)
    # pairs are sorted by state: each state's pairs are one run, so max_a Q is one reduceat
    run_start = np.flatnonzero(np.r_[True, pair_state[1:] != pair_state[:-1]]) if len(pairs) else np.zeros(0, np.int64)
    for _ in range(sweeps):
        value = np.zeros(n_states, dtype=np.float64)  # max(0, max_a Q): unseen actions are worth 0
        if len(pairs):
            value[pair_state[run_start]] = np.maximum(np.maximum.reduceat(q, run_start), 0.0)
        target = reward + gamma * not_done * value[next_state]  # [T]
        mean_target = np.bincount(pair_of, weights=target, minlength=len(pairs)) / np.maximum(visits, 1.0)
        q += alpha * (mean_target - q)
    return sp.csr_matrix((q.astype(np.float32), (pair_state, pairs % n_items)), shape=(n_states, n_items))


class TabularQ(Recommender):
    """Greedy policy of a tabular Q-function on (last category bucket, last behaviour); see the module doc."""

    name = "tabular_q"

    def __init__(self, n_items: int, n_categories: int, cfg: BaselinesConfig | None = None, seed: int = 0,
                 progress: bool = False) -> None:
        self.n_items = n_items
        self.n_categories = n_categories
        self.cfg = cfg or BaselinesConfig()
        self.bucket_of_category = np.zeros(n_categories, dtype=np.int64)
        self.q = sp.csr_matrix((self.n_states, n_items), dtype=np.float32)

    @property
    def n_states(self) -> int:
        return (self.cfg.tabular_q.category_buckets + 1) * N_BEHAVIOR_TOKENS

    def state_id(self, category: np.ndarray, behavior_token: np.ndarray) -> np.ndarray:
        """Coarse state of the last interaction: bucket * 5 + behaviour token ([B] each -> [B] int64)."""
        category = np.clip(np.asarray(category, dtype=np.int64), 0, self.n_categories - 1)
        return self.bucket_of_category[category] * N_BEHAVIOR_TOKENS + np.asarray(behavior_token, dtype=np.int64)

    def fit(self, data: TrainingData, cfg: BaselinesConfig | None = None) -> TabularQ:
        """Buckets from the train category counts, then synchronous Q-learning on the train transitions."""
        self.cfg = cfg or self.cfg
        tq = self.cfg.tabular_q
        t = data.train
        last = np.where(t.row - 1 >= t.state_start, t.row - 1, 0)  # [T] row of the latest interaction (0 = none)
        counts = np.bincount(t.action_category.astype(np.int64), minlength=self.n_categories)[: self.n_categories]
        self.bucket_of_category = category_buckets(counts, tq.category_buckets)
        self.q = q_learning(
            state=self.state_id(t.category_idx[last], t.behavior_token[last]),
            action=t.action_item,
            reward=t.reward(tq.reward),
            next_state=self.state_id(t.action_category, t.behavior_token[t.row]),
            done=t.done,
            n_states=self.n_states,
            n_items=self.n_items,
            gamma=tq.gamma,
            alpha=tq.alpha,
            sweeps=tq.sweeps,
        )
        return self

    def score(self, states: StateBatch) -> np.ndarray:
        s = self.state_id(np.asarray(states.category_seq)[:, -1], np.asarray(states.behavior_seq)[:, -1])  # [B]
        return self.q[s].toarray().astype(np.float32, copy=False)  # [B, n_items]

    def save(self, path: str | Path) -> None:
        """Write the sparse Q table and the category buckets into the folder `path`."""
        from drlrec.models.persistence import save_arrays, write_meta

        q = self.q.tocsr()
        save_arrays(path, indptr=q.indptr, indices=q.indices, data=q.data, bucket_of_category=self.bucket_of_category)
        write_meta(path, self.name, self.cfg, n_items=self.n_items, n_categories=self.n_categories)

    @classmethod
    def load(cls, path: str | Path) -> TabularQ:
        from drlrec.models.persistence import baselines_from_dict, load_arrays, read_meta

        meta = read_meta(path)
        model = cls(int(meta["n_items"]), int(meta["n_categories"]), baselines_from_dict(meta.get("config")))
        arrays = load_arrays(path)
        model.q = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=(model.n_states, model.n_items))
        model.bucket_of_category = arrays["bucket_of_category"]
        return model
