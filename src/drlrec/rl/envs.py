"""Gymnasium environments over the logs (LogReplayEnv) and over the user simulator (SimulatedEnv), and
`simulate_policy`, which runs many sessions at once to measure CTR, conversion, return, diversity, coverage,
with bootstrap CIs over sessions; policies run with the same seed meet the same sessions, so
`paired_session_difference` compares them session by session.

Both environments share one vectorized core: `start_batch(n, rng)` opens n sessions, `batch_states` gives
their states as a StateBatch and `step_batch(handle, items [B, K], rng)` answers B lists at once. The
gymnasium `reset`/`step` are that core with B = 1, driven by the environment's own `np_random`, so a seed
fixes an episode.

Observation (one state, N = seq_len): a Dict of item_seq, category_seq, behavior_seq ([N] int64, left-padded
with 0, most recent last), step_features ([N, 20] float32) and profile ([10] float32); `obs_to_state_batch`
stacks observations into the StateBatch every model scores. Action: the recommended list, K item indices
(MultiDiscrete([n_items] * K)); padding/unknown items and repeats within a list are never acted on.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from drlrec.config import EnvConfig, FeaturizeConfig
from drlrec.errors import ConfigError, InputError
from drlrec.evaluate import Interval
from drlrec.features.profile import PROFILE_FEATURES
from drlrec.features.steps import STEP_DIM, USER_CONTEXT_COLUMNS, TrainStats, step_features
from drlrec.features.transitions import Transitions
from drlrec.models.base import FIRST_REAL_ITEM, StateBatch, item_category_map
from drlrec.rl.logged import next_state_batch, state_batch
from drlrec.rl.rewards import RewardModel, preferred_category
from drlrec.rl.simulator import UserSimulator
from drlrec.schema import BEHAVIORS, BUY

OBS_KEYS: tuple[str, ...] = ("item_seq", "category_seq", "behavior_seq", "step_features", "profile")
_P = {name: i for i, name in enumerate(PROFILE_FEATURES)}
_SECONDS_PER_DAY = 86400.0

PolicyFn = Callable[[StateBatch], np.ndarray]


# ---------------------------------------------------------------------------------------- observations


def observation_space(n_items: int, n_categories: int, seq_len: int) -> spaces.Dict:
    """The Dict space of one state (see the module doc)."""
    return spaces.Dict(
        {
            "item_seq": spaces.Box(0, n_items - 1, shape=(seq_len,), dtype=np.int64),
            "category_seq": spaces.Box(0, n_categories - 1, shape=(seq_len,), dtype=np.int64),
            "behavior_seq": spaces.Box(0, len(BEHAVIORS), shape=(seq_len,), dtype=np.int64),
            "step_features": spaces.Box(-np.inf, np.inf, shape=(seq_len, STEP_DIM), dtype=np.float32),
            "profile": spaces.Box(-np.inf, np.inf, shape=(len(PROFILE_FEATURES),), dtype=np.float32),
        }
    )


def state_to_obs(states: StateBatch, row: int = 0) -> dict[str, np.ndarray]:
    """Observation of one row of a StateBatch (copies, with the space's dtypes)."""
    return {
        "item_seq": np.asarray(states.item_seq[row], dtype=np.int64).copy(),
        "category_seq": np.asarray(states.category_seq[row], dtype=np.int64).copy(),
        "behavior_seq": np.asarray(states.behavior_seq[row], dtype=np.int64).copy(),
        "step_features": np.asarray(states.step_features[row], dtype=np.float32).copy(),
        "profile": np.asarray(states.profile[row], dtype=np.float32).copy(),
    }


def obs_to_state_batch(obs: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]) -> StateBatch:
    """Stack one observation or a sequence of them into a StateBatch (B = number of observations)."""
    batch = [obs] if isinstance(obs, Mapping) else list(obs)
    if not batch:
        raise InputError("no observations to stack")
    return StateBatch(
        item_seq=np.stack([o["item_seq"] for o in batch]).astype(np.int64),
        category_seq=np.stack([o["category_seq"] for o in batch]).astype(np.int64),
        behavior_seq=np.stack([o["behavior_seq"] for o in batch]).astype(np.int8),
        step_features=np.stack([o["step_features"] for o in batch]).astype(np.float32),
        profile=np.stack([o["profile"] for o in batch]).astype(np.float32),
    )


