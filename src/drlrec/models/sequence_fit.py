"""Whole-sequence next-item training shared by the sequential baselines (GRU4Rec, SASRec).

Training data: each user's whole train event sequence, cut into chunks of `max_len` + 1 events, the latest
chunk aligned to the user's last event (as SASRec does); consecutive chunks share one event, so every
(event, next event) pair of the user is supervised exactly once. Input = chunk[:-1], target = chunk[1:]
at EVERY position; targets are ignored where the input is padding or the target is pad/unknown.
A network reads a left-padded [B, L] sequence and returns a hidden vector per position [B, L, d]; position
p sees the inputs 0..p only (causal), so the hidden state at p of a chunk is the state of the first p + 1
events of the chunk, and evaluation (a StateBatch of the last `featurize.seq_len` events, scored with
the hidden state at the last position) reads the same kind of vector.

Loss: full cross-entropy over every real item when the largest batch's logits (batch_size x max_len x
n_items floats) fit `max_logits`; else sampled softmax: `candidates` negatives drawn with replacement
from q(i) ∝ train_count(i) ** negative_alpha, every logit (target and negatives) corrected by
subtracting log(candidates * q(i)), the log expected count of the item in the sample (Yi et al.,
RecSys 2019; Klenitskiy & Vasilev, RecSys 2023), negatives equal to the target masked ("accidental hits").
Input items are replaced by UNKNOWN (index 1) at rate `unknown_dropout` during training, because most
state items of real test users are unknown to the train vocabulary.

One epoch = one pass over all chunks in a seeded shuffled order. Validation NDCG@10 (full ranking,
`evaluate.validation_evaluator`) after every `eval_every` epochs drives early stopping (`patience` in
epochs, `max_epochs` budget); the best validated weights are kept.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from drlrec.config import BaselinesConfig
from drlrec.models.base import FIRST_REAL_ITEM, UNKNOWN_ITEM, Recommender, StateBatch, TrainingData
from drlrec.models.early_stopping import EarlyStopping, TrainingLog

#: behaviour tokens: 0 padding, 1 pv, 2 cart, 3 fav, 4 buy
N_BEHAVIOR_TOKENS = 5


def train_item_pool(data: TrainingData) -> np.ndarray:
    """Recommendable items that occur in the train transitions: where sampled negatives are drawn from."""
    counts = np.bincount(data.train.action_item.astype(np.int64), minlength=data.n_items)[: data.n_items]
    counts[:FIRST_REAL_ITEM] = 0
    return np.flatnonzero(counts)


def sampled_candidates(
    targets: Tensor, pool: np.ndarray, n_sampled: int, n_items: int, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """(candidates [C] sorted, position of each target in them [N]) for a uniform sampled softmax (DRR's
    behaviour-cloning term).

    `n_sampled` = 0 gives the full catalogue; else the unique targets plus `n_sampled` uniform draws from
    `pool` (numpy's seeded generator, so a run is reproducible). Uniform proposals need no log-q correction.
    """
    if n_sampled <= 0 or len(pool) == 0:
        return torch.arange(n_items, device=targets.device), targets
    sampled = torch.as_tensor(pool[rng.integers(0, len(pool), n_sampled)], dtype=torch.long, device=targets.device)
    candidates, inverse = torch.unique(torch.cat([targets, sampled]), return_inverse=True)
    return candidates, inverse[: len(targets)]


# ------------------------------------------------------------------------------------------ training data


class SequenceChunks(NamedTuple):
    """Training chunks of whole user sequences, left-padded (0 = padding), oldest event first."""

    item_seq: np.ndarray  # [C, L] int64 input items
    category_seq: np.ndarray  # [C, L] int64 input categories
    behavior_seq: np.ndarray  # [C, L] int64 input behaviour tokens (code + 1), 0 = padding
    target_seq: np.ndarray  # [C, L] int64 next item at each position, 0 = nothing to predict

    @property
    def num_chunks(self) -> int:
        return int(self.item_seq.shape[0])

    def take(self, index: np.ndarray) -> SequenceChunks:
        return SequenceChunks(*(a[index] for a in self))


def sequence_chunks(t: Any, max_len: int) -> SequenceChunks:
    """Every user's whole event sequence of the split `t` (Transitions, rows in (user, time) order), cut into
    chunks of max_len + 1 events aligned to the user's last event; input = chunk[:-1], target = chunk[1:]
    (module doc). Chunks come out user by user, oldest chunk first. Users with one event give no chunk."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    n = t.num_transitions
    user = np.asarray(t.user_id)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if n else np.zeros(0, np.int64)  # [U]
    lengths = np.diff(np.r_[starts, n])  # [U] events per user
    n_chunks = np.where(lengths >= 2, -(-(lengths - 1) // max_len), 0)  # [U] ceil((n - 1) / max_len)
    chunk_user = np.repeat(np.arange(len(starts)), n_chunks)  # [C]
    within = np.arange(len(chunk_user)) - np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)  # [C] 0 = oldest
    from_latest = n_chunks[chunk_user] - 1 - within
    last = lengths[chunk_user] - 1 - from_latest * max_len  # [C] user-local position of the chunk's last event
    local = last[:, None] - max_len + np.arange(max_len + 1)[None, :]  # [C, L + 1]
    present = local >= 0
    rows = np.where(present, np.asarray(t.row)[starts[chunk_user][:, None] + np.maximum(local, 0)], 0)  # [C, L + 1]
    items = np.asarray(t.item_idx)[rows].astype(np.int64)
    inputs = rows[:, :-1]
    target = items[:, 1:]
    keep = (inputs > 0) & (target >= FIRST_REAL_ITEM)
    return SequenceChunks(
        item_seq=items[:, :-1],
        category_seq=np.asarray(t.category_idx)[inputs].astype(np.int64),
        behavior_seq=np.asarray(t.behavior_token)[inputs].astype(np.int64),
        target_seq=np.where(keep, target, 0),
    )


def unknown_dropout(item_seq: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Input items with each real item replaced by UNKNOWN (1) with probability `rate` (a new array)."""
    if rate <= 0:
        return item_seq
    drop = (item_seq >= FIRST_REAL_ITEM) & (rng.random(item_seq.shape) < rate)
    return np.where(drop, UNKNOWN_ITEM, item_seq)


# ------------------------------------------------------------------------------------------ the loss


class PopularitySampler:
    """Sampled-softmax negatives: `n_samples` draws with replacement from q(i) ∝ count(i) ** alpha over the
    items with a positive count, and the log expected count log(n_samples * q(i)) that corrects a logit."""

    def __init__(self, counts: np.ndarray, alpha: float, n_samples: int) -> None:
        counts = np.asarray(counts, dtype=np.float64)
        if n_samples < 1:
            raise ValueError(f"sampled softmax needs candidates >= 1, got {n_samples}")
        if not (counts > 0).any():
            raise ValueError("sampled softmax: no item has a positive train count")
        weight = np.where(counts > 0, np.power(np.maximum(counts, 1e-300), alpha), 0.0)
        self.q = weight / weight.sum()  # [n_items]
        self.cdf = np.cumsum(self.q)
        self.n_samples = n_samples
        with np.errstate(divide="ignore"):
            self.log_expected = torch.as_tensor(np.log(n_samples * self.q), dtype=torch.float32)  # [n_items]

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """[n_samples] int64 item indices."""
        draws = rng.random(self.n_samples) * self.cdf[-1]
        return np.minimum(np.searchsorted(self.cdf, draws, side="right"), len(self.q) - 1).astype(np.int64)


def log_expected_count(counts: np.ndarray, alpha: float, n_samples: int) -> np.ndarray:
    """log(n_samples * q(i)), q ∝ count ** alpha: what sampled softmax subtracts from item i's logit."""
    return PopularitySampler(counts, alpha, n_samples).log_expected.double().numpy()


def accidental_hits(exact: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
    """(rows, columns) where negatives[column] equals one of exact[row] ([N] or [N, M] items; negative
    entries never match): a sampled negative that is already an exact candidate of that row. Found by
    binary search in the sorted sample, never as an [N, K] comparison."""
    exact = exact.reshape(len(exact), -1)  # [N, M]
    order = torch.argsort(negatives)
    sorted_negatives = negatives[order]
    low = torch.searchsorted(sorted_negatives, exact)
    count = (torch.searchsorted(sorted_negatives, exact, right=True) - low).flatten()  # [N * M]
    row_of = torch.arange(len(exact), device=exact.device).repeat_interleave(exact.shape[1])
    rows = torch.repeat_interleave(row_of, count)
    within = torch.arange(len(rows), device=exact.device) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    return rows, order[torch.repeat_interleave(low.flatten(), count) + within]


def sampled_softmax_loss(target_logits: Tensor, negative_logits: Tensor, target: Tensor, negatives: Tensor,
                         log_expected: Tensor, history_logits: Tensor | None = None,
                         history_items: Tensor | None = None) -> Tensor:
    """Mean cross-entropy of the target among the exact candidates and the logQ-corrected sampled negatives.

    target_logits [N]; negative_logits [N, K] for negatives [K] (overwritten in place); log_expected
    [n_items] = log(K q(i)). Exact candidates (the target, and optionally each position's own history items:
    history_logits [N, M], -inf where there is none, history_items [N, M], -1 there) enter with their
    logits as they are: they are always in the candidate set. Each sampled negative is corrected by
    subtracting its log expected count, and a sample that is an exact candidate of the row is masked, so
    the corrected sum is an unbiased estimate of the softmax mass of every other item. Written as
    logsumexp over [target, history, negatives] - target, which passes over [N, K] fewer times than
    cross_entropy on a concatenation."""
    corrected = negative_logits.sub_(log_expected[negatives])  # [N, K]
    exact = target[:, None] if history_items is None else torch.cat([target[:, None], history_items], dim=1)
    rows, columns = accidental_hits(exact, negatives)
    corrected[rows, columns] = -torch.inf
    parts = [target_logits, torch.logsumexp(corrected, dim=1)]
    if history_logits is not None:
        parts.append(torch.logsumexp(history_logits, dim=1))
    return (torch.logsumexp(torch.stack(parts, dim=1), dim=1) - target_logits).mean()


# ------------------------------------------------------------------------------------------ models


class RepeatScores(nn.Module):
    """A learned score for items already in the sequence (RepeatNet's repeat mode, Ren et al. 2019, reduced to
    a table): weight[age, behaviour] for each earlier occurrence of the item, summed over its occurrences.
    Dot-product heads recall the user's own items poorly on sparse catalogues (64 dimensions cannot hold ten
    arbitrary items among 10^4-10^6), while re-views are a large share of e-commerce next items."""

    def __init__(self, max_age: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max_age, N_BEHAVIOR_TOKENS))  # [age, behaviour token]

    def pairwise(self, item_seq: Tensor, behavior_seq: Tensor) -> Tensor:
        """[B, L(p), L(q)]: weight of the occurrence at q as seen from position p (age p - q); 0 where q > p
        or the item at q is padding or unknown."""
        length = item_seq.shape[1]
        position = torch.arange(length, device=item_seq.device)
        age = position[:, None] - position[None, :]  # [L, L]
        weight = self.weight[age.clamp(0, len(self.weight) - 1)[None], behavior_seq[:, None, :]]  # [B, L, L]
        return torch.where(self.occurs(item_seq), weight, torch.zeros((), device=weight.device))

    @staticmethod
    def occurs(item_seq: Tensor) -> Tensor:
        """[B, L(p), L(q)] bool: position q holds a real item at or before p (where `pairwise` is defined)."""
        position = torch.arange(item_seq.shape[1], device=item_seq.device)
        return (position[None, :] <= position[:, None])[None] & (item_seq >= FIRST_REAL_ITEM)[:, None, :]

    def latest(self, item_seq: Tensor, behavior_seq: Tensor) -> Tensor:
        """[B, L] weight of each occurrence as seen from the last position (what scoring a state adds)."""
        return self.pairwise(item_seq, behavior_seq)[:, -1]


class SequenceNetwork(nn.Module):
    """What a sequential baseline's network provides: causal hidden states and output vectors (+ bias) per item;
    `repeat` (RepeatScores or None) adds the learned score of items already in the sequence."""

    n_items: int
    repeat: RepeatScores | None
    #: longest sequence the network reads; a longer state is cut to its latest `max_context` items when scored
    max_context: int | None = None

    @abstractmethod
    def hidden_states(self, item_seq: Tensor, category_seq: Tensor, behavior_seq: Tensor) -> Tensor:
        """Left-padded inputs [B, L] -> hidden vector at every position [B, L, d], causal (position p reads
        inputs 0..p only); position -1 is the latest interaction."""

    @abstractmethod
    def output_of(self, items: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(output vectors [..., d], bias [...] or None) of the given items (any shape), or of the whole
        catalogue: logit(i) = h . vector(i) + bias(i)."""

    def logits_of(self, hidden: Tensor, items: Tensor) -> Tensor:
        """Next-item logits of hidden vectors [N, d] for candidate items [C]: [N, C]."""
        vectors, bias = self.output_of(items)
        return hidden @ vectors.T if bias is None else torch.addmm(bias, hidden, vectors.T)

    def pair_logits(self, hidden: Tensor, items: Tensor) -> Tensor:
        """Logit of one item per hidden vector: hidden [N, d], items [N] -> [N]."""
        vectors, bias = self.output_of(items)
        logits = (hidden * vectors).sum(dim=-1)
        return logits if bias is None else logits + bias

    def all_logits(self, hidden: Tensor) -> Tensor:
        """Next-item logits over the whole catalogue: [N, n_items]."""
        vectors, bias = self.output_of()
        return hidden @ vectors.T if bias is None else torch.addmm(bias, hidden, vectors.T)

    def state_logits(self, hidden: Tensor, item_seq: Tensor, behavior_seq: Tensor) -> Tensor:
        """Scores of the catalogue for the last position of each sequence: [B, n_items] (the repeat term
        added at the sequence's own items)."""
        logits = self.all_logits(hidden[:, -1])  # [B, n_items]
        if self.repeat is not None:
            rows = torch.arange(len(item_seq), device=item_seq.device)[:, None].expand_as(item_seq)
            logits.index_put_((rows, item_seq), self.repeat.latest(item_seq, behavior_seq), accumulate=True)
        return logits


def sequence_loss(network: SequenceNetwork, item_seq: Tensor, category_seq: Tensor, behavior_seq: Tensor,
                  target_seq: Tensor, full: bool, negatives: Tensor | None = None,
                  log_expected: Tensor | None = None) -> Tensor:
    """Mean next-item cross-entropy over every position with a target (target_seq > 0) of a batch of chunks
    [B, L]: over the whole catalogue (`full`), or sampled (module doc) with each position's own earlier
    items as exact candidates next to the target."""
    hidden = network.hidden_states(item_seq, category_seq, behavior_seq)  # [B, L, d]
    mask = target_seq > 0  # [B, L]
    target = target_seq[mask]  # [N]
    h = hidden[mask]  # [N, d]
    repeat = None if network.repeat is None else network.repeat.pairwise(item_seq, behavior_seq)  # [B, L, L]
    if full:
        real = torch.arange(FIRST_REAL_ITEM, network.n_items, device=item_seq.device)
        logits = network.logits_of(h, real)  # [N, n_items - 2]
        if repeat is not None:
            row = torch.cumsum(mask.flatten(), 0).view_as(mask) - 1  # [B, L] row of each position in h
            b, p, q = torch.nonzero(mask[:, :, None] & RepeatScores.occurs(item_seq), as_tuple=True)
            logits.index_put_((row[b, p], item_seq[b, q] - FIRST_REAL_ITEM), repeat[b, p, q], accumulate=True)
        return F.cross_entropy(logits, target - FIRST_REAL_ITEM)
    length = item_seq.shape[1]
    position = torch.arange(length, device=item_seq.device)
    same = item_seq[:, :, None] == item_seq[:, None, :]  # [B, L(q), L(q')]
    # the latest occurrence at or before p stands for an item: no later equal item at q' <= p
    later = torch.where(same & (position[None, None, :] > position[None, :, None]), position, length).amin(dim=2)  # [B, L]
    history = ((position[None, None, :] <= position[None, :, None]) & (later[:, None, :] > position[None, :, None])
               & (item_seq >= FIRST_REAL_ITEM)[:, None, :] & (item_seq[:, None, :] != target_seq[:, :, None]))  # [B, L(p), L(q)]
    vectors, bias = network.output_of(item_seq)  # [B, L, d], [B, L]
    history_logits = hidden @ vectors.transpose(1, 2)  # [B, L(p), L(q)]
    target_logits = network.pair_logits(h, target)  # [N]
    if bias is not None:
        history_logits = history_logits + bias[:, None, :]
    if repeat is not None:
        item_repeat = repeat @ same.to(repeat.dtype)  # [B, L(p), L(q)]: sum over every occurrence of the item at q
        history_logits = history_logits + item_repeat
        target_logits = target_logits + (repeat * (item_seq[:, None, :] == target_seq[:, :, None])).sum(dim=2)[mask]
    history_logits = history_logits.masked_fill(~history, -torch.inf)[mask]  # [N, L]
    history_items = torch.where(history, item_seq[:, None, :], -1)[mask]  # [N, L]
    return sampled_softmax_loss(target_logits, network.logits_of(h, negatives), target, negatives, log_expected,
                                history_logits, history_items)


class SequenceRecommender(Recommender):
    """A torch sequence network behind the shared interface, trained by `fit_next_item`.

    Subclasses set `name`, `section` (their BaselinesConfig field) and `build_network`."""

    section: str = ""

    def __init__(self, n_items: int, n_categories: int, cfg: BaselinesConfig | None = None, seed: int = 0,
                 progress: bool = False) -> None:
        from drlrec.devices import resolve_device

        self.n_items = n_items
        self.n_categories = n_categories
        self.cfg = cfg or BaselinesConfig()
        self.seed = seed
        self.progress = progress
        self.device = resolve_device(self.cfg.device)
        self.log = TrainingLog()
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
        """Whole-sequence next-item training on data.train, early stopping on data.valid NDCG@10."""
        if data.n_items != self.n_items:
            raise ValueError(f"{self.name}: built for {self.n_items} items, data has {data.n_items}")
        if cfg is not None:
            self.cfg = cfg
        self.prepare(data)
        self.log = fit_next_item(self, data, self.section_cfg, self.cfg, self.seed, self.progress)
        return self

    def tensors(self, *arrays: np.ndarray) -> list[Tensor]:
        """numpy index arrays -> int64 tensors on the model's device."""
        return [torch.as_tensor(a, dtype=torch.long, device=self.device) for a in arrays]

    @torch.no_grad()
    def score(self, states: StateBatch, batch_size: int = 1024) -> np.ndarray:
        self.network.eval()
        out = np.empty((states.batch_size, self.n_items), dtype=np.float32)
        for start in range(0, states.batch_size, batch_size):
            chunk = states.slice(start, start + batch_size)
            keep = slice(-self.network.max_context, None) if self.network.max_context else slice(None)
            item_seq, category_seq, behavior_seq = self.tensors(
                chunk.item_seq[:, keep], chunk.category_seq[:, keep], chunk.behavior_seq[:, keep])
            hidden = self.network.hidden_states(item_seq, category_seq, behavior_seq)  # [b, L, d]
            logits = self.network.state_logits(hidden, item_seq, behavior_seq)  # [b, n_items]
            out[start : start + len(logits)] = logits.float().cpu().numpy()
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


def uses_full_softmax(loop: Any, n_items: int) -> bool:
    """Full cross-entropy when asked for and the largest batch's logits fit `max_logits` floats."""
    return loop.loss == "full" and loop.batch_size * loop.max_len * n_items <= loop.max_logits


def fit_next_item(
    model: SequenceRecommender, data: TrainingData, loop: Any, cfg: BaselinesConfig, seed: int, progress: bool = False
) -> TrainingLog:
    """The training loop (module doc). `loop` is the model's config section: max_len, max_epochs, batch_size,
    lr, loss, max_logits, candidates, negative_alpha, unknown_dropout, eval_every, patience.

    Runs with torch's deterministic algorithms: with more than one thread, one of SASRec's CPU backward ops
    otherwise accumulates in a varying order, and the same seed gave other weights from run to run (the
    simulate stage's DVC output then changed on every `make run`)."""

    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _fit_next_item(model, data, loop, cfg, seed, progress)
    finally:
        torch.use_deterministic_algorithms(before)


def _fit_next_item(
    model: SequenceRecommender, data: TrainingData, loop: Any, cfg: BaselinesConfig, seed: int, progress: bool = False
) -> TrainingLog:
    from tqdm import tqdm

    from drlrec.evaluate import validation_evaluator

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network, device = model.network, model.device
    log = TrainingLog()
    chunks = sequence_chunks(data.train, loop.max_len)
    if chunks.num_chunks == 0 or loop.max_epochs <= 0:
        return log
    evaluate, _ = validation_evaluator(data.valid, cfg.eval_max_events, seed)
    repeat_params = [] if network.repeat is None else list(network.repeat.parameters())
    other_params = [p for p in network.parameters() if all(p is not r for r in repeat_params)]
    groups = [{"params": other_params}] + ([{"params": repeat_params, "lr": loop.lr * loop.repeat_lr_scale}] if repeat_params else [])
    optimizer = torch.optim.Adam(groups, lr=loop.lr)
    stopper = EarlyStopping(max(1, math.ceil(loop.patience / loop.eval_every)), log)
    full = uses_full_softmax(loop, model.n_items)
    sampler, log_expected = None, None
    if not full:
        counts = np.bincount(chunks.target_seq.ravel(), minlength=model.n_items)[: model.n_items]
        counts[:FIRST_REAL_ITEM] = 0
        sampler = PopularitySampler(counts, loop.negative_alpha, loop.candidates)
        log_expected = sampler.log_expected.to(device)
    batches_per_epoch = math.ceil(chunks.num_chunks / loop.batch_size)
    bar = tqdm(total=loop.max_epochs * batches_per_epoch, desc=f"train {model.name}",
               disable=None if progress else True, leave=False)
    for epoch in range(1, loop.max_epochs + 1):
        network.train()
        order = rng.permutation(chunks.num_chunks)
        for start in range(0, len(order), loop.batch_size):
            batch = chunks.take(order[start : start + loop.batch_size])
            items = unknown_dropout(batch.item_seq, loop.unknown_dropout, rng)
            negatives = None if sampler is None else torch.as_tensor(sampler.sample(rng), device=device)  # [K]
            loss = sequence_loss(network, *model.tensors(items, batch.category_seq, batch.behavior_seq, batch.target_seq),
                                 full=full, negatives=negatives, log_expected=log_expected)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            optimizer.step()
            log.losses.append(float(loss.detach()))
            log.steps_done += 1
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{log.losses[-1]:.3f}")
        if epoch % loop.eval_every == 0 or epoch == loop.max_epochs:
            if stopper.update({**evaluate(model), "epoch": float(epoch)}, log.steps_done, {"network": network}):
                break
    bar.close()
    stopper.restore({"network": network})
    return log
