"""Off-policy estimators (observed, IPS, SNIPS, DR) and their user-level bootstrap, on hand-made and simulated logs."""

from __future__ import annotations

import numpy as np
import pytest

from drlrec.errors import InputError
from drlrec.ope import BootstrapConfig, Estimate, ImpressionLog, estimate_all, paired_difference

# ------------------------------------------------------------------------------------------ a simulated slate bandit

# [K, M] click probability of item a at slot k for an average user. The candidate's favourite item 0
# is clicked almost surely, so most of IPS's variance comes from which items were logged (what a
# good reward model removes), not from the coin flips.
CLICK = np.array([
    [0.95, 0.30, 0.10, 0.05, 0.02],
    [0.90, 0.25, 0.10, 0.05, 0.02],
    [0.85, 0.20, 0.06, 0.04, 0.02],
])
N_SLOTS, N_ITEMS = CLICK.shape
_scores = np.array([0.0, 0.5, 1.0, 0.5, 0.0])  # the logging policy prefers the middling item 2 at every slot
LOGGING = np.tile(np.exp(_scores) / np.exp(_scores).sum(), (N_SLOTS, 1))  # [K, M] softmax, full support
CANDIDATE = np.full((N_SLOTS, N_ITEMS), 0.2 / N_ITEMS)  # [K, M] epsilon-greedy (eps 0.2) on the best item
CANDIDATE[:, 0] += 0.8
# users' click propensities are multiplied by a per-user lift of mean 1, so the population value is exact:
TRUE_CANDIDATE_CTR = float((CANDIDATE * CLICK).sum(axis=1).mean())  # equal rows per slot: mean over slots


def simulate_log(seed: int, n_users: int = 300, lists_per_user: int = 2, reward_model: str = "none",
                 on_policy: bool = False) -> ImpressionLog:
    """A logged slate bandit: each list fills every slot independently from LOGGING; reward_model is
    "none" (no q), "perfect" (the true expected reward) or "misspecified" (wrong and ignores users)."""
    rng = np.random.default_rng(seed)
    n_lists = n_users * lists_per_user
    list_user = np.repeat(np.arange(n_users) * 7 + 3, lists_per_user)  # [L], ids not 0..U-1
    lift = rng.uniform(0.95, 1.05, size=n_users)  # rows of one user are correlated through it
    list_lift = np.repeat(lift, lists_per_user)  # [L]
    cdf = np.cumsum(LOGGING, axis=1)  # [K, M]
    item = np.minimum((rng.random((n_lists, N_SLOTS))[:, :, None] >= cdf[None]).sum(-1), N_ITEMS - 1)  # [L, K]
    slot = np.broadcast_to(np.arange(N_SLOTS), item.shape)  # [L, K]
    expected = CLICK[slot, item] * list_lift[:, None]  # [L, K]
    reward = (rng.random(item.shape) < expected).astype(np.float64)
    pscore = LOGGING[slot, item]
    target = pscore if on_policy else CANDIDATE[slot, item]
    q_logged = q_target = None
    if reward_model == "perfect":
        q_logged = expected
        q_target = (CANDIDATE * CLICK).sum(axis=1)[slot] * list_lift[:, None]
    elif reward_model == "misspecified":
        qhat = 0.5 * CLICK + 0.03  # [K, M]
        q_logged = qhat[slot, item]
        q_target = (CANDIDATE * qhat).sum(axis=1)[slot]
    flat = [None if a is None else np.ravel(a) for a in (q_logged, q_target)]
    return ImpressionLog(np.repeat(list_user, N_SLOTS), slot.ravel(), reward.ravel(), pscore.ravel(), target.ravel(), *flat)


# ------------------------------------------------------------------------------------------ hand-computed values

