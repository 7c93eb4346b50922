"""Fitting the user simulator on the train split: the interaction network on logged events against
uniform negatives, the behaviour model and the leave hazard."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drlrec.config import SimulatorConfig
from drlrec.errors import ConfigError, InputError
from drlrec.features.steps import TrainStats
from drlrec.features.transitions import Transitions
from drlrec.models.base import FIRST_REAL_ITEM, TrainingData
from drlrec.rl.simulator.model import (
    UserSimulator,
    _InteractionNet,
    _torch,
    _torch_threads,
    _uniform_negatives,
    repeat_level,
)


def check_config(cfg: SimulatorConfig) -> None:
    """Reject settings the simulator cannot fit with (ConfigError, one line)."""
    for name in ("factors", "negatives", "epochs", "batch_size", "leave_positions", "threads"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"simulator.{name} must be >= 1 (got {getattr(cfg, name)})")
    for name in ("lr", "weight_decay", "rate_smoothing", "exposure_boost"):
        if getattr(cfg, name) < 0 or (name == "lr" and cfg.lr == 0):
            raise ConfigError(
                f"simulator.{name} must be {'> 0' if name == 'lr' else '>= 0'} (got {getattr(cfg, name)})"
            )
    if not 0.0 <= cfg.no_click_leave <= 1.0:
        raise ConfigError(f"simulator.no_click_leave must be in [0, 1] (got {cfg.no_click_leave})")
    if cfg.calibration_max_events < 1:
        raise ConfigError(f"simulator.calibration_max_events must be >= 1 (got {cfg.calibration_max_events})")


def _smoothed(counts: np.ndarray, prior: np.ndarray, smoothing: float) -> np.ndarray:
    """(counts + smoothing * prior) / (total + smoothing) per row; counts [n, 4], prior [n, 4] or [4]."""
    return (counts + smoothing * prior) / (counts.sum(axis=1, keepdims=True) + smoothing)


def fit_behavior_model(
    train: Transitions, item_category: np.ndarray, n_categories: int, smoothing: float
) -> tuple[np.ndarray, np.ndarray]:
    """P(behaviour | interact) per item [Vi, 4] (item rates shrunk to category rates shrunk to the global
    rate) and the re-view multipliers [3, 4] that match the train rates of each level."""
    n_items = len(item_category)
    item = train.action_item.astype(np.int64)
    behavior = train.action_behavior.astype(np.int64)
    global_rate = (np.bincount(behavior, minlength=4) + 1.0) / (len(behavior) + 4.0)  # [4]
    category = item_category[item].astype(np.int64)
    category_counts = np.bincount(category * 4 + behavior, minlength=n_categories * 4).reshape(
        n_categories, 4
    )
    category_rate = _smoothed(category_counts, global_rate, smoothing)  # [Vc, 4]
    item_counts = np.bincount(item * 4 + behavior, minlength=n_items * 4).reshape(n_items, 4)
    item_rate = _smoothed(item_counts, category_rate[item_category], smoothing)  # [Vi, 4]

    rows = train.state_rows()  # [T, N]
    level = repeat_level(train.item_idx[rows], train.behavior_token[rows], item[:, None])[:, 0]  # [T]
    observed = np.bincount(level * 4 + behavior, minlength=12).reshape(3, 4)
    predicted = np.zeros((3, 4))
    np.add.at(predicted, level, item_rate[item])
    multiplier = (observed + 1.0) / (predicted + 1.0)  # one pseudo-event keeps empty levels near 1
    return item_rate.astype(np.float32), multiplier.astype(np.float32)


def fit_leave_hazard(train: Transitions, cfg: SimulatorConfig) -> np.ndarray:
    """[H] P(the session ends after an event at session position h), smoothed toward the overall rate."""
    ended = train.session_end if cfg.leave_signal == "session_end" else train.done
    position = np.minimum(train.session_position.astype(np.int64), cfg.leave_positions - 1)
    overall = float(np.mean(ended)) if len(ended) else 0.0
    ends = np.bincount(position, weights=ended.astype(np.float64), minlength=cfg.leave_positions)
    seen = np.bincount(position, minlength=cfg.leave_positions)
    return ((ends + cfg.rate_smoothing * overall) / (seen + cfg.rate_smoothing)).astype(np.float32)


def _fit_interaction_net(
    data: TrainingData,
    cfg: SimulatorConfig,
    seed: int,
    item_category: np.ndarray,
    log_pop: np.ndarray,
    rng: np.random.Generator,
) -> _InteractionNet:
    """Binary cross-entropy of the logged next item (label 1) against `negatives` uniform items (label 0)."""
    torch = _torch()
    train = data.train
    rows = train.state_rows()  # [T, N]
    item_seq = torch.from_numpy(train.item_idx[rows].astype(np.int64))  # [T, N]
    category_seq = torch.from_numpy(train.category_idx[rows].astype(np.int64))  # [T, N]
    positive = train.action_item.astype(np.int64)  # [T]
    n = train.num_transitions
    # Adam's second moments of rarely touched rows decay into subnormal floats, which are ~100x slower
    # (there is no getter for the flag: it is switched off again afterwards, torch's default)
    flush = torch.set_flush_denormal(True)
    try:
        generator = torch.Generator().manual_seed(int(seed))
        net = _InteractionNet.init(
            data.n_items, data.n_categories, cfg.factors, generator, item_category, log_pop
        )
        optimizer = torch.optim.Adam(
            [
                {"params": net.factor_tables(), "weight_decay": cfg.weight_decay},
                {"params": [net.t["weights"]], "weight_decay": 0.0},
            ],
            lr=cfg.lr,
        )
        for _ in range(cfg.epochs):
            order = rng.permutation(n)
            for lo in range(0, n, cfg.batch_size):
                batch = order[lo : lo + cfg.batch_size]
                candidates = np.concatenate(
                    [
                        positive[batch, None],
                        _uniform_negatives(positive[batch], data.n_items, cfg.negatives, rng),
                    ],
                    axis=1,
                )  # [b, 1 + R]: the logged item first
                index = torch.from_numpy(batch)
                logits = net.logits(item_seq[index], category_seq[index], None, torch.from_numpy(candidates))
                labels = torch.zeros_like(logits)
                labels[:, 0] = 1.0
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        if flush:
            torch.set_flush_denormal(False)
    for name in ("item_in", "category_in", "item_out", "category_out", "weights"):
        net.t[name] = net.t[name].detach()
    return net


def fit_simulator(data: TrainingData, stats: TrainStats, cfg: SimulatorConfig, seed: int) -> UserSimulator:
    """Fit every part on `data.train` (see the module doc); same data, config and seed, same simulator."""
    check_config(cfg)
    train = data.train
    if train.num_transitions == 0:
        raise InputError("no train transitions to fit the simulator on")
    if data.n_items < FIRST_REAL_ITEM + 2:
        raise InputError(f"the simulator needs at least 2 real items (vocabulary of {data.n_items})")
    item_category = np.asarray(data.item_category, dtype=np.int32)
    log_pop = np.log1p(np.asarray(stats.item_count, dtype=np.float64)).astype(np.float32)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(101,)))
    with _torch_threads(cfg.threads):
        net = _fit_interaction_net(data, cfg, seed, item_category, log_pop, rng)
    item_behavior, multiplier = fit_behavior_model(
        train, item_category, data.n_categories, cfg.rate_smoothing
    )
    return UserSimulator(
        net,
        item_behavior,
        multiplier,
        fit_leave_hazard(train, cfg),
        cfg.no_click_leave,
        item_category,
        stats,
        cfg.negatives,
        cfg.exposure_boost,
    )


def fit_simulator_from_features(features_dir: str | Path, cfg: SimulatorConfig, seed: int) -> UserSimulator:
    """`fit_simulator` on what `drlrec featurize` wrote into `features_dir`."""
    from drlrec.features.featurize import TrainGlobals

    return fit_simulator(TrainingData.load(features_dir), TrainGlobals.load(features_dir).stats, cfg, seed)
