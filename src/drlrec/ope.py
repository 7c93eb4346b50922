"""Off-policy estimates of a candidate recommender's value per impression from logged lists (IPS, SNIPS, DR).

One row of the log is one impression: a (logged list, slot) pair with the logged item's reward.
Slots are treated independently (the "independent" slate assumption of Li et al. 2018 and
Kiyohara et al. 2022, obp's IIPS family): the weight of a row is

    w = target_prob / pscore = pi_candidate(logged item | x, slot) / pi_logging(logged item | x, slot)

and the value is the expected reward per impression (the mean over rows):

- observed: mean(r), the logging policy's own on-policy value;
- ips:      mean(w r) (Saito et al. 2021, "Open Bandit Dataset and Pipeline");
- snips:    per slot k, sum_k(w r) / sum_k(w) (Swaminathan & Joachims 2015), averaged over slots
            weighted by each slot's share of rows. A slot whose weights sum to 0 (the candidate never
            shows a logged item there) has no evidence of its reward and contributes 0, while its
            rows still count in the shares;
- dr:       mean(q_target + w (r - q_logged)) (Dudik et al. 2011), where q_logged is the reward
            model's estimate for the logged item and q_target = sum_a pi_candidate(a | x, slot) qhat(x, a, slot).

Confidence intervals are percentile intervals of a user-level (cluster) bootstrap: a resample draws
users with replacement and brings all of each drawn user's rows, because one user's impressions are
correlated. Every estimator is computed on the SAME resamples (same seed, same draws), so
`paired_difference` gives a paired CI for e.g. DR(candidate) - observed(logging). Vectorised: per-user
(and per slot and user, for SNIPS) sums are computed once, then each chunk of resamples is a
multinomial count matrix [c, n_users] multiplied by those sums; chunks keep the count matrix under
`BootstrapConfig.max_cells` cells, so memory stays bounded for millions of rows.

Usage:

    log = ImpressionLog(group=user_ids, slot=positions, reward=clicks, pscore=logging_probs,
                        target_prob=candidate_probs, q_logged=qhat_logged, q_target=qhat_candidate)
    estimates = estimate_all(log, BootstrapConfig(n_boot=1000, alpha=0.05, seed=42))
    estimates["dr"].value, estimates["dr"].ci_low, estimates["dr"].ess, estimates["snips"].to_dict()
    lift = paired_difference(log, candidate="dr", baseline="observed")  # same resamples as above
    lift.value, lift.ci_low, lift.ci_high, lift.excludes_zero
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from drlrec.errors import InputError

#: estimator names, in the column order of the bootstrap replicates
ESTIMATORS: tuple[str, ...] = ("observed", "ips", "snips", "dr")


class ImpressionLog(NamedTuple):
    """Logged impressions, one row per (logged list, slot); all arrays [n]."""

    group: np.ndarray
    """User id of the row: the bootstrap resamples users with all their rows."""
    slot: np.ndarray
    """Integer position (>= 0) of the row in its list."""
    reward: np.ndarray
    """Reward of the logged item at that slot (click for CTR, purchase for conversion)."""
    pscore: np.ndarray
    """Logging policy's probability, in (0, 1], of showing the logged item at that slot."""
    target_prob: np.ndarray
    """Candidate policy's probability, in [0, 1], of showing that same item at that slot."""
    q_logged: np.ndarray | None = None
    """DR only: the reward model's estimate for the logged item at that slot."""
    q_target: np.ndarray | None = None
    """DR only: the reward model's expected reward under the candidate at that slot."""


@dataclass(frozen=True)
class BootstrapConfig:
    """How the user-level percentile bootstrap is drawn."""

    n_boot: int = 1000
    """Number of resamples."""
    alpha: float = 0.05
    """The CI covers 1 - alpha (0.05: a 95% interval)."""
    seed: int = 42
    """Seed of `numpy.random.default_rng`; the same seed gives the same resamples for every estimator."""
    max_cells: int = 4_000_000
    """Cells of one chunk's count matrix [chunk, n_users] (memory bound; the draws do not depend on it)."""


