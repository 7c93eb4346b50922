"""The interface every drlrec model shares, so evaluation, registry and serving never special-case one.

A model sees a batch of states (the user's last L interactions plus the 10-d profile) and scores every
item of the vocabulary: `score(states) -> [B, n_items]`. `recommend` is top-k over those scores with
padding, unknown and optionally excluded items masked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import numpy as np

from drlrec.features.states import StateBatch  # noqa: F401  (re-exported: the state every model scores)

PAD_ITEM = 0
UNKNOWN_ITEM = 1
#: vocab indices below this are never recommended (padding, unknown)
FIRST_REAL_ITEM = 2


class TrainingData(NamedTuple):
    """What every model's `fit` receives: the featurize outputs of one run (see features.transitions)."""

    train: Any  # features.transitions.Transitions of the train period
    valid: Any  # Transitions of the validation period (early stopping, tuning)
    n_items: int  # item vocabulary size, padding and unknown included
    n_categories: int  # category vocabulary size, padding and unknown included
    item_category: np.ndarray  # [n_items] int32 category index of each item (0 for padding)

    @classmethod
    def load(cls, features_dir) -> TrainingData:
        """Read train/valid transitions and the vocabularies that `drlrec featurize` wrote."""
        from drlrec.features.featurize import TrainGlobals
        from drlrec.features.transitions import load_split

        train, valid = load_split(features_dir, "train"), load_split(features_dir, "valid")
        globals_ = TrainGlobals.load(features_dir)
        n_items, n_categories = globals_.item_vocab.size, globals_.category_vocab.size
        return cls(train, valid, n_items, n_categories, item_category_map([train, valid], n_items))


def item_category_map(splits, n_items: int) -> np.ndarray:
    """[n_items] category index of every item index seen in the splits' event tables (0 if never seen).

    Each raw item has one category, so every event of an item index carries the same category index
    (the unknown item 1 pools many; it gets the category of its last occurrence)."""
    mapping = np.zeros(n_items, dtype=np.int32)
    for split in splits:
        mapping[split.item_idx] = split.category_idx
    mapping[0] = 0
    return mapping


