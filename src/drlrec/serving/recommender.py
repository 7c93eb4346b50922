"""The model wrapper of the service: raw histories in, raw item ids out.

It turns a user's recent raw interactions into the StateBatch the model was trained on, with the bundle's
own vocabularies, train statistics and featurize settings (features.steps.step_features_of_history,
features.profile.profile_of_history), ranks with the shared `Recommender.recommend`, and maps indices back
to raw ids. The popularity list of the bundle is the cold-start fallback.

The profile and step features are computed over the kept history (serve.history_events events) at the
time of the user's last event; the step position counts every event of the user (History.total).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from drlrec.features.profile import profile_of_history
from drlrec.features.steps import STEP_FEATURES, step_features_of_history
from drlrec.models.base import FIRST_REAL_ITEM, StateBatch
from drlrec.serving.state import History

_POSITION = STEP_FEATURES.index("position")


class Ranked(NamedTuple):
    """A ranked list in raw ids."""

    item_id: np.ndarray  # [k] int64
    category_id: np.ndarray  # [k] int64
    score: np.ndarray  # [k] float32


def state_of_history(history: History, bundle: Any, now: int | None = None) -> StateBatch:
    """A StateBatch of one state from a raw history (oldest first), in the bundle's index space.

    `now`: the decision time the profile is computed at (account age, activity rate). featurize uses the
    time of the event being predicted; a live request does not know it, so the default is the time of
    the user's last event (with the full history and now = the next event's time, the state is exactly
    the one featurize stores for that event: tests/unit/test_features.py)."""
    from drlrec.features.steps import POSITION_SCALE

    seq_len = bundle.seq_len
    cfg = bundle.featurize
    items = np.asarray(history.item_id, dtype=np.int64)
    categories = np.asarray(history.category_id, dtype=np.int64)
    behaviors = np.asarray(history.behavior, dtype=np.int64)
    timestamps = np.asarray(history.timestamp, dtype=np.int64)
    p = len(items)
    item_idx = bundle.item_vocab.encode(items)  # [p] int32 (unknown -> 1)
    category_idx = bundle.category_vocab.encode(categories)
    steps = step_features_of_history(item_idx, category_idx, categories, behaviors, timestamps, bundle.globals.stats, cfg)
    # positions count every event of the user, not only the kept ones
    offset = max(int(history.total) - p, 0)
    steps[:, _POSITION] = np.minimum(
        np.log1p(np.arange(p, dtype=np.float64) + offset) / np.log1p(POSITION_SCALE), 1.0
    )
    if now is None:
        now = int(timestamps[-1]) if p else 0
    profile = profile_of_history(items, categories, behaviors, timestamps, now, cfg)
    n = min(p, seq_len)
    item_seq = np.zeros((1, seq_len), dtype=np.int64)
    category_seq = np.zeros((1, seq_len), dtype=np.int64)
    behavior_seq = np.zeros((1, seq_len), dtype=np.int64)
    step_features = np.zeros((1, seq_len, steps.shape[1]), dtype=np.float32)
    if n:
        item_seq[0, -n:] = item_idx[-n:]
        category_seq[0, -n:] = category_idx[-n:]
        behavior_seq[0, -n:] = behaviors[-n:] + 1
        step_features[0, -n:] = steps[-n:]
    return StateBatch(item_seq, category_seq, behavior_seq, step_features, profile[None, :].astype(np.float32))


class ServingModel:
    """A loaded bundle ready to answer: its version, its popularity ranking and its raw-id tables."""

    def __init__(self, bundle: Any, alias: str, popular_size: int = 5000, retrieval: str = "exact",
                 ann: Any = None) -> None:
        from drlrec.serving.ann import make_retriever

        self.bundle = bundle
        # what ranks: the model itself (exact), or a one-pass scan / faiss index over it (serve.retrieval)
        self.retriever = make_retriever(bundle.model, retrieval, ann)
        self.alias = alias
        self.version = str(bundle.version) if bundle.version is not None else "local"
        n_items = bundle.item_vocab.size
        self.raw_item = bundle.item_vocab.decode(np.arange(n_items))  # [n_items] raw id per index (-1 pad/unknown)
        item_category = np.asarray(bundle.item_category, dtype=np.int64)[:n_items]
        self.raw_category = bundle.category_vocab.decode(item_category)  # [n_items]
        popularity = np.asarray(bundle.popularity, dtype=np.int64)[:n_items].copy()
        popularity[:FIRST_REAL_ITEM] = -1
        order = np.lexsort((np.arange(n_items), -popularity))  # most popular first, ties by index
        order = order[popularity[order] >= 0][:popular_size]
        self.popular = order  # [m] item indices
        self.popular_score = popularity[order].astype(np.float32)

    def recommend(self, history: History, k: int, exclude_raw: list[int]) -> Ranked:
        """The model's top-k for the user's history, excluded raw ids removed."""
        return self.recommend_batch([(history, k, exclude_raw)])[0]

    def recommend_batch(self, requests: list[tuple[History, int, list[int]]]) -> list[Ranked]:
        """Several users at once: one forward pass, so the [n_items, d] item table is read once for all
        of them (scoring one state is bound by memory bandwidth, not arithmetic)."""
        states = [state_of_history(history, self.bundle) for history, _, _ in requests]
        batch = StateBatch(*(np.concatenate(parts) for parts in zip(*states, strict=True)))
        exclude = []
        for _, _, exclude_raw in requests:
            idx = self.bundle.item_vocab.encode(np.asarray(exclude_raw, dtype=np.int64))
            exclude.append(idx[idx >= FIRST_REAL_ITEM])
        k_max = max(k for _, k, _ in requests)
        items, scores = self.retriever.recommend(batch, k_max, exclude)  # [B, k_max]
        out = []
        for row, (_, k, _) in enumerate(requests):
            keep = items[row, :k] >= FIRST_REAL_ITEM
            it, sc = items[row, :k][keep], scores[row, :k][keep]
            out.append(Ranked(self.raw_item[it], self.raw_category[it], sc.astype(np.float32)))
        return out

    def popularity(self, k: int, exclude_raw: list[int]) -> Ranked:
        """The train-period popularity list (cold start), excluded raw ids removed."""
        items = self.popular
        scores = self.popular_score
        if exclude_raw:
            keep = ~np.isin(self.raw_item[items], np.asarray(exclude_raw, dtype=np.int64))
            items, scores = items[keep], scores[keep]
        return Ranked(self.raw_item[items[:k]], self.raw_category[items[:k]], scores[:k])

    def warm_up(self) -> None:
        """One inference on a synthetic history, so the first real request after a swap is not slow."""
        known = self.raw_item[self.popular[:3]] if len(self.popular) else np.array([0])
        history = History(
            known.astype(np.int64), self.raw_category[self.popular[: len(known)]].astype(np.int64),
            np.zeros(len(known), np.int64), np.arange(len(known), dtype=np.int64), len(known),
        )
        self.recommend(history, 10, [])
