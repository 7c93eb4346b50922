"""Top-k retrieval for the service beyond `model.recommend`: a one-pass full scan, and a faiss ANN index.

Both answer `recommend(states, k, exclude) -> (items [B, k], scores [B, k])` like `Scorer.recommend`, and
both hand back the DQN-LSTM's own scores (its log_softmax and repeat mixture, or QNetwork.score_pairs), so a served list's scores
mean the same whatever retrieval found it.

`FullScan` (serve.retrieval `scan`): the exact top-k of `model.recommend` in one pass over the item table.
The CE mixture head's `ce_logits` builds six [B, n_items] tensors for the repeat side, which only the
state's <= L items have; here the explore side is one log_softmax and the state's items are mixed alone.

`AnnIndex` (serve.retrieval `ann`): maximum inner product search over the served head's item side.
Q head:  score_i = phi . v_i + q_bias_i (+ repeat bonus for the state's items)
CE head: explore logit_i = ce_projection(phi) . v_i + ce_bias_i; with the RepeatNet mixture,
         log p(i) = logaddexp(log P(explore) + logit_i - LSE, log P(repeat) + log P(i | repeat)).
Items outside the state rank by the inner product of [query, 1] with [v_i, b_i], which is what the index
holds. The retrieved candidates and the state's own items are re-scored exactly by the model; the mixture's
catalogue normaliser LSE is estimated from the candidates plus a fixed uniform sample of the catalogue
standing in for the rest (scaled by the rest's size). So the approximation is in which items are retrieved
and, with the mixture, in LSE (which only moves state items against explore items): both show in recall@10
against `model.recommend` (bench/bench_recommend.py). faiss is imported only when an index is built.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import numpy as np
import torch

from drlrec.config import AnnConfig
from drlrec.errors import ConfigError
from drlrec.models.base import FIRST_REAL_ITEM, StateBatch, top_k_
from drlrec.models.dqn_lstm import Encoding, QNetwork, TensorStates


class HeadTable(NamedTuple):
    """The served head's item side: score (without repeat terms) = query . vectors[i] + bias[i]."""

    vectors: torch.Tensor  # [n_items, d] float32 (the network's cached item table)
    bias: torch.Tensor  # [n_items] float32


def served_network(model: Any) -> tuple[QNetwork, str]:
    """The QNetwork and served head ("q" or "ce") of a DQN-LSTM; other models have no item table to index."""
    network = getattr(model, "network", None)
    if not isinstance(network, QNetwork):
        raise ConfigError(f"serve.retrieval scan/ann needs a DQN-LSTM bundle, not {type(model).__name__}")
    network.eval()
    return network, model.score_with


@torch.no_grad()
def head_table(network: QNetwork, head: str) -> HeadTable:
    bias = network.q_bias if head == "q" else network.ce_bias
    return HeadTable(network.item_vectors(), bias.detach())


class FactoredTable(NamedTuple):
    """The item side as the model stores it, when that is smaller: with tied embeddings the item vectors
    are item_projection(e_i) = W e_i (no bias), so query . (W e_i) = (query W) . e_i, and a scan reads the
    [n_items, item_dim] embedding table instead of the [n_items, query_dim] projected one."""

    vectors: torch.Tensor  # [n_items, item_dim] float32
    bias: torch.Tensor  # [n_items]
    query_map: torch.Tensor | None  # [query_dim, item_dim] (W), or None: vectors are the item vectors


@torch.no_grad()
def scan_table(network: QNetwork, head: str) -> FactoredTable:
    """The cheapest exact table to scan: the embedding table with the query mapped through the projection
    when the projection widens (item_dim < query_dim), else the item vectors themselves."""
    bias = (network.q_bias if head == "q" else network.ce_bias).detach()
    projection = network.item_projection
    if (network.output_embedding is None and projection is not None and projection.bias is None
            and projection.in_features < projection.out_features):
        return FactoredTable(network.item_embedding.weight.detach(), bias, projection.weight.detach())
    return FactoredTable(network.item_vectors(), bias, None)


@torch.no_grad()
def head_query(network: QNetwork, enc: Encoding, head: str) -> torch.Tensor:
    """The query side of the head's inner product: phi (Q) or ce_projection(phi) (CE): [B, d]."""
    return enc.phi if head == "q" else network.ce_projection(enc.phi)


def _rows(enc: Encoding, rows: torch.Tensor) -> Encoding:
    """The encoding of states `rows` (repeated as needed), so score_pairs can score one item per row."""
    history = TensorStates.__new__(TensorStates)
    for name in TensorStates.__slots__:
        setattr(history, name, getattr(enc.history, name)[rows])
    return Encoding(enc.phi[rows], history)


