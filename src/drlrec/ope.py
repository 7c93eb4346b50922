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
    arrays, n = _columns(log, "impressions")
    has_dr = log.q_logged is not None and log.q_target is not None
    if (log.q_logged is None) != (log.q_target is None):
        raise InputError("dr needs both q_logged and q_target (got only one of them)")
    slot = arrays["slot"]
    if not np.issubdtype(slot.dtype, np.integer):
        raise InputError(f"slot must hold integer positions, got dtype {slot.dtype}")
    _reject(slot < 0, slot, "slot must be >= 0")
    pscore, target_prob, reward = _weights_and_reward(arrays)
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


def _columns(log: ImpressionLog | SessionLog, rows: str) -> tuple[dict[str, np.ndarray], int]:
    """The log's given fields as arrays, checked one-dimensional, of one length and not empty."""
    arrays = {name: np.asarray(value) for name, value in log._asdict().items() if value is not None}
    for name, value in arrays.items():
        if value.ndim != 1:
            raise InputError(f"ope input {name} must be one-dimensional, got shape {value.shape}")
    lengths = {name: len(value) for name, value in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise InputError("ope input arrays differ in length: " + ", ".join(f"{k} {v}" for k, v in lengths.items()))
    n = next(iter(lengths.values()))
    if n == 0:
        raise InputError(f"ope input is empty: no logged {rows}")
    return arrays, n


def _weights_and_reward(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pscore, target_prob and reward as float64, checked: pscore in (0, 1], target_prob in [0, 1], reward finite."""
    pscore = arrays["pscore"].astype(np.float64)
    _reject(~((pscore > 0) & (pscore <= 1)), pscore, "pscore must be in (0, 1] (and not NaN)")
    target_prob = arrays["target_prob"].astype(np.float64)
    _reject(~((target_prob >= 0) & (target_prob <= 1)), target_prob, "target_prob must be in [0, 1] (and not NaN)")
    reward = arrays["reward"].astype(np.float64)
    _reject(~np.isfinite(reward), reward, "reward must be finite")
    return pscore, target_prob, reward


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
    boot = np.empty((cfg.n_boot, len(ESTIMATORS)))
    for start, counts in _resamples(len(sums.user_rows), cfg):
        boot[start : start + len(counts)] = _estimates(sums, counts)
    return boot


def _resamples(n_groups: int, cfg: BootstrapConfig):
    """(first replicate index, group counts [c, n_groups]) chunks of cfg.n_boot cluster resamples; the
    draws depend only on the seed, n_boot and n_groups, never on the chunk size."""
    if cfg.n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {cfg.n_boot}")
    if not 0 < cfg.alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {cfg.alpha}")
    rng = np.random.default_rng(cfg.seed)
    uniform = np.full(n_groups, 1.0 / n_groups)
    chunk = max(1, min(cfg.n_boot, cfg.max_cells // n_groups))
    for start in range(0, cfg.n_boot, chunk):
        size = min(chunk, cfg.n_boot - start)
        yield start, rng.multinomial(n_groups, uniform, size=size).astype(np.float64)


def _percentiles(boot: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


# --- Session-level (per-decision) estimates ------------------------------------------------------------
#
# The estimators above value a candidate on the logging policy's states. Run on its own, a candidate also
# changes the states: what a user acts on joins the state, and whether the user stays depends on it. Its
# on-policy value per impression over whole sessions is
#
#     V = E_pi[sum_t r_t] / E_pi[sum_t n_t]        (r_t: the list's reward at step t, n_t its impressions)
#
# Per-decision importance sampling (Precup et al. 2000; the sequential DR of Jiang & Li 2016 and Thomas &
# Brunskill 2016) weights step t of a logged session by the product of the WHOLE-LIST ratios up to t,
#
#     rho_t = prod_{u <= t} target_prob_u / pscore_u,
#
# unbiased for any state dynamics: E_mu[rho_t r_t] = E_pi[r_t], and E_mu[rho_{t-1} n_t] = E_pi[n_t] because
# whether step t happens (and n_t) is settled before its list is drawn. The variance grows with the
# product, so these need a logging policy that shows the candidate's list often (little exploration) and
# short sessions; their ESS says how much evidence is left.
#
# - observed: sum r / sum n, the logging policy's own value per impression;
# - pdis:     sum rho_t r_t / sum rho_{t-1} n_t (a ratio of two unbiased estimates);
# - wpdis:    sum rho_t r_t / sum rho_t n_t (self-normalised: the same weights above and below);
# - pddr:     [sum rho_t (r_t - q_logged_t) + rho_{t-1} q_target_t] / sum rho_{t-1} n_t, where q_logged_t is a
#             reward model's estimate of the logged list's reward and q_target_t its expected reward under the
#             candidate at that state (unbiased for any reward model; a good one lowers the variance).
# Sums run over every logged step of every session; CIs from the same cluster bootstrap as above, over
# users (SessionLog.group) or, without them, sessions.

#: session-level estimators, in the column order of their bootstrap replicates
SESSION_ESTIMATORS: tuple[str, ...] = ("observed", "pdis", "wpdis", "pddr")


class SessionLog(NamedTuple):
    """Logged lists, one row per (session, step); all arrays [n]. Each session's steps are 0, 1, 2, ...
    with none missing: a lost list would break the product of weights after it."""

    session: np.ndarray
    """Session id: the rows of one session share one product of weights."""
    step: np.ndarray
    """Integer decision index of the list within its session, from 0."""
    reward: np.ndarray
    """The list's reward (e.g. clicks on any of its items)."""
    size: np.ndarray
    """Impressions in the list (its length k); the value is per impression."""
    pscore: np.ndarray
    """Logging policy's probability, in (0, 1], of the whole logged list at that state."""
    target_prob: np.ndarray
    """Candidate's probability, in [0, 1], of that same list at that state."""
    q_logged: np.ndarray | None = None
    """pddr only: the reward model's estimate of the logged list's reward."""
    q_target: np.ndarray | None = None
    """pddr only: the reward model's expected list reward under the candidate at that state."""
    group: np.ndarray | None = None
    """Bootstrap cluster of the row's session, e.g. its user (one user's sessions are correlated); None:
    each session is its own cluster. Every row of a session must name the same group."""


def estimate_sessions(log: SessionLog, cfg: BootstrapConfig | None = None) -> dict[str, Estimate]:
    """{name: Estimate} for observed, pdis, wpdis and (when log has q_logged and q_target) pddr, per
    impression over whole sessions, all on the same resamples of groups (log.group, e.g. users; without it,
    sessions). `ess` is that of the per-step weights rho_t over all rows. Raises InputError, with one line
    saying what is wrong, on a bad log."""
    cfg = cfg or BootstrapConfig()
    sums, n_rows, ess, max_weight, has_dr = _prepare_sessions(log)
    cols = [i for i, name in enumerate(SESSION_ESTIMATORS) if name != "pddr" or has_dr]
    points = _session_values(sums, np.ones((1, len(sums))))[0]
    boot = np.empty((cfg.n_boot, len(SESSION_ESTIMATORS)))
    for start, counts in _resamples(len(sums), cfg):
        boot[start : start + len(counts)] = _session_values(sums, counts)
    low, high = _percentiles(boot, cfg.alpha)
    out = {}
    for col in cols:
        name = SESSION_ESTIMATORS[col]
        on_policy = name == "observed"
        out[name] = Estimate(
            estimator=name, value=float(points[col]), ci_low=float(low[col]), ci_high=float(high[col]),
            alpha=cfg.alpha, ess=float(n_rows) if on_policy else ess, n_rows=n_rows, n_groups=len(sums),
            max_weight=1.0 if on_policy else max_weight,
        )
    return out


def _prepare_sessions(log: SessionLog) -> tuple[np.ndarray, int, float, float, bool]:
    """Validate the log; per group [G, 6] sums of r, n, rho r, rho_prev n, rho n and the pddr numerator;
    plus n_rows, the ESS and the largest weight of rho, and whether pddr applies."""
    arrays, n = _columns(log, "lists")
    if (log.q_logged is None) != (log.q_target is None):
        raise InputError("pddr needs both q_logged and q_target (got only one of them)")
    has_dr = log.q_logged is not None
    step = arrays["step"]
    if not np.issubdtype(step.dtype, np.integer):
        raise InputError(f"step must hold integer decision indices, got dtype {step.dtype}")
    pscore, target_prob, reward = _weights_and_reward(arrays)
    size = arrays["size"].astype(np.float64)
    _reject(~(size >= 1), size, "size must be >= 1 impression")

    _, session = np.unique(arrays["session"], return_inverse=True)
    session = session.reshape(-1)
    order = np.lexsort((step, session))  # by session, then step
    session, step = session[order], step[order].astype(np.int64)
    first = np.r_[True, session[1:] != session[:-1]]  # [n] the row opens its session
    starts = np.flatnonzero(first)
    run = np.repeat(starts, np.diff(np.r_[starts, n]))  # [n] first row of each row's session
    _reject(step != np.arange(n) - run, step, "each session's steps must be 0, 1, 2, ... with none missing or repeated")

    # rho_t = prod of the ratios up to t within the session: a log-space cumulative sum restarted at each
    # session, with zeros (the candidate never shows that list) tracked apart so that they stay exact zeros.
    ratio = target_prob[order] / pscore[order]
    zero = ratio == 0
    log_ratio = np.log(np.where(zero, 1.0, ratio))
    cum_log = np.cumsum(log_ratio)
    cum_zero = np.cumsum(zero)
    before_log = np.where(run > 0, cum_log[run - 1], 0.0)
    before_zero = np.where(run > 0, cum_zero[run - 1], 0)
    rho = np.where(cum_zero - before_zero > 0, 0.0, np.exp(cum_log - before_log))  # [n]
    rho_prev = np.where(first, 1.0, np.r_[1.0, rho[:-1]])  # [n] rho_{t-1}, 1 at step 0

    reward, size = reward[order], size[order]
    if has_dr:
        q_logged = arrays["q_logged"].astype(np.float64)[order]
        q_target = arrays["q_target"].astype(np.float64)[order]
        _reject(~np.isfinite(q_logged), q_logged, "q_logged must be finite")
        _reject(~np.isfinite(q_target), q_target, "q_target must be finite")
        dr_term = rho * (reward - q_logged) + rho_prev * q_target
    else:
        dr_term = np.zeros(n)
    cluster = session
    if log.group is not None:
        group = arrays["group"][order]
        _, cluster = np.unique(group, return_inverse=True)
        cluster = cluster.reshape(-1)
        _reject(cluster != cluster[run], group,
                "every row of a session must name the same group")
    n_groups = int(cluster.max()) + 1
    cols = (reward, size, rho * reward, rho_prev * size, rho * size, dr_term)
    sums = np.stack([np.bincount(cluster, weights=col, minlength=n_groups) for col in cols], axis=1)  # [G, 6]
    sum_w, sum_w2 = rho.sum(), np.square(rho).sum()
    ess = float(sum_w**2 / sum_w2) if sum_w2 > 0 else 0.0
    return sums, n, ess, float(rho.max()), has_dr


def _session_values(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[c, 4] the SESSION_ESTIMATORS on c resamples given as group counts [c, G] (ones: the log). A
    resample with no weight below a ratio (the candidate's lists never logged) gives 0 for it."""
    total = counts @ sums  # [c, 6]
    r, n, wr, wprev_n, w_n, dr = total.T

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    return np.stack([r / n, ratio(wr, wprev_n), ratio(wr, w_n), ratio(dr, wprev_n)], axis=1)
