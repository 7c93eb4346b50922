"""The `drlrec` command line: the argparse tree with every command's help, the commands other packages add
(entry point group `drlrec.commands`), and `main`, which turns a DrlrecError into one line and its exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from drlrec.cli.commands import (
    _load,
    cmd_ab,
    cmd_compare,
    cmd_evaluate,
    cmd_featurize,
    cmd_ingest,
    cmd_models,
    cmd_monitor,
    cmd_ope,
    cmd_promote,
    cmd_register,
    cmd_rollback,
    cmd_serve,
    cmd_simulate,
    cmd_stats,
    cmd_summary,
    cmd_synth,
    cmd_train,
    cmd_tune,
    cmd_ui,
    cmd_validate,
)
from drlrec.errors import DrlrecError

Handler = Callable[[argparse.Namespace], int | None]

DESCRIPTION = """\
drlrec: train, ship and watch a DQN-LSTM sequential recommender on Taobao-style behaviour logs.

Pipeline stages (also DVC stages and Prefect tasks):
  ingest -> validate -> featurize -> train -> evaluate -> register   (simulate: the user simulator)
Registry:  register, models, promote, rollback (MLflow Model Registry, @champion behind a gate)
Orchestration:  flow (run the Prefect training flow once), deploy (scheduled training + monitoring)
Online:  serve (FastAPI + Redis), ab report (A/B test statistics), monitor (Evidently drift)
Tools:  synth (generate a calibrated Taobao-like log; --drift a shifted period), stats (profile any log),
  compare (all models, one table), tune (Optuna on validation NDCG@10), ui (MLflow + Prefect UIs)