# row: group slot reward pscore target_prob -> w = target/pscore, q_logged, q_target
HAND_LOG = ImpressionLog(
    group=np.array([7, 3, 7, 3, 7, 3]),
    slot=np.array([0, 1, 0, 1, 0, 2]),
    reward=np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]),
    pscore=np.array([0.5, 0.25, 0.5, 0.25, 1.0, 0.5]),
    target_prob=np.array([0.25, 0.5, 1.0, 0.75, 0.5, 0.0]),  # w = 0.5, 2, 2, 3, 0.5, 0
    q_logged=np.array([0.5, 0.25, 0.5, 0.5, 0.25, 0.5]),
    q_target=np.array([0.25, 0.5, 0.75, 0.5, 0.25, 0.0]),
)


def test_hand_computed_values_and_two_user_bootstrap() -> None:
    est = estimate_all(HAND_LOG, BootstrapConfig(n_boot=1000, seed=0))
    assert set(est) == {"observed", "ips", "snips", "dr"}
    assert est["observed"].value == pytest.approx((1 + 0 + 1 + 1 + 0 + 0) / 6)
    assert est["ips"].value == pytest.approx((0.5 * 1 + 2 * 0 + 2 * 1 + 3 * 1 + 0.5 * 0 + 0 * 0) / 6)
    # slot 0: rows 1, 3, 5 (3 of 6 rows); slot 1: rows 2, 4 (2 of 6); slot 2: row 6, weights sum to 0 -> 0
    assert est["snips"].value == pytest.approx(
        (3 / 6) * ((0.5 * 1 + 2 * 1 + 0.5 * 0) / (0.5 + 2 + 0.5)) + (2 / 6) * ((2 * 0 + 3 * 1) / (2 + 3)) + (1 / 6) * 0
    )
    assert est["dr"].value == pytest.approx(
        ((0.25 + 0.5 * (1 - 0.5)) + (0.5 + 2 * (0 - 0.25)) + (0.75 + 2 * (1 - 0.5))
         + (0.5 + 3 * (1 - 0.5)) + (0.25 + 0.5 * (0 - 0.25)) + (0.0 + 0 * (0 - 0.5))) / 6
    )
    for name in ("ips", "snips", "dr"):
        assert est[name].ess == pytest.approx((0.5 + 2 + 2 + 3 + 0.5 + 0) ** 2 / (0.25 + 4 + 4 + 9 + 0.25 + 0))
        assert est[name].max_weight == 3.0
    assert est["observed"].ess == 6 and est["observed"].max_weight == 1.0
    assert all(e.n_rows == 6 and e.n_groups == 2 and e.alpha == 0.05 for e in est.values())
    # two users: a resample is {7, 7}, {7, 3} or {3, 3}, each pure one a quarter of the time, so the
    # 95% percentile CI runs from one user's value alone to the other's
    assert (est["observed"].ci_low, est["observed"].ci_high) == pytest.approx(((0 + 1 + 0) / 3, (1 + 1 + 0) / 3))
    assert (est["ips"].ci_low, est["ips"].ci_high) == pytest.approx(((0.5 + 2 + 0) / 3, (0 + 3 + 0) / 3))
    assert est["ips"].to_dict() == {
        "estimator": "ips", "value": est["ips"].value, "ci_low": est["ips"].ci_low, "ci_high": est["ips"].ci_high,
        "alpha": 0.05, "ess": est["ips"].ess, "n_rows": 6, "n_groups": 2, "max_weight": 3.0,
    }
    assert "dr" not in estimate_all(HAND_LOG._replace(q_logged=None, q_target=None), BootstrapConfig(n_boot=10))


# ------------------------------------------------------------------------------------------ on-policy, DR


def test_on_policy_ips_snips_and_observed_agree_with_full_ess() -> None:
    log = simulate_log(seed=5, on_policy=True)
    est = estimate_all(log, BootstrapConfig(n_boot=300))
    n = len(log.reward)
    assert est["ips"].value == est["observed"].value == pytest.approx(log.reward.mean())
    assert est["snips"].value == pytest.approx(log.reward.mean())
    assert est["ips"].ess == pytest.approx(n) and est["ips"].max_weight == 1.0
    # w == 1 exactly, and the same resamples: identical intervals
    assert (est["ips"].ci_low, est["ips"].ci_high) == (est["observed"].ci_low, est["observed"].ci_high)
    assert (est["snips"].ci_low, est["snips"].ci_high) == pytest.approx((est["ips"].ci_low, est["ips"].ci_high))


