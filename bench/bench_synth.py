"""Benchmark: the calibrated log generator (`synth.generate`) and the Taobao CSV writer (`synth.write_csv`).

For each size, a fresh child process generates the default config with `--users` users, writes the CSV
(and, with --gzip, a .csv.gz), and reports events/s for each step and its own peak RSS.

    python bench/bench_synth.py                       # 10,000 users (about 1M events)
    python bench/bench_synth.py --sizes 5000 100000   # several sizes
    python bench/bench_synth.py --users 5000 --gzip
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import dataclasses, json, resource, sys, time
from pathlib import Path
from drlrec.config import SynthConfig
from drlrec.data import synth

users, seed, folder, gz = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "1"
cfg = dataclasses.replace(SynthConfig(), users=users)
t0 = time.perf_counter()
table = synth.generate(cfg, seed=seed, progress=False)
generate_s = time.perf_counter() - t0
result = {"users": users, "events": table.num_rows, "generate_s": generate_s}
for suffix in [".csv"] + ([".csv.gz"] if gz else []):
    path = folder / f"synth_{users}{suffix}"
    t0 = time.perf_counter()
    synth.write_csv(table, path)
    result[f"write{suffix}_s"] = time.perf_counter() - t0
    result[f"write{suffix}_mb"] = path.stat().st_size / 2**20
    path.unlink()
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def measure(users: int, seed: int, folder: Path, gz: bool) -> dict:
    command = [sys.executable, "-c", CHILD, str(users), str(seed), str(folder), "1" if gz else "0"]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"generating {users:,} users failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--users", type=int, default=10_000, help="users for a single run (default: %(default)s)"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="several user counts (overrides --users)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--gzip", action="store_true", help="also time writing a .csv.gz")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where to write the files (default: a temp dir)"
    )
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="drlrec-bench-synth-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"# synth benchmark on {os.cpu_count()} cores, default SynthConfig, seed {args.seed}")
    header = (
        f"{'users':>10} {'events':>12} | {'generate ev/s':>14} {'s':>6} | {'write_csv ev/s':>14} {'s':>6} {'MB':>6}"
        + (f" | {'csv.gz ev/s':>12} {'MB':>6}" if args.gzip else "")
        + f" | {'peak MB':>8}"
    )
    print(header)
    print("-" * len(header))
    results = []
    for users in args.sizes or [args.users]:
        r = measure(users, args.seed, workdir, args.gzip)
        events = r["events"]
        line = (
            f"{users:>10,} {events:>12,} | {events / r['generate_s']:>14,.0f} {r['generate_s']:>6.2f} | "
            f"{events / r['write.csv_s']:>14,.0f} {r['write.csv_s']:>6.2f} {r['write.csv_mb']:>6.0f}"
        )
        if args.gzip:
            line += f" | {events / r['write.csv.gz_s']:>12,.0f} {r['write.csv.gz_mb']:>6.0f}"
        print(line + f" | {r['peak_rss_mb']:>8.0f}", flush=True)
        results.append(r)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
