"""The network: embeddings of the state's items, categories and behaviours, the step features and the
profile, the LSTM (or BiLSTM + attention) encoder, the Q-head (linear or dueling) and the supervised
next-item head, with the repeat/copy term over the state's own items."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from drlrec.config import ModelConfig
from drlrec.features.profile import PROFILE_DIM
from drlrec.features.steps import STEP_DIM
from drlrec.models.base import FIRST_REAL_ITEM, StateBatch
from drlrec.schema import BEHAVIORS

#: the input sizes, from where they are defined (never repeated as numbers here)
N_BEHAVIORS = len(BEHAVIORS)
N_STEP_FEATURES = STEP_DIM
N_PROFILE_FEATURES = PROFILE_DIM


class TensorStates:
    """A StateBatch moved to torch on one device (int64 indices, float32 features)."""

    __slots__ = ("item_seq", "category_seq", "behavior_seq", "step_features", "profile")

    def __init__(self, states: StateBatch, device: torch.device | str = "cpu") -> None:
        self.item_seq = torch.as_tensor(states.item_seq, dtype=torch.long, device=device)  # [B, L]
        self.category_seq = torch.as_tensor(states.category_seq, dtype=torch.long, device=device)  # [B, L]
        self.behavior_seq = torch.as_tensor(states.behavior_seq, dtype=torch.long, device=device)  # [B, L]
        self.step_features = torch.as_tensor(states.step_features, dtype=torch.float32, device=device)  # [B, L, 20]
        self.profile = torch.as_tensor(states.profile, dtype=torch.float32, device=device)  # [B, 10]


class Encoding(NamedTuple):
    """The encoder's output: phi(s) and the state it came from (the repeat term reads its history)."""

    phi: Tensor  # [B, query_dim]
    history: TensorStates