class Scorer(ABC):
    """score / recommend: what evaluation, the registry and serving need of a trained model. Scores are
    higher-is-better over the whole item vocabulary."""

    name: str = "recommender"
    n_items: int

    @abstractmethod
    def score(self, states: StateBatch) -> np.ndarray:
        """Scores of every item for each state: [B, n_items] float32."""

    def recommend(
        self, states: StateBatch, k: int, exclude: list[np.ndarray] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items per state: (items [B, k] int64, scores [B, k] float32), best first."""
        return top_k(self.score(states), k, exclude)

    def score_blocks(self, states: StateBatch) -> ScoreBlocks:
        """The same scores, handed out one block of items at a time (`ScoreBlocks.block(lo, hi)`), so
        full-ranking evaluation over a large catalogue holds [B, block] at once, not [B, n_items]. This
        default scores the whole catalogue once; models with an item table override it."""
        return FullScores(self.score(states))


class ScoreBlocks(ABC):
    """Scores of B states over items [lo, hi), for any range: `block(lo, hi) -> [B, hi - lo]` float32
    (torch), equal to `score(states)[:, lo:hi]`. `fresh`: the caller may write into a block. A block is valid
    until the next `block` call, which may reuse its memory. `exact_targets`: `target_scores` equal the
    blocks' values bit for bit (no float rounding between them), so ranking needs no margin."""

    n_items: int
    fresh: bool = True
    exact_targets: bool = False

    @abstractmethod
    def block(self, lo: int, hi: int):
        """Scores of items [lo, hi) for every state: [B, hi - lo]."""

    def target_scores(self, items: np.ndarray) -> np.ndarray | None:
        """[B] the score of items[b] for state b, computed directly (it may differ from the block's value by
        float rounding); None: not available, so ranking reads the targets' scores in a first pass."""
        return None


class FullScores(ScoreBlocks):
    """Blocks sliced from one computed [B, n_items] score matrix (views of it: not fresh)."""

    fresh = False
    exact_targets = True

    def __init__(self, scores) -> None:
        import torch

        self.scores = torch.as_tensor(scores, dtype=torch.float32)  # [B, n_items]
        self.n_items = int(self.scores.shape[1])

    def block(self, lo: int, hi: int):
        return self.scores[:, lo:hi]

    def target_scores(self, items: np.ndarray) -> np.ndarray:
        return self.scores.numpy()[np.arange(len(items)), items]


class Recommender(Scorer):
    """A Scorer that can also fit itself: fit / score / recommend, the interface of drlrec.model_factory."""

    @abstractmethod
    def fit(self, data: TrainingData, cfg: Any = None) -> Recommender:
        """Learn from the training data (the featurize outputs); returns self."""


def top_k(
    scores: np.ndarray, k: int, exclude: list[np.ndarray] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of [B, n_items] scores, never returning padding/unknown or an excluded item.

    `exclude` is one array of item indices per row (ragged list) or a [B, n_items] boolean mask.
    Ties break toward the lower item index, so results are deterministic even for count-based scores.
    `k` larger than the number of recommendable items returns them all; slots with no finite score
    left (everything excluded) hold item -1.
    """
    import torch

    # nan_to_num copies, so the caller's scores are never modified
    return top_k_(torch.nan_to_num(torch.as_tensor(scores, dtype=torch.float32), nan=-np.inf), k, exclude)


def top_k_(t, k: int, exclude: list[np.ndarray] | np.ndarray | None = None, shift=None) -> tuple[np.ndarray, np.ndarray]:
    """top_k of a [B, n_items] float32 tensor with no NaN that the caller hands over: masked in place, so
    the scores are not copied (the caller must not use `t` afterwards). `shift` [B] (optional) is added to
    the returned scores only: the top-k of t + shift, when the caller scored up to a per-row constant."""
    import torch

    batch, n_items = t.shape
    # masked through a numpy view on CPU: torch's indexed assignment costs ~0.1 ms a call, which is a
    # tenth of a single user's request at 100k items
    masked = t if t.is_cuda else t.numpy()
    masked[:, : min(FIRST_REAL_ITEM, n_items)] = -np.inf
    if exclude is not None:
        if isinstance(exclude, np.ndarray) and exclude.dtype == bool:
            masked[torch.from_numpy(exclude) if t.is_cuda else exclude] = -np.inf
        elif batch:
            rows = np.repeat(np.arange(batch), [len(e) for e in exclude])
            cols = np.concatenate([np.asarray(e, dtype=np.int64).ravel() for e in exclude])
            ok = (cols >= 0) & (cols < n_items)
            if t.is_cuda:
                masked[torch.from_numpy(rows[ok]), torch.from_numpy(cols[ok])] = -np.inf
            else:
                masked[rows[ok], cols[ok]] = -np.inf
    k = int(min(k, max(n_items - FIRST_REAL_ITEM, 0)))
    if k <= 0 or batch == 0:
        return np.zeros((batch, max(k, 0)), dtype=np.int64), np.zeros((batch, max(k, 0)), dtype=np.float32)
    items_np, top_scores = exact_top_k(t, k)
    valid = np.isfinite(top_scores)
    if shift is not None:
        top_scores = top_scores + np.asarray(shift, dtype=np.float32).reshape(-1, 1)
    return np.where(valid, items_np, -1).astype(np.int64), np.where(valid, top_scores, -np.inf).astype(np.float32)


def exact_top_k(t, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns of a masked [B, n] float32 tensor (1 <= k <= n): (columns [B, k] int64, scores [B, k]),
    by score descending, then column ascending: a tie at the k-th score keeps the lowest columns. Non-finite
    scores are left in place (top_k turns them into -1)."""
    import torch

    values, items = t.topk(min(k + 1, t.shape[1]), dim=1)  # [B, k (+1)]: the (k+1)-th shows a tie across the cut
    kth = values[:, k - 1 : k]  # [B, 1]
    # topk may cut inside a run of scores equal to the k-th: keep the lowest indices of that run. A row has
    # more than k scores >= its k-th exactly when its (k+1)-th score equals the k-th, so no row needs a count over the catalogue.
    if values.shape[1] > k:
        tied_rows = ((values[:, k] >= kth[:, 0]) & torch.isfinite(kth[:, 0])).nonzero().flatten()
    else:
        tied_rows = torch.zeros(0, dtype=torch.long, device=t.device)
    items = items[:, :k].contiguous()
    if len(tied_rows):
        sub, sub_kth = t[tied_rows], kth[tied_rows]
        chosen = sub > sub_kth  # [r, n_items]
        need = k - chosen.sum(dim=1)  # [r]
        eq_row, eq_col = (sub == sub_kth).nonzero(as_tuple=True)  # row-major: lowest index first
        first_of_row = torch.searchsorted(eq_row, torch.arange(len(tied_rows)))
        rank = torch.arange(len(eq_row)) - first_of_row[eq_row]
        keep = rank < need[eq_row]
        chosen[eq_row[keep], eq_col[keep]] = True
        items[tied_rows] = chosen.nonzero()[:, 1].view(len(tied_rows), k)
    items_np = items.numpy().astype(np.int64)
    top_scores = t.gather(1, items).numpy()
    order = np.lexsort((items_np, -top_scores), axis=1)  # score desc, then index asc
    return np.take_along_axis(items_np, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