#: Alias: stack observations (e.g. from a vector env) into a StateBatch.
stack_obs = obs_to_state_batch


def advance_states(
    states: StateBatch,
    item: np.ndarray,
    category: np.ndarray,
    behavior: np.ndarray,
    stats: TrainStats,
    featurize_cfg: FeaturizeConfig,
    step_seconds: float,
) -> StateBatch:
    """States after each user's new event (`item` [B], -1 = no event: that row is unchanged).

    The event is appended (oldest dropped) with its 20-d step encoding from `features.steps.step_features`
    (time gap `step_seconds`, position and user context read off the profile), and the profile is moved
    forward: counts and rates exactly (the history length is recovered from actions_per_day and the
    account age); purchase density exactly when the state covers featurize.density_window events;
    category diversity and the top-category share from the categories in the state (exact while the
    state holds the whole history, otherwise an approximation).
    """
    item = np.asarray(item, dtype=np.int64)
    out = StateBatch(*(np.array(a, copy=True) for a in states))
    rows = np.flatnonzero(item >= 0)
    if len(rows) == 0:
        return out
    new_item, new_category = item[rows], np.asarray(category, dtype=np.int64)[rows]
    new_behavior = np.asarray(behavior, dtype=np.int64)[rows]
    old_category = out.category_seq[rows]  # [b, N]
    valid = out.item_seq[rows] > 0  # [b, N]
    profile = out.profile[rows].astype(np.float64)  # [b, 10]
    floor, age_scale = featurize_cfg.activity_floor_days, featurize_cfg.age_scale_days
    days = profile[:, _P["account_age"]] * age_scale
    past = np.rint(
        np.expm1(profile[:, _P["actions_per_day"]]) * np.maximum(days, floor)
    )  # [b] history length
    gap = np.where(past > 0, step_seconds, 0.0)
    steps = step_features(
        new_item,
        new_category,
        new_behavior,
        gap,
        past.astype(np.int64),
        profile[:, USER_CONTEXT_COLUMNS],
        stats,
    )  # [b, 20]

    def push(seq: np.ndarray, value: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [seq[rows, 1:], value.astype(seq.dtype).reshape(len(rows), *seq.shape[2:])[:, None]], axis=1
        )

    out.item_seq[rows] = push(out.item_seq, new_item)
    out.category_seq[rows] = push(out.category_seq, new_category)
    out.behavior_seq[rows] = push(out.behavior_seq, new_behavior + 1)
    out.step_features[rows] = push(out.step_features, steps)

    total = past + 1.0
    for name, code in (("buy_rate", BUY), ("cart_rate", 1), ("fav_rate", 2), ("view_rate", 0)):
        profile[:, _P[name]] = (profile[:, _P[name]] * past + (new_behavior == code)) / total
    window = featurize_cfg.density_window
    is_buy = new_behavior == BUY
    if out.behavior_seq.shape[1] >= window:
        profile[:, _P["purchase_density"]] = (
            np.sum(out.behavior_seq[rows, -window:] == BUY + 1, axis=1) / window
        )
    else:
        profile[:, _P["purchase_density"]] = (
            profile[:, _P["purchase_density"]] * (window - 1) / window + is_buy / window
        )
    in_state = np.sum((old_category == new_category[:, None]) & valid, axis=1)  # [b]
    distinct = profile[:, _P["category_diversity"]] * past + (in_state == 0)
    profile[:, _P["category_diversity"]] = distinct / total
    top = np.maximum(profile[:, _P["top_category_ratio"]] * past, in_state + 1)
    profile[:, _P["top_category_ratio"]] = top / total
    profile[:, _P["has_purchases"]] = np.maximum(profile[:, _P["has_purchases"]], is_buy)
    days = days + step_seconds / _SECONDS_PER_DAY
    profile[:, _P["account_age"]] = days / age_scale
    profile[:, _P["actions_per_day"]] = np.log1p(total / np.maximum(days, floor))
    out.profile[rows] = profile.astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------- shared core


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


