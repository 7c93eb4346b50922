"""State building for serving and simulation: the one state builder (drlrec.features.states.build_states)
on raw histories, one request at a time against a batch of requests in one call, in one process.

Synthetic vocabularies and train statistics (--items items, --categories categories), synthetic users of
--history raw events each (Zipf-popular items and categories, sorted times); each user's state is built
with `serving.recommender.states_of_histories`, as the service does:

  one-by-one   one call per user (a lone request)
  batched      one call for --batch users (what `ServingModel.recommend_batch` does for the requests that
               arrive while the model is busy)

Prints p50/p95/p99 per user (batched: the batch's time / --batch) and events/s, and the ratio of the two
paths' mean time per user. Both paths give the same states (checked before timing). Latency is wall-clock
(time.perf_counter); the machine may be shared, so compare rows of one run.

Run: python bench/bench_states.py [--users 2000] [--history 50] [--batch 32]
"""

from __future__ import annotations

import argparse
import sys
import time
import types

import numpy as np


def make_bundle(items: int, categories: int, seq_len: int, seed: int):
    """What states_of_histories reads off a bundle: vocabularies, train statistics, featurize settings."""
    from drlrec.config import FeaturizeConfig
    from drlrec.features.steps import train_stats_from_counts
    from drlrec.features.vocab import Vocab

    rng = np.random.default_rng(seed)
    item_vocab = Vocab(np.arange(items, dtype=np.int64))
    category_vocab = Vocab(np.arange(categories, dtype=np.int64))
    cfg = FeaturizeConfig()
    stats = train_stats_from_counts(
        rng.integers(0, 50, (item_vocab.size, 4)), rng.integers(0, 50, (category_vocab.size, 4)), cfg
    )
    return types.SimpleNamespace(
        seq_len=seq_len, featurize=cfg, item_vocab=item_vocab, category_vocab=category_vocab,
        globals=types.SimpleNamespace(stats=stats),
    )


def make_histories(users: int, length: int, items: int, categories: int, seed: int):
    from drlrec.serving.state import History

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(users):
        item = rng.zipf(1.3, size=length) % items
        category = rng.zipf(1.5, size=length) % categories
        behavior = rng.choice(4, size=length, p=[0.9, 0.05, 0.03, 0.02])
        when = np.sort(rng.integers(1_511_539_200, 1_512_316_800, size=length))
        out.append(History(item.astype(np.int64), category.astype(np.int64), behavior.astype(np.int64),
                           when.astype(np.int64), int(length + rng.integers(0, 200))))
    return out


def percentiles(per_user_ms: list[float]) -> str:
    p50, p95, p99 = np.percentile(per_user_ms, [50, 95, 99])
    return f"{p50:8.3f} {p95:8.3f} {p99:8.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000, help="users timed per path (default 2000)")
    parser.add_argument("--history", type=int, default=50, help="raw events per user (serve.history_events; default 50)")
    parser.add_argument("--batch", type=int, default=32, help="users per batched call (default 32)")
    parser.add_argument("--seq-len", type=int, default=10, help="featurize.seq_len (default 10)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--categories", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("users", "history", "batch", "seq_len", "items", "categories"):
        if getattr(args, name) < 1:
            print(f"bench_states: error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2

    from drlrec.serving.recommender import states_of_histories

    bundle = make_bundle(args.items, args.categories, args.seq_len, args.seed)
    histories = make_histories(args.users, args.history, args.items, args.categories, args.seed + 1)
    # the two paths agree (bit for bit) before anything is timed
    one = [states_of_histories([h], bundle) for h in histories[: args.batch]]
    together = states_of_histories(histories[: args.batch], bundle)
    for field, parts, whole in zip(together._fields, zip(*one, strict=True), together, strict=True):
        if not np.array_equal(np.concatenate(parts), whole):
            print(f"bench_states: error: batched and one-by-one states differ in {field}", file=sys.stderr)
            return 1
    for h in histories[: args.warmup]:
        states_of_histories([h], bundle)

    single = []
    for h in histories:
        t = time.perf_counter()
        states_of_histories([h], bundle)
        single.append((time.perf_counter() - t) * 1e3)
    batched = []
    for lo in range(0, len(histories), args.batch):
        part = histories[lo : lo + args.batch]
        t = time.perf_counter()
        states_of_histories(part, bundle)
        batched.extend([(time.perf_counter() - t) * 1e3 / len(part)] * len(part))

    events = args.users * args.history
    print(f"state building: {args.users:,} users x {args.history} raw events, N = {args.seq_len}, "
          f"{args.items:,} items; ms per user")
    print(f"{'path':<22} {'p50':>8} {'p95':>8} {'p99':>8} {'events/s':>12}")
    for name, times in (("one-by-one", single), (f"batched ({args.batch})", batched)):
        print(f"{name:<22} {percentiles(times)} {events / (sum(times) / 1e3):12,.0f}")
    print(f"batched / one-by-one mean time per user: {np.mean(batched) / np.mean(single):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
