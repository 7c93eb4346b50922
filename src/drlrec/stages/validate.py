"""`drlrec validate` (DVC stage validate): the Great Expectations suite over events.parquet."""

from __future__ import annotations

from pathlib import Path

from drlrec.config import Params
from drlrec.stages.common import say


def validate_stage(params: Params, events_path: str | Path | None = None, out_dir: str | Path | None = None):
    """Validate events.parquet with the GX suite; write validation.json; raise ValidationFailed on failure."""
    from drlrec.atomic import write_json
    from drlrec.data.validate import validate_events
    from drlrec.errors import ValidationFailed

    events = Path(events_path or params.paths.events)
    out = (
        Path(params.paths.validation)
        if out_dir is None
        else Path(out_dir) / Path(params.paths.validation).name
    )
    result = validate_events(
        events, Path(params.paths.expectations), params.validate, params.ingest, progress=params.base.progress
    )
    write_json(out, result.to_dict())  # no duration in it: a DVC output is a function of its inputs only
    if out_dir is None:
        from drlrec import runinfo

        runinfo.record(params, "validate", seconds=result.seconds, success=result.success)
    if not result.success:
        raise ValidationFailed(f"{events} failed validation: {result.first_failure()} (details: {out})")
    say(f"validate: {events} passed {result.evaluated} expectations on {result.rows:,} rows -> {out}")
    return result