class QNetwork(nn.Module):
    """Encoder + item-scoring heads. All scores are over the full item vocabulary."""

    def __init__(self, n_items: int, n_categories: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.n_categories = n_categories
        self.cfg = cfg
        self.item_embedding = nn.Embedding(n_items, cfg.item_dim, padding_idx=0)
        self.category_embedding = nn.Embedding(n_categories, cfg.category_dim, padding_idx=0)
        # behaviour tokens are code + 1, so that 0 is padding
        self.behavior_embedding = nn.Embedding(N_BEHAVIORS + 1, cfg.behavior_dim, padding_idx=0)
        in_dim = cfg.item_dim + cfg.category_dim + cfg.behavior_dim
        in_dim += N_STEP_FEATURES if cfg.use_step_features else 0
        bidirectional = cfg.variant == "bilstm_attention"
        self.lstm = nn.LSTM(
            in_dim,
            cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        enc_dim = cfg.hidden * (2 if bidirectional else 1)
        self.attention = (
            nn.MultiheadAttention(enc_dim, cfg.attention_heads, dropout=cfg.dropout, batch_first=True)
            if bidirectional
            else None
        )
        fc_in = enc_dim + (N_PROFILE_FEATURES if cfg.use_profile else 0)
        fc_hidden, query_dim = cfg.fc
        self.fc = nn.Sequential(
            nn.Linear(fc_in, fc_hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(fc_hidden, query_dim),
            nn.ReLU(),
        )
        if cfg.tie_item_embeddings:
            self.item_projection = nn.Linear(cfg.item_dim, query_dim, bias=False)
            self.output_embedding = None
        else:
            self.item_projection = None
            self.output_embedding = nn.Embedding(n_items, query_dim)
        self.q_bias = nn.Parameter(torch.zeros(n_items))
        self.value = nn.Linear(query_dim, 1) if cfg.head == "dueling" else None
        # SQN: a supervised next-item head on the same encoder and item vectors
        self.ce_projection = nn.Linear(query_dim, query_dim)
        self.ce_bias = nn.Parameter(torch.zeros(n_items))
        # repeat term: score bonus for an item at history position p with behaviour token t, per head
        self.max_len = 512
        self.repeat_q = nn.Parameter(repeat_prior(self.max_len, cfg.repeat_init)) if cfg.repeat_head else None
        self.repeat_ce = nn.Parameter(repeat_prior(self.max_len, cfg.repeat_init)) if cfg.repeat_head else None
        # model.repeat_factors: per head, [age slope, offset of behaviour token 0..4] added to the table's weights
        factors = cfg.repeat_head and cfg.repeat_factors
        self.repeat_q_factors = nn.Parameter(torch.zeros(N_BEHAVIORS + 2)) if factors else None
        self.repeat_ce_factors = nn.Parameter(torch.zeros(N_BEHAVIORS + 2)) if factors else None
        # RepeatNet mixture (repeat_mode "mixture"): the CE head's repeat distribution over the state's items
        # (position/behaviour prior `repeat_ce` + a state-item affinity) and the gate P(repeat | s)
        self.mixture = cfg.repeat_head and cfg.repeat_mode == "mixture"
        self.repeat_projection = nn.Linear(query_dim, query_dim) if self.mixture else None
        self.repeat_gate = nn.Linear(query_dim, 1) if self.mixture else None

    # ------------------------------------------------------------------------------------------ encoder

    def encode(self, states: TensorStates) -> Encoding:
        """State representation phi(s) [B, query_dim], with its state (the whole state: the repeat terms read
        all of it, while the encoder reads its last `encoder_window` slots when that is set)."""
        window = slice(-self.cfg.encoder_window, None) if self.cfg.encoder_window > 0 else slice(None)
        items = states.item_seq[:, window]  # [B, W]
        parts = [
            self.item_embedding(items),  # [B, W, item_dim]
            self.category_embedding(states.category_seq[:, window]),  # [B, W, category_dim]
            self.behavior_embedding(states.behavior_seq[:, window]),  # [B, W, behavior_dim]
        ]
        if self.cfg.use_step_features:
            parts.append(states.step_features[:, window])  # [B, W, 20]
        x = torch.cat(parts, dim=-1)  # [B, W, in_dim]
        out, _ = self.lstm(x)  # [B, W, enc_dim]; left-padded, so the last step is the latest interaction
        if self.attention is None:
            encoded = out[:, -1]  # [B, enc_dim]
        else:
            padding = items == 0  # [B, W]
            padding[:, -1] = False  # keep one key so an empty history attends to something, never NaN
            attended, _ = self.attention(out[:, -1:], out, out, key_padding_mask=padding)
            encoded = attended[:, 0]  # [B, enc_dim]
        if self.cfg.use_profile:
            encoded = torch.cat([encoded, states.profile], dim=-1)
        return Encoding(self.fc(encoded), states)

    # ------------------------------------------------------------------------------------------ heads

    def item_vectors(self, items: Tensor | None = None, detach: bool = False) -> Tensor:
        """e_a for the given items ([n] -> [n, query_dim]) or for the whole vocabulary. `detach`: no gradient
        reaches the item table through these vectors (the TD loss may be kept off the shared item vectors)."""
        if items is None and not torch.is_grad_enabled():
            return self._cached_item_vectors()
        if items is None and self.item_embedding.sparse:
            # row-wise item optimizers (train.item_optimizer) take sparse gradients: look every row up
            # rather than reading .weight, whose gradient would be dense
            items = torch.arange(self.n_items, device=self.item_embedding.weight.device)
        if self.output_embedding is not None:
            vectors = self.output_embedding.weight if items is None else self.output_embedding(items)
        else:
            emb = self.item_embedding.weight if items is None else self.item_embedding(items)
            vectors = self.item_projection(emb)
        return vectors.detach() if detach else vectors

    def _cached_item_vectors(self) -> Tensor:
        """The full [n_items, query_dim] table for inference, recomputed only when a weight it depends on
        changed (tensor `_version` counters move on every in-place update, e.g. optimizer.step)."""
        source = self.output_embedding.weight if self.output_embedding is not None else self.item_embedding.weight
        weights = [source] + ([self.item_projection.weight] if self.item_projection is not None else [])
        key = tuple((w.data_ptr(), w._version) for w in weights)
        cache = getattr(self, "_item_cache", None)
        if cache is None or cache[0] != key:
            if self.output_embedding is not None:
                table = self.output_embedding.weight.detach()
            else:
                table = self.item_projection(self.item_embedding.weight).detach()
            cache = (key, table)
            object.__setattr__(self, "_item_cache", cache)  # plain attribute, not a registered buffer
        return cache[1]

    def drop_item_cache(self) -> None:
        """Free the inference table of `_cached_item_vectors` (training drops it after each evaluation)."""
        self.__dict__.pop("_item_cache", None)

    def _repeat(self, enc: Encoding, weights: Tensor | None, items: Tensor, per_row: bool = False) -> Tensor | float:
        """Repeat bonus (sum over history positions holding the item of weights[position, behaviour]).

        items [C] (sorted, unique): for shared candidates [B, C]; items [B] with per_row: one action
        per state [B]. (For the whole catalogue, `_add_repeat` scatters into the scores directly.)
        """
        if weights is None:
            return 0.0
        seq = enc.history.item_seq  # [B, L]
        w = self._repeat_weights(enc, weights)  # [B, L]
        if per_row:
            return ((seq == items[:, None]) * w).sum(dim=1)  # [B]
        # candidates are sorted (torch.unique / arange): find each history item's slot, O(B L)
        slot = torch.searchsorted(items, seq).clamp(max=len(items) - 1)  # [B, L]
        hit = items[slot] == seq
        bonus = torch.zeros(seq.shape[0], len(items), device=seq.device, dtype=w.dtype)
        return bonus.scatter_add(1, slot, torch.where(hit, w, torch.zeros_like(w)))  # [B, C]

    def _add_repeat(self, enc: Encoding, weights: Tensor | None, scores: Tensor) -> Tensor:
        """scores [B, n_items] + the repeat bonus, scattered straight into the scores (in place when no
        gradient is needed, so inference makes no extra [B, n_items] pass)."""
        if weights is None:
            return scores
        seq = enc.history.item_seq  # [B, L]
        w = self._repeat_weights(enc, weights)  # [B, L]
        if torch.is_grad_enabled():
            return scores.scatter_add(1, seq, w)
        return scores.scatter_add_(1, seq, w)

    def _repeat_weights(self, enc: Encoding, weights: Tensor) -> Tensor:
        """weights[position, behaviour] for each history slot, 0 at padding and at unknown items (a re-view
        of an item nobody can name is no reason to score the unknown item higher): [B, L]."""
        history = enc.history
        length = history.item_seq.shape[1]
        w = weights[self.max_len - length :][torch.arange(length, device=weights.device)[None, :], history.behavior_seq]
        factors = self.repeat_q_factors if weights is self.repeat_q else self.repeat_ce_factors
        if factors is not None:  # model.repeat_factors: + slope * age + offset[behaviour]
            age = torch.arange(length - 1, -1, -1, device=w.device, dtype=w.dtype)  # [L], 0 = the latest slot
            w = w + factors[0] * age[None, :] + factors[1:][history.behavior_seq]
        return torch.where(history.item_seq >= FIRST_REAL_ITEM, w, torch.zeros_like(w))

    def q_values(self, enc: Encoding) -> Tensor:
        """Q(s, .) over all items: [B, n_items]."""
        phi = enc.phi
        advantage = self._add_repeat(enc, self.repeat_q, torch.addmm(self.q_bias, phi, self.item_vectors().T))  # [B, n_items]
        if self.value is None:
            return advantage
        return self.value(phi) + advantage - advantage.mean(dim=1, keepdim=True)

    def q_of_actions(self, enc: Encoding, actions: Tensor, detach_items: bool = False) -> Tensor:
        """Q(s, a) for one action per state, without scoring the catalogue when the head allows: [B]."""
        phi = enc.phi
        advantage = (phi * self.item_vectors(actions, detach_items)).sum(-1) + self.q_bias[actions]  # [B]
        advantage = advantage + self._repeat(enc, self.repeat_q, actions, per_row=True)
        if self.value is None:
            return advantage
        return self.value(phi).squeeze(-1) + advantage - self._mean_advantage(enc)

    def _mean_advantage(self, enc: Encoding) -> Tensor:
        """mean_a A(s, a) = phi . mean(e) + mean(b) + (sum of repeat bonuses) / n_items: no [B, n_items]."""
        mean = enc.phi @ self.item_vectors().mean(dim=0) + self.q_bias.mean()  # [B]
        if self.repeat_q is not None:
            mean = mean + self._repeat_weights(enc, self.repeat_q).sum(dim=1) / self.n_items
        return mean

    def ce_logits(self, enc: Encoding) -> Tensor:
        """Next-item logits of the supervised head: [B, n_items] (with the mixture: log-probabilities)."""
        logits = torch.addmm(self.ce_bias, self.ce_projection(enc.phi), self.item_vectors().T)  # [B, n_items]
        if self.mixture:
            return self._mixture(enc, logits, None)
        return self._add_repeat(enc, self.repeat_ce, logits)

    def _mixture(self, enc: Encoding, explore_logits: Tensor, items: Tensor | None) -> Tensor:
        """RepeatNet's log p(i | s) over `items` (sorted, unique; None = the whole catalogue): [B, C].

        log p(i) = logaddexp(log P(explore) + log_softmax(explore)_i, log P(repeat) + log P(i | repeat)), where
        P(i | repeat) sums a softmax over the state's known slots (the slot logit is the position/behaviour
        weight plus an affinity of the state to the slot's item) over the slots that hold i. With the
        state's items among `items` the result is a normalised distribution over them, so cross-entropy on
        it is the mixture's negative log-likelihood; a state with no known item is pure explore."""
        seq = enc.history.item_seq  # [B, L]
        slot_prob, log_repeat, log_explore = self._repeat_slots(enc)
        if items is None:
            column = seq
        else:
            column = torch.searchsorted(items, seq).clamp(max=len(items) - 1)  # [B, L]
            slot_prob = torch.where(items[column] == seq, slot_prob, torch.zeros_like(slot_prob))
        repeat_prob = torch.zeros(explore_logits.shape, device=seq.device, dtype=slot_prob.dtype)
        repeat_prob = repeat_prob.scatter_add(1, column, slot_prob)  # [B, C] P(i | repeat)
        explore = log_explore + torch.log_softmax(explore_logits.float(), dim=1)  # [B, C]
        in_state = repeat_prob > 0
        repeat = torch.where(in_state, log_repeat + torch.log(torch.where(in_state, repeat_prob, torch.ones_like(repeat_prob))), torch.full_like(explore, float("-inf")))
        return torch.logaddexp(explore, repeat)

    def _repeat_slots(self, enc: Encoding) -> tuple[Tensor, Tensor, Tensor]:
        """The mixture's repeat side: P(slot | repeat) [B, L] (0 at padding and unknown slots), log P(repeat)
        and log P(explore) [B, 1] (a state with no known item is pure explore)."""
        seq = enc.history.item_seq  # [B, L]
        valid = seq >= FIRST_REAL_ITEM  # [B, L] padding and unknown slots never repeat
        slot_items = self.item_vectors(seq.reshape(-1)).view(*seq.shape, -1)  # [B, L, d]
        affinity = (slot_items * self.repeat_projection(enc.phi)[:, None, :]).sum(-1)  # [B, L]
        slot_logits = (affinity + self._repeat_weights(enc, self.repeat_ce)).float().masked_fill(~valid, float("-inf"))
        has_repeat = valid.any(dim=1)  # [B]
        slot_prob = torch.softmax(slot_logits.masked_fill(~has_repeat[:, None], 0.0), dim=1)  # [B, L]
        slot_prob = torch.where(valid, slot_prob, torch.zeros_like(slot_prob))
        gate = self.repeat_gate(enc.phi).float()  # [B, 1]
        log_repeat = torch.where(has_repeat[:, None], F.logsigmoid(gate), torch.full_like(gate, float("-inf")))
        log_explore = torch.where(has_repeat[:, None], F.logsigmoid(-gate), torch.zeros_like(gate))
        return slot_prob, log_repeat, log_explore

    # ------------------------------------------------------------------------------------------ item blocks

    def explore_logsumexp(self, enc: Encoding, block: int) -> Tensor:
        """log sum_i exp(explore logit_i) over the whole catalogue, `block` items at a time: [B] (the
        mixture's softmax normaliser, without a [B, n_items] matrix)."""
        query = self.ce_projection(enc.phi)  # [B, d]
        table = self.item_vectors()
        total = torch.full((len(query),), float("-inf"), device=query.device)
        out = torch.empty((len(query), min(block, self.n_items)), dtype=query.dtype, device=query.device)
        for lo in range(0, self.n_items, block):
            hi = min(lo + block, self.n_items)
            buffer = out if hi - lo == out.shape[1] else None  # one reused [B, block] buffer (the last block: new)
            logits = torch.addmm(self.ce_bias[lo:hi], query, table[lo:hi].T, out=buffer).float()  # [B, C]
            total = torch.logaddexp(total, torch.logsumexp(logits, dim=1))
        return total

    def score_block(self, enc: Encoding, head: str, lo: int, hi: int, explore_lse: Tensor | None = None,
                    out: Tensor | None = None) -> Tensor:
        """Columns [lo, hi) of q_values (head "q") or ce_logits (head "ce"), computed from those items alone:
        [B, hi - lo]. The mixture needs `explore_lse` ([B], from explore_logsumexp). `out`: a [B, hi - lo]
        float32 tensor to compute into (reused block after block, it spares a fresh allocation, and its page
        faults, per block)."""
        table = self.item_vectors()[lo:hi]  # [C, d], a view of the cached table
        seq = enc.history.item_seq  # [B, L]
        inside = (seq >= lo) & (seq < hi)  # [B, L] slots whose item is a column of this block
        column = (seq - lo).clamp(0, hi - lo - 1)  # [B, L]

        def scatter(scores: Tensor, slot_values: Tensor) -> Tensor:
            return scores.scatter_add_(1, column, torch.where(inside, slot_values, torch.zeros_like(slot_values)))

        if head == "q":
            advantage = torch.addmm(self.q_bias[lo:hi], enc.phi, table.T, out=out)  # [B, C]
            if self.repeat_q is not None:
                advantage = scatter(advantage, self._repeat_weights(enc, self.repeat_q))
            if self.value is None:
                return advantage
            # in place, in q_values's order: (value + advantage) - mean (float addition commutes exactly)
            return advantage.add_(self.value(enc.phi)).sub_(self._mean_advantage(enc)[:, None])
        logits = torch.addmm(self.ce_bias[lo:hi], self.ce_projection(enc.phi), table.T, out=out)  # [B, C]
        if not self.mixture:
            return logits if self.repeat_ce is None else scatter(logits, self._repeat_weights(enc, self.repeat_ce))
        if explore_lse is None:
            raise ValueError("the mixture's block scores need explore_lse (explore_logsumexp)")
        slot_prob, log_repeat, log_explore = self._repeat_slots(enc)
        scores = logits.float().add_(log_explore - explore_lse[:, None])  # [B, C] log P(explore) p(i | explore)
        # only the state's own items (at most L a row) have a repeat term: mix those cells alone
        rows, slots = torch.nonzero(inside & (slot_prob > 0), as_tuple=True)
        if len(rows):
            cells = rows * scores.shape[1] + column[rows, slots]  # flat index of each (row, item) cell
            cells, first = torch.unique(cells, return_inverse=True)
            repeat_prob = torch.zeros(len(cells), dtype=slot_prob.dtype, device=cells.device).scatter_add_(0, first, slot_prob[rows, slots])
            cell_rows = cells // scores.shape[1]
            flat = scores.view(-1)
            flat[cells] = torch.logaddexp(flat[cells], log_repeat[cell_rows, 0] + torch.log(repeat_prob))
        return scores

    def score_pairs(self, enc: Encoding, head: str, items: Tensor, explore_lse: Tensor | None = None) -> Tensor:
        """score_block's value of one item per state (items [B] -> [B]), computed from that item alone: equal
        to the block's up to float rounding."""
        if head == "q":
            return self.q_of_actions(enc, items)
        logits = (self.ce_projection(enc.phi) * self.item_vectors(items)).sum(-1) + self.ce_bias[items]  # [B]
        if not self.mixture:
            return logits + self._repeat(enc, self.repeat_ce, items, per_row=True)
        if explore_lse is None:
            raise ValueError("the mixture's scores need explore_lse (explore_logsumexp)")
        slot_prob, log_repeat, log_explore = self._repeat_slots(enc)
        explore = log_explore[:, 0] + logits.float() - explore_lse  # [B]
        repeat_prob = (slot_prob * (enc.history.item_seq == items[:, None])).sum(dim=1)  # [B] P(item | repeat)
        repeat = torch.where(repeat_prob > 0, log_repeat[:, 0] + torch.log(repeat_prob.clamp_min(1e-30)),
                             torch.full_like(explore, float("-inf")))
        return torch.logaddexp(explore, repeat)

    def q_values_of(self, enc: Encoding, items: Tensor, detach_items: bool = False) -> Tensor:
        """Q(s, a) for a shared candidate set of items: [B, C] (dueling keeps the full-catalogue mean)."""
        vectors = self.item_vectors(items, detach_items)  # [C, d]
        advantage = enc.phi @ vectors.T + self.q_bias[items] + self._repeat(enc, self.repeat_q, items)  # [B, C]
        if self.value is None:
            return advantage
        return self.value(enc.phi) + advantage - self._mean_advantage(enc)[:, None]

    def ce_logits_of(self, enc: Encoding, items: Tensor) -> Tensor:
        """Supervised-head logits for a shared candidate set (sorted, unique): [B, C]. With the mixture they are
        log-probabilities normalised over the candidates (the explore softmax is a sampled one)."""
        logits = self.ce_projection(enc.phi) @ self.item_vectors(items).T + self.ce_bias[items]
        if self.mixture:
            return self._mixture(enc, logits, items)
        return logits + self._repeat(enc, self.repeat_ce, items)

    def forward(self, states: TensorStates) -> Tensor:
        return self.q_values(self.encode(states))


def repeat_prior(max_len: int, scale: float, decay: float = 0.8) -> Tensor:
    """Initial repeat weights [max_len, 5]: `scale * decay ** age` for every behaviour (age 0 = the latest
    slot, the last row), 0 for padding. A trained copy path from the start: Taobao-like logs are dominated
    by re-views, and a zero start leaves the head to discover them from the few candidates that hold them."""
    age = torch.arange(max_len - 1, -1, -1, dtype=torch.float32)  # [max_len]
    prior = (scale * decay**age)[:, None].repeat(1, N_BEHAVIORS + 1)
    prior[:, 0] = 0.0
    return prior


def mask_unrecommendable(scores: Tensor) -> Tensor:
    """Set padding and unknown items to -inf (in place) so argmax/top-k never pick them."""
    scores[:, :FIRST_REAL_ITEM] = float("-inf")
    return scores
