"""Metrics and the evaluation protocol shared by every model: full ranking over all items.

A target's rank is 1 + the number of recommendable items ranked above it, where "above" means a higher
score, or an equal score and a lower item index (the same tie rule as `models.base.top_k`, so a
hit@k here is exactly "the target is in recommend(k)"). Padding and unknown items are never ranked;
a target that is itself unknown (a cold item) can't be hit and counts as a miss, never dropped.
"""

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


# ------------------------------------------------------------------------------------------ the protocol

PROTOCOL = (
    "Temporal split (train days 1-7, validation day 8, test day 9 by default; featurize.* in params.yaml). "
    "Every model is fitted on the train period only. Each test event is predicted from the user's history up to "
    "that event (the last N interactions, train-period history included). Two targets: the next interaction "
    "(any behaviour) and the next purchase (the test events that are buys). Full ranking over every item of the "
    "vocabulary except padding and unknown: no sampled negatives, no candidate lists. A target that is cold "
    "(unknown to the vocabulary) counts as a miss. Ties rank the lower item index first. HR@k, NDCG@k and MRR "
    "per event; Precision/Recall/F1/MAP@k per user from one list at the user's first test event against the set of "
    "items the user bought during the test period; catalogue coverage, intra-list category diversity and novelty "
    "(mean -log2 train popularity) of the top-{list_k} lists. Each event's target is one of: in_state (in the "
    "last-N state), in_history (a known item the user touched earlier, in any split, but not in the state), "
    "known_new (a known item new to the user) or cold (unknown to the vocabulary); HR/NDCG@10 are also reported "
    "within each type, and the reachable ceiling is the share of targets that are not cold. 95% CIs: percentile "
    "bootstrap over users (a resampled user brings all of their events: a cluster bootstrap of the event mean, "
    "for the per-event, per-user and per-list metrics; lists for coverage), {bootstrap} resamples, seed {seed}; a "
    "difference between two models is bootstrapped paired (the same resampled users for both)."
)


class Interval(NamedTuple):
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}


def bootstrap_means(
    values: np.ndarray, n_boot: int, ci: float = 0.95, seed: int = 0, max_cells: int = 20_000_000
) -> list[Interval]:
    """Mean and percentile-bootstrap CI of each column of `values` ([n] or [n, m]), resampling rows.

    Vectorized: each resample is a multinomial count vector, so a chunk of resamples is one matrix
    product [c, n] @ [n, m]; chunks keep the count matrix under `max_cells` cells."""
    v = np.asarray(values, dtype=np.float64)
    v = v[:, None] if v.ndim == 1 else v
    n, m = v.shape
    if n == 0:
        return [Interval(float("nan"), float("nan"), float("nan"))] * m
    means = v.mean(axis=0)
    if n_boot <= 0 or n == 1:
        return [Interval(float(x), float(x), float(x)) for x in means]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, max_cells // n))
    boots = []
    for start in range(0, n_boot, chunk):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_boot - start))  # [c, n]
        boots.append(counts @ v / n)  # [c, m]
    boot = np.concatenate(boots)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    return [Interval(float(a), float(b), float(c)) for a, b, c in zip(means, low, high, strict=True)]


def user_bootstrap_means(
    values: np.ndarray, users: np.ndarray, n_boot: int, ci: float = 0.95, seed: int = 0,
    max_cells: int = 20_000_000,
) -> list[Interval]:
    """Event mean of each column of `values` ([E] or [E, m]) with a percentile CI that resamples USERS.

    Events of one user are correlated, so a resample draws users with replacement and brings all of
    each drawn user's events (a cluster bootstrap); its estimate is the ratio
    sum_u count_u * sum_u(values) / sum_u count_u * n_u. Vectorized like `bootstrap_means`: per-user
    sums and event counts once, then a chunk of multinomial count vectors [c, U] @ [U, m]."""
    v = np.asarray(values, dtype=np.float64)
    v = v[:, None] if v.ndim == 1 else v
    n, m = v.shape
    users = np.asarray(users)
    if users.shape != (n,):
        raise ValueError(f"users has shape {users.shape}, expected one user per event ({n},)")
    if n == 0:
        return [Interval(float("nan"), float("nan"), float("nan"))] * m
    means = v.mean(axis=0)
    uniq, inverse = np.unique(users, return_inverse=True)
    n_users = len(uniq)
    if n_boot <= 0 or n_users == 1:
        return [Interval(float(x), float(x), float(x)) for x in means]
    order = np.argsort(inverse, kind="stable")
    user_events = np.bincount(inverse, minlength=n_users).astype(np.float64)  # [U], every user has >= 1
    starts = np.concatenate([[0], np.cumsum(user_events[:-1])]).astype(np.int64)
    user_sums = np.add.reduceat(v[order], starts, axis=0)  # [U, m]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, max_cells // n_users))
    boots = []
    for start in range(0, n_boot, chunk):
        counts = rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=min(chunk, n_boot - start))  # [c, U]
        boots.append((counts @ user_sums) / (counts @ user_events)[:, None])  # [c, m]
    boot = np.concatenate(boots)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    return [Interval(float(a), float(b), float(c)) for a, b, c in zip(means, low, high, strict=True)]


