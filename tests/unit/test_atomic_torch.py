"""Atomic torch files are byte-identical for the same payload (DVC outputs must be)."""

from __future__ import annotations

from pathlib import Path

import torch

from drlrec.atomic import save_torch
from drlrec.config import ModelConfig
from drlrec.models.dqn_lstm import DQNLSTM


def test_the_same_model_saved_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DQNLSTM(50, 5, ModelConfig(item_dim=8, category_dim=4, behavior_dim=2, hidden=8, fc=(8, 8)))
    # each save goes through its own randomly named temporary file; torch.save(path) would put that name
    # inside the archive
    model.save(tmp_path / "a" / "model.pt")
    model.save(tmp_path / "b" / "model.pt")
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    save_torch(tmp_path / "x.pt", {"w": torch.arange(3)})
    assert torch.equal(torch.load(tmp_path / "x.pt")["w"], torch.arange(3))
