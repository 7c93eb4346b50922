"""V-SKNN session kNN: score items by the past train sessions most similar to the state, recent items weighted up.

Vector-multiplication session-based kNN (Ludewig & Jannach, "Evaluation of session-based recommendation
algorithms", UMUAI 2018; Ludewig, Mauro, Latifi & Jannach, UMUAI 2021; the session-rec `VMContextKNN`).
A past session is a binary vector over items (one user's session_index in the train transitions). The
state (the last L interactions) is a real-valued vector: position i = 1..n of its n non-padding
positions (oldest first) gets `weighting`(i, n), e.g. div i / n (the latest 1), linear 1 - 0.1 (n - i);
a repeated item keeps the weight of its latest position, as in session-rec's position map. Then

    sim(state, s)  = sum of the weights of the state's items that occur in s          (dot)
                     / (|weights|_2 * sqrt(|s|))                                        (cosine only)
    candidates     = the `sample_size` most recent train sessions sharing an item with the state
    neighbours     = the `k` candidates with the highest sim (ties: the more recent session)
    score(item)    = sum over neighbours s holding the item of
                     sim(state, s) * score_weighting(step_s) * (1 + idf_weighting * idf(item))

where step_s = 1 + the age of the most recent state item that s contains (session-rec's
`weighting_score`; `same` drops it) and idf = log(train sessions / sessions holding the item). The
state's own items score like any other item (session-rec's `remind`). session-rec divides dot by the
number of distinct state items and normalizes scores by their maximum: per-row constants that change
no ranking, left out. A tiny popularity term (`popularity_prior`, a fraction of the row's smallest
positive kNN score) only orders the items no neighbour holds.

Vectorized with scipy.sparse, a batch of B states at a time: weights [B, n_items] @ incidence
[n_items, n_sessions] -> similarities [B, n_sessions]; keep the most recent candidates and the top k
per row; then [B, n_sessions] @ [n_sessions, n_items] -> scores. Sessions are numbered by their last
timestamp, so "most recent" is "highest column"; each item's session list is cut to its `sample_size` most
recent sessions first (exact, see `recent_item_sessions`), so a state costs at most L x sample_size entries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from drlrec.config import BaselinesConfig, SessionKNNConfig
from drlrec.errors import ConfigError
from drlrec.models.base import FIRST_REAL_ITEM, Recommender, StateBatch, TrainingData
from drlrec.models.item_knn import top_per_row

#: states scored per sparse product (bounds the [B, n_sessions] similarity matrix)
SCORE_CHUNK = 256


def check_session_knn_config(cfg: SessionKNNConfig) -> None:
    """Raise ConfigError (one line) for values V-SKNN can't use."""
    where = "baselines.session_knn"
    if cfg.k < 1:
        raise ConfigError(f"{where}.k must be >= 1, got {cfg.k}")
    if cfg.sample_size < 0:
        raise ConfigError(f"{where}.sample_size must be >= 0 (0 = all candidate sessions), got {cfg.sample_size}")
    if cfg.idf_weighting < 0:
        raise ConfigError(f"{where}.idf_weighting must be >= 0, got {cfg.idf_weighting}")
    if not 0.0 <= cfg.popularity_prior < 1.0:
        raise ConfigError(f"{where}.popularity_prior must be in [0, 1), got {cfg.popularity_prior}")


def position_weights(n_positions: np.ndarray, length: int, weighting: str) -> np.ndarray:
    """[B, length] weight of each state position, left-padded states with `n_positions` [B] real positions.

    Position i = 1..n counts from the oldest real position; padding positions (i < 1) get 0."""
    n = np.asarray(n_positions, dtype=np.float64)[:, None]  # [B, 1]
    i = np.arange(1, length + 1, dtype=np.float64)[None, :] - (length - n)  # [B, L], 1..n on real positions
    safe_n = np.maximum(n, 1.0)
    if weighting == "linear":
        w = np.maximum(1.0 - 0.1 * (n - i), 0.0)
    elif weighting == "div":
        w = i / safe_n
    elif weighting == "quadratic":
        w = (i / safe_n) ** 2
    elif weighting == "log":
        w = 1.0 / np.log10(np.maximum(n - i, 0.0) + 1.7)
    elif weighting == "same":
        w = np.ones_like(i)
    else:
        raise ConfigError(f"baselines.session_knn.weighting: unknown {weighting!r}")
    return np.where(i >= 1, w, 0.0)


