"""`drlrec compare`: every model on the same split, paired differences from a reference row, the
breakdown by target type."""

from __future__ import annotations

from pathlib import Path

from drlrec.config import Params
from drlrec.stages.common import EvalInputs, evaluate_one, fit_for_evaluation, flat_metrics, say

#: The DQN-LSTM's scoring heads: compare evaluates the one trained network once with each.
_DQN_HEADS: dict[str, str] = {"q": "Q-values", "ce": "the supervised next-item (SQN) logits"}


def _compare_rows(name: str) -> list[tuple[str, str | None]]:
    """The table rows of one model: (row name, DQN-LSTM head or None)."""
    return [(f"{name}[{head}]", head) for head in _DQN_HEADS] if name == "dqn_lstm" else [(name, None)]


def _compare_reference(params: Params, rows: list[str], valid_ndcg: dict[str, float]) -> tuple[str, str]:
    """The row paired differences are taken against, and why: evaluate.reference, or with `auto` the best
    validation NDCG@10 among the rows not starting with dqn_lstm (every row when there is none)."""
    import math

    if params.evaluate.reference != "auto":
        return params.evaluate.reference, "evaluate.reference"
    baselines = [r for r in rows if not r.startswith("dqn_lstm")] or rows
    best = max(baselines, key=lambda r: -math.inf if math.isnan(valid_ndcg[r]) else valid_ndcg[r])
    return best, "auto: the best validation NDCG@10 among the baselines"