def test_dr_with_a_perfect_reward_model_varies_much_less_than_ips_and_dr_with_zero_q_is_ips() -> None:
    ips, dr = [], []
    for seed in range(40):
        est = estimate_all(simulate_log(seed, reward_model="perfect"), BootstrapConfig(n_boot=1))
        ips.append(est["ips"].value)
        dr.append(est["dr"].value)
    assert np.std(dr) < 0.5 * np.std(ips)  # in theory about 0.33x here: only the coin flips remain
    log = simulate_log(seed=1)
    zero = np.zeros(len(log.reward))
    est = estimate_all(log._replace(q_logged=zero, q_target=zero), BootstrapConfig(n_boot=200))
    assert (est["dr"].value, est["dr"].ci_low, est["dr"].ci_high) == (est["ips"].value, est["ips"].ci_low, est["ips"].ci_high)


# ------------------------------------------------------------------------------------------ unbiasedness, coverage


def test_ips_and_dr_are_unbiased_and_their_cis_cover_the_true_candidate_ctr() -> None:
    n_logs = 200
    values = {"ips": [], "dr": [], "snips": []}
    covered = {"ips": 0, "dr": 0}
    for seed in range(n_logs):
        est = estimate_all(simulate_log(1000 + seed, reward_model="misspecified"), BootstrapConfig(n_boot=200, seed=seed))
        for name in values:
            values[name].append(est[name].value)
        for name in covered:
            covered[name] += est[name].ci_low <= TRUE_CANDIDATE_CTR <= est[name].ci_high
    observed_mean = np.mean([simulate_log(1000 + s).reward.mean() for s in range(20)])
    assert abs(observed_mean - TRUE_CANDIDATE_CTR) > 0.05  # the candidate really differs from the logging policy
    for name in ("ips", "dr"):
        v = np.array(values[name])
        assert abs(v.mean() - TRUE_CANDIDATE_CTR) < 4 * v.std() / np.sqrt(n_logs)
        assert abs(v.mean() - TRUE_CANDIDATE_CTR) < 0.02 * TRUE_CANDIDATE_CTR
        assert 0.85 <= covered[name] / n_logs <= 1.0
    assert np.mean(values["snips"]) == pytest.approx(TRUE_CANDIDATE_CTR, abs=0.01)  # consistent, slightly biased


