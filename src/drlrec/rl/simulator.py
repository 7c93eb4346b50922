"""The user simulator: which recommended item a user acts on, with which behaviour, and when the user leaves.

Fitted on the train split only, it answers for any state (no user id needed):

* **The next-item model**: a logistic classifier over
  - an affinity factorization: the state's embedding is the mean of its items' and categories' input
    factors, an item's embedding the sum of its item and category output factors, the affinity their dot
    product (so a state seen nowhere in training still gets one);
  - log popularity (train count), re-view (the item is in the state; it is the last item), the category
    of the last item and the share of the state in the item's category.
  It is fitted with binary cross-entropy on (state, logged next item) against `negatives` items drawn
  uniformly from the catalogue. Its probability (`candidate_prob`) is P(this item is the user's next item)
  within such a candidate set; `calibrate` checks exactly that on held-out logs. By Bayes under that
  sampling design its odds are p(i | s) * C / negatives over a catalogue of C items, which gives the
  next-event probability p(i | s) (`next_item_prob`) without scoring the whole catalogue.
* **P(act on a recommended item)** (`interaction_prob`) = 1 - exp(-exposure_boost * p(i | s)). With
  exposure_boost 1 a list is acted on about as often as the user's organic next event falls in it (what
  LogReplayEnv counts as a hit); more models a lift from being recommended (the logs hold no exposures,
  so this is an assumption, stated in params).
* **P(behaviour | act)**: smoothed per-item rates shrunk to the category's (and the category's to the
  global rate), times a multiplier per re-view level (not in the state / viewed before / carted or faved
  before) matched to the train rates, renormalized.
* **P(leave)** after a step: the logged hazard of the session ending at each session position, plus
  `no_click_leave` when the user ignores the whole list.

`probabilities` returns [B, K, 4]: P(the user's next event is on item k with behaviour b), so the four
behaviours are exclusive like one logged event and sum to P(act on k). `sample` lets the user act on at most
one item per step: item k is chosen with its probability when the list's total is at most 1, otherwise in
proportion to it. The order of the list does not matter (the logs hold no lists to fit a position bias).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from drlrec.atomic import atomic_path, write_text
from drlrec.config import SimulatorConfig
from drlrec.errors import ConfigError, InputError
from drlrec.features.steps import TrainStats
from drlrec.features.transitions import Transitions
from drlrec.models.base import FIRST_REAL_ITEM, StateBatch, TrainingData
from drlrec.schema import BEHAVIORS, CART, FAV

FORMAT = "drlrec-simulator-1"
#: Features of the logistic part, in weight order (the affinity dot product comes on top).
INTERACTION_FEATURES: tuple[str, ...] = (
    "bias",
    "log_popularity",
    "in_state",
    "is_last",
    "same_category_as_last",
    "category_share",
)
#: Re-view levels of a candidate: not in the state, in the state (viewed), carted or faved in the state.
REPEAT_LEVELS: tuple[str, ...] = ("new", "viewed", "carted_or_faved")
CALIBRATION_TARGETS: tuple[str, ...] = ("interact", *BEHAVIORS)


class SimulatorOutput(NamedTuple):
    """What the simulated user would do with a recommended list."""

    behavior_prob: (
        np.ndarray
    )  # [B, K, 4] float32 P(next event is on item k with behaviour b); sum_b = P(interact)
    leave_prob: np.ndarray  # [B] float32 P(the user leaves after this step), over the possible responses


class Response(NamedTuple):
    """One sampled response per user; -1 where the user acted on nothing."""

    slot: np.ndarray  # [B] int64 position in the list of the item acted on
    item: np.ndarray  # [B] int64 item index acted on
    behavior: np.ndarray  # [B] int8 behaviour code (0 pv, 1 cart, 2 fav, 3 buy)
    left: np.ndarray  # [B] bool the user leaves after this step


class CalibrationResult(NamedTuple):
    """Predicted vs observed on held-out (state, logged next item + uniform negatives) candidate sets."""

    table: (
        pd.DataFrame
    )  # target, decile, n, mean_predicted, observed_rate (deciles of the target's prediction)
    conditional: pd.DataFrame  # behavior, predicted, observed: P(behaviour | interact) on the logged items
    auc: float  # mean over events of P(p(logged item) > p(negative)), ties count one half
    n_events: int  # held-out transitions used
    n_excluded: int  # transitions skipped because the logged item is padding/unknown (never recommendable)
    negatives: int  # uniform negatives per event


def _torch():
    import torch

    return torch


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run torch with `threads` intra-op threads, then restore the previous setting.

    The simulator's tensors are small: on a shared CPU, extra threads spin-wait and can make a fit tens of
    times slower; one thread is also bit-reproducible."""
    torch = _torch()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _InteractionNet:
    """Torch parameters and the P(interact) logit; a plain holder so fitting and inference share one formula."""

    def __init__(self, tensors: dict[str, object]) -> None:
        self.t = tensors

    @staticmethod
    def init(
        n_items: int,
        n_categories: int,
        factors: int,
        generator,
        item_category: np.ndarray,
        log_pop: np.ndarray,
    ) -> _InteractionNet:
        torch = _torch()

        def table(rows: int) -> object:
            weight = torch.randn(rows, factors, generator=generator) * 0.05
            weight[0] = 0.0  # padding contributes nothing
            return weight.requires_grad_()

        weights = torch.zeros(len(INTERACTION_FEATURES))
        weights[0] = -1.0
        return _InteractionNet(
            {
                "item_in": table(n_items),
                "category_in": table(n_categories),
                "item_out": table(n_items),
                "category_out": table(n_categories),
                "weights": weights.requires_grad_(),
                "item_category": torch.as_tensor(item_category, dtype=torch.long),
                "log_popularity": torch.as_tensor(log_pop, dtype=torch.float32),
            }
        )

    def factor_tables(self) -> list[object]:
        return [self.t[name] for name in ("item_in", "category_in", "item_out", "category_out")]

    def logits(self, item_seq, category_seq, behavior_seq, items):
        """P(interact) logits [B, K] of candidate `items` [B, K] for states item/category/behaviour_seq [B, L]."""
        del behavior_seq  # re-view by behaviour acts on the behaviour model, not on P(interact)
        torch = _torch()
        t = self.t
        valid = item_seq > 0  # [B, L]
        n_valid = valid.sum(dim=1, keepdim=True).clamp(min=1).float()  # [B, 1]
        history = t["item_in"][item_seq] + t["category_in"][category_seq]  # [B, L, d]
        user = (history * valid[..., None]).sum(dim=1) / n_valid  # [B, d]
        categories = t["item_category"][items]  # [B, K]
        target = t["item_out"][items] + t["category_out"][categories]  # [B, K, d]
        affinity = (target * user[:, None, :]).sum(dim=-1)  # [B, K]
        match = (items[:, :, None] == item_seq[:, None, :]) & valid[:, None, :]  # [B, K, L]
        last_item, last_category = item_seq[:, -1:], category_seq[:, -1:]  # [B, 1]
        same_category = (categories[:, :, None] == category_seq[:, None, :]) & valid[:, None, :]  # [B, K, L]
        x = torch.stack(
            [
                torch.ones_like(affinity),
                t["log_popularity"][items],
                match.any(dim=-1).float(),
                ((items == last_item) & (last_item > 0)).float(),
                ((categories == last_category) & (last_category > 0)).float(),
                same_category.sum(dim=-1).float() / n_valid,
            ],
            dim=-1,
        )  # [B, K, F]
        return x @ t["weights"] + affinity


