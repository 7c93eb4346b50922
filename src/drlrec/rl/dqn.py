"""Training loops for the DQN-LSTM: offline (logged transitions) and online (SimulatedEnv episodes).

The Double-DQN loss is `DQNLoss.forward`, read top to bottom; `dqn_update` takes one optimizer step with it. Loops add prioritized replay,
the epsilon and beta schedules, periodic validation with early stopping, and checkpoints that capture
every piece of state (weights, target, optimizer, replay priorities, RNGs), so a killed run resumes
to exactly the weights an uninterrupted run reaches.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from drlrec.config import TrainConfig
from drlrec.distributed import DDPContext
from drlrec.evaluate import validation_evaluator
from drlrec.models.base import FIRST_REAL_ITEM, UNKNOWN_ITEM, StateBatch, TrainingData
from drlrec.models.dqn_lstm import DQNLSTM, QNetwork, TensorStates
from drlrec.models.early_stopping import TrainingLog
from drlrec.progress import ProgressLog
from drlrec.rl.optim import Optimizers, clip_grad_norm, each_optimizer, make_optimizer
from drlrec.rl.replay import PrioritizedSampler, TransitionBatch, UniformSampler, linear_schedule
from drlrec.rl.target import polyak_update


class TransitionSource(Protocol):
    """Where transitions come from: the logged dataset (offline) or a replay buffer (online)."""

    def __len__(self) -> int: ...

    def gather(self, index: np.ndarray, n_step: int, gamma: float) -> TransitionBatch: ...


class UpdateResult(NamedTuple):
    td_loss: float
    ce_loss: float
    q_mean: float
    td_error: np.ndarray  # [B] |TD error| for the priorities


class DQNLoss(torch.nn.Module):
    """The Double-DQN (+ SQN cross-entropy) loss of a batch, as a module so that DistributedDataParallel
    can wrap it: its forward runs the online network, whose gradients DDP averages over the ranks. The
    target network is kept out of the module's parameters (never trained, never synchronised)."""

    def __init__(self, online: QNetwork, target: QNetwork, cfg: TrainConfig) -> None:
        super().__init__()
        self.online = online
        self._target = (target,)  # a tuple, so it is not registered as a submodule
        self.cfg = cfg

    def forward(
        self,
        state: TensorStates,
        next_state: TensorStates,
        action: torch.Tensor,  # [B] logged item
        reward: torch.Tensor,  # [B]
        discount: torch.Tensor,  # [B] gamma^n, 0 after the episode's end
        weight: torch.Tensor,  # [B] importance-sampling weights
        ce_mask: torch.Tensor | None,  # [B] CE positives (None = all)
        candidates: torch.Tensor,  # [C] items scored in this update
        target_index: torch.Tensor,  # [B] position of each action in candidates
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, td_loss, ce_loss, q_taken [B], td_error [B])."""
        online, target, cfg = self.online, self._target[0], self.cfg
        detach = not cfg.td_item_grad  # keep the TD gradient off the item vectors the CE head shares
        encoded = online.encode(state)  # phi: [B, d]
        q_taken = online.q_of_actions(encoded, action, detach).float()  # [B] Q(s, a) of the logged action
        real = candidates >= FIRST_REAL_ITEM  # [C] never bootstrap from pad/unknown

        # Double DQN target: the online network picks a', the target network evaluates it
        with torch.no_grad():
            next_q_online = online.q_values_of(online.encode(next_state), candidates).float()  # [B, C]
            next_action = candidates[next_q_online.masked_fill(~real, float("-inf")).argmax(dim=1)]  # [B]
            next_q = target.q_of_actions(target.encode(next_state), next_action).float()  # [B]
            target_q = reward + discount * next_q  # [B]

        td_error = target_q - q_taken
        td_loss = (weight * F.huber_loss(q_taken, target_q, reduction="none", delta=cfg.huber_delta)).mean()

        if cfg.q_negative_weight > 0:
            # Negative-sampling Q-learning (SNQN, Xin et al. 2022): the logged user did not take the other
            # candidates, so each one is a transition with reward 0 that leaves the state unchanged:
            # target gamma * max_a Q(s, a) (the online network's detached estimate over the candidates, which
            # spares a fourth LSTM pass per update; `negative_target: target` pays it to take the value from the
            # target network instead, Double-DQN style). Without it the TD loss only ever touches logged
            # actions, and the Q-head's ranking of everything else is arbitrary.
            q_all = online.q_values_of(encoded, candidates, detach).float()  # [B, C]
            with torch.no_grad():
                best = q_all.detach().masked_fill(~real, float("-inf")).max(dim=1)  # [B] online value and argmax
                if cfg.negative_target == "target":
                    stay_q = target.q_of_actions(target.encode(state), candidates[best.indices]).float()  # [B]
                else:
                    stay_q = best.values
                negative_target = cfg.gamma * stay_q  # [B]
            negative = real[None, :].expand_as(q_all).clone()
            negative[torch.arange(len(action), device=action.device), target_index] = False  # [B, C]
            huber = F.huber_loss(q_all, negative_target[:, None].expand_as(q_all), reduction="none", delta=cfg.huber_delta)
            per_row = (huber * negative).sum(dim=1) / negative.sum(dim=1).clamp(min=1)  # [B]
            td_loss = td_loss + cfg.q_negative_weight * (weight * per_row).mean()

        ce_loss = torch.zeros((), device=q_taken.device)
        if cfg.ce_weight > 0:
            # SQN: supervised next-item cross-entropy on the same state representation, weighted like the
            # TD loss by the importance-sampling weights (prioritized replay over-draws buys and carts)
            # UNKNOWN stays a class here: it takes the mass of cold next items (never recommended: top-k masks it)
            logits = online.ce_logits_of(encoded, candidates).float().masked_fill(candidates == 0, -1e4)  # [B, C]
            row_weight = weight if ce_mask is None else weight * ce_mask  # online: only acted-on items are positives
            ce = F.cross_entropy(logits, target_index, reduction="none")  # [B]
            ce_loss = (ce * row_weight).sum() / row_weight.sum().clamp(min=1e-6)
        return td_loss + cfg.ce_weight * ce_loss, td_loss, ce_loss, q_taken, td_error


def simulate_cold_items(rate: float, *item_tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The item tensors with a random `rate` share of the batch's distinct real items mapped to UNKNOWN (1),
    consistently in states, next states and actions (torch's RNG, so a resumed run draws the same).

    This is what a later period looks like to a train-only vocabulary: a share of the items the users touch
    are cold, in their histories and as their next items alike. Training on it trains the unknown vector,
    and teaches the heads how much of the next-item mass goes to items no model can name, which is what
    makes the user's own known items the better bet on real logs."""
    if rate <= 0:
        return item_tensors
    flat = torch.cat([t.reshape(-1) for t in item_tensors])
    distinct, inverse = torch.unique(flat, return_inverse=True)
    cold = (torch.rand(len(distinct), device=flat.device) < rate) & (distinct >= FIRST_REAL_ITEM)
    mapped = torch.where(cold[inverse], torch.full_like(flat, UNKNOWN_ITEM), flat)
    out, start = [], 0
    for t in item_tensors:
        out.append(mapped[start : start + t.numel()].view_as(t))
        start += t.numel()
    return tuple(out)


