"""`drlrec stats`: the profile of any log (raw CSV or events.parquet)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drlrec.config import Params


def stats_stage(params: Params, path: str | Path, as_json: bool = False) -> dict[str, Any]:
    """Print a profile of any log (raw CSV or events.parquet) and return it."""
    from drlrec.data.ingest import read_events
    from drlrec.data.stats import format_profile, profile_log

    profile = profile_log(read_events(path, params.ingest, keep_out_of_window=True))
    print(json.dumps(profile, indent=2) if as_json else format_profile(profile, title=str(path)))
    return profile
