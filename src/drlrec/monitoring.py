"""Drift monitoring: live interactions against the champion's training period, with Evidently (the only module
importing it).

The reference is the training period (events.parquet rows before the split's train_end); the current data
is a window of the serving interaction log or a new raw batch. Both become one table of monitored columns,
one row per event, built without a Python loop over events:

    behavior                 pv / cart / fav / buy                                     (categorical)
    category                 the reference's top categories, the rest `other`          (categorical)
    hour                     local hour of day (UTC+8, the Taobao clock)               (categorical)
    item_unknown             the item is unknown to the champion's vocabulary          (categorical)
    item_popularity_rank     the item's rank in reference popularity (1 = top; NaN if unknown)
    events_per_user_day      a user's events that day (on the user-day's first row, NaN elsewhere)
    session_length           events of a 30-minute session (on the session's first row, NaN elsewhere)
    <10 profile features>    features.profile at each event, over the user's earlier events that day

Per-user columns are measured per user-day and the profile over the day's history, so a 7-day reference and
a 1-day window compare like with like (a profile over the whole history would drift with account age
alone). The reference's `item_unknown` is leave-one-day-out: an item seen on no other reference day, the
rate at which a day brings items a model trained on the other days has never seen.

Evidently compares the two tables column by column (normed Wasserstein for numbers, Jensen-Shannon for
categories; distances, so a large window does not flag negligible shifts) and counts the drifted share.
With the serving logs it also compares the categories of served recommendations with those of the
interactions (prediction drift) and measures HR@k of served lists against each user's next interaction
(online quality). `write_report` writes report.html (self-contained), report.json and decision.txt.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from drlrec.atomic import atomic_path, write_json, write_text
from drlrec.config import FeaturizeConfig, MonitorConfig
from drlrec.data.logs import read_exposures, read_interactions, sort_events
from drlrec.errors import InputError
from drlrec.features.profile import PROFILE_FEATURES, user_profiles
from drlrec.features.users import user_index
from drlrec.schema import BEHAVIORS, LOCAL_UTC_OFFSET_S

_DAY = 86400
OTHER = "other"
CATEGORICAL_COLUMNS: tuple[str, ...] = ("behavior", "category", "hour", "item_unknown")
NUMERICAL_COLUMNS: tuple[str, ...] = (
    "item_popularity_rank",
    "events_per_user_day",
    "session_length",
    *(f"profile_{name}" for name in PROFILE_FEATURES),
)
MONITORED_COLUMNS: tuple[str, ...] = CATEGORICAL_COLUMNS + NUMERICAL_COLUMNS


class Reference(NamedTuple):
    """What the current window is compared with: the training period's events and their summaries."""

    events: pd.DataFrame  # typed events (EVENT_COLUMNS) of the training period
    top_categories: np.ndarray  # [T] int64 category ids, most frequent first
    popular_items: np.ndarray  # [I] int64 item ids sorted by id
    item_events: np.ndarray  # [I] int64 reference events of each of popular_items
    days: int  # distinct local days of the reference
    rates_desc: np.ndarray  # [I] float64 events per day of every reference item, largest first


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


# ---------------------------------------------------------------------------------------------- inputs


def window_of(events: pd.DataFrame, window_days: float) -> pd.DataFrame:
    """The events of the last `window_days` days (by event timestamp) of a log; 0 keeps everything."""
    if window_days <= 0 or events.empty:
        return events
    end = int(events["timestamp"].max()) + 1
    return events[events["timestamp"].to_numpy() >= end - int(round(window_days * _DAY))].reset_index(drop=True)


