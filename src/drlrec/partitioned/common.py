"""What both partitioned stages share: the user-hash partition of every user and its check."""

from __future__ import annotations

import numpy as np

from drlrec.errors import ConfigError

#: Kept rows carry `chunk << ORDINAL_BITS | row ordinal within the chunk`: file order across chunks.
ORDINAL_BITS = 40

_FEATURE_FIELDS = (
    "user_id", "category_id", "timestamp", "behavior", "item_idx", "category_idx", "split", "time_gap",
    "session_index", "session_position", "session_end", "profile", "episode_end",
)  # fmt: skip


def partition_of(user_id: np.ndarray, partitions: int) -> np.ndarray:
    """[n] int64 partition of each user id: the splitmix64 finalizer of the id, modulo `partitions`
    (consecutive ids spread evenly; the same id always lands in the same partition)."""
    z = np.asarray(user_id, dtype=np.int64).astype(np.uint64)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(partitions)).astype(np.int64)


def check_partitions(partitions: int) -> None:
    if partitions < 1:
        raise ConfigError(f"scale.partitions must be >= 1 (got {partitions})")
