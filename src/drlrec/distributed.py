"""torch DistributedDataParallel for `drlrec train --distributed`: the process group that torchrun set up.

torchrun (python -m torch.distributed.run) starts one process per GPU (or per CPU slot) and sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `init_distributed` joins that group with NCCL on
CUDA and gloo on CPU. Each rank samples its own shard of the logged transitions, DDP averages the
gradients, so every rank applies the same update; rank 0 evaluates (and broadcasts the score, so early
stopping stops every rank at the same step), writes the outputs and logs to MLflow.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from drlrec.config import ScaleConfig
from drlrec.errors import ConfigError

TORCHRUN_HINT = "python -m torch.distributed.run --nproc_per_node N -m drlrec.cli train --distributed"


@dataclass(frozen=True)
class DDPContext:
    """This process's place in the process group."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    lr_scaling: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def lr_factor(self) -> float:
        """train.lr is multiplied by this: 1, W (linear rule) or sqrt(W) (scale.ddp_lr_scaling)."""
        return {"none": 1.0, "linear": float(self.world_size), "sqrt": math.sqrt(self.world_size)}[self.lr_scaling]

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (a small picklable object)."""
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def mean(self, value: float) -> float:
        """The mean of a float over the ranks."""
        return sum(self.gather(float(value))) / self.world_size


def init_distributed(cfg: ScaleConfig, device_name: str = "auto") -> DDPContext:
    """Join the process group torchrun prepared; ConfigError when not started by torchrun."""
    import torch.distributed as dist

    missing = [v for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ConfigError(f"--distributed runs under torchrun ({', '.join(missing)} unset): {TORCHRUN_HINT}")
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    cuda = torch.cuda.is_available() and device_name != "cpu"
    if device_name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no CUDA device is visible")
    backend = cfg.ddp_backend if cfg.ddp_backend != "auto" else ("nccl" if cuda else "gloo")
    if backend == "nccl" and not cuda:
        raise ConfigError("scale.ddp_backend nccl needs CUDA; use gloo (or auto) on CPU")
    if cuda:
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, device_id=device if cuda else None)
    return DDPContext(rank, world, local, backend, device, cfg.ddp_lr_scaling)


def shutdown(ctx: DDPContext | None) -> None:
    """Leave the process group (after a barrier, so no rank exits while another still talks)."""
    import torch.distributed as dist

    if ctx is not None and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def parameter_checksums(module: torch.nn.Module) -> list[float]:
    """Two float64 checksums per state_dict tensor (sum, and a position-weighted sum that notices values
    moved within a tensor): equal lists mean the ranks hold the same weights."""
    sums: list[float] = []
    with torch.no_grad():
        for tensor in module.state_dict().values():
            flat = tensor.detach().reshape(-1).to("cpu", torch.float64)
            weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64) / max(flat.numel(), 1)
            sums += [float(flat.sum()), float((flat * weights).sum())]
    return sums
