"""SASRec (Kang & McAuley 2018) with full cross-entropy (Klenitskiy & Vasilev 2023): causal self-attention
over the sequence, tied item embeddings for the output.

Input at position p: item embedding * sqrt(dim) + positional embedding + category and behaviour embeddings
(Taobao logs carry both; they cost two small tables). Positions count from the oldest real item of the
(left-padded) sequence, so a scored state of N items uses positions 0..N-1: exactly the positions whose
hidden states are trained in every chunk, with the same number of items in view (whole-sequence training,
`next_item`). Pre-LayerNorm Transformer blocks with a causal mask, in which a padding key is also masked
except for its own query (so no row is ever fully masked and padding never leaks into a real position).
Like the original, it reads at most the latest `max_len` interactions of a state. logit(i) = h .
item_embedding[i]: the output shares the input table; `repeat_scores` adds a learned score
for items already in the sequence (sequence_fit.RepeatScores; not part of the original model).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from drlrec.config import SASRecConfig
from drlrec.models.dqn_lstm import N_BEHAVIORS
from drlrec.models.sequence_fit import RepeatScores, SequenceNetwork, SequenceRecommender


class SASRecNetwork(SequenceNetwork):
    """The SASRec network (module doc)."""

    def __init__(self, n_items: int, n_categories: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.dim = cfg.dim
        self.heads = cfg.heads
        self.max_len = self.max_context = cfg.max_len
        self.item_embedding = nn.Embedding(n_items, cfg.dim, padding_idx=0)
        self.category_embedding = nn.Embedding(n_categories, cfg.dim, padding_idx=0)
        self.behavior_embedding = nn.Embedding(N_BEHAVIORS + 1, cfg.dim, padding_idx=0)
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.dim)
        # the item enters at norm ~sqrt(dim) (std dim**-0.5, times sqrt(dim)); the side inputs start at norm ~1,
        # so at first the hidden state is mostly the item itself and h . e(item) already favours a re-view
        nn.init.normal_(self.item_embedding.weight, std=cfg.dim**-0.5)
        for table in (self.category_embedding, self.behavior_embedding, self.position_embedding):
            nn.init.normal_(table.weight, std=cfg.dim**-0.5)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.dim, cfg.heads, dim_feedforward=cfg.dim, dropout=cfg.dropout,
                                       batch_first=True, norm_first=True)
            for _ in range(cfg.blocks)
        )
        self.final_norm = nn.LayerNorm(cfg.dim)
        self.repeat = RepeatScores(cfg.max_len) if cfg.repeat_scores else None

    def attention_mask(self, item_seq: Tensor) -> Tensor:
        """[B * heads, L, L] bool, True = may not attend: future keys, and padding keys other than the query."""
        batch, length = item_seq.shape
        position = torch.arange(length, device=item_seq.device)
        future = position[None, :] > position[:, None]  # [L, L] key after query
        padding_key = (item_seq == 0)[:, None, :] & (position[None, :] != position[:, None])[None]  # [B, L, L]
        mask = future[None] | padding_key
        return mask.repeat_interleave(self.heads, dim=0)

    def hidden_states(self, item_seq: Tensor, category_seq: Tensor, behavior_seq: Tensor) -> Tensor:
        batch, length = item_seq.shape  # [B, L]
        if length > self.max_len:
            raise ValueError(f"sasrec: sequence length {length} exceeds max_len {self.max_len}")
        not_padding = item_seq > 0  # [B, L]
        n_padding = length - not_padding.sum(dim=1, keepdim=True)  # [B, 1]
        position = (torch.arange(length, device=item_seq.device)[None, :] - n_padding).clamp(min=0)  # [B, L]
        x = (
            self.item_embedding(item_seq) * math.sqrt(self.dim)
            + self.position_embedding(position)
            + self.category_embedding(category_seq)
            + self.behavior_embedding(behavior_seq)
        )  # [B, L, dim]
        keep = not_padding.unsqueeze(-1).to(x.dtype)  # [B, L, 1]
        x = self.dropout(x) * keep
        mask = self.attention_mask(item_seq)
        for block in self.blocks:
            x = block(x, src_mask=mask) * keep
        return self.final_norm(x)  # [B, L, dim]

    def output_of(self, items: Tensor | None = None) -> tuple[Tensor, None]:
        return (self.item_embedding.weight if items is None else self.item_embedding(items)), None


class SASRec(SequenceRecommender):
    """SASRec behind the shared interface."""

    name = "sasrec"
    section = "sasrec"

    def build_network(self) -> SASRecNetwork:
        return SASRecNetwork(self.n_items, self.n_categories, self.section_cfg)
