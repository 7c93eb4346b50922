"""One handler per `drlrec` command: Params loaded once from --params and --set, then the stage (or tool)
called; every heavy library is imported inside the handler."""

from __future__ import annotations

import argparse
from pathlib import Path


def _load(args: argparse.Namespace):
    from drlrec.config import load_params

    return load_params(args.params, args.overrides)


def cmd_synth(args: argparse.Namespace) -> int:
    from drlrec.stages import synth_stage

    synth_stage(
        _load(args),
        out=args.out,
        users=args.users,
        seed=args.seed,
        calibrate=args.calibrate,
        if_missing=args.if_missing,
        drift=args.drift,
        scale=args.scale,
        order=args.order,
    )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from drlrec.stages import stats_stage

    stats_stage(_load(args), path=args.file, as_json=args.json)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from drlrec.stages import ingest_stage

    ingest_stage(_load(args), input_path=args.input, out_dir=args.out)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from drlrec.stages import validate_stage

    validate_stage(_load(args), events_path=args.events, out_dir=args.out)
    return 0


def cmd_featurize(args: argparse.Namespace) -> int:
    from drlrec.stages import featurize_stage

    featurize_stage(_load(args), events_path=args.events, out_dir=args.out)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from drlrec.stages import train_stage

    if args.model == "dqn_lstm":
        train_stage(_load(args), features_dir=args.features, out_dir=args.out, distributed=args.distributed)
    elif args.distributed:
        from drlrec.errors import ConfigError

        raise ConfigError("--distributed trains the DQN-LSTM only (not --model " + args.model + ")")
    else:
        from drlrec.stages import train_baseline_stage

        train_baseline_stage(_load(args), args.model, features_dir=args.features, out_dir=args.out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from drlrec.stages import evaluate_stage

    evaluate_stage(_load(args), model_name=args.model, features_dir=args.features)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from drlrec.stages import compare_stage

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    compare_stage(_load(args), models=models, features_dir=args.features)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from drlrec.stages import tune_stage

    tune_stage(
        _load(args),
        args.model,
        trials=args.trials,
        timeout=args.timeout,
        write_params=args.params if args.write_params else None,
        features_dir=args.features,
    )
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from drlrec.stages import simulate_stage

    policies = [p.strip() for p in args.policies.split(",") if p.strip()] if args.policies else None
    simulate_stage(
        _load(args), features_dir=args.features, out_dir=args.out, sessions=args.sessions, policies=policies
    )
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from drlrec.stages import register_stage

    register_stage(_load(args))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from drlrec.registry import promote

    params = _load(args)
    result = promote(args.version, name=params.register.model_name)
    print(f"promote: {result['model_name']}@champion -> version {result['champion']} (was {result['previous']})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from drlrec.registry import rollback

    params = _load(args)
    result = rollback(name=params.register.model_name)
    print(f"rollback: {result['model_name']}@champion -> version {result['champion']} (was {result['from']})")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from drlrec.registry import describe

    params = _load(args)
    rows = describe(name=params.register.model_name)
    print(f"{'version':>7}  {'aliases':<22} {'metric':<22} {'value':>9}  promoted  reason")
    for r in rows:
        value = "-" if r["value"] is None else f"{float(r['value']):.4f}"
        print(f"{r['version']:>7}  {','.join(r['aliases']) or '-':<22} {r['metric']:<22} {value:>9}  "
              f"{str(r['promoted']):<8}  {r['reason']}")
    return 0


def cmd_ope(args: argparse.Namespace) -> int:
    from drlrec.stages import ope_stage

    ope_stage(_load(args), args.policy, logs=args.logs, interactions=args.interactions,
              candidate_exploration=args.candidate_exploration, out_dir=args.out, weights=args.weights)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from drlrec.stages import monitor_stage

    result, _ = monitor_stage(
        _load(args),
        current=args.current,
        window_days=args.window_days,
        exposures=args.exposures,
        out_dir=args.out,
        use_registry=not args.no_registry,
    )
    print(result.decision_line())
    return 1 if (args.fail_on_drift and result.drift) else 0


def cmd_summary(args: argparse.Namespace) -> int:
    from drlrec.stages import summary_report

    summary_report(_load(args))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from drlrec.tracking import default_tracking_uri
    from drlrec.ui import serve_uis

    params = _load(args)
    return serve_uis(default_tracking_uri(), mlflow_port=args.mlflow_port, prefect_port=args.prefect_port,
                     logs=Path(params.paths.artifacts) / "ui")


def cmd_serve(args: argparse.Namespace) -> int:
    from drlrec.stages import serve_stage

    serve_stage(_load(args), host=args.host, port=args.port, with_redis=args.with_redis)
    return 0


def cmd_ab(args: argparse.Namespace) -> int:
    from drlrec.stages import ab_predict_stage, ab_report_stage

    if args.action == "predict":
        ab_predict_stage(_load(args), logs=args.logs, interactions=args.interactions, out=args.out)
    else:
        ab_report_stage(_load(args), out=args.out, predictions=args.predictions)
    return 0