def cold_rate(cfg: TrainConfig, valid) -> float:
    """`train.cold_item_rate`, or when it is negative the share of validation next items that are unknown to
    the train vocabulary (measured on validation, never on test; 0 without validation events). Online mode
    resolves a negative rate to 0: the simulator only ever shows train-vocabulary items, while the cold
    simulation mimics a later logged period."""
    if cfg.cold_item_rate >= 0:
        return cfg.cold_item_rate
    if cfg.mode == "online" or valid is None or valid.num_transitions == 0:
        return 0.0
    return float(np.mean(valid.action_item == UNKNOWN_ITEM))


def dqn_update(
    online: QNetwork,
    target: QNetwork,
    optimizer: torch.optim.Optimizer | Optimizers,
    batch: TransitionBatch,
    cfg: TrainConfig,
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
    loss_module: torch.nn.Module | None = None,
) -> UpdateResult:
    """One Double-DQN step (+ the optional SQN cross-entropy) on a batch of logged or replayed transitions.

    `loss_module`: the DQNLoss of `online` and `target` wrapped in DistributedDataParallel (`--distributed`),
    so that backward averages the gradients over the ranks; None computes the same loss unwrapped.
    `cfg.cold_item_rate` (resolved by fit_dqn_lstm; a negative value here counts as 0) is the share of
    the batch's items made cold (`simulate_cold_items`)."""
    state = TensorStates(batch.state, device)
    next_state = TensorStates(batch.next_state, device)
    action = torch.as_tensor(batch.action, dtype=torch.long, device=device)  # [B]
    reward = torch.as_tensor(batch.reward, dtype=torch.float32, device=device) * cfg.reward_scale  # [B]
    discount = torch.as_tensor(batch.discount, dtype=torch.float32, device=device)  # [B]
    weight = torch.as_tensor(batch.weight, dtype=torch.float32, device=device)  # [B]
    ce_mask = None if batch.ce_mask is None else torch.as_tensor(batch.ce_mask, dtype=torch.float32, device=device)
    use_amp = scaler is not None and device.type == "cuda"

    # the actions scored in this update: every item, or the batch's actions, the states' own items (so the
    # repeat path always has the user's history to choose among) and uniform samples
    state.item_seq, next_state.item_seq, action = simulate_cold_items(
        max(cfg.cold_item_rate, 0.0), state.item_seq, next_state.item_seq, action
    )
    candidates, target_index = candidate_items(action, online.n_items, cfg.candidates, device, state.item_seq)

    online.train()
    loss_module = loss_module if loss_module is not None else DQNLoss(online, target, cfg)
    with torch.autocast(device_type=device.type, enabled=use_amp):
        loss, td_loss, ce_loss, q_taken, td_error = loss_module(
            state, next_state, action, reward, discount, weight, ce_mask, candidates, target_index
        )

    optimizer.zero_grad(set_to_none=True)
    if use_amp:
        scaler.scale(loss).backward()
        for part in each_optimizer(optimizer):
            scaler.unscale_(part)
        clip_grad_norm(online.parameters(), cfg.max_grad_norm)
        for part in each_optimizer(optimizer):
            scaler.step(part)
        scaler.update()
    else:
        loss.backward()
        clip_grad_norm(online.parameters(), cfg.max_grad_norm)
        optimizer.step()

    return UpdateResult(
        td_loss=float(td_loss.detach()),
        ce_loss=float(ce_loss.detach()),
        q_mean=float(q_taken.detach().mean()),
        td_error=td_error.detach().abs().float().cpu().numpy(),
    )


