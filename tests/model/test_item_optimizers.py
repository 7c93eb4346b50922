"""Row-wise item-table optimizers (train.item_optimizer, drlrec.rl.optim): the maths, the sparsity, and that
the DQN-LSTM still learns, resumes and clips with them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from test_dqn_lstm import FAST, SMALL, chain_task  # tests/model is on sys.path (pytest prepend import mode)

from drlrec.models.dqn_lstm import DQNLSTM
from drlrec.rl.dqn import dqn_update, train_offline
from drlrec.rl.optim import Optimizers, RowWiseAdagrad, clip_grad_norm, make_optimizer


def test_row_wise_adagrad_matches_the_formula_and_touches_only_the_gradient_rows() -> None:
    table = torch.nn.Embedding(6, 3, sparse=True)
    start = table.weight.detach().clone()
    opt = RowWiseAdagrad([table.weight], lr=0.5, eps=1e-8)
    # rows 1 and 4 (row 1 looked up twice: its gradient is the sum)
    table(torch.tensor([1, 4, 1])).mul(torch.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    opt.step()
    grad = {1: torch.tensor([2.0, 4.0, 6.0]), 4: torch.tensor([1.0, 2.0, 3.0])}
    for row in range(6):
        if row in grad:
            acc = grad[row].pow(2).mean()
            torch.testing.assert_close(table.weight[row], start[row] - 0.5 * grad[row] / (acc.sqrt() + 1e-8))
            torch.testing.assert_close(opt.state[table.weight]["sum"][row], acc)
        else:
            assert torch.equal(table.weight[row], start[row]), row
    # a second step accumulates: row 4's step shrinks by sqrt(2) for the same gradient
    before = table.weight.detach().clone()
    opt.zero_grad()
    table(torch.tensor([4])).mul(torch.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    opt.step()
    step = before[4] - table.weight[4]
    torch.testing.assert_close(step, 0.5 * grad[4] / (2 * grad[4].pow(2).mean()).sqrt())


def test_sparse_gradients_clip_by_the_same_global_norm_as_dense_ones() -> None:
    torch.manual_seed(0)
    dense_table, sparse_table = torch.nn.Embedding(8, 4), torch.nn.Embedding(8, 4, sparse=True)
    sparse_table.weight.data.copy_(dense_table.weight.data)
    head = torch.nn.Linear(4, 1)
    idx = torch.tensor([1, 2, 2, 5])
    grads = {}
    for name, table in (("dense", dense_table), ("sparse", sparse_table)):
        head.zero_grad()
        head(table(idx)).pow(2).sum().backward()
        norm = clip_grad_norm(list(table.parameters()) + list(head.parameters()), 0.05)
        grads[name] = (norm, table.weight.grad.to_dense(), head.weight.grad.clone())
    torch.testing.assert_close(grads["sparse"][0], grads["dense"][0])
    assert grads["dense"][0] > 0.05  # it did clip
    torch.testing.assert_close(grads["sparse"][1], grads["dense"][1], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(grads["sparse"][2], grads["dense"][2], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(("item_optimizer", "steps"), [("sparse_adam", 15), ("row_adagrad", 120)])
def test_row_wise_updates_move_only_the_rows_with_a_gradient_and_still_learn(item_optimizer: str, steps: int) -> None:
    torch.manual_seed(0)
    n_items = 3000
    model = DQNLSTM(n_items, 10, SMALL)
    data = chain_task(512, 40)  # only items 2..39 ever appear in states and actions
    target = DQNLSTM(n_items, 10, SMALL).network
    target.load_state_dict(model.network.state_dict())
    cfg = dataclasses.replace(FAST, candidates=16, item_optimizer=item_optimizer,
                              item_lr=0.05 if item_optimizer == "row_adagrad" else 0.0)
    opt = make_optimizer(model.network, cfg.item_optimizer, 3e-3, 0.0, cfg.item_lr)
    assert isinstance(opt, Optimizers) and model.network.item_embedding.sparse
    table = model.network.item_embedding.weight
    start = table.detach().clone()
    rng = np.random.default_rng(0)
    touched: set[int] = set()
    losses = []
    for _ in range(steps):
        update = dqn_update(model.network, target, opt, data.gather(rng.integers(0, 512, 64), 1, 0.5), cfg,
                            torch.device("cpu"))
        assert table.grad.is_sparse
        touched |= set(table.grad.coalesce().indices()[0].tolist())
        losses.append(update.ce_loss)
    moved = set((table != start).any(dim=1).nonzero().flatten().tolist())
    assert moved == touched - {0}  # the padding row's gradient is zero, so no optimizer moves it
    assert set(range(2, 40)) <= moved and len(moved) < n_items // 2  # most rows were never read or written
    if steps >= 100:  # learning, checked on one optimizer (the suite's time budget); the sparsity on both
        assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


def test_killed_run_resumes_to_the_same_weights_with_row_adagrad(tmp_path: Path) -> None:
    cfg = dataclasses.replace(FAST, steps=40, checkpoint_every=20, candidates=16, item_optimizer="row_adagrad",
                              item_lr=0.05)
    torch.manual_seed(5)
    straight = DQNLSTM(60, 10, SMALL)
    train_offline(straight, chain_task(n_items=60), cfg, seed=5)
    torch.manual_seed(5)
    killed = DQNLSTM(60, 10, SMALL)
    ckpt = tmp_path / "checkpoint.pt"
    train_offline(killed, chain_task(n_items=60), cfg, seed=5, checkpoint_path=ckpt, stop_after=27)
    torch.manual_seed(99)
    resumed = DQNLSTM(60, 10, SMALL)
    result = train_offline(resumed, chain_task(n_items=60), cfg, seed=5, checkpoint_path=ckpt)
    assert result.resumed_from == 20
    for key, value in straight.network.state_dict().items():
        assert torch.equal(value, resumed.network.state_dict()[key]), key


def test_unknown_item_optimizer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="item_optimizer must be one of"):
        make_optimizer(DQNLSTM(20, 5, SMALL).network, "adagrad", 1e-3)


def test_row_wise_adagrad_refuses_a_dense_gradient() -> None:
    table = torch.nn.Embedding(4, 2)  # dense gradient: every row read and written, the cost this optimizer avoids
    table(torch.tensor([1])).sum().backward()
    with pytest.raises(ValueError, match="sparse gradients"):
        RowWiseAdagrad([table.weight], lr=0.1).step()
