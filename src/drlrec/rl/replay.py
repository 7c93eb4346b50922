"""Proportional prioritized experience replay (Schaul et al. 2016) on a vectorized sum tree.

Sampling, priority updates and the initial build are numpy operations over whole batches: a tree
descent costs O(B log N) array work, never a Python loop per sample. The sampler stores only
priorities; transitions live elsewhere (the logged dataset offline, `ReplayBuffer` online).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from drlrec.models.base import StateBatch


class TransitionBatch(NamedTuple):
    """A batch of (n-step) transitions; `discount` is gamma^n, 0 where the episode ended within n steps."""

    state: StateBatch
    action: np.ndarray  # [B] int64 item index
    reward: np.ndarray  # [B] float32 n-step discounted reward
    next_state: StateBatch
    discount: np.ndarray  # [B] float32
    weight: np.ndarray  # [B] float32 importance-sampling weight (1 without prioritized replay)
    ce_mask: np.ndarray | None = None  # [B] float32: which actions are positives for the CE head (None = all)


class SumTree:
    """A complete binary tree over `capacity` leaves; each node holds the sum of its children."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("SumTree capacity must be >= 1")
        self.capacity = capacity
        self.leaf_offset = 1 << max(0, int(np.ceil(np.log2(capacity))))
        self.tree = np.zeros(2 * self.leaf_offset, dtype=np.float64)  # tree[1] is the root

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def leaves(self, index: np.ndarray) -> np.ndarray:
        return self.tree[self.leaf_offset + np.asarray(index)]

    def build(self, values: np.ndarray) -> None:
        """Set every leaf at once and rebuild all sums bottom-up (O(N))."""
        self.tree[:] = 0.0
        self.tree[self.leaf_offset : self.leaf_offset + len(values)] = values
        level = self.leaf_offset
        while level > 1:
            parents = np.arange(level // 2, level)
            self.tree[parents] = self.tree[2 * parents] + self.tree[2 * parents + 1]
            level //= 2

    def update(self, index: np.ndarray, values: np.ndarray) -> None:
        """Set leaves `index` to `values` (duplicates: the last one wins) and fix their ancestors."""
        pos = np.asarray(index, dtype=np.int64) + self.leaf_offset
        self.tree[pos] = values
        pos = np.unique(pos // 2)
        while len(pos) and pos[-1] >= 1:
            self.tree[pos] = self.tree[2 * pos] + self.tree[2 * pos + 1]
            if pos[0] == 1:
                break
            pos = np.unique(pos // 2)

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Leaf index whose prefix-sum interval holds each `mass` in [0, total): [B]."""
        mass = np.array(mass, dtype=np.float64, copy=True)
        pos = np.ones(len(mass), dtype=np.int64)
        while pos[0] < self.leaf_offset:
            left = 2 * pos
            left_sum = self.tree[left]
            go_right = mass >= left_sum
            mass = np.where(go_right, mass - left_sum, mass)
            pos = np.where(go_right, left + 1, left)
        # float round-off can step past the last non-empty leaf: clamp into the filled range
        return np.minimum(pos - self.leaf_offset, self.capacity - 1)


class PrioritySample(NamedTuple):
    index: np.ndarray  # [B] int64 transition indices
    weight: np.ndarray  # [B] float32 importance-sampling weights, max 1


class PrioritizedSampler:
    """Proportional prioritization: P(i) = p_i^alpha / sum_j p_j^alpha, with IS weights (N P(i))^-beta.

    New transitions get the largest priority seen so far, so each is replayed at least once early.
    """

    def __init__(self, capacity: int, alpha: float = 0.6, eps: float = 1e-3) -> None:
        self.tree = SumTree(capacity)
        self.alpha = alpha
        self.eps = eps
        self.size = 0
        self.max_priority = 1.0

    def reset(self, size: int) -> None:
        """Give the first `size` transitions the same (maximal) priority, e.g. a whole logged dataset."""
        self.size = size
        self.tree.build(np.full(size, self.max_priority**self.alpha))

    def add(self, index: np.ndarray) -> None:
        index = np.atleast_1d(index)
        self.tree.update(index, np.full(len(index), self.max_priority**self.alpha))
        self.size = max(self.size, int(index.max()) + 1)

    def sample(self, batch_size: int, beta: float, rng: np.random.Generator) -> PrioritySample:
        """Stratified sampling: one uniform draw in each of `batch_size` equal slices of the total."""
        total = self.tree.total
        bounds = np.arange(batch_size, dtype=np.float64) * (total / batch_size)
        mass = bounds + rng.random(batch_size) * (total / batch_size)
        index = self.tree.find(mass)
        probability = self.tree.leaves(index) / total
        weight = (self.size * np.maximum(probability, 1e-12)) ** (-beta)
        return PrioritySample(index, (weight / weight.max()).astype(np.float32))

    def update(self, index: np.ndarray, td_error: np.ndarray) -> None:
        priority = np.abs(np.asarray(td_error, dtype=np.float64)) + self.eps
        self.max_priority = max(self.max_priority, float(priority.max()))
        self.tree.update(index, priority**self.alpha)


class UniformSampler:
    """Uniform replay with the PrioritizedSampler interface (weights all 1): `train.prioritized: false`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0

    def reset(self, size: int) -> None:
        self.size = size

    def add(self, index: np.ndarray) -> None:
        self.size = max(self.size, int(np.max(index)) + 1)

    def sample(self, batch_size: int, beta: float, rng: np.random.Generator) -> PrioritySample:
        return PrioritySample(rng.integers(0, self.size, batch_size), np.ones(batch_size, dtype=np.float32))

    def update(self, index: np.ndarray, td_error: np.ndarray) -> None:
        return None


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """Linear interpolation from `start` to `end` over `duration` steps, then constant (cleanrl)."""
    if duration <= 0:
        return end
    fraction = min(max(step / duration, 0.0), 1.0)
    return start + fraction * (end - start)


class ReplayBuffer:
    """A circular store of 1-step transitions with explicit states, for online training and tests.

    Implements train.TransitionSource: `gather(index, n_step, gamma)` returns a TransitionBatch.
    (n-step returns are computed from the logged dataset offline; online transitions are 1-step.)
    """

    def __init__(self, capacity: int, seq_len: int, n_step_features: int = 20, n_profile: int = 10) -> None:
        self.capacity = capacity
        self.size = 0
        self.cursor = 0

        def states() -> dict[str, np.ndarray]:
            return {
                "item_seq": np.zeros((capacity, seq_len), np.int64),
                "category_seq": np.zeros((capacity, seq_len), np.int64),
                "behavior_seq": np.zeros((capacity, seq_len), np.int64),
                "step_features": np.zeros((capacity, seq_len, n_step_features), np.float32),
                "profile": np.zeros((capacity, n_profile), np.float32),
            }

        self.state = states()
        self.next_state = states()
        self.action = np.zeros(capacity, np.int64)
        self.reward = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.positive = np.ones(capacity, np.float32)

    def __len__(self) -> int:
        return self.size

    def add(
        self, state, action: np.ndarray, reward: np.ndarray, next_state, done: np.ndarray,
        positive: np.ndarray | None = None,
    ) -> np.ndarray:
        """Append a batch of transitions (StateBatch-like states); returns the slots written. `positive`
        marks actions the user really took (the CE head's targets); default all."""
        n = len(action)
        slots = (self.cursor + np.arange(n)) % self.capacity
        for name, store in self.state.items():
            store[slots] = getattr(state, name)
        for name, store in self.next_state.items():
            store[slots] = getattr(next_state, name)
        self.action[slots] = action
        self.reward[slots] = reward
        self.done[slots] = done
        self.positive[slots] = 1.0 if positive is None else np.asarray(positive, dtype=np.float32)
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        return slots

    def gather(self, index: np.ndarray, n_step: int = 1, gamma: float = 0.99):
        return TransitionBatch(
            state=StateBatch(**{k: v[index] for k, v in self.state.items()}),
            action=self.action[index],
            reward=self.reward[index],
            next_state=StateBatch(**{k: v[index] for k, v in self.next_state.items()}),
            discount=(gamma * (1.0 - self.done[index])).astype(np.float32),
            weight=np.ones(len(index), np.float32),
            ce_mask=self.positive[index],
        )
