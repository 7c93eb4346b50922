"""Benchmark: `drlrec featurize` (split, vocab, profiles, step features, transitions, .npy writes) at 1M and 10M events.

Events come from drlrec's calibrated generator (`drlrec.data.synth.generate`) when it is importable, else from
a simple numpy generator of sorted, typed events; the output says which. Each size is featurized in a fresh
child process, so the peak RSS printed (getrusage RUSAGE_CHILDREN after the child exits) is that run's own.
Throughput counts input events per second of the whole stage (read Parquet -> write every artifact).

    python bench/bench_featurize.py                   # 1M and 10M events
    python bench/bench_featurize.py --sizes 1000000   # one size
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
from drlrec.config import Params
from drlrec.stages import featurize_stage
import dataclasses
events, out, seq_len = sys.argv[1], sys.argv[2], int(sys.argv[3])
params = Params()
params = dataclasses.replace(params, base=dataclasses.replace(params.base, progress=False),
                             featurize=dataclasses.replace(params.featurize, seq_len=seq_len))
t0 = time.perf_counter()
report = featurize_stage(params, events_path=events, out_dir=out)
seconds = time.perf_counter() - t0
# VmHWM: this process's own peak RSS (ru_maxrss would also count the parent's RSS at fork time)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"events": report["events"], "seconds": seconds, "peak_rss_mb": hwm / 1024}))
"""


def make_events(n_events: int, path: Path, seed: int) -> str:
    """Write about `n_events` sorted, typed events to `path`; return the generator's name."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from drlrec.schema import EVENTS_SCHEMA

    try:
        from drlrec.config import SynthConfig
        from drlrec.data.synth import generate
    except ImportError:
        generate = None
    if generate is not None:
        cfg = SynthConfig(users=max(1, int(n_events / SynthConfig().events_mean * 1.05)))
        table = generate(cfg, seed=seed, progress=False).slice(0, n_events)
        source = f"drlrec.data.synth.generate ({cfg.users:,} users, truncated to {table.num_rows:,} events)"
    else:
        rng = np.random.default_rng(seed)
        user = np.sort(rng.integers(0, max(1, n_events // 100), n_events))
        ts = 1511539200 + rng.integers(0, 9 * 86400, n_events)
        order = np.lexsort((ts, user))
        item = rng.zipf(1.1, n_events) % 1_000_000
        table = pa.table(
            {
                "user_id": user[order],
                "item_id": item,
                "category_id": item % 5000,
                "behavior": rng.choice(4, n_events, p=[0.896, 0.055, 0.029, 0.020]).astype(np.int8),
                "timestamp": ts[order],
            },
            schema=EVENTS_SCHEMA,
        )
        source = "numpy fallback generator (uniform times, Zipf items)"
    pq.write_table(table, path)
    return source


def run(n_events: int, seq_len: int, folder: Path, seed: int) -> dict:
    events = folder / f"events-{n_events}.parquet"
    t0 = time.perf_counter()
    source = make_events(n_events, events, seed)
    generate_seconds = time.perf_counter() - t0
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(events), str(folder / f"features-{n_events}"), str(seq_len)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"featurize failed at {n_events:,} events:\n{proc.stderr}")
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    out_mb = sum(p.stat().st_size for p in (folder / f"features-{n_events}").rglob("*") if p.is_file()) / 2**20
    return {
        "events": measured["events"],
        "seq_len": seq_len,
        "source": source,
        "generate_s": round(generate_seconds, 1),
        "featurize_s": round(measured["seconds"], 2),
        "events_per_s": round(measured["events"] / measured["seconds"]),
        "peak_rss_mb": round(measured["peak_rss_mb"]),
        "output_mb": round(out_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="events per run"
    )
    parser.add_argument("--seq-len", type=int, default=10, help="featurize.seq_len (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep the outputs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-featurize-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        # ascending sizes: each run's peak is then a new maximum of RUSAGE_CHILDREN
        for n in sorted(args.sizes):
            row = run(n, args.seq_len, folder, args.seed)
            print(
                f"{row['events']:>11,} events  seq_len {row['seq_len']}  featurize {row['featurize_s']:>7.2f}s  "
                f"{row['events_per_s']:>9,} events/s  peak RSS {row['peak_rss_mb']} MB  "
                f"output {row['output_mb']} MB  [{row['source']}]",
                flush=True,
            )
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
