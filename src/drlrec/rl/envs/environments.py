"""The environments: one vectorized session core (`start_batch`, `batch_states`, `step_batch`) under
LogReplayEnv (the logs) and SimulatedEnv (the user simulator), and the factories that build them from
the featurize outputs."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from drlrec.config import EnvConfig, FeaturizeConfig
from drlrec.errors import ConfigError, InputError
from drlrec.features.histories import EventHistories, tie_ranks
from drlrec.features.states import Histories, build_states
from drlrec.features.transitions import Transitions
from drlrec.models.base import FIRST_REAL_ITEM, StateBatch, item_category_map
from drlrec.rl.envs.observations import observation_space, state_to_obs
from drlrec.rl.logged import next_state_batch, state_batch
from drlrec.rl.rewards import RewardModel, preferred_category
from drlrec.rl.simulator import UserSimulator
from drlrec.schema import BUY


class StepOutcome(NamedTuple):
    """What B sessions did with their lists in one step; -1 where nothing was acted on."""

    reward: np.ndarray  # [B] float32
    item: np.ndarray  # [B] int64 item acted on
    behavior: np.ndarray  # [B] int8 behaviour code
    clicked: np.ndarray  # [B] bool interacted with a recommended item (any behaviour)
    bought: np.ndarray  # [B] bool bought a recommended item
    terminated: np.ndarray  # [B] bool the session ended (user left / logged sequence over)
    truncated: np.ndarray  # [B] bool the session hit max_steps
    active: np.ndarray  # [B] bool the session was still running at this step


@dataclass
class SessionBatch:
    """The running sessions of a batch: one row per session (mutated by `step_batch`)."""

    index: np.ndarray  # [B] int64: SimulatedEnv start transition / LogReplayEnv current transition
    steps: np.ndarray  # [B] int64 steps taken
    finished: np.ndarray  # [B] bool
    terminated: np.ndarray  # [B] bool finished by leaving / by the end of the logged sequence
    states: StateBatch | None = None  # SimulatedEnv only: the current states
    histories: Histories | None = None  # SimulatedEnv only: each session's whole history (logged + simulated)
    clock: np.ndarray | None = None  # SimulatedEnv only: [B] int64 decision time of each current state


def _check_config(cfg: EnvConfig) -> None:
    if cfg.k < 1:
        raise ConfigError(f"env.k must be >= 1 (got {cfg.k})")
    if cfg.max_steps < 1:
        raise ConfigError(f"env.max_steps must be >= 1 (got {cfg.max_steps})")
    if cfg.step_seconds < 0:
        raise ConfigError(f"env.step_seconds must be >= 0 (got {cfg.step_seconds})")


class _SessionEnv(gym.Env, abc.ABC):
    """The gymnasium face of a vectorized session core (B = 1, randomness from `self.np_random`)."""

    metadata: dict[str, Any] = {"render_modes": []}
    cfg: EnvConfig
    item_category: np.ndarray
    n_items: int

    def _init_spaces(self, n_items: int, n_categories: int, seq_len: int) -> None:
        self.n_items = n_items
        self.observation_space = observation_space(n_items, n_categories, seq_len)
        self.action_space = spaces.MultiDiscrete(np.full(self.cfg.k, n_items, dtype=np.int64))
        self._session: SessionBatch | None = None

    # the vectorized core every subclass provides (LogReplayEnv, SimulatedEnv)
    @abc.abstractmethod
    def start_batch(self, n: int, rng: np.random.Generator, index: np.ndarray | None = None) -> SessionBatch:
        """Start `n` sessions (from the logged states at `index`, default drawn with `rng`)."""

    @abc.abstractmethod
    def batch_states(self, session: SessionBatch) -> StateBatch:
        """The current state of every session in the batch."""

    @abc.abstractmethod
    def step_batch(self, session: SessionBatch, items: np.ndarray, rng: np.random.Generator) -> StepOutcome:
        """Show each running session its list `items` [B, K]; advance the sessions in place."""

    def _check_items(self, items: np.ndarray, batch: int) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64)
        if items.ndim != 2 or items.shape[0] != batch or items.shape[1] < 1:
            raise InputError(f"a batch of lists must be [B, K] with B = {batch} (got {items.shape})")
        if items.size and items.max() >= self.n_items:
            raise InputError(f"item index {int(items.max())} outside the catalogue of {self.n_items}")
        return items

    # gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Open one session; options={"index": i} picks its start (see the subclass), otherwise random."""
        super().reset(seed=seed)
        index = None if not options or "index" not in options else np.array([int(options["index"])])
        self._session = self.start_batch(1, self.np_random, index)
        return state_to_obs(self.batch_states(self._session)), {"index": int(self._session.index[0])}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Show one list; returns the next observation, reward, terminated, truncated and what the user did."""
        if self._session is None or self._session.finished[0]:
            raise RuntimeError("the episode is over or was never started: call reset()")
        items = np.asarray(action, dtype=np.int64).reshape(1, -1)
        out = self.step_batch(self._session, items, self.np_random)
        info = {
            "clicked": bool(out.clicked[0]),
            "bought": bool(out.bought[0]),
            "item": int(out.item[0]),
            "behavior": int(out.behavior[0]),
            "step": int(self._session.steps[0]),
        }
        obs = state_to_obs(self.batch_states(self._session))
        return obs, float(out.reward[0]), bool(out.terminated[0]), bool(out.truncated[0]), info


class LogReplayEnv(_SessionEnv):
    """Replays one user's logged sequence within a split (an episode = that user's events in the split).

    At each step the state is the logged state; the reward is the reward scheme applied to the logged next
    item and its behaviour when the list contains it (a "hit"), else 0; the episode then moves to the logged
    next state whatever the list was. Terminated at the user's last event of the split, truncated after
    `max_steps`. reset options={"index": e} starts episode e (0-based, in split order).
    """

    def __init__(
        self,
        transitions: Transitions,
        n_items: int,
        n_categories: int,
        item_count: np.ndarray,
        item_category: np.ndarray,
        cfg: EnvConfig | None = None,
        reward: RewardModel | None = None,
    ) -> None:
        """`item_count` [n_items]: train events per item (long-tail bonus); `item_category` [n_items]: the
        category of every item (TrainingData.item_category), for the preferred-category bonus and diversity."""
        self.cfg = cfg or EnvConfig()
        _check_config(self.cfg)
        if transitions.num_transitions == 0:
            raise InputError("no transitions to replay")
        if len(item_category) != n_items or len(item_count) != n_items:
            raise InputError(f"item_count and item_category must hold one entry per item ({n_items})")
        self.transitions = transitions
        done = transitions.done
        self.episode_start = np.flatnonzero(np.concatenate([[True], done[:-1]])).astype(np.int64)  # [D]
        self.reward_model = reward or RewardModel.from_config(self.cfg, item_count)
        self.item_category = np.asarray(item_category)
        self._init_spaces(n_items, n_categories, transitions.seq_len)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_start)

    def start_batch(self, n: int, rng: np.random.Generator, index: np.ndarray | None = None) -> SessionBatch:
        """n episodes drawn uniformly (with replacement) or the episodes `index`."""
        episode = (
            rng.integers(0, self.n_episodes, size=n) if index is None else np.asarray(index, dtype=np.int64)
        )
        if episode.min(initial=0) < 0 or episode.max(initial=0) >= self.n_episodes:
            raise InputError(f"episode index outside 0..{self.n_episodes - 1}")
        return SessionBatch(
            self.episode_start[episode].copy(), np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool)
        )

    def batch_states(self, session: SessionBatch) -> StateBatch:
        """The logged state of each session (after a terminating step: the logged terminal next state)."""
        states = state_batch(self.transitions, session.index)
        ended = session.terminated
        if ended.any():
            terminal = next_state_batch(self.transitions, session.index[ended])
            for mine, theirs in zip(states, terminal, strict=True):
                mine[ended] = theirs
        return states

    def step_batch(self, session: SessionBatch, items: np.ndarray, rng: np.random.Generator) -> StepOutcome:
        t = self.transitions
        items = self._check_items(items, len(session.index))
        active = ~session.finished
        index = session.index
        logged, logged_behavior, logged_category = t.actions_at(index)  # [B] each
        logged = logged.astype(np.int64)
        hit = active & (logged >= FIRST_REAL_ITEM) & (items == logged[:, None]).any(axis=1)
        behavior = np.where(hit, logged_behavior, -1).astype(np.int8)
        item = np.where(hit, logged, -1)
        preferred = preferred_category(t.category_idx[t.state_rows(index)])
        reward = self.reward_model(item, behavior, logged_category, preferred)
        session.steps += active
        terminated = active & t.done[index]
        truncated = active & ~terminated & (session.steps >= self.cfg.max_steps)
        session.finished |= terminated | truncated
        session.terminated |= terminated
        # the logged next state is the next transition's state unless the user's sequence ended here
        session.index = np.where(active & ~terminated, index + 1, index)
        return StepOutcome(
            reward, item, behavior, hit, hit & (behavior == BUY), terminated, truncated, active
        )


class SimulatedEnv(_SessionEnv):
    """A simulated user answers the lists (drlrec.rl.simulator).

    A session starts at a logged event of `start` (a uniformly drawn transition, e.g. of the valid split),
    with the user's whole history before it, read from the events (`histories`); its state there is the
    logged state. Each step the user acts on at most one recommended item with one behaviour
    (UserSimulator.sample), `env.step_seconds` after the current state's time; the event joins the history
    and the state is built again by the one state builder (features.states.build_states), or it stays as
    it was when the user ignored the list. The user leaves with the simulator's leave probability
    (terminated), or the session is truncated after `max_steps`. reset options={"index": i} starts from
    transition i of `start`.
    """

    def __init__(
        self,
        simulator: UserSimulator,
        start: Transitions,
        cfg: EnvConfig | None = None,
        featurize_cfg: FeaturizeConfig | None = None,
        reward: RewardModel | None = None,
        *,
        histories: EventHistories,
    ) -> None:
        """`histories`: the events of (at least) the users of `start`, from the events table featurize read
        (EventHistories.load(paths.events, ...) with the train vocabularies)."""
        self.cfg = cfg or EnvConfig()
        _check_config(self.cfg)
        if start.num_transitions == 0:
            raise InputError("no logged states to start simulated sessions from")
        self.simulator = simulator
        self.start = start
        self.histories = histories
        self.start_tie = tie_ranks(start.user_id, start.timestamp)  # [T] names each start event exactly
        self.featurize_cfg = featurize_cfg or FeaturizeConfig()
        self.item_category = simulator.item_category
        self.reward_model = reward or RewardModel.from_config(self.cfg, simulator.stats.item_count)
        self._init_spaces(simulator.n_items, simulator.n_categories, start.seq_len)

    def _build(self, histories: Histories, now: np.ndarray) -> StateBatch:
        return build_states(histories, self.simulator.stats, self.featurize_cfg, self.start.seq_len, now=now)

    def start_batch(self, n: int, rng: np.random.Generator, index: np.ndarray | None = None) -> SessionBatch:
        """n sessions from uniformly drawn logged states, or from the transitions `index`."""
        count = self.start.num_transitions
        index = rng.integers(0, count, size=n) if index is None else np.asarray(index, dtype=np.int64)
        if index.min(initial=0) < 0 or index.max(initial=0) >= count:
            raise InputError(f"start index outside 0..{count - 1}")
        action, _, _ = self.start.actions_at(index)
        now = np.asarray(self.start.timestamp[index], dtype=np.int64)
        histories = self.histories.before(self.start.user_id[index], now, self.start_tie[index], expect_item=action)
        return SessionBatch(
            index.copy(), np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool),
            self._build(histories, now), histories, now.copy(),
        )

    def batch_states(self, session: SessionBatch) -> StateBatch:
        assert session.states is not None
        return session.states

    def advance(
        self, session: SessionBatch, item: np.ndarray, behavior: np.ndarray, timestamp: np.ndarray,
        now: np.ndarray | None = None,
    ) -> None:
        """Record each session's new event (`item` [B], -1 = none: that session is unchanged) with its
        behaviour code and time [B], and build the states of the sessions that moved, at the decision times
        `now` [B] (default: the event's own time, as the simulation does; featurize measures a logged state
        at the time of the next event)."""
        assert session.states is not None and session.histories is not None and session.clock is not None
        item = np.asarray(item, dtype=np.int64)
        moved = np.flatnonzero(item >= 0)
        if len(moved) == 0:
            return
        category = self.item_category[item[moved]].astype(np.int64)
        when = np.asarray(timestamp, dtype=np.int64)[moved]
        session.histories = session.histories.append(
            moved, item[moved], category, self.histories.raw_category(category),
            np.asarray(behavior)[moved], when,
        )
        at = when if now is None else np.asarray(now, dtype=np.int64)[moved]
        session.clock[moved] = at
        fresh = self._build(session.histories.take(moved), at)
        states = StateBatch(*(np.array(a, copy=True) for a in session.states))  # earlier states stay as they were
        for mine, theirs in zip(states, fresh, strict=True):
            mine[moved] = theirs
        session.states = states

    def step_batch(self, session: SessionBatch, items: np.ndarray, rng: np.random.Generator) -> StepOutcome:
        assert session.states is not None and session.clock is not None
        items = self._check_items(items, len(session.index))
        active = ~session.finished
        response = self.simulator.sample(session.states, items, rng, session_position=session.steps)
        item = np.where(active, response.item, -1)
        behavior = np.where(active, response.behavior, -1).astype(np.int8)
        category = np.where(item >= 0, self.item_category[np.maximum(item, 0)], -1)
        preferred = preferred_category(session.states.category_seq)
        reward = self.reward_model(item, behavior, category, preferred)
        self.advance(session, item, behavior, session.clock + int(round(self.cfg.step_seconds)))
        session.steps += active
        terminated = active & response.left
        truncated = active & ~terminated & (session.steps >= self.cfg.max_steps)
        session.finished |= terminated | truncated
        session.terminated |= terminated
        clicked = item >= 0
        return StepOutcome(
            reward, item, behavior, clicked, clicked & (behavior == BUY), terminated, truncated, active
        )


def log_replay_env(features_dir: str | Path, split: str, cfg: EnvConfig | None = None) -> LogReplayEnv:
    """A LogReplayEnv over `split` of what `drlrec featurize` wrote (rewards use the train item counts)."""
    from drlrec.features.featurize import TrainGlobals
    from drlrec.features.transitions import load_split

    globals_ = TrainGlobals.load(features_dir)
    n_items = globals_.item_vocab.size
    replayed = load_split(features_dir, split)
    known = [load_split(features_dir, name) for name in ("train", "valid") if name != split] + [replayed]
    return LogReplayEnv(
        replayed,
        n_items,
        globals_.category_vocab.size,
        globals_.stats.item_count,
        item_category_map(known, n_items),
        cfg,
    )


def simulated_env(
    features_dir: str | Path,
    events_path: str | Path,
    simulator: UserSimulator,
    cfg: EnvConfig | None = None,
    featurize_cfg: FeaturizeConfig | None = None,
) -> SimulatedEnv:
    """A SimulatedEnv starting from the logged states of env.start_split in `features_dir`, with the
    histories of that split's users read from `events_path` (the events featurize read: paths.events)."""
    from drlrec.features.featurize import TrainGlobals
    from drlrec.features.transitions import load_split

    cfg = cfg or EnvConfig()
    start = load_split(features_dir, cfg.start_split)
    globals_ = TrainGlobals.load(features_dir)
    histories = EventHistories.load(
        events_path, globals_.item_vocab, globals_.category_vocab, users=np.unique(start.user_id)
    )
    return SimulatedEnv(simulator, start, cfg, featurize_cfg, histories=histories)
