"""GRU4Rec (Hidasi et al. 2016; as in Hidasi & Czapp, RecSys 2023) with category and behaviour inputs and a
category output term.

Input at each step: item, category and behaviour embeddings, with dropout (GRU4Rec's embedding dropout).
One GRU layer from a zero initial state (GRU4Rec has no user-level init), dropout on its output (GRU4Rec's
hidden dropout). Left-padded sequences are right-aligned and packed, so padding never moves the hidden state.
Trained on whole user sequences with every position supervised and full cross-entropy, or sampled softmax
with logQ-corrected popularity negatives above a memory cap (`next_item`; GRU4Rec's `logq`, `sample_alpha`).

Output: logit(i) = h . (item_vec[i] + category_vec[cat(i)]) + item_bias[i] + category_bias[cat(i)]
(GRU4Rec's output weights and bias, plus a category term). Item vectors and biases start at zero, so an
item that is never a training target keeps an output vector equal to every other such item's: it is
scored by its category term alone, a finite, category-dependent score instead of noise. `repeat_scores` adds
a learned score for items already in the sequence (sequence_fit.RepeatScores; not part of the original model).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from drlrec.config import GRU4RecConfig
from drlrec.models.base import TrainingData
from drlrec.models.dqn_lstm import N_BEHAVIORS
from drlrec.models.sequence_fit import RepeatScores, SequenceNetwork, SequenceRecommender


def right_align(x: Tensor, lengths: Tensor) -> Tensor:
    """Left-padded [B, L, ...] -> right-padded (real steps first), a per-row roll by L - length."""
    batch, length = x.shape[:2]
    shift = length - lengths  # [B]
    index = (torch.arange(length, device=x.device)[None, :] + shift[:, None]) % length  # [B, L]
    return x.gather(1, index.view(batch, length, *([1] * (x.dim() - 2))).expand_as(x))


def left_align(x: Tensor, lengths: Tensor) -> Tensor:
    """Inverse of right_align: right-padded [B, L, ...] -> left-padded."""
    batch, length = x.shape[:2]
    shift = length - lengths
    index = (torch.arange(length, device=x.device)[None, :] - shift[:, None]) % length
    return x.gather(1, index.view(batch, length, *([1] * (x.dim() - 2))).expand_as(x))


class GRU4RecNetwork(SequenceNetwork):
    """The GRU4Rec network (module doc)."""

    def __init__(self, n_items: int, n_categories: int, cfg: GRU4RecConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.item_embedding = nn.Embedding(n_items, cfg.item_dim, padding_idx=0)
        self.category_embedding = nn.Embedding(n_categories, cfg.category_dim, padding_idx=0)
        self.behavior_embedding = nn.Embedding(N_BEHAVIORS + 1, cfg.behavior_dim, padding_idx=0)
        self.gru = nn.GRU(cfg.item_dim + cfg.category_dim + cfg.behavior_dim, cfg.hidden, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.hidden_dropout = nn.Dropout(cfg.hidden_dropout)
        self.item_out = nn.Embedding(n_items, cfg.hidden)
        self.category_out = nn.Embedding(n_categories, cfg.hidden)
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.category_bias = nn.Parameter(torch.zeros(n_categories))
        nn.init.zeros_(self.item_out.weight)  # untrained (cold) items: category term only
        nn.init.normal_(self.category_out.weight, std=0.05)
        self.register_buffer("item_category", torch.zeros(n_items, dtype=torch.long))
        self.repeat = RepeatScores(cfg.max_len) if cfg.repeat_scores else None

    def hidden_states(self, item_seq: Tensor, category_seq: Tensor, behavior_seq: Tensor) -> Tensor:
        x = torch.cat(
            [
                self.item_embedding(item_seq),  # [B, L, item_dim]
                self.category_embedding(category_seq),  # [B, L, category_dim]
                self.behavior_embedding(behavior_seq),  # [B, L, behavior_dim]
            ],
            dim=-1,
        )
        x = self.dropout(x)
        lengths = (item_seq > 0).sum(dim=1).clamp(min=1)  # [B]
        packed = pack_padded_sequence(right_align(x, lengths), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # [B, L, hidden]
        return self.hidden_dropout(left_align(out, lengths))

    def output_of(self, items: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(vectors [..., hidden], biases [...]) of the given items, or of the whole catalogue."""
        items = torch.arange(self.n_items, device=self.item_bias.device) if items is None else items
        category = self.item_category[items]
        vectors = self.item_out(items) + self.category_out(category)
        return vectors, self.item_bias[items] + self.category_bias[category]


class GRU4Rec(SequenceRecommender):
    """GRU4Rec (+ category and behaviour inputs, category output term) behind the shared interface."""

    name = "gru4rec"
    section = "gru4rec"

    def build_network(self) -> GRU4RecNetwork:
        return GRU4RecNetwork(self.n_items, self.n_categories, self.section_cfg)

    def prepare(self, data: TrainingData) -> None:
        """The item -> category map is part of the network (saved with its weights)."""
        category = np.clip(np.asarray(data.item_category, dtype=np.int64), 0, self.n_categories - 1)
        self.network.item_category.copy_(torch.as_tensor(category, device=self.device))