@dataclass(frozen=True)
class Estimate:
    """One estimator's value per impression with its bootstrap CI and weight diagnostics."""

    estimator: str
    """One of ESTIMATORS."""
    value: float
    """Point estimate on the whole log."""
    ci_low: float
    """Lower percentile-bootstrap bound (alpha / 2 quantile)."""
    ci_high: float
    """Upper percentile-bootstrap bound (1 - alpha / 2 quantile)."""
    alpha: float
    """The CI covers 1 - alpha."""
    ess: float
    """Effective sample size (sum w)^2 / sum(w^2) of the weights; n_rows for "observed"."""
    n_rows: int
    """Impressions in the log."""
    n_groups: int
    """Distinct users (bootstrap clusters)."""
    max_weight: float
    """Largest weight w = target_prob / pscore; 1 for "observed"."""

    def to_dict(self) -> dict[str, str | float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Difference:
    """candidate - baseline with a paired CI (both estimators on the same resampled users)."""

    candidate: str
    """Estimator of the candidate's value, one of ESTIMATORS (e.g. "dr")."""
    baseline: str
    """Estimator subtracted, one of ESTIMATORS (e.g. "observed": the logging policy)."""
    value: float
    """Point difference on the whole log."""
    ci_low: float
    """Lower percentile-bootstrap bound of the difference."""
    ci_high: float
    """Upper percentile-bootstrap bound of the difference."""
    alpha: float
    """The CI covers 1 - alpha."""
    n_rows: int
    """Impressions in the log."""
    n_groups: int
    """Distinct users (bootstrap clusters)."""

    @property
    def excludes_zero(self) -> bool:
        """True when the CI lies strictly on one side of 0: one policy is better at level alpha."""
        return bool(self.ci_low > 0 or self.ci_high < 0)

    def to_dict(self) -> dict[str, str | float | int]:
        return asdict(self)


class _Sums(NamedTuple):
    """Sufficient statistics of a log: per user, and per (slot, user) cell for SNIPS."""

    user_rows: np.ndarray  # [U] impressions of each user
    user_linear: np.ndarray  # [U, 3] sums of r, w r and the DR term: observed, ips, dr numerators
    cell_user: np.ndarray  # [C] user of each (slot, user) cell, cells sorted by slot then user
    cell_stats: np.ndarray  # [C, 3] impressions, sum w r, sum w of each cell
    slot_bounds: np.ndarray  # [K + 1] the cells of slot k are cell_*[slot_bounds[k]:slot_bounds[k + 1]]


class _Prepared(NamedTuple):
    sums: _Sums
    n_rows: int
    ess: float
    max_weight: float
    has_dr: bool


def slot_mean_reward(slot: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """[n] the simplest direct method: each row's slot's mean logged reward (`q_logged` = `q_target` for DR;
    it does not depend on the candidate)."""
    slot = np.asarray(slot, dtype=np.int64)
    per_slot = np.bincount(slot, weights=np.asarray(reward, dtype=np.float64)) / np.maximum(np.bincount(slot), 1)
    return per_slot[slot]


def estimate_all(log: ImpressionLog, cfg: BootstrapConfig | None = None) -> dict[str, Estimate]:
    """{name: Estimate} for observed, ips, snips and (when log has q_logged and q_target) dr, all on the
    same user-level resamples. Raises InputError, with one line saying what is wrong, on a bad log."""
    cfg = cfg or BootstrapConfig()
    prep = _prepare(log)
    names = [name for name in ESTIMATORS if name != "dr" or prep.has_dr]
    cols = [ESTIMATORS.index(name) for name in names]
    points = _estimates(prep.sums, np.ones((1, len(prep.sums.user_rows))))[0, cols]  # [m]
    low, high = _percentiles(_replicates(prep.sums, cfg)[:, cols], cfg.alpha)  # [m] each
    n_groups = len(prep.sums.user_rows)
    out = {}
    for name, value, lo, hi in zip(names, points, low, high, strict=True):
        on_policy = name == "observed"
        out[name] = Estimate(
            estimator=name, value=float(value), ci_low=float(lo), ci_high=float(hi), alpha=cfg.alpha,
            ess=float(prep.n_rows) if on_policy else prep.ess, n_rows=prep.n_rows, n_groups=n_groups,
            max_weight=1.0 if on_policy else prep.max_weight,
        )
    return out


def paired_difference(
    log: ImpressionLog, cfg: BootstrapConfig | None = None, candidate: str = "dr", baseline: str = "observed"
) -> Difference:
    """candidate - baseline (default: DR value of the candidate - the logging policy's observed value)
    with a paired CI: each resample's difference uses one set of drawn users for both estimators, the
    same draws as `estimate_all` with the same cfg."""
    cfg = cfg or BootstrapConfig()
    for name in (candidate, baseline):
        if name not in ESTIMATORS:
            raise InputError(f"unknown estimator {name!r}: expected one of {', '.join(ESTIMATORS)}")
    prep = _prepare(log)
    if "dr" in (candidate, baseline) and not prep.has_dr:
        raise InputError("the dr estimator needs q_logged and q_target in the log")
    a, b = ESTIMATORS.index(candidate), ESTIMATORS.index(baseline)
    point = _estimates(prep.sums, np.ones((1, len(prep.sums.user_rows))))[0]  # [4]
    boot = _replicates(prep.sums, cfg)  # [B, 4]
    low, high = _percentiles((boot[:, a] - boot[:, b])[:, None], cfg.alpha)
    return Difference(
        candidate=candidate, baseline=baseline, value=float(point[a] - point[b]), ci_low=float(low[0]),
        ci_high=float(high[0]), alpha=cfg.alpha, n_rows=prep.n_rows, n_groups=len(prep.sums.user_rows),
    )


def _prepare(log: ImpressionLog) -> _Prepared:
    """Validate the log and reduce it to per-user and per-(slot, user) sums."""
    arrays = {name: np.asarray(value) for name, value in log._asdict().items() if value is not None}
    for name, value in arrays.items():
        if value.ndim != 1:
            raise InputError(f"ope input {name} must be one-dimensional, got shape {value.shape}")
    lengths = {name: len(value) for name, value in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise InputError("ope input arrays differ in length: " + ", ".join(f"{k} {v}" for k, v in lengths.items()))
    n = lengths["group"]
    if n == 0:
        raise InputError("ope input is empty: no logged impressions")
    has_dr = log.q_logged is not None and log.q_target is not None
    if (log.q_logged is None) != (log.q_target is None):
        raise InputError("dr needs both q_logged and q_target (got only one of them)")
    slot = arrays["slot"]
    if not np.issubdtype(slot.dtype, np.integer):
        raise InputError(f"slot must hold integer positions, got dtype {slot.dtype}")
    _reject(slot < 0, slot, "slot must be >= 0")
    pscore = arrays["pscore"].astype(np.float64)
    _reject(~((pscore > 0) & (pscore <= 1)), pscore, "pscore must be in (0, 1] (and not NaN)")
    target_prob = arrays["target_prob"].astype(np.float64)
    _reject(~((target_prob >= 0) & (target_prob <= 1)), target_prob, "target_prob must be in [0, 1] (and not NaN)")
    reward = arrays["reward"].astype(np.float64)
    _reject(~np.isfinite(reward), reward, "reward must be finite")
    weight = target_prob / pscore  # [n]
    if has_dr:
        q_logged = arrays["q_logged"].astype(np.float64)
        q_target = arrays["q_target"].astype(np.float64)
        _reject(~np.isfinite(q_logged), q_logged, "q_logged must be finite")
        _reject(~np.isfinite(q_target), q_target, "q_target must be finite")
        dr_term = q_target + weight * (reward - q_logged)  # [n]
    else:
        dr_term = np.zeros(n)

    _, user = np.unique(arrays["group"], return_inverse=True)  # [n] compact user index
    user = user.reshape(-1)
    n_users = int(user.max()) + 1
    user_rows = np.bincount(user, minlength=n_users).astype(np.float64)  # [U]
    user_linear = np.stack(
        [np.bincount(user, weights=col, minlength=n_users) for col in (reward, weight * reward, dr_term)], axis=1
    )  # [U, 3]

    slot_values, slot_index = np.unique(slot, return_inverse=True)
    cells, cell = np.unique(slot_index.reshape(-1).astype(np.int64) * n_users + user, return_inverse=True)  # [C], [n]
    cell = cell.reshape(-1)
    cell_stats = np.stack(
        [np.bincount(cell, weights=col, minlength=len(cells)) for col in (np.ones(n), weight * reward, weight)], axis=1
    )  # [C, 3]
    slot_bounds = np.searchsorted(cells // n_users, np.arange(len(slot_values) + 1))  # [K + 1]

    sum_w, sum_w2 = weight.sum(), np.square(weight).sum()
    ess = float(sum_w**2 / sum_w2) if sum_w2 > 0 else 0.0
    sums = _Sums(user_rows, user_linear, cells % n_users, cell_stats, slot_bounds)
    return _Prepared(sums, n, ess, float(weight.max()), has_dr)


def _reject(bad: np.ndarray, values: np.ndarray, rule: str) -> None:
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(f"{rule}: {len(rows)} of {len(bad)} rows are not (first: row {rows[0]} = {values[rows[0]]!s})")


def _estimates(sums: _Sums, counts: np.ndarray) -> np.ndarray:
    """Each estimator ([c, 4], ESTIMATORS order) on c resamples given as user counts [c, U] (ones: the log)."""
    rows = counts @ sums.user_rows  # [c] impressions in each resample (>= 1: every user has a row)
    linear = (counts @ sums.user_linear) / rows[:, None]  # [c, 3] observed, ips, dr
    snips = np.zeros(len(counts))  # [c]
    n_users = counts.shape[1]
    for lo, hi in zip(sums.slot_bounds[:-1], sums.slot_bounds[1:], strict=True):
        # the cells of a slot every user fills are all users in order: skip the gather copy
        slot_counts = counts if hi - lo == n_users else counts[:, sums.cell_user[lo:hi]]  # [c, C_k]
        slot_rows, slot_wr, slot_w = (slot_counts @ sums.cell_stats[lo:hi]).T  # [c] each
        ratio = np.divide(slot_wr, slot_w, out=np.zeros_like(slot_wr), where=slot_w > 0)
        snips += slot_rows * ratio
    snips /= rows
    return np.stack([linear[:, 0], linear[:, 1], snips, linear[:, 2]], axis=1)


def _replicates(sums: _Sums, cfg: BootstrapConfig) -> np.ndarray:
    """Each estimator on cfg.n_boot user-level resamples: [B, 4]. The draws depend only on the seed,
    n_boot and the number of users, never on the chunk size."""
    if cfg.n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {cfg.n_boot}")
    if not 0 < cfg.alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {cfg.alpha}")
    n_users = len(sums.user_rows)
    rng = np.random.default_rng(cfg.seed)
    uniform = np.full(n_users, 1.0 / n_users)
    chunk = max(1, min(cfg.n_boot, cfg.max_cells // n_users))
    boot = np.empty((cfg.n_boot, len(ESTIMATORS)))
    for start in range(0, cfg.n_boot, chunk):
        size = min(chunk, cfg.n_boot - start)
        counts = rng.multinomial(n_users, uniform, size=size).astype(np.float64)  # [c, U]
        boot[start : start + size] = _estimates(sums, counts)
    return boot


def _percentiles(boot: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high
