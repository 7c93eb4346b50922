"""Logged transitions (the featurize outputs) as model inputs: states for scoring, n-step batches for DQN."""

from __future__ import annotations

import numpy as np

from drlrec.features.states import window_states
from drlrec.features.transitions import Transitions, release_pages
from drlrec.models.base import StateBatch
from drlrec.rl.replay import TransitionBatch


def state_batch(t: Transitions, index: np.ndarray) -> StateBatch:
    """States (before the action) of the transitions at `index`: the model's input for scoring."""
    rows = t.state_rows(index)  # [B, N]
    return _states(t, rows, t.profile[index])


def next_state_batch(t: Transitions, index: np.ndarray) -> StateBatch:
    """States after the action of the transitions at `index`."""
    return _states(t, t.next_state_rows(index), t.next_profile(index))


def _states(t: Transitions, rows: np.ndarray, profile: np.ndarray) -> StateBatch:
    return window_states(t.item_idx, t.category_idx, t.behavior_token, t.step_features, rows, profile)


class LoggedTransitions:
    """The logged dataset as a TransitionSource for `train.train_offline`, with n-step returns.

    Transition i + 1 is the same user's next event unless transition i is `done`, so an n-step return
    walks forward until n steps or the end of the episode: R = sum_j gamma^j r_{i+j}, bootstrapping
    from the state after the last step taken with discount gamma^steps (0 if the episode ended).
    """

    def __init__(self, transitions: Transitions, reward: str) -> None:
        self.t = transitions
        self.rewards = transitions.reward(reward)

    def __len__(self) -> int:
        return self.t.num_transitions

    def release(self) -> None:
        """Unmap the pages of a memory-mapped split that earlier batches faulted in (see release_pages)."""
        release_pages(self.t)

    def gather(self, index: np.ndarray, n_step: int, gamma: float):
        index = np.asarray(index, dtype=np.int64)
        reward = np.zeros(len(index), dtype=np.float64)
        last = index.copy()
        alive = np.ones(len(index), dtype=bool)  # episode still running at step j
        scale = np.ones(len(index), dtype=np.float64)
        for j in range(n_step):
            current = np.minimum(index + j, len(self) - 1)
            reward += np.where(alive, scale * self.rewards[current], 0.0)
            last = np.where(alive, current, last)
            scale = np.where(alive, scale * gamma, scale)
            alive &= ~self.t.done[current]
        discount = np.where(self.t.done[last], 0.0, scale)  # scale = gamma^(steps taken)
        return TransitionBatch(
            state=state_batch(self.t, index),
            action=self.t.actions_at(index)[0].astype(np.int64),
            reward=reward.astype(np.float32),
            next_state=next_state_batch(self.t, last),
            discount=discount.astype(np.float32),
            weight=np.ones(len(index), dtype=np.float32),
        )
