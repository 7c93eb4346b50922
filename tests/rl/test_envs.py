"""LogReplayEnv and SimulatedEnv (gymnasium API, check_env), state advance, simulate_policy, reward schemes."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from drlrec.config import EnvConfig
from drlrec.errors import ConfigError, InputError
from drlrec.models.base import FIRST_REAL_ITEM, StateBatch
from drlrec.rl.envs import (
    SESSION_METRICS,
    LogReplayEnv,
    SessionOutcomes,
    SimulatedEnv,
    intra_list_diversity,
    obs_to_state_batch,
    paired_session_difference,
    session_bootstrap,
    simulate_policy,
    state_to_obs,
)
from drlrec.rl.logged import next_state_batch, state_batch
from drlrec.rl.rewards import RewardModel, long_tail_items, preferred_category
from drlrec.schema import BUY

NO_BONUS = dataclasses.replace(EnvConfig(), long_tail_bonus=0.0, category_bonus=0.0)


def _replay(featurized, cfg: EnvConfig = NO_BONUS) -> LogReplayEnv:
    d = featurized.data
    return LogReplayEnv(
        d.valid, d.n_items, d.n_categories, featurized.globals.stats.item_count, d.item_category, cfg
    )


def _recent_items_policy(k: int = 10):
    """The state's own items, most recent first, topped up with items 2, 3, ...: a policy the logs reward."""

    def policy(states: StateBatch) -> np.ndarray:
        recent = states.item_seq[:, ::-1][:, :k].astype(np.int64)
        filler = np.arange(2, 2 + k)[None, :]
        return np.where(recent >= 2, recent, filler)

    return policy