def paired_difference(
    values_a: np.ndarray, values_b: np.ndarray, users: np.ndarray, n_boot: int, ci: float = 0.95, seed: int = 0
) -> list[Interval]:
    """mean(a) - mean(b) of two models' per-event values on the SAME events ([E] or [E, m] each), with a
    paired user-level bootstrap CI: each resample draws one set of users and applies it to both models.

    The ratio estimator is linear in the values, so with the same counts the difference of the two
    models' estimates equals the estimate of the per-event differences: one `user_bootstrap_means` call."""
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {a.shape} vs {b.shape} (not the same events?)")
    return user_bootstrap_means(a - b, users, n_boot, ci, seed)


def excludes_zero(interval: Interval) -> bool:
    """True when the interval lies strictly on one side of 0 (for a difference: one model beats the other)."""
    return bool(interval.low > 0 or interval.high < 0)


def per_event_values(ranks: np.ndarray, ks: Sequence[int]) -> tuple[list[str], np.ndarray]:
    """Per-event HR@k, NDCG@k and reciprocal rank ([E, 2 len(ks) + 1]) whose column means are ranking_metrics."""
    r = np.asarray(ranks, dtype=np.float64)
    names, cols = [], []
    for k in ks:
        hit = r <= k
        names += [f"hr_at_{k}", f"ndcg_at_{k}"]
        cols += [hit.astype(np.float64), np.where(hit, 1.0 / np.log2(np.minimum(r, k) + 1.0), 0.0)]
    names.append("mrr")
    cols.append(1.0 / r)
    return names, np.stack(cols, axis=1) if len(r) else np.zeros((0, len(names)))


def set_metrics(lists: np.ndarray, relevant: list[np.ndarray], ks: Sequence[int]) -> tuple[list[str], np.ndarray]:
    """The paper's per-user Precision/Recall/F1/AP@k of ranked lists [U, K] against relevant item sets.

    AP@k = sum_{i<=k, list[i] relevant} P@i / min(k, |relevant|). Returns names and [U, 4 len(ks)] values."""
    users = len(relevant)
    kmax = lists.shape[1] if lists.ndim == 2 else 0
    names = [f"{m}_at_{k}" for k in ks for m in ("precision", "recall", "f1", "map")]
    if users == 0:
        return names, np.zeros((0, len(names)))
    sizes = np.array([len(r) for r in relevant], dtype=np.int64)
    owner = np.repeat(np.arange(users), sizes)
    flat = np.concatenate(relevant).astype(np.int64)
    # rel[u, i]: list position i of user u holds one of u's relevant items (vectorized via a key lookup)
    width = np.int64(max(int(lists.max(initial=0)), int(flat.max(initial=0))) + 2)
    keys = np.sort(owner * width + flat)
    probe = np.arange(users)[:, None] * width + lists.astype(np.int64)  # [U, K]
    pos = np.clip(np.searchsorted(keys, probe), 0, len(keys) - 1)
    rel = (keys[pos] == probe) & (lists >= 0)
    hits_at = np.cumsum(rel, axis=1)  # [U, K]
    precision_at_i = hits_at / np.arange(1, kmax + 1)[None, :]
    cols = []
    for k in ks:
        kk = min(k, kmax)
        hits = hits_at[:, kk - 1] if kk else np.zeros(users)
        p = hits / k
        r = hits / sizes
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)
        ap = (precision_at_i[:, :kk] * rel[:, :kk]).sum(axis=1) / np.minimum(k, sizes)
        cols += [p, r, f1, ap]
    return names, np.stack(cols, axis=1)


