"""Full ranking over every item: a target's rank, ranking metrics, block-wise ranking with a running
top-k (memory bounded by the block), and the validation evaluator every trained model early-stops on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from drlrec.models.base import FIRST_REAL_ITEM, FullScores, Recommender, ScoreBlocks, StateBatch

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50)

#: rank given to targets that cannot be ranked (padding/unknown items, or excluded)
UNRANKABLE = np.iinfo(np.int64).max


def target_ranks(scores, targets: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """1-based full-ranking rank of each target among all recommendable items: [B] int64.

    `scores` is [B, n_items] (numpy or torch); `exclude` an optional [B, n_items] bool mask of items
    removed from the ranking (e.g. already bought). Unrankable targets get UNRANKABLE.
    """
    import torch

    s = torch.as_tensor(scores, dtype=torch.float32)  # no copy when the model already returns float32
    if torch.isnan(s).any():
        s = torch.nan_to_num(s, nan=-np.inf)
    elif exclude is not None:
        s = s.clone()  # never write into the caller's scores
    batch, n_items = s.shape
    t = torch.as_tensor(np.asarray(targets, dtype=np.int64))  # [B]
    if exclude is not None:
        s[torch.as_tensor(exclude)] = -np.inf
    rankable = (t >= FIRST_REAL_ITEM) & (t < n_items)
    safe_t = torch.where(rankable, t, torch.full_like(t, FIRST_REAL_ITEM))
    target_score = s.gather(1, safe_t[:, None])  # [B, 1]
    rankable &= torch.isfinite(target_score[:, 0])
    real = s[:, FIRST_REAL_ITEM:]  # a view: padding and unknown never rank
    above = (real > target_score).sum(dim=1)
    equal = real == target_score  # [B, n_items - FIRST_REAL_ITEM], the target itself included
    tied_below = torch.zeros_like(above)
    tied_rows = torch.nonzero(equal.sum(dim=1) > 1).flatten()  # rows with a tie: rare for learned scores
    if len(tied_rows):
        index = torch.arange(FIRST_REAL_ITEM, n_items)[None, :]
        tied_below[tied_rows] = (equal[tied_rows] & (index < safe_t[tied_rows, None])).sum(dim=1)
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


#: Items scored at once per batch of states by rank_events / evaluate_model: a catalogue up to this size is
#: scored in one piece; a larger one in blocks of this many items (memory [batch, ITEM_BLOCK], not
#: [batch, n_items]; 512 states x 262,144 items of float32 is 512 MB).
ITEM_BLOCK = 1 << 18

#: Items within the float-rounding margin of its target's score that rank_blocks keeps per row before it
#: counts that row again in a second pass instead (memory: at most batch x NEAR_CAP kept scores).
NEAR_CAP = 4096


def score_blocks(model: Recommender, states: StateBatch, item_block: int = ITEM_BLOCK) -> ScoreBlocks:
    """The model's scores for `states`, whole when the catalogue fits one block, else block by block."""
    n_items = getattr(model, "n_items", None)
    if item_block <= 0 or (n_items is not None and n_items <= item_block):
        return FullScores(model.score(states))
    return model.score_blocks(states)


