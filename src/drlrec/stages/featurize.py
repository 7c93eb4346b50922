"""`drlrec featurize` (DVC stage featurize): events to the split transition arrays, streamed."""

from __future__ import annotations

from pathlib import Path

from drlrec.config import Params
from drlrec.stages.common import say


def featurize_stage(params: Params, events_path: str | Path | None = None, out_dir: str | Path | None = None):
    """events.parquet -> DIR/{train,valid,test}/ (one .npy per field) + vocabularies + train statistics +
    featurize_report.json.

    Streams: the globals are fitted from counts, then groups of whole users of about featurize.chunk_rows
    events are featurized and appended to the split folders, so memory does not grow with the file.
    Returns the report (a dict).
    """
    from drlrec.features.featurize import featurize_file
    from drlrec.features.split import SPLITS

    events = Path(events_path or params.paths.events)
    out = Path(out_dir or params.paths.features)
    report = featurize_file(events, params.featurize, params.ingest.window_start, out, progress=params.base.progress)
    counts = ", ".join(f"{name} {report['splits'][name]['transitions']:,}" for name in SPLITS)
    say(
        f"featurize: {report['events']:,} events of {report['users']:,} users -> {counts} transitions "
        f"(seq_len {report['seq_len']}, {report['items_in_vocab']:,} items in vocab) -> {out}"
    )
    return report