def list_metrics(
    lists: np.ndarray, item_category: np.ndarray, item_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-list intra-list category diversity (share of filled item pairs in different categories) and novelty
    (mean -log2 of the item's smoothed train popularity share). Returns ([L], [L])."""
    lists = np.asarray(lists, dtype=np.int64)
    valid = lists >= 0
    safe = np.where(valid, lists, 0)
    cats = item_category[safe]
    both = valid[:, :, None] & valid[:, None, :]  # pairs of filled slots only (short lists are not padded)
    differ = (cats[:, :, None] != cats[:, None, :]) & both
    n_valid = valid.sum(axis=1)
    diversity = differ.sum(axis=(1, 2)) / np.maximum(n_valid * (n_valid - 1), 1)
    share = (item_counts.astype(np.float64) + 1.0) / (item_counts.sum() + len(item_counts))
    info = -np.log2(share)[safe]
    novelty = np.where(valid, info, 0.0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    return diversity, novelty


def coverage_interval(
    lists: np.ndarray, n_items: int, n_boot: int, ci: float, seed: int, max_cells: int = 20_000_000
) -> Interval:
    """Share of recommendable items that appear in at least one list, with a bootstrap CI over lists
    (the bootstrap spread centred on the estimate: a union is biased low under resampling)."""
    import scipy.sparse as sp

    lists = np.asarray(lists, dtype=np.int64)
    recommendable = max(n_items - FIRST_REAL_ITEM, 1)
    n = len(lists)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    rows = np.repeat(np.arange(n), lists.shape[1])
    cols = lists.ravel()
    ok = cols >= FIRST_REAL_ITEM
    incidence = sp.csr_matrix((np.ones(ok.sum(), np.float32), (rows[ok], cols[ok])), shape=(n, n_items))
    value = float((np.asarray(incidence.sum(axis=0)).ravel() > 0).sum() / recommendable)
    if n_boot <= 0:
        return Interval(value, value, value)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, max_cells // max(n, n_items)))
    boots = []
    for start in range(0, n_boot, chunk):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_boot - start)).astype(np.float32)  # [c, n]
        covered = incidence.T @ counts.T  # [n_items, c]
        boots.append((covered > 0).sum(axis=0) / recommendable)
    # Resampling with replacement leaves out ~37% of the lists, so a set union shrinks in every resample:
    # keep the bootstrap spread but centre it on the estimate (percentiles of boot - mean(boot) + value).
    boot = np.concatenate(boots)
    centred = boot - boot.mean() + value
    alpha = (1.0 - ci) / 2.0
    return Interval(value, float(np.quantile(centred, alpha)), float(np.quantile(centred, 1 - alpha)))


_USER_STRIDE = np.int64(1) << 34


class PriorBuys:
    """Which items each user bought before a given time, from the logged transitions of every split."""

    def __init__(self, splits: Sequence) -> None:
        users, items, times = [], [], []
        for t in splits:
            buy = t.action_behavior == 3
            users.append(t.user_id[buy])
            items.append(t.action_item[buy].astype(np.int64))
            times.append(t.timestamp[buy])
        users_a, items_a, times_a = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (users, items, times))
        order = np.lexsort((times_a, users_a))
        self.items = items_a[order]
        # one sorted key per buy: (dense user rank, time since the first buy), so a user's buys before t
        # are one searchsorted range
        self.uniq = np.unique(users_a)
        self.t0 = int(times_a.min()) if len(times_a) else 0
        self.keys = np.searchsorted(self.uniq, users_a[order]) * _USER_STRIDE + (times_a[order] - self.t0)

    def mask(self, users: np.ndarray, times: np.ndarray, n_items: int) -> np.ndarray:
        """[B, n_items] bool: items the user bought strictly before the time."""
        out = np.zeros((len(users), n_items), dtype=bool)
        rows, items = self.pairs(users, times, n_items)
        out[rows, items] = True
        return out

    def pairs(self, users: np.ndarray, times: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, items): for each of the B (user, time) rows, the items the user bought strictly before the
        time (what `mask` marks, without a [B, n_items] array)."""
        users = np.asarray(users, dtype=np.int64)
        times = np.asarray(times, dtype=np.int64)
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        if not len(self.keys) or not len(users):
            return empty
        rank = np.searchsorted(self.uniq, users)
        known = (rank < len(self.uniq)) & (self.uniq[np.minimum(rank, len(self.uniq) - 1)] == users)
        base = rank * _USER_STRIDE
        lo = np.searchsorted(self.keys, base, side="left")
        hi = np.searchsorted(self.keys, base + np.clip(times - self.t0, 0, _USER_STRIDE - 1), side="left")
        counts = np.where(known, hi - lo, 0)
        if not counts.sum():
            return empty
        rows = np.repeat(np.arange(len(users)), counts)
        starts = np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        items = self.items[starts]
        ok = items < n_items
        return rows[ok].astype(np.int64), items[ok].astype(np.int64)


class FirstSeen:
    """When each user first interacted with each known item, from the logged transitions of every split."""

    def __init__(self, splits: Sequence, users: np.ndarray | None = None) -> None:
        """`users`: keep only these users' events (bounds memory on a large log; None = everyone)."""
        empty = np.zeros(0, np.int64)
        all_users = np.concatenate([empty, *(np.asarray(t.user_id, np.int64) for t in splits)])
        items = np.concatenate([empty, *(t.action_item.astype(np.int64) for t in splits)])
        times = np.concatenate([empty, *(np.asarray(t.timestamp, np.int64) for t in splits)])
        keep = items >= FIRST_REAL_ITEM
        if users is not None:
            keep &= np.isin(all_users, np.asarray(users, np.int64))
        all_users, items, times = all_users[keep], items[keep], times[keep]
        self.uniq = np.unique(all_users)
        self.width = np.int64(items.max() + 1 if len(items) else FIRST_REAL_ITEM)
        keys = np.searchsorted(self.uniq, all_users) * self.width + items  # one key per (user, item)
        order = np.lexsort((times, keys))
        keys, times = keys[order], times[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        self.keys, self.first_time = keys[first], times[first]  # sorted keys, earliest time of each

    def before(self, users: np.ndarray, items: np.ndarray, times: np.ndarray) -> np.ndarray:
        """[E] bool: the user interacted with the (known) item strictly before the time."""
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        out = np.zeros(len(users), dtype=bool)
        if not len(self.keys) or not len(users):
            return out
        rank = np.searchsorted(self.uniq, users)
        safe_rank = np.minimum(rank, len(self.uniq) - 1)
        ok = (self.uniq[safe_rank] == users) & (items >= FIRST_REAL_ITEM) & (items < self.width)
        probe = safe_rank * self.width + np.where(ok, items, 0)
        pos = np.minimum(np.searchsorted(self.keys, probe), len(self.keys) - 1)
        return ok & (self.keys[pos] == probe) & (self.first_time[pos] < np.asarray(times, np.int64))


#: Target types, in code order: every event's target is exactly one of them.
TARGET_TYPES: tuple[str, ...] = ("in_state", "in_history", "known_new", "cold")
IN_STATE, IN_HISTORY, KNOWN_NEW, COLD = range(len(TARGET_TYPES))
#: Cut-off of the HR/NDCG reported within each target type.
BREAKDOWN_K = 10


def target_types(test, index: np.ndarray, first_seen: FirstSeen) -> np.ndarray:
    """[E] int8 code into TARGET_TYPES of each test transition's target at `index`: in_state (a known item
    in the state's item_seq), in_history (known, touched by the user strictly before the event, not in
    the state), known_new (known, new to the user), cold (unknown or padding: no model can rank it)."""
    index = np.asarray(index, dtype=np.int64)
    targets = test.action_item[index].astype(np.int64)  # [E]
    known = targets >= FIRST_REAL_ITEM
    state_items = test.item_idx[test.state_rows(index)]  # [E, N]
    in_state = known & (state_items == targets[:, None]).any(axis=1)
    in_history = known & ~in_state & first_seen.before(test.user_id[index], targets, test.timestamp[index])
    codes = np.full(len(index), COLD, dtype=np.int8)
    codes[known] = KNOWN_NEW
    codes[in_history] = IN_HISTORY
    codes[in_state] = IN_STATE
    return codes


def type_breakdown(
    ranks: np.ndarray, types: np.ndarray, users: np.ndarray, n_boot: int, ci: float, seed: int, k: int = BREAKDOWN_K
) -> dict[str, Interval]:
    """Share of each target type, HR@k and NDCG@k within it, and `reachable` (the share not cold: the
    ceiling of HR@k for any model), each with a user-level bootstrap CI."""
    _, values = per_event_values(ranks, (k,))  # [E, 3]: hr, ndcg, rr
    types = np.asarray(types)
    indicators = np.column_stack([types[:, None] == np.arange(len(TARGET_TYPES))[None, :], types != COLD])
    shares = user_bootstrap_means(indicators.astype(np.float64), users, n_boot, ci, seed)
    out: dict[str, Interval] = {}
    for code, name in enumerate(TARGET_TYPES):  # four types, not a loop over events
        inside = types == code
        hr, ndcg = user_bootstrap_means(values[inside, :2], users[inside], n_boot, ci, seed)
        out.update({f"{name}/share": shares[code], f"{name}/hr_at_{k}": hr, f"{name}/ndcg_at_{k}": ndcg})
    out["reachable"] = shares[-1]
    return out


class TargetSet(NamedTuple):
    """One evaluation target: which test transitions, and the item to rank for each."""

    name: str
    index: np.ndarray  # [E] transition indices into the test split
    targets: np.ndarray  # [E] item index


def target_sets(test, max_events: int, seed: int) -> list[TargetSet]:
    """next_item: every test event (a seeded sample when max_events > 0); next_purchase: the buy events."""
    rng = np.random.default_rng(seed + 104729)
    all_index = np.arange(test.num_transitions)
    buys = all_index[test.action_behavior == 3]

    def cap(index: np.ndarray) -> np.ndarray:
        if max_events and len(index) > max_events:
            return np.sort(rng.choice(index, size=max_events, replace=False))
        return index

    nxt, buy = cap(all_index), cap(buys)
    return [
        TargetSet("next_item", nxt, test.action_item[nxt].astype(np.int64)),
        TargetSet("next_purchase", buy, test.action_item[buy].astype(np.int64)),
    ]


class EventRanks(NamedTuple):
    """Per-event results of one target set, kept so two models can be compared on the same events."""

    index: np.ndarray  # [E] transition indices into the test split (TargetSet.index)
    user_id: np.ndarray  # [E] int64 user of each event
    ranks: np.ndarray  # [E] int64 rank of the target (UNRANKABLE where it can't be ranked)
    target_type: np.ndarray  # [E] int8 code into TARGET_TYPES


class Evaluation(NamedTuple):
    """Everything `evaluate_model` measured: metric -> Interval per group, plus counts, and the per-event
    ranks of each target set (`events`, not serialized) for paired comparisons."""

    model: str
    groups: dict[str, dict[str, Interval]]
    counts: dict[str, int]
    seconds: float
    events: dict[str, EventRanks] | None = None

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "counts": self.counts,  # no duration: metrics.json is a DVC output (MLflow has evaluate/seconds)
            "metrics": {g: {m: iv.as_dict() for m, iv in ms.items()} for g, ms in self.groups.items()},
        }


