"""One window against the champion's training period, from the project's files and registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from drlrec.data.logs import read_exposures, read_interactions
from drlrec.errors import InputError
from drlrec.monitoring.columns import Reference, build_reference, window_of
from drlrec.monitoring.drift import MonitorRun, monitor
from drlrec.monitoring.report import write_report


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
