"""Confidence intervals and paired differences: bootstrap over events or over users (all of a user's
events together), per-event metric values, list metrics and coverage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from drlrec.models.base import FIRST_REAL_ITEM


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