def repeat_level(item_seq: np.ndarray, behavior_seq: np.ndarray, items: np.ndarray) -> np.ndarray:
    """[B, K] int64 re-view level of each candidate: 0 not in the state, 1 in it, 2 carted or faved in it."""
    match = (items[:, :, None] == item_seq[:, None, :]) & (item_seq[:, None, :] > 0)  # [B, K, L]
    engaged = match & ((behavior_seq[:, None, :] == CART + 1) | (behavior_seq[:, None, :] == FAV + 1))
    return np.where(engaged.any(axis=-1), 2, np.where(match.any(axis=-1), 1, 0)).astype(np.int64)


def _uniform_negatives(
    positive: np.ndarray, n_items: int, count: int, rng: np.random.Generator
) -> np.ndarray:
    """[B, count] real items drawn uniformly among those other than each row's positive."""
    negatives = rng.integers(FIRST_REAL_ITEM, n_items - 1, size=(len(positive), count))
    return negatives + (negatives >= positive[:, None])  # skip the positive: uniform over the others


class UserSimulator:
    """A fitted simulated user (see the module doc). Build it with `fit_simulator` or `UserSimulator.load`."""

    def __init__(
        self,
        net: _InteractionNet,
        item_behavior: np.ndarray,
        repeat_multiplier: np.ndarray,
        leave_hazard: np.ndarray,
        no_click_leave: float,
        item_category: np.ndarray,
        stats: TrainStats,
        negatives: int,
        exposure_boost: float = 1.0,
    ) -> None:
        self.net = net
        self.item_behavior = item_behavior  # [Vi, 4] P(behaviour | interact, item)
        self.repeat_multiplier = repeat_multiplier  # [3, 4] per REPEAT_LEVELS
        self.leave_hazard = leave_hazard  # [H] P(session ends after an event at session position h)
        self.no_click_leave = float(no_click_leave)
        self.item_category = item_category  # [Vi] int32
        self.stats = stats  # train statistics (item counts, step-feature lookups)
        self.negatives = int(negatives)
        self.exposure_boost = float(exposure_boost)

    @property
    def n_items(self) -> int:
        return int(self.item_category.shape[0])

    @property
    def n_categories(self) -> int:
        return int(self.stats.category_count.shape[0])

    # ------------------------------------------------------------------------------------------ predict

    def interaction_logits(self, states: StateBatch, items: np.ndarray) -> np.ndarray:
        """[B, K] float32 logits of the candidate-set classifier (see `candidate_prob`)."""
        torch = _torch()
        items = np.asarray(items, dtype=np.int64)
        self._check_items(items, states)
        with torch.no_grad(), _torch_threads(1):
            logits = self.net.logits(
                torch.from_numpy(np.asarray(states.item_seq, dtype=np.int64)),
                torch.from_numpy(np.asarray(states.category_seq, dtype=np.int64)),
                None,
                torch.from_numpy(np.clip(items, 0, self.n_items - 1)),
            )
        return logits.numpy().astype(np.float32)

    def candidate_prob(
        self, states: StateBatch, items: np.ndarray, negatives: int | None = None
    ) -> np.ndarray:
        """[B, K] float32 P(the item is the user's next item) within a candidate set of that next item and
        `negatives` (default: the fitted number) uniform catalogue items: the fitted classifier, with its
        odds rescaled by fitted / `negatives`. This is the scale `calibrate` checks."""
        shift = np.log(self.negatives / (negatives or self.negatives))
        logits = self.interaction_logits(states, items).astype(np.float64) + shift
        prob = 1.0 / (1.0 + np.exp(-logits))
        return np.where(np.asarray(items) < FIRST_REAL_ITEM, 0.0, prob).astype(np.float32)

    def next_item_prob(self, states: StateBatch, items: np.ndarray) -> np.ndarray:
        """[B, K] float32 P(the user's next event is on the item), over the whole catalogue.

        With positives from p(i | s) and `negatives` uniform negatives over C items, the classifier's odds
        are p(i | s) * C / negatives, so p(i | s) = exp(logit) * negatives / C (not renormalized over the
        catalogue: that would score every item for every state)."""
        logits = self.interaction_logits(states, items).astype(np.float64)
        catalogue = max(self.n_items - FIRST_REAL_ITEM - 1, 1)
        prob = np.minimum(np.exp(np.minimum(logits, 50.0)) * self.negatives / catalogue, 1.0)
        return np.where(np.asarray(items) < FIRST_REAL_ITEM, 0.0, prob).astype(np.float32)

    def interaction_prob(self, states: StateBatch, items: np.ndarray, dedupe: bool = True) -> np.ndarray:
        """[B, K] float32 P(the user acts on the item when it is recommended): 1 - exp(-boost * p(i | s)),
        about `exposure_boost` times its next-event probability; 0 for padding/unknown and (with `dedupe`)
        for a repeat of an item earlier in the same list."""
        items = np.asarray(items, dtype=np.int64)
        prob = -np.expm1(-self.exposure_boost * self.next_item_prob(states, items).astype(np.float64))
        if dedupe and items.shape[1] > 1:
            earlier = (items[:, :, None] == items[:, None, :]) & np.tri(items.shape[1], k=-1, dtype=bool)[
                None
            ]
            prob[earlier.any(axis=-1)] = 0.0
        return prob.astype(np.float32)

    def behavior_given_interaction(self, states: StateBatch, items: np.ndarray) -> np.ndarray:
        """[B, K, 4] float32 P(behaviour | the user interacts with the item), rows summing to 1."""
        items = np.clip(np.asarray(items, dtype=np.int64), 0, self.n_items - 1)
        level = repeat_level(np.asarray(states.item_seq), np.asarray(states.behavior_seq), items)
        rates = self.item_behavior[items] * self.repeat_multiplier[level]  # [B, K, 4]
        return (rates / np.maximum(rates.sum(axis=-1, keepdims=True), 1e-12)).astype(np.float32)

    def hazard(self, session_position: np.ndarray | int, batch: int) -> np.ndarray:
        """[B] logged P(session ends) after an event at `session_position` (0 = first of the session)."""
        position = np.broadcast_to(np.asarray(session_position, dtype=np.int64), (batch,))
        return self.leave_hazard[np.clip(position, 0, len(self.leave_hazard) - 1)]

    def probabilities(
        self,
        states: StateBatch,
        items: np.ndarray,
        session_position: np.ndarray | int = 0,
        dedupe: bool = True,
    ) -> SimulatorOutput:
        """Behaviour probabilities [B, K, 4] of a recommended list `items` [B, K] and the leave probability
        [B] after the step (`session_position`: steps taken before it in the session)."""
        interact = self.interaction_prob(states, items, dedupe)  # [B, K]
        behavior = interact[..., None] * self.behavior_given_interaction(states, items)  # [B, K, 4]
        p_none = 1.0 - np.minimum(interact.sum(axis=1), 1.0)  # the at-most-one-item choice of `sample`
        h = self.hazard(session_position, len(interact))
        leave = 1.0 - (1.0 - h) * (1.0 - self.no_click_leave * p_none)
        return SimulatorOutput(behavior.astype(np.float32), leave.astype(np.float32))

    def sample(
        self,
        states: StateBatch,
        items: np.ndarray,
        rng: np.random.Generator,
        session_position: np.ndarray | int = 0,
    ) -> Response:
        """Draw one response per user: at most one item acted on (see the module doc), then leave or not."""
        items = np.asarray(items, dtype=np.int64)
        batch, k = items.shape
        probs = self.probabilities(states, items, session_position).behavior_prob  # [B, K, 4]
        total = probs.reshape(batch, -1).sum(axis=1)  # [B] P(interact with some item)
        scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-12), 1.0)
        cumulative = np.cumsum(probs.reshape(batch, -1) * scale[:, None], axis=1)  # [B, K * 4]
        draws = rng.random((batch, 2))
        outcome = (cumulative <= draws[:, :1]).sum(axis=1)  # [B] index of the outcome; K * 4 = nothing
        acted = outcome < k * 4
        slot = np.where(acted, outcome // 4, -1)
        behavior = np.where(acted, outcome % 4, -1).astype(np.int8)
        item = np.where(acted, items[np.arange(batch), np.maximum(slot, 0)], -1)
        h = self.hazard(session_position, batch)
        leave_prob = np.where(acted, h, 1.0 - (1.0 - h) * (1.0 - self.no_click_leave))
        return Response(slot.astype(np.int64), item.astype(np.int64), behavior, draws[:, 1] < leave_prob)

    def _check_items(self, items: np.ndarray, states: StateBatch) -> None:
        if items.ndim != 2 or items.shape[0] != states.batch_size:
            raise InputError(f"items must be [B, K] with B = {states.batch_size} states (got {items.shape})")
        if items.size and items.max() >= self.n_items:
            raise InputError(f"item index {int(items.max())} outside the simulator's {self.n_items} items")

    # -------------------------------------------------------------------------------------------- files

    def save(self, path: str | Path) -> Path:
        """Write every array to one .npz atomically (np.load reads it back without unpickling)."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(FORMAT),
            "item_behavior": self.item_behavior,
            "repeat_multiplier": self.repeat_multiplier,
            "leave_hazard": self.leave_hazard,
            "no_click_leave": np.array(self.no_click_leave),
            "item_category": self.item_category,
            "negatives": np.array(self.negatives),
            "exposure_boost": np.array(self.exposure_boost),
        }
        for name in ("item_in", "category_in", "item_out", "category_out", "weights", "log_popularity"):
            arrays[f"net_{name}"] = self.net.t[name].detach().numpy()
        for name, value in self.stats._asdict().items():
            arrays[f"stats_{name}"] = value
        path = Path(path)
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> UserSimulator:
        """Read what `save` wrote."""
        torch = _torch()
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such simulator file")
        try:
            with np.load(path) as data:
                if "format" not in data.files or str(data["format"]) != FORMAT:
                    raise InputError(f"{path}: not a drlrec simulator file")
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable simulator file ({exc.__class__.__name__})") from exc
        item_category = arrays["item_category"]
        tensors: dict[str, object] = {
            name: torch.from_numpy(arrays[f"net_{name}"])
            for name in ("item_in", "category_in", "item_out", "category_out", "weights", "log_popularity")
        }
        tensors["item_category"] = torch.as_tensor(item_category, dtype=torch.long)
        stats = TrainStats(**{name: arrays[f"stats_{name}"] for name in TrainStats._fields})
        return cls(
            _InteractionNet(tensors),
            arrays["item_behavior"],
            arrays["repeat_multiplier"],
            arrays["leave_hazard"],
            float(arrays["no_click_leave"]),
            item_category,
            stats,
            int(arrays["negatives"]),
            float(arrays["exposure_boost"]),
        )


# ---------------------------------------------------------------------------------------------- fit


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


# -------------------------------------------------------------------------------------------- calibration


def _deciles(predicted: np.ndarray, observed: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Equal-count bins of `predicted` (by rank, so ties never empty a bin): n, mean predicted, observed rate."""
    order = np.argsort(predicted, kind="stable")
    decile = np.empty(len(predicted), dtype=np.int64)
    decile[order] = np.arange(len(predicted)) * bins // max(len(predicted), 1)
    n = np.bincount(decile, minlength=bins)
    mean_predicted = np.bincount(decile, weights=predicted, minlength=bins) / np.maximum(n, 1)
    observed_rate = np.bincount(decile, weights=observed.astype(np.float64), minlength=bins) / np.maximum(
        n, 1
    )
    return pd.DataFrame(
        {
            "decile": np.arange(1, bins + 1),
            "n": n,
            "mean_predicted": mean_predicted,
            "observed_rate": observed_rate,
        }
    )


def calibrate(
    simulator: UserSimulator,
    transitions: Transitions,
    negatives: int | None = None,
    seed: int = 0,
    max_events: int = 20000,
    batch_size: int = 4096,
) -> CalibrationResult:
    """Predicted vs observed on held-out transitions (e.g. the valid split).

    Each event gives a candidate set: the logged next item and `negatives` (default: the simulator's own)
    items drawn uniformly from the rest of the catalogue. For target `interact` the observation is 1 for the
    logged item and 0 for the negatives; for a behaviour b it is 1 only for the logged item when the logged
    behaviour is b. Bins are deciles of the target's own predicted probability. Events whose logged item is
    padding/unknown are left out (no recommender can name them) and counted in `n_excluded`.
    """
    negatives = simulator.negatives if negatives is None else int(negatives)
    if negatives < 1:
        raise ConfigError(f"calibration needs at least 1 negative per event (got {negatives})")
    from drlrec.rl.logged import state_batch

    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(102,)))
    logged = transitions.action_item.astype(np.int64)
    usable = np.flatnonzero(logged >= FIRST_REAL_ITEM)
    if len(usable) == 0:
        raise InputError("no held-out transitions with a recommendable logged item to calibrate on")
    if len(usable) > max_events:
        usable = np.sort(rng.choice(usable, size=max_events, replace=False))
    candidates = np.concatenate(
        [logged[usable, None], _uniform_negatives(logged[usable], simulator.n_items, negatives, rng)], axis=1
    )  # [n, 1 + R]

    def behavior_probs(lo: int) -> np.ndarray:
        states, items = (
            state_batch(transitions, usable[lo : lo + batch_size]),
            candidates[lo : lo + batch_size],
        )
        prob = simulator.candidate_prob(states, items, negatives)  # [b, 1 + R]
        return prob[..., None] * simulator.behavior_given_interaction(states, items)  # [b, 1 + R, 4]

    probs = np.concatenate([behavior_probs(lo) for lo in range(0, len(usable), batch_size)])  # [n, 1 + R, 4]
    is_logged = np.zeros(candidates.shape, dtype=bool)
    is_logged[:, 0] = True
    behavior = transitions.action_behavior[usable].astype(np.int64)  # [n]
    tables = []
    interact = probs.sum(axis=-1)  # [n, 1 + R]
    table = _deciles(interact.ravel(), is_logged.ravel())
    tables.append(table.assign(target="interact"))
    for code, name in enumerate(BEHAVIORS):
        observed = is_logged & (behavior[:, None] == code)
        tables.append(_deciles(probs[..., code].ravel(), observed.ravel()).assign(target=name))
    table = pd.concat(tables, ignore_index=True)[["target", "decile", "n", "mean_predicted", "observed_rate"]]

    conditional_pred = probs[:, 0] / np.maximum(
        interact[:, :1], 1e-12
    )  # [n, 4] P(b | interact) of the logged item
    conditional = pd.DataFrame(
        {
            "behavior": list(BEHAVIORS),
            "predicted": conditional_pred.mean(axis=0),
            "observed": np.bincount(behavior, minlength=4) / len(behavior),
        }
    )
    positive, negative = interact[:, :1], interact[:, 1:]
    auc = float(np.mean((positive > negative) + 0.5 * (positive == negative)))
    return CalibrationResult(
        table, conditional, auc, len(usable), int(np.sum(logged < FIRST_REAL_ITEM)), negatives
    )


