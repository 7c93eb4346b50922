"""Exploration with known propensities: which of the model's top-M items the service shows, and with what
probability each shown item was shown at its slot (serve.exploration).

Off-policy evaluation (drlrec.ope) needs, for every impression, the logging policy's probability of the
shown item at its slot. Slots are treated independently there, so the propensity logged is the *marginal*
probability that the item is at that slot given the user's state, `P[a, j]`, not a probability
conditional on the earlier slots. Each mode below defines a list distribution over the model's top-M
(`scores`, best first) and gives that marginal:

- `off`: the greedy top-k; P[j, j] = 1.
- `epsilon` (per slot): each slot j independently keeps the greedy item j with probability 1 - epsilon,
  else it is replaced; the replaced slots get distinct items drawn uniformly from the "pool" (ranks k..M-1
  of the top-M, which the greedy list does not show). By symmetry every replaced slot is uniform over the
  pool, so P[j, j] = 1 - epsilon and P[a, j] = epsilon / (M - k) for every pool item a: exact.
- `boltzmann`: a Plackett-Luce draw of k items without replacement from softmax(score / temperature)
  over the top-M (Gumbel top-k). Its slot marginals have no closed form beyond slot 0; they are
  estimated from `mc_samples` further draws plus the realised one (so a shown item never has propensity
  0), with a seed derived from the scores: the same scores always give the same propensities.

    choice = explore(scores, k, cfg, rng)      # choice.positions [k] into the top-M, choice.propensity [k]
    P = slot_marginals(scores, k, cfg)          # [M, k] for a candidate policy's probabilities in OPE
    list_probability(scores, choice.positions, cfg) == choice.list_propensity   # the whole list's
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np

MODES = ("off", "epsilon", "boltzmann")


class Choice(NamedTuple):
    """What the service shows: positions into the top-M (slot order), each one's slot propensity, and the
    probability of the whole ordered list."""

    positions: np.ndarray  # [k] int64, indices into the top-M scores
    propensity: np.ndarray  # [k] float64, P(shown item at its slot | state)
    list_propensity: float  # P(exactly this ordered list | state)


def list_probability(scores: np.ndarray, positions: np.ndarray, cfg: Any) -> float:
    """P(the policy `cfg` shows exactly the ordered list `positions` (indices into the top-M `scores`, best
    first) | state): exact for every mode. The whole-list importance weight of OPE's list-level IPS, which
    stays unbiased when a slot's reward depends on the other items of the list (a user who acts on at most
    one item of a list: the per-slot weights' independence assumption fails there)."""
    scores = np.asarray(scores, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.int64)
    m, k = len(scores), len(positions)
    if cfg.mode == "off" or m <= k:
        return float(np.array_equal(positions, np.arange(k)))
    if cfg.mode == "epsilon":
        kept = positions == np.arange(k)
        replaced = ~kept
        if np.any(positions[replaced] < k) or len(set(positions.tolist())) < k:  # a greedy item moved, or twice
            return 0.0
        r = int(replaced.sum())
        draws = np.prod([1.0 / (m - k - i) for i in range(r)]) if r else 1.0
        return float((1.0 - cfg.epsilon) ** (k - r) * cfg.epsilon**r * draws)
    if len(set(positions.tolist())) < k:
        return 0.0
    logits = scores / cfg.temperature
    logits = logits - logits.max()
    weights = np.exp(logits)
    remaining = weights.sum() - np.concatenate([[0.0], np.cumsum(weights[positions])[:-1]])
    return float(np.prod(weights[positions] / remaining))


def describe(cfg: Any) -> str:
    """The setting as logged with every exposure: `off`, `epsilon:0.1:m50`, `boltzmann:t1.0:m50`."""
    if cfg.mode == "off":
        return "off"
    if cfg.mode == "epsilon":
        return f"epsilon:{cfg.epsilon:g}:m{cfg.top_m}"
    return f"boltzmann:t{cfg.temperature:g}:m{cfg.top_m}"


def parse(label: str) -> SimpleNamespace:
    """The inverse of `describe`: a logged setting (`off`, `epsilon:0.1:m50`, ...) back as a config."""
    from drlrec.errors import InputError

    parts = str(label or "off").split(":")
    if parts[0] in ("", "off"):
        return SimpleNamespace(mode="off", epsilon=0.0, top_m=0, temperature=1.0, mc_samples=2000)
    try:
        if parts[0] == "epsilon":
            return SimpleNamespace(mode="epsilon", epsilon=float(parts[1]), top_m=int(parts[2].removeprefix("m")),
                                   temperature=1.0, mc_samples=2000)
        if parts[0] == "boltzmann":
            return SimpleNamespace(mode="boltzmann", epsilon=0.0, temperature=float(parts[1].removeprefix("t")),
                                   top_m=int(parts[2].removeprefix("m")), mc_samples=2000)
    except (IndexError, ValueError):
        pass
    raise InputError(f"exposure log: unknown exploration setting {label!r}")


