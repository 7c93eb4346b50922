"""DQN-LSTM behaviour: shapes, overfitting one batch, target sync, falling TD loss, determinism, resumption."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from drlrec.config import ModelConfig, TrainConfig
from drlrec.models.base import StateBatch
from drlrec.models.dqn_lstm import DQNLSTM, TensorStates
from drlrec.rl.dqn import dqn_update, train_offline, update_target
from drlrec.rl.replay import ReplayBuffer

# the mechanics below, on the repeat table alone (the shipped setting until 2026-12-07); the mixture and the
# shared repeat factors have their own tests (with the factors, the one-batch overfit at Adam lr 1e-2 leaves
# 4 of 64 Q-values 0.30 off the reward after 300 steps: six scalars shared by every slot jitter)
SMALL = ModelConfig(item_dim=16, category_dim=8, behavior_dim=4, hidden=32, layers=2, fc=(64, 32), dropout=0.0,
                    repeat_mode="additive", repeat_init=4.0, repeat_factors=False)
FAST = TrainConfig(steps=60, batch_size=64, lr=3e-3, eval_every=10**9, checkpoint_every=20, threads=1, device="cpu",
                   target_update_every=20, cold_item_rate=0.0)


def random_states(n: int, n_items: int, n_cats: int, seq_len: int = 10, seed: int = 0) -> StateBatch:
    rng = np.random.default_rng(seed)
    return StateBatch(
        item_seq=rng.integers(0, n_items, (n, seq_len)),
        category_seq=rng.integers(0, n_cats, (n, seq_len)),
        behavior_seq=rng.integers(0, 4, (n, seq_len)),
        step_features=rng.random((n, seq_len, 20), dtype=np.float32),
        profile=rng.random((n, 10), dtype=np.float32),
    )


def chain_task(n: int = 2048, n_items: int = 40, seed: int = 0) -> ReplayBuffer:
    """A learnable task: after item i the logged next item is always i+1 (cyclic over real items 2..n_items-1),
    and it is bought (reward 1) when the previous item is even."""
    rng = np.random.default_rng(seed)
    seq_len = 10
    real = n_items - 2
    last = rng.integers(0, real, n)
    offsets = np.arange(-seq_len + 1, 1)
    item_seq = (last[:, None] + offsets[None, :]) % real + 2
    nxt = (last + 1) % real + 2
    next_seq = np.concatenate([item_seq[:, 1:], nxt[:, None]], axis=1)

    def states(items: np.ndarray) -> StateBatch:
        return StateBatch(items, items % 5 + 2, np.zeros_like(items), np.zeros((len(items), seq_len, 20), np.float32),
                          np.zeros((len(items), 10), np.float32))

    buffer = ReplayBuffer(n, seq_len)
    reward = ((item_seq[:, -1] % 2) == 0).astype(np.float32)
    buffer.add(states(item_seq), nxt, reward, states(next_seq), rng.random(n) < 0.1)
    return buffer


@pytest.mark.parametrize("n_items", [3, 100_000])
@pytest.mark.parametrize("variant", ["lstm", "bilstm_attention"])
@pytest.mark.parametrize("head", ["linear", "dueling"])
def test_shapes_for_tiny_and_large_catalogues(n_items: int, variant: str, head: str) -> None:
    model = DQNLSTM(n_items, 50, dataclasses.replace(SMALL, variant=variant, head=head))
    with torch.no_grad():  # non-zero repeat weights, so the repeat term is part of every comparison
        model.network.repeat_q.normal_()
        model.network.repeat_ce.normal_()
    states = random_states(4, n_items, 50)
    scores = model.score(states)
    assert scores.shape == (4, n_items) and scores.dtype == np.float32
    items, top = model.recommend(states, k=5)
    assert items.shape == (4, min(5, n_items - 2))
    assert (items >= 2).all()  # padding and unknown are never recommended
    enc = model.network.encode(TensorStates(states))
    actions = torch.tensor([2, 2, n_items - 1, 2])
    full = model.network.q_values(enc).gather(1, actions[:, None])[:, 0]
    assert torch.allclose(model.network.q_of_actions(enc, actions), full, atol=1e-5)
    some = torch.unique(torch.tensor([2, n_items - 1]))  # candidates are sorted and unique
    assert torch.allclose(model.network.q_values_of(enc, some), model.network.q_values(enc)[:, some], atol=1e-5)
    assert torch.allclose(model.network.ce_logits_of(enc, some), model.network.ce_logits(enc)[:, some], atol=1e-5)


def test_repeat_mixture_is_a_distribution_that_puts_the_state_first_when_the_gate_says_repeat() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(SMALL, repeat_mode="mixture")
    model = DQNLSTM(300, 20, cfg)
    states = random_states(6, 300, 20)
    states.item_seq[5] = 1  # a state of unknown items only: pure explore, no NaN
    net = model.network
    enc = net.encode(TensorStates(states))
    logp = net.ce_logits(enc)
    assert torch.isfinite(logp).all()
    torch.testing.assert_close(torch.logsumexp(logp, dim=1), torch.zeros(6), atol=1e-4, rtol=0)
    # candidates that hold every state item: a distribution over them, equal to the full one up to the
    # explore softmax's normaliser (so all candidates = the full catalogue gives the same values)
    everything = torch.arange(300)
    torch.testing.assert_close(net.ce_logits_of(enc, everything), logp, atol=1e-4, rtol=0)
    some = torch.unique(torch.cat([torch.as_tensor(states.item_seq).reshape(-1), torch.tensor([2, 299])]))
    torch.testing.assert_close(torch.logsumexp(net.ce_logits_of(enc, some), dim=1), torch.zeros(6), atol=1e-4, rtol=0)
    # a gate that says "repeat": every known state item outranks every other item
    with torch.no_grad():
        net.repeat_gate.bias.fill_(20.0)
    model.score_with = "ce"
    scores = model.score(states)
    for row in range(5):
        known = np.unique(states.item_seq[row][states.item_seq[row] >= 2])
        others = np.setdiff1d(np.arange(2, 300), known)
        assert scores[row, known].min() > scores[row, others].max()
    # gradients reach the gate, the slot weights and the affinity, and are finite
    net.train()
    loss = -net.ce_logits_of(net.encode(TensorStates(states)), some)[:, 0].sum()
    loss.backward()
    for param in (net.repeat_gate.weight, net.repeat_ce, net.repeat_projection.weight):
        assert param.grad is not None and torch.isfinite(param.grad).all()


def test_encoder_window_reads_the_latest_slots_while_the_copy_path_sees_the_whole_state() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(SMALL, repeat_mode="mixture", encoder_window=4)
    model = DQNLSTM(300, 20, cfg)
    net = model.network
    states = random_states(6, 300, 20, seq_len=12)
    states.item_seq[:, :8] = np.arange(2, 10)  # slots 0..7 (outside the window) hold items 2..9
    states.item_seq[:, 8:] = np.arange(200, 204)  # the window holds items 200..203 only
    latest = StateBatch(*(a[:, -4:] if a.ndim > 1 and a.shape[1] == 12 else a for a in states))
    whole, last4 = net.encode(TensorStates(states)), net.encode(TensorStates(latest))
    # the encoder's phi depends on the last 4 slots alone
    torch.testing.assert_close(whole.phi, last4.phi)
    # ... and the mixture's repeat distribution still covers the whole state: with the gate on "repeat",
    # an item seen only outside the window outranks every item never seen
    with torch.no_grad():
        net.repeat_gate.bias.fill_(20.0)
    logp = net.ce_logits(whole)
    assert torch.isfinite(logp).all()
    torch.testing.assert_close(torch.logsumexp(logp, dim=1), torch.zeros(6), atol=1e-4, rtol=0)
    never = np.setdiff1d(np.arange(2, 300), np.r_[np.arange(2, 10), np.arange(200, 204)])
    assert logp[:, 2:10].min() > logp[:, never].max()
    assert net.ce_logits(last4)[:, 2:10].max() < logp[:, 2:10].min()  # a 4-slot state cannot copy them
    # a change outside the window moves the copy path but not phi
    moved = states._replace(behavior_seq=states.behavior_seq.copy(), step_features=states.step_features.copy())
    moved.behavior_seq[:, :8] = 4
    moved.step_features[:, :8] += 1.0
    torch.testing.assert_close(net.encode(TensorStates(moved)).phi, whole.phi)
    with pytest.raises(Exception, match="encoder_window"):
        dataclasses.replace(SMALL, encoder_window=-1)


def test_one_state_scores_match_the_batch() -> None:
    model = DQNLSTM(500, 20, SMALL)
    states = random_states(8, 500, 20)
    np.testing.assert_allclose(model.score(states)[3:4], model.score(states.slice(3, 4)), rtol=1e-5, atol=1e-5)


def test_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = DQNLSTM(60, 10, SMALL)
    data = chain_task(64, 60)
    batch = data.gather(np.arange(64), n_step=1, gamma=0.0)
    target = DQNLSTM(60, 10, SMALL).network
    target.load_state_dict(model.network.state_dict())
    opt = torch.optim.Adam(model.network.parameters(), lr=1e-2)
    cfg = dataclasses.replace(FAST, gamma=0.0)  # pure regression to the reward + the CE head
    first = dqn_update(model.network, target, opt, batch, cfg, torch.device("cpu"))
    tail = []
    for _ in range(300):
        last = dqn_update(model.network, target, opt, batch, cfg, torch.device("cpu"))
        tail = (tail + [last.td_loss])[-20:]
    # the mean of the last 20 updates: Adam at lr 1e-2 makes single steps jitter by 2x around the floor that
    # the SNQN negatives leave, and how much depends on the thread count's summation order
    assert np.mean(tail) < 0.1 * first.td_loss
    assert last.ce_loss < 0.1 * first.ce_loss
    # the supervised head ranks the logged next item first; the Q-head fits Q(s, a_logged) = reward
    model.score_with = "ce"
    items, _ = model.recommend(batch.state, k=1)
    assert (items[:, 0] == batch.action).mean() == 1.0
    with torch.no_grad():
        enc = model.network.encode(TensorStates(batch.state))
        q = model.network.q_of_actions(enc, torch.as_tensor(batch.action)).numpy()
    np.testing.assert_allclose(q, batch.reward, atol=0.25)


def test_target_network_syncs_hard_and_soft() -> None:
    online = DQNLSTM(30, 5, SMALL).network
    target = DQNLSTM(30, 5, SMALL).network
    differs = lambda: any(not torch.equal(a, b) for a, b in zip(online.parameters(), target.parameters(), strict=True))  # noqa: E731
    assert differs()
    hard = dataclasses.replace(FAST, target_update="hard", target_update_every=5)
    assert not update_target(online, target, hard, step=3) and differs()
    assert update_target(online, target, hard, step=10) and not differs()
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    soft = dataclasses.replace(FAST, target_update="soft", tau=0.25)
    update_target(online, target, soft, step=1)
    for b, t, o in zip(before, target.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * o)


def test_td_loss_falls_on_a_learnable_task() -> None:
    model = DQNLSTM(40, 10, SMALL)
    # pure TD (no CE term), bootstrapping through the target network
    cfg = dataclasses.replace(FAST, steps=300, ce_weight=0.0, gamma=0.5)
    result = train_offline(model, chain_task(), cfg, seed=1)
    td = np.array(result.history["train/td_loss"])
    assert td[-20:].mean() < 0.5 * td[:20].mean()


def test_same_seed_same_weights_different_seed_different() -> None:
    def run(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        model = DQNLSTM(40, 10, dataclasses.replace(SMALL, dropout=0.2))
        train_offline(model, chain_task(), dataclasses.replace(FAST, steps=30), seed=seed)
        return model.network.state_dict()

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    cfg = dataclasses.replace(FAST, steps=60, checkpoint_every=20)
    model_cfg = dataclasses.replace(SMALL, dropout=0.2)  # dropout consumes the torch RNG: it must be restored

    torch.manual_seed(5)
    straight = DQNLSTM(40, 10, model_cfg)
    train_offline(straight, chain_task(), cfg, seed=5)

    torch.manual_seed(5)
    killed = DQNLSTM(40, 10, model_cfg)
    ckpt = tmp_path / "checkpoint.pt"
    # "kill" after 47 steps: the last checkpoint is at step 40, so steps 41..47 are redone
    partial = train_offline(killed, chain_task(), cfg, seed=5, checkpoint_path=ckpt, stop_after=47)
    assert partial.steps_done == 47

    torch.manual_seed(123)  # a new process: different initial weights and RNG before resuming
    resumed = DQNLSTM(40, 10, model_cfg)
    result = train_offline(resumed, chain_task(), cfg, seed=5, checkpoint_path=ckpt)
    assert result.resumed_from == 40
    for key, value in straight.network.state_dict().items():
        assert torch.equal(value, resumed.network.state_dict()[key]), key


def test_save_load_gives_identical_scores(tmp_path: Path) -> None:
    model = DQNLSTM(200, 10, dataclasses.replace(SMALL, head="dueling"))
    states = random_states(6, 200, 10)
    model.save(tmp_path / "m.pt")
    again = DQNLSTM.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(model.score(states), again.score(states))


def test_a_model_saved_before_the_repeat_factors_loads_and_scores_as_saved(tmp_path: Path) -> None:
    """A model.pt written before `repeat_factors` existed has no such key in its config and no factor weights
    in its state dict: it loads without them (the current default has them on) and scores as it did."""
    from drlrec.models.persistence import save_torch

    old = DQNLSTM(200, 10, dataclasses.replace(SMALL, repeat_mode="mixture", repeat_factors=False))
    old.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", map_location="cpu", weights_only=False)
    del payload["model_config"]["repeat_factors"]  # as written by drlrec before 2026-12-07
    save_torch(tmp_path / "old.pt", payload)
    again = DQNLSTM.load(tmp_path / "old.pt")
    assert again.cfg.repeat_factors is False and again.network.repeat_ce_factors is None
    states = random_states(6, 200, 10)
    np.testing.assert_array_equal(old.score(states), again.score(states))


@pytest.mark.parametrize("head", ["q", "ce"])
@pytest.mark.parametrize("variant", [{"repeat_mode": "additive"}, {"repeat_mode": "mixture"},
                                     {"repeat_mode": "additive", "head": "dueling"}])
def test_item_blocks_equal_the_whole_catalogue_scores(head: str, variant: dict) -> None:
    """score_blocks(states).block(lo, hi) is score(states)[:, lo:hi] (the mixture's softmax normaliser taken over
    the whole catalogue), and ranking block by block gives the whole-catalogue ranks and lists."""
    from drlrec.evaluate import rank_blocks
    from drlrec.models.base import FullScores

    torch.manual_seed(1)
    model = DQNLSTM(301, 20, dataclasses.replace(SMALL, **variant), score_with=head)
    with torch.no_grad():  # non-zero repeat terms, so the state's items score apart from the rest
        for weights in (model.network.repeat_q, model.network.repeat_ce):
            weights.add_(torch.rand_like(weights))
    states = random_states(16, 301, 20)
    whole = model.score(states)
    blocks = model.score_blocks(states, block=37)
    for lo, hi in [(0, 37), (37, 120), (290, 301)]:
        np.testing.assert_allclose(blocks.block(lo, hi).numpy(), whole[:, lo:hi], rtol=1e-5, atol=1e-5)
    targets = np.r_[states.item_seq[:8, -1], np.arange(2, 10)]  # in-state targets and others
    ranks, lists = rank_blocks(blocks, targets, 10, None, 37)
    whole_ranks, whole_lists = rank_blocks(FullScores(whole), targets, 10, None, 0)
    np.testing.assert_array_equal(ranks, whole_ranks)
    np.testing.assert_array_equal(lists, whole_lists)


@pytest.mark.parametrize("mode", ["additive", "mixture"])
def test_repeat_factors_start_neutral_and_weight_slots_by_age_and_behaviour(mode: str) -> None:
    """model.repeat_factors: weight(p, b) = table[p, b] + slope * age + offset[b]; zero factors score exactly
    as the table alone, a learned slope or offset moves every slot at once, and both heads' factors train."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(SMALL, repeat_mode=mode)
    plain = DQNLSTM(300, 20, cfg)
    factored = DQNLSTM(300, 20, dataclasses.replace(cfg, repeat_factors=True))
    factored.network.load_state_dict({**plain.network.state_dict(),
                                      "repeat_q_factors": torch.zeros(6), "repeat_ce_factors": torch.zeros(6)})
    states = random_states(5, 300, 20, seq_len=12)
    for head in ("q", "ce"):
        plain.score_with = factored.score_with = head
        np.testing.assert_array_equal(factored.score(states), plain.score(states))
    net = factored.network
    enc = net.encode(TensorStates(states))
    table = net._repeat_weights(enc, net.repeat_ce)
    with torch.no_grad():
        net.repeat_ce_factors[0] = -0.5  # slope per slot of age
        net.repeat_ce_factors[1 + 3] = 2.0  # behaviour token 3
    moved = net._repeat_weights(enc, net.repeat_ce) - table  # [B, L]
    age = torch.arange(11, -1, -1, dtype=torch.float32)
    expected = -0.5 * age[None, :] + 2.0 * torch.as_tensor(states.behavior_seq == 3)
    known = torch.as_tensor(states.item_seq >= 2)
    torch.testing.assert_close(moved[known], expected.expand_as(moved)[known])
    assert (moved[~known] == 0).all()  # padding and unknown slots never repeat
    # the Q-head's factors are its own: its weights are still the plain model's
    torch.testing.assert_close(net._repeat_weights(enc, net.repeat_q),
                               plain.network._repeat_weights(plain.network.encode(TensorStates(states)), plain.network.repeat_q))
    net.train()
    enc = net.encode(TensorStates(states))
    items = torch.unique(torch.as_tensor(states.item_seq).reshape(-1))
    loss = -(net.ce_logits_of(enc, items).sum() + net.q_values_of(enc, items).sum())
    loss.backward()
    for param in (net.repeat_q_factors, net.repeat_ce_factors):
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


