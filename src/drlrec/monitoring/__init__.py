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

The package: `columns` (the monitored table), `quality` (online HR@k from the serving logs), `drift` (the
Evidently comparison and the decision), `report` (the files of a window), `window` (a window against the
champion's training period, from the project's files), `retrain` (what a drift does: debounce, append the
new interactions to the raw data, version it, slide the training window) and `cycle` (one monitoring
cycle, which the Prefect flow only drives).
"""

from __future__ import annotations

from drlrec.data.logs import sort_events
from drlrec.monitoring.columns import (
    CATEGORICAL_COLUMNS,
    MONITORED_COLUMNS,
    NUMERICAL_COLUMNS,
    OTHER,
    Reference,
    build_reference,
    monitored_frame,
    window_of,
)
from drlrec.monitoring.drift import DriftTable, MonitorResult, MonitorRun, monitor, run_drift
from drlrec.monitoring.quality import exposures_long, online_quality
from drlrec.monitoring.report import summary_html, write_report
from drlrec.monitoring.window import (
    ChampionContext,
    champion_context,
    load_window,
    monitor_window,
    training_reference,
)

__all__ = [
    "CATEGORICAL_COLUMNS", "MONITORED_COLUMNS", "NUMERICAL_COLUMNS", "OTHER", "ChampionContext", "DriftTable",
    "MonitorResult", "MonitorRun", "Reference", "build_reference", "champion_context", "exposures_long",
    "load_window", "monitor", "monitor_window", "monitored_frame", "online_quality", "run_drift", "sort_events",
    "summary_html", "training_reference", "window_of", "write_report",
]
