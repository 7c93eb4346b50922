"""Benchmark: DQN-LSTM training throughput, training memory and inference latency (prints figures,
asserts nothing).

Training: transitions/s of the Double-DQN + SQN update (hidden 128, batch 256, N=10, 100k items), with
the default candidate sampling (`train.candidates`) and, as the in-process baseline, with every item
scored in each update (candidates 0). Inference: latency percentiles of `score` over all 100k items
for one user and for a batch of 256 users (Q-head and supervised head). CUDA figures are added when a
GPU is present.

Item optimizers (`--item-optimizers adam,sparse_adam,row_adagrad`): each `train.item_optimizer` trains in
its own child process (model, target copy, optimizer state, updates), which reports its transitions/s
and its own peak RSS, so the memory of a 4,162,024-item catalogue (the real file's) is measured per
optimizer, not projected:

    python bench/bench_train.py [--items 100000] [--steps 30] [--threads 2]
    python bench/bench_train.py --items 4162024 --only-optimizers --steps 20
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from drlrec.config import ModelConfig, TrainConfig
from drlrec.models.base import StateBatch
from drlrec.models.dqn_lstm import DQNLSTM
from drlrec.rl.dqn import dqn_update
from drlrec.rl.optim import ITEM_OPTIMIZERS, make_optimizer
from drlrec.rl.replay import ReplayBuffer


def random_states(n: int, n_items: int, n_cats: int, seq_len: int, rng: np.random.Generator) -> StateBatch:
    return StateBatch(
        item_seq=rng.integers(2, n_items, (n, seq_len)),
        category_seq=rng.integers(2, n_cats, (n, seq_len)),
        behavior_seq=rng.integers(1, 5, (n, seq_len)),
        step_features=rng.random((n, seq_len, 20), dtype=np.float32),
        profile=rng.random((n, 10), dtype=np.float32),
    )


def train_throughput(n_items: int, cfg: TrainConfig, steps: int, device: torch.device, rng) -> float:
    model = DQNLSTM(n_items, 5000, ModelConfig(), device=device)
    target = copy.deepcopy(model.network)
    optimizer = make_optimizer(model.network, cfg.item_optimizer, cfg.lr, cfg.weight_decay, cfg.item_lr)
    buffer = ReplayBuffer(4096, 10)
    states = random_states(4096, n_items, 5000, 10, rng)
    buffer.add(states, rng.integers(2, n_items, 4096), rng.random(4096, dtype=np.float32), states, np.zeros(4096))
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    batches = [buffer.gather(rng.integers(0, 4096, cfg.batch_size)) for _ in range(steps + 3)]
    for batch in batches[:3]:  # warm-up
        dqn_update(model.network, target, optimizer, batch, cfg, device, scaler)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for batch in batches[3:]:
        dqn_update(model.network, target, optimizer, batch, cfg, device, scaler)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size / (time.perf_counter() - started)


def latency_ms(model: DQNLSTM, states: StateBatch, repeats: int) -> np.ndarray:
    model.score(states)  # warm-up (fills the item-vector cache)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.score(states)
        times.append((time.perf_counter() - started) * 1000)
    return np.array(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def optimizer_child(args: argparse.Namespace) -> None:
    """One item optimizer's training run in this (child) process: one JSON line of figures."""
    rng = np.random.default_rng(0)
    cfg = TrainConfig(batch_size=256, item_optimizer=args.child, item_lr=args.item_lr if args.child == "row_adagrad" else 0.0)
    started = time.perf_counter()
    rate = train_throughput(args.items, cfg, args.steps, torch.device("cpu"), rng)
    print(json.dumps({"optimizer": args.child, "transitions_per_s": rate, "peak_rss_mb": peak_rss_mb(),
                      "seconds": time.perf_counter() - started}))


def item_optimizers(args: argparse.Namespace) -> None:
    """Each item optimizer in its own process: transitions/s and that process's peak RSS."""
    table_mb = args.items * ModelConfig().item_dim * 4 / 2**20
    print(f"\n## item optimizers: {args.items:,} items (item table {table_mb:,.0f} MB), default model, "
          f"batch 256, {TrainConfig().candidates:,} sampled candidates, {args.steps} timed steps, {args.threads} CPU threads")
    print(f"{'item_optimizer':>14} {'transitions/s':>14} {'peak RSS MB':>12} {'wall s':>8}")
    for name in args.item_optimizers.split(","):
        if name not in ITEM_OPTIMIZERS:
            raise SystemExit(f"bench_train: unknown item optimizer {name!r} (one of {', '.join(ITEM_OPTIMIZERS)})")
        cmd = [sys.executable, __file__, "--child", name, "--items", str(args.items), "--steps", str(args.steps),
               "--threads", str(args.threads), "--item-lr", str(args.item_lr)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"{name:>14} failed (exit {done.returncode}): {tail}")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:>14} {row['transitions_per_s']:>14,.0f} {row['peak_rss_mb']:>12,.0f} {row['seconds']:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per configuration")
    parser.add_argument("--repeats", type=int, default=50, help="timed scoring calls per configuration")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--item-optimizers", default=",".join(ITEM_OPTIMIZERS),
                        help="train.item_optimizer values measured in their own processes (default: %(default)s)")
    parser.add_argument("--item-lr", type=float, default=0.05, help="row_adagrad's item_lr (default: %(default)s)")
    parser.add_argument("--only-optimizers", action="store_true",
                        help="only the per-optimizer child runs (for catalogues too big for the in-process sections)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.child:
        optimizer_child(args)
        return
    if args.only_optimizers:
        item_optimizers(args)
        return
    rng = np.random.default_rng(0)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"# DQN-LSTM benchmark: {args.items:,} items, hidden 128, batch 256, N=10, {args.threads} CPU threads")
    base = TrainConfig(batch_size=256)
    print("\n## training throughput (Double DQN + SQN update)")
    print(f"{'device':>6} {'candidates':>12} {'transitions/s':>14}")
    results = {}
    for device in devices:
        for candidates in (base.candidates, 0):
            rate = train_throughput(args.items, dataclasses.replace(base, candidates=candidates), args.steps, device, rng)
            results[(device.type, candidates)] = rate
            label = f"{candidates:,}" if candidates else "all items"
            print(f"{device.type:>6} {label:>12} {rate:>14,.0f}")
        sampled, full = results[(device.type, base.candidates)], results[(device.type, 0)]
        print(f"{device.type:>6} {'speed-up':>12} {sampled / full:>13.1f}x  (sampled vs all items)")

    print("\n## inference: score all items (ms)")
    print(f"{'device':>6} {'head':>4} {'users':>6} {'p50':>8} {'p95':>8} {'p99':>8}")
    for device in devices:
        model = DQNLSTM(args.items, 5000, ModelConfig(), device=device)
        for head in ("q", "ce"):
            model.score_with = head
            for users in (1, 256):
                states = random_states(users, args.items, 5000, 10, rng)
                t = latency_ms(model, states, args.repeats if users == 1 else max(5, args.repeats // 5))
                p50, p95, p99 = np.percentile(t, [50, 95, 99])
                print(f"{device.type:>6} {head:>4} {users:>6} {p50:>8.2f} {p95:>8.2f} {p99:>8.2f}")
    print(f"\npeak RSS {peak_rss_mb():.0f} MB")
    item_optimizers(args)


if __name__ == "__main__":
    main()