def candidate_items(
    action: torch.Tensor, n_items: int, n_sampled: int, device: torch.device, history: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(candidates [C] sorted, position of each action in candidates [B]).

    With `n_sampled` = 0 (or a catalogue no bigger than that) the candidates are all items. Otherwise
    they are the unique actions of the batch, the items of the batch's states (`history` [B, L]) and
    `n_sampled` items drawn uniformly (torch's RNG, so a resumed run draws the same ones).
    """
    if n_sampled <= 0 or n_items <= n_sampled:
        return torch.arange(n_items, device=device), action
    sampled = torch.randint(FIRST_REAL_ITEM, n_items, (n_sampled,), device="cpu").to(device)
    parts = [action, sampled] + ([history.reshape(-1)] if history is not None else [])
    candidates, inverse = torch.unique(torch.cat(parts), return_inverse=True)
    return candidates, inverse[: len(action)]


def update_target(online: QNetwork, target: QNetwork, cfg: TrainConfig, step: int) -> bool:
    """Hard copy every C steps or a soft Polyak step every step; returns whether the target moved."""
    if cfg.target_update == "soft":
        polyak_update(online, target, cfg.tau)
        return True
    if step % cfg.target_update_every == 0:
        target.load_state_dict(online.state_dict())
        return True
    return False


# ---------------------------------------------------------------------------------------------- loop state


@dataclass
class DQNTrainingLog(TrainingLog):
    """What a DQN-LSTM training run did (drlrec.models.early_stopping.TrainingLog: steps, evaluations,
    where it stopped and why), with the loop's per-step history, resume point, DDP record and the weights
    kept per metric."""

    resumed_from: int | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    evaluations: list[dict[str, float]] = field(default_factory=list)
    ddp: dict[str, Any] = field(default_factory=dict)  # --distributed: world size, per-rank checksums, losses
    # `keep_best` metrics of train_offline: metric -> (best value, its step) and the weights at that step
    kept_best: dict[str, tuple[float, int]] = field(default_factory=dict)
    kept_states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)
    # wall seconds and transitions of the update loop alone (sample, gather, update; not validation or checkpoints)
    update_seconds: float = 0.0
    update_transitions: int = 0

    @property
    def transitions_per_s(self) -> float:
        """Transitions per second of the update loop (nan before a step)."""
        return self.update_transitions / self.update_seconds if self.update_seconds > 0 else math.nan

    def log(self, **values: float) -> None:
        for key, value in values.items():
            self.history.setdefault(key, []).append(float(value))


#: Training steps between unmapping the pages a memory-mapped train split faulted in (LoggedTransitions.release).
RELEASE_PAGES_EVERY = 25

Evaluator = Callable[[DQNLSTM], dict[str, float]]
Tracker = Callable[[dict[str, float], int], None]


def _seed_everything(seed: int) -> None:
    # numpy randomness goes through explicit Generators; torch's global RNG drives init and dropout
    torch.manual_seed(seed)


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    from drlrec.atomic import save_torch

    save_torch(path, payload)


def _learner(model: DQNLSTM, cfg: TrainConfig, seed: int, capacity: int):
    """What both training modes start from: threads and seeds set, the online network and its target
    copy, Adam (with `train.item_optimizer`'s row-wise updates of the item table: drlrec.rl.optim), the AMP
    grad scaler (CUDA only), and a prioritized or uniform sampler over `capacity` slots."""
    torch.set_num_threads(cfg.threads)
    _seed_everything(seed)
    online = model.network
    target = copy.deepcopy(online)
    target.eval()
    optimizer = make_optimizer(online, cfg.item_optimizer, cfg.lr, cfg.weight_decay, cfg.item_lr)
    scaler = torch.amp.GradScaler("cuda") if (cfg.amp and model.device.type == "cuda") else None
    sampler = (
        PrioritizedSampler(capacity, cfg.per_alpha, cfg.per_eps) if cfg.prioritized else UniformSampler(capacity)
    )
    return online, target, optimizer, scaler, sampler


def train_offline(
    model: DQNLSTM,
    data: TransitionSource,
    cfg: TrainConfig,
    seed: int = 0,
    evaluate: Evaluator | None = None,
    metric: str = "valid/ndcg_at_10",
    checkpoint_path: str | Path | None = None,
    track: Tracker | None = None,
    progress: bool = False,
    stop_after: int | None = None,
    resume_key: str = "",
    ddp: DDPContext | None = None,
    keep_best: tuple[str, ...] = (),
) -> DQNTrainingLog:
    """Offline Double DQN on logged transitions with prioritized replay over the whole dataset.

    Early stopping watches `metric` and ends on the weights of its best evaluation. `keep_best` names more
    evaluation metrics whose best weights are kept as well (`result.kept_states`, `result.kept_best`):
    fit_dqn_lstm keeps each head's, because the Q-head and the CE head peak at different steps.

    `stop_after` ends the loop after that many steps of *this call* (used to simulate a killed run);
    the checkpoint at `checkpoint_path` makes the next call continue where the last one saved, but only
    if it was written with the same `resume_key` (a fingerprint of the config and the data).

    With `ddp` (under torchrun) each rank replays its own shard of the transitions (every world_size-th
    one) with its own priorities and batch of cfg.batch_size, DistributedDataParallel averages the
    gradients (effective batch world_size * batch_size), and rank 0 evaluates for every rank; each rank
    checkpoints to its own `checkpoint_path`.
    """
    from tqdm import tqdm

    device = model.device
    main = ddp is None or ddp.is_main
    shard = None if ddp is None else np.arange(ddp.rank, len(data), ddp.world_size)  # this rank's transitions
    size = len(data) if shard is None else len(shard)
    online, target, optimizer, scaler, sampler = _learner(model, cfg, seed, size)
    sampler.reset(size)
    rng = np.random.default_rng(seed if ddp is None else seed + 1_000_003 * ddp.rank)
    loss_module = None
    if ddp is not None:
        from torch.nn.parallel import DistributedDataParallel

        if cfg.item_optimizer != "adam":
            raise ValueError("--distributed trains with train.item_optimizer adam only (row-wise item updates are single-process)")

        torch.manual_seed(seed + ddp.rank)  # own candidate samples and dropout masks per rank
        loss_module = DistributedDataParallel(
            DQNLoss(online, target, cfg),
            device_ids=[device] if device.type == "cuda" else None,
            find_unused_parameters=True,  # heads a config leaves out (dueling, CE) get no gradient
        )
    result = DQNTrainingLog()
    best_state: dict[str, torch.Tensor] | None = None
    evals_without_gain = 0
    start = 1

    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
    ckpt = None
    if checkpoint_path is not None and checkpoint_path.exists():
        ckpt = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if ckpt.get("resume_key", "") != resume_key:
            import sys

            print(
                f"train: ignoring {checkpoint_path}: it was written for another config or data",
                file=sys.stderr,
            )
            ckpt = None
    if ckpt is not None:
        online.load_state_dict(ckpt["online"])
        target.load_state_dict(ckpt["target"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if isinstance(sampler, PrioritizedSampler):
            sampler.tree.tree[:] = torch.as_tensor(ckpt["priorities"]).cpu().numpy()
            sampler.max_priority = ckpt["max_priority"]
        rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        result = ckpt["result"]
        best_state = ckpt["best_state"]
        evals_without_gain = ckpt["evals_without_gain"]
        start = ckpt["step"] + 1
        result.resumed_from = ckpt["step"]

    def checkpoint(step: int) -> None:
        if checkpoint_path is None:
            return
        _save_checkpoint(
            checkpoint_path,
            {
                "resume_key": resume_key,
                "step": step,
                "online": online.state_dict(),
                "target": target.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                # a tensor sharing the tree's memory: torch.save writes it as it is (a numpy copy would be
                # pickled into one more in-memory copy: 2 x 2 GB at 78M transitions)
                "priorities": torch.from_numpy(sampler.tree.tree) if isinstance(sampler, PrioritizedSampler) else None,
                "max_priority": getattr(sampler, "max_priority", 1.0),
                "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "result": result,
                "best_state": best_state,
                "evals_without_gain": evals_without_gain,
            },
        )

    bar = tqdm(
        range(start, cfg.steps + 1),
        desc="train (offline)",
        disable=None if progress and main else True,
        leave=False,
        initial=start - 1,
        total=cfg.steps,
    )
    progress_log = ProgressLog("train (offline)", cfg.steps, cfg.log_every, enabled=bool(progress and main), start=start - 1)
    steps_this_call = 0
    for step in bar:
        step_started = time.perf_counter()
        beta = linear_schedule(cfg.per_beta_start, cfg.per_beta_end, cfg.steps, step)
        sample = sampler.sample(cfg.batch_size, beta, rng)
        index = sample.index if shard is None else shard[sample.index]
        batch = data.gather(index, cfg.n_step, cfg.gamma)._replace(weight=sample.weight)
        update = dqn_update(online, target, optimizer, batch, cfg, device, scaler, loss_module)
        sampler.update(sample.index, update.td_error)
        update_target(online, target, cfg, step)
        result.update_seconds += time.perf_counter() - step_started
        result.update_transitions += len(index)
        if step % RELEASE_PAGES_EVERY == 0 and hasattr(data, "release"):
            data.release()  # a memory-mapped split's faulted-in pages would otherwise count as ours

        metrics = {
            "train/td_loss": update.td_loss,
            "train/ce_loss": update.ce_loss,
            "train/q_mean": update.q_mean,
            "train/batch_reward": float(batch.reward.mean()),
            "train/per_beta": beta,
        }
        result.log(step=step, **metrics)
        result.steps_done = step
        if track is not None and main and (step % 10 == 0 or step == cfg.steps):
            track(metrics, step)
        bar.set_postfix(
            loss=f"{update.td_loss + cfg.ce_weight * update.ce_loss:.3f}",
            reward=f"{metrics['train/batch_reward']:.2f}",
        )
        if main:
            last = result.evaluations[-1] if result.evaluations else {}
            progress_log.step(step, td_loss=float(update.td_loss), ce_loss=float(update.ce_loss),
                              last_valid_ndcg_at_10=last.get("valid/ndcg_at_10"),
                              at_step=last.get("step"))

        if evaluate is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
            scores = evaluate(model) if main else None
            if ddp is not None:  # every rank takes rank 0's score: they stop at the same step
                scores = ddp.broadcast(scores)
            scores["step"] = step
            result.evaluations.append(scores)
            if track is not None and main:
                track({k: v for k, v in scores.items() if k != "step"}, step)
            online.drop_item_cache()  # the evaluation's [n_items, d] table: 2 GB at 4.2M items
            snapshot: dict[str, torch.Tensor] | None = None  # one copy of the weights per evaluation, shared
            for name in keep_best:
                if scores[name] > result.kept_best.get(name, (-math.inf, 0))[0]:
                    result.kept_best[name] = (scores[name], step)
                    if snapshot is None:
                        snapshot = {k: v.detach().clone() for k, v in online.state_dict().items()}
                    result.kept_states[name] = snapshot
            if scores[metric] > result.best_metric:
                result.best_metric, result.best_step = scores[metric], step
                if snapshot is None:
                    snapshot = {k: v.detach().clone() for k, v in online.state_dict().items()}
                best_state = snapshot
                evals_without_gain = 0
            else:
                evals_without_gain += 1
                if evals_without_gain >= cfg.patience:
                    result.stopped_early = True
                    checkpoint(step)
                    break
        if step % cfg.checkpoint_every == 0:
            checkpoint(step)
        steps_this_call += 1
        if stop_after is not None and steps_this_call >= stop_after:
            return result
    bar.close()
    if best_state is not None:
        online.load_state_dict(best_state)  # early stopping keeps the best validated weights
    if ddp is not None:
        result.ddp = _ddp_summary(ddp, result, online, cfg)
    return result


def _ddp_summary(ddp: DDPContext, result: DQNTrainingLog, online: QNetwork, cfg: TrainConfig) -> dict[str, Any]:
    """What a distributed run reports: the effective batch and learning rate, every rank's parameter
    checksums (equal: the ranks stayed in sync) and the loss over the first and last tenth of the steps,
    averaged over the ranks."""
    from drlrec.distributed import parameter_checksums

    loss = np.asarray(result.history.get("train/td_loss", [])) + cfg.ce_weight * np.asarray(
        result.history.get("train/ce_loss", [])
    )
    tenth = max(1, len(loss) // 10)
    checksums = ddp.gather(parameter_checksums(online))
    return {
        "world_size": ddp.world_size,
        "backend": ddp.backend,
        "batch_size_per_rank": cfg.batch_size,
        "effective_batch_size": cfg.batch_size * ddp.world_size,
        "lr": cfg.lr,
        "lr_scaling": ddp.lr_scaling,
        "param_checksums": checksums,
        "params_in_sync": all(np.allclose(c, checksums[0], rtol=1e-6, atol=1e-9) for c in checksums),
        "loss_first_tenth": ddp.mean(float(loss[:tenth].mean())) if len(loss) else float("nan"),
        "loss_last_tenth": ddp.mean(float(loss[-tenth:].mean())) if len(loss) else float("nan"),
    }


# ---------------------------------------------------------------------------------------------- online


def epsilon_greedy_lists(
    greedy: np.ndarray,
    epsilon: float,
    n_items: int,
    rng: np.random.Generator,
    history: np.ndarray | None = None,
    history_share: float = 0.0,
) -> np.ndarray:
    """[B, K] lists where each slot of the greedy list is, with probability epsilon, an exploration item
    instead (slot-wise exploration keeps most of a good list while trying new items).

    An exploration item is, with probability `history_share`, drawn from the user's own recent items
    (`history` [B, N], padding and unknown ignored: Taobao users re-view a lot, so these are the cheap
    first discoveries) and otherwise uniformly from the catalogue."""
    explore = rng.random(greedy.shape) < epsilon
    candidates = rng.integers(FIRST_REAL_ITEM, n_items, size=greedy.shape)
    if history is not None and history_share > 0:
        history = np.asarray(history, dtype=np.int64)
        real = history >= FIRST_REAL_ITEM  # [B, N]
        counts = real.sum(axis=1)  # [B]
        # the j-th real item of each row, j uniform in [0, count): rank real positions with a cumsum
        pick = (rng.random(greedy.shape) * np.maximum(counts, 1)[:, None]).astype(np.int64)  # [B, K]
        order = np.cumsum(real, axis=1) - 1  # [B, N] rank of each real position
        rank_to_pos = np.full(history.shape, 0, dtype=np.int64)
        rows, cols = np.nonzero(real)
        rank_to_pos[rows, order[rows, cols]] = cols
        from_history = history[
            np.arange(len(history))[:, None], rank_to_pos[np.arange(len(history))[:, None], pick]
        ]
        use_history = (rng.random(greedy.shape) < history_share) & (counts > 0)[:, None]
        candidates = np.where(use_history, from_history, candidates)
    return np.where(explore, candidates, greedy)


def train_online(
    model: DQNLSTM,
    env,
    cfg: TrainConfig,
    seed: int = 0,
    track: Tracker | None = None,
    progress: bool = False,
) -> DQNTrainingLog:
    """Double DQN against a SimulatedEnv (drlrec.rl.envs): `cfg.episodes` simulated sessions, run
    `cfg.online_envs` at a time.

    Each step every running session is shown the model's top-k list with slot-wise epsilon exploration
    (epsilon decays linearly over the first `epsilon_decay_fraction` of the episodes); the transition
    (state, item acted on, reward, next state) goes into a replay buffer. When the user ignores the list,
    the action stored is the list's first item with reward 0 and the state unchanged: the Q-value of what
    was shown and ignored is pushed down. Only items the user acted on are positives for the CE head.
    After `online_warmup` transitions, `online_updates_per_step` Double-DQN updates follow every step.

    history: `train/episode_reward` (mean undiscounted return of a round's episodes), `train/epsilon`,
    `train/ctr`; evaluations: `online/greedy_return` etc. of `simulate_policy` with epsilon 0 on the
    same seeded sessions every `online_eval_every` rounds (learning, not the epsilon schedule, moves it).
    The model ends with the weights of its best greedy evaluation (`result.best_step` episodes; 0 = the
    starting weights were never beaten).
    """
    from tqdm import tqdm

    from drlrec.errors import ConfigError
    from drlrec.rl.envs import model_policy, simulate_policy
    from drlrec.rl.replay import ReplayBuffer

    if cfg.n_step != 1:
        raise ConfigError(f"train.mode=online learns from 1-step transitions (got train.n_step={cfg.n_step})")
    if cfg.episodes < 1 or cfg.online_envs < 1:
        raise ConfigError("train.episodes and train.online_envs must be >= 1")
    core = getattr(env, "unwrapped", env)
    device = model.device
    online, target, optimizer, scaler, sampler = _learner(model, cfg, seed, cfg.online_buffer)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(211,)))
    k = core.cfg.k
    n_items = core.n_items
    buffer: ReplayBuffer | None = None
    result = DQNTrainingLog()
    decay_episodes = max(1, int(cfg.epsilon_decay_fraction * cfg.episodes))
    rounds = math.ceil(cfg.episodes / cfg.online_envs)
    episodes_done = 0
    updates = 0

    def greedy_evaluation(round_index: int) -> None:
        sim = simulate_policy(core, model_policy(model, k), cfg.online_eval_sessions, seed=seed + 1)
        scores = {
            "online/greedy_return": sim.mean_return,
            "online/greedy_ctr": sim.ctr,
            "online/greedy_buys_per_step": sim.buys_per_step,
            "online/greedy_length": sim.mean_length,
            "episodes": float(episodes_done),
            "step": float(updates),
        }
        result.evaluations.append(scores)
        if scores["online/greedy_return"] > result.best_metric:
            result.best_metric, result.best_step = scores["online/greedy_return"], episodes_done
            best_state.clear()
            best_state.update({k_: v.detach().clone() for k_, v in online.state_dict().items()})
        if track is not None:
            track({k_: v for k_, v in scores.items() if k_.startswith("online/")}, episodes_done)

    best_state: dict[str, torch.Tensor] = {}
    greedy_evaluation(0)
    bar = tqdm(
        total=cfg.episodes,
        desc="train (online)",
        unit="episodes",
        disable=None if progress else True,
        leave=False,
    )
    progress_log = ProgressLog("train (online)", rounds, cfg.log_every, enabled=bool(progress), unit="round")
    for round_index in range(1, rounds + 1):
        n = min(cfg.online_envs, cfg.episodes - episodes_done)
        epsilon = linear_schedule(cfg.epsilon_start, cfg.epsilon_end, decay_episodes, episodes_done)
        session = core.start_batch(n, rng)
        episode_return = np.zeros(n)
        shown = clicks = 0
        losses = []
        while not session.finished.all():
            active = ~session.finished
            states = core.batch_states(session)
            greedy, _ = model.recommend(states, k)
            lists = epsilon_greedy_lists(
                greedy, epsilon, n_items, rng, states.item_seq, cfg.online_explore_history
            )
            out = core.step_batch(session, lists, rng)
            next_states = core.batch_states(session)
            episode_return += out.reward
            shown += int(active.sum())
            clicks += int(out.clicked.sum())
            rows = np.flatnonzero(active)
            if buffer is None:
                buffer = ReplayBuffer(
                    cfg.online_buffer,
                    states.item_seq.shape[1],
                    states.step_features.shape[2],
                    states.profile.shape[1],
                )
            action = np.where(out.clicked, out.item, lists[:, 0])[rows]
            slots = buffer.add(
                StateBatch(*(a[rows] for a in states)),
                action,
                out.reward[rows],
                StateBatch(*(a[rows] for a in next_states)),
                out.terminated[rows].astype(np.float32),
                positive=out.clicked[rows],
            )
            sampler.add(slots)
            if len(buffer) < max(cfg.online_warmup, cfg.batch_size):
                continue
            for _ in range(cfg.online_updates_per_step):
                updates += 1
                beta = linear_schedule(cfg.per_beta_start, cfg.per_beta_end, cfg.episodes, episodes_done)
                sample = sampler.sample(cfg.batch_size, beta, rng)
                batch = buffer.gather(sample.index, 1, cfg.gamma)._replace(weight=sample.weight)
                update = dqn_update(online, target, optimizer, batch, cfg, device, scaler)
                sampler.update(sample.index, update.td_error)
                update_target(online, target, cfg, updates)
                losses.append(update.td_loss + cfg.ce_weight * update.ce_loss)
        episodes_done += n
        metrics = {
            "train/episode_reward": float(episode_return.mean()),
            "train/epsilon": epsilon,
            "train/ctr": clicks / max(shown, 1),
            "train/loss": float(np.mean(losses)) if losses else float("nan"),
            "train/buffer": float(len(buffer) if buffer is not None else 0),
        }
        result.log(episodes=episodes_done, step=updates, **metrics)
        result.steps_done = updates
        if track is not None:
            track({k_: v for k_, v in metrics.items() if not math.isnan(v)}, episodes_done)
        bar.update(n)
        bar.set_postfix(
            loss=f"{metrics['train/loss']:.3f}",
            eps=f"{epsilon:.2f}",
            ret=f"{metrics['train/episode_reward']:.2f}",
            ctr=f"{metrics['train/ctr']:.3f}",
        )
        if round_index % cfg.online_eval_every == 0 or round_index == rounds:
            greedy_evaluation(round_index)
        last = result.evaluations[-1] if result.evaluations else {}
        progress_log.step(round_index, episodes=episodes_done, loss=metrics["train/loss"],
                          episode_reward=metrics["train/episode_reward"],
                          last_greedy_return=last.get("online/greedy_return"))
    bar.close()
    # like offline early stopping: keep the weights of the best greedy evaluation (the same seeded sessions
    # every time), which may be the starting weights when training never beat them
    online.load_state_dict(best_state)
    return result


# ---------------------------------------------------------------------------------------------- DQN-LSTM fit

HEADS: tuple[str, ...] = ("q", "ce")


@dataclass
class DQNFit:
    """What `fit_dqn_lstm` did: the trained model (its `score_with` set to the served head), the loop's
    record, every head's validation metrics, popularity's on the same events, and the time taken."""

    model: DQNLSTM
    train: DQNTrainingLog
    valid_by_head: dict[str, dict[str, float]]
    popularity_metrics: dict[str, float]
    seconds: float

    @property
    def served_head(self) -> str:
        return self.model.served_head

    @property
    def valid_metrics(self) -> dict[str, float]:
        """The served head's validation metrics (`valid/...`), plus every head's as `valid_<head>/...`."""
        out = dict(self.valid_by_head[self.served_head])
        for head, metrics in self.valid_by_head.items():
            out.update({k.replace("valid/", f"valid_{head}/"): v for k, v in metrics.items()})
        return out


def trained_heads(cfg: TrainConfig) -> tuple[str, ...]:
    """The heads a config trains: the Q-head always, the supervised head when ce_weight > 0."""
    return HEADS if cfg.ce_weight > 0 else ("q",)


def head_evaluator(evaluate: Evaluator, heads: tuple[str, ...]) -> Evaluator:
    """`evaluate` (one model's validation NDCG/HR) run once per head in `heads`; `valid/ndcg_at_10` is the
    best head's (what early stopping watches), `valid_<head>/...` each head's."""

    def evaluate_heads(model: DQNLSTM) -> dict[str, float]:
        served = model.score_with
        scores: dict[str, float] = {}
        try:
            for head in heads:
                model.score_with = head
                scores.update({k.replace("valid/", f"valid_{head}/"): v for k, v in evaluate(model).items()})
        finally:
            model.score_with = served
        best = max(heads, key=lambda h: scores[f"valid_{h}/ndcg_at_10"])
        scores.update({k.replace(f"valid_{best}/", "valid/"): v for k, v in scores.items() if k.startswith(f"valid_{best}/")})
        return scores

    return evaluate_heads


def kept_evaluation(result: DQNTrainingLog, head: str) -> dict[str, float] | None:
    """`head`'s validation figures (`valid/...` keys) from the loop's evaluation at the step whose weights
    it kept for that head; None when it kept none or that evaluation is not in this run's record."""
    kept = result.kept_best.get(f"valid_{head}/ndcg_at_10")
    if kept is None:
        return None
    scores = next((e for e in result.evaluations if e.get("step") == kept[1]), None)
    if scores is None:
        return None
    prefix = f"valid_{head}/"
    return {"valid/" + k[len(prefix):]: v for k, v in scores.items() if k.startswith(prefix)}


def fit_dqn_lstm(
    model: DQNLSTM,
    data: TrainingData,
    cfg: TrainConfig,
    seed: int,
    env=None,
    checkpoint_path: str | Path | None = None,
    resume_key: str = "",
    track: Tracker | None = None,
    progress: bool = False,
    ddp: DDPContext | None = None,
) -> DQNFit:
    """The one way to train a DQN-LSTM: `model` in place, on `data` (train and valid transitions).

    `cfg.mode` offline: Double DQN on the logged train transitions, early stopping on validation.
    `cfg.mode` online: episodes against `env` (a SimulatedEnv fitted on the train split).
    Offline with both heads, each head keeps the weights of its own best validation NDCG@10 (the Q-head
    and the CE head peak at different steps); each is scored at its weights on the same validation events,
    the better one becomes the served head (`model.score_with`, the network holds its weights), and
    `model.head_states` holds every head's weights for `model.use_head`. With `ddp` the learning rate is scaled by scale.ddp_lr_scaling and only
    rank 0 validates (the other ranks return empty metrics)."""
    import dataclasses
    import time

    from drlrec.errors import ConfigError
    from drlrec.models.popularity import Popularity
    from drlrec.rl.logged import LoggedTransitions

    started = time.perf_counter()
    cfg = dataclasses.replace(cfg, cold_item_rate=cold_rate(cfg, data.valid))
    if ddp is not None:
        cfg = dataclasses.replace(cfg, lr=cfg.lr * ddp.lr_factor())
    # one evaluator (one seeded set of validation events) for the loop's evaluations, each head's final
    # figures and popularity's
    plain_eval, _ = validation_evaluator(data.valid, cfg.eval_max_events, seed)
    evaluate = head_evaluator(plain_eval, trained_heads(cfg))
    # the head that acts while training (online: the greedy lists; the CE head when it is trained, as the
    # SQN recipe does); the served head is chosen on validation afterwards
    model.score_with = "ce" if cfg.ce_weight > 0 else "q"
    if cfg.mode == "online":
        if env is None:
            raise ConfigError("train.mode=online needs a simulated environment (drlrec train builds one)")
        result = train_online(model, env, cfg, seed=seed, track=track, progress=progress)
    else:
        keep = tuple(f"valid_{head}/ndcg_at_10" for head in trained_heads(cfg)) if cfg.ce_weight > 0 else ()
        result = train_offline(
            model, LoggedTransitions(data.train, cfg.reward), cfg, seed=seed, evaluate=evaluate,
            checkpoint_path=checkpoint_path, track=track, progress=progress, resume_key=resume_key, ddp=ddp,
            keep_best=keep,
        )
    if ddp is not None and not ddp.is_main:
        return DQNFit(model, result, {"q": {}}, {}, time.perf_counter() - started)
    # each head's figures at its own kept weights, on the same validation events as popularity's: the
    # loop's own evaluation at the kept step (the same evaluator, events and weights) when it has one, else
    # (no kept step, or it was evaluated before a resume) the head scored now, with itself only, at the
    # weights the loop ended on
    states = {head: result.kept_states.get(f"valid_{head}/ndcg_at_10") for head in trained_heads(cfg)}
    if any(state is None for state in states.values()):
        final = {k: v.detach().clone() for k, v in model.network.state_dict().items()}
        states = {head: final if state is None else state for head, state in states.items()}
    by_head = {}
    for head, state in states.items():
        by_head[head] = kept_evaluation(result, head)
        if by_head[head] is None:
            model.network.load_state_dict(state)
            model.score_with = head
            by_head[head] = plain_eval(model)
    model.head_states = states
    model.served_head = max(by_head, key=lambda h: by_head[h]["valid/ndcg_at_10"])
    model.use_head(model.served_head)
    popularity = plain_eval(Popularity(data.n_items).fit(data.train.action_item))
    return DQNFit(model, result, by_head, popularity, time.perf_counter() - started)