def _score_lists(model, test, index, targets, k_list, prior, n_items, batch_size, item_block=ITEM_BLOCK):
    """Ranks of the targets and the top-k_list lists, batch by batch (and block by block of items), with the
    same exclusions."""
    from drlrec.rl.logged import state_batch

    ranks = np.empty(len(index), dtype=np.int64)
    lists = np.full((len(index), k_list), -1, dtype=np.int64)
    for start in range(0, len(index), batch_size):
        sl = index[start : start + batch_size]
        blocks = score_blocks(model, state_batch(test, sl), item_block)
        mask = None if prior is None else prior.pairs(test.user_id[sl], test.timestamp[sl], n_items)
        ranks[start : start + len(sl)], items = rank_blocks(blocks, targets[start : start + len(sl)], k_list, mask,
                                                            item_block)
        lists[start : start + len(sl), : items.shape[1]] = items
    return ranks, lists


def evaluate_model(
    model: Recommender,
    test,
    history: Sequence,
    item_category: np.ndarray,
    item_counts: np.ndarray,
    cfg,
    seed: int = 0,
    name: str | None = None,
    progress: bool = False,
) -> Evaluation:
    """The protocol (see PROTOCOL) for one model on the test split.

    `history` are the earlier splits (train, valid) used to know what a user already bought;
    `item_counts` the train-period count of every item (novelty); `cfg` an EvaluateConfig."""
    import time

    from tqdm import tqdm

    started = time.perf_counter()
    n_items = int(len(item_category))
    ks = tuple(int(k) for k in cfg.ks)
    prior = PriorBuys([*history, test]) if cfg.exclude_bought else None
    groups: dict[str, dict[str, Interval]] = {}
    counts: dict[str, int] = {}
    events: dict[str, EventRanks] = {}
    sets = target_sets(test, cfg.max_events, seed)
    evaluated_users = np.unique(np.concatenate([test.user_id[s.index] for s in sets]))
    first_seen = FirstSeen([*history, test], users=evaluated_users)
    bar = tqdm(total=sum(len(s.index) for s in sets), desc=f"evaluate {name or model.name}", unit="events",
               disable=None if progress else True, leave=False)
    next_lists = np.zeros((0, cfg.list_k), dtype=np.int64)
    next_users = np.zeros(0, dtype=np.int64)
    for ts in sets:
        ranks, lists = _score_lists(model, test, ts.index, ts.targets, cfg.list_k, prior, n_items, cfg.batch_size,
                                    cfg.item_block)
        users = np.asarray(test.user_id[ts.index], dtype=np.int64)
        types = target_types(test, ts.index, first_seen)
        names, values = per_event_values(ranks, ks)
        groups[ts.name] = dict(zip(names, user_bootstrap_means(values, users, cfg.bootstrap, cfg.ci, seed), strict=True))
        groups[f"{ts.name}_by_type"] = type_breakdown(ranks, types, users, cfg.bootstrap, cfg.ci, seed)
        events[ts.name] = EventRanks(ts.index, users, ranks, types)
        counts[f"{ts.name}_events"] = len(ts.index)
        if ts.name == "next_item":
            next_lists, next_users = lists, users
        bar.update(len(ts.index))
    bar.close()

    # the paper's per-user metrics: one list at the user's first test event vs. the items bought in the test period
    buy = test.action_behavior == 3
    buyers, first = np.unique(test.user_id, return_index=True)
    has_buy = np.isin(buyers, test.user_id[buy])
    if cfg.max_events and has_buy.sum() > cfg.max_events:  # a seeded sample of the buyers, as for the events
        rng = np.random.default_rng(seed + 104729)
        has_buy[np.sort(rng.choice(np.flatnonzero(has_buy), size=has_buy.sum() - cfg.max_events, replace=False))] = False
    first = first[has_buy]
    buy_users, buy_items = test.user_id[buy], test.action_item[buy].astype(np.int64)
    order = np.lexsort((buy_items, buy_users))
    pairs = np.unique(np.stack([buy_users[order], buy_items[order]], axis=1), axis=0)
    bounds = np.searchsorted(pairs[:, 0], buyers[has_buy], side="left"), np.searchsorted(pairs[:, 0], buyers[has_buy], side="right")
    relevant = [pairs[a:b, 1] for a, b in zip(*bounds, strict=True)]
    _, user_lists = _score_lists(model, test, first, test.action_item[first].astype(np.int64), max(ks), prior,
                                 n_items, cfg.batch_size, cfg.item_block)
    names, values = set_metrics(user_lists, relevant, ks)
    groups["per_user_purchase"] = dict(zip(names, bootstrap_means(values, cfg.bootstrap, cfg.ci, seed), strict=True))
    counts["users_with_test_purchases"] = len(relevant)

    diversity, novelty = list_metrics(next_lists, item_category, item_counts)
    beyond = dict(zip(("diversity", "novelty"), user_bootstrap_means(np.stack([diversity, novelty], 1), next_users,
                                                                     cfg.bootstrap, cfg.ci, seed), strict=True))
    beyond = {f"coverage_at_{cfg.list_k}": coverage_interval(next_lists, n_items, cfg.bootstrap, cfg.ci, seed),
              f"diversity_at_{cfg.list_k}": beyond["diversity"], f"novelty_at_{cfg.list_k}": beyond["novelty"]}
    groups["beyond_accuracy"] = beyond
    return Evaluation(name or model.name, groups, counts, time.perf_counter() - started, events)


