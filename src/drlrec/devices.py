"""Which torch device a run uses: one small function that models, loops and stages share."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; any other name is taken as is (`cpu`, `cuda`, `cuda:1`)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