def _random_policy(n_items: int, k: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    return lambda states: rng.integers(2, n_items, size=(states.batch_size, k))


# ---------------------------------------------------------------------------------------------- gymnasium


def test_check_env_passes_for_both_environments(featurized, simulator) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded float Boxes and the missing spec are only warnings
        check_env(_replay(featurized))
        check_env(SimulatedEnv(simulator, featurized.data.valid, histories=featurized.histories))


def test_observations_stack_back_into_the_state_batch(featurized) -> None:
    states = state_batch(featurized.data.valid, np.arange(5))
    stacked = obs_to_state_batch([state_to_obs(states, i) for i in range(5)])
    for a, b in zip(states, stacked, strict=True):
        np.testing.assert_array_equal(a, b)
    single = obs_to_state_batch(state_to_obs(states, 2))
    assert single.batch_size == 1
    np.testing.assert_array_equal(single.item_seq[0], states.item_seq[2])


# ------------------------------------------------------------------------------------------------ replay


def test_log_replay_rewards_exactly_the_hits_and_follows_the_logged_sequence(featurized) -> None:
    env = _replay(featurized, dataclasses.replace(NO_BONUS, max_steps=10_000))
    t = featurized.data.valid
    weights = np.array([1.0, 3.0, 2.5, 10.0])
    lengths = np.diff(np.append(env.episode_start, t.num_transitions))
    episode = int(np.argmax(lengths >= 6))
    obs, info = env.reset(seed=0, options={"index": episode})
    i = int(env.episode_start[episode])
    assert info["index"] == i
    rng = np.random.default_rng(0)
    hits = 0
    for step in range(int(lengths[episode])):
        np.testing.assert_array_equal(obs["item_seq"], t.item_idx[t.state_rows([i])[0]])
        logged = int(t.action_item[i])
        others = rng.integers(2, env.n_items, size=10)
        others[others == logged] = 2 if logged != 2 else 3
        include = step % 2 == 0 and logged >= 2
        action = others.copy()
        if include:
            action[rng.integers(10)] = logged
        obs, reward, terminated, truncated, info = env.step(action)
        if include:
            hits += 1
            assert reward == pytest.approx(weights[t.action_behavior[i]]) and reward > 0
        else:
            assert reward == 0.0
        assert info["clicked"] == include
        assert info["bought"] == (include and t.action_behavior[i] == BUY)
        assert terminated == bool(t.done[i]) and not truncated
        i += 1
    assert terminated and hits >= 3
    # the last observation is the logged state after the user's last action
    terminal = next_state_batch(t, np.array([i - 1]))
    np.testing.assert_array_equal(obs["item_seq"], terminal.item_seq[0])
    np.testing.assert_allclose(obs["profile"], terminal.profile[0])
    with pytest.raises(RuntimeError, match="reset"):
        env.step(action)


def test_log_replay_purchase_binary_pays_only_bought_hits(featurized) -> None:
    env = _replay(featurized, dataclasses.replace(EnvConfig(), reward="purchase_binary"))
    session = env.start_batch(300, np.random.default_rng(0))
    index = session.index.copy()
    lists = np.repeat(
        env.transitions.action_item[index][:, None], 3, axis=1
    )  # the logged next items: all hits
    out = env.step_batch(session, lists, np.random.default_rng(0))
    bought = env.transitions.action_behavior[index] == BUY
    recommendable = env.transitions.action_item[index] >= 2
    np.testing.assert_array_equal(out.reward, (bought & recommendable).astype(np.float32))
    np.testing.assert_array_equal(out.clicked, recommendable)


def test_log_replay_truncates_at_max_steps(featurized) -> None:
    env = _replay(featurized, dataclasses.replace(NO_BONUS, max_steps=2))
    lengths = np.diff(np.append(env.episode_start, env.transitions.num_transitions))
    env.reset(seed=0, options={"index": int(np.argmax(lengths >= 4))})
    _, _, terminated, truncated, _ = env.step(np.arange(2, 12))
    assert not terminated and not truncated
    _, _, terminated, truncated, _ = env.step(np.arange(2, 12))
    assert truncated and not terminated


# --------------------------------------------------------------------------------------------- simulated


def _trajectory(env: SimulatedEnv, seed: int, steps: int = 15) -> list:
    obs, info = env.reset(seed=seed)
    out = [info["index"], obs["item_seq"].tolist()]
    policy = _recent_items_policy()
    for _ in range(steps):
        action = policy(obs_to_state_batch(obs))[0]
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs["item_seq"].tolist(), obs["profile"].tolist(), reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return out


def test_simulated_env_is_deterministic_given_the_seed(featurized, simulator) -> None:
    env = SimulatedEnv(simulator, featurized.data.valid, dataclasses.replace(EnvConfig(), max_steps=50), histories=featurized.histories)
    assert _trajectory(env, 11) == _trajectory(env, 11)
    assert any(_trajectory(env, 11) != _trajectory(env, seed) for seed in range(12, 16))


def test_simulated_sessions_terminate_when_the_user_leaves(featurized, simulator) -> None:
    env = SimulatedEnv(simulator, featurized.data.valid, dataclasses.replace(EnvConfig(), max_steps=1000), histories=featurized.histories)
    session = env.start_batch(400, np.random.default_rng(0))
    policy = _recent_items_policy()
    rng = np.random.default_rng(1)
    lengths = np.zeros(400)
    while not session.finished.all():
        out = env.step_batch(session, policy(env.batch_states(session)), rng)
        assert not out.truncated.any()
        lengths += out.active
    assert session.terminated.all()
    # leave hazard about 0.1-0.25 per step: sessions of a few steps, never hundreds
    assert 2.0 < lengths.mean() < 15.0 and lengths.max() < 200


def test_a_clicked_item_enters_the_state(featurized, simulator) -> None:
    env = SimulatedEnv(simulator, featurized.data.valid, histories=featurized.histories)
    session = env.start_batch(500, np.random.default_rng(0))
    before = env.batch_states(session)
    out = env.step_batch(session, _recent_items_policy()(before), np.random.default_rng(2))
    after = env.batch_states(session)
    clicked = out.item >= 0
    assert clicked.any() and not clicked.all()
    np.testing.assert_array_equal(after.item_seq[clicked, -1], out.item[clicked])
    np.testing.assert_array_equal(after.behavior_seq[clicked, -1], out.behavior[clicked] + 1)
    np.testing.assert_array_equal(after.item_seq[clicked, :-1], before.item_seq[clicked, 1:])
    np.testing.assert_array_equal(after.item_seq[~clicked], before.item_seq[~clicked])
    np.testing.assert_array_equal(after.profile[~clicked], before.profile[~clicked])


def test_a_simulated_session_builds_the_logged_states_when_the_user_acts_as_logged(featurized, simulator) -> None:
    """Start simulated sessions at logged events and feed them the logged next events at their logged
    times: the env's states (built from the sessions' histories) are the logged states, exactly, at the
    start and after each of three events, across long and short histories."""
    t = featurized.data.valid
    env = SimulatedEnv(simulator, t, histories=featurized.histories)
    # sessions with at least three more logged events in the split, all of catalogue items (a simulated
    # user acts only on items the model can recommend, and the env reads an item's category off the catalogue)
    more = ~t.done[:-3] & ~t.done[1:-2] & ~t.done[2:-1]
    known = np.ones(len(more), bool)
    for step in range(3):
        item, _, category = t.actions_at(np.arange(len(more)) + step)
        known &= (item >= FIRST_REAL_ITEM) & (env.item_category[item] == category)
    index = np.flatnonzero(more & known)[::3]
    assert len(index) > 50 and (t.state_rows(index)[:, 0] == 0).any() and (t.state_rows(index)[:, 0] > 0).any()
    session = env.start_batch(len(index), np.random.default_rng(0), index=index)
    for step in range(4):
        logged = state_batch(t, index + step)
        for field, mine, theirs in zip(logged._fields, env.batch_states(session), logged, strict=True):
            np.testing.assert_array_equal(mine, theirs, err_msg=f"{field} after {step} logged events")
        item, behavior, _ = t.actions_at(index + step)
        env.advance(session, item, behavior, t.timestamp[index + step], now=t.timestamp[index + step + 1])


def test_simulated_sessions_start_from_the_events_the_features_came_from(featurized, simulator) -> None:
    """Histories that do not hold the logged event (another events file) are refused in one line."""
    import pandas as pd

    from drlrec.errors import InputError
    from drlrec.features.histories import EventHistories

    frame = pd.read_parquet(featurized.events_path)
    frame["timestamp"] = frame["timestamp"] + 1  # every event one second later: no logged event is found
    shifted = EventHistories.from_columns({c: frame[c].to_numpy() for c in frame.columns},
                                          featurized.globals.item_vocab, featurized.globals.category_vocab)
    env = SimulatedEnv(simulator, featurized.data.valid, histories=shifted)
    with pytest.raises(InputError, match="not the one the features were built from"):
        env.start_batch(5, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------- simulate_policy


def test_simulate_policy_is_seeded_and_ranks_policies_sensibly(featurized, simulator) -> None:
    n_items = featurized.data.n_items
    simulated = SimulatedEnv(simulator, featurized.data.valid, histories=featurized.histories)
    replay = _replay(featurized)
    for env in (simulated, replay):
        recent = simulate_policy(env, _recent_items_policy(), sessions=300, seed=0, batch_size=128)
        again = simulate_policy(env, _recent_items_policy(), sessions=300, seed=0, batch_size=128)
        assert recent.as_dict() == again.as_dict() and recent.ci == again.ci
        np.testing.assert_array_equal(recent.outcomes.totals(), again.outcomes.totals())
        random = simulate_policy(env, _random_policy(n_items), sessions=300, seed=0)
        # the same sessions whatever the policy and the batch size (the starts were drawn inside each
        # batch after the previous batch's steps, so policies with other session lengths met other users)
        np.testing.assert_array_equal(recent.outcomes.start, random.outcomes.start)
        other_seed = simulate_policy(env, _recent_items_policy(), sessions=300, seed=1, batch_size=128)
        assert not np.array_equal(recent.outcomes.start, other_seed.outcomes.start)
        # paired on those sessions, the user's own items earn more than random lists
        assert paired_session_difference(recent.outcomes, random.outcomes, n_boot=500)["mean_return"].low > 0
        # measured on the simulator: CTR 0.18 vs 0.002; replay 0.11 vs 0.003
        assert recent.ctr > 0.05 and recent.ctr > 10 * random.ctr, (type(env).__name__, recent, random)
        assert recent.mean_return > random.mean_return
        assert random.coverage > recent.coverage
        for result in (recent, random):
            assert result.sessions == 300 and result.steps >= 300
            assert 0 <= result.ctr <= 1 and 0 <= result.conversion_rate <= 1
            assert 0 <= result.intra_list_diversity <= 1 and 0 < result.coverage <= 1
            assert result.mean_length == pytest.approx(result.steps / 300)
            o = result.outcomes
            assert o.lists.sum() == result.steps and (o.lists >= 1).all() and (o.buys <= o.clicks).all()
            assert result.ctr == pytest.approx(o.clicks.sum() / o.lists.sum())
            assert result.mean_return == pytest.approx(o.reward.mean())
            assert result.purchases_per_session == pytest.approx(o.buys.mean())
            assert result.buys_per_step == pytest.approx(o.buys.sum() / o.lists.sum())
            for metric in SESSION_METRICS:
                low, high = result.ci[metric]
                assert low <= getattr(result, metric) <= high, metric


def test_simulate_policy_coverage_and_diversity_by_hand(featurized, simulator) -> None:
    env = SimulatedEnv(simulator, featurized.data.valid, histories=featurized.histories)
    items = np.array([2, 3, 4, 5])
    result = simulate_policy(env, lambda s: np.tile(items, (s.batch_size, 1)), sessions=50, seed=0)
    assert result.coverage == pytest.approx(4 / (featurized.data.n_items - 2))
    category = simulator.item_category[items]
    differ = sum(category[a] != category[b] for a in range(4) for b in range(4) if a != b) / 12
    assert result.intra_list_diversity == pytest.approx(differ)
    np.testing.assert_allclose(
        intra_list_diversity(np.array([[2, 2], [2, 3]]), np.array([0, 0, 7, 8])), [0.0, 1.0]
    )


def _outcomes(reward, lists, clicks, buys, start=None) -> SessionOutcomes:
    n = len(reward)
    start = np.arange(n) if start is None else np.asarray(start)
    return SessionOutcomes(start, np.asarray(reward, float), *(np.asarray(a, np.int64) for a in (lists, clicks, buys)))


def test_session_bootstrap_by_hand_on_two_sessions() -> None:
    """Two sessions: A (return 10, 1 list, 1 click, 1 buy) and B (return 0, 3 lists, nothing). A resample is
    AA (p 1/4), AB (p 1/2) or BB (p 1/4); CTR is the ratio of sums (AB: 1/4), not the mean of per-session
    CTRs (AB: 1/2), and BB's conversion 0/0 counts as 0."""
    o = _outcomes([10.0, 0.0], [1, 3], [1, 0], [1, 0])
    # AA, AB, BB: return 10, 5, 0; CTR 1, 1/4, 0; conversion 1, 1, 0; purchases 1, 1/2, 0
    wide = session_bootstrap(o, n_boot=2000, ci=0.95, seed=0)  # the 2.5% and 97.5% quantiles: BB and AA
    assert wide == {"mean_return": (0.0, 10.0), "ctr": (0.0, 1.0), "conversion_rate": (0.0, 1.0),
                    "purchases_per_session": (0.0, 1.0)}
    middle = session_bootstrap(o, n_boot=2000, ci=0.4, seed=0)  # the 30% and 70% quantiles: both AB
    assert middle == {"mean_return": (5.0, 5.0), "ctr": (0.25, 0.25), "conversion_rate": (1.0, 1.0),
                      "purchases_per_session": (0.5, 0.5)}
    assert session_bootstrap(o, n_boot=0)["ctr"] == (0.25, 0.25)  # no resamples: the point estimate
    assert session_bootstrap(o, n_boot=200, seed=3) == session_bootstrap(o, n_boot=200, seed=3)
    with pytest.raises(ConfigError, match="resamples"):
        session_bootstrap(o, n_boot=-1)
    with pytest.raises(ConfigError, match="confidence level"):
        session_bootstrap(o, n_boot=10, ci=1.5)


def _synthetic_sessions(n: int, seed: int) -> SessionOutcomes:
    rng = np.random.default_rng(seed)
    lists = 1 + rng.poisson(4.0, n)
    clicks = rng.binomial(lists, 0.3)
    buys = rng.binomial(clicks, 0.2)
    reward = clicks * 2.0 + buys * 10.0 + rng.exponential(1.0, n)
    return _outcomes(reward, lists, clicks, buys)


def test_session_bootstrap_agrees_with_the_normal_approximation_and_narrows_with_sessions() -> None:
    """On 400 sessions the 95% CI is about +-1.96 standard errors: the standard error of a mean for return
    and purchases, the linearized one of a ratio of sums, sqrt(sum (num_i - R den_i)^2) / sum den_i, for CTR
    and conversion. With 16 times the sessions the CIs are about 4 times narrower."""
    o = _synthetic_sessions(400, seed=1)
    result = session_bootstrap(o, n_boot=4000, seed=0)
    point = dict(zip(SESSION_METRICS, [o.reward.mean(), o.clicks.sum() / o.lists.sum(),
                                       o.buys.sum() / o.clicks.sum(), o.buys.mean()], strict=True))

    def ratio_se(num, den):
        r = num.sum() / den.sum()
        return np.sqrt(np.sum((num - r * den) ** 2)) / den.sum()

    se = {
        "mean_return": o.reward.std(ddof=1) / np.sqrt(400),
        "ctr": ratio_se(o.clicks, o.lists),
        "conversion_rate": ratio_se(o.buys, o.clicks),
        "purchases_per_session": o.buys.std(ddof=1) / np.sqrt(400),
    }
    for metric, (low, high) in result.items():
        assert low < point[metric] < high, metric
        assert high - low == pytest.approx(2 * 1.96 * se[metric], rel=0.15), metric
    small = session_bootstrap(_synthetic_sessions(100, seed=2), n_boot=2000, seed=0)
    large = session_bootstrap(_synthetic_sessions(1600, seed=3), n_boot=2000, seed=0)
    for metric in SESSION_METRICS:
        ratio = (small[metric][1] - small[metric][0]) / (large[metric][1] - large[metric][0])
        assert 3.0 < ratio < 5.3, (metric, ratio)


def test_paired_session_difference_pairs_the_resampled_sessions() -> None:
    """b = a's sessions, each 0.5 less return: the sessions vary far more than the gap, so the two runs' own
    CIs overlap, but resampling the same sessions for both finds the gap (independent resamples would not)."""
    a = _synthetic_sessions(300, seed=4)
    noise = np.random.default_rng(5).normal(0.0, 0.2, 300)
    b = a._replace(reward=a.reward - 0.5 + noise)
    diff = paired_session_difference(a, b, n_boot=2000, seed=0)
    assert diff["mean_return"].value == pytest.approx(a.reward.mean() - b.reward.mean())
    assert 0.4 < diff["mean_return"].low < diff["mean_return"].value < diff["mean_return"].high < 0.6
    own_a, own_b = session_bootstrap(a, 2000, seed=0), session_bootstrap(b, 2000, seed=0)
    assert own_b["mean_return"][1] > own_a["mean_return"][0]  # unpaired, the CIs overlap
    # lists, clicks and buys are the same: every resample gives the same CTR etc. to both
    for metric in ("ctr", "conversion_rate", "purchases_per_session"):
        assert tuple(diff[metric]) == (0.0, 0.0, 0.0), metric
    same = paired_session_difference(a, a, n_boot=500, seed=0)
    assert all(tuple(iv) == (0.0, 0.0, 0.0) for iv in same.values())
    with pytest.raises(InputError, match="same sessions"):
        paired_session_difference(a, a._replace(start=a.start[::-1]), n_boot=10)


def test_identical_policies_on_the_same_seeded_sessions_differ_by_zero(featurized, simulator) -> None:
    """Two instances of one policy see the same users with the same luck: the paired difference is 0."""
    env = SimulatedEnv(simulator, featurized.data.valid, dataclasses.replace(EnvConfig(), max_steps=5), histories=featurized.histories)
    first = simulate_policy(env, _recent_items_policy(), sessions=200, seed=0, batch_size=64)
    second = simulate_policy(env, _recent_items_policy(), sessions=200, seed=0, batch_size=64)
    diff = paired_session_difference(first.outcomes, second.outcomes, n_boot=500, seed=0)
    assert diff["mean_return"].low <= 0.0 <= diff["mean_return"].high and diff["mean_return"].value == 0.0
    none = simulate_policy(env, _recent_items_policy(), sessions=200, seed=0, n_boot=0)
    assert none.ci["mean_return"] == (none.mean_return, none.mean_return)


# ------------------------------------------------------------------------------------------------ rewards


def test_reward_schemes_by_hand() -> None:
    weights = np.array([1.0, 3.0, 2.5, 10.0], dtype=np.float32)
    long_tail = np.array([False, False, True, False, True])
    item = np.array([2, 3, 4, 3, -1])
    behavior = np.array([0, 3, 1, 2, -1])
    category = np.array([7, 7, 8, 9, -1])
    preferred = np.array([7, 8, 8, 9, 7])
    business = RewardModel("business_weighted", weights, long_tail, 2.0, 2.0)
    # pv + tail + preferred; buy; cart + tail + preferred; fav + preferred; nothing
    np.testing.assert_allclose(business(item, behavior, category, preferred), [5.0, 10.0, 7.0, 4.5, 0.0])
    purchase = RewardModel("purchase_binary", weights, long_tail, 2.0, 2.0)
    np.testing.assert_array_equal(purchase(item, behavior, category, preferred), [0, 1, 0, 0, 0])
    # no bonus for an empty state's "preferred" category 0
    np.testing.assert_allclose(business(np.array([3]), np.array([0]), np.array([0]), np.array([0])), [1.0])


def test_reward_model_from_config_and_long_tail() -> None:
    count = np.array([0, 50, 1, 1, 2, 3, 10, 0])  # pad, unknown, items 2..6 seen, item 7 never
    # quantile 0.5 of the seen counts (1, 1, 2, 3, 10) is 2: items with count 1 are long-tail
    np.testing.assert_array_equal(long_tail_items(count, 0.5), [0, 0, 1, 1, 0, 0, 0, 0])
    model = RewardModel.from_config(dataclasses.replace(EnvConfig(), long_tail_quantile=0.5), count)
    np.testing.assert_array_equal(model.long_tail, long_tail_items(count, 0.5))
    np.testing.assert_allclose(model.behavior_weights, [1.0, 3.0, 2.5, 10.0])
    with pytest.raises(ConfigError, match="behavior_weights"):
        RewardModel.from_config(dataclasses.replace(EnvConfig(), behavior_weights={"pv": 1.0}), count)
    with pytest.raises(ConfigError, match="env.reward"):
        RewardModel.from_config(dataclasses.replace(EnvConfig(), reward="clicks"), count)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="quantile"):
        long_tail_items(count, 1.5)


def test_preferred_category_is_the_mode_ties_to_the_most_recent() -> None:
    seqs = np.array([[0, 0, 3, 5, 3, 5], [0, 0, 0, 0, 0, 0], [4, 4, 7, 9, 9, 4], [0, 0, 0, 0, 0, 6]])
    np.testing.assert_array_equal(preferred_category(seqs), [5, 0, 4, 6])


def test_bad_env_inputs_are_clear_errors(featurized, simulator) -> None:
    with pytest.raises(ConfigError, match="env.k"):
        SimulatedEnv(simulator, featurized.data.valid, dataclasses.replace(EnvConfig(), k=0), histories=featurized.histories)
    env = SimulatedEnv(simulator, featurized.data.valid, histories=featurized.histories)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.arange(2, 12))
    env.reset(seed=0)
    with pytest.raises(InputError, match="outside"):
        env.step(np.full(10, featurized.data.n_items + 5))
    with pytest.raises(InputError, match="LogReplayEnv or SimulatedEnv"):
        simulate_policy(object(), lambda s: s.item_seq, sessions=1, seed=0)  # type: ignore[arg-type]
