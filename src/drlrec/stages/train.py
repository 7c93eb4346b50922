"""`drlrec train` (DVC stage train): the DQN-LSTM (offline, online or distributed) with its MLflow
model, and `drlrec train --model NAME` for a comparison model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drlrec.config import Params
from drlrec.stages.common import log_events_input, say


@dataclass(frozen=True)
class TrainResult:
    """What `drlrec train` produced for the DQN-LSTM."""

    fit: Any
    """drlrec.rl.dqn.DQNFit: the trained model, the loop's log, every head's validation figures."""
    metrics: dict[str, Any]
    """What paths.train_metrics holds ({} on a DDP rank other than 0, which writes nothing)."""
    mlflow_run_id: str | None
    """The train run (None on a DDP rank other than 0)."""
    model_uri: str | None
    """The MLflow model logged in that run (what the register stage registers)."""
    model_dir: Path
    """Where model.pt and meta.json are."""


def _fingerprint(*parts: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_stage(
    params: Params,
    features_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    distributed: bool = False,
) -> TrainResult:
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
    return simulated_env(features, params.paths.events, simulator, env_cfg, params.featurize)


def _train_stage(params: Params, features_dir: str | Path | None, out_dir: str | Path | None, ddp) -> TrainResult:
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
            fit = fit_dqn_lstm(model, data, params.train, params.base.seed, checkpoint_path=checkpoint,
                               resume_key=key, ddp=ddp)
            return TrainResult(fit, {}, None, None, out)
    online = params.train.mode == "online"
    with start_run(f"train-dqn_lstm-{params.train.mode}", tags={"model": "dqn_lstm", "stage": "train", "mode": params.train.mode}) as run:
        run.log_params(config)
        log_events_input(run, params, "train")
        env = None
        if online:
            say("train (online): fitting the user simulator on the train split")
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
        written = {"model": "dqn_lstm", "protocol": "next item, full ranking over all items, validation period", **metrics}
        write_json(params.paths.train_metrics, written)
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
    say(
        f"train: {fit.train.steps_done} steps in {fit.seconds:.0f}s ({fit.train.transitions_per_s:,.0f} transitions/s in "
        f"the update loop); valid NDCG@10 "
        + ", ".join(f"{h}-head {m['valid/ndcg_at_10']:.4f}" for h, m in fit.valid_by_head.items())
        + f" (served: {fit.served_head}; popularity {fit.popularity_metrics['valid/ndcg_at_10']:.4f}); "
        f"MLflow run {run.run_id} -> {out}"
    )
    return TrainResult(fit, written, run.run_id, logged.model_uri, out)


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
    say(f"train: {name} fitted in {seconds:.0f}s; valid NDCG@10 {metrics['valid/ndcg_at_10']:.4f}; MLflow run {run.run_id} -> {out}")
    return model, metrics
