"""The user simulator: the interaction network behind P(act on an item | state), the behaviour given an
interaction, the leave hazard, and sampling a user's response to a list."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from drlrec.atomic import atomic_path
from drlrec.errors import InputError
from drlrec.features.steps import TrainStats
from drlrec.models.base import FIRST_REAL_ITEM, StateBatch
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