def rank_blocks(
    blocks: ScoreBlocks,
    targets: np.ndarray,
    k: int = 0,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
    item_block: int = ITEM_BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact full-ranking ranks of `targets` ([B], the rule of target_ranks) and the top-k lists ([B, k], the
    rule of models.base.top_k, -1 where no finite score is left), from scores handed out `item_block` items
    at a time: memory is one [B, item_block] block, whatever the catalogue.

    One pass over the blocks. A block's items above the target can be counted before the target's own block
    is scored because `blocks.target_scores` gives each target's score first, up to float rounding (another
    summation order): items above that score plus a margin are counted, items within the margin are kept
    with their scores, and once the target's own score is read from its block they are resolved exactly.
    A row whose score falls outside its margin (or a scorer without target_scores) is counted again in a
    second pass. `exclude`: (rows, items) pairs removed from the ranking."""
    import torch

    from drlrec.models.base import exact_top_k

    n_items, batch = blocks.n_items, len(targets)
    step = n_items if item_block <= 0 else max(int(item_block), 1)
    bounds = [(lo, min(lo + step, n_items)) for lo in range(0, n_items, step)]
    target = np.asarray(targets, dtype=np.int64)  # [B]
    k = int(min(k, max(n_items - FIRST_REAL_ITEM, 0)))
    ex_rows, ex_items = exclude if exclude is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def masked(lo: int, hi: int) -> np.ndarray:
        s = torch.as_tensor(blocks.block(lo, hi), dtype=torch.float32)
        inside = (ex_items >= lo) & (ex_items < hi)
        if torch.isnan(s.sum()):  # a NaN anywhere (or +inf and -inf both): one cheap reduction decides
            s = torch.nan_to_num(s, nan=-np.inf)  # a copy
        elif (lo < FIRST_REAL_ITEM or inside.any()) and not blocks.fresh:
            s = s.clone()  # never write into the caller's scores
        if lo < FIRST_REAL_ITEM:
            s[:, : min(FIRST_REAL_ITEM, hi) - lo] = -np.inf  # padding and unknown never rank
        if inside.any():
            s[torch.from_numpy(ex_rows[inside]), torch.from_numpy(ex_items[inside] - lo)] = -np.inf
        return s.numpy()  # counting in numpy: np.count_nonzero is several times faster than torch's bool sum

    first = blocks.target_scores(np.clip(target, 0, max(n_items - 1, 0)))
    single = first is not None and len(bounds) > 1 or len(bounds) == 1
    exact = bool(getattr(blocks, "exact_targets", False))  # first == the block's value: no margin needed
    if first is None:
        first = np.zeros(batch, dtype=np.float32)
    first = np.nan_to_num(np.asarray(first, dtype=np.float32), nan=-np.inf)
    margin = np.zeros_like(first) if exact else np.where(np.isfinite(first), 1e-4 * (1.0 + np.abs(first)), 0.0).astype(np.float32)
    upper, lower = (first + margin)[:, None], (first - margin)[:, None]  # [B, 1]

    target_score = np.full(batch, -np.inf, dtype=np.float32)
    top_items = np.zeros((batch, 0), dtype=np.int64)
    top_scores = np.zeros((batch, 0), dtype=np.float32)
    above = np.zeros(batch, dtype=np.int64)
    near_rows, near_items, near_scores = [], [], []
    near_count = np.zeros(batch, dtype=np.int64)  # items kept within the margin, per row (at most NEAR_CAP)
    overflow = np.zeros(batch, dtype=bool)  # rows past NEAR_CAP: counted again in the second pass
    flags = np.empty((batch, max(min(step, n_items), 1)), dtype=bool)  # one reused [B, C] comparison buffer

    def count(op, s: np.ndarray, threshold: np.ndarray) -> np.ndarray:
        out = flags[:, : s.shape[1]]
        return np.count_nonzero(op(s, threshold, out=out), axis=1)

    for lo, hi in bounds:
        s = masked(lo, hi)  # [B, C]
        here = np.flatnonzero((target >= lo) & (target < hi))
        target_score[here] = s[here, target[here] - lo]
        if k:
            rows = np.arange(batch)
            if top_items.shape[1] == k:  # full lists: only rows with a score above their k-th can change
                rows = np.flatnonzero(count(np.greater, s, top_scores[:, -1:]))  # a later item loses a tie
            if len(rows):
                items, scores = exact_top_k(torch.from_numpy(s[rows] if len(rows) < batch else s), min(k, hi - lo))
                items = np.concatenate([top_items[rows], items + lo], axis=1)
                scores = np.concatenate([top_scores[rows], scores], axis=1)
                order = np.lexsort((items, -scores), axis=1)[:, :k]  # score desc, then index asc
                items, scores = np.take_along_axis(items, order, axis=1), np.take_along_axis(scores, order, axis=1)
                if top_items.shape[1] < items.shape[1]:
                    top_items, top_scores = items, scores
                else:
                    top_items[rows], top_scores[rows] = items, scores
        if not single:
            continue
        if len(bounds) == 1 or exact:  # the target's score is known: count above it and the ties below it
            known = target_score if len(bounds) == 1 else first  # exact: `first` is the block's own value
            threshold = known[:, None]
            above += count(np.greater, s, threshold)
            own = (target >= lo) & (target < hi)  # the target's own cell is one of the equal scores
            tied = np.flatnonzero((count(np.equal, s, threshold) > own) & np.isfinite(known))
            if len(tied):  # rare for learned scores: another item has exactly the target's score
                column = np.arange(lo, hi)[None, :]
                above[tied] += np.count_nonzero((s[tied] == threshold[tied]) & (column < target[tied, None]), axis=1)
            continue
        over = count(np.greater, s, upper)
        above += over
        rows = np.flatnonzero(count(np.greater_equal, s, lower) > over)  # rows with items inside the margin
        if not len(rows):
            continue
        rows = rows[~overflow[rows]]
        sub = s[rows]
        inside = (sub >= lower[rows]) & (sub <= upper[rows])
        total = near_count[rows] + np.count_nonzero(inside, axis=1)
        full = total > NEAR_CAP  # too many near scores to keep: count this row again instead (memory bound)
        overflow[rows[full]], near_count[rows] = True, total
        r, c = np.nonzero(inside & ~full[:, None])
        near_rows.append(rows[r])
        near_items.append(c + lo)
        near_scores.append(sub[r, c])
    rankable = (target >= FIRST_REAL_ITEM) & (target < n_items) & np.isfinite(target_score)
    if single:
        rows, items, scores = (np.concatenate(x) if x else np.zeros(0, d) for x, d in
                               ((near_rows, np.int64), (near_items, np.int64), (near_scores, np.float32)))
        exact_score = target_score[rows]
        counted = (scores > exact_score) | ((scores == exact_score) & (items < target[rows]))  # the target: neither
        above += np.bincount(rows[counted], minlength=batch)
        outside = (target_score > upper[:, 0]) | (target_score < lower[:, 0]) | overflow
        again = np.flatnonzero(rankable & outside) if len(bounds) > 1 else np.zeros(0, np.int64)  # one block: exact
    else:
        again = np.flatnonzero(rankable)
    if len(again):  # count these rows again against their exact scores (no target_scores, or past the margin)
        above[again] = 0
        threshold = target_score[again, None]
        for lo, hi in bounds:
            s = masked(lo, hi)[again]
            above[again] += np.count_nonzero(s > threshold, axis=1)
            column = np.arange(lo, hi)[None, :]
            above[again] += np.count_nonzero((s == threshold) & (column < target[again, None]), axis=1)
    ranks = np.where(rankable, 1 + above, UNRANKABLE).astype(np.int64)
    lists = np.where(np.isfinite(top_scores), top_items, -1).astype(np.int64)
    return ranks, lists


def exclusion_pairs(mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, items) of a [B, n_items] boolean exclusion mask."""
    if mask is None:
        return None
    rows, items = np.nonzero(mask)
    return rows.astype(np.int64), items.astype(np.int64)


