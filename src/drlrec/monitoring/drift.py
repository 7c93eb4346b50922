"""The drift decision: Evidently over the monitored columns (the only module importing it), prediction
drift and online quality, and the MonitorResult that says what was decided and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from drlrec.config import FeaturizeConfig, MonitorConfig
from drlrec.data.logs import sort_events
from drlrec.monitoring.columns import (
    CATEGORICAL_COLUMNS,
    NUMERICAL_COLUMNS,
    OTHER,
    Reference,
    monitored_frame,
)
from drlrec.monitoring.quality import exposures_long, online_quality
from drlrec.schema import LOCAL_UTC_OFFSET_S


@dataclass
class MonitorResult:
    """The outcome of one monitored window (report.json holds `to_dict()`)."""

    window: str
    """Folder name of the window: its first and last local timestamps."""
    status: str
    """`drift`, `no drift` or `not enough data`."""
    drift: bool
    """Whether drift was declared (drifted share >= drift_share, or online quality dropped)."""
    drift_share: float
    """Share of the monitored columns that drifted (Evidently's DriftedColumnsCount)."""
    threshold: float
    """monitor.drift_share."""
    drifted_columns: list[str]
    """Names of the drifted columns, most drifted first (by score / threshold)."""
    columns: dict[str, dict[str, Any]]
    """Per column: method, score, threshold, drifted."""
    rows: dict[str, int]
    """Reference and current events compared."""
    window_start: int
    window_end: int
    unknown_item_share: dict[str, float]
    """Share of events on items outside the champion's vocabulary (reference: leave-one-day-out)."""
    prediction: dict[str, Any] | None = None
    """Categories of served recommendations vs interactions in the window (None without exposures)."""
    quality: dict[str, Any] | None = None
    """Online HR@k of served lists against the next interaction (None without exposures)."""
    reasons: list[str] = field(default_factory=list)
    """Why drift was (or was not) declared, in words."""

    def decision_line(self) -> str:
        """One line: the decision, the drifted share and the reasons (decision.txt)."""
        head = f"{self.status}: {self.drift_share:.0%} of {len(self.columns)} columns drifted"
        head += f" (threshold {self.threshold:.0%})"
        return head + ("; " + "; ".join(self.reasons) if self.reasons else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"decision": self.decision_line()}


class DriftTable(NamedTuple):
    """Evidently's verdict on one pair of tables, and the snapshot to render."""

    share: float
    columns: dict[str, dict[str, Any]]
    snapshot: Any


def run_drift(reference: pd.DataFrame, current: pd.DataFrame, categorical: list[str], numerical: list[str], cfg: MonitorConfig) -> DriftTable:
    """DataDriftPreset on the given columns: distances (normed Wasserstein, Jensen-Shannon) at the
    monitor thresholds for every column whatever the sample size; per-column verdicts from its tests."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=categorical + numerical,
        drift_share=cfg.drift_share,
        num_method="wasserstein",
        cat_method="jensenshannon",
        num_threshold=cfg.num_threshold,
        cat_threshold=cfg.cat_threshold,
    )
    snapshot = Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    payload = snapshot.dict()
    share = 0.0
    columns: dict[str, dict[str, Any]] = {}
    for metric in payload["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif config.get("type", "").endswith("ValueDrift"):
            columns[config["column"]] = {
                "method": config.get("method"),
                "score": float(metric["value"]),
                "threshold": float(config.get("threshold")),
            }
    for test in payload.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift") and params.get("column") in columns:
            columns[params["column"]]["drifted"] = test.get("status") == "FAIL"
    for entry in columns.values():
        entry.setdefault("drifted", entry["score"] >= entry["threshold"])
    return DriftTable(share, columns, snapshot)


@dataclass
class MonitorRun:
    """A finished monitoring run: the result and the Evidently snapshots behind it."""

    result: MonitorResult
    data_snapshot: Any = None
    prediction_snapshot: Any = None


def monitor(
    reference: Reference,
    current: pd.DataFrame,
    known_items: np.ndarray,
    cfg: MonitorConfig,
    featurize: FeaturizeConfig,
    exposures: pd.DataFrame | None = None,
    offline_hr: float | None = None,
) -> MonitorRun:
    """Compare a window of interactions with the reference; decide drift (see the module docstring).

    `exposures` are served lists (any form `exposures_long` takes); `offline_hr` is the champion's offline
    next-item HR@k, the baseline of the online quality check."""
    current = sort_events(current)
    known_items = np.unique(np.asarray(known_items, dtype=np.int64))
    start = int(current["timestamp"].min()) if len(current) else 0
    end = int(current["timestamp"].max()) if len(current) else 0
    window = f"{_stamp(start)}_{_stamp(end)}"
    rows = {"reference": int(len(reference.events)), "current": int(len(current))}
    if len(current) < cfg.min_rows:
        result = MonitorResult(
            window=window, status="not enough data", drift=False, drift_share=0.0, threshold=cfg.drift_share,
            drifted_columns=[], columns={}, rows=rows, window_start=start, window_end=end,
            unknown_item_share={}, reasons=[f"{len(current)} interactions in the window < monitor.min_rows {cfg.min_rows}"],
        )  # fmt: skip
        return MonitorRun(result)
    ref_frame = monitored_frame(reference.events, reference, None, featurize)
    cur_frame = monitored_frame(current, reference, known_items, featurize)
    table = run_drift(ref_frame, cur_frame, list(CATEGORICAL_COLUMNS), list(NUMERICAL_COLUMNS), cfg)
    ranked = sorted(
        (name for name, c in table.columns.items() if c["drifted"]),
        key=lambda name: -table.columns[name]["score"] / max(table.columns[name]["threshold"], 1e-12),
    )
    unknown = {
        "reference": float((ref_frame["item_unknown"] == "unknown").mean()),
        "current": float((cur_frame["item_unknown"] == "unknown").mean()),
    }
    reasons: list[str] = []
    drift = table.share >= cfg.drift_share
    if ranked:
        described = [f"{name} ({table.columns[name]['score']:.3f})" for name in ranked]
        reasons.append("drifted: " + ", ".join(described))
    reasons.append(f"unknown items {unknown['current']:.1%} (reference {unknown['reference']:.1%})")

    prediction = quality = None
    prediction_snapshot = None
    if exposures is not None and len(exposures):
        long = exposures_long(exposures)
        in_window = (long["timestamp"] >= start) & (long["timestamp"] <= end)
        same_clock = bool(in_window.any()) or not len(long)
        if same_clock:
            long = long[in_window]
        else:
            # served on another clock than the interactions' timestamps (a replayed period): the categories
            # of every logged list can still be compared; matching lists to next events cannot
            reasons.append("exposures are on another clock than the interactions: online quality not measured")
        if len(long) >= cfg.min_rows:
            item_category = _item_category(reference.events, current)
            served = item_category.reindex(long["item_id"].to_numpy()).to_numpy()
            served = served[~pd.isna(served)].astype(np.int64)
            served_cat = np.where(np.isin(served, reference.top_categories), served.astype(str).astype(object), OTHER)
            pred = run_drift(
                pd.DataFrame({"category": cur_frame["category"].to_numpy()}),
                pd.DataFrame({"category": served_cat}),
                ["category"], [], cfg,
            )  # fmt: skip
            column = pred.columns["category"]
            prediction = {
                "recommended_items": int(len(served_cat)),
                "method": column["method"],
                "score": column["score"],
                "threshold": column["threshold"],
                "drifted": bool(column["drifted"]),
            }
            prediction_snapshot = pred.snapshot
            reasons.append(
                f"served categories {'drift from' if column['drifted'] else 'match'} interacted ones "
                f"({column['score']:.3f})"
            )
        quality = online_quality(long if same_clock else long.iloc[:0], current, cfg.quality_k)
        quality["offline_hr"] = offline_hr
        quality["judged"] = quality["lists"] >= cfg.quality_min_lists and offline_hr is not None
        quality["dropped"] = bool(quality["judged"] and quality["hr"] < offline_hr - cfg.quality_margin)
        if quality["judged"]:
            reasons.append(
                f"online HR@{cfg.quality_k} {quality['hr']:.3f} vs offline {offline_hr:.3f}"
                + (f" (dropped by more than {cfg.quality_margin:g})" if quality["dropped"] else "")
            )
        drift = drift or quality["dropped"]
    result = MonitorResult(
        window=window, status="drift" if drift else "no drift", drift=bool(drift), drift_share=table.share,
        threshold=cfg.drift_share, drifted_columns=ranked, columns=table.columns, rows=rows,
        window_start=start, window_end=end, unknown_item_share=unknown, prediction=prediction,
        quality=quality, reasons=reasons,
    )  # fmt: skip
    return MonitorRun(result, table.snapshot, prediction_snapshot)


def _item_category(*tables: pd.DataFrame) -> pd.Series:
    """item id -> category id over the given event tables (the last seen wins)."""
    both = pd.concat([t[["item_id", "category_id"]] for t in tables], ignore_index=True)
    return both.drop_duplicates("item_id", keep="last").set_index("item_id")["category_id"]


def _stamp(ts: int) -> str:
    import datetime as dt

    local = dt.datetime.fromtimestamp(int(ts), tz=dt.timezone(dt.timedelta(seconds=LOCAL_UTC_OFFSET_S)))
    return local.strftime("%Y%m%dT%H%M")
