"""LogReplayEnv and SimulatedEnv (gymnasium API, check_env), state advance, simulate_policy, reward schemes."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from drlrec.config import EnvConfig, FeaturizeConfig
from drlrec.errors import ConfigError, InputError
from drlrec.features.profile import PROFILE_FEATURES
from drlrec.models.base import StateBatch
from drlrec.rl.envs import (
    LogReplayEnv,
    SimulatedEnv,
    advance_states,
    intra_list_diversity,
    obs_to_state_batch,
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
        check_env(SimulatedEnv(simulator, featurized.data.valid))


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
        np.testing.assert_array_equal(obs["item_seq"], t.item_idx[t.state_index[i]])
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
    env = SimulatedEnv(simulator, featurized.data.valid, dataclasses.replace(EnvConfig(), max_steps=50))
    assert _trajectory(env, 11) == _trajectory(env, 11)
    assert any(_trajectory(env, 11) != _trajectory(env, seed) for seed in range(12, 16))


def test_simulated_sessions_terminate_when_the_user_leaves(featurized, simulator) -> None:
    env = SimulatedEnv(simulator, featurized.data.valid, dataclasses.replace(EnvConfig(), max_steps=1000))
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
    env = SimulatedEnv(simulator, featurized.data.valid)
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


def test_advance_states_reproduces_the_logged_next_state(featurized) -> None:
    """Appending the logged action to a logged state gives the logged next state: sequences exactly, the
    step encoding except the time gap, the count-based profile features exactly."""
    t = featurized.data.valid
    index = np.flatnonzero(~t.done)
    states = state_batch(t, index)
    item, category = t.action_item[index], t.action_category[index]
    behavior = t.action_behavior[index]
    advanced = advance_states(
        states, item, category, behavior, featurized.globals.stats, FeaturizeConfig(), step_seconds=60.0
    )
    logged = next_state_batch(t, index)
    np.testing.assert_array_equal(advanced.item_seq, logged.item_seq)
    np.testing.assert_array_equal(advanced.category_seq, logged.category_seq)
    np.testing.assert_array_equal(advanced.behavior_seq, logged.behavior_seq)
    new_step, logged_step = advanced.step_features[:, -1], logged.step_features[:, -1]
    same_columns = [c for c in range(20) if c != 10]  # 10 = log time gap: the simulation uses step_seconds
    np.testing.assert_allclose(new_step[:, same_columns], logged_step[:, same_columns], atol=1e-5)
    exact = [
        PROFILE_FEATURES.index(n)
        for n in ("buy_rate", "cart_rate", "fav_rate", "view_rate", "has_purchases", "purchase_density")
    ]
    np.testing.assert_allclose(advanced.profile[:, exact], logged.profile[:, exact], atol=1e-5)
    # the state holds the whole history while it is shorter than seq_len: diversity and top share exact
    short = t.state_index[index, 1] == 0
    assert short.any()
    for name in ("category_diversity", "top_category_ratio"):
        col = PROFILE_FEATURES.index(name)
        np.testing.assert_allclose(advanced.profile[short, col], logged.profile[short, col], atol=1e-5)


# ---------------------------------------------------------------------------------------- simulate_policy


def test_simulate_policy_is_seeded_and_ranks_policies_sensibly(featurized, simulator) -> None:
    n_items = featurized.data.n_items
    simulated = SimulatedEnv(simulator, featurized.data.valid)
    replay = _replay(featurized)
    for env in (simulated, replay):
        recent = simulate_policy(env, _recent_items_policy(), sessions=300, seed=0, batch_size=128)
        again = simulate_policy(env, _recent_items_policy(), sessions=300, seed=0, batch_size=128)
        assert recent == again
        random = simulate_policy(env, _random_policy(n_items), sessions=300, seed=0)
        # measured on the simulator: CTR 0.18 vs 0.002; replay 0.11 vs 0.003
        assert recent.ctr > 0.05 and recent.ctr > 10 * random.ctr, (type(env).__name__, recent, random)
        assert recent.mean_return > random.mean_return
        assert random.coverage > recent.coverage
        for result in (recent, random):
            assert result.sessions == 300 and result.steps >= 300
            assert 0 <= result.ctr <= 1 and 0 <= result.conversion_rate <= 1
            assert 0 <= result.intra_list_diversity <= 1 and 0 < result.coverage <= 1
            assert result.mean_length == pytest.approx(result.steps / 300)


def test_simulate_policy_coverage_and_diversity_by_hand(featurized, simulator) -> None:
    env = SimulatedEnv(simulator, featurized.data.valid)
    items = np.array([2, 3, 4, 5])
    result = simulate_policy(env, lambda s: np.tile(items, (s.batch_size, 1)), sessions=50, seed=0)
    assert result.coverage == pytest.approx(4 / (featurized.data.n_items - 2))
    category = simulator.item_category[items]
    differ = sum(category[a] != category[b] for a in range(4) for b in range(4) if a != b) / 12
    assert result.intra_list_diversity == pytest.approx(differ)
    np.testing.assert_allclose(
        intra_list_diversity(np.array([[2, 2], [2, 3]]), np.array([0, 0, 7, 8])), [0.0, 1.0]
    )


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
        SimulatedEnv(simulator, featurized.data.valid, dataclasses.replace(EnvConfig(), k=0))
    env = SimulatedEnv(simulator, featurized.data.valid)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.arange(2, 12))
    env.reset(seed=0)
    with pytest.raises(InputError, match="outside"):
        env.step(np.full(10, featurized.data.n_items + 5))
    with pytest.raises(InputError, match="LogReplayEnv or SimulatedEnv"):
        simulate_policy(object(), lambda s: s.item_seq, sessions=1, seed=0)  # type: ignore[arg-type]
