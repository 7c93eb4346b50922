"""Early stopping on a validation metric, shared by every trained model: keep the best weights, stop
after `patience` evaluations without a gain. What a run did is a `TrainingLog` (the DQN-LSTM's loop extends it:
drlrec.rl.dqn.DQNTrainingLog)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor, nn

#: the validation metric every model early-stops on (and `drlrec tune` maximizes)
METRIC = "valid/ndcg_at_10"


@dataclass
class TrainingLog:
    """What a training run did: losses per step, validation evaluations, where it stopped and why."""

    steps_done: int = 0
    stopped_early: bool = False
    best_metric: float = -math.inf
    best_step: int = 0
    losses: list[float] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)


class EarlyStopping:
    """Keeps the best validated weights of some modules; says stop after `patience` evaluations without gain."""

    def __init__(self, patience: int, log: TrainingLog) -> None:
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
