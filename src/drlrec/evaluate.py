"""Metrics and the evaluation protocol shared by every model: full ranking over all items.

A target's rank is 1 + the number of recommendable items ranked above it, where "above" means a higher
score, or an equal score and a lower item index (the same tie rule as `models.base.top_k`, so a
hit@k here is exactly "the target is in recommend(k)"). Padding and unknown items are never ranked;
a target that is itself unknown (a cold item) can't be hit and counts as a miss, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from drlrec.models.base import FIRST_REAL_ITEM, Recommender, StateBatch

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50)
#: rank given to targets that cannot be ranked (padding/unknown items, or excluded)
UNRANKABLE = np.iinfo(np.int64).max


def target_ranks(scores, targets: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """1-based full-ranking rank of each target among all recommendable items: [B] int64.

    `scores` is [B, n_items] (numpy or torch); `exclude` an optional [B, n_items] bool mask of items
    removed from the ranking (e.g. already bought). Unrankable targets get UNRANKABLE.
    """
    import torch

    s = torch.nan_to_num(torch.as_tensor(scores, dtype=torch.float32), nan=-np.inf)  # [B, n_items] copy
    batch, n_items = s.shape
    t = torch.as_tensor(np.asarray(targets, dtype=np.int64))  # [B]
    s[:, :FIRST_REAL_ITEM] = -np.inf
    if exclude is not None:
        s[torch.as_tensor(exclude)] = -np.inf
    rankable = (t >= FIRST_REAL_ITEM) & (t < n_items)
    safe_t = torch.where(rankable, t, torch.zeros_like(t))
    target_score = s.gather(1, safe_t[:, None])  # [B, 1]
    rankable &= torch.isfinite(target_score[:, 0])
    above = (s > target_score).sum(dim=1)
    index = torch.arange(n_items)[None, :]
    tied_below = ((s == target_score) & (index < safe_t[:, None])).sum(dim=1)
    ranks = (1 + above + tied_below).numpy().astype(np.int64)
    return np.where(rankable.numpy(), ranks, UNRANKABLE)


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """HR@k, NDCG@k (one relevant item: 1/log2(rank+1) within the cut) and MRR (no cut) from ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    if len(ranks) == 0:
        return {**{f"hr_at_{k}": float("nan") for k in ks}, **{f"ndcg_at_{k}": float("nan") for k in ks}, "mrr": float("nan")}
    for k in ks:
        hit = ranks <= k
        out[f"hr_at_{k}"] = float(hit.mean())
        out[f"ndcg_at_{k}"] = float(np.where(hit, 1.0 / np.log2(np.minimum(ranks, k) + 1.0), 0.0).mean())
    out["mrr"] = float((1.0 / ranks).mean())  # UNRANKABLE contributes ~0
    return out


class RankedEvents(NamedTuple):
    ranks: np.ndarray  # [E] int64 1-based ranks (UNRANKABLE where the target can't be ranked)


def rank_events(
    model: Recommender,
    states: StateBatch,
    targets: np.ndarray,
    exclude: np.ndarray | None = None,
    batch_size: int = 512,
) -> RankedEvents:
    """Score every state with the model and rank its target, batch by batch (bounded memory)."""
    ranks = np.empty(len(targets), dtype=np.int64)
    for start in range(0, len(targets), batch_size):
        stop = min(start + batch_size, len(targets))
        scores = model.score(states.slice(start, stop))
        mask = None if exclude is None else exclude[start:stop]
        ranks[start:stop] = target_ranks(scores, targets[start:stop], mask)
    return RankedEvents(ranks)
