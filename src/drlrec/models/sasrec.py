"""SASRec (Kang & McAuley 2018): causal self-attention over the state, tied item embeddings for the output.

Input at position p: item embedding * sqrt(dim) + positional embedding (positions counted from the latest
interaction, so the newest is always the same slot) + category and behaviour embeddings (Taobao logs
carry both; they cost two small tables). Pre-LayerNorm Transformer blocks with a causal mask, in which
a padding key is also masked except for its own query (so no row is ever fully masked and padding never
leaks into a real position). logit(i) = h . item_embedding[i]: the output shares the input table.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from drlrec.config import SASRecConfig
from drlrec.models.dqn_lstm import N_BEHAVIORS, TensorStates
from drlrec.models.next_item import SequenceNetwork, SequenceRecommender


class SASRecNetwork(SequenceNetwork):
    """The SASRec network (module doc)."""

    def __init__(self, n_items: int, n_categories: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.dim = cfg.dim
        self.heads = cfg.heads
        self.max_len = cfg.max_len
        self.item_embedding = nn.Embedding(n_items, cfg.dim, padding_idx=0)
        self.category_embedding = nn.Embedding(n_categories, cfg.dim, padding_idx=0)
        self.behavior_embedding = nn.Embedding(N_BEHAVIORS + 1, cfg.dim, padding_idx=0)
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.dim)
        nn.init.normal_(self.item_embedding.weight, std=cfg.dim**-0.5)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.dim, cfg.heads, dim_feedforward=cfg.dim, dropout=cfg.dropout,
                                       batch_first=True, norm_first=True)
            for _ in range(cfg.blocks)
        )
        self.final_norm = nn.LayerNorm(cfg.dim)

    def attention_mask(self, item_seq: Tensor) -> Tensor:
        """[B * heads, L, L] bool, True = may not attend: future keys, and padding keys other than the query."""
        batch, length = item_seq.shape
        position = torch.arange(length, device=item_seq.device)
        future = position[None, :] > position[:, None]  # [L, L] key after query
        padding_key = (item_seq == 0)[:, None, :] & (position[None, :] != position[:, None])[None]  # [B, L, L]
        mask = future[None] | padding_key
        return mask.repeat_interleave(self.heads, dim=0)

    def hidden_states(self, states: TensorStates) -> Tensor:
        item_seq = states.item_seq  # [B, L]
        length = item_seq.shape[1]
        if length > self.max_len:
            raise ValueError(f"sasrec: state length {length} exceeds max_len {self.max_len}")
        position = torch.arange(self.max_len - length, self.max_len, device=item_seq.device)  # newest = last slot
        x = (
            self.item_embedding(item_seq) * math.sqrt(self.dim)
            + self.position_embedding(position)[None]
            + self.category_embedding(states.category_seq)
            + self.behavior_embedding(states.behavior_seq)
        )  # [B, L, dim]
        not_padding = (item_seq > 0).unsqueeze(-1).to(x.dtype)  # [B, L, 1]
        x = self.dropout(x) * not_padding
        mask = self.attention_mask(item_seq)
        for block in self.blocks:
            x = block(x, src_mask=mask) * not_padding
        return self.final_norm(x)  # [B, L, dim]

    def logits_of(self, hidden: Tensor, items: Tensor) -> Tensor:
        return hidden @ self.item_embedding(items).T  # [N, C]

    def all_logits(self, hidden: Tensor) -> Tensor:
        return hidden @ self.item_embedding.weight.T  # [N, n_items]


class SASRec(SequenceRecommender):
    """SASRec behind the shared interface."""

    name = "sasrec"
    section = "sasrec"

    def build_network(self) -> SASRecNetwork:
        return SASRecNetwork(self.n_items, self.n_categories, self.section_cfg)
