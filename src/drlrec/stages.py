"""Stage shells: `<stage>_stage(params, ...)` reads inputs, calls the core function, writes outputs atomically.

The CLI, the DVC stages and the Prefect tasks all call these functions, so a stage behaves the same
whichever driver runs it. Core logic lives in drlrec.data / drlrec.features / ...; nothing here computes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from drlrec.config import Params


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- synth


def synth_stage(
    params: Params,
    out: str | Path | None = None,
    users: int | None = None,
    seed: int | None = None,
    calibrate: str | Path | None = None,
    if_missing: bool = False,
) -> Path:
    """Generate a Taobao-like log to `out` (default paths.raw_data); return the path written."""
    import dataclasses

    from drlrec.data import synth

    out_path = Path(out or params.paths.raw_data)
    if if_missing and out_path.exists():
        _say(f"synth: {out_path} exists, keeping it (--if-missing)")
        return out_path
    cfg = params.synth
    if calibrate is not None:
        from drlrec.data.ingest import read_events

        fitted = synth.calibrate(read_events(calibrate, params.ingest), cfg)
        _say(f"synth: parameters fitted on {calibrate}:")
        for key, value in fitted.items():
            _say(f"  {key}: {value}")
        cfg = dataclasses.replace(cfg, **fitted)
    if users is not None:
        cfg = dataclasses.replace(cfg, users=users)
    table = synth.generate(cfg, seed=params.base.seed if seed is None else seed, progress=params.base.progress)
    synth.write_csv(table, out_path)
    _say(f"synth: wrote {table.num_rows:,} events for {cfg.users:,} users to {out_path}")
    return out_path


# ---------------------------------------------------------------------------------------------- stats


def stats_stage(params: Params, path: str | Path, as_json: bool = False) -> dict[str, Any]:
    """Print a profile of any log (raw CSV or events.parquet) and return it."""
    from drlrec.data.ingest import read_events
    from drlrec.data.stats import format_profile, profile_log

    profile = profile_log(read_events(path, params.ingest, keep_out_of_window=True))
    print(json.dumps(profile, indent=2) if as_json else format_profile(profile, title=str(path)))
    return profile


# ---------------------------------------------------------------------------------------------- ingest


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
    _say(
        f"ingest: read {result.rows_read:,} rows, kept {result.rows_kept:,}, "
        f"quarantined {result.rows_quarantined:,} ({by_reason}) in {result.seconds:.1f}s -> {events}"
    )
    return result


# ---------------------------------------------------------------------------------------------- validate


def validate_stage(params: Params, events_path: str | Path | None = None, out_dir: str | Path | None = None):
    """Validate events.parquet with the GX suite; write validation.json; raise ValidationFailed on failure."""
    from drlrec.atomic import write_json
    from drlrec.data.validate import validate_events
    from drlrec.errors import ValidationFailed

    events = Path(events_path or params.paths.events)
    out = Path(params.paths.validation) if out_dir is None else Path(out_dir) / Path(params.paths.validation).name
    result = validate_events(events, Path(params.paths.expectations), params.validate, params.ingest)
    write_json(out, result.to_dict())
    if not result.success:
        raise ValidationFailed(f"{events} failed validation: {result.first_failure()} (details: {out})")
    _say(f"validate: {events} passed {result.evaluated} expectations on {result.rows:,} rows -> {out}")
    return result
