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
    result = validate_events(
        events, Path(params.paths.expectations), params.validate, params.ingest, progress=params.base.progress
    )
    write_json(out, result.to_dict())
    if not result.success:
        raise ValidationFailed(f"{events} failed validation: {result.first_failure()} (details: {out})")
    _say(f"validate: {events} passed {result.evaluated} expectations on {result.rows:,} rows -> {out}")
    return result


# ---------------------------------------------------------------------------------------------- featurize


def featurize_stage(params: Params, events_path: str | Path | None = None, out_dir: str | Path | None = None):
    """events.parquet -> DIR/{train,valid,test}.npz + vocabularies + train statistics + featurize_report.json.

    Splits are built and written one at a time, so only one split's arrays are in memory besides the
    per-event features. Returns the report (a dict).
    """
    from drlrec.atomic import write_json
    from drlrec.features.featurize import (
        REPORT_FILE,
        build_transitions,
        featurize,
        featurize_report,
        load_events,
    )
    from drlrec.features.split import SPLITS
    from drlrec.features.transitions import save_split, split_path

    events = Path(events_path or params.paths.events)
    out = Path(out_dir or params.paths.features)
    result = featurize(load_events(events), params.featurize, params.ingest.window_start)
    result.globals.save(out)
    for split in SPLITS:
        save_split(split_path(out, split), build_transitions(result, split))
    report = featurize_report(result)
    write_json(out / REPORT_FILE, report)
    counts = ", ".join(f"{name} {report['splits'][name]['transitions']:,}" for name in SPLITS)
    _say(
        f"featurize: {report['events']:,} events of {report['users']:,} users -> {counts} transitions "
        f"(seq_len {report['seq_len']}, {report['items_in_vocab']:,} items in vocab) -> {out}"
    )
    return report


# ---------------------------------------------------------------------------------------------- train


def _fingerprint(*parts: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_stage(params: Params, features_dir: str | Path | None = None, out_dir: str | Path | None = None):
    """Train the DQN-LSTM on the featurize outputs; write DIR/model.pt, meta.json, curves, and
    train_metrics.json; log everything to MLflow. A killed run resumes from its last checkpoint."""
    import dataclasses
    import shutil

    import numpy as np

    from drlrec.atomic import write_json
    from drlrec.config import params_to_dict
    from drlrec.features.featurize import CATEGORY_VOCAB_FILE, ITEM_VOCAB_FILE, REPORT_FILE, TrainGlobals
    from drlrec.features.transitions import load_split
    from drlrec.models.dqn_lstm import ScoringModule, pack_states
    from drlrec.plots import training_curves
    from drlrec.rl.logged import state_batch
    from drlrec.tracking import start_run
    from drlrec.train import fit_dqn_lstm

    features = Path(features_dir or params.paths.features)
    out = Path(out_dir or params.paths.model)
    train, valid = load_split(features, "train"), load_split(features, "valid")
    report = json.loads((features / REPORT_FILE).read_text())
    globals_ = TrainGlobals.load(features)
    n_items, n_categories = globals_.item_vocab.size, globals_.category_vocab.size
    config = params_to_dict(params)
    key = _fingerprint(config["model"], config["train"], config["base"]["seed"], report)
    checkpoint = Path(params.paths.checkpoints) / "dqn_lstm.pt"
    if params.train.mode != "offline":
        from drlrec.errors import ConfigError

        raise ConfigError("train.mode=online runs through `drlrec train --set train.mode=online` once the simulator lands")

    with start_run("train-dqn_lstm", tags={"model": "dqn_lstm", "stage": "train"}) as run:
        run.log_params(config)
        fit = fit_dqn_lstm(
            train, valid, n_items, n_categories, params.model, params.train, params.base.seed,
            checkpoint_path=checkpoint, resume_key=key, track=run.log_metrics, progress=params.base.progress,
        )
        out.mkdir(parents=True, exist_ok=True)
        fit.model.save(out / "model.pt")
        curves = training_curves(
            fit.train.history, fit.train.evaluations, out / "training_curves.png", f"DQN-LSTM ({params.model.variant}, {params.model.head})"
        )
        meta = {
            "model": "dqn_lstm",
            "n_items": n_items,
            "n_categories": n_categories,
            "seq_len": train.seq_len,
            "score_with": fit.model.score_with,
            "mlflow_run_id": run.run_id,
            "fingerprint": key,
            "model_config": dataclasses.asdict(params.model),
        }
        write_json(out / "meta.json", meta)
        metrics = {
            **fit.valid_metrics,
            **{k.replace("valid/", "valid_popularity/"): v for k, v in fit.popularity_metrics.items()},
            "steps": fit.train.steps_done,
            "best_step": fit.train.best_step,
            "stopped_early": fit.train.stopped_early,
        }
        write_json(params.paths.train_metrics, {"model": "dqn_lstm", "protocol": "next item, full ranking over all items, validation period", **metrics})
        run.log_metrics({**fit.valid_metrics, **{k.replace("valid/", "valid_popularity/"): v for k, v in fit.popularity_metrics.items()}, "train/seconds": fit.seconds})
        run.log_artifact(curves)
        run.log_artifact(out / "meta.json")
        run.log_dict(config, "params.json")
        for name in (ITEM_VOCAB_FILE, CATEGORY_VOCAB_FILE):
            run.log_artifact(features / name, artifact_path="vocab")
        example = state_batch(valid if valid.num_transitions else train, np.arange(min(4, max(valid.num_transitions, 1))))
        run.log_torch_model(ScoringModule(fit.model.network, train.seq_len, fit.model.score_with), pack_states(example))
    shutil.rmtree(params.paths.checkpoints, ignore_errors=True)  # finished: nothing to resume
    _say(
        f"train: {fit.train.steps_done} steps in {fit.seconds:.0f}s; valid NDCG@10 {fit.valid_metrics['valid/ndcg_at_10']:.4f} "
        f"(popularity {fit.popularity_metrics['valid/ndcg_at_10']:.4f}); MLflow run {run.run_id} -> {out}"
    )
    return fit