# --------------------------------------------------------------------------------------------- replay


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


# ------------------------------------------------------------------------------------------ simulated


class SimulatedEnv(_SessionEnv):
    """A simulated user answers the lists (drlrec.rl.simulator).

    A session starts from a logged state (a uniformly drawn transition of `start`, e.g. the valid split);
    each step the user acts on at most one recommended item with one behaviour (UserSimulator.sample), the
    state advances with that event (`advance_states`) or stays as it was when the user ignored the list,
    and the user leaves with the simulator's leave probability (terminated) or the session is truncated
    after `max_steps`. reset options={"index": i} starts from transition i of `start`.
    """

    def __init__(
        self,
        simulator: UserSimulator,
        start: Transitions,
        cfg: EnvConfig | None = None,
        featurize_cfg: FeaturizeConfig | None = None,
        reward: RewardModel | None = None,
    ) -> None:
        self.cfg = cfg or EnvConfig()
        _check_config(self.cfg)
        if start.num_transitions == 0:
            raise InputError("no logged states to start simulated sessions from")
        self.simulator = simulator
        self.start = start
        self.featurize_cfg = featurize_cfg or FeaturizeConfig()
        self.item_category = simulator.item_category
        self.reward_model = reward or RewardModel.from_config(self.cfg, simulator.stats.item_count)
        self._init_spaces(simulator.n_items, simulator.n_categories, start.seq_len)

    def start_batch(self, n: int, rng: np.random.Generator, index: np.ndarray | None = None) -> SessionBatch:
        """n sessions from uniformly drawn logged states, or from the transitions `index`."""
        count = self.start.num_transitions
        index = rng.integers(0, count, size=n) if index is None else np.asarray(index, dtype=np.int64)
        if index.min(initial=0) < 0 or index.max(initial=0) >= count:
            raise InputError(f"start index outside 0..{count - 1}")
        states = state_batch(self.start, index)
        states = states._replace(
            item_seq=states.item_seq.astype(np.int64),
            category_seq=states.category_seq.astype(np.int64),
            behavior_seq=states.behavior_seq.astype(np.int8),
        )
        return SessionBatch(index.copy(), np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool), states)

    def batch_states(self, session: SessionBatch) -> StateBatch:
        assert session.states is not None
        return session.states

    def step_batch(self, session: SessionBatch, items: np.ndarray, rng: np.random.Generator) -> StepOutcome:
        assert session.states is not None
        items = self._check_items(items, len(session.index))
        active = ~session.finished
        response = self.simulator.sample(session.states, items, rng, session_position=session.steps)
        item = np.where(active, response.item, -1)
        behavior = np.where(active, response.behavior, -1).astype(np.int8)
        category = np.where(item >= 0, self.item_category[np.maximum(item, 0)], -1)
        preferred = preferred_category(session.states.category_seq)
        reward = self.reward_model(item, behavior, category, preferred)
        session.states = advance_states(
            session.states,
            item,
            category,
            behavior,
            self.simulator.stats,
            self.featurize_cfg,
            self.cfg.step_seconds,
        )
        session.steps += active
        terminated = active & response.left
        truncated = active & ~terminated & (session.steps >= self.cfg.max_steps)
        session.finished |= terminated | truncated
        session.terminated |= terminated
        clicked = item >= 0
        return StepOutcome(
            reward, item, behavior, clicked, clicked & (behavior == BUY), terminated, truncated, active
        )


