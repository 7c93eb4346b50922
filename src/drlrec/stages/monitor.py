"""`drlrec monitor`: a drift report of a window of interactions against the training period."""

from __future__ import annotations

from pathlib import Path

from drlrec.config import Params
from drlrec.stages.common import say


def monitor_stage(
    params: Params,
    current: str | Path | None = None,
    window_days: float | None = None,
    exposures: str | Path | None = None,
    out_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    use_registry: bool = True,
):
    """Drift report of a window of interactions (default: the last monitor.window_days of
    paths.interactions) against the training period; returns (MonitorResult, report folder)."""
    from drlrec import monitoring

    current_path = Path(current or params.paths.interactions)
    window = monitoring.load_window(params, current_path, window_days)
    run, folder, champion = monitoring.monitor_window(
        params, window, exposures=exposures, out_dir=out_dir, tracking_uri=tracking_uri, use_registry=use_registry
    )
    say(f"monitor: {len(window):,} interactions of {current_path} vs the training period ({champion.source})")
    say(f"monitor: {run.result.decision_line()}")
    say(f"monitor: report {folder / 'report.html'}")
    return run.result, folder
