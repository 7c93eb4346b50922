"""Benchmark: streaming ingest vs pandas.read_csv on generated Taobao-like logs of 1M and 10M rows.

Prints rows/s and peak RSS for `drlrec ingest` (parse + validate + sort + dedupe + Parquet) and for the
baseline `pandas.read_csv` (default engine, parse only) on the same file, and their ratio. Each
measurement runs in a fresh child process so that its peak RSS is its own.

Two row orders per size:
  generated  -- as `drlrec synth` writes it: sorted by user then time (the one-pass path)
  taobao     -- users in lexicographic string order, as in the original UserBehavior.csv, which forces
                the on-disk range partition + per-bucket sort path

    python bench/bench_ingest.py                  # 1M and 10M rows
    python bench/bench_ingest.py --sizes 1000000  # one size
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
kind, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if kind == "pandas":
    import pandas as pd
    rows = len(pd.read_csv(path, header=None))
else:
    from drlrec.config import IngestConfig
    from drlrec.data.ingest import ingest_file
    r = ingest_file(path, out + "/events.parquet", out + "/quarantine.parquet", out + "/report.json", IngestConfig())
    rows = r.rows_read
seconds = time.perf_counter() - t0
# VmHWM: this process's own peak RSS (ru_maxrss would also count the parent's RSS at fork time,
# and the parent holds the generated rows)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": hwm / 1024}))
"""


def measure(kind: str, path: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed on {path}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_files(rows: int, folder: Path, seed: int) -> dict[str, Path]:
    """Generate about `rows` events with drlrec's calibrated generator; write both row orders."""
    import dataclasses

    import numpy as np
    import pyarrow as pa

    from drlrec.config import SynthConfig
    from drlrec.data import synth

    cfg = SynthConfig()
    # mean events per user is about cfg.events_mean; overshoot slightly, then cut to exactly `rows`
    users = int(rows / cfg.events_mean * 1.05) + 10
    table = synth.generate(dataclasses.replace(cfg, users=users), seed=seed, progress=False)
    table = table.slice(0, min(rows, table.num_rows))
    generated = folder / f"generated_{rows}.csv"
    synth.write_csv(table, generated)
    user = table.column("user_id").to_numpy()
    unique_users = np.unique(user)
    lexicographic_rank = np.empty(len(unique_users), dtype=np.int64)
    lexicographic_rank[np.argsort(unique_users.astype(str))] = np.arange(len(unique_users))
    order = np.argsort(lexicographic_rank[np.searchsorted(unique_users, user)], kind="stable")
    taobao = folder / f"taobao_order_{rows}.csv"
    synth.write_csv(table.take(pa.array(order)), taobao)
    return {"generated": generated, "taobao": taobao}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="rows per file")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the files (default: a temp dir)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="drlrec-bench-ingest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"# ingest benchmark on {os.cpu_count()} cores; files in {workdir}")
    header = f"{'rows':>11} {'order':>10} {'MB':>7} | {'ingest rows/s':>14} {'peak MB':>8} | {'pandas rows/s':>14} {'peak MB':>8} | {'speed-up':>8}"
    print(header)
    print("-" * len(header))
    results = []
    for rows in args.sizes:
        t0 = time.perf_counter()
        files = make_files(rows, workdir, args.seed)
        print(f"# generated {rows:,} rows in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        for order, path in files.items():
            out = workdir / f"out_{order}_{rows}"
            ours = measure("ingest", path, out)
            base = measure("pandas", path, out)
            ours_rate = ours["rows"] / ours["seconds"]
            base_rate = base["rows"] / base["seconds"]
            mb = path.stat().st_size / 2**20
            print(
                f"{ours['rows']:>11,} {order:>10} {mb:>7.0f} | {ours_rate:>14,.0f} {ours['peak_rss_mb']:>8.0f} | "
                f"{base_rate:>14,.0f} {base['peak_rss_mb']:>8.0f} | {ours_rate / base_rate:>7.1f}x"
            )
            results.append({"rows": ours["rows"], "order": order, "ingest": ours, "pandas": base})
            path.unlink()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
