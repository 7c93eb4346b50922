"""The whole pipeline on a Taobao-size generated log, measured stage by stage (`make full-scale`).

    python bench/full_scale.py                       # 987,994 users (~100M rows), the real file's row order
    python bench/full_scale.py --users 20000         # a smaller run of the same script
    python bench/full_scale.py --reuse               # keep the generated file and earlier stage outputs

Steps, each a `drlrec <stage>` child process (the stage functions `dvc repro` runs), on a params overlay
that points every path into --work and fixes the budgets:

    synth (--scale full --order original, skipped when the file exists) -> ingest -> validate -> featurize
    -> train (--train-steps, --item-optimizer) -> evaluate (--eval-events per target) -> register (a fresh MLflow store)

Printed per stage: wall time, the peak RSS of that stage's own process (wait4's ru_maxrss of the child),
rows/s where the stage reads rows, and the size of what it wrote. The table and the raw figures go to
<work>/full_scale.json. Before anything runs, the free disk under --work is checked against an estimate
that scales with --users; too little is a one-line error and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FULL_USERS = 987_994
#: disk each stage writes per generated user (about 101 events), measured on the 987,994-user run in the
#: original row order and rounded up: the CSV (3,504 MB), events.parquet + quarantine (623 MB), the
#: features at N = 10 (17,982 MB); train, evaluate and register: room for the model's copies at 4.2M items
#: (model, checkpoint, best weights, bundle, MLflow artifacts)
STAGE_BYTES_PER_USER = {"synth": 3_800, "ingest": 700, "validate": 0, "featurize": 19_500, "train": 4_000,
                        "evaluate": 100, "register": 4_000}
STAGES = ("synth", "ingest", "validate", "featurize", "train", "evaluate", "register")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=FULL_USERS, help="generated users (default: %(default)s)")
    parser.add_argument("--order", choices=("original", "user", "time"), default="original",
                        help="row order of the generated file (default: %(default)s, as the real file)")
    parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / "full_scale",
                        help="folder for the file and every output (default: %(default)s)")
    parser.add_argument("--train-steps", type=int, default=200, help="DQN-LSTM updates (default: %(default)s)")
    parser.add_argument("--eval-events", type=int, default=50_000,
                        help="test events ranked per target (default: %(default)s)")
    parser.add_argument("--item-block", type=int, default=8_192,
                        help="evaluate.item_block: items scored at once (default: %(default)s; 512 states x 8,192 items "
                             "ranked 512 events over 1M items 1.3x faster than 32,768 and 2.8x faster than 262,144)")
    parser.add_argument("--valid-events", type=int, default=1_000,
                        help="validation events behind train's head choice (default: %(default)s)")
    parser.add_argument("--item-optimizer", choices=("adam", "sparse_adam", "row_adagrad"), default="row_adagrad",
                        help="train.item_optimizer (default: %(default)s: one accumulator per item row; at 4,162,024 "
                             "items bench/bench_train.py measured dense adam at 7.8 GB and ~20x slower)")
    parser.add_argument("--item-lr", type=float, default=0.05, help="train.item_lr for row_adagrad (default: %(default)s)")
    parser.add_argument("--reuse", action="store_true", help="keep the generated file (synth is skipped if present)")
    parser.add_argument("--only", default=",".join(STAGES), help="comma-separated stages to run (default: all)")
    return parser.parse_args(argv)


def needed_bytes(users: int, stages: list[str]) -> int:
    """Free disk the stages about to run need (the outputs they replace are not counted as free)."""
    return int(users * sum(STAGE_BYTES_PER_USER[s] for s in stages))


def write_overlay(work: Path, args: argparse.Namespace) -> Path:
    """params overlay: every path under `work`, the fixed budgets of the measured run."""
    art = work / "artifacts"
    paths = {
        "raw_data": work / "UserBehavior.csv", "artifacts": art, "events": art / "events.parquet",
        "quarantine": art / "quarantine.parquet", "ingest_report": art / "ingest_report.json",
        "validation": art / "validation.json", "features": art / "features", "model": art / "model",
        "train_metrics": art / "train_metrics.json", "checkpoints": art / "checkpoints",
        "metrics": art / "metrics.json", "reports": art / "reports", "compare": art / "compare.json",
        "simulator": art / "simulator", "bundle": art / "bundle", "registry": art / "registry.json",
        "monitoring": art / "monitoring", "interactions": art / "interactions.csv",
        "exposures": art / "exposures.csv", "ab_report": art / "ab_report.json",
        "partitions": art / "partitions", "tune": art / "tune",
    }
    lines = [f"extends: {ROOT / 'params.yaml'}", "base:", "  progress: false", "paths:"]
    lines += [f"  {key}: {value}" for key, value in paths.items()]
    lines += [
        "train:",
        f"  steps: {args.train_steps}",
        f"  eval_every: {max(args.train_steps, 1)}",
        f"  checkpoint_every: {max(args.train_steps, 1)}",
        f"  eval_max_events: {args.valid_events}",
        f"  item_optimizer: {args.item_optimizer}",
        f"  item_lr: {args.item_lr if args.item_optimizer == 'row_adagrad' else 0.0}",
        "evaluate:",
        f"  max_events: {args.eval_events}",
        f"  item_block: {args.item_block}",
        "register:",
        "  reevaluate_champion: false",
    ]
    path = work / "params.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def command(stage: str, params: Path, args: argparse.Namespace) -> list[str]:
    drlrec = [str(Path(sys.executable).parent / "drlrec")]  # the venv's console script
    if stage == "synth":
        return [*drlrec, "synth", "--params", str(params), "--scale", "full", "--users", str(args.users),
                "--order", args.order, "--if-missing"]
    return [*drlrec, stage, "--params", str(params)]


def run_stage(cmd: list[str], env: dict[str, str], log: Path) -> tuple[int, float, int]:
    """Run one stage as a child process: (exit code, seconds, peak RSS in bytes of that child)."""
    started = time.perf_counter()
    with open(log, "wb") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, time.perf_counter() - started, int(usage.ru_maxrss) * 1024


def size_of(*paths: Path) -> int:
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total


def stage_rows(stage: str, art: Path, log: Path) -> int | None:
    """Rows the stage wrote (synth) or read, from its log and the reports the stages write."""
    try:
        if stage == "synth":
            match = re.search(r"wrote ([\d,]+) events", log.read_text(errors="replace"))
            return int(match.group(1).replace(",", "")) if match else None
        if stage == "ingest":
            report = json.loads((art / "ingest_report.json").read_text())
            return int(report["rows_read"])
        if stage in ("validate", "featurize"):
            return int(json.loads((art / "ingest_report.json").read_text())["rows_kept"])
    except (OSError, KeyError, ValueError):
        return None
    return None


def stage_rates(stage: str, log: Path) -> dict[str, float]:
    """What a stage prints besides rows/s: train's update-loop transitions/s, evaluate's ranked events and seconds."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    if stage == "train":
        match = re.search(r"\(([\d,]+) transitions/s in the update loop\)", text)
        return {"transitions_per_s": float(match.group(1).replace(",", ""))} if match else {}
    if stage == "evaluate":
        match = re.search(r"\(([\d,]+) events, ([\d.]+)s\)", text)
        if match:  # the seconds cover both targets (next item, next purchase)
            return {"next_item_events": int(match.group(1).replace(",", "")), "ranking_seconds": float(match.group(2))}
    return {}