def _state_items(states: StateBatch, row: int) -> np.ndarray:
    """The state's own recommendable items (the ones with a repeat term): sorted, unique."""
    seq = np.asarray(states.item_seq[row], dtype=np.int64)
    return np.unique(seq[seq >= FIRST_REAL_ITEM])


def rank_candidates(items: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of a candidate list by score descending, then item index ascending (top_k's tie rule), padded
    with item -1 / score -inf when fewer than k candidates are left."""
    order = np.lexsort((items, -scores))[:k]
    out_items = np.full(k, -1, dtype=np.int64)
    out_scores = np.full(k, -np.inf, dtype=np.float32)
    out_items[: len(order)] = items[order]
    out_scores[: len(order)] = scores[order]
    finite = np.isfinite(out_scores)
    out_items[~finite] = -1
    return out_items, out_scores


class FullScan:
    """The top-k of `model.recommend` from every item's score, in fewer passes over the catalogue: the head's
    inner products through faiss's kernel (about 2x torch's MKL gemv for one query on this AMD CPU), over
    the item_dim-wide embedding table when the tied projection widens it (`scan_table`: half the bytes at
    item_dim 64, query_dim 128; one scan is bound by memory bandwidth), and for the CE mixture the repeat
    side of the state's items only (ce_logits builds six [B, n_items] tensors for it). Scores equal the
    model's up to float rounding; bench/bench_recommend.py prints the share of requests whose top-10 list
    is identical to model.recommend's."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.network, self.head = served_network(model)
        self.mixture = self.head == "ce" and self.network.mixture

    @torch.no_grad()
    def scores(self, states: StateBatch) -> torch.Tensor:
        """score(states) of the model, [B, n_items] float32."""
        scores, shift = self._shifted_scores(states)
        return scores if shift is None else scores.add_(shift[:, None])

    @torch.no_grad()
    def _shifted_scores(self, states: StateBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(s [B, n_items], shift [B] or None): the model's scores are s + shift. The CE mixture's
        log P(explore) - LSE is the same for every item of a row, so it is left out of the pass over the
        catalogue (recommend adds it to the k scores it returns) and the state's items are mixed on that scale."""
        network = self.network
        enc = network.encode(TensorStates(states, self.model.device))
        if self.head == "ce" and not self.mixture:
            return network.ce_logits(enc).float(), None
        table = scan_table(network, self.head)
        query = head_query(network, enc, self.head)  # [B, query_dim]
        if table.query_map is not None:
            query = query @ table.query_map  # [B, item_dim]: the same inner products with half the bytes read
        scores = inner_products(query, table.vectors).add_(table.bias)  # [B, n]
        if self.head == "q":
            if network.repeat_q is not None:
                scores = network._add_repeat(enc, network.repeat_q, scores)
            if network.value is not None:
                scores = network.value(enc.phi) + scores - network._mean_advantage(enc)[:, None]
            return scores, None
        slot_prob, log_repeat, log_explore = network._repeat_slots(enc)  # [B, L], [B, 1], [B, 1]
        shift = log_explore[:, 0] - scores.logsumexp(dim=1)  # [B] log P(explore) - explore_logsumexp
        seq = enc.history.item_seq  # [B, L]
        for row in range(states.batch_size):  # the state's own items: mixed with the repeat side (as _mixture)
            known = slot_prob[row] > 0  # slots of recommendable items (0 at padding and unknown)
            if known.any():
                items, slot_item = torch.unique(seq[row][known], return_inverse=True)
                repeat_prob = torch.zeros(len(items), dtype=slot_prob.dtype).scatter_add_(0, slot_item, slot_prob[row][known])
                # logaddexp(s + shift, log P(repeat) + log p(i | repeat)) - shift
                scores[row, items] = torch.logaddexp(scores[row, items], log_repeat[row, 0] + torch.log(repeat_prob) - shift[row])
        return scores, shift

    def recommend(self, states: StateBatch, k: int, exclude: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        scores, shift = self._shifted_scores(states)
        return top_k_(scores.nan_to_num_(nan=-np.inf), k, exclude, None if shift is None else shift.numpy())


def inner_products(query: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """query [B, d] . vectors [n, d] -> [B, n] float32, with faiss's fvec_inner_products_ny (one pass over
    the table per query row)."""
    import faiss

    query = np.ascontiguousarray(query.float().numpy())
    table = vectors.float().contiguous().numpy()
    out = np.empty((len(query), len(table)), dtype=np.float32)
    for row in range(len(query)):
        faiss.fvec_inner_products_ny(faiss.swig_ptr(out[row]), faiss.swig_ptr(query[row]), faiss.swig_ptr(table),
                                     table.shape[1], len(table))
    return torch.from_numpy(out)


def index_description(cfg: AnnConfig, n: int) -> str:
    """The faiss index_factory string of the configured index over n vectors."""
    if cfg.index == "flat":
        return "Flat"
    if cfg.index == "hnsw":
        return f"HNSW{cfg.hnsw_m},Flat"
    nlist = cfg.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
    return f"IVF{nlist},{'SQ8' if cfg.index == 'ivf_sq8' else 'Flat'}"


class AnnIndex:
    """A faiss inner-product index over [v_i, b_i] of every recommendable item, with exact re-scoring.

    `build_seconds` and `index_bytes` (the index's own memory: codes, centroids or graph) are kept for
    reports. Search settings (nprobe / efSearch) can be changed after the build with `set_search`."""

    def __init__(self, model: Any, cfg: AnnConfig) -> None:
        import faiss

        started = time.perf_counter()
        self.model = model
        self.cfg = cfg
        self.network, self.head = served_network(model)
        self.mixture = self.head == "ce" and self.network.mixture
        table = head_table(self.network, self.head)
        n, d = table.vectors.shape
        self.n_items = int(n)
        if cfg.build_threads > 0:
            faiss.omp_set_num_threads(cfg.build_threads)
        rows = n - FIRST_REAL_ITEM  # index row r holds item r + FIRST_REAL_ITEM: pad and unknown are never in it
        self.description = index_description(cfg, rows)
        index = faiss.index_factory(d + 1, self.description, faiss.METRIC_INNER_PRODUCT)
        if cfg.index == "hnsw":
            index.hnsw.efConstruction = cfg.ef_construction
        chunk = 1 << 18

        def block(lo: int, hi: int) -> np.ndarray:  # item rows [lo, hi) as [v, b], without a whole-table copy
            out = np.empty((hi - lo, d + 1), dtype=np.float32)
            out[:, :d] = table.vectors[lo:hi].numpy()
            out[:, d] = table.bias[lo:hi].numpy()
            return out

        if not index.is_trained:
            rng = np.random.default_rng(cfg.seed)
            size = min(rows, cfg.train_size)
            sample = np.sort(rng.choice(rows, size=size, replace=False)) + FIRST_REAL_ITEM
            train = np.empty((size, d + 1), dtype=np.float32)
            train[:, :d] = table.vectors[torch.from_numpy(sample)].numpy()
            train[:, d] = table.bias[torch.from_numpy(sample)].numpy()
            index.train(train)
            del train
        for lo in range(FIRST_REAL_ITEM, n, chunk):
            index.add(block(lo, min(lo + chunk, n)))
        self.index = index
        # the mixture's stand-in for the items not retrieved: a fixed uniform sample of the whole catalogue
        # (pad and unknown included, as in explore_logsumexp)
        rng = np.random.default_rng(cfg.seed + 1)
        sample = torch.from_numpy(np.sort(rng.choice(n, size=min(n, cfg.lse_sample) if self.mixture else 0, replace=False)))
        self.lse_sample = sample  # [S] item indices
        self.lse_sample_vectors = table.vectors[sample].contiguous()  # [S, d] (a copy: one read per request)
        self.lse_sample_bias = table.bias[sample].contiguous()  # [S]
        self.set_search(cfg.nprobe, cfg.ef_search)
        self.build_seconds = time.perf_counter() - started
        self.index_bytes = _index_bytes(index)
        faiss.omp_set_num_threads(max(1, cfg.search_threads))

    def set_search(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Search-time settings: nprobe (IVF lists visited) and efSearch (HNSW beam width)."""
        import faiss

        inner = faiss.downcast_index(self.index)
        if nprobe is not None and hasattr(inner, "nprobe"):
            inner.nprobe = int(nprobe)
        if ef_search is not None and hasattr(inner, "hnsw"):
            inner.hnsw.efSearch = int(ef_search)

    @torch.no_grad()
    def recommend(self, states: StateBatch, k: int, exclude: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        network, head = self.network, self.head
        batch = states.batch_size
        k = int(min(k, max(self.n_items - FIRST_REAL_ITEM, 0)))
        if batch == 0 or k <= 0:
            return np.zeros((batch, max(k, 0)), dtype=np.int64), np.zeros((batch, max(k, 0)), dtype=np.float32)
        exclude = [np.asarray(e, dtype=np.int64).ravel() for e in exclude] if exclude is not None else [np.zeros(0, np.int64)] * batch
        enc = network.encode(TensorStates(states, self.model.device))
        query = head_query(network, enc, head)  # [B, d]
        query = torch.cat([query, torch.ones(batch, 1, dtype=query.dtype)], dim=1).contiguous().numpy()  # [B, d + 1]
        # enough neighbours that k survive the exclusions, plus a margin the exact re-scoring may reorder
        fetch = min(self.index.ntotal, k + max(len(e) for e in exclude) + self.cfg.candidates)
        _, found = self.index.search(query, fetch)  # [B, fetch] index rows, -1 when fewer were found
        table = head_table(network, head)
        out_items = np.empty((batch, k), dtype=np.int64)
        out_scores = np.empty((batch, k), dtype=np.float32)
        for row in range(batch):
            retrieved = found[row][found[row] >= 0] + FIRST_REAL_ITEM
            state_items = _state_items(states, row)
            candidates = np.union1d(retrieved, state_items)  # sorted, unique
            candidates = candidates[~np.isin(candidates, exclude[row])]
            scores = self._score(enc, row, query[row], table, candidates, state_items)
            out_items[row], out_scores[row] = rank_candidates(candidates, scores, k)
        return out_items, out_scores

    def _score(self, enc: Encoding, row: int, query: np.ndarray, table: HeadTable, candidates: np.ndarray,
               state_items: np.ndarray) -> np.ndarray:
        """The model's scores of state `row` for the candidates (sorted, unique) [C]."""
        network = self.network
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.float32)
        items = torch.from_numpy(candidates)
        one = _rows(enc, torch.tensor([row]))
        if not self.mixture:  # Q (repeat bonus, dueling mean included) or the additive CE head, from the model
            scores = network.q_values_of(one, items) if self.head == "q" else network.ce_logits_of(one, items)
            return scores[0].float().numpy()
        # the mixture: explore side for every candidate, the repeat side for the state's own items only
        q = torch.from_numpy(np.ascontiguousarray(query[:-1]))
        logits = torch.addmv(table.bias[items], table.vectors[items], q).float()  # [C] explore logits
        lse = self._lse_estimate(q, table, items, logits)
        _, _, log_explore = network._repeat_slots(one)
        scores = logits + (log_explore[0, 0] - lse)  # [C] log P(explore) p(i | explore)
        in_state = np.isin(candidates, state_items)
        if in_state.any():
            mixed = torch.from_numpy(candidates[in_state])
            rows = torch.full((len(mixed),), row, dtype=torch.long)
            scores[torch.from_numpy(in_state)] = network.score_pairs(_rows(enc, rows), "ce", mixed, lse.expand(len(mixed))).float()
        return scores.numpy()

    def _lse_estimate(self, q: torch.Tensor, table: HeadTable, candidates: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log sum over the catalogue of exp(explore logit): exact over the candidates (`logits`), the rest
        estimated from the fixed sample's items that are not candidates, scaled by (n - C) / their count."""
        head = logits.logsumexp(dim=0)
        rest = ~torch.isin(self.lse_sample, candidates)
        count = int(rest.sum())
        if count == 0:
            return head
        sample_logits = torch.addmv(self.lse_sample_bias, self.lse_sample_vectors, q).float()  # [S]
        tail = sample_logits[rest].logsumexp(dim=0) + math.log((self.n_items - len(candidates)) / count)
        return torch.logaddexp(head, tail)


def _index_bytes(index: Any) -> int:
    """Bytes the index holds beyond the model: its vectors or codes, list ids, centroids, graph links."""
    import faiss

    inner = faiss.downcast_index(index)
    size = 0
    if hasattr(inner, "invlists"):  # IVF: codes + one int64 id per vector + the coarse centroids
        size = index.ntotal * (inner.code_size + 8) + inner.nlist * index.d * 4
    elif hasattr(inner, "hnsw"):
        hnsw = inner.hnsw
        size = index.ntotal * index.d * 4 + hnsw.neighbors.size() * 4 + hnsw.offsets.size() * 8 + hnsw.levels.size() * 4
    elif hasattr(inner, "codes"):
        size = inner.codes.size()
    return int(size)


def make_retriever(model: Any, retrieval: str, cfg: AnnConfig | None = None) -> Any:
    """What ServingModel ranks with: the model itself (exact), FullScan (scan) or an AnnIndex (ann)."""
    if retrieval == "exact":
        return model
    if retrieval == "scan":
        # the scan is only a faster way to the exact top-k: a model without a DQN-LSTM item table is exact
        return FullScan(model) if isinstance(getattr(model, "network", None), QNetwork) else model
    if retrieval == "ann":
        return AnnIndex(model, cfg or AnnConfig())
    raise ConfigError(f"serve.retrieval must be exact, scan or ann (got {retrieval!r})")
