"""Stage shells, one module per verb: `<verb>_stage(params, ...)` reads its inputs, calls the core code
(drlrec.data, drlrec.features, drlrec.rl, drlrec.evaluate, drlrec.registry, drlrec.serving, ...), writes its
outputs atomically and returns its result.

The CLI, the DVC stages (through the CLI) and the Prefect tasks all call these functions, so a stage
behaves the same whichever driver runs it. A stage module imports no other stage module; what several
of them share is in `common`. Modules: synth, stats, ingest, validate, featurize, train, evaluate,
compare, simulate, register, tune, monitor, serve, ab, ope, and report (`drlrec summary`).

Every stage is re-exported here, so `from drlrec.stages import train_stage` keeps working; importing
this package imports no heavy library (each stage imports its own inside the function).
"""

from __future__ import annotations

from drlrec.stages.ab import ab_predict_stage, ab_report_stage
from drlrec.stages.compare import compare_stage
from drlrec.stages.evaluate import evaluate_stage
from drlrec.stages.featurize import featurize_stage
from drlrec.stages.ingest import ingest_stage
from drlrec.stages.monitor import monitor_stage
from drlrec.stages.ope import ope_stage
from drlrec.stages.register import register_stage
from drlrec.stages.report import summary_report
from drlrec.stages.serve import serve_stage
from drlrec.stages.simulate import simulate_stage
from drlrec.stages.stats import stats_stage
from drlrec.stages.synth import synth_stage
from drlrec.stages.train import online_training_env, train_baseline_stage, train_stage
from drlrec.stages.tune import tune_stage
from drlrec.stages.validate import validate_stage

__all__ = [
    "ab_predict_stage", "ab_report_stage", "compare_stage", "evaluate_stage", "featurize_stage", "ingest_stage",
    "monitor_stage", "ope_stage", "online_training_env", "register_stage", "serve_stage", "simulate_stage",
    "stats_stage", "summary_report", "synth_stage", "train_baseline_stage", "train_stage", "tune_stage",
    "validate_stage",
]
