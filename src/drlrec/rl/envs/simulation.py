"""Policies on simulated sessions: `simulate_policy` (many sessions at once, the same seeded sessions for
every policy), bootstrap CIs over sessions, paired differences, the table, and the reference policies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from drlrec.errors import ConfigError, InputError
from drlrec.evaluate import Interval
from drlrec.models.base import FIRST_REAL_ITEM, StateBatch
from drlrec.rl.envs.environments import SessionBatch, _SessionEnv
from drlrec.rl.envs.observations import PolicyFn


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
        None if session.histories is None else session.histories.take(np.arange(lo, min(hi, len(session.index)))),
        None if session.clock is None else session.clock[lo:hi].copy(),
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
