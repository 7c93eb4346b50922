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


#: y-axis label of each training series (drlrec.rl.dqn logs them); others are labelled by their name
SERIES_LABELS: dict[str, str] = {
    "train/td_loss": "TD loss (Huber, per transition)",
    "train/ce_loss": "CE loss (nats per transition)",
    "train/q_mean": "mean Q of the taken action (reward units)",
    "train/batch_reward": "mean reward in the batch",
    "train/per_beta": "PER importance exponent beta",
    "train/episode_reward": "mean episode return",
    "train/epsilon": "exploration epsilon",
    "train/ctr": "clicks per shown list",
    "train/loss": "TD + ce_weight x CE loss",
    "train/buffer": "replay buffer size (transitions)",
    "valid/ndcg_at_10": "validation NDCG@10 (next item)",
    "online/greedy_return": "greedy return per session",
}


def training_curves(
    history: Mapping[str, Sequence[float]],
    evaluations: Sequence[Mapping[str, float]],
    path: str | Path,
    title: str,
    eval_metric: str = "valid/ndcg_at_10",
    x_key: str = "step",
    kept_step: int | None = None,
    baselines: Mapping[str, float] | None = None,
    target_update_every: int | None = None,
) -> Path:
    """One PNG: each logged series (smoothed) and the evaluation metric against `x_key` (history and
    evaluations both carry it: `step` = gradient updates, `episodes` in online mode).

    The evaluation panel marks `kept_step` (the weights the model keeps) and draws each of `baselines`
    ({name: the same metric on the same validation events}) as a level. `target_update_every` (hard target
    updates) draws faint vertical lines in the loss panels: the TD loss jumps there because the target
    network is replaced at once."""
    plt = _pyplot()
    series = [k for k in history if k not in ("step", "episodes") and len(history[k])]
    panels = series + ([eval_metric] if evaluations else [])
    cols = 3
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.2 * rows), squeeze=False)
    x = np.asarray(history.get(x_key, range(1, 1 + max((len(v) for v in history.values()), default=0))))
    x_label = {"step": "gradient step", "episodes": "training episodes"}.get(x_key, x_key)
    for ax, name in zip(axes.flat, panels, strict=False):
        if name == eval_metric:
            steps = [e[x_key] for e in evaluations]
            ax.plot(steps, [e[eval_metric] for e in evaluations], marker="o", label="model (each evaluation)")
            if kept_step is not None:
                kept = [e[eval_metric] for e in evaluations if e[x_key] == kept_step]
                ax.axvline(kept_step, color="tab:green", lw=1, ls=":")
                if kept:
                    ax.plot([kept_step], kept, marker="*", ms=12, color="tab:green", ls="none",
                            label=f"kept weights ({x_key} {kept_step:,})")
            for (label, level), color in zip((baselines or {}).items(), ("tab:red", "tab:purple", "tab:brown"), strict=False):
                ax.axhline(level, color=color, lw=1, ls="--", label=f"{label} ({level:.4f})")
            ax.legend(fontsize=7)
        else:
            values = np.asarray(history[name])
            if len(values) >= 100:  # long, noisy per-step series: raw faint, trailing average on top
                ax.plot(x[: len(values)], values, alpha=0.25, lw=0.8, label="per logged step")
                ax.plot(x[: len(values)], smooth(values), lw=1.5, label="trailing mean (25 points)")
                ax.legend(fontsize=7)
            else:  # a few points (online rounds): the points themselves, no lagging average
                ax.plot(x[: len(values)], values, lw=1.5, marker=".")
            if target_update_every and name in ("train/td_loss", "train/q_mean") and len(x):
                for at in range(target_update_every, int(x[: len(values)].max()) + 1, target_update_every):
                    ax.axvline(at, color="grey", lw=0.6, alpha=0.4)
        ax.set_title(name + (" (grey: hard target updates)" if target_update_every and name in ("train/td_loss", "train/q_mean") else ""), fontsize=9)
        ax.set_xlabel(x_label, fontsize=8)
        ax.set_ylabel(SERIES_LABELS.get(name, name), fontsize=8)
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
    ax.set_ylabel("metric value (higher is better; whiskers: 95% CI)", fontsize=8)
    ax.set_xlabel("target and metric (k = 10)", fontsize=8)
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