def outputs(stage: str, work: Path) -> list[Path]:
    art = work / "artifacts"
    return {
        "synth": [work / "UserBehavior.csv"],
        "ingest": [art / "events.parquet", art / "quarantine.parquet", art / "ingest_report.json"],
        "validate": [art / "validation.json"],
        "featurize": [art / "features"],
        "train": [art / "model", art / "train_metrics.json"],
        "evaluate": [art / "metrics.json", art / "reports"],
        "register": [art / "registry.json", art / "bundle", work / "mlflow.db", work / "mlartifacts"],
    }[stage]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stages = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        print(f"full_scale: unknown stage(s) {', '.join(unknown)}; expected some of {', '.join(STAGES)}", file=sys.stderr)
        return 2
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    need, free = needed_bytes(args.users, stages), shutil.disk_usage(work).free
    if free < need:
        print(f"full_scale: {free / 1e9:.1f} GB free under {work}, the run needs about {need / 1e9:.1f} GB "
              f"({', '.join(stages)} for {args.users:,} users); free some space or pass --work", file=sys.stderr)
        return 2
    if not args.reuse and (work / "artifacts").exists():
        shutil.rmtree(work / "artifacts")
    params = write_overlay(work, args)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "PYTHONUNBUFFERED": "1"}
    print(f"full_scale: {args.users:,} users, {args.order} row order, {args.train_steps} train steps, "
          f"{args.eval_events:,} test events per target; work {work} ({free / 1e9:.0f} GB free)", flush=True)
    rows = []
    for stage in stages:
        log = work / f"{stage}.log"
        code, seconds, peak = run_stage(command(stage, params, args), env, log)
        n_rows = stage_rows(stage, work / "artifacts", log)
        row = {"stage": stage, "exit": code, "seconds": round(seconds, 1), "peak_rss_gb": round(peak / 2**30, 2),
               "rows": n_rows, "rows_per_s": round(n_rows / seconds) if n_rows and seconds > 0 else None,
               "output_mb": round(size_of(*outputs(stage, work)) / 2**20, 1), "log": str(log)}
        extra = stage_rates(stage, log)
        row.update(extra)
        rows.append(row)
        rate = f"{row['rows_per_s']:>12,}" if row["rows_per_s"] else f"{'-':>12}"
        note = "".join(f"  {key.replace('_per_s', '/s')} {value:,.0f}" for key, value in extra.items())
        print(f"{stage:10s} {seconds:9.1f} s  peak RSS {row['peak_rss_gb']:6.2f} GB  rows/s {rate}  "
              f"output {row['output_mb']:10,.1f} MB  exit {code}{note}", flush=True)
        if code != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            print(f"full_scale: {stage} failed (exit {code}): {tail[0]} (log: {log})", file=sys.stderr)
            break
    report = {"users": args.users, "order": args.order, "train_steps": args.train_steps,
              "eval_events": args.eval_events, "stages": rows}
    tmp = work / "full_scale.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(work / "full_scale.json")
    return 0 if rows and all(r["exit"] == 0 for r in rows) and len(rows) == len(stages) else 1


if __name__ == "__main__":
    sys.exit(main())
