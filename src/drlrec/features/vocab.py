"""Vocabularies: raw item/category ids -> dense indices (0 padding, 1 unknown/cold), fitted on train events only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drlrec.atomic import atomic_path
from drlrec.errors import InputError

PAD = 0
UNKNOWN = 1
#: First index given to a real id; known ids take FIRST_INDEX + their rank among the sorted raw ids.
FIRST_INDEX = 2
#: What `decode` returns for the padding and unknown indices (real ids are non-negative).
NO_RAW_ID = -1


@dataclass(frozen=True)
class Vocab:
    """Sorted raw ids of the known values; index = FIRST_INDEX + position. Maps with np.searchsorted."""

    raw_ids: np.ndarray  # [V - 2] int64, strictly increasing

    @property
    def size(self) -> int:
        """Number of indices including padding and unknown (the embedding table size)."""
        return len(self.raw_ids) + FIRST_INDEX

    def encode(self, raw_ids: np.ndarray) -> np.ndarray:
        """Raw ids -> int32 indices; ids not in the vocabulary -> UNKNOWN (1). Never returns PAD."""
        raw = np.asarray(raw_ids, dtype=np.int64)
        pos = np.searchsorted(self.raw_ids, raw)
        found = pos < len(self.raw_ids)
        found[found] = self.raw_ids[pos[found]] == raw[found]
        return np.where(found, pos + FIRST_INDEX, UNKNOWN).astype(np.int32)

    def decode(self, index: np.ndarray) -> np.ndarray:
        """int indices -> raw ids (int64); PAD and UNKNOWN (and out-of-range indices) -> NO_RAW_ID."""
        index = np.asarray(index, dtype=np.int64)
        known = (index >= FIRST_INDEX) & (index < self.size)
        out = np.full(index.shape, NO_RAW_ID, dtype=np.int64)
        out[known] = self.raw_ids[index[known] - FIRST_INDEX]
        return out

    def save(self, path: str | Path) -> None:
        """Write the vocabulary atomically as an .npz holding `raw_ids`."""
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, raw_ids=self.raw_ids)

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """Read a vocabulary written by `save`."""
        path = Path(path)
        try:
            with np.load(path) as data:
                raw_ids = data["raw_ids"].astype(np.int64)
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{path}: not a drlrec vocabulary ({exc.__class__.__name__})") from exc
        return cls(raw_ids)


def fit_vocab(train_raw_ids: np.ndarray, min_count: int) -> Vocab:
    """The ids with at least `min_count` occurrences in `train_raw_ids` (pass train-period events only)."""
    ids, counts = np.unique(np.asarray(train_raw_ids, dtype=np.int64), return_counts=True)
    return Vocab(ids[counts >= max(min_count, 1)])
