"""`drlrec ingest` (DVC stage ingest): the raw log streamed into typed events and quarantined rows."""

from __future__ import annotations

from pathlib import Path

from drlrec.config import Params
from drlrec.stages.common import say


def ingest_stage(params: Params, input_path: str | Path | None = None, out_dir: str | Path | None = None):
    """Stream the raw log into events.parquet + quarantine.parquet + ingest_report.json."""
    from drlrec.data.ingest import ingest_file

    paths = params.paths
    if out_dir is None:
        events, quarantine, report = Path(paths.events), Path(paths.quarantine), Path(paths.ingest_report)
    else:
        out_dir = Path(out_dir)
        events = out_dir / Path(paths.events).name
        quarantine = out_dir / Path(paths.quarantine).name
        report = out_dir / Path(paths.ingest_report).name
    result = ingest_file(
        Path(input_path or paths.raw_data),
        events_path=events,
        quarantine_path=quarantine,
        report_path=report,
        cfg=params.ingest,
        progress=params.base.progress,
    )
    by_reason = ", ".join(f"{k} {v:,}" for k, v in result.quarantined_by_reason.items() if v) or "none"
    say(
        f"ingest: read {result.rows_read:,} rows, kept {result.rows_kept:,}, "
        f"quarantined {result.rows_quarantined:,} ({by_reason}) in {result.seconds:.1f}s -> {events}"
    )
    if out_dir is None:
        from drlrec import runinfo

        runinfo.record(params, "ingest", seconds=result.seconds, rows_read=result.rows_read)
    return result
