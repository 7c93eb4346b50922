"""Session-based item-to-item kNN: cosine-normalized co-occurrence within train sessions, top-M neighbours.

sim(a, b) = C(a, b) / sqrt(n_a n_b), where C sums 1/d over every pair of events of one session at most
`window` positions apart (d = their distance) and n_a is the train event count of a. Only the top
`neighbours` entries of each row are kept, so the table is a sparse [n_items, n_items] CSR of at most
n_items x neighbours entries. A state scores items by

    score = w @ sim + self_weight * w + popularity_prior * popularity / max(popularity)

where w [B, n_items] is the sparse recency-weighted bag of the state's items (recency_decay ** age), so a
whole batch is one sparse product. Padding and unknown items never enter the counts or the state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from drlrec.config import BaselinesConfig
from drlrec.models.base import FIRST_REAL_ITEM, Recommender, StateBatch, TrainingData


def cooccurrence_similarity(
    items: np.ndarray, session_key: np.ndarray, n_items: int, window: int, neighbours: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    """(top-`neighbours` cosine similarity [n_items, n_items] CSR float32, item counts [n_items]).

    `items` [T] item indices in (session, time) order; `session_key` [T] ids equal exactly within a
    session (consecutive rows). Vectorized: one pass per distance d = 1..window, never per event.
    """
    items = np.asarray(items, dtype=np.int64)
    session_key = np.asarray(session_key)
    real = items >= FIRST_REAL_ITEM
    counts = np.bincount(items[real], minlength=n_items)[:n_items].astype(np.float64)
    rows, cols, vals = [], [], []
    for d in range(1, window + 1):
        a, b = items[:-d], items[d:]
        ok = (session_key[:-d] == session_key[d:]) & (a >= FIRST_REAL_ITEM) & (b >= FIRST_REAL_ITEM) & (a != b)
        rows += [a[ok], b[ok]]  # symmetric: both directions
        cols += [b[ok], a[ok]]
        vals.append(np.full(2 * int(ok.sum()), 1.0 / d))
    if rows:
        r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    else:
        r = c = np.zeros(0, np.int64)
        v = np.zeros(0)
    co = sp.coo_matrix((v, (r, c)), shape=(n_items, n_items)).tocsr()  # duplicates summed
    co.sum_duplicates()
    norm = np.sqrt(np.maximum(counts, 1.0))
    row_of = np.repeat(np.arange(n_items), np.diff(co.indptr))
    co.data = co.data / (norm[row_of] * norm[co.indices])
    return top_per_row(co, neighbours).astype(np.float32), counts


def top_per_row(matrix: sp.csr_matrix, m: int) -> sp.csr_matrix:
    """Keep the `m` largest entries of every row of a CSR matrix (ties: lower column first), vectorized."""
    matrix = matrix.tocsr()
    n_rows = matrix.shape[0]
    row_of = np.repeat(np.arange(n_rows), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, row_of))  # row asc, value desc, column asc
    rank = np.arange(len(order)) - matrix.indptr[row_of[order]]
    keep = order[rank < m]
    return sp.csr_matrix((matrix.data[keep], (row_of[keep], matrix.indices[keep])), shape=matrix.shape)


def state_weights(item_seq: np.ndarray, n_items: int, decay: float) -> sp.csr_matrix:
    """[B, n_items] CSR: each state's items weighted decay ** age (age 0 = the latest), repeats summed."""
    batch, length = item_seq.shape
    age = np.arange(length - 1, -1, -1, dtype=np.float64)  # [L]
    weight = np.broadcast_to(decay**age, (batch, length))
    real = item_seq >= FIRST_REAL_ITEM
    rows = np.broadcast_to(np.arange(batch)[:, None], (batch, length))
    out = sp.csr_matrix((weight[real], (rows[real], item_seq[real].astype(np.int64))), shape=(batch, n_items))
    out.sum_duplicates()
    return out


class ItemKNN(Recommender):
    """Session co-occurrence item kNN behind the shared interface (see the module doc)."""

    name = "item_knn"

    def __init__(self, n_items: int, n_categories: int = 0, cfg: BaselinesConfig | None = None, seed: int = 0,
                 progress: bool = False) -> None:
        self.n_items = n_items
        self.n_categories = n_categories
        self.cfg = cfg or BaselinesConfig()
        self.similarity = sp.csr_matrix((n_items, n_items), dtype=np.float32)
        self.popularity = np.zeros(n_items, dtype=np.float32)

    def fit(self, data: TrainingData, cfg: BaselinesConfig | None = None) -> ItemKNN:
        """Co-occurrence within the train sessions (a session: one user's session_index)."""
        self.cfg = cfg or self.cfg
        train = data.train
        # (user, session) -> one key; rows are in (user, time) order, so sessions are consecutive runs
        new_session = np.ones(train.num_transitions, dtype=bool)
        new_session[1:] = (train.user_id[1:] != train.user_id[:-1]) | (train.session_index[1:] != train.session_index[:-1])
        return self.fit_events(train.action_item, np.cumsum(new_session))

    def fit_events(self, items: np.ndarray, session_key: np.ndarray) -> ItemKNN:
        """Fit from a flat event sequence: `items` [T] and a `session_key` [T] constant within each session."""
        knn = self.cfg.item_knn
        self.similarity, counts = cooccurrence_similarity(items, session_key, self.n_items, knn.window, knn.neighbours)
        self.popularity = (counts / max(counts.max(initial=0.0), 1.0)).astype(np.float32)
        return self

    def score(self, states: StateBatch) -> np.ndarray:
        knn = self.cfg.item_knn
        weights = state_weights(np.asarray(states.item_seq), self.n_items, knn.recency_decay).astype(np.float32)
        scores = (weights @ self.similarity).toarray()  # [B, n_items]
        if knn.self_weight:
            scores += knn.self_weight * weights.toarray()
        if knn.popularity_prior:
            scores += knn.popularity_prior * self.popularity[None, :]
        return scores.astype(np.float32, copy=False)

    def save(self, path: str | Path) -> None:
        """Write the sparse similarity table and popularity into the folder `path`."""
        from drlrec.models.persistence import save_arrays, write_meta

        s = self.similarity.tocsr()
        save_arrays(path, indptr=s.indptr, indices=s.indices, data=s.data, popularity=self.popularity)
        write_meta(path, self.name, self.cfg, n_items=self.n_items, n_categories=self.n_categories)

    @classmethod
    def load(cls, path: str | Path) -> ItemKNN:
        from drlrec.models.persistence import baselines_from_dict, load_arrays, read_meta

        meta = read_meta(path)
        n_items = int(meta["n_items"])
        model = cls(n_items, int(meta["n_categories"]), baselines_from_dict(meta.get("config")))
        arrays = load_arrays(path)
        model.similarity = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n_items, n_items))
        model.popularity = arrays["popularity"]
        return model
