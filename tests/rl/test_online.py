"""Online mode: Double DQN against the SimulatedEnv learns (greedy return rises), explores as configured."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from drlrec.config import EnvConfig, ModelConfig, TrainConfig
from drlrec.errors import ConfigError
from drlrec.models.base import FIRST_REAL_ITEM
from drlrec.models.dqn_lstm import DQNLSTM
from drlrec.rl.dqn import epsilon_greedy_lists, train_online
from drlrec.rl.envs import SimulatedEnv

# measured with the additive copy term (the mixture repeats from step 0) and the repeat prior of the time
# (repeat_init 4, no shared factors: the defaults until 2026-12-07), which the tests below rely on
SMALL = ModelConfig(item_dim=32, category_dim=8, behavior_dim=4, hidden=64, fc=(64, 64),
                    repeat_mode="additive", repeat_init=4.0, repeat_factors=False)
# learning from scratch: no repeat prior (with it the untrained greedy lists already re-show the user's
# own items, which the simulator rewards; see test_online_training_keeps_the_best_greedy_weights)
SCRATCH = dataclasses.replace(SMALL, repeat_init=0.0)
ONLINE = dataclasses.replace(
    TrainConfig(),
    mode="online",
    episodes=4096,
    online_envs=256,
    online_warmup=512,
    online_updates_per_step=2,
    online_eval_every=2,
    online_eval_sessions=256,
    candidates=1024,
    batch_size=128,
    threads=2,
    device="cpu",
)


def _env(featurized, simulator) -> SimulatedEnv:
    return SimulatedEnv(simulator, featurized.data.train, dataclasses.replace(EnvConfig(), max_steps=20), histories=featurized.histories)


def test_online_training_raises_the_greedy_episode_return(featurized, simulator) -> None:
    torch.manual_seed(0)
    data = featurized.data
    model = DQNLSTM(data.n_items, data.n_categories, SCRATCH, score_with="ce")
    tracked = []
    result = train_online(model, _env(featurized, simulator), ONLINE, seed=0, track=lambda m, s: tracked.append((s, m)))
    greedy = [e["online/greedy_return"] for e in result.evaluations]
    # evaluations: before any update, then every 2 rounds; same seeded sessions each time, epsilon 0
    assert len(greedy) == 1 + ONLINE.episodes // ONLINE.online_envs // ONLINE.online_eval_every
    assert result.history["episodes"][-1] == ONLINE.episodes
    assert greedy[-1] > greedy[0] + 0.3, greedy
    assert np.mean(greedy[-3:]) > 2 * np.mean(greedy[:3]), greedy
    assert result.steps_done > 0 and result.history["train/epsilon"][-1] < result.history["train/epsilon"][0]
    assert any("online/greedy_return" in m for _, m in tracked) and any("train/episode_reward" in m for _, m in tracked)


def test_online_training_keeps_the_best_greedy_weights(featurized, simulator) -> None:
    """The model leaves train_online with the weights of its best greedy evaluation: re-running that
    evaluation on the returned model gives the best return seen, whichever round it came from."""
    from drlrec.rl.envs import model_policy, simulate_policy

    torch.manual_seed(0)
    data = featurized.data
    model = DQNLSTM(data.n_items, data.n_categories, SMALL, score_with="ce")
    cfg = dataclasses.replace(ONLINE, episodes=1024, online_eval_every=1)
    env = _env(featurized, simulator)
    result = train_online(model, env, cfg, seed=0)
    greedy = [e["online/greedy_return"] for e in result.evaluations]
    assert len(set(greedy)) > 1, greedy  # the weights did change between evaluations
    core = getattr(env, "unwrapped", env)
    again = simulate_policy(core, model_policy(model, core.cfg.k), cfg.online_eval_sessions, seed=1)
    assert again.mean_return == pytest.approx(max(greedy)) and result.best_metric == max(greedy)
    assert result.best_step == [e["episodes"] for e in result.evaluations][int(np.argmax(greedy))]


def test_epsilon_greedy_lists_explore_from_history_or_catalogue() -> None:
    rng = np.random.default_rng(0)
    greedy = np.full((3, 6), 99)
    history = np.array([[0, 0, 5, 7, 9], [0, 0, 0, 0, 0], [11, 12, 13, 14, 1]])
    assert (epsilon_greedy_lists(greedy, 0.0, 1000, rng, history, 1.0) == 99).all()
    lists = epsilon_greedy_lists(np.full((3, 2000), 99), 1.0, 1000, rng, history, 1.0)
    assert set(np.unique(lists[0])) == {5, 7, 9}  # only real items of the row's own history
    assert set(np.unique(lists[2])) == {11, 12, 13, 14}  # unknown (1) is never explored
    assert lists[1].min() >= FIRST_REAL_ITEM and len(np.unique(lists[1])) > 500  # empty history: catalogue
    uniform = epsilon_greedy_lists(np.full((2, 4000), 99), 1.0, 1000, rng, history[:2], 0.0)
    assert uniform.min() >= FIRST_REAL_ITEM and uniform.max() < 1000 and len(np.unique(uniform[0])) > 900
    half = epsilon_greedy_lists(np.full((1, 4000), 99), 0.5, 1000, rng)
    assert 0.45 < (half == 99).mean() < 0.55


def test_online_mode_rejects_n_step_returns(featurized, simulator) -> None:
    model = DQNLSTM(featurized.data.n_items, featurized.data.n_categories, SMALL)
    with pytest.raises(ConfigError, match="n_step"):
        train_online(model, _env(featurized, simulator), dataclasses.replace(ONLINE, n_step=3), seed=0)
