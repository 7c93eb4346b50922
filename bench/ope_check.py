"""Is off-policy evaluation right? Bias, RMSE and CI coverage of IPS, SNIPS and DR against the simulator's truth.

For each of --seeds seeds:
  1. Logging: --sessions simulated sessions (drlrec.rl.envs.SimulatedEnv on the calibrated simulator of
     paths.simulator, starts from the validation states) served by the trained DQN-LSTM (paths.model, its
     served head) with the service's own exploration code (drlrec.serving.exploration.explore: --mode
     epsilon/boltzmann over its top --top-m, k = env.k). Every impression is logged with its slot
     propensity; a click is the simulator's interaction with that slot's item, a conversion a buy.
  2. Estimates: each challenger's per-impression CTR and conversion from those logs (drlrec.ope: per-slot
     IPS, SNIPS, DR with the logs' per-slot mean reward as the direct method; 95% CIs from a bootstrap of
     users, as `drlrec ope` draws them: the sessions start at drawn logged states, and sessions of one
     user share that user's history, so they are not independent).
     Also over whole sessions (drlrec.ope.estimate_sessions: per-decision IS, weighted PDIS and per-decision
     DR, each step weighted by the product of the whole-list ratios up to it), which let the challenger's
     lists change the later states as the on-policy truth does. Per-decision DR twice: with the logs' mean
     list reward per step as its direct method, and with the simulator's response model (the expected
     clicks and buys of the logged list and of the challenger's list at each logged state).
  3. Truth: the challenger run on-policy in the simulator on --truth-sessions fresh seeded sessions
     (drlrec.rl.envs.simulate_policy): clicks / (lists x k) and buys / (lists x k). The truth is one number
     (the challenger's value from the same start-state distribution), so it is run once, with many sessions
     (--truth-runs independent seeded runs, pooled), and every seed's CI is checked against it; its own
     Monte Carlo 95% CI (from the spread of the runs) is printed, so the reader can see that its error is
     small beside the estimates' CIs. (Earlier versions drew a small
     truth per seed, whose own noise then counted as estimator misses.)
Challengers: `close`, the model's greedy top-k (the list the logging policy explores around), and `far`,
the model's ranks k..2k-1 (items the logging policy shows only when it explores).

The slot-weighted estimators assume a slot's reward depends only on the state, the item and the slot; the
simulator's user acts on at most one item of a list (the list's click probabilities are scaled down when
they sum to more than 1), so a greedy item clicks more often beside explored items than beside other
greedy ones, and slot weights overestimate a greedy list. List weights do not need that assumption. Every
estimate is of the challenger's value on the logging policy's states: the one-step truth column (the
simulator's expected clicks of the challenger's list on those states, no draw) is its target; the on-policy
truth also lets the challenger's lists change the later states of a session. The session-level estimators
target the on-policy truth; their weights are products over a session's lists, so they need little
exploration (at --epsilon 0.3 a greedy list of 10 is logged 2.8% of the time, at 0.05 about 60%).

--epsilon (or --temperature) may list several settings (0.05,0.01): each logs its own seeds and is checked
against the same truth, so the table shows how much exploration each estimator needs.

Run: python bench/ope_check.py [--seeds 20] [--sessions 2000] [--mode epsilon] [--epsilon 0.05,0.01] [--top-m 30]
     (after `make run`: needs artifacts/features, artifacts/model/model.pt and artifacts/simulator)
Prints the table and writes --out (default artifacts/ope/ope_check.json and .md; untracked).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def expected_per_list(simulator, states, items: np.ndarray) -> np.ndarray:
    """[B, 2] expected clicks and buys of each list `items` [B, k] at `states`: the simulator's own response
    probabilities (with its at-most-one-item normalisation), no draw."""
    from drlrec.schema import BUY

    probs = simulator.probabilities(states, items).behavior_prob.astype(np.float64)  # [B, k, 4]
    total = probs.reshape(len(items), -1).sum(axis=1)
    scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-12), 1.0)
    return np.stack([probs.sum(axis=2).sum(axis=1) * scale, probs[:, :, BUY].sum(axis=1) * scale], axis=1)


def log_sessions(env, model, k: int, top_m: int, explore_cfg, sessions: int, seed: int, simulator=None):
    """Serve `sessions` simulated sessions with exploration; per impression: session, slot, click, buy,
    propensity, and each challenger's probability of the logged item (close: greedy rank j at slot j; far:
    rank k + j at slot j). With `simulator`, also each challenger's expected clicks and buys per impression
    on the logged states (the one-step truth: what a per-slot estimator estimates). Impression rows end with
    the session's user (column 10); list rows are (session, step, clicks, buys, k, list propensity, close
    list?, far list?, user, then the simulator's expected clicks and buys of the logged list, of close's
    list and of far's list at that state: the reward model of session pddr with the simulator as its direct
    method; NaN without `simulator`)."""
    from drlrec.models.base import StateBatch
    from drlrec.serving.exploration import explore

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    core = env.unwrapped
    session = core.start_batch(sessions, rng)
    user = np.asarray(core.start.user_id, dtype=np.int64)[session.index]  # [sessions] the bootstrap clusters
    rows, lists = [], []
    onestep = {"close": np.zeros(2), "far": np.zeros(2)}
    impressions = 0
    while not session.finished.all():
        active = np.flatnonzero(~session.finished)
        states = core.batch_states(session)
        live = StateBatch(*(a[active] for a in states))
        items, scores = model.recommend(live, top_m)  # [A, M] best first
        expected = np.full((len(active), 6), np.nan)  # logged, close, far list: (clicks, buys) each
        if simulator is not None:
            expected[:, 2:4] = expected_per_list(simulator, live, items[:, :k])
            expected[:, 4:6] = expected_per_list(simulator, live, items[:, k:2 * k])
            onestep["close"] += expected[:, 2:4].sum(axis=0)
            onestep["far"] += expected[:, 4:6].sum(axis=0)
            impressions += items.shape[0] * k
        shown = np.zeros((sessions, k), dtype=np.int64)
        positions = np.zeros((len(active), k), dtype=np.int64)
        pscore = np.ones((len(active), k))
        list_pscore = np.ones(len(active))
        for r in range(len(active)):
            choice = explore(scores[r].astype(np.float64), k, explore_cfg, rng)
            positions[r], pscore[r], list_pscore[r] = choice.positions, choice.propensity, choice.list_propensity
        shown[active] = np.take_along_axis(items, positions, axis=1)
        if simulator is not None:
            expected[:, 0:2] = expected_per_list(simulator, live, shown[active])
        step = session.steps[active].copy()  # the list's decision index in its session
        out = core.step_batch(session, shown, rng)
        acted = out.item[active]
        slot_hit = shown[active] == acted[:, None]  # [A, k] at most one True (the item acted on)
        click = slot_hit.astype(np.float64)
        buy = (slot_hit & out.bought[active][:, None]).astype(np.float64)
        slots = np.broadcast_to(np.arange(k), positions.shape)
        close_list = (positions == slots).all(axis=1)  # the candidates are deterministic: P(list) is 0 or 1
        far_list = (positions == slots + k).all(axis=1)
        rows.append(np.stack([np.repeat(active, k), slots.ravel(), click.ravel(), buy.ravel(), pscore.ravel(),
                              (positions == slots).ravel(), (positions == slots + k).ravel(),
                              np.repeat(list_pscore, k), np.repeat(close_list, k), np.repeat(far_list, k),
                              np.repeat(user[active], k)], axis=1))
        lists.append(np.concatenate([np.stack([active, step, click.sum(axis=1), buy.sum(axis=1), np.full(len(active), k),
                                               list_pscore, close_list, far_list, user[active]], axis=1), expected], axis=1))
    return np.concatenate(rows), np.concatenate(lists), {n: v / max(impressions, 1) for n, v in onestep.items()}


def on_policy_truth(env, policy, sessions: int, runs: int, k: int) -> dict:
    """{"click"|"buy": {value, ci_low, ci_high, runs}}: the challenger's per-impression value (clicks or buys
    / (lists x k)) over `sessions` on-policy sessions, run as `runs` independent seeded replicates
    (simulate_policy seeds 1,000,000 + r), pooled; the 95% CI is its Monte Carlo error from the spread of
    the replicates (pooled +/- t x sd / sqrt(runs)), which assumes nothing about how sessions depend on
    each other."""
    from scipy import stats

    from drlrec.rl.envs import simulate_policy

    size = -(-sessions // runs)
    clicks, buys, impressions = np.zeros(runs), np.zeros(runs), np.zeros(runs)
    for r in range(runs):
        result = simulate_policy(env, policy, size, 1_000_000 + r, n_boot=0)
        clicks[r], buys[r], impressions[r] = result.outcomes.clicks.sum(), result.outcomes.buys.sum(), result.steps * k
    out = {}
    t = float(stats.t.ppf(0.975, runs - 1)) if runs > 1 else 0.0
    for reward, total in (("click", clicks), ("buy", buys)):
        value = float(total.sum() / max(impressions.sum(), 1))
        half = t * float(np.std(total / np.maximum(impressions, 1), ddof=1)) / np.sqrt(runs) if runs > 1 else 0.0
        out[reward] = {"value": value, "ci_low": max(value - half, 0.0), "ci_high": value + half, "runs": runs}  # a rate is >= 0
    return out


#: list-row columns of the simulator's expected (clicks, buys) of a list at the logged state (log_sessions)
EXPECTED_COLS = {"logged": 9, "close": 11, "far": 13}


def session_estimates(lists: np.ndarray, target_col: int, reward_col: int, n_boot: int, seed: int,
                      q_cols: tuple[int, int] | None = None) -> dict:
    """Per-decision estimates over whole sessions from the list-level log (log_sessions' list rows). The
    direct method of pddr: the logs' mean list reward at each step (the same for every candidate), or with
    `q_cols` = (logged list's column, candidate list's column) the simulator's expected reward of those
    lists at each logged state (EXPECTED_COLS; the response model the issue allows as the direct method)."""
    from drlrec.ope import BootstrapConfig, SessionLog, estimate_sessions, slot_mean_reward

    step = lists[:, 1].astype(np.int64)
    reward = lists[:, reward_col]
    if q_cols is not None:
        q_logged, q_target = lists[:, q_cols[0]], lists[:, q_cols[1]]
    else:
        q_logged = q_target = slot_mean_reward(step, reward)
    log = SessionLog(session=lists[:, 0].astype(np.int64), group=lists[:, 8].astype(np.int64), step=step, reward=reward, size=lists[:, 4],
                     pscore=lists[:, 5], target_prob=lists[:, target_col], q_logged=q_logged, q_target=q_target)
    return {name: e.to_dict() for name, e in estimate_sessions(log, BootstrapConfig(n_boot=n_boot, seed=seed)).items()}


def estimates(log: np.ndarray, target_col: int, reward_col: int, n_boot: int, seed: int, pscore_col: int = 4) -> dict:
    from drlrec.ope import BootstrapConfig, ImpressionLog, estimate_all, slot_mean_reward

    slot = log[:, 1].astype(np.int64)
    reward = log[:, reward_col]
    q = slot_mean_reward(slot, reward)
    imp = ImpressionLog(group=log[:, 10].astype(np.int64), slot=slot, reward=reward, pscore=log[:, pscore_col],
                        target_prob=log[:, target_col], q_logged=q, q_target=q)
    return {name: e.to_dict() for name, e in estimate_all(imp, BootstrapConfig(n_boot=n_boot, seed=seed)).items()}


def load_setup(params_path: str, explore_cfg, threads: int):
    """(params, model, simulator, env, k) for a check: the trained DQN-LSTM, the calibrated simulator and
    the simulated env over the validation states. Raises DrlrecError (one line) when an artifact is
    missing, the exploration settings are bad, or top_m < 2 k (the far challenger needs ranks k..2k-1)."""
    import torch

    from drlrec.config import load_params
    from drlrec.errors import DrlrecError
    from drlrec.models.dqn_lstm import DQNLSTM
    from drlrec.rl.envs import simulated_env
    from drlrec.rl.simulator import UserSimulator
    from drlrec.serving.exploration import check

    params = load_params(params_path)
    model_path = Path(params.paths.model) / "model.pt"
    sim_path = Path(params.paths.simulator) / "simulator.npz"
    for path in (model_path, sim_path):
        if not path.is_file():
            raise DrlrecError(f"{path}: missing (run `make run` first)")
    check(explore_cfg)
    k = params.env.k
    if explore_cfg.top_m < 2 * k:
        raise DrlrecError(f"--top-m {explore_cfg.top_m} must be at least 2 k = {2 * k} (the far challenger)")
    torch.set_num_threads(threads)
    simulator = UserSimulator.load(sim_path)
    env = simulated_env(params.paths.features, params.paths.events, simulator, params.env, params.featurize)
    return params, DQNLSTM.load(model_path), simulator, env, k


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=2000, help="logged sessions per seed")
    parser.add_argument("--truth-sessions", type=int, default=40000, help="on-policy sessions of each challenger for the truth")
    parser.add_argument("--truth-runs", type=int, default=20, help="independent seeded runs the truth sessions are split into "
                        "(the spread of their values is the truth's Monte Carlo error)")
    parser.add_argument("--mode", choices=["epsilon", "boltzmann"], default="epsilon")
    parser.add_argument("--epsilon", default="0.05,0.01", help="epsilon of --mode epsilon; a comma list runs the check at "
                        "each, against the same truth (default: %(default)s)")
    parser.add_argument("--temperature", default="1.0", help="temperature of --mode boltzmann; a comma list runs each")
    parser.add_argument("--top-m", type=int, default=30)
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--out", default=None, help="output stem (default <paths.artifacts>/ope/ope_check)")
    args = parser.parse_args(argv)

    from drlrec.errors import DrlrecError
    from drlrec.serving.exploration import check, describe

    try:
        values = [float(v) for v in (args.epsilon if args.mode == "epsilon" else args.temperature).split(",") if v.strip()]
    except ValueError:
        print(f"ope_check: error: --epsilon/--temperature must be numbers separated by commas (got {args.epsilon!r}, "
              f"{args.temperature!r})", file=sys.stderr)
        return 2
    configs = [SimpleNamespace(mode=args.mode, epsilon=v if args.mode == "epsilon" else 0.0, top_m=args.top_m,
                               temperature=v if args.mode == "boltzmann" else 1.0, mc_samples=2000) for v in values]
    try:
        if not configs:
            raise DrlrecError("no exploration setting given (--epsilon or --temperature is empty)")
        if args.truth_runs < 2 or args.truth_sessions < args.truth_runs:
            raise DrlrecError("--truth-runs must be at least 2 and at most --truth-sessions (its spread is the truth's error)")
        for cfg in configs[1:]:
            check(cfg)
        params, model, simulator, env, k = load_setup(args.params, configs[0], threads=2)
    except DrlrecError as exc:
        print(f"ope_check: error: {exc}", file=sys.stderr)
        return 2
    policies = {"close": lambda s: model.recommend(s, k)[0], "far": lambda s: model.recommend(s, 2 * k)[0][:, k:]}
    started = time.perf_counter()
    truths = {}
    for name, policy in policies.items():
        truths[name] = on_policy_truth(env, policy, args.truth_sessions, args.truth_runs, k)
        print(f"truth of {name}: " + "; ".join(f"{r} {v['value']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]"
                                               for r, v in truths[name].items())
              + f" ({args.truth_sessions:,} sessions in {args.truth_runs} seeded runs, {time.perf_counter() - started:.0f}s)",
              file=sys.stderr, flush=True)
    settings = {}
    for cfg in configs:
        label = describe(cfg)
        runs = []
        for seed in range(args.seeds):
            print(f"{label}, seed {seed} ({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)
            runs.append(check_seed(env, model, simulator, k, cfg, args, seed, truths, policies))
        settings[label] = {"runs": runs, "summary": summarize(runs, policies)}

    lines = [
        f"# OPE against the simulator's truth: {args.seeds} seeds, {args.sessions:,} logged sessions each "
        f"(logging: DQN-LSTM, served head, exploration {', '.join(settings)}, k = {k}), truth from "
        f"{args.truth_sessions:,} on-policy sessions per challenger ({args.truth_runs} seeded runs); per impression; 95% CIs from {args.bootstrap} "
        f"user resamples (the start states' users)",
        "",
        "| exploration | challenger | reward | truth [its Monte Carlo 95% CI] | estimator | mean estimate | bias | RMSE | "
        "CI covers truth | one-step truth on the logged states | CI covers it | mean ESS |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, setting in settings.items():
        for key, row in setting["summary"].items():
            name, reward, weights, est = key.split("/")
            t_ci = truths[name][reward]
            lines.append(f"| {label} | {name} | {'CTR' if reward == 'click' else 'conversion'} | {t_ci['value']:.4f} "
                         f"[{t_ci['ci_low']:.4f}, {t_ci['ci_high']:.4f}] | {ESTIMATOR_LABEL[weights]} {est} | "
                         f"{row['mean']:.4f} | {row['bias']:+.4f} | {row['rmse']:.4f} | {row['covered']}/{row['seeds']} | "
                         f"{row['onestep']:.4f} | {row['covered_onestep']}/{row['seeds']} | {row['ess']:,.0f} |")
    lines.append("")
    for label, setting in settings.items():
        observed = np.array([r["observed"]["click"] for r in setting["runs"]])
        lines.append(f"Logging policy's observed CTR per impression at {label}: {observed.mean():.4f} (mean over seeds).")
    lines.append(f"Wall time {time.perf_counter() - started:.0f} s.")
    table = "\n".join(lines) + "\n"
    print(table)
    stem = Path(args.out) if args.out else Path(params.paths.artifacts) / "ope" / "ope_check"
    stem.parent.mkdir(parents=True, exist_ok=True)
    from drlrec.atomic import write_json, write_text

    write_json(stem.with_suffix(".json"), {"args": vars(args), "truth": truths, "settings": settings})
    write_text(stem.with_suffix(".md"), table)
    return 0


#: table labels of the estimator families (keys of a seed's estimates)
ESTIMATOR_LABEL = {"slot": "slot", "list": "list", "session": "session", "session_sim": "session (simulator DM)"}
FAMILIES = [("slot", e) for e in ("ips", "snips", "dr")] + [("list", e) for e in ("ips", "snips", "dr")] + [
    ("session", e) for e in ("pdis", "wpdis", "pddr")] + [("session_sim", "pddr")]


def check_seed(env, model, simulator, k: int, cfg, args, seed: int, truths: dict, policies: dict) -> dict:
    """One seed: log --sessions sessions with exploration `cfg`, then every estimator of each challenger."""
    log, list_log, onestep = log_sessions(env, model, k, args.top_m, cfg, args.sessions, seed, simulator)
    row = {"seed": seed, "impressions": len(log), "observed": {"click": float(log[:, 2].mean()), "buy": float(log[:, 3].mean())}}
    for c, name in enumerate(policies):
        row[name] = {
            "truth": {r: v["value"] for r, v in truths[name].items()},
            "onestep": {"click": float(onestep[name][0]), "buy": float(onestep[name][1])},
            "click": estimates(log, 5 + c, 2, args.bootstrap, seed),
            "buy": estimates(log, 5 + c, 3, args.bootstrap, seed),
            "list": {"click": estimates(log, 8 + c, 2, args.bootstrap, seed, pscore_col=7),
                     "buy": estimates(log, 8 + c, 3, args.bootstrap, seed, pscore_col=7)},
            "session": {"click": session_estimates(list_log, 6 + c, 2, args.bootstrap, seed),
                        "buy": session_estimates(list_log, 6 + c, 3, args.bootstrap, seed)},
            "session_sim": {reward: session_estimates(list_log, 6 + c, 2 + r, args.bootstrap, seed,
                                                      q_cols=(EXPECTED_COLS["logged"] + r, EXPECTED_COLS[name] + r))
                            for r, reward in enumerate(("click", "buy"))},
        }
    print(f"  {len(log):,} impressions, observed CTR {row['observed']['click']:.4f}; "
          + "; ".join(f"{n} truth {row[n]['truth']['click']:.4f} slot DR {_ci(row[n]['click']['dr'])}, session PDDR "
                      f"{_ci(row[n]['session']['click']['pddr'])}, with the simulator's DM {_ci(row[n]['session_sim']['click']['pddr'])}"
                      for n in policies), file=sys.stderr, flush=True)
    return row


def _ci(e: dict) -> str:
    return f"{e['value']:.4f} [{e['ci_low']:.4f}, {e['ci_high']:.4f}]"


def summarize(runs: list[dict], policies: dict) -> dict:
    """{challenger/reward/family/estimator: mean, bias, RMSE, coverage of the truth and of the one-step truth,
    mean ESS} over the seeds."""
    summary = {}
    for name in policies:
        for reward in ("click", "buy"):
            truth = np.array([r[name]["truth"][reward] for r in runs])
            onestep = np.array([r[name]["onestep"][reward] for r in runs])
            for weights, est in FAMILIES:
                part = [r[name][reward] if weights == "slot" else r[name][weights][reward] for r in runs]
                value, low, high, ess = (np.array([p[est][f] for p in part]) for f in ("value", "ci_low", "ci_high", "ess"))
                err = value - truth
                summary[f"{name}/{reward}/{weights}/{est}"] = {
                    "mean": float(value.mean()), "bias": float(err.mean()), "rmse": float(np.sqrt((err**2).mean())),
                    "covered": int(((low <= truth) & (truth <= high)).sum()),
                    "covered_onestep": int(((low <= onestep) & (onestep <= high)).sum()),
                    "onestep": float(onestep.mean()), "bias_onestep": float((value - onestep).mean()),
                    "ess": float(ess.mean()), "seeds": len(runs)}
    return summary


if __name__ == "__main__":
    sys.exit(main())