def test_negative_targets_come_from_the_network_that_negative_target_names() -> None:
    """With every logged transition terminal (discount 0) the logged actions' TD target is the reward alone,
    so the target network reaches the loss only through the negatives' gamma * max Q(s, .): with `online` it
    must not matter, with `target` it must, and a target equal to the online network gives `online`'s loss."""
    torch.manual_seed(0)
    online = DQNLSTM(60, 10, SMALL).network
    same = DQNLSTM(60, 10, SMALL).network
    same.load_state_dict(online.state_dict())
    moved = DQNLSTM(60, 10, SMALL).network
    moved.load_state_dict(online.state_dict())
    with torch.no_grad():
        moved.q_bias.add_(3.0)  # every Q-value of the moved target is 3 higher
    batch = chain_task(64, 60).gather(np.arange(64), n_step=1, gamma=0.9)
    batch = batch._replace(discount=np.zeros_like(batch.discount))

    def td_loss(target: torch.nn.Module, mode: str) -> float:
        net = DQNLSTM(60, 10, SMALL).network
        net.load_state_dict(online.state_dict())
        cfg = dataclasses.replace(FAST, gamma=0.9, q_negative_weight=1.0, negative_target=mode)
        torch.manual_seed(1)  # the same sampled candidates in every call
        return dqn_update(net, target, torch.optim.SGD(net.parameters(), lr=0.0), batch, cfg, torch.device("cpu")).td_loss

    assert td_loss(moved, "online") == pytest.approx(td_loss(same, "online"), rel=1e-6)
    assert td_loss(same, "target") == pytest.approx(td_loss(same, "online"), rel=1e-5)
    assert abs(td_loss(moved, "target") - td_loss(same, "target")) > 0.1