def calibration_markdown(result: CalibrationResult) -> str:
    """The calibration tables as markdown (one table per target, then the conditional rates)."""
    lines = [
        f"Simulator calibration on {result.n_events:,} held-out events, each the logged next item plus "
        f"{result.negatives} uniform catalogue negatives ({result.n_excluded:,} events with an unknown logged "
        f"item left out). Sampled AUC of P(interact), logged vs negatives: {result.auc:.3f}.",
        "",
    ]
    for target in CALIBRATION_TARGETS:
        rows = result.table[result.table["target"] == target]
        lines += [
            f"**{target}**",
            "",
            "| decile | n | mean predicted | observed rate |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.decile} | {r.n:,} | {r.mean_predicted:.4f} | {r.observed_rate:.4f} |"
            for r in rows.itertuples()
        ]
        lines.append("")
    lines += [
        "**P(behaviour | interact), logged items**",
        "",
        "| behaviour | predicted | observed |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {r.behavior} | {r.predicted:.4f} | {r.observed:.4f} |" for r in result.conditional.itertuples()
    ]
    return "\n".join(lines) + "\n"


def plot_calibration(result: CalibrationResult, path: str | Path) -> Path:
    """Reliability plot (PNG): observed rate vs mean predicted per decile, one panel per target."""
    from drlrec.plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(CALIBRATION_TARGETS), figsize=(4 * len(CALIBRATION_TARGETS), 4))
    for ax, target in zip(axes, CALIBRATION_TARGETS, strict=True):
        rows = result.table[result.table["target"] == target]
        top = float(max(rows["mean_predicted"].max(), rows["observed_rate"].max(), 1e-6)) * 1.05
        ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        ax.plot(rows["mean_predicted"], rows["observed_rate"], marker="o", label="simulator, one point per decile")
        ax.set_title(target)
        ax.set_xlabel("mean predicted probability (decile)")
        ax.legend(fontsize=7, loc="upper left")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
    axes[0].set_ylabel("observed rate in the held-out log")
    fig.suptitle(f"simulator calibration (AUC {result.auc:.3f}, {result.n_events:,} events)")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def simulator_calibration(
    features_dir: str | Path, cfg: SimulatorConfig, seed: int, out_dir: str | Path | None = None
) -> tuple[UserSimulator, CalibrationResult]:
    """Fit on the train split of `features_dir`, calibrate on its valid split; with `out_dir`, write
    simulator.npz, calibration.md, calibration.csv and calibration.png there."""
    from drlrec.features.transitions import load_split

    simulator = fit_simulator_from_features(features_dir, cfg, seed)
    result = calibrate(
        simulator, load_split(features_dir, "valid"), seed=seed, max_events=cfg.calibration_max_events
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        simulator.save(out / "simulator.npz")
        write_text(out / "calibration.md", calibration_markdown(result))
        with atomic_path(out / "calibration.csv") as tmp:
            result.table.to_csv(tmp, index=False)
        plot_calibration(result, out / "calibration.png")
    return simulator, result
