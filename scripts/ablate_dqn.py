"""DQN-LSTM ablations on validation: each variant is params.yaml plus a few overrides, fitted with the one
fit path (`drlrec.rl.dqn.fit_dqn_lstm`) on the featurized data, scored per head on the same validation
events, next to the no-learning baselines (popularity, recent items).

    python scripts/ablate_dqn.py                      # the default variants on artifacts/features
    python scripts/ablate_dqn.py --features artifacts/head/features --steps 2000 \
        --variant "no negatives: train.q_negative_weight=0" --variant "default:"

Validation only: nothing here reads the test split. Prints a markdown table and writes it to --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_VARIANTS = (
    "served default:",
    "no SNQN negatives: train.q_negative_weight=0",
    "no cold-item simulation: train.cold_item_rate=0",
    "repeat weights start at 0: model.repeat_init=0",
    "TD gradient off the item vectors: train.td_item_grad=false",
    "pure DQN (no CE head): train.ce_weight=0",
    "pure DQN, no negatives (the paper): train.ce_weight=0 train.q_negative_weight=0",
    "gamma 0.5: train.gamma=0.5",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default="artifacts/features", help="featurize output folder")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--steps", type=int, default=None, help="train.steps for every variant (default: params)")
    parser.add_argument("--variant", action="append", default=None,
                        help='"label: key=value key=value ..." (repeatable; default: the built-in ablation set)')
    parser.add_argument("--out", default="artifacts/ablation.md", help="markdown table written here")
    args = parser.parse_args(argv)

    import torch

    from drlrec.atomic import write_text
    from drlrec.config import load_params
    from drlrec.evaluate import validation_evaluator
    from drlrec.model_factory import build_model
    from drlrec.models.base import TrainingData
    from drlrec.rl.dqn import fit_dqn_lstm

    data = TrainingData.load(args.features)
    base = load_params(args.params)
    evaluate, index = validation_evaluator(data.valid, base.train.eval_max_events, base.base.seed)
    rows = []
    for name in ("popularity", "recent_items"):
        try:
            model = build_model(name, data.n_items, data.n_categories, base).fit(data)
        except ValueError:  # recent_items not registered in this tree
            continue
        rows.append((name, "-", evaluate(model)["valid/ndcg_at_10"], float("nan"), float("nan"), 0.0, 0))
    for spec in args.variant or DEFAULT_VARIANTS:
        label, _, sets = spec.partition(":")
        overrides = sets.split() + ([f"train.steps={args.steps}"] if args.steps else [])
        params = load_params(args.params, overrides)
        torch.manual_seed(params.base.seed)
        model = build_model("dqn_lstm", data.n_items, data.n_categories, params)
        started = time.perf_counter()
        fit = fit_dqn_lstm(model, data, params.train, params.base.seed, progress=params.base.progress)
        seconds = time.perf_counter() - started
        q = fit.valid_by_head["q"]["valid/ndcg_at_10"]
        ce = fit.valid_by_head.get("ce", {}).get("valid/ndcg_at_10", float("nan"))
        rows.append((f"dqn_lstm: {label.strip()}", " ".join(sets.split()) or "(params.yaml)",
                     fit.valid_metrics["valid/ndcg_at_10"], q, ce, seconds, fit.train.best_step))
        print(f"{label.strip()}: served {fit.served_head} {rows[-1][2]:.4f} (q {q:.4f}, ce {ce:.4f}) "
              f"best step {fit.train.best_step}, {seconds:.0f}s", file=sys.stderr, flush=True)
    n = data.valid.seq_len
    lines = [
        f"Validation next-item NDCG@10 on {len(index):,} seeded validation events of {args.features} "
        f"(full ranking, N = {n}, seed {base.base.seed}).",
        "",
        "| model / variant | overrides | served head | Q-head | CE head | fit s | best step |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, sets, served, q, ce, seconds, best in rows:
        lines.append(f"| {label} | {sets} | {served:.4f} | {q:.4f} | {ce:.4f} | {seconds:.0f} | {best} |")
    table = "\n".join(lines) + "\n"
    write_text(Path(args.out), table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