def step_weights(step: np.ndarray, score_weighting: str) -> np.ndarray:
    """Factor on a neighbour's similarity by `step` (1 = it holds the latest state item): session-rec's
    `weighting_score` functions."""
    s = np.asarray(step, dtype=np.float64)
    if score_weighting == "same":
        return np.ones_like(s)
    if score_weighting == "div":
        return 1.0 / s
    if score_weighting == "linear":
        return np.maximum(1.0 - 0.1 * s, 0.0)
    if score_weighting == "quadratic":
        return 1.0 / (s * s)
    if score_weighting == "log":
        return 1.0 / np.log10(s + 1.7)
    raise ConfigError(f"baselines.session_knn.score_weighting: unknown {score_weighting!r}")


def state_vectors(item_seq: np.ndarray, n_items: int, weighting: str) -> sp.csr_matrix:
    """[B, n_items] CSR: each state's items weighted by position; a repeated item keeps its latest weight.

    Padding never enters; unknown items and items outside the vocabulary are dropped (no train session
    holds them), but they still count as positions of the state, as clicks do in session-rec."""
    item_seq = np.asarray(item_seq, dtype=np.int64)  # [B, L]
    batch, length = item_seq.shape
    weight = position_weights((item_seq > 0).sum(axis=1), length, weighting)  # [B, L]
    keep = (item_seq >= FIRST_REAL_ITEM) & (item_seq < n_items) & (weight > 0)
    rows = np.broadcast_to(np.arange(batch)[:, None], (batch, length))[keep]
    cols, vals = item_seq[keep], weight[keep]
    pos = np.broadcast_to(np.arange(length)[None, :], (batch, length))[keep]
    # one entry per (row, item): the latest position wins (lexsort: row, item, then position ascending)
    order = np.lexsort((pos, cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    last = np.ones(len(rows), dtype=bool)
    last[:-1] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    return sp.csr_matrix((vals[last], (rows[last], cols[last])), shape=(batch, n_items))


def train_sessions(items: np.ndarray, session_key: np.ndarray, timestamps: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Binary session-item incidence [n_sessions, n_items] CSR float32, sessions ordered by their last timestamp.

    `items`, `session_key`, `timestamps` are [T] in (session, time) order; `session_key` is constant within
    a session (consecutive rows). Ties in the last timestamp keep the order of first appearance."""
    items = np.asarray(items, dtype=np.int64)
    session_key = np.asarray(session_key)
    timestamps = np.asarray(timestamps, dtype=np.int64)
    if len(items) == 0:
        return sp.csr_matrix((0, n_items), dtype=np.float32)
    start = np.ones(len(items), dtype=bool)
    start[1:] = session_key[1:] != session_key[:-1]
    session = np.cumsum(start) - 1  # [T] 0-based run id
    n_sessions = int(session[-1]) + 1
    last_time = np.full(n_sessions, np.iinfo(np.int64).min)
    np.maximum.at(last_time, session, timestamps)
    rank = np.empty(n_sessions, dtype=np.int64)
    rank[np.argsort(last_time, kind="stable")] = np.arange(n_sessions)  # column = recency rank
    real = (items >= FIRST_REAL_ITEM) & (items < n_items)
    incidence = sp.csr_matrix(
        (np.ones(int(real.sum()), dtype=np.float32), (rank[session[real]], items[real])), shape=(n_sessions, n_items)
    )
    incidence.sum_duplicates()
    incidence.data[:] = 1.0  # binary: a session holds an item or not
    return incidence


def keep_last_per_row(matrix: sp.csr_matrix, m: int) -> sp.csr_matrix:
    """Keep the `m` entries with the highest column of every row of a CSR matrix (the most recent sessions)."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    counts = np.diff(matrix.indptr)
    if m <= 0 or counts.max(initial=0) <= m:
        return matrix
    row_of = np.repeat(np.arange(matrix.shape[0]), counts)
    from_end = matrix.indptr[row_of + 1] - np.arange(len(row_of))  # 1 = the row's highest column
    keep = from_end <= m
    return sp.csr_matrix((matrix.data[keep], (row_of[keep], matrix.indices[keep])), shape=matrix.shape)


class SessionKNN(Recommender):
    """V-SKNN behind the shared interface (see the module doc)."""

    name = "session_knn"

    def __init__(self, n_items: int, n_categories: int = 0, cfg: BaselinesConfig | None = None, seed: int = 0,
                 progress: bool = False) -> None:
        self.n_items = n_items
        self.n_categories = n_categories
        self.cfg = cfg or BaselinesConfig()
        check_session_knn_config(self.cfg.session_knn)
        self.popularity = np.zeros(n_items, dtype=np.float32)  # [n_items] train counts / max count
        self.set_incidence(sp.csr_matrix((0, n_items), dtype=np.float32))

    def set_incidence(self, incidence: sp.csr_matrix) -> None:
        """Store the [n_sessions, n_items] binary incidence and the lookups that scoring reuses."""
        self.incidence = incidence.tocsr()
        self.incidence.sort_indices()
        self.item_sessions = self.incidence.T.tocsr()  # [n_items, n_sessions]
        self._recent_item_sessions: dict[int, sp.csr_matrix] = {}  # by sample_size
        self.session_len = np.diff(self.incidence.indptr).astype(np.float64)  # [n_sessions] distinct items
        # sorted (session, item) keys: rows ascending, indices sorted within a row
        session_of = np.repeat(np.arange(self.incidence.shape[0], dtype=np.int64), np.diff(self.incidence.indptr))
        self.incidence_keys = session_of * self.n_items + self.incidence.indices

    @property
    def n_sessions(self) -> int:
        return int(self.incidence.shape[0])

    def fit(self, data: TrainingData, cfg: BaselinesConfig | None = None) -> SessionKNN:
        """Index the train sessions (a session: one user's session_index; rows are in (user, time) order)."""
        if cfg is not None:
            check_session_knn_config(cfg.session_knn)
            self.cfg = cfg
        train = data.train
        new_session = np.ones(train.num_transitions, dtype=bool)
        new_session[1:] = (train.user_id[1:] != train.user_id[:-1]) | (train.session_index[1:] != train.session_index[:-1])
        return self.fit_events(train.action_item, np.cumsum(new_session), train.timestamp)

    def fit_events(self, items: np.ndarray, session_key: np.ndarray, timestamps: np.ndarray) -> SessionKNN:
        """Fit from a flat event sequence: `items`, `session_key` (constant within a session) and `timestamps`, [T] each."""
        self.set_incidence(train_sessions(items, session_key, timestamps, self.n_items))
        counts = np.bincount(np.asarray(items, dtype=np.int64), minlength=self.n_items)[: self.n_items].astype(np.float64)
        counts[:FIRST_REAL_ITEM] = 0
        self.popularity = (counts / max(counts.max(initial=0.0), 1.0)).astype(np.float32)
        return self

    def idf(self) -> np.ndarray:
        """[n_items] log(train sessions / sessions holding the item); 0 for items no session holds."""
        holding = np.diff(self.item_sessions.indptr).astype(np.float64)  # [n_items]
        return np.where(holding > 0, np.log(max(self.n_sessions, 1) / np.maximum(holding, 1.0)), 0.0)

    def recent_item_sessions(self, sample_size: int) -> sp.csr_matrix:
        """[n_items, n_sessions]: each item's `sample_size` most recent sessions (all when 0).

        Exact for the sampling: a session among the `sample_size` most recent of the union of the state
        items' sessions has fewer than `sample_size` more recent sessions in that union, so it is among the
        most recent `sample_size` of every state item it holds. It bounds the similarity product at
        L x sample_size entries per state, however popular the items."""
        if not sample_size:
            return self.item_sessions
        if sample_size not in self._recent_item_sessions:
            self._recent_item_sessions[sample_size] = keep_last_per_row(self.item_sessions, sample_size)
        return self._recent_item_sessions[sample_size]

    def neighbours(self, states: StateBatch) -> sp.csr_matrix:
        """[B, n_sessions] CSR: each state's k neighbour sessions with sim * score_weighting(step)."""
        cfg = self.cfg.session_knn
        item_seq = np.asarray(states.item_seq, dtype=np.int64)  # [B, L]
        weights = state_vectors(item_seq, self.n_items, cfg.weighting)  # [B, n_items]
        sim = (weights @ self.recent_item_sessions(cfg.sample_size)).tocsr()  # [B, n_sessions]
        sim.eliminate_zeros()
        if cfg.sample_size:
            sim = keep_last_per_row(sim, cfg.sample_size)
        if cfg.normalization == "cosine":
            state_norm = np.sqrt(np.asarray(weights.multiply(weights).sum(axis=1)).ravel())  # [B]
            row_of = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
            sim.data = sim.data / (state_norm[row_of] * np.sqrt(self.session_len[sim.indices]))
        # top k, ties toward the more recent session: top_per_row breaks ties toward the lower column
        n_sessions = sim.shape[1]
        flipped = sp.csr_matrix((sim.data, n_sessions - 1 - sim.indices, sim.indptr), shape=sim.shape)
        top = top_per_row(flipped, cfg.k)
        top = sp.csr_matrix((top.data, n_sessions - 1 - top.indices, top.indptr), shape=sim.shape)
        if cfg.score_weighting != "same" and top.nnz:
            top.data = top.data * step_weights(self.latest_shared_step(item_seq, top), cfg.score_weighting)
        return top

    def latest_shared_step(self, item_seq: np.ndarray, pairs: sp.csr_matrix) -> np.ndarray:
        """For each stored (state, session) entry of `pairs`: 1 + the age of the most recent state item the
        session holds (L + 1 when none does). Vectorized: a sorted (session, item) key lookup per position."""
        length = item_seq.shape[1]
        inc_keys = self.incidence_keys
        pair_row = np.repeat(np.arange(pairs.shape[0]), np.diff(pairs.indptr))  # [P]
        pair_session = pairs.indices.astype(np.int64)  # [P]
        step = np.full(len(pair_row), length + 1, dtype=np.int64)
        for age in range(length - 1, -1, -1):  # oldest first, so the latest shared position wins
            item = item_seq[pair_row, length - 1 - age]  # [P]
            key = pair_session * self.n_items + np.clip(item, 0, self.n_items - 1)
            at = np.minimum(np.searchsorted(inc_keys, key), len(inc_keys) - 1)
            held = (inc_keys[at] == key) & (item >= FIRST_REAL_ITEM) & (item < self.n_items)
            step[held] = age + 1
        return step

    def score(self, states: StateBatch) -> np.ndarray:
        cfg = self.cfg.session_knn
        out = np.zeros((states.batch_size, self.n_items), dtype=np.float32)  # [B, n_items]
        idf_factor = 1.0 + cfg.idf_weighting * self.idf() if cfg.idf_weighting else None
        for start in range(0, states.batch_size, SCORE_CHUNK):
            stop = min(start + SCORE_CHUNK, states.batch_size)
            knn = (self.neighbours(states.slice(start, stop)) @ self.incidence).tocsr()  # [b, n_items]
            knn.eliminate_zeros()
            if idf_factor is not None:
                knn.data = knn.data * idf_factor[knn.indices]
            knn = knn.astype(np.float32)
            block = out[start:stop]  # a view: rows of a C-contiguous array
            knn.toarray(out=block)
            if cfg.popularity_prior:
                counts = np.diff(knn.indptr)
                floor = np.ones(stop - start, dtype=np.float32)  # rows without neighbours: popularity alone
                if knn.nnz:
                    nonempty = counts > 0
                    floor[nonempty] = np.minimum.reduceat(knn.data, knn.indptr[:-1][nonempty])
                block += (np.float32(cfg.popularity_prior) * floor)[:, None] * self.popularity[None, :]
        return out

    def save(self, path: str | Path) -> None:
        """Write the session-item incidence, popularity and config into the folder `path`."""
        from drlrec.models.persistence import save_arrays, write_meta

        inc = self.incidence.tocsr()
        save_arrays(path, indptr=inc.indptr, indices=inc.indices, popularity=self.popularity,
                    n_sessions=np.array(self.n_sessions))
        write_meta(path, self.name, self.cfg, n_items=self.n_items, n_categories=self.n_categories)

    @classmethod
    def load(cls, path: str | Path) -> SessionKNN:
        from drlrec.models.persistence import baselines_from_dict, load_arrays, read_meta

        meta = read_meta(path)
        n_items = int(meta["n_items"])
        model = cls(n_items, int(meta["n_categories"]), baselines_from_dict(meta.get("config")))
        arrays = load_arrays(path)
        indices = arrays["indices"]
        model.set_incidence(sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, arrays["indptr"]),
                                          shape=(int(arrays["n_sessions"]), n_items)))
        model.popularity = arrays["popularity"].astype(np.float32)
        return model