class RankedEvents(NamedTuple):
    ranks: np.ndarray  # [E] int64 1-based ranks (UNRANKABLE where the target can't be ranked)
    lists: np.ndarray  # [E, list_k] int64 top-list_k items (-1 where no finite score is left); [E, 0] without


def rank_events(
    model: Recommender,
    states: StateBatch,
    targets: np.ndarray,
    exclude: np.ndarray | None = None,
    batch_size: int = 512,
    item_block: int = ITEM_BLOCK,
    list_k: int = 0,
    progress: bool = False,
) -> RankedEvents:
    """Score every state with the model and rank its target, batch by batch and block by block of items
    (memory [batch_size, item_block] at most), with the top-`list_k` list of each state as evaluate makes."""
    from tqdm import tqdm

    ranks = np.empty(len(targets), dtype=np.int64)
    lists = np.full((len(targets), max(int(list_k), 0)), -1, dtype=np.int64)
    with tqdm(total=len(targets), desc=f"rank {getattr(model, 'name', 'model')}", unit="events", leave=False,
              disable=None if progress else True) as bar:
        for start in range(0, len(targets), batch_size):
            stop = min(start + batch_size, len(targets))
            blocks = score_blocks(model, states.slice(start, stop), item_block)
            mask = None if exclude is None else exclusion_pairs(exclude[start:stop])
            ranks[start:stop], items = rank_blocks(blocks, targets[start:stop], list_k, mask, item_block)
            lists[start:stop, : items.shape[1]] = items
            bar.update(stop - start)
    return RankedEvents(ranks, lists)


def validation_evaluator(
    valid, max_events: int, seed: int, ks: tuple[int, ...] = (10, 20)
) -> tuple[Callable[[Recommender], dict[str, float]], np.ndarray]:
    """Next-item full-ranking HR/NDCG on a fixed, seeded subset of validation transitions: what every
    model's early stopping and `drlrec tune` read (`valid/ndcg_at_10`, ...). Returns (evaluate, index)."""
    from drlrec.rl.logged import state_batch

    n = valid.num_transitions
    rng = np.random.default_rng(seed + 7919)
    index = np.sort(rng.choice(n, size=min(n, max_events), replace=False)) if n else np.zeros(0, np.int64)
    states = state_batch(valid, index)
    targets = valid.action_item[index].astype(np.int64)

    def evaluate(model: Recommender) -> dict[str, float]:
        metrics = ranking_metrics(rank_events(model, states, targets).ranks, ks)
        return {f"valid/{k}": v for k, v in metrics.items()}

    return evaluate, index
