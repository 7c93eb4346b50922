"""`drlrec simulate` (DVC stage simulate): the calibrated user simulator and the policies on the same
seeded sessions."""

from __future__ import annotations

from pathlib import Path

from drlrec.config import Params
from drlrec.stages.common import say, trained_dqn_lstm


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
        env = simulated_env(features, params.paths.events, simulator, params.env, params.featurize)
        data = TrainingData.load(features)
        random_lists = np.random.default_rng(seed)
        built, notes = {}, {}
        trained = trained_dqn_lstm(params) if any(name in heads for name in names) else None
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
                say(f"simulate: fitting {name} on the train split")
                built[name] = model_policy(fit_model(name, data, params, progress=params.base.progress), k)
                notes[name] = "fitted on train (params budget)"
        results = {}
        for name, policy in built.items():
            say(f"simulate: {name} on {sessions:,} sessions")
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
    say(
        f"simulate: calibration AUC {calibration.auc:.3f} on {calibration.n_events:,} held-out events -> {out}"
    )
    return calibration, results, paired
