"""Target networks: the Polyak (soft) update that DQN and DDPG-style learners share."""

from __future__ import annotations

import torch


def polyak_update(source: torch.nn.Module, target: torch.nn.Module, tau: float) -> None:
    """target <- tau * source + (1 - tau) * target (tau = 1 is a hard copy)."""
    with torch.no_grad():
        for p_target, p_source in zip(target.parameters(), source.parameters(), strict=True):
            p_target.mul_(1.0 - tau).add_(p_source, alpha=tau)
