"""Optimizers of the DQN-LSTM, with row-wise updates of the item table for catalogues of millions of items.

`train.item_optimizer` picks how the item table (the `item_embedding`, and the `output_embedding` when the
item vectors are not tied) learns; every other parameter (LSTM, heads, biases) keeps dense Adam:

- `adam` (default): one dense Adam over every parameter. The item table's gradient is a dense
  [n_items, d] tensor each step, and Adam reads and writes every row of it and of its two moments: at
  4.2M items x 64 that is 1 GB of gradient and 4 GB of traffic per step, for the ~10k rows a batch touches.
- `sparse_adam`: the table's gradient is sparse (`nn.Embedding(sparse=True)`), and torch's SparseAdam
  updates only the rows in it (moments are kept dense: memory 3x the table, time per touched row).
- `row_adagrad`: row-wise Adagrad (as in DLRM / FBGEMM's embedding optimizers): one accumulator per row,
  the mean of its squared gradients, so its state is n_items floats instead of 2 x n_items x d; memory
  about 1x the table, time per touched row. It has no momentum, and its steps shrink with the row's
  accumulated gradient, so its learning rate (`train.item_lr`) is larger than Adam's.

`Optimizers` steps the dense and the row-wise optimizer as one (zero_grad, step, state_dict for
checkpoints); `clip_grad_norm` clips sparse and dense gradients by one global norm (torch's
clip_grad_norm_ has no sparse kernel).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

ITEM_OPTIMIZERS = ("adam", "sparse_adam", "row_adagrad")


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per row of a 2-d parameter, for sparse (row) gradients:
    s_r += mean(g_r ** 2); w_r -= lr * g_r / (sqrt(s_r) + eps), for the rows r in the gradient only."""

    def __init__(self, params: Iterable[Tensor], lr: float = 0.01, eps: float = 1e-8, initial: float = 0.0) -> None:
        if lr <= 0:
            raise ValueError(f"row-wise Adagrad needs lr > 0, got {lr}")
        super().__init__(params, {"lr": lr, "eps": eps, "initial": initial})
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"row-wise Adagrad updates 2-d tables, got a parameter of shape {tuple(p.shape)}")
                self.state[p]["sum"] = torch.full((p.shape[0],), float(group["initial"]), dtype=torch.float32, device=p.device)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: ARG002 (the Optimizer signature)
        for group in self.param_groups:
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise ValueError("row-wise Adagrad takes sparse gradients (nn.Embedding(sparse=True))")
                accumulator = self.state[p]["sum"]
                grad = p.grad.coalesce()  # a row looked up twice holds the sum of both gradients
                rows, values = grad.indices()[0], grad.values()  # [k], [k, d]
                if len(rows) == 0:
                    continue
                accumulator.index_add_(0, rows, values.float().pow(2).mean(dim=1))
                scale = accumulator[rows].sqrt_().add_(eps)  # [k]
                p.index_add_(0, rows, (values / scale[:, None]).to(p.dtype), alpha=-lr)


class Optimizers:
    """Several optimizers over disjoint parameters, stepped as one (the dense Adam and the item table's)."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = list(optimizers)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        parts = state.get("optimizers")
        if parts is None or len(parts) != len(self.optimizers):
            raise ValueError("the checkpoint's optimizer state was written with another train.item_optimizer")
        for opt, part in zip(self.optimizers, parts, strict=True):
            opt.load_state_dict(part)


def each_optimizer(optimizer: torch.optim.Optimizer | Optimizers) -> list[torch.optim.Optimizer]:
    """The torch optimizers behind `optimizer` (itself, or the parts of an Optimizers)."""
    return list(optimizer.optimizers) if isinstance(optimizer, Optimizers) else [optimizer]


def item_tables(network: nn.Module) -> list[nn.Embedding]:
    """The [n_items, d] embedding tables of a QNetwork (the input table and, untied, the output one)."""
    return [m for m in (getattr(network, "item_embedding", None), getattr(network, "output_embedding", None)) if m is not None]


def make_optimizer(network: nn.Module, item_optimizer: str, lr: float, weight_decay: float = 0.0,
                   item_lr: float = 0.0) -> torch.optim.Optimizer | Optimizers:
    """Dense Adam over everything (`adam`), or dense Adam over all but the item tables plus a row-wise
    optimizer over the tables, whose embeddings are switched to sparse gradients (`sparse_adam`,
    `row_adagrad`). `item_lr` 0 = `lr`. Weight decay applies to the dense parameters only."""
    if item_optimizer not in ITEM_OPTIMIZERS:
        raise ValueError(f"train.item_optimizer must be one of {', '.join(ITEM_OPTIMIZERS)}; got {item_optimizer!r}")
    if item_optimizer == "adam":
        return torch.optim.Adam(network.parameters(), lr=lr, weight_decay=weight_decay)
    tables = item_tables(network)
    for table in tables:
        table.sparse = True  # F.embedding returns a sparse gradient: the looked-up rows only
    table_ids = {id(t.weight) for t in tables}
    dense = [p for p in network.parameters() if id(p) not in table_ids]
    weights = [t.weight for t in tables]
    table_lr = item_lr if item_lr > 0 else lr
    rows = torch.optim.SparseAdam(weights, lr=table_lr) if item_optimizer == "sparse_adam" else RowWiseAdagrad(weights, lr=table_lr)
    return Optimizers(torch.optim.Adam(dense, lr=lr, weight_decay=weight_decay), rows)


@torch.no_grad()
def clip_grad_norm(parameters: Iterable[Tensor], max_norm: float) -> Tensor:
    """torch.nn.utils.clip_grad_norm_, also for sparse gradients (coalesced first, so a row looked up twice
    counts once with its summed gradient). With dense gradients only it is torch's own function."""
    params = [p for p in parameters if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    squares = []
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            squares.append(p.grad.values().float().pow(2).sum())
        else:
            squares.append(p.grad.float().pow(2).sum())
    total = torch.stack(squares).sum().sqrt()
    coefficient = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(coefficient.to(p.grad.dtype))
    return total
