"""Session-level (per-decision) off-policy estimators: hand-computed values, input checks, and recovery of
a candidate's on-policy value in a small MDP where its lists change the later states."""

from __future__ import annotations

import numpy as np
import pytest

from drlrec.errors import InputError
from drlrec.ope import BootstrapConfig, ImpressionLog, SessionLog, estimate_all, estimate_sessions


def hand_log(**overrides) -> SessionLog:
    """Two sessions (ids 7 and 3), rows out of order on purpose."""
    rows = dict(  # session, step, reward, size, pscore, target_prob
        session=np.array([3, 7, 3, 7, 3]),
        step=np.array([2, 1, 0, 0, 1]),
        reward=np.array([1.0, 0.0, 0.0, 1.0, 1.0]),
        size=np.array([2, 2, 2, 2, 2]),
        pscore=np.array([1.0, 0.5, 0.5, 0.5, 0.25]),
        target_prob=np.array([1.0, 1.0, 1.0, 1.0, 0.0]),
    )
    rows.update(overrides)
    return SessionLog(**rows)


def test_hand_computed_values():
    # session 7: ratios 2, 2 -> rho 2, 4; rho_prev 1, 2; rewards 1, 0
    # session 3: ratios 2, 0, 1 -> rho 2, 0, 0; rho_prev 1, 2, 0; rewards 0, 1, 1
    est = estimate_sessions(hand_log(), BootstrapConfig(n_boot=50, seed=1))
    assert est["observed"].value == pytest.approx(3 / 10)
    assert est["pdis"].value == pytest.approx((2 * 1) / ((1 + 2) * 2 + (1 + 2 + 0) * 2))  # 2 / 12
    assert est["wpdis"].value == pytest.approx(2 / ((2 + 4) * 2 + (2 + 0 + 0) * 2))  # 2 / 16
    assert "pddr" not in est
    assert est["pdis"].ess == pytest.approx(8**2 / (4 + 16 + 4))
    assert est["pdis"].max_weight == pytest.approx(4.0) and est["observed"].max_weight == 1.0
    assert est["pdis"].n_rows == 5 and est["pdis"].n_groups == 2


def test_hand_computed_doubly_robust_value():
    half = np.full(5, 0.5)
    est = estimate_sessions(hand_log(q_logged=half, q_target=half), BootstrapConfig(n_boot=50, seed=1))
    # session 7: 2 (1 - .5) + 1 (.5) = 1.5, then 4 (0 - .5) + 2 (.5) = -1
    # session 3: 2 (0 - .5) + .5 = -.5, then 0 + 2 (.5) = 1, then 0 + 0 = 0; over sum rho_prev n = 12
    assert est["pddr"].value == pytest.approx((1.5 - 1 - 0.5 + 1 + 0) / 12)


