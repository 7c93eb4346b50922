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
) -> Path:
    """One PNG: each logged per-step series (smoothed) and the validation metric over steps."""
    plt = _pyplot()
    series = [k for k in history if k not in ("step",) and len(history[k])]
    panels = series + ([eval_metric] if evaluations else [])
    cols = 3
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    x = np.asarray(history.get("step", range(1, 1 + max((len(v) for v in history.values()), default=0))))
    for ax, name in zip(axes.flat, panels, strict=False):
        if name == eval_metric:
            steps = [e["step"] for e in evaluations]
            ax.plot(steps, [e[eval_metric] for e in evaluations], marker="o")
        else:
            values = np.asarray(history[name])
            ax.plot(x[: len(values)], values, alpha=0.25, lw=0.8)
            ax.plot(x[: len(values)], smooth(values), lw=1.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
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
