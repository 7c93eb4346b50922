"""Supervised next-item training shared by the sequential baselines (GRU4Rec, SASRec), plus early stopping.

A sequence network reads a state [B, L] and returns a hidden vector at every position [B, L, d]. Training
predicts, at every non-padding position p of a train state, the item at position p of the *next* state
(the state shifted by the action: position p + 1, or the action itself at the last position), with a
sampled softmax: the batch's targets plus `candidates` items drawn uniformly among the train items.
Drawing negatives only among train items leaves the output vectors of items never seen in train at
their initial value, which a model can use to score cold items by their category alone.
Validation NDCG@10 (full ranking, `train.validation_evaluator`) drives early stopping; the best
validated weights are kept.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from drlrec.config import BaselinesConfig
from drlrec.models.base import FIRST_REAL_ITEM, Recommender, StateBatch, TrainingData
from drlrec.models.dqn_lstm import TensorStates

METRIC = "valid/ndcg_at_10"


@dataclass
class FitLog:
    """What a training run did: losses per step, validation evaluations, where it stopped and why."""

    steps_done: int = 0
    stopped_early: bool = False
    best_metric: float = -math.inf
    best_step: int = 0
    losses: list[float] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)


class EarlyStopping:
    """Keeps the best validated weights of some modules; says stop after `patience` evaluations without gain."""

    def __init__(self, patience: int, log: FitLog) -> None:
        self.patience = patience
        self.log = log
        self.best_state: dict[str, dict[str, Tensor]] | None = None
        self.evals_without_gain = 0

    def update(self, scores: dict[str, float], step: int, modules: dict[str, nn.Module]) -> bool:
        """Record an evaluation; returns True when training should stop."""
        self.log.evaluations.append({**scores, "step": float(step)})
        metric = scores[METRIC]
        if metric > self.log.best_metric:
            self.log.best_metric, self.log.best_step = metric, step
            self.best_state = {n: {k: v.detach().clone() for k, v in m.state_dict().items()} for n, m in modules.items()}
            self.evals_without_gain = 0
            return False
        self.evals_without_gain += 1
        self.log.stopped_early = self.evals_without_gain >= self.patience
        return self.log.stopped_early

    def restore(self, modules: dict[str, nn.Module]) -> None:
        """Load the best validated weights back (no-op when nothing was evaluated)."""
        if self.best_state is not None:
            for name, module in modules.items():
                module.load_state_dict(self.best_state[name])


def train_item_pool(data: TrainingData) -> np.ndarray:
    """Recommendable items that occur in the train transitions: where sampled negatives are drawn from."""
    counts = np.bincount(data.train.action_item.astype(np.int64), minlength=data.n_items)[: data.n_items]
    counts[:FIRST_REAL_ITEM] = 0
    return np.flatnonzero(counts)


def sampled_candidates(
    targets: Tensor, pool: np.ndarray, n_sampled: int, n_items: int, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """(candidates [C] sorted, position of each target in them [N]).

    `n_sampled` = 0 gives the full catalogue; else the unique targets plus `n_sampled` uniform draws from
    `pool` (numpy's seeded generator, so a run is reproducible). Uniform proposals need no log-q correction.
    """
    if n_sampled <= 0 or len(pool) == 0:
        return torch.arange(n_items, device=targets.device), targets
    sampled = torch.as_tensor(pool[rng.integers(0, len(pool), n_sampled)], dtype=torch.long, device=targets.device)
    candidates, inverse = torch.unique(torch.cat([targets, sampled]), return_inverse=True)
    return candidates, inverse[: len(targets)]


def next_item_targets(t: Any, index: np.ndarray) -> tuple[StateBatch, np.ndarray]:
    """(states [B, L], targets [B, L]) of the transitions at `index`: the target at position p is the item at
    position p of the next state; 0 where there is nothing to predict (padding input or a pad/unknown target)."""
    from drlrec.rl.logged import state_batch

    states = state_batch(t, index)
    targets = t.item_idx[t.next_state_index(index)].astype(np.int64)  # [B, L]
    keep = (states.item_seq > 0) & (targets >= FIRST_REAL_ITEM)
    return states, np.where(keep, targets, 0)


class SequenceNetwork(nn.Module):
    """What a sequential baseline's network provides."""

    n_items: int

    @abstractmethod
    def hidden_states(self, states: TensorStates) -> Tensor:
        """Hidden vector at every state position: [B, L, d] (position -1 is the latest interaction)."""

    @abstractmethod
    def logits_of(self, hidden: Tensor, items: Tensor) -> Tensor:
        """Next-item logits of hidden vectors [N, d] for candidate items [C]: [N, C]."""

    @abstractmethod
    def all_logits(self, hidden: Tensor) -> Tensor:
        """Next-item logits over the whole catalogue: [N, n_items]."""


class SequenceRecommender(Recommender):
    """A torch sequence network behind the shared interface, trained by `fit_next_item`.

    Subclasses set `name`, `section` (their BaselinesConfig field) and `build_network`."""

    section: str = ""

    def __init__(self, n_items: int, n_categories: int, cfg: BaselinesConfig | None = None, seed: int = 0,
                 progress: bool = False) -> None:
        from drlrec.train import resolve_device

        self.n_items = n_items
        self.n_categories = n_categories
        self.cfg = cfg or BaselinesConfig()
        self.seed = seed
        self.progress = progress
        self.device = resolve_device(self.cfg.device)
        self.log = FitLog()
        torch.manual_seed(seed)  # the initial weights depend on the seed only
        self.network: SequenceNetwork = self.build_network().to(self.device)

    @property
    def section_cfg(self) -> Any:
        """This model's own section of BaselinesConfig."""
        return getattr(self.cfg, self.section)

    @abstractmethod
    def build_network(self) -> SequenceNetwork:
        """A fresh network for n_items / n_categories / self.section_cfg."""

    def prepare(self, data: TrainingData) -> None:
        """Hook before training (e.g. copy the item -> category map into the network)."""

    def fit(self, data: TrainingData, cfg: BaselinesConfig | None = None) -> SequenceRecommender:
        """Sampled-softmax next-item training on data.train, early stopping on data.valid NDCG@10."""
        if data.n_items != self.n_items:
            raise ValueError(f"{self.name}: built for {self.n_items} items, data has {data.n_items}")
        if cfg is not None:
            self.cfg = cfg
        self.prepare(data)
        self.log = fit_next_item(self, data, self.section_cfg, self.cfg, self.seed, self.progress)
        return self

    @torch.no_grad()
    def score(self, states: StateBatch, batch_size: int = 1024) -> np.ndarray:
        self.network.eval()
        out = np.empty((states.batch_size, self.n_items), dtype=np.float32)
        for start in range(0, states.batch_size, batch_size):
            chunk = TensorStates(states.slice(start, start + batch_size), self.device)
            hidden = self.network.hidden_states(chunk)[:, -1]  # [b, d]
            out[start : start + len(hidden)] = self.network.all_logits(hidden).float().cpu().numpy()
        return out

    def save(self, path: str | Path) -> None:
        """Write the network weights and the config into the folder `path`."""
        from drlrec.models.persistence import save_weights, write_meta

        save_weights(path, network=self.network)
        write_meta(path, self.name, self.cfg, n_items=self.n_items, n_categories=self.n_categories, seed=self.seed)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> SequenceRecommender:
        """Rebuild from a saved folder (on `device`, default the saved config's)."""
        from drlrec.models.persistence import rebuild_torch_model

        model, weights = rebuild_torch_model(cls, path, device)
        model.network.load_state_dict(weights["network"])
        return model


def fit_next_item(
    model: SequenceRecommender, data: TrainingData, loop: Any, cfg: BaselinesConfig, seed: int, progress: bool = False
) -> FitLog:
    """The training loop (module doc). `loop` is the model's config section: steps, batch_size, lr,
    candidates, eval_every, patience."""
    from tqdm import tqdm

    from drlrec.train import validation_evaluator

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network, device, train = model.network, model.device, data.train
    evaluate, _ = validation_evaluator(data.valid, cfg.eval_max_events, seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=loop.lr)
    pool = train_item_pool(data)
    log = FitLog()
    stopper = EarlyStopping(loop.patience, log)
    if train.num_transitions == 0:
        return log
    bar = tqdm(range(1, loop.steps + 1), desc=f"train {model.name}", disable=None if progress else True, leave=False)
    for step in bar:
        index = rng.integers(0, train.num_transitions, loop.batch_size)
        states, targets = next_item_targets(train, index)
        targets_t = torch.as_tensor(targets, device=device)  # [B, L]
        mask = targets_t > 0
        if not bool(mask.any()):
            continue
        network.train()
        hidden = network.hidden_states(TensorStates(states, device))[mask]  # [N, d]
        candidates, target_index = sampled_candidates(targets_t[mask], pool, loop.candidates, model.n_items, rng)
        loss = F.cross_entropy(network.logits_of(hidden, candidates), target_index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
        optimizer.step()
        log.losses.append(float(loss.detach()))
        log.steps_done = step
        bar.set_postfix(loss=f"{log.losses[-1]:.3f}")
        if step % loop.eval_every == 0 or step == loop.steps:
            if stopper.update(evaluate(model), step, {"network": network}):
                break
    bar.close()
    stopper.restore({"network": network})
    return log
