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
    _say(f"synth: wrote {table.num_rows:,} events for {what} to {out_path} (row order: {cfg.order})")
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
    if out_dir is None:
        from drlrec import runinfo

        runinfo.record(params, "ingest", seconds=result.seconds, rows_read=result.rows_read)
    return result


# ---------------------------------------------------------------------------------------------- validate


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
    _say(f"validate: {events} passed {result.evaluated} expectations on {result.rows:,} rows -> {out}")
    return result


# ---------------------------------------------------------------------------------------------- featurize


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
    _say(
        f"featurize: {report['events']:,} events of {report['users']:,} users -> {counts} transitions "
        f"(seq_len {report['seq_len']}, {report['items_in_vocab']:,} items in vocab) -> {out}"
    )
    return report


# ---------------------------------------------------------------------------------------------- train


def _fingerprint(*parts: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_stage(
    params: Params,
    features_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    distributed: bool = False,
):
    """Train the DQN-LSTM on the featurize outputs; write DIR/model.pt, meta.json, curves, and
    train_metrics.json; log everything to MLflow. A killed run resumes from its last checkpoint.

    `distributed` (run under torchrun): DistributedDataParallel over the torchrun processes (see
    drlrec.distributed); rank 0 writes the outputs and logs to MLflow, train_metrics.json gains `ddp`."""
    if not distributed:
        return _train_stage(params, features_dir, out_dir, None)
    from drlrec.distributed import init_distributed, shutdown
    from drlrec.errors import ConfigError

    if params.train.mode != "offline":
        raise ConfigError("--distributed trains on logged transitions: set train.mode=offline")
    ddp = init_distributed(params.scale, params.train.device)
    try:
        return _train_stage(params, features_dir, out_dir, ddp)
    finally:
        shutdown(ddp)


def online_training_env(params: Params, features: str | Path):
    """The SimulatedEnv that `train.mode: online` trains and evaluates against: the user simulator fitted
    on the train split of `features` (seed base.seed), episodes of train.episode_max_steps with
    train.reward."""
    import dataclasses

    from drlrec.rl.envs import simulated_env
    from drlrec.rl.simulator import fit_simulator_from_features

    simulator = fit_simulator_from_features(features, params.simulator, params.base.seed)
    env_cfg = dataclasses.replace(params.env, max_steps=params.train.episode_max_steps, reward=params.train.reward)
    return simulated_env(features, simulator, env_cfg, params.featurize)


def _train_stage(params: Params, features_dir: str | Path | None, out_dir: str | Path | None, ddp):
    import dataclasses
    import shutil

    import torch

    from drlrec import runinfo
    from drlrec.atomic import write_json
    from drlrec.bundle import write_bundle
    from drlrec.config import params_to_dict
    from drlrec.devices import resolve_device
    from drlrec.features.featurize import CATEGORY_VOCAB_FILE, ITEM_VOCAB_FILE, REPORT_FILE
    from drlrec.mlflow_model import log_recommender
    from drlrec.models.base import TrainingData
    from drlrec.models.dqn_lstm import DQNLSTM
    from drlrec.plots import training_curves
    from drlrec.rl.dqn import fit_dqn_lstm
    from drlrec.tracking import scratch_dir, start_run

    features = Path(features_dir or params.paths.features)
    out = Path(out_dir or params.paths.model)
    data = TrainingData.load(features)
    train = data.train
    report = json.loads((features / REPORT_FILE).read_text())
    n_items, n_categories = data.n_items, data.n_categories
    torch.manual_seed(params.base.seed)  # the initial weights depend on the seed only
    model = DQNLSTM(n_items, n_categories, params.model,
                    device=resolve_device(params.train.device) if ddp is None else ddp.device)
    config = params_to_dict(params)
    key = _fingerprint(config["model"], config["train"], config["base"]["seed"], report)
    checkpoint = Path(params.paths.checkpoints) / "dqn_lstm.pt"
    if ddp is not None:  # each rank resumes its own shard's priorities and RNGs, only at the same world size
        key = _fingerprint(key, ddp.world_size, config["scale"]["ddp_lr_scaling"])
        checkpoint = checkpoint.with_name(f"dqn_lstm.rank{ddp.rank}.pt")
        if not ddp.is_main:
            return fit_dqn_lstm(model, data, params.train, params.base.seed, checkpoint_path=checkpoint,
                                resume_key=key, ddp=ddp)
    online = params.train.mode == "online"
    with start_run(f"train-dqn_lstm-{params.train.mode}", tags={"model": "dqn_lstm", "stage": "train", "mode": params.train.mode}) as run:
        run.log_params(config)
        _log_events_input(run, params, "train")
        env = None
        if online:
            _say("train (online): fitting the user simulator on the train split")
            env = online_training_env(params, features)
        fit = fit_dqn_lstm(
            model, data, params.train, params.base.seed, env=env, checkpoint_path=None if online else checkpoint,
            resume_key=key, track=run.log_metrics, progress=params.base.progress, ddp=ddp,
        )
        out.mkdir(parents=True, exist_ok=True)
        fit.model.save(out / "model.pt")
        title = f"DQN-LSTM ({params.model.variant}, {params.model.head}, {params.train.mode})"
        if online:
            curves = training_curves(
                fit.train.history, fit.train.evaluations, out / "online_curve.png",
                f"{title}\nepisode_reward / ctr: training episodes, with epsilon exploration; "
                f"greedy_return: epsilon 0 on the same {params.train.online_eval_sessions} seeded sessions",
                eval_metric="online/greedy_return", x_key="episodes", kept_step=fit.train.best_step,
            )
            recent = {}
        else:
            recent = _recent_items_validation(params, data)  # the no-learning levels on the same events
            levels = {"popularity": fit.popularity_metrics["valid/ndcg_at_10"], "recent_items": recent["valid/ndcg_at_10"]}
            hard = params.train.target_update == "hard"
            curves = training_curves(
                fit.train.history, fit.train.evaluations, out / "training_curves.png",
                f"{title}\nvalidation: next item, full ranking, {params.train.eval_max_events:,} seeded events, "
                f"state {train.seq_len} events",
                kept_step=fit.train.best_step, baselines=levels,
                target_update_every=params.train.target_update_every if hard else None,
            )
        meta = {
            "model": "dqn_lstm",
            "n_items": n_items,
            "n_categories": n_categories,
            "seq_len": train.seq_len,
            "score_with": fit.model.score_with,
            "served_head": fit.served_head,
            "valid_by_head": fit.valid_by_head,
            "fingerprint": key,
            "model_config": dataclasses.asdict(params.model),
        }
        write_json(out / "meta.json", meta)  # no run id or duration: a DVC output (drlrec.runinfo has them)
        model_md5 = runinfo.file_md5(out / "model.pt")
        run.set_tags({"model_md5": model_md5})
        metrics = {
            **fit.valid_metrics,
            **{k.replace("valid/", "valid_popularity/"): v for k, v in fit.popularity_metrics.items()},
            **{k.replace("valid/", "valid_recent_items/"): v for k, v in recent.items()},
            "mode": params.train.mode,
            "served_head": fit.served_head,
            "steps": fit.train.steps_done,
            "best_step": fit.train.best_step,
            **(
                {
                    "online/greedy_return_first": fit.train.evaluations[0]["online/greedy_return"],
                    "online/greedy_return_last": fit.train.evaluations[-1]["online/greedy_return"],
                    "online/greedy_return_best": fit.train.best_metric,  # the weights the model keeps
                    "online/episodes": fit.train.history["episodes"][-1],
                }
                if online and fit.train.evaluations
                else {}
            ),
            "stopped_early": fit.train.stopped_early,
            **({"ddp": fit.train.ddp} if ddp is not None else {}),
        }
        write_json(
            params.paths.train_metrics,
            {
                "model": "dqn_lstm",
                "protocol": "next item, full ranking over all items, validation period",
                **metrics,
            },
        )
        # the kept weights' validation figures: under best/ at the step they were measured (logged as
        # valid/... without a step they would be a spurious point at step 0 of the validation curves)
        run.log_metrics({f"best/{k}": v for k, v in fit.valid_metrics.items()}, step=fit.train.best_step)
        run.log_metrics(
            {
                "best/step": fit.train.best_step,
                **{k.replace("valid/", "valid_popularity/"): v for k, v in fit.popularity_metrics.items()},
                **{k.replace("valid/", "valid_recent_items/"): v for k, v in recent.items()},
                "train/seconds": fit.seconds,
                "train/transitions_per_s": fit.train.transitions_per_s,
                **(
                    {"ddp/world_size": ddp.world_size, "ddp/effective_batch_size": fit.train.ddp["effective_batch_size"]}
                    if ddp is not None
                    else {}
                ),
            }
        )
        run.log_artifact(curves)
        run.log_artifact(out / "meta.json")
        run.log_dict(config, "params.json")
        for name in (ITEM_VOCAB_FILE, CATEGORY_VOCAB_FILE):
            run.log_artifact(features / name, artifact_path="vocab")
        # the one MLflow model of this training: pyfunc recommender + native torch flavour, the bundle as its
        # artifacts (the register stage registers this object; drlrec.mlflow_model)
        scratch = scratch_dir()
        try:
            logged = log_recommender(write_bundle(out, features, params.featurize, scratch / "bundle"))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        run.set_tags({"model_uri": logged.model_uri})
        if out == Path(params.paths.model):
            runinfo.record(params, "train", mlflow_run_id=run.run_id, model_md5=model_md5, model_uri=logged.model_uri,
                           seconds=fit.seconds, transitions_per_s=fit.train.transitions_per_s)
    shutil.rmtree(params.paths.checkpoints, ignore_errors=True)  # finished: nothing to resume
    _say(
        f"train: {fit.train.steps_done} steps in {fit.seconds:.0f}s ({fit.train.transitions_per_s:,.0f} transitions/s in "
        f"the update loop); valid NDCG@10 "
        + ", ".join(f"{h}-head {m['valid/ndcg_at_10']:.4f}" for h, m in fit.valid_by_head.items())
        + f" (served: {fit.served_head}; popularity {fit.popularity_metrics['valid/ndcg_at_10']:.4f}); "
        f"MLflow run {run.run_id} -> {out}"
    )
    return fit


def _log_events_input(run, params: Params, context: str) -> None:
    """Declare paths.events as the run's input dataset (its md5, as DVC records it), tagged with the raw
    log's DVC md5 (data.dvc); nothing when there is no events file (a stage run on features alone)."""
    from drlrec.registry import data_hash

    events = Path(params.paths.events)
    if events.is_file():
        run.log_input_file(events, "events", context, tags={"raw_data_dvc_md5": data_hash("data.dvc")})


def _recent_items_validation(params: Params, data) -> dict[str, float]:
    """`recent_items` (no learning) on the validation events the DQN-LSTM's evaluations use."""
    from drlrec.evaluate import validation_evaluator
    from drlrec.models.recent_items import RecentItems

    evaluate, _ = validation_evaluator(data.valid, params.train.eval_max_events, params.base.seed)
    return evaluate(RecentItems(data.n_items, data.n_categories, params.baselines).fit(data))


def train_baseline_stage(params: Params, name: str, features_dir: str | Path | None = None, out_dir: str | Path | None = None):
    """`drlrec train --model NAME` for a comparison model: fit it on the train split with its budget from
    params (baselines:), save it to DIR (default: artifacts/models/NAME; `load_model` reads it back),
    write DIR/train_metrics.json with the same validation NDCG@10 as the DQN-LSTM's, log to MLflow."""
    import dataclasses
    import time

    from drlrec.atomic import write_json
    from drlrec.errors import ConfigError
    from drlrec.evaluate import validation_evaluator
    from drlrec.model_factory import MODELS, fit_model
    from drlrec.models.base import TrainingData
    from drlrec.tracking import start_run

    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    features = Path(features_dir or params.paths.features)
    out = Path(out_dir or Path(params.paths.artifacts) / "models" / name)
    data = TrainingData.load(features)
    with start_run(f"train-{name}", tags={"model": name, "stage": "train"}) as run:
        run.log_params({"model": name, "baselines": dataclasses.asdict(params.baselines), "base.seed": params.base.seed})
        started = time.perf_counter()
        model = fit_model(name, data, params, progress=params.base.progress)
        seconds = time.perf_counter() - started
        evaluate, _ = validation_evaluator(data.valid, params.train.eval_max_events, params.base.seed)
        metrics = evaluate(model)
        model.save(out)
        write_json(out / "train_metrics.json", {"model": name, "protocol": "next item, full ranking over all items, validation period", **metrics, "fit_seconds": round(seconds, 2)})
        run.log_metrics({**metrics, "train/seconds": seconds})
        run.log_artifact(out / "train_metrics.json")
    _say(f"train: {name} fitted in {seconds:.0f}s; valid NDCG@10 {metrics['valid/ndcg_at_10']:.4f}; MLflow run {run.run_id} -> {out}")
    return model, metrics


# ---------------------------------------------------------------------------------------------- evaluate


class _EvalInputs:
    """The featurize outputs evaluation needs: train/valid/test splits, vocab sizes, item statistics."""

    def __init__(self, features: Path) -> None:
        import numpy as np

        from drlrec.features.transitions import load_split
        from drlrec.models.base import TrainingData, item_category_map

        self.features = features
        self.data = TrainingData.load(features)
        self.test = load_split(features, "test")
        n_items = self.data.n_items
        self.item_category = item_category_map([self.data.train, self.data.valid, self.test], n_items)
        self.item_counts = np.bincount(self.data.train.action_item.astype(np.int64), minlength=n_items)[
            :n_items
        ]


def _evaluate_one(params: Params, model, name: str, inputs: _EvalInputs):
    from drlrec.evaluate import evaluate_model

    return evaluate_model(
        model,
        inputs.test,
        [inputs.data.train, inputs.data.valid],
        inputs.item_category,
        inputs.item_counts,
        params.evaluate,
        seed=params.base.seed,
        name=name,
        progress=params.base.progress,
    )


def _trained_dqn_lstm(params: Params):
    from drlrec.devices import resolve_device
    from drlrec.errors import InputError
    from drlrec.models.dqn_lstm import DQNLSTM

    path = Path(params.paths.model) / "model.pt"
    if not path.is_file():
        raise InputError(f"{path}: no trained DQN-LSTM (run `drlrec train` first)")
    return DQNLSTM.load(path, device=resolve_device(params.train.device))


def _fit_model(params: Params, name: str, inputs: _EvalInputs, track=None):
    """Train model `name` on the train split with the budget from params (dqn_lstm: the train: section)."""
    if name == "dqn_lstm":
        from drlrec.model_factory import build_model
        from drlrec.rl.dqn import fit_dqn_lstm

        model = build_model("dqn_lstm", inputs.data.n_items, inputs.data.n_categories, params)
        return fit_dqn_lstm(model, inputs.data, params.train, params.base.seed, track=track,
                            progress=params.base.progress).model
    from drlrec.model_factory import fit_model

    return fit_model(name, inputs.data, params, progress=params.base.progress)


def evaluate_stage(params: Params, model_name: str = "dqn_lstm", features_dir: str | Path | None = None):
    """Evaluate one model on the test period with the shared protocol; write metrics.json, a markdown
    table and a bar chart; log them to MLflow. dqn_lstm is read from paths.model (the train stage's
    output); any other model is fitted on the train split first with its budget from params."""
    import dataclasses

    from drlrec.atomic import write_json, write_text
    from drlrec.evaluate import full_table, markdown_table, protocol_text
    from drlrec.plots import metric_bars
    from drlrec.tracking import start_run

    inputs = _EvalInputs(Path(features_dir or params.paths.features))
    protocol = protocol_text(params.evaluate, params.base.seed)
    reports = Path(params.paths.reports)
    from drlrec import runinfo

    train_run = runinfo.train_run_id(params) if model_name == "dqn_lstm" else None
    with start_run(f"evaluate-{model_name}", tags={"model": model_name, "stage": "evaluate", "train_run_id": train_run or ""},
                   parent_run_id=train_run) as run:
        run.log_params({"model": model_name, "base.seed": params.base.seed, "evaluate": dataclasses.asdict(params.evaluate)})
        _log_events_input(run, params, "evaluate")
        model = (
            _trained_dqn_lstm(params) if model_name == "dqn_lstm" else _fit_model(params, model_name, inputs)
        )
        evaluation = _evaluate_one(params, model, model_name, inputs)
        payload = {"protocol": protocol, **evaluation.to_dict()}
        write_json(params.paths.metrics, payload)
        md = reports / f"metrics_{model_name}.md"
        write_text(
            md,
            f"# {model_name}: test period\n\n"
            + full_table(evaluation)
            + "\n"
            + markdown_table([evaluation], protocol),
        )
        png = metric_bars([evaluation], reports / f"metrics_{model_name}.png")
        run.log_metrics({**_flat_metrics(evaluation), "evaluate/seconds": evaluation.seconds})
        run.log_dict(payload, "metrics.json")
        if model_name == "dqn_lstm" and features_dir is None:
            from drlrec import runinfo

            runinfo.record(params, "evaluate", mlflow_run_id=run.run_id, seconds=evaluation.seconds)
        run.log_artifact(md)
        run.log_artifact(png)
    ni = evaluation.groups["next_item"]["ndcg_at_10"]
    npur = evaluation.groups["next_purchase"]["ndcg_at_10"]
    _say(
        f"evaluate: {model_name} test NDCG@10 next item {ni.value:.4f} [{ni.low:.4f}, {ni.high:.4f}], next purchase "
        f"{npur.value:.4f} [{npur.low:.4f}, {npur.high:.4f}] ({evaluation.counts['next_item_events']:,} events, "
        f"{evaluation.seconds:.1f}s) -> {params.paths.metrics}"
    )
    return evaluation


def _flat_metrics(evaluation) -> dict[str, float]:
    import math

    out = {}
    for group, metrics in evaluation.groups.items():  # each value with its CI, comparable across runs
        for metric, iv in metrics.items():
            for suffix, value in (("", iv.value), ("_ci_low", iv.low), ("_ci_high", iv.high)):
                if not math.isnan(value):
                    out[f"test/{group}/{metric}{suffix}"] = value
    return out


# ---------------------------------------------------------------------------------------------- compare


#: The DQN-LSTM's scoring heads: compare evaluates the one trained network once with each.
_DQN_HEADS: dict[str, str] = {"q": "Q-values", "ce": "the supervised next-item (SQN) logits"}


def _compare_rows(name: str) -> list[tuple[str, str | None]]:
    """The table rows of one model: (row name, DQN-LSTM head or None)."""
    return [(f"{name}[{head}]", head) for head in _DQN_HEADS] if name == "dqn_lstm" else [(name, None)]


def _compare_reference(params: Params, rows: list[str], valid_ndcg: dict[str, float]) -> tuple[str, str]:
    """The row paired differences are taken against, and why: evaluate.reference, or with `auto` the best
    validation NDCG@10 among the rows not starting with dqn_lstm (every row when there is none)."""
    import math

    if params.evaluate.reference != "auto":
        return params.evaluate.reference, "evaluate.reference"
    baselines = [r for r in rows if not r.startswith("dqn_lstm")] or rows
    best = max(baselines, key=lambda r: -math.inf if math.isnan(valid_ndcg[r]) else valid_ndcg[r])
    return best, "auto: the best validation NDCG@10 among the baselines"


def compare_stage(params: Params, models: list[str] | None = None, features_dir: str | Path | None = None):
    """Train every model with its budget from params, evaluate all on the same split (dqn_lstm once per
    scoring head), report each row's paired difference from a reference row and the breakdown by target
    type, write compare.json / compare.md / compare.png, and log each model as a nested MLflow run."""
    import time

    from drlrec.atomic import write_json, write_text
    from drlrec.errors import ConfigError
    from drlrec.evaluate import (
        PAIRED,
        excludes_zero,
        markdown_table,
        paired_comparison,
        paired_table,
        protocol_text,
        type_table,
        validation_evaluator,
        versus_table,
    )
    from drlrec.plots import metric_bars
    from drlrec.tracking import start_run

    names = list(models or params.evaluate.models)
    known = set(params.evaluate.models) | {"dqn_lstm", "popularity"}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    rows = [row for name in names for row, _ in _compare_rows(name)]
    if params.evaluate.reference not in ("auto", *rows):
        raise ConfigError(f"evaluate.reference: {params.evaluate.reference!r} is not a compared row; "
                          f"use auto or one of {', '.join(rows)}")
    inputs = _EvalInputs(Path(features_dir or params.paths.features))
    protocol = protocol_text(params.evaluate, params.base.seed)
    valid = inputs.data.valid
    evaluate_valid, valid_index = validation_evaluator(
        valid, params.evaluate.valid_max_events or valid.num_transitions, params.base.seed
    )
    evaluations, fit_seconds, valid_ndcg, heads, served = [], {}, {}, {}, None
    with start_run("compare", tags={"stage": "compare"}) as parent:
        parent.log_params({"models": ",".join(names), "evaluate": params.evaluate.__dict__})
        for name in names:
            with start_run(f"compare-{name}", nested=True, tags={"model": name, "stage": "compare"}) as child:
                started = time.perf_counter()
                model = _fit_model(params, name, inputs, track=child.log_metrics)
                seconds = time.perf_counter() - started
                trained_head = getattr(model, "score_with", None)
                for row, head in _compare_rows(name):
                    if head is not None:
                        model.use_head(head)  # the head's own validated weights when the fit kept them
                        heads[row] = head
                    fit_seconds[row] = seconds
                    valid_ndcg[row] = evaluate_valid(model)["valid/ndcg_at_10"]
                    evaluation = _evaluate_one(params, model, row, inputs)
                    prefix = f"{head}/" if head else ""
                    child.log_metrics({**{prefix + k: v for k, v in _flat_metrics(evaluation).items()},
                                       f"{prefix}compare/valid_ndcg_at_10": valid_ndcg[row]})
                    evaluations.append(evaluation)
                    ni = evaluation.groups["next_item"]["ndcg_at_10"].value
                    _say(f"compare: {row}: fit {seconds:.0f}s, valid NDCG@10 {valid_ndcg[row]:.4f}, "
                         f"test NDCG@10 (next item) {ni:.4f}")
                if name == "dqn_lstm":
                    # the fit leaves score_with on the head chosen on validation (a served_head attribute wins)
                    served = getattr(model, "served_head", None) or trained_head
                    model.use_head(trained_head)
                child.log_metrics({"fit_seconds": seconds})
        reference, rule = _compare_reference(params, rows, valid_ndcg)
        by_row = {ev.model: ev for ev in evaluations}
        cfg = params.evaluate
        paired = {ev.model: paired_comparison(ev, by_row[reference], cfg.bootstrap, cfg.ci, params.base.seed)
                  for ev in evaluations if ev.model != reference}
        # the served DQN-LSTM row against every baseline row (not only the reference): the goal is stated
        # against each no-learning baseline and item_knn, each with its own paired CI
        served_row = next((row for row, head in heads.items() if head == served), None)
        versus = {} if served_row is None else {
            ev.model: paired_comparison(by_row[served_row], ev, cfg.bootstrap, cfg.ci, params.base.seed)
            for ev in evaluations if not ev.model.startswith("dqn_lstm")
        }
        notes = {row: f"head {head}" + (", served" if head == served else "") for row, head in heads.items()}
        notes[reference] = ", ".join([*filter(None, [notes.get(reference)]), "reference"])
        seq_len = inputs.test.seq_len
        heads_line = (
            "DQN-LSTM rows: one trained network scored by "
            + "; ".join(f"`{row}` with {_DQN_HEADS[head]}" for row, head in heads.items())
            + f"; the served head (chosen on validation) is `{served}`.\n\n" if heads else ""
        )
        report = (
            "Full ranking over every item of the vocabulary on the test period (the protocol is written in full "
            f"under the last table). State: the last N = {seq_len} interactions. Validation NDCG@10: the same {len(valid_index):,} "
            f"validation events for every model. Δ = row minus the reference `{reference}` ({rule}) on the same test "
            f"events, 95% CI from a paired user-level bootstrap; * = the CI excludes 0 (the row beats, or loses "
            f"to, the reference).\n\n" + heads_line
            + paired_table(evaluations, reference, paired, valid_ndcg, notes, fit_seconds)
            + (f"\n## The served DQN-LSTM (`{served_row}`) against every baseline\n\nThe served row minus each "
               "baseline on the same test events, paired user-level 95% CI; * = the CI excludes 0.\n\n"
               + versus_table(served_row, versus) if versus else "")
            + "\n## Next-item targets by type\n\n" + type_table(evaluations, "next_item")
            + "\n## Next-purchase targets by type\n\n" + type_table(evaluations, "next_purchase")
            + "\n## Every metric\n\n" + markdown_table(evaluations, protocol)
        )
        payload = {
            "protocol": protocol,
            "state_length": seq_len,
            "reference": {"model": reference, "rule": rule},
            "valid_events": len(valid_index),
            "served_head": served,
            "models": [
                {
                    **ev.to_dict(),
                    "fit_seconds": round(fit_seconds[ev.model], 2),
                    "valid_ndcg_at_10": valid_ndcg[ev.model],
                    "head": heads.get(ev.model),
                    "served": ev.model in heads and heads[ev.model] == served,
                    "paired_vs_reference": {
                        key: {**iv.as_dict(), "excludes_zero": excludes_zero(iv)}
                        for key, iv in paired.get(ev.model, {}).items()
                    },
                }
                for ev in evaluations
            ],
            "paired_metrics": [f"{g}/{m}" for g, m in PAIRED],
            "served_vs_baselines": {
                "row": served_row,
                "differences": {
                    opponent: {key: {**iv.as_dict(), "excludes_zero": excludes_zero(iv)} for key, iv in diffs.items()}
                    for opponent, diffs in versus.items()
                },
            },
        }
        write_json(params.paths.compare, payload)
        md = Path(params.paths.compare).with_suffix(".md")
        write_text(md, "# Model comparison: test period\n\n" + report)
        png = metric_bars(evaluations, Path(params.paths.compare).with_suffix(".png"),
                          title="Test period, full ranking (95% user-level bootstrap CI)")
        for path in (md, png, Path(params.paths.compare)):
            parent.log_artifact(path)
    print(report)
    return evaluations


# ---------------------------------------------------------------------------------------------- simulate


def simulate_stage(
    params: Params,
    features_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    sessions: int | None = None,
    policies: list[str] | None = None,
):
    """Fit the user simulator on the train split, check its calibration on the validation split, and run
    the policies (`policies`, default simulate.policies) on the same env.sessions (or `sessions`) seeded
    simulated sessions: the trained DQN-LSTM of paths.model scored with its Q-head (`dqn_lstm[q]`) and with
    its supervised CE head (`dqn_lstm[ce]`), registry models fitted on the train split with their params
    budgets (recent_items, item_knn, sasrec, popularity...) and random lists. Reports return, CTR,
    conversion and purchases per session with bootstrap CIs over sessions, and the paired difference
    dqn_lstm[q] - dqn_lstm[ce]. The dqn_lstm rows need paths.model/model.pt: left out (and said so) when
    the policies come from params, an error when asked for by `policies`. Writes simulator.npz,
    calibration.{md,csv,png}, simulate.md and policies.json under paths.simulator; logs them to MLflow.
    Returns (calibration, {policy: SimulationResult}, {metric: Interval} of the paired Q - CE difference
    or None)."""
    import copy
    import dataclasses
    import re

    import numpy as np

    from drlrec.atomic import write_json, write_text
    from drlrec.errors import ConfigError, InputError
    from drlrec.model_factory import MODELS, fit_model
    from drlrec.models.base import FIRST_REAL_ITEM, TrainingData
    from drlrec.rl.envs import (
        SESSION_METRICS,
        model_policy,
        paired_session_difference,
        paired_verdict,
        recent_items_policy,
        simulate_policy,
        simulated_env,
        simulation_table,
    )
    from drlrec.rl.simulator import calibration_markdown, simulator_calibration
    from drlrec.tracking import start_run

    cfg = params.simulate
    heads = {"dqn_lstm[q]": "q", "dqn_lstm[ce]": "ce"}
    known = list(dict.fromkeys([*heads, "recent_items", "random", *(n for n in MODELS if n != "dqn_lstm")]))
    names = list(dict.fromkeys(policies if policies is not None else cfg.policies))
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        what = f"unknown policy(ies) {', '.join(unknown)}" if unknown else "no policies to simulate"
        raise ConfigError(f"{what}; choose from {', '.join(known)}")
    sessions = params.env.sessions if sessions is None else sessions
    if sessions < 1:
        raise ConfigError(f"sessions must be >= 1 (got {sessions})")
    model_path = Path(params.paths.model) / "model.pt"
    not_run = {}
    if not model_path.is_file() and any(name in heads for name in names):
        if policies is not None:
            raise InputError(f"{model_path}: no trained DQN-LSTM for {', '.join(n for n in names if n in heads)} "
                             "(run `drlrec train` first)")
        not_run = {name: f"no trained DQN-LSTM at {model_path}" for name in names if name in heads}
        names = [name for name in names if name not in heads]
    features = Path(features_dir or params.paths.features)
    out = Path(out_dir or params.paths.simulator)
    seed = params.base.seed
    k = params.env.k
    from drlrec import runinfo

    train_run = runinfo.train_run_id(params)
    with start_run("simulate", tags={"stage": "simulate", "train_run_id": train_run or ""}, parent_run_id=train_run) as run:
        run.log_params({
            "simulator": dataclasses.asdict(params.simulator),
            "env": dataclasses.asdict(params.env),
            "simulate": {**dataclasses.asdict(cfg), "policies": ",".join(names), "sessions": sessions},
        })
        simulator, calibration = simulator_calibration(features, params.simulator, seed, out)
        env = simulated_env(features, simulator, params.env, params.featurize)
        data = TrainingData.load(features)
        random_lists = np.random.default_rng(seed)
        built, notes = {}, {}
        trained = _trained_dqn_lstm(params) if any(name in heads for name in names) else None
        for name in names:
            if name in heads:
                scorer = copy.copy(trained)  # shares the network when the head has no weights of its own
                if heads[name] != trained.served_head and heads[name] in trained.head_states:
                    scorer.network = copy.deepcopy(trained.network)  # the head's own validated weights
                scorer.use_head(heads[name])
                built[name] = model_policy(scorer, k)
                notes[name] = f"head {heads[name]}" + (", served" if trained.served_head == heads[name] else "")
            elif name == "random":
                built[name] = lambda states: random_lists.integers(
                    FIRST_REAL_ITEM, data.n_items, size=(states.batch_size, k)
                )
                notes[name] = "uniform lists"
            elif name == "recent_items" and name not in MODELS:
                built[name] = recent_items_policy(k)
                notes[name] = "the user's k most recent distinct items (rl.envs.recent_items_policy)"
            else:
                _say(f"simulate: fitting {name} on the train split")
                built[name] = model_policy(fit_model(name, data, params, progress=params.base.progress), k)
                notes[name] = "fitted on train (params budget)"
        results = {}
        for name, policy in built.items():
            _say(f"simulate: {name} on {sessions:,} sessions")
            results[name] = simulate_policy(env, policy, sessions, seed=seed, n_boot=cfg.bootstrap, ci=cfg.ci)
            key = re.sub(r"[^\w\-./ ]", "_", name).strip("_")  # MLflow keys: no brackets
            run.log_metrics({f"sim/{key}/{m}": v for m, v in results[name].as_dict().items()})
            run.log_metrics({f"sim/{key}/{m}_ci_{side}": bound for m, (lo, hi) in results[name].ci.items()
                             for side, bound in (("low", lo), ("high", hi))})
        paired = None
        if all(name in results for name in heads):
            paired = paired_session_difference(
                results["dqn_lstm[q]"].outcomes, results["dqn_lstm[ce]"].outcomes, cfg.bootstrap, cfg.ci, seed
            )
            run.log_metrics({f"sim/q_minus_ce/{m}": iv.value for m, iv in paired.items()})
        level = f"{cfg.ci:.0%}"
        protocol = (
            f"{sessions:,} simulated sessions (seed {seed}) starting from logged {params.env.start_split} states, "
            f"lists of k = {k}, at most {params.env.max_steps} steps, reward {params.env.reward}. Every policy "
            "meets the same sessions: the same start states and, step by step, the same random draws of the "
            f"simulated user (common random numbers). {level} CIs: percentile bootstrap over sessions, "
            f"{cfg.bootstrap} resamples; CTR = clicks / lists and conversion = buys / clicks are ratios of the "
            "resampled sums; return and purchases are per session. A paired difference applies the same "
            "resampled sessions to both policies."
        )
        report = (
            calibration_markdown(calibration)
            + f"\n\n## Policies on the same simulated sessions\n\n{protocol}\n\n"
            + simulation_table(results, notes)
        )
        if not_run:
            report += "\nNot run: " + "; ".join(f"{n} ({why})" for n, why in not_run.items()) + ".\n"
        if paired is not None:
            rows = ["| dqn_lstm[q] - dqn_lstm[ce] | difference | " + f"{level} CI |", "|---|---|---|"]
            rows += [f"| {m} | {iv.value:+.4f} | [{iv.low:+.4f}, {iv.high:+.4f}] |" for m, iv in paired.items()]
            report += (
                "\n## What the Q-head adds: paired with its own supervised head\n\n"
                + paired_verdict(paired["mean_return"], "dqn_lstm[q]", "dqn_lstm[ce]", cfg.ci)
                + "\n\n" + "\n".join(rows) + "\n"
            )
        cal = {
            "auc": calibration.auc,
            "n_events": calibration.n_events,
            "negatives": calibration.negatives,
            "deciles": calibration.table.to_dict(orient="records"),
            "behavior_given_interaction": calibration.conditional.to_dict(orient="records"),
        }
        write_json(
            out / "policies.json",
            {
                "sessions": sessions,
                "seed": seed,
                "reward": params.env.reward,
                "k": k,
                "bootstrap": cfg.bootstrap,
                "ci": cfg.ci,
                "protocol": protocol,
                "metrics_with_ci": list(SESSION_METRICS),
                "policies": {
                    name: {**r.as_dict(), "ci": {m: list(iv) for m, iv in r.ci.items()}, "note": notes[name]}
                    for name, r in results.items()
                },
                "not_run": not_run,
                "paired_q_minus_ce": None if paired is None else {m: iv.as_dict() for m, iv in paired.items()},
                "calibration": cal,
            },
        )
        write_text(out / "simulate.md", report)
        run.log_metrics({"sim/calibration_auc": calibration.auc})
        for name in ("simulate.md", "calibration.png", "calibration.csv", "policies.json"):
            run.log_artifact(out / name)
    print(report)
    _say(
        f"simulate: calibration AUC {calibration.auc:.3f} on {calibration.n_events:,} held-out events -> {out}"
    )
    return calibration, results, paired


# ---------------------------------------------------------------------------------------------- register


def register_stage(params: Params, tracking_uri: str | None = None) -> dict[str, Any]:
    """Bundle the trained DQN-LSTM, register it as a new version with @challenger, and let the gate
    decide whether it becomes @champion (see registry.py). Writes the decision to paths.registry."""
    from drlrec.atomic import write_json
    from drlrec.bundle import write_bundle
    from drlrec.errors import InputError
    from drlrec.evaluate import evaluate_bundle
    from drlrec.registry import evaluation_split_id, register_model

    metrics_path = Path(params.paths.metrics)
    if not metrics_path.is_file():
        raise InputError(f"{metrics_path}: no evaluation metrics (run `drlrec evaluate` first)")
    metrics = json.loads(metrics_path.read_text())
    if metrics.get("model") != "dqn_lstm":
        raise InputError(f"{metrics_path}: holds metrics of {metrics.get('model')!r}, not the DQN-LSTM")
    from drlrec import runinfo

    trained = runinfo.train_record(params)  # {} when the record is of another model file
    train_run_id = trained.get("mlflow_run_id")
    if train_run_id is None:
        _say("register: no train run recorded for this model.pt (artifacts/runinfo/train.json): the version is not linked to one")
    bundle = write_bundle(params.paths.model, params.paths.features, params.featurize, params.paths.bundle)
    decision = register_model(
        params,
        bundle,
        metrics,
        split_id=evaluation_split_id(params.paths.events, params),
        train_run_id=train_run_id,
        model_uri=trained.get("model_uri"),
        ope_check=lambda: _ope_check(params, bundle, tracking_uri),
        tracking_uri=tracking_uri,
        reevaluate=lambda champion: evaluate_bundle(champion, params),
    )
    write_json(params.paths.registry, decision)
    champ = decision["champion_value"]
    _say(
        f"register: {decision['model_name']} version {decision['version']} (@challenger) "
        f"{decision['metric']} {decision['challenger_value']:.4f} vs champion "
        + ("none" if champ is None else f"v{decision['champion_version']} {champ:.4f} ({decision['champion_value_source']})")
        + f" -> {'PROMOTED to @champion' if decision['promoted'] else 'not promoted'}: {decision['reason']}"
    )
    return decision


def _ope_check(params: Params, bundle_dir: Path, tracking_uri: str | None):
    """register.ope_gate: the challenger (the bundle) estimated from the service's logs (drlrec.ope_logs)."""
    from drlrec.bundle import load_bundle
    from drlrec.ope_logs import estimate_policy, ope_gate
    from drlrec.registry import load_model

    result = estimate_policy(params, load_bundle(bundle_dir), "challenger",
                             logger_loader=lambda ref: load_model(ref, tracking_uri=tracking_uri, name=params.register.model_name))
    return ope_gate(result, params.register.ope_reward, params.register.ope_margin)


# ---------------------------------------------------------------------------------------------- summary


def summary_stage(params: Params) -> str:
    """Print (and return) what the pipeline produced: the test metrics table, the registry decision,
    where every artifact is, and how to open the MLflow and Prefect UIs."""
    from drlrec.tracking import default_tracking_uri

    lines: list[str] = []
    metrics_path = Path(params.paths.metrics)
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        lines += [f"Test metrics of {metrics.get('model')} ({metrics_path}; value [95% bootstrap CI]):", ""]
        lines.append(f"  {'target':<14} {'HR@10':<26} {'NDCG@10':<26} {'MRR':<26}")
        for group in ("next_item", "next_purchase"):
            row = metrics.get("metrics", {}).get(group, {})
            cells = [
                f"{row[m]['value']:.4f} [{row[m]['ci_low']:.4f}, {row[m]['ci_high']:.4f}]" if m in row else "-"
                for m in ("hr_at_10", "ndcg_at_10", "mrr")
            ]
            lines.append(f"  {group:<14} " + " ".join(f"{c:<26}" for c in cells))
        counts = metrics.get("counts", {})
        lines += ["  " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()), ""]
    else:
        lines += [f"No test metrics yet ({metrics_path} is missing: run `dvc repro`).", ""]
    registry_path = Path(params.paths.registry)
    if registry_path.is_file():
        d = json.loads(registry_path.read_text())
        champ = d.get("champion_value")
        lines += [
            f"Registry: {d['model_name']} version {d['version']} registered as @challenger; "
            f"{'promoted to @champion' if d['promoted'] else 'not promoted'} ({d['reason']}). "
            f"@champion = version {d.get('champion')}"
            + ("" if champ is None else f"; previous champion {d['metric']} {champ:.4f}"),
            "",
        ]
    artifacts = [
        ("events (typed Parquet)", params.paths.events),
        ("quarantined rows", params.paths.quarantine),
        ("validation result", params.paths.validation),
        ("features", params.paths.features),
        ("trained model", params.paths.model),
        ("test metrics", params.paths.metrics),
        ("reports (tables, charts)", params.paths.reports),
        ("simulator and policies", params.paths.simulator),
        ("registered bundle", params.paths.bundle),
        ("gate decision", params.paths.registry),
    ]
    lines.append("Artifacts:")
    lines += [f"  {name:<26} {path}" for name, path in artifacts if Path(path).exists()]
    uri = default_tracking_uri()
    lines += [
        "",
        f"MLflow runs and registry: {uri}",
        "  Both UIs:   .venv/bin/drlrec ui   (MLflow UI + Prefect server on free 127.0.0.1 ports; Ctrl-C stops both)",
        "              then PREFECT_API_URL=<its printed API URL> .venv/bin/drlrec deploy (scheduled flows)",
    ]
    text = "\n".join(lines)
    print(text)
    return text


