"""DRR (Liu et al. 2018): a DDPG actor-critic recommender with the DRR-ave state representation.

State representation (DRR-ave): the state's item embeddings e_1..e_L are pooled by a learned weighted
average (one learned weight per position, initialized to a recency decay, padding excluded); the user u is a projection of the 10-d profile
(the state has no user id); s = [u, u * ave, ave] (3 x dim).
Actor: s -> action a = tanh(MLP(s)) in the item embedding space; an item scores a . e_item, so top-k over
the catalogue is one matrix product. Critic: Q(s, a) = MLP([s, a]).

Offline training (`fit`) runs on the logged transitions: the action is the logged item's embedding, the
TD target r + gamma Q'(s', a'(s') + clipped noise) uses target networks updated softly (tau), the replay
is prioritized by |TD error| (`rl.replay.PrioritizedSampler`). Offline DDPG alone drifts away from the
data, so the actor also minimizes a behaviour-cloning term (TD3+BC): the sampled softmax of the logged
item under a . e, weighted by `bc_weight` against -Q / mean|Q|. The same update runs on simulator
transitions in `fit_simulated` (the online hook), where Gaussian exploration noise is added to the action.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from drlrec.config import BaselinesConfig, DRRConfig
from drlrec.models.base import FIRST_REAL_ITEM, Recommender, StateBatch, TrainingData
from drlrec.models.dqn_lstm import N_PROFILE_FEATURES, TensorStates
from drlrec.models.early_stopping import EarlyStopping, TrainingLog
from drlrec.models.sequence_fit import sampled_candidates, train_item_pool

#: positions the DRR-ave pooling weights cover (the state length N must not exceed it)
MAX_STATE_LEN = 512


class DRRActor(nn.Module):
    """Item embeddings, the DRR-ave state representation and the policy."""

    def __init__(self, n_items: int, cfg: DRRConfig) -> None:
        super().__init__()
        self.item_embedding = nn.Embedding(n_items, cfg.dim, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=0.1)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        # pooling weight of each position counted from the newest; starts as a recency decay 2^-age
        self.position_weight = nn.Parameter(0.5 ** torch.arange(MAX_STATE_LEN - 1, -1, -1, dtype=torch.float32))
        self.user = nn.Linear(N_PROFILE_FEATURES, cfg.dim)
        self.policy = nn.Sequential(nn.Linear(3 * cfg.dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.dim), nn.Tanh())

    def represent(self, states: TensorStates) -> Tensor:
        """DRR-ave state s = [u, u * ave, ave]: [B, 3 dim]."""
        item_seq = states.item_seq  # [B, L]
        length = item_seq.shape[1]
        weight = self.position_weight[MAX_STATE_LEN - length :][None, :] * (item_seq > 0)  # [B, L]
        ave = (weight[:, :, None] * self.item_embedding(item_seq)).sum(1)  # [B, dim] weighted pooling
        u = self.user(states.profile)  # [B, dim]
        return torch.cat([u, u * ave, ave], dim=-1)

    def act(self, s: Tensor) -> Tensor:
        """Action embedding of a state representation: [B, dim] in [-1, 1]."""
        return self.policy(s)

    def scores(self, action: Tensor) -> Tensor:
        """a . e over the catalogue: [B, n_items]."""
        return action @ self.item_embedding.weight.T


class DRRCritic(nn.Module):
    """Q(s, a) on the state representation and an action embedding."""

    def __init__(self, cfg: DRRConfig) -> None:
        super().__init__()
        self.q = nn.Sequential(nn.Linear(4 * cfg.dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                               nn.Linear(cfg.hidden, 1))

    def forward(self, s: Tensor, action: Tensor) -> Tensor:  # [B, 3 dim], [B, dim] -> [B]
        return self.q(torch.cat([s, action], dim=-1)).squeeze(-1)


class DRRUpdate(NamedTuple):
    critic_loss: float
    actor_loss: float
    bc_loss: float
    q_mean: float
    td_error: np.ndarray  # [B] |TD error| for the priorities


class Simulator(Protocol):
    """What `fit_simulated` needs from a simulator (an adapter over rl.envs.SimulatedEnv once it exists):
    a batch of simulated users stepping together."""

    def reset(self) -> StateBatch:
        """Start an episode for every simulated user; their first states."""
        ...

    def step(self, items: np.ndarray) -> tuple[StateBatch, np.ndarray, np.ndarray]:
        """Recommend one item [B] to each user: (next states, rewards [B], done [B] bool)."""
        ...


class SessionSimulator:
    """`rl.envs.SimulatedEnv` (or any env with its vectorized core: start_batch / batch_states / step_batch)
    as a `Simulator` of `n_users` sessions, each recommended a one-item list per step."""

    def __init__(self, env: Any, n_users: int, seed: int = 0) -> None:
        self.env = env
        self.n_users = n_users
        self.rng = np.random.default_rng(seed)
        self.session: Any = None

    def reset(self) -> StateBatch:
        self.session = self.env.start_batch(self.n_users, self.rng)
        return self.env.batch_states(self.session)

    def step(self, items: np.ndarray) -> tuple[StateBatch, np.ndarray, np.ndarray]:
        outcome = self.env.step_batch(self.session, np.asarray(items, dtype=np.int64)[:, None], self.rng)
        reward = np.where(outcome.active, outcome.reward, 0.0).astype(np.float32)
        return self.env.batch_states(self.session), reward, self.session.finished.copy()


class DRR(Recommender):
    """DRR-ave actor-critic behind the shared interface; `score` is the actor's a . e over all items."""

    name = "drr"

    def __init__(self, n_items: int, n_categories: int = 0, cfg: BaselinesConfig | None = None, seed: int = 0,
                 progress: bool = False) -> None:
        from drlrec.devices import resolve_device

        self.n_items = n_items
        self.n_categories = n_categories
        self.cfg = cfg or BaselinesConfig()
        self.seed = seed
        self.progress = progress
        self.device = resolve_device(self.cfg.device)
        self.log = TrainingLog()
        torch.manual_seed(seed)
        self.actor = DRRActor(n_items, self.cfg.drr).to(self.device)
        self.critic = DRRCritic(self.cfg.drr).to(self.device)

    # ------------------------------------------------------------------------------------------ update

    def update(
        self,
        batch: Any,
        target_actor: DRRActor,
        target_critic: DRRCritic,
        actor_optimizer: torch.optim.Optimizer,
        critic_optimizer: torch.optim.Optimizer,
        pool: np.ndarray,
        rng: np.random.Generator,
    ) -> DRRUpdate:
        """One DDPG (+BC) step on a train.TransitionBatch (logged or simulated), then soft target updates."""
        from drlrec.rl.target import polyak_update

        cfg, device = self.cfg.drr, self.device
        state, next_state = TensorStates(batch.state, device), TensorStates(batch.next_state, device)
        action = torch.as_tensor(batch.action, dtype=torch.long, device=device)  # [B] logged item
        reward = torch.as_tensor(batch.reward, dtype=torch.float32, device=device)  # [B]
        discount = torch.as_tensor(batch.discount, dtype=torch.float32, device=device)  # [B] gamma, 0 at the end
        weight = torch.as_tensor(batch.weight, dtype=torch.float32, device=device)  # [B] importance weights
        self.actor.train()
        self.critic.train()

        # critic: TD target from the target networks, with target-policy smoothing noise
        s = self.actor.represent(state)  # [B, 3 dim]
        with torch.no_grad():
            next_s = target_actor.represent(next_state)
            noise = (torch.randn(len(reward), cfg.dim, device=device) * cfg.exploration_noise).clamp(
                -2 * cfg.exploration_noise, 2 * cfg.exploration_noise)
            next_action = (target_actor.act(next_s) + noise).clamp(-1.0, 1.0)
            target_q = reward + discount * target_critic(next_s, next_action)  # [B]
        q = self.critic(s.detach(), self.actor.item_embedding(action).detach())  # [B] Q(s, logged action)
        critic_loss = (weight * F.smooth_l1_loss(q, target_q, reduction="none")).mean()
        critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.critic.parameters(), 10.0)
        critic_optimizer.step()

        # actor: maximize Q (scaled by its magnitude, TD3+BC) and keep the logged item likely under a . e
        proposed = self.actor.act(s)  # [B, dim]
        actor_q = self.critic(s, proposed)
        actor_loss = -actor_q.mean() / actor_q.detach().abs().mean().clamp(min=1e-6)
        candidates, target_index = sampled_candidates(action, pool, cfg.candidates, self.n_items, rng)
        # importance weights undo the prioritized sampling here too (priorities follow TD, not the data)
        bc_loss = (weight * F.cross_entropy(proposed @ self.actor.item_embedding(candidates).T, target_index,
                                            reduction="none")).mean()
        actor_optimizer.zero_grad(set_to_none=True)
        (actor_loss + cfg.bc_weight * bc_loss).backward()
        torch.nn.utils.clip_grad_norm_(self.actor.parameters(), 10.0)
        actor_optimizer.step()

        polyak_update(self.actor, target_actor, cfg.tau)
        polyak_update(self.critic, target_critic, cfg.tau)
        return DRRUpdate(float(critic_loss.detach()), float(actor_loss.detach()), float(bc_loss.detach()),
                         float(q.detach().mean()), (target_q - q).detach().abs().cpu().numpy())

    def _learners(self) -> tuple[DRRActor, DRRCritic, torch.optim.Optimizer, torch.optim.Optimizer]:
        target_actor, target_critic = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        target_actor.eval()
        target_critic.eval()
        actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.drr.actor_lr)
        critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.drr.critic_lr)
        return target_actor, target_critic, actor_optimizer, critic_optimizer

    # ------------------------------------------------------------------------------------------ training

    def fit(self, data: TrainingData, cfg: BaselinesConfig | None = None) -> DRR:
        """Offline DDPG (+BC) on data.train with prioritized replay; early stopping on data.valid NDCG@10."""
        from tqdm import tqdm

        from drlrec.evaluate import validation_evaluator
        from drlrec.rl.logged import LoggedTransitions
        from drlrec.rl.replay import PrioritizedSampler, linear_schedule

        if cfg is not None:
            self.cfg = cfg
        drr, base = self.cfg.drr, self.cfg
        torch.set_num_threads(base.threads)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        source = LoggedTransitions(data.train, drr.reward)
        evaluate, _ = validation_evaluator(data.valid, base.eval_max_events, self.seed)
        pool = train_item_pool(data)
        target_actor, target_critic, actor_optimizer, critic_optimizer = self._learners()
        self.log = log = TrainingLog()
        if len(source) == 0:
            return self
        sampler = PrioritizedSampler(len(source), drr.per_alpha)
        sampler.reset(len(source))
        stopper = EarlyStopping(drr.patience, log)
        modules = {"actor": self.actor, "critic": self.critic}
        bar = tqdm(range(1, drr.steps + 1), desc="train drr", disable=None if self.progress else True, leave=False)
        for step in bar:
            beta = linear_schedule(drr.per_beta_start, 1.0, drr.steps, step)
            sample = sampler.sample(drr.batch_size, beta, rng)
            batch = source.gather(sample.index, 1, drr.gamma)._replace(weight=sample.weight)
            update = self.update(batch, target_actor, target_critic, actor_optimizer, critic_optimizer, pool, rng)
            sampler.update(sample.index, update.td_error)
            log.losses.append(update.critic_loss + update.bc_loss)
            log.steps_done = step
            bar.set_postfix(critic=f"{update.critic_loss:.3f}", bc=f"{update.bc_loss:.3f}")
            if (step % drr.eval_every == 0 or step == drr.steps) and stopper.update(evaluate(self), step, modules):
                break
        bar.close()
        stopper.restore(modules)
        return self

    def fit_simulated(self, env: Simulator, episodes: int, max_steps: int = 20, buffer_size: int = 50_000,
                      warmup: int = 256, candidate_pool: np.ndarray | None = None) -> TrainingLog:
        """Online DDPG against a simulator: `SessionSimulator(rl.envs.SimulatedEnv(...), n_users)` or any `Simulator`.

        Each step recommends the top item of a . e for the noisy action a = actor(s) + N(0, noise^2)
        (exploration), stores the transitions in a prioritized `rl.replay.ReplayBuffer` and, after
        `warmup` transitions, runs one `update` per step; a session's transitions stop once it is done.
        Starts from the current weights, so it can
        fine-tune an offline-trained model. Returns the per-step losses.
        """
        from drlrec.rl.replay import PrioritizedSampler, ReplayBuffer

        drr = self.cfg.drr
        torch.set_num_threads(self.cfg.threads)
        rng = np.random.default_rng(self.seed + 1)
        pool = candidate_pool if candidate_pool is not None else np.arange(FIRST_REAL_ITEM, self.n_items)
        target_actor, target_critic, actor_optimizer, critic_optimizer = self._learners()
        log = TrainingLog()
        buffer: ReplayBuffer | None = None
        sampler: PrioritizedSampler | None = None
        for _ in range(episodes):
            states = env.reset()
            alive = np.ones(states.batch_size, dtype=bool)  # sessions that had not ended before this step
            for _ in range(max_steps):
                items = self.explore(states)
                next_states, reward, done = env.step(items)
                done = np.asarray(done, dtype=bool)
                if buffer is None:
                    buffer = ReplayBuffer(buffer_size, states.item_seq.shape[1])
                    sampler = PrioritizedSampler(buffer_size, drr.per_alpha)
                rows = np.flatnonzero(alive)
                slots = buffer.add(StateBatch(*(a[rows] for a in states)), items[rows],
                                   np.asarray(reward, np.float32)[rows], StateBatch(*(a[rows] for a in next_states)),
                                   done[rows].astype(np.float32))
                sampler.add(slots)
                alive &= ~done
                if len(buffer) >= warmup:
                    sample = sampler.sample(drr.batch_size, 1.0, rng)
                    batch = buffer.gather(sample.index, 1, drr.gamma)._replace(weight=sample.weight)
                    update = self.update(batch, target_actor, target_critic, actor_optimizer, critic_optimizer, pool, rng)
                    sampler.update(sample.index, update.td_error)
                    log.losses.append(update.critic_loss + update.bc_loss)
                    log.steps_done += 1
                if not alive.any():
                    break
                states = next_states
        return log

    @torch.no_grad()
    def explore(self, states: StateBatch) -> np.ndarray:
        """One item per state from the Gaussian-perturbed action (never padding/unknown): [B] int64."""
        self.actor.eval()
        action = self.actor.act(self.actor.represent(TensorStates(states, self.device)))
        action = (action + torch.randn_like(action) * self.cfg.drr.exploration_noise).clamp(-1.0, 1.0)
        scores = self.actor.scores(action)
        scores[:, :FIRST_REAL_ITEM] = float("-inf")
        return scores.argmax(dim=1).cpu().numpy().astype(np.int64)

    # ------------------------------------------------------------------------------------------ interface

    @torch.no_grad()
    def score(self, states: StateBatch, batch_size: int = 1024) -> np.ndarray:
        self.actor.eval()
        out = np.empty((states.batch_size, self.n_items), dtype=np.float32)
        for start in range(0, states.batch_size, batch_size):
            chunk = TensorStates(states.slice(start, start + batch_size), self.device)
            scores = self.actor.scores(self.actor.act(self.actor.represent(chunk)))
            out[start : start + len(scores)] = scores.float().cpu().numpy()
        return out

    def save(self, path: str | Path) -> None:
        """Write actor and critic weights and the config into the folder `path`."""
        from drlrec.models.persistence import save_weights, write_meta

        save_weights(path, actor=self.actor, critic=self.critic)
        write_meta(path, self.name, self.cfg, n_items=self.n_items, n_categories=self.n_categories, seed=self.seed)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> DRR:
        from drlrec.models.persistence import rebuild_torch_model

        model, weights = rebuild_torch_model(cls, path, device)
        model.actor.load_state_dict(weights["actor"])
        model.critic.load_state_dict(weights["critic"])
        return model
