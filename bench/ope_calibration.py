"""Are the OPE confidence intervals the right width? The spread of the estimates over many seeds against
what the user bootstrap says about one seed.

The coverage check (bench/ope_check.py) counts how often a CI holds the truth over 20 seeds, a coarse
test: 18/20 against 19/20 cannot tell a 95% interval from a 90% one. This checks the width directly.
For each of --seeds seeds it logs --sessions sessions of the served DQN-LSTM with epsilon exploration
(the same logging code as ope_check: drlrec.serving.exploration through `log_sessions`) and computes:

  - the logging policy's observed CTR per impression, and the close challenger's (the model's greedy
    top-k) slot-weighted DR estimate of its CTR (drlrec.ope, the logs' per-slot mean reward as the
    direct method);
  - for each, the standard deviation of its user bootstrap (--bootstrap resamples of the start states'
    users, as `drlrec ope` and ope_check resample).

If the bootstrap is right, the standard deviation of the estimates across seeds equals the mean bootstrap
standard deviation (ratio 1; an sd from S seeds has a relative standard error of about 1/sqrt(2(S-1))).
A ratio well above 1 means the sessions share more than their users, and the CIs are too narrow.
It also splits each seed's users in two by user id parity: independent users give uncorrelated halves
across seeds (correlation 0 within about 1/sqrt(S)).

Run: python bench/ope_calibration.py [--seeds 100] [--sessions 2000] [--epsilon 0.05]
     (after `make run`: needs artifacts/features, artifacts/model/model.pt and artifacts/simulator)
Prints one line per seed and the summary; writes --out (default artifacts/ope/ope_calibration.json,
untracked). About 16 s per seed on one core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def per_user_sums(log: np.ndarray) -> dict[str, np.ndarray]:
    """Per user of a logged seed (ope_check.log_sessions impression rows): clicks, impressions, and the
    sum of the close challenger's slot DR terms q + w (r - q)."""
    from drlrec.ope import slot_mean_reward

    user = log[:, 10].astype(np.int64)
    click = log[:, 2]
    q = slot_mean_reward(log[:, 1].astype(np.int64), click)
    term = q + log[:, 5] / log[:, 4] * (click - q)
    users, inverse = np.unique(user, return_inverse=True)
    return {"users": users, "click": np.bincount(inverse, weights=click), "impressions": np.bincount(inverse).astype(np.float64),
            "dr": np.bincount(inverse, weights=term)}


def bootstrap_sd(numerator: np.ndarray, denominator: np.ndarray, n_boot: int, rng: np.random.Generator) -> float:
    """Standard deviation of sum(numerator) / sum(denominator) over user resamples."""
    draws = rng.integers(0, len(numerator), size=(n_boot, len(numerator)))
    return float(np.std(numerator[draws].sum(axis=1) / denominator[draws].sum(axis=1)))


def summarize(seeds: list[dict[str, np.ndarray]], n_boot: int, seed: int = 0) -> dict:
    """Across-seed sd against the mean bootstrap sd, for the observed CTR and the close challenger's DR."""
    rng = np.random.default_rng(seed)
    out: dict = {"seeds": len(seeds)}
    for name in ("click", "dr"):
        values = np.array([s[name].sum() / s["impressions"].sum() for s in seeds])
        boot = np.array([bootstrap_sd(s[name], s["impressions"], n_boot, rng) for s in seeds])
        across = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        out[name] = {"mean": float(values.mean()), "sd_across_seeds": across, "mean_bootstrap_sd": float(boot.mean()),
                     "ratio": across / float(boot.mean())}
    halves = np.array([[s["click"][mask].sum() / s["impressions"][mask].sum() for mask in (s["users"] % 2 == 0, s["users"] % 2 == 1)]
                       for s in seeds])
    out["split_half_correlation"] = float(np.corrcoef(halves[:, 0], halves[:, 1])[0, 1]) if len(seeds) > 2 else float("nan")
    out["relative_se_of_sd"] = float(1 / np.sqrt(2 * max(len(seeds) - 1, 1)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--seeds", type=int, default=100, help="logging seeds (the sd across them is the reference)")
    parser.add_argument("--sessions", type=int, default=2000, help="logged sessions per seed")
    parser.add_argument("--epsilon", type=float, default=0.05, help="epsilon of the logging policy's exploration")
    parser.add_argument("--top-m", type=int, default=30)
    parser.add_argument("--bootstrap", type=int, default=300, help="user resamples per seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default=None, help="output stem (default <paths.artifacts>/ope/ope_calibration)")
    args = parser.parse_args(argv)
    if args.seeds < 3 or args.sessions < 1 or args.bootstrap < 1:
        print("ope_calibration: error: need --seeds >= 3, --sessions >= 1 and --bootstrap >= 1", file=sys.stderr)
        return 2

    from ope_check import load_setup, log_sessions

    from drlrec.errors import DrlrecError

    cfg = SimpleNamespace(mode="epsilon", epsilon=args.epsilon, top_m=args.top_m, temperature=1.0, mc_samples=2000)
    try:
        params, model, _, env, k = load_setup(args.params, cfg, threads=args.threads)
    except DrlrecError as exc:
        print(f"ope_calibration: error: {exc}", file=sys.stderr)
        return 2
    stem = Path(args.out) if args.out else Path(params.paths.artifacts) / "ope" / "ope_calibration"
    stem.parent.mkdir(parents=True, exist_ok=True)
    from drlrec.atomic import write_json

    seeds: list[dict[str, np.ndarray]] = []
    started = time.perf_counter()
    for seed in range(args.seeds):
        log, _, _ = log_sessions(env, model, k, args.top_m, cfg, args.sessions, seed)
        seeds.append(per_user_sums(log))
        s = seeds[-1]
        print(f"seed {seed}: observed CTR {s['click'].sum() / s['impressions'].sum():.5f}, close slot DR "
              f"{s['dr'].sum() / s['impressions'].sum():.5f}, {len(s['users'])} users ({time.perf_counter() - started:.0f}s)",
              file=sys.stderr, flush=True)
    summary = summarize(seeds, args.bootstrap)
    lines = [f"OPE CI calibration: {summary['seeds']} seeds x {args.sessions:,} logged sessions, epsilon {args.epsilon}, "
             f"{args.bootstrap} user resamples per seed (an sd from {summary['seeds']} seeds is within about "
             f"{100 * summary['relative_se_of_sd']:.0f}% of the true one)"]
    for name, label in (("click", "logging policy's observed CTR"), ("dr", "close challenger, slot DR CTR")):
        r = summary[name]
        lines.append(f"  {label}: mean {r['mean']:.5f}, sd across seeds {r['sd_across_seeds']:.5f}, mean user-bootstrap sd "
                     f"{r['mean_bootstrap_sd']:.5f}, ratio {r['ratio']:.2f}")
    lines.append(f"  users split by id parity: correlation of the halves' CTR across seeds {summary['split_half_correlation']:+.3f}")
    print("\n".join(lines))
    write_json(stem.with_suffix(".json"), {"args": vars(args), "summary": summary, "wall_seconds": time.perf_counter() - started})
    return 0


if __name__ == "__main__":
    sys.exit(main())
