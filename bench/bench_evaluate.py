"""Benchmark: full-ranking evaluation of 10k test events over 100k items (prints figures, asserts nothing).

The protocol's inner loop, `drlrec.evaluate.rank_events` (score every item for each state, find the
target's rank with ties broken by item index) then `ranking_metrics` (HR/NDCG@k, MRR), for:

- the DQN-LSTM (hidden 128, the paper's network; Q-head and supervised head),
- the popularity baseline (no network: the cost of ranking alone), as the in-process baseline,

plus the bootstrap CIs the reports add (1000 resamples). Target: under 10 s on CPU for the DQN-LSTM.
Each event gets its target's exact rank and, as `drlrec evaluate` makes them, its top --list-k list.
A catalogue above --item-block items is ranked block by block (exact ranks, running top-k), so memory is
[batch, item_block] scores, not [batch, items]: the Taobao catalogue (blocks of 8,192 items were the
fastest here, where 32,768 and 262,144 were 1.3x and 2.8x slower at 1M items) is

    python bench/bench_evaluate.py --events 50000 --items 4162024 --item-block 8192

Random weights put many items within the float-rounding margin of a target's score, so the ranking keeps
more near scores than a trained model's would (see drlrec.evaluate.rank_blocks): a pessimistic timing.

    python bench/bench_evaluate.py [--events 10000] [--items 100000] [--threads 2] [--item-block 262144]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from drlrec.config import ModelConfig
from drlrec.evaluate import ITEM_BLOCK, bootstrap_means, per_event_values, rank_events, ranking_metrics
from drlrec.models.base import StateBatch
from drlrec.models.dqn_lstm import DQNLSTM
from drlrec.models.popularity import Popularity


def random_states(n: int, n_items: int, n_cats: int, seq_len: int, rng: np.random.Generator) -> StateBatch:
    # Zipf-like item draws, as in a real log (the rank computation does not depend on it, the scores do)
    items = np.minimum((rng.pareto(1.2, (n, seq_len)) * 50).astype(np.int64) + 2, n_items - 1)
    return StateBatch(
        item_seq=items,
        category_seq=rng.integers(2, n_cats, (n, seq_len)),
        behavior_seq=rng.integers(1, 5, (n, seq_len)),
        step_features=rng.random((n, seq_len, 20), dtype=np.float32),
        profile=rng.random((n, 10), dtype=np.float32),
    )


def timed(label: str, fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    return seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000, help="test events to rank (default: %(default)s)")
    parser.add_argument("--items", type=int, default=100_000, help="catalogue size (default: %(default)s)")
    parser.add_argument("--categories", type=int, default=5_000, help="categories (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=10, help="state length N (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=512, help="states scored per batch (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--item-block", type=int, default=ITEM_BLOCK,
                        help="items scored at once; 0 = the whole catalogue (default: %(default)s)")
    parser.add_argument("--heads", default="q,ce", help="DQN-LSTM heads to time (default: %(default)s)")
    parser.add_argument("--list-k", type=int, default=10,
                        help="top-k list per event, as evaluate.list_k; 0 = ranks only (default: %(default)s)")
    args = parser.parse_args()
    block = dict(batch_size=args.batch, item_block=args.item_block, list_k=args.list_k)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    states = random_states(args.events, args.items, args.categories, args.seq_len, rng)
    targets = np.minimum((rng.pareto(1.2, args.events) * 50).astype(np.int64) + 2, args.items - 1)
    print(
        f"full-ranking evaluation: {args.events:,} events x {args.items:,} items, N={args.seq_len}, "
        f"batch {args.batch}, item block {args.item_block:,}, top-{args.list_k} lists, {args.threads} CPU threads, "
        f"torch {torch.__version__}", flush=True
    )

    popularity = Popularity(args.items).fit(rng.integers(2, args.items, 1_000_000))
    rank_events(popularity, states.slice(0, min(512, args.events)), targets[:512], **block)  # warm-up
    pop_s, pop_ranked = timed("popularity", lambda: rank_events(popularity, states, targets, progress=True, **block))
    rows = [("popularity (no network)", pop_s, peak_rss_mb())]
    print(f"popularity: {pop_s:.1f} s", flush=True)

    for score_with in args.heads.split(","):
        model = DQNLSTM(args.items, args.categories, ModelConfig(), device="cpu", score_with=score_with)
        rank_events(model, states.slice(0, min(512, args.events)), targets[:512], **block)  # warm-up
        seconds, ranked = timed(score_with, lambda m=model: rank_events(m, states, targets, progress=True, **block))
        rows.append((f"dqn_lstm ({'Q-head' if score_with == 'q' else 'supervised head'})", seconds, peak_rss_mb()))
        print(f"{rows[-1][0]}: {seconds:.1f} s", flush=True)
        metrics_s, _ = timed("metrics", lambda r=ranked: ranking_metrics(r.ranks, (5, 10, 20, 50)))

    names, values = per_event_values(pop_ranked.ranks, (5, 10, 20, 50))
    boot_s, _ = timed("bootstrap", lambda: bootstrap_means(values, 1000, seed=42))

    print(f"{'scorer':34s} {'seconds':>8s} {'events/s':>10s} {'x popularity':>13s} {'peak RSS MB':>12s}")
    for name, seconds, peak in rows:
        print(f"{name:34s} {seconds:8.2f} {args.events / seconds:10,.1f} {seconds / pop_s:13.2f} {peak:12,.0f}")
    print(f"HR/NDCG/MRR from the ranks: {metrics_s * 1000:.1f} ms; 1000-resample bootstrap of {len(names)} metrics: {boot_s:.2f} s")
    print(f"peak RSS {peak_rss_mb():,.0f} MB (process, after each scorer above: cumulative); "
          "target: DQN-LSTM under 10 s for 10k events x 100k items on CPU")


def peak_rss_mb() -> float:
    """This process's peak resident set so far (ru_maxrss), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
