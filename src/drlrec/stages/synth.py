"""`drlrec synth`: a generated Taobao-like log (or a drifted period of one)."""

from __future__ import annotations

from pathlib import Path

from drlrec.config import Params
from drlrec.stages.common import say


def synth_stage(
    params: Params,
    out: str | Path | None = None,
    users: int | None = None,
    seed: int | None = None,
    calibrate: str | Path | None = None,
    if_missing: bool = False,
    drift: bool = False,
    scale: str = "default",
    order: str | None = None,
) -> Path:
    """Generate a Taobao-like log to `out` (default paths.raw_data); return the path written.

    `scale="full"` takes the real file's size (synth.FULL_SCALE: about 100M rows; `users` still overrides
    the user count); `order` overrides synth.order, the row order written.

    With `drift`, generate the shifted period of params drift: after the synth: window instead (default
    output <paths.artifacts>/synth_drift.csv, so the raw data is never overwritten by accident)."""
    import dataclasses

    from drlrec.data import synth
    from drlrec.errors import ConfigError

    if drift:
        default_out = Path(params.paths.artifacts) / "synth_drift.csv"
    else:
        default_out = Path(params.paths.raw_data)
    out_path = Path(out or default_out)
    if if_missing and out_path.exists():
        say(f"synth: {out_path} exists, keeping it (--if-missing)")
        return out_path
    cfg = params.synth
    if calibrate is not None:
        from drlrec.data.ingest import read_events

        fitted = synth.calibrate(read_events(calibrate, params.ingest), cfg)
        say(f"synth: parameters fitted on {calibrate}:")
        for key, value in fitted.items():
            say(f"  {key}: {value}")
        cfg = dataclasses.replace(cfg, **fitted)
    if scale == "full":
        cfg = dataclasses.replace(cfg, **synth.FULL_SCALE)
    elif scale != "default":
        raise ConfigError(f"--scale must be default or full (got {scale!r})")
    if users is not None:
        cfg = dataclasses.replace(cfg, users=users)
    if order is not None:
        cfg = dataclasses.replace(cfg, order=order)
    seed = params.base.seed if seed is None else seed
    if drift:
        table = synth.generate_drift(cfg, params.drift, seed=seed, progress=params.base.progress)
        period = synth.drift_period(cfg, params.drift)
        what = f"a {period.days}-day shifted period from {period.start} ({params.drift})"
    else:
        table = synth.generate(cfg, seed=seed, progress=params.base.progress)
        what = f"{cfg.users:,} users"
    table = synth.order_rows(table, cfg.order)
    synth.write_csv(table, out_path)
    say(f"synth: wrote {table.num_rows:,} events for {what} to {out_path} (row order: {cfg.order})")
    return out_path