def test_one_step_sessions_reduce_to_the_whole_list_impression_estimators():
    # with one list per session, pdis is IPS per impression and wpdis is SNIPS (one "slot": the list)
    rng = np.random.default_rng(0)
    n = 400
    pscore = rng.uniform(0.2, 1.0, n)
    target = (rng.random(n) < 0.5).astype(float)
    reward = rng.integers(0, 3, n).astype(float)
    ses = estimate_sessions(SessionLog(np.arange(n), np.zeros(n, np.int64), reward, np.ones(n), pscore, target),
                            BootstrapConfig(n_boot=20))
    imp = estimate_all(ImpressionLog(np.arange(n), np.zeros(n, np.int64), reward, pscore, target),
                       BootstrapConfig(n_boot=20))
    assert ses["pdis"].value == pytest.approx(imp["ips"].value)
    assert ses["wpdis"].value == pytest.approx(imp["snips"].value)
    assert ses["observed"].value == pytest.approx(imp["observed"].value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(step=np.array([2, 1, 0, 0, 3])), "steps must be 0, 1, 2"),  # session 3 lost its step 1
        (dict(step=np.array([2, 1, 0, 0, 0])), "steps must be 0, 1, 2"),  # step 0 twice
        (dict(pscore=np.array([1.0, 0.5, 0.0, 0.5, 0.25])), "pscore must be in (0, 1]"),
        (dict(target_prob=np.array([1.0, 1.0, np.nan, 1.0, 0.0])), "target_prob must be in [0, 1]"),
        (dict(size=np.array([2, 2, 0, 2, 2])), "size must be >= 1"),
        (dict(step=np.array([2.0, 1, 0, 0, 1])), "step must hold integer"),
        (dict(q_logged=np.full(5, 0.5)), "pddr needs both"),
        (dict(reward=np.array([1.0, 0.0])), "differ in length"),
    ],
)
def test_bad_logs_get_one_line_errors(overrides, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")) as err:
        estimate_sessions(hand_log(**overrides))
    assert "\n" not in str(err.value)


def test_an_empty_log_is_refused():
    empty = np.array([], dtype=np.int64)
    with pytest.raises(InputError, match="empty"):
        estimate_sessions(SessionLog(empty, empty, empty.astype(float), empty, empty.astype(float), empty.astype(float)))


# ----------------------------------------------------------------------- a small MDP where lists move the state
# state 0 (cold) or 1 (warm); list A (the candidate's) or B. A click on A warms the user up for good; a user
# who clicks stays longer. Logging shows A half of the time, the candidate always.
CLICK = np.array([[0.2, 0.3], [0.8, 0.3]])  # [state, list] P(click)
LEAVE = np.array([0.4, 0.1])  # [clicked] P(leave after the step)
MAX_STEPS = 4


def exact_value(p_a: float) -> float:
    """E[clicks] / E[lists] of the policy showing A with probability p_a, by dynamic programming."""
    mass = np.array([1.0, 0.0])  # P(alive at step t and in state s)
    clicks = lists = 0.0
    for _ in range(MAX_STEPS):
        lists += mass.sum()
        click_a = mass * p_a * CLICK[:, 0]  # [s]
        click_b = mass * (1 - p_a) * CLICK[:, 1]
        clicks += (click_a + click_b).sum()
        no_click = mass - click_a - click_b
        nxt = np.zeros(2)
        nxt[1] += click_a.sum() * (1 - LEAVE[1])  # clicked A: warm
        nxt += click_b * (1 - LEAVE[1])  # clicked B: state unchanged
        nxt += no_click * (1 - LEAVE[0])
        mass = nxt
    return clicks / lists


def simulate(n: int, p_a: float, seed: int) -> SessionLog:
    rng = np.random.default_rng(seed)
    state = np.zeros(n, np.int64)
    alive = np.ones(n, bool)
    rows = []
    for step in range(MAX_STEPS):
        idx = np.flatnonzero(alive)
        show_a = rng.random(len(idx)) < p_a
        click = rng.random(len(idx)) < CLICK[state[idx], np.where(show_a, 0, 1)]
        rows.append(np.stack([idx, np.full(len(idx), step), click, np.where(show_a, p_a, 1 - p_a), show_a], axis=1))
        state[idx[click & show_a]] = 1
        alive[idx[rng.random(len(idx)) < LEAVE[click.astype(np.int64)]]] = False
    log = np.concatenate(rows)
    return SessionLog(log[:, 0].astype(np.int64), log[:, 1].astype(np.int64), log[:, 2], np.ones(len(log)),
                      log[:, 3], log[:, 4])


def test_per_decision_estimators_recover_the_on_policy_value_where_one_step_weights_cannot():
    truth = exact_value(1.0)
    logging = exact_value(0.5)
    log = simulate(20_000, 0.5, seed=3)
    est = estimate_sessions(log, BootstrapConfig(n_boot=200, seed=0))
    for name in ("pdis", "wpdis"):
        assert abs(est[name].value - truth) < 0.015, (name, est[name].value, truth)
        assert est[name].ci_low <= truth <= est[name].ci_high
    assert abs(est["observed"].value - logging) < 0.015
    # weighting each list alone (its own ratio, not the product) values A on the logging policy's states:
    # far from the truth, which the candidate's own states (warm users, longer sessions) make higher
    one_step = estimate_all(ImpressionLog(log.session, np.zeros(len(log.step), np.int64), log.reward, log.pscore,
                                          log.target_prob), BootstrapConfig(n_boot=50))
    assert truth - one_step["snips"].value > 0.05  # measured: 0.359 against 0.276


def test_users_are_the_bootstrap_clusters_when_given():
    # every user's session logged five times over (the same lists, the same clicks): resampling sessions
    # would treat the copies as independent evidence; resampling users must not
    base = simulate(400, 0.5, seed=5)
    copies = 5
    n_sessions = int(base.session.max()) + 1
    session = np.concatenate([base.session + c * n_sessions for c in range(copies)])
    user = np.concatenate([base.session] * copies)
    tiled = SessionLog(session, np.tile(base.step, copies), np.tile(base.reward, copies), np.tile(base.size, copies),
                       np.tile(base.pscore, copies), np.tile(base.target_prob, copies))
    cfg = BootstrapConfig(n_boot=400, seed=0)
    by_session = estimate_sessions(tiled, cfg)["pdis"]
    by_user = estimate_sessions(tiled._replace(group=user), cfg)["pdis"]
    alone = estimate_sessions(base, cfg)["pdis"]
    assert by_user.value == pytest.approx(by_session.value) == pytest.approx(alone.value)
    assert by_user.n_groups == n_sessions and by_session.n_groups == copies * n_sessions
    width = lambda e: e.ci_high - e.ci_low  # noqa: E731
    assert width(by_user) == pytest.approx(width(alone), rel=0.25)  # the copies add no evidence
    assert width(by_user) > 1.6 * width(by_session)  # sqrt(5) = 2.2 in expectation


def test_a_session_split_across_users_is_refused():
    with pytest.raises(InputError, match="every row of a session must name the same group"):
        estimate_sessions(hand_log(group=np.array([1, 2, 1, 2, 9])))