def protocol_text(cfg, seed: int) -> str:
    return PROTOCOL.format(list_k=cfg.list_k, bootstrap=cfg.bootstrap, seed=seed) + (
        " Items the user bought before the event are masked." if cfg.exclude_bought else ""
    )


#: Columns of the comparison table: (group, metric).
HEADLINE: tuple[tuple[str, str], ...] = (
    ("next_item", "hr_at_10"),
    ("next_item", "ndcg_at_10"),
    ("next_item", "mrr"),
    ("next_purchase", "hr_at_10"),
    ("next_purchase", "ndcg_at_10"),
    ("per_user_purchase", "precision_at_10"),
    ("per_user_purchase", "recall_at_10"),
    ("per_user_purchase", "map_at_10"),
    ("beyond_accuracy", "coverage_at_10"),
    ("beyond_accuracy", "diversity_at_10"),
    ("beyond_accuracy", "novelty_at_10"),
)


def _cell(iv: Interval | None) -> str:
    if iv is None or np.isnan(iv.value):
        return "n/a"
    return f"{iv.value:.4f} [{iv.low:.4f}, {iv.high:.4f}]"


def markdown_table(evaluations: Sequence[Evaluation], protocol: str, columns=HEADLINE) -> str:
    """The comparison as markdown: one row per model, value [95% CI] per headline metric, protocol below."""
    header = "| model | " + " | ".join(f"{g.replace('_', ' ')}: {m}" for g, m in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for ev in evaluations:
        cells = [_cell(ev.groups.get(g, {}).get(m)) for g, m in columns]
        lines.append(f"| {ev.model} | " + " | ".join(cells) + " |")
    counts = evaluations[0].counts if evaluations else {}
    lines += ["", "Events: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()), "", f"Protocol: {protocol}"]
    return "\n".join(lines) + "\n"


def full_table(evaluation: Evaluation) -> str:
    """Every metric of one model as markdown: group, metric, value, 95% CI."""
    lines = ["| group | metric | value | 95% CI |", "|---|---|---|---|"]
    for group, metrics in evaluation.groups.items():
        for metric, iv in metrics.items():
            lines.append(f"| {group} | {metric} | {iv.value:.4f} | [{iv.low:.4f}, {iv.high:.4f}] |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ paired comparison

#: The (group, metric) pairs `drlrec compare` reports as paired differences from its reference row.
PAIRED: tuple[tuple[str, str], ...] = (
    ("next_item", "ndcg_at_10"),
    ("next_item", "hr_at_10"),
    ("next_purchase", "ndcg_at_10"),
    ("next_purchase", "hr_at_10"),
)


def _metric_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    """[E] per-event values of one ranking metric (`hr_at_k`, `ndcg_at_k` or `mrr`) from ranks."""
    ks = (int(metric.rsplit("_at_", 1)[1]),) if "_at_" in metric else ()
    names, values = per_event_values(ranks, ks)
    if metric not in names:
        raise ValueError(f"unknown per-event metric {metric!r}; expected hr_at_K, ndcg_at_K or mrr")
    return values[:, names.index(metric)]


def paired_comparison(
    evaluation: Evaluation, reference: Evaluation, n_boot: int, ci: float = 0.95, seed: int = 0, columns=PAIRED
) -> dict[str, Interval]:
    """`evaluation` minus `reference` on each (group, metric) of `columns`, over the same test events, with a
    paired user-level bootstrap CI: {"group/metric": Interval}."""
    out: dict[str, Interval] = {}
    for group, metric in columns:
        if group not in (evaluation.events or {}) or group not in (reference.events or {}):
            raise ValueError(f"{evaluation.model} / {reference.model}: no per-event ranks for {group} "
                             "(evaluate_model keeps them)")
        a, b = evaluation.events[group], reference.events[group]
        if not np.array_equal(a.index, b.index):
            raise ValueError(f"{evaluation.model} and {reference.model} were not evaluated on the same {group} events")
        [diff] = paired_difference(_metric_values(a.ranks, metric), _metric_values(b.ranks, metric), a.user_id,
                                   n_boot, ci, seed)
        out[f"{group}/{metric}"] = diff
    return out


def _label(group: str, metric: str) -> str:
    k = metric.rsplit("_at_", 1)[1] if "_at_" in metric else ""
    name = {"hr": "HR", "ndcg": "NDCG"}.get(metric.split("_at_")[0], metric)
    return f"{group.replace('_', ' ')} {name}" + (f"@{k}" if k else "")


def _diff_cell(iv: Interval | None) -> str:
    if iv is None or np.isnan(iv.value):
        return "n/a"
    return f"{iv.value:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]" + (" *" if excludes_zero(iv) else "")


def paired_table(
    evaluations: Sequence[Evaluation],
    reference: str,
    paired: dict[str, dict[str, Interval]],
    valid_ndcg: dict[str, float],
    notes: dict[str, str] | None = None,
    fit_seconds: dict[str, float] | None = None,
    columns=PAIRED,
) -> str:
    """One row per model: validation NDCG@10, the test metrics of `columns` (value [95% user-level CI]) and
    each one's paired difference from the `reference` row ("+d [low, high]", " *" when the CI excludes 0)."""
    notes = notes or {}
    header = ["model", "valid NDCG@10", *(_label(g, m) for g, m in columns),
              *(f"Δ {_label(g, m)} vs {reference}" for g, m in columns)] + (["fit (s)"] if fit_seconds else [])
    align = "|" + "---|" * (len(header) - 1) + ("---:|" if fit_seconds else "---|")
    lines = ["| " + " | ".join(header) + " |", align]
    for ev in evaluations:
        name = ev.model + (f" ({notes[ev.model]})" if ev.model in notes else "")
        valid = valid_ndcg.get(ev.model, float("nan"))
        cells = [name, "n/a" if np.isnan(valid) else f"{valid:.4f}"]
        cells += [_cell(ev.groups.get(g, {}).get(m)) for g, m in columns]
        if ev.model == reference:
            cells += ["reference"] * len(columns)
        else:
            cells += [_diff_cell(paired.get(ev.model, {}).get(f"{g}/{m}")) for g, m in columns]
        if fit_seconds:
            cells.append(f"{fit_seconds.get(ev.model, float('nan')):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def versus_table(subject: str, versus: dict[str, dict[str, Interval]], columns=PAIRED) -> str:
    """`subject` minus each other row, paired on the same test events: one row per opponent, "+d [low, high]"
    per (group, metric) of `columns`, " *" when the user-level CI excludes 0."""
    header = ["opponent", *(f"Δ {_label(g, m)}" for g, m in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for opponent, diffs in versus.items():
        lines.append(f"| {subject} − {opponent} | " + " | ".join(_diff_cell(diffs.get(f"{g}/{m}")) for g, m in columns) + " |")
    return "\n".join(lines) + "\n"


def type_table(evaluations: Sequence[Evaluation], target: str, k: int = BREAKDOWN_K) -> str:
    """Model x target type (NDCG@k and HR@k within each type) for one target set (`next_item` or
    `next_purchase`), then the share of each type and the reachable ceiling (the same events for every model)."""
    group = f"{target}_by_type"
    header = ["model", *(f"{t} {m}@{k}" for t in TARGET_TYPES for m in ("NDCG", "HR"))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ev in evaluations:
        metrics = ev.groups.get(group, {})
        cells = [_cell(metrics.get(f"{t}/{m}_at_{k}")) for t in TARGET_TYPES for m in ("ndcg", "hr")]
        lines.append(f"| {ev.model} | " + " | ".join(cells) + " |")
    if evaluations:
        first = evaluations[0]
        metrics = first.groups.get(group, {})
        types = first.events[target].target_type if first.events and target in first.events else np.zeros(0, np.int8)
        n_by_type = np.bincount(types.astype(np.int64), minlength=len(TARGET_TYPES))
        shares = ", ".join(f"{t} {_share(metrics.get(f'{t}/share'))} ({n:,})"
                           for t, n in zip(TARGET_TYPES, n_by_type, strict=True))
        lines += ["", f"Target types of the {len(types):,} {target.replace('_', ' ')} events: {shares}. Reachable "
                  "ceiling (targets that are not cold; no model's HR@k can exceed it): "
                  f"{_share(metrics.get('reachable'))}."]
    return "\n".join(lines) + "\n"


def _share(iv: Interval | None) -> str:
    if iv is None or np.isnan(iv.value):
        return "n/a"
    return f"{100 * iv.value:.1f}% [{100 * iv.low:.1f}, {100 * iv.high:.1f}]"


def evaluate_bundle(bundle, params) -> dict:
    """The registry gate's re-evaluation of a champion (drlrec.registry.register_model's `reevaluate`).
    Evaluate a bundle's model on the current events' test split, featurized with the bundle's own
    vocabularies and statistics (what the model would see in production). Returns a metrics payload."""
    import dataclasses

    import numpy as np

    from drlrec.features.featurize import build_transitions, featurize, load_events
    from drlrec.models.base import item_category_map

    # the split boundaries follow the current params; the state definition follows the bundle
    cfg = dataclasses.replace(
        bundle.featurize, train_days=params.featurize.train_days, valid_days=params.featurize.valid_days
    )
    result = featurize(load_events(params.paths.events), cfg, params.ingest.window_start, fitted=bundle.globals)
    train, valid, test = (build_transitions(result, s) for s in ("train", "valid", "test"))
    n_items = bundle.item_vocab.size
    item_category = item_category_map([train, valid, test], n_items)
    evaluation = evaluate_model(
        bundle.model, test, [train, valid], item_category, np.asarray(bundle.popularity)[:n_items],
        params.evaluate, seed=params.base.seed, name="champion", progress=False,
    )
    return evaluation.to_dict()