def build_reference(events: pd.DataFrame, cfg: MonitorConfig, seed: int = 0) -> Reference:
    """Summaries of the training period, then a seeded sample of whole user-days beyond reference_max_rows."""
    events = sort_events(events)
    if events.empty:
        raise InputError("the reference (training period) has no events")
    categories, counts = np.unique(events["category_id"].to_numpy(), return_counts=True)
    top = categories[np.argsort(-counts, kind="stable")[: cfg.top_categories]]
    items, item_counts = np.unique(events["item_id"].to_numpy(), return_counts=True)
    days = max(int(len(np.unique(_local_day(events["timestamp"].to_numpy())))), 1)
    rates_desc = np.sort(item_counts / days)[::-1].astype(np.float64)
    if len(events) > cfg.reference_max_rows:
        day = _local_day(events["timestamp"].to_numpy())
        user_day = pd.factorize(pd.MultiIndex.from_arrays([events["user_id"].to_numpy(), day]))[0]
        keep_share = cfg.reference_max_rows / len(events)
        keep = np.random.default_rng(seed).random(user_day.max() + 1) < keep_share
        events = events[keep[user_day]].reset_index(drop=True)
    return Reference(events, top, items, item_counts.astype(np.int64), days, rates_desc)


def _local_day(timestamp: np.ndarray) -> np.ndarray:
    return (np.asarray(timestamp, dtype=np.int64) + LOCAL_UTC_OFFSET_S) // _DAY


# ---------------------------------------------------------------------------------------------- columns


