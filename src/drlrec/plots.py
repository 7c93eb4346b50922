"""Figures the pipeline writes (training curves, metric bars); matplotlib with the Agg backend, atomic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from drlrec.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def smooth(values: Sequence[float], window: int = 25) -> np.ndarray:
    """Trailing moving average (same length as the input)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0 or window <= 1:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumsum[1:] - cumsum[np.maximum(np.arange(1, len(values) + 1) - window, 0)]) / counts


def training_curves(
    history: Mapping[str, Sequence[float]],
    evaluations: Sequence[Mapping[str, float]],
    path: str | Path,
    title: str,
    eval_metric: str = "valid/ndcg_at_10",
    x_key: str = "step",
) -> Path:
    """One PNG: each logged series (smoothed) and the evaluation metric against `x_key` (history and
    evaluations both carry it: `step` = gradient updates, `episodes` in online mode)."""
    plt = _pyplot()
    series = [k for k in history if k not in ("step", "episodes") and len(history[k])]
    panels = series + ([eval_metric] if evaluations else [])
    cols = 3
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    x = np.asarray(history.get(x_key, range(1, 1 + max((len(v) for v in history.values()), default=0))))
    for ax, name in zip(axes.flat, panels, strict=False):
        if name == eval_metric:
            steps = [e[x_key] for e in evaluations]
            ax.plot(steps, [e[eval_metric] for e in evaluations], marker="o")
        else:
            values = np.asarray(history[name])
            if len(values) >= 100:  # long, noisy per-step series: raw faint, trailing average on top
                ax.plot(x[: len(values)], values, alpha=0.25, lw=0.8)
                ax.plot(x[: len(values)], smooth(values), lw=1.5)
            else:  # a few points (online rounds): the points themselves, no lagging average
                ax.plot(x[: len(values)], values, lw=1.5, marker=".")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(x_key, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def metric_bars(
    evaluations,
    path: str | Path,
    columns: Sequence[tuple[str, str]] = (
        ("next_item", "hr_at_10"),
        ("next_item", "ndcg_at_10"),
        ("next_purchase", "hr_at_10"),
        ("next_purchase", "ndcg_at_10"),
        ("per_user_purchase", "map_at_10"),
    ),
    title: str = "Test period, full ranking (95% bootstrap CI)",
) -> Path:
    """Grouped bars: one group per metric, one bar per model, with CI whiskers (drlrec.evaluate.Evaluation)."""
    plt = _pyplot()
    models = [ev.model for ev in evaluations]
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(columns) * max(1, len(models)) ** 0.5), 4.0))
    x = np.arange(len(columns))
    for i, ev in enumerate(evaluations):
        ivs = [ev.groups.get(g, {}).get(m) for g, m in columns]
        values = np.array([iv.value if iv else np.nan for iv in ivs])
        low = np.array([iv.value - iv.low if iv else 0.0 for iv in ivs])
        high = np.array([iv.high - iv.value if iv else 0.0 for iv in ivs])
        ax.bar(x + (i - (len(models) - 1) / 2) * width, values, width, yerr=[low, high], capsize=2, label=ev.model)
    ax.set_xticks(x, [f"{g.replace('_', ' ')}\n{m}" for g, m in columns], fontsize=8)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=min(4, max(1, len(models))))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