def check(cfg: Any) -> None:
    """A one-line ConfigError for a setting that defines no distribution (config.ExplorationConfig calls it)."""
    from drlrec.errors import ConfigError

    if cfg.mode not in MODES:
        raise ConfigError(f"serve.exploration.mode: {cfg.mode!r} is not one of {', '.join(MODES)}")
    if cfg.mode == "off":
        return
    if cfg.top_m < 2:
        raise ConfigError(f"serve.exploration.top_m: {cfg.top_m} must be at least 2")
    if cfg.mode == "epsilon" and not 0.0 <= cfg.epsilon <= 1.0:
        raise ConfigError(f"serve.exploration.epsilon: {cfg.epsilon} is not in [0, 1]")
    if cfg.mode == "boltzmann" and not cfg.temperature > 0:
        raise ConfigError(f"serve.exploration.temperature: {cfg.temperature} must be > 0")
    if cfg.mode == "boltzmann" and cfg.mc_samples < 100:
        raise ConfigError(f"serve.exploration.mc_samples: {cfg.mc_samples} must be at least 100")


def _gumbel_top_k(logits: np.ndarray, k: int, rng: np.random.Generator, draws: int) -> np.ndarray:
    """[draws, k] Plackett-Luce samples (positions, slot order) from softmax(logits)."""
    perturbed = logits[None, :] + rng.gumbel(size=(draws, len(logits)))
    top = np.argpartition(-perturbed, k - 1, axis=1)[:, :k] if k < len(logits) else np.tile(np.arange(len(logits)), (draws, 1))
    order = np.argsort(-np.take_along_axis(perturbed, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _score_seed(scores: np.ndarray, k: int) -> int:
    return int.from_bytes(hashlib.blake2b(np.ascontiguousarray(scores, dtype=np.float64).tobytes() + bytes([k % 256]),
                                          digest_size=8).digest(), "little")


def _boltzmann_counts(scores: np.ndarray, k: int, cfg: Any) -> np.ndarray:
    """[M, k] counts of each position at each slot over mc_samples seeded draws."""
    m = len(scores)
    draws = _gumbel_top_k(np.asarray(scores, np.float64) / cfg.temperature, k, np.random.default_rng(_score_seed(scores, k)),
                          cfg.mc_samples)
    counts = np.zeros((m, k), dtype=np.float64)
    np.add.at(counts, (draws, np.broadcast_to(np.arange(k), draws.shape)), 1.0)
    return counts


def slot_marginals(scores: np.ndarray, k: int, cfg: Any) -> np.ndarray:
    """[M, k] P(top-M position a at slot j | state) of the policy `cfg` over these top-M scores (best
    first). Columns sum to 1. For `boltzmann` it is the Monte Carlo estimate `explore` logs, without the
    realised draw."""
    m = len(scores)
    k = min(k, m)
    marginals = np.zeros((m, k), dtype=np.float64)
    if cfg.mode == "off" or m <= k:
        marginals[np.arange(k), np.arange(k)] = 1.0
        return marginals
    if cfg.mode == "epsilon":
        marginals[np.arange(k), np.arange(k)] = 1.0 - cfg.epsilon
        marginals[k:, :] = cfg.epsilon / (m - k)
        return marginals
    return _boltzmann_counts(scores, k, cfg) / cfg.mc_samples


def explore(scores: np.ndarray, k: int, cfg: Any, rng: np.random.Generator) -> Choice:
    """Draw the shown list from the top-M `scores` (best first) and its slot propensities."""
    scores = np.asarray(scores, dtype=np.float64)
    m = len(scores)
    k = min(k, m)
    if cfg.mode == "off" or m <= k:
        return Choice(np.arange(k, dtype=np.int64), np.ones(k), 1.0)
    if cfg.mode == "epsilon":
        replaced = rng.random(k) < cfg.epsilon
        positions = np.arange(k, dtype=np.int64)
        positions[replaced] = k + rng.permutation(m - k)[: int(replaced.sum())]
        propensity = np.where(replaced, cfg.epsilon / (m - k), 1.0 - cfg.epsilon)
        return Choice(positions, propensity, list_probability(scores, positions, cfg))
    positions = _gumbel_top_k(scores / cfg.temperature, k, rng, 1)[0].astype(np.int64)
    counts = _boltzmann_counts(scores, k, cfg)
    propensity = (counts[positions, np.arange(k)] + 1.0) / (cfg.mc_samples + 1.0)  # the realised draw included
    return Choice(positions, propensity, list_probability(scores, positions, cfg))
