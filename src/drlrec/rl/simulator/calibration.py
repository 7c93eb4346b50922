"""The simulator's calibration on held-out (validation) events: predicted against observed by decile,
AUC, behaviour given an interaction; the markdown table, the plot and the files the simulate stage writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from drlrec.atomic import atomic_path, write_text
from drlrec.config import SimulatorConfig
from drlrec.errors import ConfigError, InputError
from drlrec.features.transitions import Transitions
from drlrec.models.base import FIRST_REAL_ITEM
from drlrec.rl.simulator.fit import fit_simulator_from_features
from drlrec.rl.simulator.model import (
    CALIBRATION_TARGETS,
    CalibrationResult,
    UserSimulator,
    _uniform_negatives,
)
from drlrec.schema import BEHAVIORS


def _deciles(predicted: np.ndarray, observed: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Equal-count bins of `predicted` (by rank, so ties never empty a bin): n, mean predicted, observed rate."""
    order = np.argsort(predicted, kind="stable")
    decile = np.empty(len(predicted), dtype=np.int64)
    decile[order] = np.arange(len(predicted)) * bins // max(len(predicted), 1)
    n = np.bincount(decile, minlength=bins)
    mean_predicted = np.bincount(decile, weights=predicted, minlength=bins) / np.maximum(n, 1)
    observed_rate = np.bincount(decile, weights=observed.astype(np.float64), minlength=bins) / np.maximum(
        n, 1
    )
    return pd.DataFrame(
        {
            "decile": np.arange(1, bins + 1),
            "n": n,
            "mean_predicted": mean_predicted,
            "observed_rate": observed_rate,
        }
    )


def calibrate(
    simulator: UserSimulator,
    transitions: Transitions,
    negatives: int | None = None,
    seed: int = 0,
    max_events: int = 20000,
    batch_size: int = 4096,
) -> CalibrationResult:
    """Predicted vs observed on held-out transitions (e.g. the valid split).

    Each event gives a candidate set: the logged next item and `negatives` (default: the simulator's own)
    items drawn uniformly from the rest of the catalogue. For target `interact` the observation is 1 for the
    logged item and 0 for the negatives; for a behaviour b it is 1 only for the logged item when the logged
    behaviour is b. Bins are deciles of the target's own predicted probability. Events whose logged item is
    padding/unknown are left out (no recommender can name them) and counted in `n_excluded`.
    """
    negatives = simulator.negatives if negatives is None else int(negatives)
    if negatives < 1:
        raise ConfigError(f"calibration needs at least 1 negative per event (got {negatives})")
    from drlrec.rl.logged import state_batch

    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(102,)))
    logged = transitions.action_item.astype(np.int64)
    usable = np.flatnonzero(logged >= FIRST_REAL_ITEM)
    if len(usable) == 0:
        raise InputError("no held-out transitions with a recommendable logged item to calibrate on")
    if len(usable) > max_events:
        usable = np.sort(rng.choice(usable, size=max_events, replace=False))
    candidates = np.concatenate(
        [logged[usable, None], _uniform_negatives(logged[usable], simulator.n_items, negatives, rng)], axis=1
    )  # [n, 1 + R]

    def behavior_probs(lo: int) -> np.ndarray:
        states, items = (
            state_batch(transitions, usable[lo : lo + batch_size]),
            candidates[lo : lo + batch_size],
        )
        prob = simulator.candidate_prob(states, items, negatives)  # [b, 1 + R]
        return prob[..., None] * simulator.behavior_given_interaction(states, items)  # [b, 1 + R, 4]

    probs = np.concatenate([behavior_probs(lo) for lo in range(0, len(usable), batch_size)])  # [n, 1 + R, 4]
    is_logged = np.zeros(candidates.shape, dtype=bool)
    is_logged[:, 0] = True
    behavior = transitions.action_behavior[usable].astype(np.int64)  # [n]
    tables = []
    interact = probs.sum(axis=-1)  # [n, 1 + R]
    table = _deciles(interact.ravel(), is_logged.ravel())
    tables.append(table.assign(target="interact"))
    for code, name in enumerate(BEHAVIORS):
        observed = is_logged & (behavior[:, None] == code)
        tables.append(_deciles(probs[..., code].ravel(), observed.ravel()).assign(target=name))
    table = pd.concat(tables, ignore_index=True)[["target", "decile", "n", "mean_predicted", "observed_rate"]]

    conditional_pred = probs[:, 0] / np.maximum(
        interact[:, :1], 1e-12
    )  # [n, 4] P(b | interact) of the logged item
    conditional = pd.DataFrame(
        {
            "behavior": list(BEHAVIORS),
            "predicted": conditional_pred.mean(axis=0),
            "observed": np.bincount(behavior, minlength=4) / len(behavior),
        }
    )
    positive, negative = interact[:, :1], interact[:, 1:]
    auc = float(np.mean((positive > negative) + 0.5 * (positive == negative)))
    return CalibrationResult(
        table, conditional, auc, len(usable), int(np.sum(logged < FIRST_REAL_ITEM)), negatives
    )


