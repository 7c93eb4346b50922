"""The evaluation as tables: headline metrics, every metric, paired differences from a reference, the
served model against every baseline, and the breakdown by target type."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drlrec.evaluate.protocol import BREAKDOWN_K, TARGET_TYPES, Evaluation
from drlrec.evaluate.statistics import Interval, excludes_zero, paired_difference, per_event_values

#: Columns of the comparison table: (group, metric).
HEADLINE: tuple[tuple[str, str], ...] = (
    ("next_item", "hr_at_10"),
    ("next_item", "ndcg_at_10"),
    ("next_item", "mrr"),
    ("next_purchase", "hr_at_10"),
    ("next_purchase", "ndcg_at_10"),
    ("per_user_purchase", "precision_at_10"),
    ("per_user_purchase", "recall_at_10"),
    ("per_user_purchase", "map_at_10"),
    ("beyond_accuracy", "coverage_at_10"),
    ("beyond_accuracy", "diversity_at_10"),
    ("beyond_accuracy", "novelty_at_10"),
)


def _cell(iv: Interval | None) -> str:
    if iv is None or np.isnan(iv.value):
        return "n/a"
    return f"{iv.value:.4f} [{iv.low:.4f}, {iv.high:.4f}]"


def markdown_table(evaluations: Sequence[Evaluation], protocol: str, columns=HEADLINE) -> str:
    """The comparison as markdown: one row per model, value [95% CI] per headline metric, protocol below."""
    header = "| model | " + " | ".join(f"{g.replace('_', ' ')}: {m}" for g, m in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for ev in evaluations:
        cells = [_cell(ev.groups.get(g, {}).get(m)) for g, m in columns]
        lines.append(f"| {ev.model} | " + " | ".join(cells) + " |")
    counts = evaluations[0].counts if evaluations else {}
    lines += ["", "Events: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()), "", f"Protocol: {protocol}"]
    return "\n".join(lines) + "\n"


def full_table(evaluation: Evaluation) -> str:
    """Every metric of one model as markdown: group, metric, value, 95% CI."""
    lines = ["| group | metric | value | 95% CI |", "|---|---|---|---|"]
    for group, metrics in evaluation.groups.items():
        for metric, iv in metrics.items():
            lines.append(f"| {group} | {metric} | {iv.value:.4f} | [{iv.low:.4f}, {iv.high:.4f}] |")
    return "\n".join(lines) + "\n"


#: The (group, metric) pairs `drlrec compare` reports as paired differences from its reference row.
PAIRED: tuple[tuple[str, str], ...] = (
    ("next_item", "ndcg_at_10"),
    ("next_item", "hr_at_10"),
    ("next_purchase", "ndcg_at_10"),
    ("next_purchase", "hr_at_10"),
)


def _metric_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    """[E] per-event values of one ranking metric (`hr_at_k`, `ndcg_at_k` or `mrr`) from ranks."""
    ks = (int(metric.rsplit("_at_", 1)[1]),) if "_at_" in metric else ()
    names, values = per_event_values(ranks, ks)
    if metric not in names:
        raise ValueError(f"unknown per-event metric {metric!r}; expected hr_at_K, ndcg_at_K or mrr")
    return values[:, names.index(metric)]


def paired_comparison(
    evaluation: Evaluation, reference: Evaluation, n_boot: int, ci: float = 0.95, seed: int = 0, columns=PAIRED
) -> dict[str, Interval]:
    """`evaluation` minus `reference` on each (group, metric) of `columns`, over the same test events, with a
    paired user-level bootstrap CI: {"group/metric": Interval}."""
    out: dict[str, Interval] = {}
    for group, metric in columns:
        if group not in (evaluation.events or {}) or group not in (reference.events or {}):
            raise ValueError(f"{evaluation.model} / {reference.model}: no per-event ranks for {group} "
                             "(evaluate_model keeps them)")
        a, b = evaluation.events[group], reference.events[group]
        if not np.array_equal(a.index, b.index):
            raise ValueError(f"{evaluation.model} and {reference.model} were not evaluated on the same {group} events")
        [diff] = paired_difference(_metric_values(a.ranks, metric), _metric_values(b.ranks, metric), a.user_id,
                                   n_boot, ci, seed)
        out[f"{group}/{metric}"] = diff
    return out


def _label(group: str, metric: str) -> str:
    k = metric.rsplit("_at_", 1)[1] if "_at_" in metric else ""
    name = {"hr": "HR", "ndcg": "NDCG"}.get(metric.split("_at_")[0], metric)
    return f"{group.replace('_', ' ')} {name}" + (f"@{k}" if k else "")


def _diff_cell(iv: Interval | None) -> str:
    if iv is None or np.isnan(iv.value):
        return "n/a"
    return f"{iv.value:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]" + (" *" if excludes_zero(iv) else "")


def paired_table(
    evaluations: Sequence[Evaluation],
    reference: str,
    paired: dict[str, dict[str, Interval]],
    valid_ndcg: dict[str, float],
    notes: dict[str, str] | None = None,
    fit_seconds: dict[str, float] | None = None,
    columns=PAIRED,
) -> str:
    """One row per model: validation NDCG@10, the test metrics of `columns` (value [95% user-level CI]) and
    each one's paired difference from the `reference` row ("+d [low, high]", " *" when the CI excludes 0)."""
    notes = notes or {}
    header = ["model", "valid NDCG@10", *(_label(g, m) for g, m in columns),
              *(f"Δ {_label(g, m)} vs {reference}" for g, m in columns)] + (["fit (s)"] if fit_seconds else [])
    align = "|" + "---|" * (len(header) - 1) + ("---:|" if fit_seconds else "---|")
    lines = ["| " + " | ".join(header) + " |", align]
    for ev in evaluations:
        name = ev.model + (f" ({notes[ev.model]})" if ev.model in notes else "")
        valid = valid_ndcg.get(ev.model, float("nan"))
        cells = [name, "n/a" if np.isnan(valid) else f"{valid:.4f}"]
        cells += [_cell(ev.groups.get(g, {}).get(m)) for g, m in columns]
        if ev.model == reference:
            cells += ["reference"] * len(columns)
        else:
            cells += [_diff_cell(paired.get(ev.model, {}).get(f"{g}/{m}")) for g, m in columns]
        if fit_seconds:
            cells.append(f"{fit_seconds.get(ev.model, float('nan')):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def versus_table(subject: str, versus: dict[str, dict[str, Interval]], columns=PAIRED) -> str:
    """`subject` minus each other row, paired on the same test events: one row per opponent, "+d [low, high]"
    per (group, metric) of `columns`, " *" when the user-level CI excludes 0."""
    header = ["opponent", *(f"Δ {_label(g, m)}" for g, m in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for opponent, diffs in versus.items():
        lines.append(f"| {subject} − {opponent} | " + " | ".join(_diff_cell(diffs.get(f"{g}/{m}")) for g, m in columns) + " |")
    return "\n".join(lines) + "\n"


def type_table(evaluations: Sequence[Evaluation], target: str, k: int = BREAKDOWN_K) -> str:
    """Model x target type (NDCG@k and HR@k within each type) for one target set (`next_item` or
    `next_purchase`), then the share of each type and the reachable ceiling (the same events for every model)."""
    group = f"{target}_by_type"
    header = ["model", *(f"{t} {m}@{k}" for t in TARGET_TYPES for m in ("NDCG", "HR"))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ev in evaluations:
        metrics = ev.groups.get(group, {})
        cells = [_cell(metrics.get(f"{t}/{m}_at_{k}")) for t in TARGET_TYPES for m in ("ndcg", "hr")]
        lines.append(f"| {ev.model} | " + " | ".join(cells) + " |")
    if evaluations:
        first = evaluations[0]
        metrics = first.groups.get(group, {})
        types = first.events[target].target_type if first.events and target in first.events else np.zeros(0, np.int8)
        n_by_type = np.bincount(types.astype(np.int64), minlength=len(TARGET_TYPES))
        shares = ", ".join(f"{t} {_share(metrics.get(f'{t}/share'))} ({n:,})"
                           for t, n in zip(TARGET_TYPES, n_by_type, strict=True))
        lines += ["", f"Target types of the {len(types):,} {target.replace('_', ' ')} events: {shares}. Reachable "
                  "ceiling (targets that are not cold; no model's HR@k can exceed it): "
                  f"{_share(metrics.get('reachable'))}."]
    return "\n".join(lines) + "\n"


def _share(iv: Interval | None) -> str:
    if iv is None or np.isnan(iv.value):
        return "n/a"
    return f"{100 * iv.value:.1f}% [{100 * iv.low:.1f}, {100 * iv.high:.1f}]"
