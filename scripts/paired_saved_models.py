"""Saved DQN-LSTM models against each other and the no-learning baselines, on the same test events.

    python scripts/paired_saved_models.py --model adam=artifacts/model/model.pt --model rw=/tmp/rw/model.pt

The first --model is the reference. Each model is scored with the protocol of `drlrec evaluate` (full
ranking over the item vocabulary, the test period, next-item and next-purchase targets, N = the features'
seq_len, each model's served head); popularity and recent_items are fitted with their params budget.
Prints each row's test NDCG@10 with its user-level 95% CI and every row's paired difference from the
reference (user-level paired bootstrap, params evaluate:; "*" when the CI excludes 0). Reads the test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH of a saved DQN-LSTM model.pt")
    parser.add_argument("--features", default="artifacts/features", help="featurize output folder")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    from drlrec.config import load_params
    from drlrec.evaluate import _cell, _diff_cell, paired_comparison
    from drlrec.model_factory import build_model
    from drlrec.models.dqn_lstm import DQNLSTM
    from drlrec.stages.common import EvalInputs, evaluate_one

    params = load_params(args.params)
    inputs = EvalInputs(Path(args.features))
    evaluations = {}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"--model wants NAME=PATH, got {spec!r}")
        evaluations[name] = evaluate_one(params, DQNLSTM.load(path), name, inputs)
    for name in ("popularity", "recent_items"):
        model = build_model(name, inputs.data.n_items, inputs.data.n_categories, params).fit(inputs.data)
        evaluations[name] = evaluate_one(params, model, name, inputs)
    cfg = params.evaluate
    reference = next(iter(evaluations))
    print(f"test, full ranking, N = {inputs.test.seq_len}; paired Δ vs {reference} (user-level bootstrap, "
          f"{cfg.bootstrap} resamples, seed {params.base.seed})")
    print("| model | next-item NDCG@10 | next-purchase NDCG@10 | Δ next item | Δ next purchase |")
    print("|---|---|---|---|---|")
    for name, ev in evaluations.items():
        cells = [_cell(ev.groups["next_item"]["ndcg_at_10"]), _cell(ev.groups["next_purchase"]["ndcg_at_10"])]
        if name == reference:
            cells += ["reference", "reference"]
        else:
            diff = paired_comparison(ev, evaluations[reference], cfg.bootstrap, cfg.ci, params.base.seed)
            cells += [_diff_cell(diff["next_item/ndcg_at_10"]), _diff_cell(diff["next_purchase/ndcg_at_10"])]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