def compare_stage(params: Params, models: list[str] | None = None, features_dir: str | Path | None = None):
    """Train every model with its budget from params, evaluate all on the same split (dqn_lstm once per
    scoring head), report each row's paired difference from a reference row and the breakdown by target
    type, write compare.json / compare.md / compare.png, and log each model as a nested MLflow run."""
    import time

    from drlrec.atomic import write_json, write_text
    from drlrec.errors import ConfigError
    from drlrec.evaluate import (
        PAIRED,
        excludes_zero,
        markdown_table,
        paired_comparison,
        paired_table,
        protocol_text,
        type_table,
        validation_evaluator,
        versus_table,
    )
    from drlrec.plots import metric_bars
    from drlrec.tracking import start_run

    names = list(models or params.evaluate.models)
    known = set(params.evaluate.models) | {"dqn_lstm", "popularity"}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    rows = [row for name in names for row, _ in _compare_rows(name)]
    if params.evaluate.reference not in ("auto", *rows):
        raise ConfigError(f"evaluate.reference: {params.evaluate.reference!r} is not a compared row; "
                          f"use auto or one of {', '.join(rows)}")
    inputs = EvalInputs(Path(features_dir or params.paths.features))
    protocol = protocol_text(params.evaluate, params.base.seed)
    valid = inputs.data.valid
    evaluate_valid, valid_index = validation_evaluator(
        valid, params.evaluate.valid_max_events or valid.num_transitions, params.base.seed
    )
    evaluations, fit_seconds, valid_ndcg, heads, served = [], {}, {}, {}, None
    with start_run("compare", tags={"stage": "compare"}) as parent:
        parent.log_params({"models": ",".join(names), "evaluate": params.evaluate.__dict__})
        for name in names:
            with start_run(f"compare-{name}", nested=True, tags={"model": name, "stage": "compare"}) as child:
                started = time.perf_counter()
                model = fit_for_evaluation(params, name, inputs, track=child.log_metrics)
                seconds = time.perf_counter() - started
                trained_head = getattr(model, "score_with", None)
                for row, head in _compare_rows(name):
                    if head is not None:
                        model.use_head(head)  # the head's own validated weights when the fit kept them
                        heads[row] = head
                    fit_seconds[row] = seconds
                    valid_ndcg[row] = evaluate_valid(model)["valid/ndcg_at_10"]
                    evaluation = evaluate_one(params, model, row, inputs)
                    prefix = f"{head}/" if head else ""
                    child.log_metrics({**{prefix + k: v for k, v in flat_metrics(evaluation).items()},
                                       f"{prefix}compare/valid_ndcg_at_10": valid_ndcg[row]})
                    evaluations.append(evaluation)
                    ni = evaluation.groups["next_item"]["ndcg_at_10"].value
                    say(f"compare: {row}: fit {seconds:.0f}s, valid NDCG@10 {valid_ndcg[row]:.4f}, "
                         f"test NDCG@10 (next item) {ni:.4f}")
                if name == "dqn_lstm":
                    # the fit leaves score_with on the head chosen on validation (a served_head attribute wins)
                    served = getattr(model, "served_head", None) or trained_head
                    model.use_head(trained_head)
                child.log_metrics({"fit_seconds": seconds})
        reference, rule = _compare_reference(params, rows, valid_ndcg)
        by_row = {ev.model: ev for ev in evaluations}
        cfg = params.evaluate
        paired = {ev.model: paired_comparison(ev, by_row[reference], cfg.bootstrap, cfg.ci, params.base.seed)
                  for ev in evaluations if ev.model != reference}
        # the served DQN-LSTM row against every baseline row (not only the reference): the goal is stated
        # against each no-learning baseline and item_knn, each with its own paired CI
        served_row = next((row for row, head in heads.items() if head == served), None)
        versus = {} if served_row is None else {
            ev.model: paired_comparison(by_row[served_row], ev, cfg.bootstrap, cfg.ci, params.base.seed)
            for ev in evaluations if not ev.model.startswith("dqn_lstm")
        }
        notes = {row: f"head {head}" + (", served" if head == served else "") for row, head in heads.items()}
        notes[reference] = ", ".join([*filter(None, [notes.get(reference)]), "reference"])
        seq_len = inputs.test.seq_len
        heads_line = (
            "DQN-LSTM rows: one trained network scored by "
            + "; ".join(f"`{row}` with {_DQN_HEADS[head]}" for row, head in heads.items())
            + f"; the served head (chosen on validation) is `{served}`.\n\n" if heads else ""
        )
        report = (
            "Full ranking over every item of the vocabulary on the test period (the protocol is written in full "
            f"under the last table). State: the last N = {seq_len} interactions. Validation NDCG@10: the same {len(valid_index):,} "
            f"validation events for every model. Δ = row minus the reference `{reference}` ({rule}) on the same test "
            f"events, 95% CI from a paired user-level bootstrap; * = the CI excludes 0 (the row beats, or loses "
            f"to, the reference).\n\n" + heads_line
            + paired_table(evaluations, reference, paired, valid_ndcg, notes, fit_seconds)
            + (f"\n## The served DQN-LSTM (`{served_row}`) against every baseline\n\nThe served row minus each "
               "baseline on the same test events, paired user-level 95% CI; * = the CI excludes 0.\n\n"
               + versus_table(served_row, versus) if versus else "")
            + "\n## Next-item targets by type\n\n" + type_table(evaluations, "next_item")
            + "\n## Next-purchase targets by type\n\n" + type_table(evaluations, "next_purchase")
            + "\n## Every metric\n\n" + markdown_table(evaluations, protocol)
        )
        payload = {
            "protocol": protocol,
            "state_length": seq_len,
            "reference": {"model": reference, "rule": rule},
            "valid_events": len(valid_index),
            "served_head": served,
            "models": [
                {
                    **ev.to_dict(),
                    "fit_seconds": round(fit_seconds[ev.model], 2),
                    "valid_ndcg_at_10": valid_ndcg[ev.model],
                    "head": heads.get(ev.model),
                    "served": ev.model in heads and heads[ev.model] == served,
                    "paired_vs_reference": {
                        key: {**iv.as_dict(), "excludes_zero": excludes_zero(iv)}
                        for key, iv in paired.get(ev.model, {}).items()
                    },
                }
                for ev in evaluations
            ],
            "paired_metrics": [f"{g}/{m}" for g, m in PAIRED],
            "served_vs_baselines": {
                "row": served_row,
                "differences": {
                    opponent: {key: {**iv.as_dict(), "excludes_zero": excludes_zero(iv)} for key, iv in diffs.items()}
                    for opponent, diffs in versus.items()
                },
            },
        }
        write_json(params.paths.compare, payload)
        md = Path(params.paths.compare).with_suffix(".md")
        write_text(md, "# Model comparison: test period\n\n" + report)
        png = metric_bars(evaluations, Path(params.paths.compare).with_suffix(".png"),
                          title="Test period, full ranking (95% user-level bootstrap CI)")
        for path in (md, png, Path(params.paths.compare)):
            parent.log_artifact(path)
    print(report)
    return evaluations