def test_a_loaded_model_switches_heads_after_its_file_is_replaced(tmp_path: Path) -> None:
    """DQNLSTM.load memory-maps model.pt, so the other head's weights stay in the file until use_head reads
    them. Files are replaced by rename (save_torch), so a new model saved to the same path afterwards must
    not change what the loaded one switches to: each head scores as it did when saved."""
    states = random_states(6, 200, 10)
    model = DQNLSTM(200, 10, SMALL, score_with="ce")
    served = {k: v.clone() for k, v in model.network.state_dict().items()}
    torch.manual_seed(7)
    other = DQNLSTM(200, 10, SMALL).network.state_dict()  # the Q head's own validated weights
    model.head_states = {"ce": served, "q": {k: v.clone() for k, v in other.items()}}
    model.use_head("q")
    q_scores = model.score(states)
    model.use_head("ce")
    ce_scores = model.score(states)
    model.save(tmp_path / "m.pt")

    loaded = DQNLSTM.load(tmp_path / "m.pt")
    torch.manual_seed(8)
    DQNLSTM(200, 10, SMALL, score_with="ce").save(tmp_path / "m.pt")  # a newer model in the same place
    np.testing.assert_array_equal(loaded.score(states), ce_scores)
    loaded.use_head("q")
    np.testing.assert_array_equal(loaded.score(states), q_scores)
    loaded.use_head("ce")
    np.testing.assert_array_equal(loaded.score(states), ce_scores)
    assert not np.array_equal(q_scores, ce_scores)