# ----------------------------------------------------------------------------------------- evaluation


class SessionOutcomes(NamedTuple):
    """Per-session totals of one `simulate_policy` run; row i is the i-th seeded session, so two runs with
    the same seed, sessions and batch_size pair up row by row (`start` shows it)."""

    start: np.ndarray  # [S] int64 the logged transition the session started from
    reward: np.ndarray  # [S] float64 undiscounted return
    lists: np.ndarray  # [S] int64 lists shown (steps)
    clicks: np.ndarray  # [S] int64 interactions (any behaviour) with a recommended item
    buys: np.ndarray  # [S] int64 recommended items bought

    def totals(self) -> np.ndarray:
        """[S, 4] float64 columns (reward, lists, clicks, buys): what every SESSION_METRICS is a function
        of, summed over the sessions of a (re)sample."""
        return np.stack([self.reward, self.lists, self.clicks, self.buys], axis=1).astype(np.float64)


#: The metrics `simulate_policy` gives a bootstrap CI over sessions, each a function of session sums:
#: return and purchases per session are means; CTR = clicks / lists and conversion = buys / clicks are
#: ratios of sums (an interaction-weighted rate, not a mean of per-session rates).
SESSION_METRICS: tuple[str, ...] = ("mean_return", "ctr", "conversion_rate", "purchases_per_session")


class SimulationResult(NamedTuple):
    """Averages over the sessions `simulate_policy` ran, their CIs and the per-session outcomes."""

    sessions: int
    steps: int  # lists shown in all
    ctr: float  # interactions (any behaviour) per list shown
    conversion_rate: float  # buys per interaction
    buys_per_step: float  # buys per list shown
    mean_return: float  # undiscounted cumulative reward per session
    mean_length: float  # steps per session
    intra_list_diversity: float  # mean share of pairs of a list in different categories
    coverage: float  # distinct items recommended / recommendable items
    purchases_per_session: float  # buys per session
    ci: dict[str, tuple[float, float]]  # SESSION_METRICS -> (low, high), percentile bootstrap over sessions
    outcomes: SessionOutcomes  # per-session totals (paired comparisons: `paired_session_difference`)

    def as_dict(self) -> dict[str, float]:
        """The scalar metrics (not the CIs or the per-session outcomes)."""
        return {
            name: float(value) for name, value in self._asdict().items() if name not in ("ci", "outcomes")
        }


def _session_estimates(sums: np.ndarray, n: float) -> np.ndarray:
    """[..., len(SESSION_METRICS)] metrics from sums [..., 4] of (reward, lists, clicks, buys) over n
    sessions; a ratio with a zero denominator is 0 (as in the point estimate)."""
    reward, lists, clicks, buys = np.moveaxis(np.asarray(sums, dtype=np.float64), -1, 0)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    return np.stack([reward / n, ratio(clicks, lists), ratio(buys, clicks), buys / n], axis=-1)


def _resampled_sums(
    totals: Sequence[np.ndarray], n_boot: int, seed: int | np.random.SeedSequence, max_cells: int = 20_000_000
) -> list[np.ndarray]:
    """Column sums [n_boot, m] of each [S, m] array in `totals` over the same `n_boot` bootstrap resamples
    of the S rows: each resample is a multinomial count vector over rows (one draw applied to every array,
    which pairs them); chunks keep the count matrix under `max_cells` cells."""
    n = len(totals[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, max_cells // max(n, 1)))
    out: list[list[np.ndarray]] = [[] for _ in totals]
    for start in range(0, n_boot, chunk):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_boot - start)).astype(np.float64)  # [c, S]
        for sums, values in zip(out, totals, strict=True):
            sums.append(counts @ values)  # [c, m]
    return [np.concatenate(sums) for sums in out]