def monitored_frame(
    events: pd.DataFrame,
    reference: Reference,
    known_items: np.ndarray | None,
    featurize: FeaturizeConfig,
) -> pd.DataFrame:
    """One row per event (sorted by user, time) with the MONITORED_COLUMNS.

    `known_items` (sorted ids) marks the champion's vocabulary; None means `events` IS the reference, whose
    unknown flag is leave-one-day-out (the item appears on no other reference day)."""
    events = sort_events(events)
    n = len(events)
    user = events["user_id"].to_numpy()
    item = events["item_id"].to_numpy()
    category = events["category_id"].to_numpy()
    behavior = events["behavior"].to_numpy().astype(np.int64)
    ts = events["timestamp"].to_numpy().astype(np.int64)
    day = _local_day(ts)

    out: dict[str, Any] = {}
    out["behavior"] = np.asarray(BEHAVIORS, dtype=object)[behavior]
    in_top = np.isin(category, reference.top_categories)
    out["category"] = np.where(in_top, category.astype(str).astype(object), OTHER)
    out["hour"] = np.char.zfill((((ts + LOCAL_UTC_OFFSET_S) % _DAY) // 3600).astype(str), 2).astype(object)
    pos = np.searchsorted(reference.popular_items, item)
    pos_clip = np.minimum(pos, max(len(reference.popular_items) - 1, 0))
    found = (pos < len(reference.popular_items)) & (reference.popular_items[pos_clip] == item)
    ref_events = np.where(found, reference.item_events[pos_clip], 0).astype(np.float64)  # [n]
    if known_items is None:
        # leave-one-day-out: the item as seen from the other reference days (its own day's events removed),
        # which is how a model trained on the reference sees the items of a later day
        pair = pd.DataFrame({"item": item, "day": day})
        same_day = pair.groupby(["item", "day"], sort=False)["item"].transform("size").to_numpy()
        days_per_item = pair.drop_duplicates().groupby("item", sort=False).size()
        unknown = days_per_item.reindex(item).to_numpy() == 1
        rate = (ref_events - same_day) / max(reference.days - 1, 1)
    else:
        unknown = ~_is_in_sorted(item, known_items)
        rate = ref_events / reference.days
    out["item_unknown"] = np.where(unknown, "unknown", "known").astype(object)
    # rank among the reference items by events per day (1 = most popular); NaN when unseen in the reference
    rank = 1.0 + np.searchsorted(-reference.rates_desc, -rate, side="left")
    out["item_popularity_rank"] = np.where(rate > 0, rank, np.nan)

    # user-days: the unit of the per-user columns and of the profile history
    new_user_day = np.ones(n, dtype=bool)
    if n > 1:
        new_user_day[1:] = (user[1:] != user[:-1]) | (day[1:] != day[:-1])
    user_day = np.cumsum(new_user_day) - 1  # [n] 0, 1, ... (contiguous, since sorted by user then time)
    per_user_day = np.bincount(user_day)
    out["events_per_user_day"] = np.where(new_user_day, per_user_day[user_day], np.nan)
    new_session = new_user_day.copy()
    if n > 1:
        new_session[1:] |= np.diff(ts) > featurize.session_gap
    session = np.cumsum(new_session) - 1
    per_session = np.bincount(session)
    out["session_length"] = np.where(new_session, per_session[session], np.nan)
    profiles = user_profiles(user_day, category, behavior, ts, featurize, index=user_index(user_day))  # [n, 10]
    for j, name in enumerate(PROFILE_FEATURES):
        out[f"profile_{name}"] = profiles[:, j].astype(np.float64)
    return pd.DataFrame(out, columns=list(MONITORED_COLUMNS))


def _is_in_sorted(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    if len(sorted_ids) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return sorted_ids[pos] == values


# ---------------------------------------------------------------------------------------------- serving logs


def exposures_long(exposures: pd.DataFrame) -> pd.DataFrame:
    """Served lists as one row per (list, rank, item): columns list_id, user_id, timestamp, rank, item_id.

    Accepts the long form already (user_id, timestamp, item_id, optional rank/request_id) or one row per
    list with the items in one text column (`items`/`item_ids`: JSON list, or ids separated by spaces,
    semicolons or `|`)."""
    if exposures.empty:
        return pd.DataFrame(columns=["list_id", "user_id", "timestamp", "rank", "item_id"])
    if "timestamp" not in exposures.columns and "served_at" in exposures.columns:  # the serving API's log
        served_at = pd.to_numeric(exposures["served_at"], errors="coerce")
        exposures = exposures.assign(timestamp=np.floor(served_at))
    for column in ("user_id", "timestamp"):
        if column not in exposures.columns:
            raise InputError(f"exposure log has no {column} column (columns: {', '.join(exposures.columns)})")
    list_column = next((c for c in ("items", "item_ids") if c in exposures.columns), None)
    if list_column is None and "item_id" not in exposures.columns:
        raise InputError("exposure log has neither item_id nor items/item_ids columns")
    if list_column is not None:
        text = exposures[list_column].astype(str).str.replace(r"[\[\]\"' ]+", " ", regex=True)
        parts = text.str.strip().str.split(r"[ ;|,]+", regex=True)
        lengths = parts.str.len().to_numpy()
        list_id = np.repeat(np.arange(len(exposures)), lengths)
        flat = pd.to_numeric(pd.Series(np.concatenate(parts.to_numpy()) if len(parts) else []), errors="coerce")
        rank = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        frame = pd.DataFrame(
            {
                "list_id": list_id,
                "user_id": exposures["user_id"].to_numpy()[list_id],
                "timestamp": exposures["timestamp"].to_numpy()[list_id],
                "rank": rank,
                "item_id": flat.to_numpy(),
            }
        )
    else:
        frame = exposures.copy()
        key = [c for c in ("request_id",) if c in frame.columns] or ["user_id", "timestamp"]
        frame["list_id"] = pd.factorize(pd.MultiIndex.from_frame(frame[key]))[0]
        if "rank" not in frame.columns:
            frame["rank"] = frame.groupby("list_id").cumcount()
        frame = frame[["list_id", "user_id", "timestamp", "rank", "item_id"]]
    frame = frame.dropna(subset=["user_id", "timestamp", "item_id"])
    return frame.astype({"user_id": np.int64, "timestamp": np.int64, "item_id": np.int64}).reset_index(drop=True)


def online_quality(exposures: pd.DataFrame, interactions: pd.DataFrame, k: int) -> dict[str, Any]:
    """HR@k of served lists: a list counts when the user interacted after it was served; it is a hit when
    that next interaction's item is in the list's top k. Returns lists, hits and hr."""
    long = exposures[exposures["rank"] < k]
    lists = long.drop_duplicates("list_id")[["list_id", "user_id", "timestamp"]].sort_values("timestamp")
    nxt = interactions[["user_id", "timestamp", "item_id"]].sort_values("timestamp")
    nxt = nxt.rename(columns={"timestamp": "next_timestamp", "item_id": "next_item"})
    joined = pd.merge_asof(
        lists, nxt, left_on="timestamp", right_on="next_timestamp", by="user_id", direction="forward"
    ).dropna(subset=["next_item"])
    if joined.empty:
        return {"k": k, "lists": 0, "hits": 0, "hr": None}
    joined["next_item"] = joined["next_item"].astype(np.int64)
    hit_pairs = long.merge(joined[["list_id", "next_item"]], left_on=["list_id", "item_id"], right_on=["list_id", "next_item"])
    hits = int(hit_pairs["list_id"].nunique())
    return {"k": k, "lists": int(len(joined)), "hits": hits, "hr": hits / len(joined)}


# ---------------------------------------------------------------------------------------------- evidently


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


# ---------------------------------------------------------------------------------------------- monitor


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


# ---------------------------------------------------------------------------------------------- output


def summary_html(result: MonitorResult) -> str:
    """A static HTML block (no script needed to show it): the decision and the per-column drift table."""
    esc = html.escape
    color = {"drift": "#b42318", "no drift": "#067647"}.get(result.status, "#555")
    rows = []
    for name in MONITORED_COLUMNS:
        c = result.columns.get(name)
        if c is None:
            continue
        mark = "DRIFT" if c["drifted"] else "ok"
        style = ' style="background:#fee4e2"' if c["drifted"] else ""
        rows.append(
            f"<tr{style}><td>{esc(name)}</td><td>{esc(str(c['method']))}</td>"
            f"<td>{c['score']:.4f}</td><td>{c['threshold']:g}</td><td><b>{mark}</b></td></tr>"
        )
    extra = []
    if result.prediction:
        p = result.prediction
        extra.append(
            f"<li>prediction drift (served vs interacted categories): {p['score']:.4f} "
            f"({'DRIFT' if p['drifted'] else 'ok'}, {p['method']}, threshold {p['threshold']:g})</li>"
        )
    if result.quality:
        q = result.quality
        hr = "n/a" if q["hr"] is None else f"{q['hr']:.4f}"
        extra.append(f"<li>online HR@{q['k']}: {hr} over {q['lists']} served lists (offline {q['offline_hr']})</li>")
    unknown = result.unknown_item_share
    if unknown:
        extra.append(
            f"<li>unknown items: {unknown['current']:.1%} of the window (reference {unknown['reference']:.1%})</li>"
        )
    return (
        '<div id="drlrec-drift-summary" style="font-family:sans-serif;margin:16px 24px;">'
        f"<h1>drlrec drift report: window {esc(result.window)}</h1>"
        f'<p style="font-size:20px;color:{color}"><b>{esc(result.decision_line())}</b></p>'
        f"<p>reference rows {result.rows['reference']:,}; current rows {result.rows['current']:,}</p>"
        f"<ul>{''.join(extra)}</ul>"
        '<table id="drift-table" border="1" cellpadding="4" style="border-collapse:collapse">'
        "<tr><th>column</th><th>method</th><th>score</th><th>threshold</th><th>drift</th></tr>"
        f"{''.join(rows)}</table></div>"
    )


def write_report(run: MonitorRun, out_root: str | Path) -> Path:
    """Write <out_root>/<window>/{report.html, report.json, decision.txt} (and prediction_drift.html when
    there is one); return the folder. report.html is Evidently's self-contained report with the summary
    and drift table above it."""
    result = run.result
    folder = Path(out_root) / result.window
    folder.mkdir(parents=True, exist_ok=True)
    summary = summary_html(result)
    if run.data_snapshot is not None:
        page = run.data_snapshot.get_html_str(as_iframe=False)
        marker = page.find("<body")
        cut = page.find(">", marker) + 1 if marker >= 0 else 0
        page = page[:cut] + summary + page[cut:]
    else:
        page = f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{summary}</body></html>"
    with atomic_path(folder / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    if run.prediction_snapshot is not None:
        with atomic_path(folder / "prediction_drift.html") as tmp:
            tmp.write_text(run.prediction_snapshot.get_html_str(as_iframe=False), encoding="utf-8")
    payload = result.to_dict()
    if run.data_snapshot is not None:
        payload["evidently"] = json.loads(json.dumps(run.data_snapshot.dict(), default=str))
    write_json(folder / "report.json", payload)
    write_text(folder / "decision.txt", result.decision_line() + "\n")
    return folder


# ---------------------------------------------------------------------------------------------- files


def training_reference(params) -> Reference:
    """The reference: events.parquet rows in the training period of the temporal split (params)."""
    from drlrec.data.ingest import read_events
    from drlrec.features.split import split_boundaries

    events = read_events(params.paths.events, params.ingest)
    bounds = split_boundaries(params.ingest.window_start, params.featurize)
    ts = events["timestamp"].to_numpy()
    train = events[(ts >= bounds.window_start) & (ts < bounds.train_end)]
    if train.empty:
        raise InputError(f"{params.paths.events}: no events in the training period (before {bounds.train_end})")
    return build_reference(train, params.monitor, seed=params.base.seed)


class ChampionContext(NamedTuple):
    """What monitoring needs from the model in production."""

    known_items: np.ndarray  # sorted raw item ids of its vocabulary
    offline_hr: float | None  # its offline next-item HR@k (online quality baseline), when recorded
    source: str  # where these came from


def champion_context(params, tracking_uri: str | None = None, use_registry: bool = True) -> ChampionContext:
    """The champion's vocabulary and offline HR@k from the registry; without a champion (or with
    use_registry false) the vocabulary of paths.features and the HR@k of paths.metrics."""
    from drlrec.errors import DrlrecError

    key = f"hr_at_{params.monitor.quality_k}"
    if use_registry:
        try:
            from drlrec.registry import load_champion

            bundle = load_champion(tracking_uri=tracking_uri)
            hr = bundle.metrics.get(f"next_item/{key}")
            return ChampionContext(
                np.asarray(bundle.item_vocab.raw_ids, dtype=np.int64),
                None if hr is None else float(hr),
                f"champion version {bundle.version}",
            )
        except DrlrecError:
            pass
    from drlrec.features.featurize import ITEM_VOCAB_FILE
    from drlrec.features.vocab import Vocab

    vocab_path = Path(params.paths.features) / ITEM_VOCAB_FILE
    if not vocab_path.is_file():
        raise InputError(f"{vocab_path}: no item vocabulary and no champion (run the pipeline first)")
    offline_hr = None
    metrics_path = Path(params.paths.metrics)
    if metrics_path.is_file():
        entry = json.loads(metrics_path.read_text()).get("metrics", {}).get("next_item", {}).get(key)
        if entry is not None:
            offline_hr = float(entry["value"] if isinstance(entry, dict) else entry)
    return ChampionContext(Vocab.load(vocab_path).raw_ids, offline_hr, str(vocab_path))


def load_window(params, current: str | Path | None = None, window_days: float | None = None) -> pd.DataFrame:
    """The current window: the last window_days (default monitor.window_days) of the interaction log
    (default paths.interactions) or of a raw batch."""
    days = params.monitor.window_days if window_days is None else window_days
    return window_of(read_interactions(current or params.paths.interactions), days)


def monitor_window(
    params,
    window: pd.DataFrame,
    exposures: str | Path | None = None,
    out_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    use_registry: bool = True,
) -> tuple[MonitorRun, Path, ChampionContext]:
    """Report on one window against the training period and write it; returns the run, the report folder
    and where the champion's vocabulary came from."""
    champion = champion_context(params, tracking_uri=tracking_uri, use_registry=use_registry)
    run = monitor(
        training_reference(params), window, champion.known_items, params.monitor, params.featurize,
        exposures=read_exposures(exposures or params.paths.exposures), offline_hr=champion.offline_hr,
    )  # fmt: skip
    return run, write_report(run, out_dir or params.paths.monitoring), champion