# ---------------------------------------------------------------------------------------------- monitor


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
    _say(f"monitor: {len(window):,} interactions of {current_path} vs the training period ({champion.source})")
    _say(f"monitor: {run.result.decision_line()}")
    _say(f"monitor: report {folder / 'report.html'}")
    return run.result, folder


# ---------------------------------------------------------------------------------------------- tune


def tune_stage(
    params: Params,
    model: str,
    trials: int | None = None,
    timeout: float | None = None,
    write_params: str | Path | None = None,
    features_dir: str | Path | None = None,
):
    """Run or resume the Optuna study of `model` (drlrec.tune) on validation NDCG@10 until it holds `trials`
    finished trials (default tune.trials); log every trial as a nested MLflow run of one `tune-<model>` run,
    print the trials table, write <paths.tune>/<model>.json; with `write_params` (a params.yaml path), write
    the best values into that file in place. Reads train/valid only: the test split is never loaded."""
    import optuna

    from drlrec import tune
    from drlrec.atomic import write_json, write_text
    from drlrec.features.featurize import REPORT_FILE
    from drlrec.models.base import TrainingData
    from drlrec.tracking import start_run

    space = tune.search_space(model)  # unknown model or nothing to tune: one line, before any loading
    n_trials = params.tune.trials if trials is None else trials
    limit = params.tune.timeout if timeout is None else timeout
    features = Path(features_dir or params.paths.features)
    report_path = features / REPORT_FILE
    if not report_path.is_file():
        from drlrec.errors import InputError

        raise InputError(f"{report_path}: no featurize outputs (run `drlrec featurize` first)")
    data = TrainingData.load(features)
    folder = Path(params.paths.tune)
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(folder / f'{model}.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the one line per trial comes from on_trial below
    protocol = (
        f"next item on the validation period, full ranking over all items; the same {params.tune.eval_max_events:,}-event "
        f"seeded subset (seed {params.base.seed}) for every trial; fitted on the train period with the model's own "
        "budget from params; the test period is never read"
    )
    with start_run(f"tune-{model}", tags={"model": model, "stage": "tune"}) as parent:
        parent.log_params({"model": model, "trials": n_trials, "timeout": limit, "tune": params.tune.__dict__,
                           "search_space": {k: repr(v) for k, v in space.items()}})

        def on_trial(record, number, best) -> None:
            if record is None:
                _say(f"tune: {model} trial {number} failed (no finite valid NDCG@10)")
                return
            with start_run(f"tune-{model}-trial-{record.number}", nested=True,
                           tags={"model": model, "stage": "tune", "trial": record.number}) as child:
                child.log_params({"trial": record.number, **record.params})
                child.log_metrics({**record.metrics, "fit_seconds": record.seconds})
            shown = ", ".join(f"{tune.short_key(k, model)}={tune.show_value(v)}" for k, v in record.params.items())
            _say(f"tune: {model} trial {record.number}: valid NDCG@10 {record.value:.4f} in {record.seconds:.1f}s "
                 f"(best {best.value:.4f}, trial {best.number}) {shown}")

        result = tune.tune_model(model, data, params, n_trials, storage, timeout=limit,
                                 features_report=json.loads(report_path.read_text()), on_trial=on_trial)
        payload = tune.result_payload(result, storage, protocol)
        out = folder / f"{model}.json"
        write_json(out, payload)
        parent.set_tags({"study": result.study, "best_trial": result.best.number})
        parent.log_metrics({tune.OBJECTIVE: result.best.value, "finished_trials": len(result.trials), "ran": result.ran})
        parent.log_artifact(out)
    print(tune.format_trials(result))
    _say(f"tune: study {result.study}: {result.ran} trial(s) run now, {len(result.trials)} finished in total "
         f"({storage}) -> {out}")
    if write_params is not None:
        path = Path(write_params)
        note = tune.best_params_note(result)
        write_text(path, tune.edit_params_text(path.read_text(encoding="utf-8"), result.best.params, note))
        _say(f"tune: wrote {len(result.best.params)} tuned values of {model} into {path} ({note})")
    return result
