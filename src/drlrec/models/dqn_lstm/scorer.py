"""DQNLSTM: the network behind the shared Recommender interface (scores by head, block-wise scoring of a
large catalogue, save/load with every head's validated weights), and the ScoringModule the MLflow
torch flavour serves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from drlrec.config import ModelConfig
from drlrec.models.base import ScoreBlocks, Scorer, StateBatch
from drlrec.models.dqn_lstm.network import N_STEP_FEATURES, Encoding, QNetwork, TensorStates


class DQNLSTM(Scorer):
    """The DQN-LSTM behind the shared scoring interface; `score` returns Q-values (or, with
    `score_with="ce"`, the supervised head's logits). `score_with` is the served head, chosen on
    validation by `drlrec.rl.dqn.fit_dqn_lstm`, the one way a DQN-LSTM is trained."""

    name = "dqn_lstm"

    def __init__(
        self,
        n_items: int,
        n_categories: int,
        cfg: ModelConfig,
        device: str | torch.device = "cpu",
        score_with: str = "q",
    ) -> None:
        self.n_items = n_items
        self.n_categories = n_categories
        self.cfg = cfg
        self.device = torch.device(device)
        self.score_with = score_with
        self.network = QNetwork(n_items, n_categories, cfg).to(self.device)
        # head -> the weights that head was validated at (fit_dqn_lstm keeps each head's best); the network
        # holds the served head's. Empty: one set of weights for every head.
        self.head_states: dict[str, dict[str, Tensor]] = {}
        self.served_head = score_with

    def use_head(self, head: str) -> None:
        """Score with `head` from now on, on that head's own validated weights when the fit kept them."""
        if head in self.head_states:
            self.network.load_state_dict(self.head_states[head])
        self.score_with = head

    @torch.no_grad()
    def score(self, states: StateBatch, batch_size: int = 1024) -> np.ndarray:
        self.network.eval()
        if states.batch_size <= batch_size:  # one chunk: hand back the tensor's memory, no copy
            enc = self.network.encode(TensorStates(states, self.device))
            scores = self.network.ce_logits(enc) if self.score_with == "ce" else self.network.q_values(enc)
            return scores.float().cpu().numpy()
        out = np.empty((states.batch_size, self.n_items), dtype=np.float32)
        for start in range(0, states.batch_size, batch_size):
            chunk = TensorStates(states.slice(start, start + batch_size), self.device)
            enc = self.network.encode(chunk)
            scores = self.network.ce_logits(enc) if self.score_with == "ce" else self.network.q_values(enc)
            out[start : start + len(scores)] = scores.float().cpu().numpy()
        return out

    @torch.no_grad()
    def score_blocks(self, states: StateBatch, block: int = 1 << 13) -> ScoreBlocks:
        """Item blocks of `score` from the item table, never [B, n_items] (the state is encoded once)."""
        self.network.eval()
        return _NetworkBlocks(self.network, self.network.encode(TensorStates(states, self.device)), self.score_with, block)

    # ------------------------------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        """Save weights + everything needed to rebuild the network (atomic)."""
        from drlrec.atomic import save_torch

        payload = {
            "n_items": self.n_items,
            "n_categories": self.n_categories,
            "model_config": dataclasses.asdict(self.cfg),
            "score_with": self.served_head,
            "state_dict": {k: v.cpu() for k, v in self._served_state().items()},
            # the other heads' own validated weights (compare and simulate score each head on its own)
            "head_states": {
                head: {k: v.cpu() for k, v in state.items()}
                for head, state in self.head_states.items()
                if head != self.served_head
            },
        }
        save_torch(path, payload)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> DQNLSTM:
        # memory-mapped: the weights are copied into the network from the file's pages, and the other heads'
        # weights (head_states, read only when compare or simulate switch heads) stay on disk until used.
        # Read whole, a 4.2M-item model (two 1 GB item tables in the file) took 3.7 GB to load for 1 GB of
        # network. Files are replaced by rename (drlrec.atomic), so a mapping never sees a half-written one.
        payload = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        # models saved before the mixture (2026-12-02) and the repeat factors (2026-12-07) existed
        raw = {"repeat_mode": "additive", "repeat_factors": False, **payload["model_config"]}
        cfg = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        model = cls(payload["n_items"], payload["n_categories"], cfg, device=device, score_with=payload["score_with"])
        model.network.load_state_dict(payload["state_dict"])
        if payload.get("head_states"):
            model.head_states = {**payload["head_states"], model.served_head: payload["state_dict"]}
        return model

    def _served_state(self) -> dict[str, Tensor]:
        """The served head's weights (the network's, unless another head is in use)."""
        if self.score_with != self.served_head and self.served_head in self.head_states:
            return self.head_states[self.served_head]
        return self.network.state_dict()


class _NetworkBlocks(ScoreBlocks):
    """DQNLSTM.score_blocks: one encoded batch, scored block by block (the mixture's normaliser first)."""

    def __init__(self, network: QNetwork, enc: Encoding, head: str, block: int) -> None:
        self.network, self.enc, self.head = network, enc, head
        self.n_items = network.n_items
        self.lse = network.explore_logsumexp(enc, block) if head == "ce" and network.mixture else None
        self._out: dict[int, Tensor] = {}  # width -> the block buffer, reused (see ScoreBlocks)

    @torch.no_grad()
    def block(self, lo: int, hi: int) -> Tensor:
        out = self._out.get(hi - lo)
        if out is None:  # two widths in a ranking pass: the block and the catalogue's last, shorter one
            if len(self._out) >= 2:
                self._out.clear()
            phi = self.enc.phi
            out = self._out[hi - lo] = torch.empty((len(phi), hi - lo), dtype=phi.dtype, device=phi.device)
        return self.network.score_block(self.enc, self.head, lo, hi, self.lse, out=out).float().cpu()

    @torch.no_grad()
    def target_scores(self, items: np.ndarray) -> np.ndarray:
        return self.network.score_pairs(self.enc, self.head, torch.as_tensor(items, device=self.enc.phi.device),
                                        self.lse).float().cpu().numpy()


def pack_states(states: StateBatch) -> np.ndarray:
    """Flatten a StateBatch into one float32 row per state: [B, 23 L + 10] (items, categories,
    behaviours, step features, profile). Indices stay exact in float32 up to 2^24 (16.7M items)."""
    batch, seq_len = states.item_seq.shape
    return np.concatenate(
        [
            states.item_seq.astype(np.float32),
            states.category_seq.astype(np.float32),
            states.behavior_seq.astype(np.float32),
            states.step_features.reshape(batch, seq_len * N_STEP_FEATURES).astype(np.float32),
            states.profile.astype(np.float32),
        ],
        axis=1,
    )


class ScoringModule(nn.Module):
    """The network as MLflow's PyTorch flavor wants it: one float tensor in (`pack_states`), scores out."""

    def __init__(self, network: QNetwork, seq_len: int, score_with: str = "q") -> None:
        super().__init__()
        self.network = network
        self.seq_len = seq_len
        self.score_with = score_with

    def forward(self, packed: Tensor) -> Tensor:  # [B, 23 L + 10] -> [B, n_items]
        L = self.seq_len
        states = TensorStates.__new__(TensorStates)
        states.item_seq = packed[:, :L].long()
        states.category_seq = packed[:, L : 2 * L].long()
        states.behavior_seq = packed[:, 2 * L : 3 * L].long()
        states.step_features = packed[:, 3 * L : 3 * L + L * N_STEP_FEATURES].reshape(-1, L, N_STEP_FEATURES)
        states.profile = packed[:, 3 * L + L * N_STEP_FEATURES :]
        enc = self.network.encode(states)
        return self.network.ce_logits(enc) if self.score_with == "ce" else self.network.q_values(enc)