# ------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_resamples_users_not_rows() -> None:
    rng = np.random.default_rng(0)
    n_users, rows_per_user = 40, 20
    per_user = rng.integers(0, 2, size=n_users).astype(np.float64)  # each user clicks always or never
    n = n_users * rows_per_user
    log = ImpressionLog(
        group=np.repeat(np.arange(n_users), rows_per_user),
        slot=np.tile(np.arange(2), n // 2),
        reward=np.repeat(per_user, rows_per_user),
        pscore=np.full(n, 0.5),
        target_prob=rng.choice([0.25, 0.75], size=n),
    )
    cfg = BootstrapConfig(n_boot=1000, seed=3)
    clustered = estimate_all(log, cfg)
    rows = estimate_all(log._replace(group=np.arange(n)), cfg)  # every row its own user
    for name in ("observed", "ips", "snips"):
        assert clustered[name].value == pytest.approx(rows[name].value)
        assert clustered[name].n_groups == n_users and rows[name].n_groups == n
        # 20 perfectly correlated rows carry the information of one: about sqrt(20) = 4.5x wider
        assert clustered[name].ci_high - clustered[name].ci_low > 3 * (rows[name].ci_high - rows[name].ci_low)
        assert clustered[name].ci_low <= clustered[name].value <= clustered[name].ci_high


def test_intervals_are_percentiles_of_the_estimators_on_materialised_user_resamples() -> None:
    full = simulate_log(seed=6, n_users=40, reward_model="misspecified")
    keep = np.random.default_rng(6).random(len(full.reward)) < 0.6  # users and slots with unequal row counts
    log = ImpressionLog(*(a[keep] for a in full))
    cfg = BootstrapConfig(n_boot=200, alpha=0.1, seed=5)
    est = estimate_all(log, cfg)
    users = np.unique(log.group)
    rng = np.random.default_rng(cfg.seed)  # the documented draws: user counts ~ Multinomial(U, 1/U)
    boot = {"observed": [], "ips": [], "snips": [], "dr": []}
    for counts in rng.multinomial(len(users), np.full(len(users), 1 / len(users)), size=cfg.n_boot):
        rows = np.concatenate([np.flatnonzero(log.group == u) for u, c in zip(users, counts, strict=True) for _ in range(c)])
        r, w, k = log.reward[rows], log.target_prob[rows] / log.pscore[rows], log.slot[rows]
        boot["observed"].append(r.mean())
        boot["ips"].append((w * r).mean())
        boot["snips"].append(sum((k == s).mean() * (w * r)[k == s].sum() / w[k == s].sum() for s in np.unique(k)))
        boot["dr"].append((log.q_target[rows] + w * (r - log.q_logged[rows])).mean())
    for name, values in boot.items():
        low, high = np.quantile(values, [0.05, 0.95])
        assert (est[name].ci_low, est[name].ci_high) == pytest.approx((low, high), rel=1e-9)


def test_same_seed_same_intervals_whatever_the_chunk_size() -> None:
    log = simulate_log(seed=2, reward_model="misspecified")
    first = estimate_all(log, BootstrapConfig(n_boot=300, seed=11))
    assert estimate_all(log, BootstrapConfig(n_boot=300, seed=11)) == first
    chunked = estimate_all(log, BootstrapConfig(n_boot=300, seed=11, max_cells=7 * 300))  # 7 resamples a chunk
    for name, est in first.items():  # the same draws; only the matrix products' rounding may differ
        assert (chunked[name].ci_low, chunked[name].ci_high) == pytest.approx((est.ci_low, est.ci_high), rel=1e-12)
    other = estimate_all(log, BootstrapConfig(n_boot=300, seed=12))
    assert all(other[k].value == first[k].value for k in first)
    assert any(other[k].ci_low != first[k].ci_low for k in first)
    narrower = estimate_all(log, BootstrapConfig(n_boot=300, seed=11, alpha=0.5))
    assert all(first[k].ci_low < narrower[k].ci_low <= narrower[k].ci_high < first[k].ci_high for k in first)


def test_paired_difference_uses_the_same_resamples_for_both_estimators() -> None:
    log = simulate_log(seed=4, reward_model="misspecified")
    cfg = BootstrapConfig(n_boot=500, seed=8)
    est = estimate_all(log, cfg)
    lift = paired_difference(log, cfg)  # DR of the candidate - observed value of the logging policy
    assert (lift.candidate, lift.baseline, lift.n_groups) == ("dr", "observed", 300)
    assert lift.value == pytest.approx(est["dr"].value - est["observed"].value)
    assert lift.ci_low <= lift.value <= lift.ci_high and lift.excludes_zero and lift.ci_low > 0
    assert lift.to_dict()["ci_high"] == lift.ci_high
    # on-policy, the IPS and observed replicates are identical only when both see the same users
    on_policy = simulate_log(seed=4, on_policy=True)
    same = paired_difference(on_policy, cfg, candidate="ips", baseline="observed")
    assert (same.value, same.ci_low, same.ci_high, same.excludes_zero) == (0.0, 0.0, 0.0, False)


# ------------------------------------------------------------------------------------------ bad input


def _bad(**changes) -> ImpressionLog:
    return HAND_LOG._replace(**changes)


@pytest.mark.parametrize(
    ("log", "message"),
    [
        (_bad(reward=HAND_LOG.reward[:-1]), "differ in length"),
        (ImpressionLog(*(np.array([], dtype=int) for _ in range(5))), "empty"),
        (_bad(pscore=np.array([0.5, 0.0, 0.5, 0.25, 1.0, 0.5])), r"pscore must be in \(0, 1\]"),
        (_bad(pscore=np.array([0.5, 1.5, 0.5, 0.25, 1.0, 0.5])), r"pscore must be in \(0, 1\]"),
        (_bad(pscore=np.array([0.5, np.nan, 0.5, 0.25, 1.0, 0.5])), r"pscore must be in \(0, 1\]"),
        (_bad(target_prob=np.array([0.25, 0.5, -0.1, 0.75, 0.5, 0.0])), r"target_prob must be in \[0, 1\]"),
        (_bad(target_prob=np.array([0.25, 0.5, 1.1, 0.75, 0.5, 0.0])), r"target_prob must be in \[0, 1\]"),
        (_bad(target_prob=np.array([0.25, 0.5, np.nan, 0.75, 0.5, 0.0])), r"target_prob must be in \[0, 1\]"),
        (_bad(slot=np.array([0, 1, 0, -1, 0, 2])), "slot must be >= 0"),
        (_bad(slot=np.array([0.0, 1, 0, 1, 0, 2])), "slot must hold integer"),
        (_bad(reward=np.array([1.0, np.nan, 1.0, 1.0, 0.0, 0.0])), "reward must be finite"),
        (_bad(q_target=None), "needs both q_logged and q_target"),
    ],
)
def test_bad_input_raises_a_one_line_input_error(log: ImpressionLog, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        estimate_all(log, BootstrapConfig(n_boot=10))
    assert "\n" not in str(err.value)


def test_paired_difference_rejects_unknown_or_unavailable_estimators() -> None:
    with pytest.raises(InputError, match="unknown estimator 'switch'"):
        paired_difference(HAND_LOG, candidate="switch")
    with pytest.raises(InputError, match="needs q_logged and q_target"):
        paired_difference(HAND_LOG._replace(q_logged=None, q_target=None))
    assert isinstance(estimate_all(HAND_LOG, BootstrapConfig(n_boot=5))["dr"], Estimate)


def test_the_gate_compares_with_the_champions_own_lists_not_every_logged_list() -> None:
    """A log holding lists of two versions (v1 clicked 20% of the time, v2 80%), the candidate the logging
    policy itself (DR about 0.5): each version's observed value is exactly its own CTR, and the gate
    passes against champion v1, blocks against champion v2, and without a version compares with all
    lists (0.5)."""
    from drlrec.ope_logs import Impressions, estimate, ope_gate

    n = 400
    version = np.array(["1"] * 200 + ["2"] * 200)
    click = np.zeros(n)
    click[:40] = 1  # v1: 40 of 200
    click[200:360] = 1  # v2: 160 of 200
    ones = np.ones(n)
    imp = Impressions(
        exposure=np.arange(n), user_id=np.arange(n) % 100, slot=np.zeros(n, dtype=np.int64), item_id=np.arange(n),
        pscore=ones * 0.5, click=click, conversion=np.zeros(n), target_prob=ones * 0.5, list_pscore=ones * 0.5,
        list_target=ones * 0.5, unsupported=np.zeros(n), version=version, exploration=["epsilon:0.5:m20"], n_lists=n,
        n_lists_skipped=0,
    )
    result = {"click": estimate(imp, "click", n_boot=300, seed=3), "n_impressions": n, "unsupported_mass": 0.0}
    by_version = result["click"]["observed_by_version"]
    assert by_version["1"]["value"] == pytest.approx(0.2) and by_version["2"]["value"] == pytest.approx(0.8)
    dr = result["click"]["estimates"]["dr"]
    assert dr["value"] == pytest.approx(0.5) and 0.2 < dr["ci_low"] < 0.5
    passed, reason, figures = ope_gate(result, "click", 0.0, champion_version="1")
    assert passed and figures["ope_observed"] == pytest.approx(0.2) and "champion v1's lists" in reason
    blocked, reason, figures = ope_gate(result, "click", 0.0, champion_version="2")
    assert not blocked and figures["ope_observed"] == pytest.approx(0.8)
    overall, _, figures = ope_gate(result, "click", 0.0)
    assert not overall and figures["ope_observed"] == pytest.approx(0.5)