Every command reads params.yaml (--params PATH) and accepts repeatable overrides,
e.g. `drlrec synth --set synth.users=500`. Errors print one line and exit non-zero
(2: bad input or config, 1: a failed data check)."""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", default="params.yaml", metavar="PATH", help="params file (default: %(default)s)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one parameter (repeatable; the value is parsed as YAML)",
    )


#: the entry-point group through which other packages add commands: `register(add, load_params)`, where
#: `add(name, handler, help, description)` returns the command's argparse parser (flows/commands.py adds
#: `flow` and `deploy`; drlrec itself never imports the drivers in flows/)
COMMANDS_GROUP = "drlrec.commands"


def _plugins() -> list[Callable[..., None]]:
    from importlib.metadata import entry_points

    return [ep.load() for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drlrec", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from drlrec import __version__

    parser.add_argument("--version", action="version", version=f"drlrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, handler: Handler, help_text: str, description: str | None = None):
        p = sub.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p)
        p.set_defaults(handler=handler)
        return p

    p = add(
        "synth",
        cmd_synth,
        "generate a seeded Taobao-like behaviour log (header-less CSV)",
        "Generate a deterministic log calibrated on the published statistics of the Taobao\n"
        "UserBehavior data: events per user, behaviour mix, Zipf popularity, drifting category\n"
        "preferences, 30-minute sessions with a day/night rhythm, re-views and the\n"
        "pv -> cart/fav -> buy funnel. Parameters: the synth: section of params.yaml.",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="output CSV (default: paths.raw_data; .gz compresses)"
    )
    p.add_argument("--users", type=int, default=None, help="number of users (default: synth.users)")
    p.add_argument(
        "--scale", choices=("default", "full"), default="default",
        help="full: the real file's size (987,994 users, 4,162,024 items, 9,439 categories; at synth.events_mean 101 "
        "events per user, about 100M rows); default: the synth: section",
    )
    p.add_argument(
        "--order", choices=("user", "original", "time"), default=None,
        help="row order (default: synth.order): user = by user id then time; original = the real file's "
        "(users in lexicographic string order, time within a user); time = the whole log by time",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: base.seed)")
    p.add_argument(
        "--calibrate",
        type=Path,
        default=None,
        metavar="REAL_LOG",
        help="fit the generator's parameters from a real log first (prints them)",
    )
    p.add_argument("--if-missing", action="store_true", help="do nothing when the output file already exists")
    p.add_argument(
        "--drift",
        action="store_true",
        help="generate the shifted period after the synth window instead (params drift:: categories move, "
        "new items, another behaviour mix; default --out <paths.artifacts>/synth_drift.csv)",
    )

    p = add("stats", cmd_stats, "print a profile of a behaviour log (CSV, .csv.gz or events.parquet)")
    p.add_argument("file", type=Path, help="log to profile")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add(
        "ingest",
        cmd_ingest,
        "stream a raw CSV into typed, sorted events.parquet; quarantine bad rows with a reason",
        "Stream a raw log (header-less Taobao format or headered CSV, plain or .gz) in Arrow\n"
        "record batches into DIR/events.parquet (typed, sorted by user then time). Every\n"
        "rejected row goes to DIR/quarantine.parquet with its reason; counts are in\n"
        "DIR/ingest_report.json. Memory is bounded by ingest.block_size_mb and\n"
        "ingest.bucket_rows, not by the file size.",
    )
    p.add_argument("--input", type=Path, default=None, help="raw log (default: paths.raw_data)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: folder of paths.events)")

    p = add(
        "validate",
        cmd_validate,
        "check events.parquet against the Great Expectations suite in expectations/",
        "Validate typed events with the Great Expectations suite (paths.expectations).\n"
        "Writes DIR/validation.json; exits 1 with a one-line reason when the suite fails.",
    )
    p.add_argument("--events", type=Path, default=None, help="events parquet (default: paths.events)")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: folder of paths.validation)"
    )

    p = add(
        "featurize",
        cmd_featurize,
        "temporal split, train-only vocabularies, profiles, step features and transitions",
        "Split events by time (featurize.train_days / valid_days from ingest.window_start), fit item and\n"
        "category vocabularies and statistics on train only, compute the 10-d user profile and the\n"
        "20-d step encoding of every event, and write the folders DIR/{train,valid,test}/ (one .npy per\n"
        "field: a per-split event table and, per transition, where its state of the last featurize.seq_len\n"
        "interactions starts), the vocabularies, train_stats.npz and DIR/featurize_report.json.\n"
        "Streams groups of whole users of about featurize.chunk_rows events, so memory stays flat in the\n"
        "size of the log (the outputs do not depend on the chunk size).",
    )
    p.add_argument("--events", type=Path, default=None, help="events parquet (default: paths.events)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: paths.features)")
    p = add(
        "train",
        cmd_train,
        "train the DQN-LSTM on the featurized transitions; track the run in MLflow",
        "Train the DQN-LSTM (params model: and train:) on DIR/train/ with Double DQN, a target\n"
        "network, prioritized replay and the optional supervised next-item head, with early stopping\n"
        "on validation NDCG@10. Writes the model folder and train_metrics.json and logs params,\n"
        "metrics, curves and the model to MLflow (MLFLOW_TRACKING_URI, default sqlite:///mlflow.db).\n"
        "A killed run started again resumes from its last checkpoint (paths.checkpoints).\n"
        "--set train.mode=online trains against the user simulator instead (train.episodes sessions;\n"
        "the learning curve is online_curve.png). --model NAME fits a comparison model instead\n"
        "(popularity, item_knn, gru4rec, sasrec, drr, tabular_q, ...) into artifacts/models/NAME.",
    )
    p.add_argument("--model", default="dqn_lstm", metavar="NAME", help="model to train (default: %(default)s)")
    p.add_argument(
        "--features", type=Path, default=None, help="featurize output folder (default: paths.features)"
    )
    p.add_argument("--out", type=Path, default=None, help="model folder (default: paths.model; artifacts/models/NAME for --model)")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="DistributedDataParallel under torchrun (gloo on CPU, NCCL on GPU; params scale:): "
        "python -m torch.distributed.run --nproc_per_node N -m drlrec.cli train --distributed",
    )
    p = add(
        "evaluate",
        cmd_evaluate,
        "evaluate a model on the test period: full ranking, bootstrap CIs, metrics.json",
        "The one protocol for every model: each test event is predicted from the user's history up to\n"
        "it; targets are the next interaction and the next purchase; ranking is over all items (no\n"
        "sampled negatives). Reports HR/NDCG@k, MRR, the paper's per-user Precision/Recall/F1/MAP@k,\n"
        "coverage, diversity and novelty, each with a 95% bootstrap CI (params evaluate:). Writes\n"
        "paths.metrics and a markdown table and bar chart under paths.reports; logs them to MLflow.\n"
        "dqn_lstm is read from paths.model; other models are fitted first with their params budget.",
    )
    p.add_argument(
        "--model", default="dqn_lstm", metavar="NAME", help="model to evaluate (default: %(default)s)"
    )
    p.add_argument(
        "--features", type=Path, default=None, help="featurize output folder (default: paths.features)"
    )
    p = add(
        "compare",
        cmd_compare,
        "train and evaluate several models on the same split; print the comparison table",
        "Train every model with its budget from params (evaluate.models, baselines:, train:), evaluate\n"
        "each with the protocol of `drlrec evaluate`, print the table (value [95% CI]) and write\n"
        "paths.compare (.json, .md, .png). Everything is logged to MLflow under one parent run.",
    )
    p.add_argument(
        "--models",
        default=None,
        metavar="A,B,...",
        help="comma-separated model names (default: evaluate.models)",
    )
    p.add_argument(
        "--features", type=Path, default=None, help="featurize output folder (default: paths.features)"
    )
    p = add(
        "tune",
        cmd_tune,
        "search a model's hyper-parameters with Optuna on validation NDCG@10 (never the test split)",
        "Run a seeded Optuna TPE study over the model's search space (drlrec.tune.SEARCH_SPACES: train:/model:\n"
        "keys for dqn_lstm, baselines.<name>.* for the others). Each trial fits the model on the train period\n"
        "with its own budget from params and scores NDCG@10 on the same fixed validation events\n"
        "(tune.eval_max_events, seed base.seed); the test period is never read. The study is stored in\n"
        "<paths.tune>/<model>.db and named after the model and a hash of the data and the fixed config, so\n"
        "running it again resumes it: --trials N means N finished trials in total. Every trial is a nested\n"
        "MLflow run of `tune-<model>`. Prints one line per trial and the trials table and writes\n"
        "<paths.tune>/<model>.json. --write-params puts the best values into the --params file in place\n"
        "(only those keys; comments kept; each edited line marked `# tuned: valid NDCG@10 ...`).",
    )
    p.add_argument("--model", required=True, metavar="NAME", help="registry model to tune (item_knn, gru4rec, dqn_lstm, ...)")
    p.add_argument(
        "--trials", type=int, default=None, metavar="N",
        help="finished trials the study should hold in total (default: tune.trials)",
    )
    p.add_argument(
        "--timeout", type=float, default=None, metavar="S",
        help="start no new trial after S seconds of this call (default: tune.timeout; 0 = no limit)",
    )
    p.add_argument(
        "--write-params", action="store_true",
        help="write the best values into the --params file (only those keys; comments and layout kept)",
    )
    p.add_argument(
        "--features", type=Path, default=None, help="featurize output folder (default: paths.features)"
    )
    p = add(
        "simulate",
        cmd_simulate,
        "fit the user simulator, check its calibration on held-out days, compare policies in it",
        "Fit the user simulator (params simulator:) on the train split: who acts on a recommended item,\n"
        "with which behaviour, and when the session ends. Check it against the validation split\n"
        "(predicted vs observed by decile, AUC, P(behaviour | interaction)) and run the policies of\n"
        "simulate.policies on the same seeded simulated sessions: the trained DQN-LSTM with its Q-head\n"
        "(dqn_lstm[q]) and its supervised head (dqn_lstm[ce]), recent_items, item_knn, sasrec (fitted on\n"
        "the train split), popularity, random. Return, CTR, conversion and purchases per session with\n"
        "bootstrap CIs over sessions, and the paired Q - CE difference. Writes paths.simulator/\n"
        "{simulator.npz, calibration.md/.csv/.png, policies.json, simulate.md}; logs them to MLflow.",
    )
    p.add_argument(
        "--features", type=Path, default=None, help="featurize output folder (default: paths.features)"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: paths.simulator)")
    p.add_argument(
        "--sessions", type=int, default=None, help="simulated sessions per policy (default: env.sessions)"
    )
    p.add_argument(
        "--policies", default=None, metavar="A,B",
        help="comma-separated policies, e.g. dqn_lstm[q],dqn_lstm[ce],recent_items (default: simulate.policies)",
    )
    add(
        "register",
        cmd_register,
        "register the trained DQN-LSTM in MLflow (@challenger); the gate decides on @champion",
        "Bundle the trained model (paths.model) with its vocabularies and statistics (paths.features),\n"
        "register it as a new version of the MLflow registered model register.model_name with the alias\n"
        "@challenger and tags (DVC data hash, git commit, params hash, metrics). The gate makes it\n"
        "@champion only if there is no champion yet or it beats the champion on register.metric by at\n"
        "least register.margin on the same evaluation split (a champion evaluated on other data is\n"
        "scored again on the challenger's split). The decision is written to paths.registry.",
    )
    p = add("promote", cmd_promote, "make a registered version @champion by hand (bypasses the gate)")
    p.add_argument("--version", required=True, metavar="N", help="registry version to promote")
    add("rollback", cmd_rollback, "return @champion to the version that was champion before it")
    add("models", cmd_models, "list the registered versions with their aliases and gate decisions")
    p = add(
        "ope",
        cmd_ope,
        "estimate a registered policy's CTR and conversion from the service's logs (off-policy evaluation)",
        "Off-policy evaluation from the service's own logs (paths.exposures, paths.interactions): each\n"
        "model-ranked list is exploded into impressions with the logged slot propensities (serve.exploration),\n"
        "the candidate ranks every logged state again, and per-slot IPS, SNIPS and DR estimate its click and\n"
        "conversion rate per impression, with user-level bootstrap CIs (evaluate.bootstrap resamples) and\n"
        "effective sample sizes, beside the logging policy's observed rate. Lists served without exploration\n"
        "support only a candidate that ranks them the same: anything else is refused with the reason.\n"
        "Writes <out>/ope-<policy>.json and .md and logs them to MLflow.",
    )
    p.add_argument("--policy", required=True, metavar="ALIAS_OR_VERSION", help="registry alias (challenger) or version number")
    p.add_argument("--logs", metavar="PATH", help="exposure log (default paths.exposures)")
    p.add_argument("--interactions", metavar="PATH", help="interaction log (default paths.interactions)")
    p.add_argument("--candidate-exploration", default="off", metavar="SETTING",
                   help="the candidate's own policy: off (its greedy list, default), epsilon:0.1:m50 or boltzmann:t1:m50")
    p.add_argument("--weights", choices=["slot", "list"], default="slot",
                   help="importance weights: slot (per-slot marginals, obp's independent IPS; default) or list (the "
                        "whole list's probability: unbiased when a list's items affect each other's rewards, higher variance)")
    p.add_argument("--out", metavar="DIR", help="output folder (default <paths.artifacts>/ope)")
    for plugin in _plugins():  # commands other packages add (flows/: `flow` and `deploy`)
        plugin(add, _load)
    p = add(
        "monitor",
        cmd_monitor,
        "Evidently drift report of recent interactions against the training period",
        "Compare a window of the interaction log (default: the last monitor.window_days days of\n"
        "paths.interactions) or a new raw batch (--current) with the training period of paths.events:\n"
        "behaviour mix, top categories, hour of day, unknown items, item popularity rank, events per\n"
        "user-day, session length and the 10-d profile; with the exposure log, served vs interacted\n"
        "categories (prediction drift) and online HR@k. Writes paths.monitoring/<window>/report.html,\n"
        "report.json and decision.txt, and prints the one-line decision.",
    )
    p.add_argument("--current", type=Path, default=None, help="interaction log or raw batch (default: paths.interactions)")
    p.add_argument("--window-days", type=float, default=None, help="days of the log to compare (default: monitor.window_days; 0 = all)")
    p.add_argument("--exposures", type=Path, default=None, help="served-list log (default: paths.exposures, when present)")
    p.add_argument("--out", type=Path, default=None, help="report root folder (default: paths.monitoring)")
    p.add_argument("--no-registry", action="store_true", help="use paths.features' vocabulary, not the registry champion's")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 when drift is declared")
    add("summary", cmd_summary, "print the latest metrics table, where the artifacts are, the champion and how to open the UIs")
    p = add(
        "ui",
        cmd_ui,
        "start the MLflow UI and the Prefect server on free 127.0.0.1 ports; Ctrl-C stops both",
        "Starts `mlflow ui` on the project's tracking store (MLFLOW_TRACKING_URI, default sqlite:///mlflow.db)\n"
        "and `prefect server start` with PREFECT_UI_API_URL set to its own port (without it, the Prefect UI\n"
        "on any port but 4200 cannot reach its API and shows no deployments), waits until both answer, prints\n"
        "both URLs and how to register the deployments there, and on Ctrl-C or SIGTERM stops both by PID.\n"
        "Server logs go to <paths.artifacts>/ui/.",
    )
    p.add_argument("--mlflow-port", type=int, default=0, metavar="PORT", help="MLflow UI port (default: a free one)")
    p.add_argument("--prefect-port", type=int, default=0, metavar="PORT", help="Prefect server port (default: a free one)")
    p = add(
        "serve",
        cmd_serve,
        "run the recommendation API (FastAPI + uvicorn) on the registry's champion",
        "Serve GET /recommendations/{user_id}, POST /interaction, /metrics, /stats, /health, /ready,\n"
        "/ab/results and POST /admin/reload (params serve: and ab:). Models come from the MLflow registry\n"
        "(MLFLOW_TRACKING_URI, default sqlite:///mlflow.db) and are hot-swapped when an alias moves.\n"
        "DRLREC_REDIS_URL selects Redis for the cache and user state; --with-redis starts a private\n"
        "redis-server on 127.0.0.1. POST routes need DRLREC_API_TOKEN (one is generated when unset).",
    )
    p.add_argument("--host", default=None, help="bind address (default: serve.host)")
    p.add_argument("--port", type=int, default=None, help="port (default: serve.port)")
    p.add_argument("--with-redis", action="store_true", help="start redis-server on 127.0.0.1 (free port), stop it on exit")
    p = add(
        "ab",
        cmd_ab,
        "A/B tests: OPE's prediction per arm before the test, and the report from the serving logs",
        "`drlrec ab predict` (before the test) estimates each arm's CTR and conversion from the exposure and\n"
        "interaction logs of the policy serving now, which must explore (serve.exploration): the arm's\n"
        "registry alias under serve.exploration, list-level doubly robust estimate with user-level CIs; the\n"
        "JSON goes to paths.ab_predictions. `drlrec ab report` reads paths.exposures and paths.interactions\n"
        "and prints, per variant of ab:, CTR and conversion with Wilson CIs, two-proportion z-tests against\n"
        "ab.control and the sample-ratio-mismatch check, and, when paths.ab_predictions exists, OPE's\n"
        "prediction beside each arm's observed values; the JSON goes to paths.ab_report (atomically).",
    )
    p.add_argument("action", choices=["report", "predict"], help="report: the A/B report; predict: OPE's prediction per arm")
    p.add_argument("--out", default=None, help="JSON output (default: paths.ab_report or paths.ab_predictions)")
    p.add_argument("--logs", default=None, help="predict: exposure log to estimate from (default: paths.exposures)")
    p.add_argument("--interactions", default=None, help="predict: interaction log (default: paths.interactions)")
    p.add_argument("--predictions", default=None,
                   help="report: the predictions JSON to show (default: paths.ab_predictions when it exists)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from drlrec.settings import apply_offline_env

    apply_offline_env()
    try:
        code = args.handler(args)
    except DrlrecError as exc:
        print(f"drlrec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("drlrec: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