def calibration_markdown(result: CalibrationResult) -> str:
    """The calibration tables as markdown (one table per target, then the conditional rates)."""
    lines = [
        f"Simulator calibration on {result.n_events:,} held-out events, each the logged next item plus "
        f"{result.negatives} uniform catalogue negatives ({result.n_excluded:,} events with an unknown logged "
        f"item left out). Sampled AUC of P(interact), logged vs negatives: {result.auc:.3f}.",
        "",
    ]
    for target in CALIBRATION_TARGETS:
        rows = result.table[result.table["target"] == target]
        lines += [
            f"**{target}**",
            "",
            "| decile | n | mean predicted | observed rate |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.decile} | {r.n:,} | {r.mean_predicted:.4f} | {r.observed_rate:.4f} |"
            for r in rows.itertuples()
        ]
        lines.append("")
    lines += [
        "**P(behaviour | interact), logged items**",
        "",
        "| behaviour | predicted | observed |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {r.behavior} | {r.predicted:.4f} | {r.observed:.4f} |" for r in result.conditional.itertuples()
    ]
    return "\n".join(lines) + "\n"


def plot_calibration(result: CalibrationResult, path: str | Path) -> Path:
    """Reliability plot (PNG): observed rate vs mean predicted per decile, one panel per target."""
    from drlrec.plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(CALIBRATION_TARGETS), figsize=(4 * len(CALIBRATION_TARGETS), 4))
    for ax, target in zip(axes, CALIBRATION_TARGETS, strict=True):
        rows = result.table[result.table["target"] == target]
        top = float(max(rows["mean_predicted"].max(), rows["observed_rate"].max(), 1e-6)) * 1.05
        ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        ax.plot(rows["mean_predicted"], rows["observed_rate"], marker="o", label="simulator, one point per decile")
        ax.set_title(target)
        ax.set_xlabel("mean predicted probability (decile)")
        ax.legend(fontsize=7, loc="upper left")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
    axes[0].set_ylabel("observed rate in the held-out log")
    fig.suptitle(f"simulator calibration (AUC {result.auc:.3f}, {result.n_events:,} events)")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def simulator_calibration(
    features_dir: str | Path, cfg: SimulatorConfig, seed: int, out_dir: str | Path | None = None
) -> tuple[UserSimulator, CalibrationResult]:
    """Fit on the train split of `features_dir`, calibrate on its valid split; with `out_dir`, write
    simulator.npz, calibration.md, calibration.csv and calibration.png there."""
    from drlrec.features.transitions import load_split

    simulator = fit_simulator_from_features(features_dir, cfg, seed)
    result = calibrate(
        simulator, load_split(features_dir, "valid"), seed=seed, max_events=cfg.calibration_max_events
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        simulator.save(out / "simulator.npz")
        write_text(out / "calibration.md", calibration_markdown(result))
        with atomic_path(out / "calibration.csv") as tmp:
            result.table.to_csv(tmp, index=False)
        plot_calibration(result, out / "calibration.png")
    return simulator, result