def _check_bootstrap(n_boot: int, ci: float) -> None:
    if n_boot < 0:
        raise ConfigError(f"bootstrap resamples must be >= 0 (got {n_boot})")
    if not 0.0 < ci < 1.0:
        raise ConfigError(f"the confidence level must be in (0, 1) (got {ci})")


def session_bootstrap(
    outcomes: SessionOutcomes, n_boot: int, ci: float = 0.95, seed: int | np.random.SeedSequence = 0
) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap CI of each SESSION_METRICS, resampling whole sessions with replacement (a
    resample's CTR is its clicks over its lists); (point, point) when n_boot is 0 or there is one session."""
    _check_bootstrap(n_boot, ci)
    totals = outcomes.totals()
    n = len(totals)
    if n == 0:
        raise InputError("no sessions to bootstrap")
    point = _session_estimates(totals.sum(axis=0), n)
    if n_boot == 0 or n == 1:
        return {m: (float(v), float(v)) for m, v in zip(SESSION_METRICS, point, strict=True)}
    [sums] = _resampled_sums([totals], n_boot, seed)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(_session_estimates(sums, n), [alpha, 1.0 - alpha], axis=0)
    return {m: (float(a), float(b)) for m, a, b in zip(SESSION_METRICS, low, high, strict=True)}


def paired_session_difference(
    a: SessionOutcomes, b: SessionOutcomes, n_boot: int, ci: float = 0.95, seed: int | np.random.SeedSequence = 0
) -> dict[str, Interval]:
    """Each SESSION_METRICS of run `a` minus that of run `b`, two policies on the SAME sessions, with a
    paired percentile-bootstrap CI: every resample draws one multiset of sessions and applies it to both
    runs, so what the sessions share (start state, the user's random draws) cancels out of the difference."""
    _check_bootstrap(n_boot, ci)
    if a.start.shape != b.start.shape or not np.array_equal(a.start, b.start):
        raise InputError(
            "paired runs must be on the same sessions (same seed, sessions and batch_size): their starts differ"
        )
    totals_a, totals_b = a.totals(), b.totals()
    n = len(totals_a)
    if n == 0:
        raise InputError("no sessions to compare")
    point = _session_estimates(totals_a.sum(axis=0), n) - _session_estimates(totals_b.sum(axis=0), n)
    if n_boot == 0 or n == 1:
        return {m: Interval(float(v), float(v), float(v)) for m, v in zip(SESSION_METRICS, point, strict=True)}
    sums_a, sums_b = _resampled_sums([totals_a, totals_b], n_boot, seed)
    diff = _session_estimates(sums_a, n) - _session_estimates(sums_b, n)  # [n_boot, m]
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(diff, [alpha, 1.0 - alpha], axis=0)
    return {
        m: Interval(float(v), float(lo), float(hi))
        for m, v, lo, hi in zip(SESSION_METRICS, point, low, high, strict=True)
    }


def intra_list_diversity(items: np.ndarray, item_category: np.ndarray) -> np.ndarray:
    """[B] share of the K(K-1) ordered pairs of each list [B, K] whose categories differ (0 when K < 2)."""
    items = np.asarray(items, dtype=np.int64)
    k = items.shape[1]
    if k < 2:
        return np.zeros(len(items))
    category = item_category[np.clip(items, 0, len(item_category) - 1)]  # [B, K]
    differ = category[:, :, None] != category[:, None, :]  # [B, K, K]
    return differ.sum(axis=(1, 2)) / (k * (k - 1))


def _session_rows(session: SessionBatch, lo: int, hi: int) -> SessionBatch:
    """Rows lo:hi of a batch of sessions, as a batch of its own (copies: step_batch mutates it)."""
    states = None if session.states is None else StateBatch(*(np.array(a[lo:hi]) for a in session.states))
    return SessionBatch(
        session.index[lo:hi].copy(),
        session.steps[lo:hi].copy(),
        session.finished[lo:hi].copy(),
        session.terminated[lo:hi].copy(),
        states,
    )


def simulate_policy(
    env: gym.Env,
    policy_fn: PolicyFn,
    sessions: int,
    seed: int,
    batch_size: int = 1024,
    n_boot: int = 1000,
    ci: float = 0.95,
) -> SimulationResult:
    """Run `sessions` sessions of `policy_fn` (StateBatch -> [B, K] items, e.g. `model_policy(model, k)`)
    on a LogReplayEnv or SimulatedEnv, `batch_size` sessions stepping together; same seed, same result.

    Common random numbers: the start states of all sessions are drawn first, then each batch steps with its
    own seeded stream (the first batch continues the starts' stream), of which every session uses the same
    draws at the same step whatever the policy (the simulator draws for every row of the batch each step,
    finished or not). So every policy run with the same seed, sessions and batch_size meets the same users
    in the same states with the same luck, and `paired_session_difference` compares two runs session by
    session. The policy scores only the sessions still running. CIs (`ci` level, `n_boot` resamples of
    sessions, 0 = none): `session_bootstrap`."""
    core = getattr(env, "unwrapped", env)
    if not isinstance(core, _SessionEnv):
        raise InputError(f"simulate_policy needs a LogReplayEnv or SimulatedEnv (got {type(core).__name__})")
    if sessions < 1:
        raise ConfigError(f"sessions must be >= 1 (got {sessions})")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1 (got {batch_size})")
    _check_bootstrap(n_boot, ci)
    root = np.random.SeedSequence(int(seed), spawn_key=(103,))
    first = np.random.default_rng(root)  # the starts, then the first batch's steps (the sessions of old runs)
    boot_seed, *later = root.spawn(-(-sessions // batch_size))
    every = core.start_batch(sessions, first)
    start = every.index.copy()
    reward = np.zeros(sessions)
    lists = np.zeros(sessions, dtype=np.int64)
    clicks = np.zeros(sessions, dtype=np.int64)
    buys = np.zeros(sessions, dtype=np.int64)
    shown = np.zeros(core.n_items, dtype=bool)
    diversity = 0.0
    for lo, rng in zip(range(0, sessions, batch_size), [first, *map(np.random.default_rng, later)], strict=True):
        hi = min(lo + batch_size, sessions)
        session = _session_rows(every, lo, hi)
        while not session.finished.all():
            active = ~session.finished
            states = core.batch_states(session)
            acting = np.asarray(policy_fn(StateBatch(*(a[active] for a in states))), dtype=np.int64)
            if acting.ndim != 2 or acting.shape[0] != int(active.sum()):
                raise InputError(
                    f"policy_fn must return [B, K] items with B = {int(active.sum())} (got {acting.shape})"
                )
            items = np.zeros((hi - lo, acting.shape[1]), dtype=np.int64)  # finished rows: padding, ignored
            items[active] = acting
            out = core.step_batch(session, items, rng)
            reward[lo:hi] += out.reward
            clicks[lo:hi] += out.clicked
            buys[lo:hi] += out.bought
            shown[np.clip(acting, 0, core.n_items - 1).ravel()] = True
            diversity += float(intra_list_diversity(acting, core.item_category).sum())
        lists[lo:hi] = session.steps
    outcomes = SessionOutcomes(start, reward, lists, clicks, buys)
    mean_return, ctr, conversion, purchases = _session_estimates(outcomes.totals().sum(axis=0), sessions)
    steps = int(lists.sum())
    recommendable = max(core.n_items - FIRST_REAL_ITEM, 1)
    return SimulationResult(
        sessions=sessions,
        steps=steps,
        ctr=float(ctr),
        conversion_rate=float(conversion),
        buys_per_step=int(buys.sum()) / max(steps, 1),
        mean_return=float(mean_return),
        mean_length=steps / sessions,
        intra_list_diversity=diversity / max(steps, 1),
        coverage=float(shown[FIRST_REAL_ITEM:].sum()) / recommendable,
        purchases_per_session=float(purchases),
        ci=session_bootstrap(outcomes, n_boot, ci, boot_seed),
        outcomes=outcomes,
    )


def _with_ci(value: float, interval: tuple[float, float], digits: int) -> str:
    return f"{value:.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def simulation_table(results: Mapping[str, SimulationResult], notes: Mapping[str, str] | None = None) -> str:
    """Markdown table of policies run on the same sessions: return, CTR, conversion and purchases per
    session each with its CI (`SimulationResult.ci`), mean length and coverage; `notes` per policy."""
    notes = notes or {}
    lines = [
        "| policy | return | CTR | conversion | purchases / session | mean length | coverage | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {_with_ci(r.mean_return, r.ci['mean_return'], 3)} | {_with_ci(r.ctr, r.ci['ctr'], 4)} "
            f"| {_with_ci(r.conversion_rate, r.ci['conversion_rate'], 4)} "
            f"| {_with_ci(r.purchases_per_session, r.ci['purchases_per_session'], 3)} "
            f"| {r.mean_length:.2f} | {r.coverage:.4f} | {notes.get(name, '')} |"
        )
    return "\n".join(lines) + "\n"


def paired_verdict(diff: Interval, a: str, b: str, ci: float = 0.95) -> str:
    """One sentence on whether policy `a`'s mean return exceeds `b`'s, from their paired difference."""
    cell = f"{diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
    level = f"{ci:.0%} CI"
    if diff.low > 0:
        return f"{a} earns a higher return than {b}: {a} - {b} = {cell} ({level} excludes 0)."
    if diff.high < 0:
        return f"{a} earns a lower return than {b}: {a} - {b} = {cell} ({level} excludes 0)."
    return (
        f"{a}'s return does not detectably exceed {b}'s: {a} - {b} = {cell} ({level} contains 0)."
    )


def model_policy(model: Any, k: int) -> PolicyFn:
    """A policy_fn from any Recommender: its top-k list for each state."""
    return lambda states: model.recommend(states, k)[0]


def recent_items_policy(k: int):
    """Reference policy for the simulator: the user's k most recent distinct items, newest first."""
    def policy(states) -> np.ndarray:
        seq = np.asarray(states.item_seq, dtype=np.int64)[:, ::-1]  # newest first
        b, n = seq.shape
        # keep the first occurrence of each item in the row (vectorized: sort by item, mark run starts)
        order = np.argsort(seq, axis=1, kind="stable")
        sorted_items = np.take_along_axis(seq, order, axis=1)
        first = np.ones_like(seq, dtype=bool)
        first[:, 1:] = sorted_items[:, 1:] != sorted_items[:, :-1]
        keep = np.zeros_like(first)
        np.put_along_axis(keep, order, first, axis=1)
        keep &= seq >= FIRST_REAL_ITEM
        # stable-compact the kept items to the front, pad with 0 (never acted on)
        position = np.where(keep, np.arange(n)[None, :], n + np.arange(n)[None, :])
        compact = np.take_along_axis(np.where(keep, seq, 0), np.argsort(position, axis=1), axis=1)
        out = np.zeros((b, k), dtype=np.int64)
        width = min(k, n)
        out[:, :width] = compact[:, :width]
        return out

    return policy


# ------------------------------------------------------------------------------------------- factories


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
    simulator: UserSimulator,
    cfg: EnvConfig | None = None,
    featurize_cfg: FeaturizeConfig | None = None,
) -> SimulatedEnv:
    """A SimulatedEnv starting from the logged states of env.start_split in `features_dir`."""
    from drlrec.features.transitions import load_split

    cfg = cfg or EnvConfig()
    return SimulatedEnv(simulator, load_split(features_dir, cfg.start_split), cfg, featurize_cfg)
